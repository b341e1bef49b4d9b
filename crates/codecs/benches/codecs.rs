//! Re-encryption of one 64-byte value per codec, beside keyturn's native
//! format, in one run (the multi-column `envelope` codec: one row's cells). Each value is under the old key of a ring of two
//! keys (old decrypt-only, new primary): formats without a key id pay the
//! trial decryption (primary first, which fails, then the old key).
//!
//!   cargo bench -p keyturn-codecs --bench codecs
//!
//! Rails, Lockbox and django-fernet-fields derive their keys when the ring
//! is loaded (PBKDF2 / HKDF), not per value: that cost is not measured here.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use criterion::{Criterion, criterion_group, criterion_main};
use keyturn_codecs::multi::RowReencryption;
use keyturn_codecs::{CodecConfig, build, build_multi, parse_key};
use keyturn_format::{Keyring, Reencryption};
use std::hint::black_box;
use std::time::Duration;

fn cfg(json: &str) -> CodecConfig {
    serde_json::from_str(json).unwrap()
}

fn b64(b: u8) -> String {
    STANDARD.encode([b; 32])
}

/// A key as (id, text).
type KeyText = (String, String);

fn bench(c: &mut Criterion) {
    let s = |x: &str| x.to_owned();
    let cases: Vec<(&str, CodecConfig, KeyText, KeyText)> = vec![
        (
            "native-text",
            cfg(r#"{"codec":"native","encoding":"text"}"#),
            (s(""), format!("old:aes256gcm:{}", b64(1))),
            (s(""), format!("new:aes256gcm:{}", b64(2))),
        ),
        (
            "native-binary",
            cfg(r#"{"codec":"native","encoding":"binary"}"#),
            (s(""), format!("old:aes256gcm:{}", b64(1))),
            (s(""), format!("new:aes256gcm:{}", b64(2))),
        ),
        (
            "fernet",
            cfg(r#"{"codec":"fernet"}"#),
            (s("old"), URL_SAFE.encode([1u8; 32])),
            (s("new"), URL_SAFE.encode([2u8; 32])),
        ),
        (
            "django-fernet-fields",
            cfg(r#"{"codec":"django-fernet-fields"}"#),
            (s("old"), s("old secret")),
            (s("new"), s("new secret")),
        ),
        (
            "laravel-cbc",
            cfg(r#"{"codec":"laravel"}"#),
            (s("old"), format!("base64:{}", b64(1))),
            (s("new"), format!("base64:{}", b64(2))),
        ),
        (
            "laravel-gcm",
            cfg(r#"{"codec":"laravel","cipher":"aes-256-gcm"}"#),
            (s("old"), format!("base64:{}", b64(1))),
            (s("new"), format!("base64:{}", b64(2))),
        ),
        (
            "rails",
            cfg(r#"{"codec":"rails","key_derivation_salt":"salt"}"#),
            (s(""), s("old primary key")),
            (s(""), s("new primary key")),
        ),
        (
            "rails-key-ref",
            cfg(r#"{"codec":"rails","key_derivation_salt":"salt","store_key_references":true}"#),
            (s(""), s("old primary key")),
            (s(""), s("new primary key")),
        ),
        (
            "lockbox",
            cfg(r#"{"codec":"lockbox","table":"users","column":"email_ciphertext"}"#),
            (s("old"), "01".repeat(32)),
            (s("new"), "02".repeat(32)),
        ),
        (
            "vault-transit",
            cfg(r#"{"codec":"vault-transit"}"#),
            (s("v1"), b64(1)),
            (s("v2"), b64(2)),
        ),
        (
            "cloak",
            cfg(r#"{"codec":"cloak"}"#),
            (
                s(""),
                format!("k1.aesgcm256.{}", URL_SAFE.encode([1u8; 32])),
            ),
            (
                s(""),
                format!("k1.aesgcm256.{}", URL_SAFE.encode([2u8; 32])),
            ),
        ),
        (
            "node-gcm-iv12",
            cfg(r#"{"codec":"node-gcm","iv_len":12}"#),
            (s("old"), "01".repeat(32)),
            (s("new"), "02".repeat(32)),
        ),
        (
            "node-gcm-iv16",
            cfg(r#"{"codec":"node-gcm","iv_len":16}"#),
            (s("old"), "01".repeat(32)),
            (s("new"), "02".repeat(32)),
        ),
        (
            "version-byte",
            cfg(r#"{"codec":"version-byte","versions":{"1":"old","2":"new"}}"#),
            (s("old"), b64(1)),
            (s("new"), b64(2)),
        ),
        (
            "sodium-secretbox",
            cfg(r#"{"codec":"sodium-prefix"}"#),
            (s("v1"), b64(1)),
            (s("v2"), b64(2)),
        ),
        (
            "sodium-xchacha",
            cfg(r#"{"codec":"sodium-prefix","algorithm":"xchacha20poly1305"}"#),
            (s("v1"), b64(1)),
            (s("v2"), b64(2)),
        ),
        (
            "json-envelope",
            cfg(r#"{"codec":"json-envelope"}"#),
            (s(""), format!("kek-v1:{}", b64(1))),
            (s(""), format!("kek-v2:{}", b64(2))),
        ),
    ];
    let plaintext = [0x61u8; 64];
    let mut g = c.benchmark_group("reencrypt_64B");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for (name, config, (oi, ot), (ni, nt)) in cases {
        let codec = build(&config).unwrap();
        let old = parse_key(&config, &oi, &ot).unwrap();
        let old_ring =
            Keyring::from_keys(vec![parse_key(&config, &oi, &ot).unwrap()], None, &[]).unwrap();
        let new = parse_key(&config, &ni, &nt).unwrap();
        let primary = new.0.as_str().to_owned();
        let ring = Keyring::from_keys(vec![old, new], Some(&primary), &[]).unwrap();
        let value = codec.encrypt(&old_ring, &plaintext, &[]).unwrap();
        assert!(matches!(
            codec.reencrypt(&ring, &value, &[]).unwrap(),
            Reencryption::Rotated(_)
        ));
        g.bench_function(name, |b| {
            b.iter(|| codec.reencrypt(&ring, black_box(&value), &[]).unwrap())
        });
    }
    // Multi-column: one row's four cells (ciphertext of the 64-byte value,
    // IV, key id, wrapped data key). The default rotation re-wraps: unwrap
    // the data key with the old KEK, open the value with it (so a damaged
    // row is reported, not re-wrapped), wrap the key under the new KEK; the
    // value is not encrypted again.
    let config = cfg(r#"{"codec":"envelope"}"#);
    let codec = build_multi(&config).unwrap();
    let key = |id: &str, b: u8| parse_key(&config, id, &b64(b)).unwrap();
    let old_ring = Keyring::from_keys(vec![key("old", 1)], None, &[]).unwrap();
    let ring = Keyring::from_keys(vec![key("old", 1), key("new", 2)], Some("new"), &[]).unwrap();
    let cells = codec.encrypt_row(&old_ring, &plaintext, &[]).unwrap();
    assert!(matches!(
        codec.reencrypt_row(&ring, &cells, &[]).unwrap(),
        RowReencryption::Rotated(_)
    ));
    g.bench_function("envelope", |b| {
        b.iter(|| codec.reencrypt_row(&ring, black_box(&cells), &[]).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
