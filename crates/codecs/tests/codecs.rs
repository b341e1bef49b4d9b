//! Property and behaviour tests over every codec: round trips through a
//! rotation, decoders that never panic, key parsing that never echoes key
//! material, trial decryption order, config parsing, detection and the
//! multi-column codec.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use keyturn_codecs::multi::{Cells, MultiColumnCodec, RowReencryption, SplitColumnsCodec};
use keyturn_codecs::{CodecConfig, Detected, build, detect, parse_key};
use keyturn_format::{
    Algorithm, Codec, FormatError, Inspection, KeyId, Keyring, Reencryption, SecretKey,
};
use proptest::prelude::*;
use std::sync::OnceLock;

fn cfg(json: &str) -> CodecConfig {
    serde_json::from_str(json).unwrap()
}

fn b64_key(b: u8) -> String {
    STANDARD.encode([b; 32])
}

/// A key as (id, text).
type KeyText = (String, String);

/// (config, old key, new key).
fn fixtures() -> Vec<(CodecConfig, KeyText, KeyText)> {
    let s = |x: &str| x.to_owned();
    vec![
        (
            cfg(r#"{"codec":"native"}"#),
            (s(""), format!("old:aes256gcm:{}", b64_key(1))),
            (s(""), format!("new:aes256gcm:{}", b64_key(2))),
        ),
        (
            cfg(r#"{"codec":"fernet"}"#),
            (s("old"), URL_SAFE.encode([1u8; 32])),
            (s("new"), URL_SAFE.encode([2u8; 32])),
        ),
        (
            cfg(r#"{"codec":"django-fernet-fields"}"#),
            (s("old"), s("old secret")),
            (s("new"), s("new secret")),
        ),
        (
            cfg(r#"{"codec":"laravel"}"#),
            (s("old"), format!("base64:{}", b64_key(1))),
            (s("new"), format!("base64:{}", b64_key(2))),
        ),
        (
            cfg(r#"{"codec":"laravel","cipher":"aes-256-gcm"}"#),
            (s("old"), format!("base64:{}", b64_key(1))),
            (s("new"), format!("base64:{}", b64_key(2))),
        ),
        (
            cfg(r#"{"codec":"rails","key_derivation_salt":"salt","store_key_references":true}"#),
            (s(""), s("old primary key")),
            (s(""), s("new primary key")),
        ),
        (
            cfg(r#"{"codec":"rails","key_derivation_salt":"salt","kdf":"sha256"}"#),
            (s(""), s("old primary key")),
            (s(""), s("new primary key")),
        ),
        (
            cfg(r#"{"codec":"lockbox","table":"users","column":"email_ciphertext"}"#),
            (s("old"), "01".repeat(32)),
            (s("new"), "02".repeat(32)),
        ),
        (
            cfg(r#"{"codec":"vault-transit"}"#),
            (s("v1"), b64_key(1)),
            (s("2"), b64_key(2)),
        ),
        (
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
            cfg(r#"{"codec":"node-gcm","iv_len":12}"#),
            (s("old"), "01".repeat(32)),
            (s("new"), format!("base64:{}", b64_key(2))),
        ),
        (
            cfg(r#"{"codec":"node-gcm","iv_len":16}"#),
            (s("old"), "01".repeat(32)),
            (s("new"), "02".repeat(32)),
        ),
        (
            cfg(r#"{"codec":"version-byte","versions":{"1":"old","2":"new"}}"#),
            (s("old"), b64_key(1)),
            (s("new"), format!("hex:{}", "02".repeat(32))),
        ),
        (
            cfg(r#"{"codec":"sodium-prefix"}"#),
            (s("v1"), b64_key(1)),
            (s("v2"), b64_key(2)),
        ),
        (
            cfg(r#"{"codec":"sodium-prefix","algorithm":"xchacha20poly1305"}"#),
            (s("v1"), b64_key(1)),
            (s("v2"), b64_key(2)),
        ),
        (
            cfg(r#"{"codec":"json-envelope"}"#),
            (s(""), format!("kek-v1:{}", b64_key(1))),
            (s(""), format!("kek-v2:{}", b64_key(2))),
        ),
    ]
}

struct Setup {
    config: CodecConfig,
    codec: Box<dyn Codec>,
    /// Only the old key, primary.
    old_ring: Keyring,
    /// Old key decrypt-only, new key primary.
    ring: Keyring,
}

fn setups() -> &'static [Setup] {
    static S: OnceLock<Vec<Setup>> = OnceLock::new();
    S.get_or_init(|| {
        fixtures()
            .into_iter()
            .map(|(config, (oi, ot), (ni, nt))| {
                let old = parse_key(&config, &oi, &ot).unwrap();
                let new = parse_key(&config, &ni, &nt).unwrap();
                let old_id = old.0.as_str().to_owned();
                let new_id = new.0.as_str().to_owned();
                let old_ring =
                    Keyring::from_keys(vec![parse_key(&config, &oi, &ot).unwrap()], None, &[])
                        .unwrap();
                let ring = Keyring::from_keys(vec![old, new], Some(&new_id), &[]).unwrap();
                assert_ne!(old_id, new_id);
                Setup {
                    codec: build(&config).unwrap(),
                    config,
                    old_ring,
                    ring,
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn rotation_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..400)) {
        for s in setups() {
            let name = s.config.name();
            let old = s.codec.encrypt(&s.old_ring, &plaintext, &[]).unwrap();
            let opened = s.codec.decrypt(&s.ring, &old, &[]).unwrap();
            prop_assert_eq!(&opened.plaintext[..], &plaintext[..], "{}", name);
            let Reencryption::Rotated(new) = s.codec.reencrypt(&s.ring, &old, &[]).unwrap() else {
                panic!("{name}: expected a rotation");
            };
            let again = s.codec.decrypt(&s.ring, &new, &[]).unwrap();
            prop_assert_eq!(&again.plaintext[..], &plaintext[..], "{}", name);
            prop_assert_eq!(&again.key_id, s.ring.primary_id(), "{}", name);
            prop_assert!(matches!(s.codec.reencrypt(&s.ring, &new, &[]).unwrap(), Reencryption::AlreadyPrimary), "{}", name);
            if let Some(p) = s.codec.primary_prefix(&s.ring) {
                prop_assert!(new.starts_with(&p), "{}", name);
            }
            // The old ring alone cannot read the new value.
            prop_assert!(s.codec.decrypt(&s.old_ring, &new, &[]).is_err(), "{}", name);
        }
    }

    #[test]
    fn decoders_never_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        for s in setups() {
            let _ = s.codec.inspect(&input);
            let _ = s.codec.decrypt(&s.ring, &input, &[]);
            let _ = s.codec.reencrypt(&s.ring, &input, &[]);
        }
        let _ = detect(&input);
    }

    #[test]
    fn decoders_never_panic_on_mutated_values(
        plaintext in proptest::collection::vec(any::<u8>(), 0..64),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        for s in setups() {
            let mut v = s.codec.encrypt(&s.old_ring, &plaintext, &[]).unwrap();
            let i = at.index(v.len());
            v[i] = byte;
            let _ = s.codec.inspect(&v);
            let r = s.codec.reencrypt(&s.ring, &v, &[]);
            let _ = r;
            v.truncate(cut.index(v.len() + 1));
            let _ = s.codec.inspect(&v);
            let _ = s.codec.reencrypt(&s.ring, &v, &[]);
        }
    }
}

#[test]
fn key_errors_never_echo_material() {
    let secret = "c2VjcmV0LWtleS1tYXRlcmlhbC1kby1ub3QtbG9n";
    for s in setups() {
        for text in [
            secret.to_owned(),
            format!("base64:{secret}"),
            format!("k1.aesgcm256.{secret}"),
            format!("kek-v1:{secret}"),
            format!("{secret}{secret}"),
        ] {
            if let Err(e) = parse_key(&s.config, "k", &text) {
                let msg = e.to_string();
                assert!(!msg.contains(&secret[..12]), "{}: {msg}", s.config.name());
            }
        }
    }
}

#[test]
fn derived_ids_must_match() {
    let c = cfg(r#"{"codec":"cloak"}"#);
    let text = format!("k1.aesgcm256.{}", URL_SAFE.encode([1u8; 32]));
    let (id, _) = parse_key(&c, "", &text).unwrap();
    assert_eq!(id.as_str().len(), 8);
    assert!(parse_key(&c, id.as_str(), &text).is_ok());
    let e = parse_key(&c, "mine", &text).unwrap_err().to_string();
    assert!(e.contains(id.as_str()), "{e}");
    let v = cfg(r#"{"codec":"vault-transit"}"#);
    assert!(parse_key(&v, "key1", &b64_key(1)).is_err());
    assert!(parse_key(&v, "v0", &b64_key(1)).is_err());
    assert_eq!(parse_key(&v, "7", &b64_key(1)).unwrap().0.as_str(), "v7");
}

#[test]
fn trial_decryption_tries_primary_first_then_the_rest() {
    let s = &setups()[1]; // fernet
    let stranger = Keyring::from_keys(
        vec![parse_key(&s.config, "x", &URL_SAFE.encode([9u8; 32])).unwrap()],
        None,
        &[],
    )
    .unwrap();
    let v = s.codec.encrypt(&stranger, b"x", &[]).unwrap();
    let e = s.codec.decrypt(&s.ring, &v, &[]).unwrap_err();
    // Exactly two trial decryptions, the primary first.
    assert_eq!(
        e,
        FormatError::AuthenticationFailed("any of new, old".into())
    );
    let retired = Keyring::from_keys(
        vec![
            parse_key(&s.config, "old", &URL_SAFE.encode([1u8; 32])).unwrap(),
            parse_key(&s.config, "new", &URL_SAFE.encode([2u8; 32])).unwrap(),
        ],
        Some("new"),
        &["old".into()],
    )
    .unwrap();
    let old = s.codec.encrypt(&s.old_ring, b"x", &[]).unwrap();
    let e = s
        .codec
        .decrypt(&retired, &old, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("retired, not tried: old"), "{e}");
}

#[test]
fn wrong_key_kind_is_a_clear_error() {
    let fernet = &setups()[1];
    let laravel = &setups()[3];
    let v = laravel.codec.encrypt(&laravel.ring, b"x", &[]).unwrap();
    let e = laravel.codec.decrypt(&fernet.ring, &v, &[]).unwrap_err();
    assert_eq!(e.kind(), "algorithm_mismatch", "{e}");
    let e = fernet.codec.encrypt(&laravel.ring, b"x", &[]).unwrap_err();
    assert_eq!(e.kind(), "algorithm_mismatch", "{e}");
}

#[test]
fn rails_deterministic_values_are_refused_not_rewritten() {
    let s = setups()
        .iter()
        .find(|s| s.config.name() == "rails")
        .unwrap();
    let (_, _, old_key) = s.old_ring.keys().next().unwrap();
    let det =
        keyturn_codecs::rails::deterministic_value_for_tests(old_key, b"a@example.com").unwrap();
    let e = s.codec.reencrypt(&s.ring, &det, &[]).unwrap_err();
    assert_eq!(e.kind(), "not_rotatable");
    assert!(e.to_string().contains("deterministic"), "{e}");
    assert_eq!(
        s.codec.decrypt(&s.ring, &det, &[]).unwrap_err().kind(),
        "not_rotatable"
    );
    // Under the primary it is simply already rotated.
    assert!(matches!(
        s.codec.reencrypt(&s.old_ring, &det, &[]).unwrap(),
        Reencryption::AlreadyPrimary
    ));
}

#[test]
fn rails_reseal_keeps_headers_and_compresses_long_values() {
    let s = setups()
        .iter()
        .find(|s| s.config.name() == "rails")
        .unwrap();
    let long = vec![b'a'; 500];
    let v = s.codec.encrypt(&s.old_ring, &long, &[]).unwrap();
    let text = String::from_utf8(v.clone()).unwrap();
    assert!(
        text.contains(r#""c":true"#) && text.contains(r#""i":""#),
        "{text}"
    );
    let Reencryption::Rotated(new) = s.codec.reencrypt(&s.ring, &v, &[]).unwrap() else {
        panic!()
    };
    let new_text = String::from_utf8(new).unwrap();
    assert!(new_text.contains(r#""c":true"#), "{new_text}");
    match s.codec.inspect(new_text.as_bytes()) {
        Inspection::UnderKeyOwned(id) => assert_eq!(id, *s.ring.primary_id()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fernet_keeps_the_timestamp() {
    let s = &setups()[1];
    let v = s.codec.encrypt(&s.old_ring, b"x", &[]).unwrap();
    let before = s.codec.decrypt(&s.ring, &v, &[]).unwrap().carry;
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let Reencryption::Rotated(new) = s.codec.reencrypt(&s.ring, &v, &[]).unwrap() else {
        panic!()
    };
    assert_eq!(s.codec.decrypt(&s.ring, &new, &[]).unwrap().carry, before);
}

#[test]
fn configs_parse_and_reject_nonsense() {
    for s in setups() {
        let json = serde_json::to_string(&s.config).unwrap();
        assert_eq!(cfg(&json), s.config);
    }
    for bad in [
        r#"{"codec":"rot13"}"#,
        r#"{"codec":"fernet","extra":1}"#,
        r#"{"codec":"rails"}"#,
        r#"{"codec":"laravel","cipher":"aes-128-ecb"}"#,
    ] {
        assert!(serde_json::from_str::<CodecConfig>(bad).is_err(), "{bad}");
    }
    for bad in [
        r#"{"codec":"node-gcm","iv_len":13}"#,
        r#"{"codec":"version-byte","versions":{}}"#,
        r#"{"codec":"version-byte","versions":{"300":"a"}}"#,
        r#"{"codec":"version-byte","versions":{"1":"a","0x01":"b"}}"#,
        r#"{"codec":"lockbox","table":"","column":"x"}"#,
    ] {
        assert!(build(&cfg(bad)).is_err(), "{bad}");
    }
}

#[test]
fn detection_of_formats_and_plaintext() {
    for s in setups() {
        let v = s.codec.encrypt(&s.ring, b"hello", &[]).unwrap();
        let want = match s.config.name() {
            "native" => Detected::Native,
            "fernet" | "django-fernet-fields" => Detected::Fernet,
            "laravel" => Detected::Laravel,
            "rails" => Detected::Rails,
            "vault-transit" => Detected::VaultTransit,
            "cloak" => Detected::Cloak,
            "node-gcm" => Detected::NodeGcm,
            "sodium-prefix" => Detected::KeyPrefixedBase64,
            "json-envelope" => Detected::JsonEnvelope,
            _ => continue,
        };
        assert_eq!(detect(&v), want, "{}", s.config.name());
        for plain in [&b"hello world"[..], b"", b"alice@example.com", b"{\"a\":1}"] {
            assert_eq!(detect(plain), Detected::Unrecognised);
            assert!(
                matches!(s.codec.inspect(plain), Inspection::NotThisFormat),
                "{} on {plain:?}",
                s.config.name()
            );
        }
    }
}

#[test]
fn multi_column_split_codec() {
    let k = |b| SecretKey::from_bytes(Algorithm::Aes256Gcm, &[b; 32]).unwrap();
    let old_ring = Keyring::from_keys(vec![(KeyId::new("k1").unwrap(), k(1))], None, &[]).unwrap();
    let ring = Keyring::from_keys(
        vec![
            (KeyId::new("k1").unwrap(), k(1)),
            (KeyId::new("k2").unwrap(), k(2)),
        ],
        Some("k2"),
        &[],
    )
    .unwrap();
    let c = SplitColumnsCodec;
    let cells = c.encrypt_row(&old_ring, b"secret", &[]).unwrap();
    assert_eq!(cells.key_id.as_deref(), Some("k1"));
    assert_eq!(cells.iv.as_ref().unwrap().len(), 12);
    let RowReencryption::Rotated(new) = c.reencrypt_row(&ring, &cells, &[]).unwrap() else {
        panic!()
    };
    assert_eq!(new.key_id.as_deref(), Some("k2"));
    assert_eq!(
        &c.decrypt_row(&ring, &new, &[]).unwrap().plaintext[..],
        b"secret"
    );
    assert!(matches!(
        c.reencrypt_row(&ring, &new, &[]).unwrap(),
        RowReencryption::AlreadyPrimary
    ));
    // Moving a ciphertext to another key id's row, or tampering, fails.
    let mut swapped = new.clone();
    swapped.key_id = Some("k1".into());
    assert_eq!(
        c.decrypt_row(&ring, &swapped, &[]).unwrap_err().kind(),
        "authentication_failed"
    );
    let mut short = new.clone();
    short.iv = Some(vec![0; 8]);
    assert_eq!(
        c.reencrypt_row(&ring, &short, &[]).unwrap_err().kind(),
        "cell_length"
    );
    assert!(matches!(
        c.inspect_row(&Cells::default()),
        Inspection::NotThisFormat
    ));
    assert!(!format!("{new:?}").contains("secret"));
}

#[test]
fn rails_reseal_rejects_foreign_carry() {
    use keyturn_format::{Carry, Encoding, Opened};
    let s = setups()
        .iter()
        .find(|s| s.config.name() == "rails")
        .unwrap();
    for bits in [0x1200u64, 0xFF00, 0xFFFF_FFFF] {
        let opened = Opened {
            plaintext: zeroize::Zeroizing::new(b"x".to_vec()),
            key_id: KeyId::new("abcd").unwrap(),
            encoding: Encoding::Text,
            carry: Carry::Bits(bits),
        };
        assert_eq!(
            s.codec.reseal(&s.ring, &opened, &[]).unwrap_err().kind(),
            "not_rotatable"
        );
    }
}
