//! Re-encryption of one field (decrypt under the old key, encrypt under the
//! primary) beside raw AEAD seal+open of the same size, in the same run.
//!
//! Run: cargo bench -p keyturn-format --bench reencrypt -- --warm-up-time 1 --measurement-time 3
//!
//! Every benchmark counts one element per iteration, so criterion's
//! "thrpt" column is re-encryptions (or seal+open pairs, or nonces) per
//! second. See BENCHMARKS.md at the repository root for recorded figures.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keyturn_format::{Algorithm, Encoding, KeyId, KeyState, Keyring, Reencrypted, SecretKey, v1};
use std::hint::black_box;

/// A realistic context: table, column, primary key value.
const CONTEXT: [&[u8]; 3] = [b"users", b"email", b"1234567"];

/// Length of the associated data keyturn builds for this context and key id
/// "k1"/"k2": header (magic, version, alg, id length, 2-byte id, ct length)
/// plus three length-prefixed parts.
fn aad_len() -> usize {
    (2 + 1 + 1 + 1 + 2 + 4) + CONTEXT.iter().map(|p| 4 + p.len()).sum::<usize>()
}

fn ring(alg: Algorithm) -> Keyring {
    Keyring::builder()
        .add(
            KeyId::new("k1").unwrap(),
            SecretKey::from_bytes(alg, &[1u8; 32]).unwrap(),
            KeyState::DecryptOnly,
        )
        .add(
            KeyId::new("k2").unwrap(),
            SecretKey::from_bytes(alg, &[2u8; 32]).unwrap(),
            KeyState::Primary,
        )
        .build()
        .unwrap()
}

fn old_value(alg: Algorithm, plaintext: &[u8], encoding: Encoding) -> Vec<u8> {
    let old = SecretKey::from_bytes(alg, &[1u8; 32]).unwrap();
    v1::seal(
        &old,
        &KeyId::new("k1").unwrap(),
        plaintext,
        &CONTEXT,
        encoding,
    )
    .unwrap()
}

fn bench_size(c: &mut Criterion, size: usize) {
    let plaintext = vec![0x5au8; size];
    let mut g = c.benchmark_group(format!("reencrypt_{size}B"));
    g.throughput(Throughput::Elements(1));

    for (alg, alg_name) in [
        (Algorithm::Aes256Gcm, "aes256gcm"),
        (Algorithm::XChaCha20Poly1305, "xchacha20poly1305"),
    ] {
        let ring = ring(alg);
        for encoding in [Encoding::Binary, Encoding::Text] {
            let old = old_value(alg, &plaintext, encoding);
            // Sanity: the benchmark really rotates.
            assert!(matches!(
                ring.reencrypt(&old, &CONTEXT).unwrap(),
                Reencrypted::Rotated(_)
            ));
            g.bench_function(format!("keyturn_{alg_name}_{}", encoding.name()), |b| {
                b.iter(|| {
                    ring.reencrypt(black_box(&old), black_box(&CONTEXT))
                        .unwrap()
                })
            });
        }
    }

    // Raw AES-256-GCM through aws-lc-rs: one seal and one open of the same
    // plaintext size with the same amount of associated data, in place, no
    // allocation, fixed nonce (no random generation): the floor under what a
    // re-encryption can cost.
    let aad = vec![0x11u8; aad_len()];
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[3u8; 32]).unwrap());
    let mut buf = plaintext.clone();
    g.bench_function("raw_aes256gcm_seal_open", |b| {
        b.iter(|| {
            buf.copy_from_slice(&plaintext);
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key([7u8; 12]),
                    Aad::from(black_box(&aad[..])),
                    &mut buf,
                )
                .unwrap();
            let mut sealed = std::mem::take(&mut buf);
            sealed.extend_from_slice(tag.as_ref());
            let n = key
                .open_in_place(
                    Nonce::assume_unique_for_key([7u8; 12]),
                    Aad::from(black_box(&aad[..])),
                    &mut sealed,
                )
                .unwrap()
                .len();
            sealed.truncate(n);
            buf = sealed;
            black_box(&buf);
        })
    });

    // Raw XChaCha20-Poly1305 (RustCrypto, the implementation keyturn uses).
    let xkey = XChaCha20Poly1305::new(&[3u8; 32].into());
    let xnonce = XNonce::from([7u8; 24]);
    let mut xbuf = plaintext.clone();
    g.bench_function("raw_xchacha20poly1305_seal_open", |b| {
        b.iter(|| {
            xbuf.copy_from_slice(&plaintext);
            let tag = xkey
                .encrypt_in_place_detached(&xnonce, black_box(&aad[..]), &mut xbuf)
                .unwrap();
            xkey.decrypt_in_place_detached(&xnonce, black_box(&aad[..]), &mut xbuf, &tag)
                .unwrap();
            black_box(&xbuf);
        })
    });
    g.finish();
}

fn reencrypt(c: &mut Criterion) {
    bench_size(c, 64);
    bench_size(c, 1024);
}

fn nonces(c: &mut Criterion) {
    let mut g = c.benchmark_group("nonce");
    g.throughput(Throughput::Elements(1));
    let mut n12 = [0u8; 12];
    g.bench_function("keyturn_fill_nonce_12B", |b| {
        b.iter(|| {
            v1::fill_nonce(black_box(&mut n12)).unwrap();
        })
    });
    let mut n24 = [0u8; 24];
    g.bench_function("keyturn_fill_nonce_24B", |b| {
        b.iter(|| {
            v1::fill_nonce(black_box(&mut n24)).unwrap();
        })
    });
    g.bench_function("aws_lc_rand_fill_12B", |b| {
        b.iter(|| {
            aws_lc_rs::rand::fill(black_box(&mut n12)).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, reencrypt, nonces);
criterion_main!(benches);
