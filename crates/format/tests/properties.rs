//! Property tests of format v1: round trips over random inputs, and decoders
//! that never panic and never accept a tampered value.

use keyturn_format::{
    ALGORITHMS, Algorithm, Codec, Encoding, KeyId, KeyState, Keyring, NativeCodec, Reencrypted,
    SecretKey, v1,
};
use proptest::prelude::*;

fn alg() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(ALGORITHMS.to_vec())
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![Just(Encoding::Binary), Just(Encoding::Text)]
}

fn key_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,31}"
}

fn context() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..4)
}

fn refs(c: &[Vec<u8>]) -> Vec<&[u8]> {
    c.iter().map(|p| &p[..]).collect()
}

fn ring_of(id: &str, alg: Algorithm, material: [u8; 32]) -> Keyring {
    Keyring::builder()
        .add(
            KeyId::new(id).unwrap(),
            SecretKey::from_bytes(alg, &material).unwrap(),
            KeyState::Primary,
        )
        .build()
        .unwrap()
}

/// Calls every decoder on `bytes`; none may panic. Returns the keyring's
/// decryption outcome.
fn decode_all(ring: &Keyring, bytes: &[u8], context: &[&[u8]]) -> Option<Vec<u8>> {
    let _ = v1::peek(bytes);
    if let Ok(p) = v1::parse(bytes) {
        // Accessors of a parsed value stay in bounds.
        let _ = (p.nonce(), p.ciphertext(), p.tag(), p.plaintext_len());
    }
    for enc in [Encoding::Binary, Encoding::Text] {
        let codec = NativeCodec { encoding: enc };
        let _ = codec.inspect(bytes);
        let _ = codec.decrypt(ring, bytes, context);
        let _ = codec.reencrypt(ring, bytes, context);
    }
    let _ = ring.needs_rotation(bytes);
    let _ = ring.reencrypt(bytes, context);
    ring.decrypt(bytes, context).ok().map(|p| p.to_vec())
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Append(Vec<u8>),
    Replace(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    Insert(prop::sample::Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Append),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

fn apply(v: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = v.to_vec();
    match m {
        Mutation::FlipBit(i, b) => out[i.index(v.len())] ^= 1 << b,
        Mutation::Truncate(i) => out.truncate(i.index(v.len())),
        Mutation::Append(extra) => out.extend_from_slice(extra),
        Mutation::Replace(i, b) => out[i.index(v.len())] = *b,
        Mutation::Remove(i) => {
            out.remove(i.index(v.len()));
        }
        Mutation::Insert(i, b) => out.insert(i.index(v.len() + 1), *b),
    }
    out
}

/// Inputs that get past the first checks more often than uniform bytes.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let tail = prop::collection::vec(any::<u8>(), 0..200);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        tail.clone()
            .prop_map(|t| [&v1::MAGIC[..], &[1], &t].concat()),
        (0u8..4, 0u8..40, tail.clone())
            .prop_map(|(a, l, t)| [&v1::MAGIC[..], &[1, a, l], &t].concat()),
        "kt[0-9]{0,3}:[A-Za-z0-9._:-]{0,40}:[axz]?:[A-Za-z0-9_=+/-]{0,120}"
            .prop_map(String::into_bytes),
    ]
}

// 256 cases each by default; PROPTEST_CASES=N runs more.
proptest! {

    #[test]
    fn round_trip(
        plaintext in prop::collection::vec(any::<u8>(), 0..4096),
        ctx in context(),
        id in key_id(),
        alg in alg(),
        enc in encoding(),
        material in any::<[u8; 32]>(),
    ) {
        let ring = ring_of(&id, alg, material);
        let ctx = refs(&ctx);
        let stored = ring.encrypt(&plaintext, &ctx, enc).unwrap();
        let h = v1::peek(&stored).unwrap();
        prop_assert_eq!(h.key_id, id.as_str());
        prop_assert_eq!(h.algorithm, alg);
        prop_assert_eq!(h.encoding, enc);
        prop_assert!(stored.starts_with(&v1::key_prefix(alg, &KeyId::new(&id).unwrap(), enc)));
        prop_assert_eq!(&ring.decrypt(&stored, &ctx).unwrap()[..], &plaintext[..]);
        if enc == Encoding::Text {
            prop_assert!(stored.iter().all(|c| c.is_ascii_graphic()));
        }
    }

    #[test]
    fn reencrypt_round_trip(
        plaintext in prop::collection::vec(any::<u8>(), 0..4096),
        ctx in context(),
        old_alg in alg(),
        new_alg in alg(),
        enc in encoding(),
    ) {
        let ctx = refs(&ctx);
        let old = ring_of("old", old_alg, [1; 32]);
        let stored = old.encrypt(&plaintext, &ctx, enc).unwrap();
        let ring = Keyring::builder()
            .add(KeyId::new("old").unwrap(), SecretKey::from_bytes(old_alg, &[1; 32]).unwrap(), KeyState::DecryptOnly)
            .add(KeyId::new("new").unwrap(), SecretKey::from_bytes(new_alg, &[2; 32]).unwrap(), KeyState::Primary)
            .build()
            .unwrap();
        let Reencrypted::Rotated(new) = ring.reencrypt(&stored, &ctx).unwrap() else {
            panic!("value under the old key was not rotated");
        };
        let h = v1::peek(&new).unwrap();
        prop_assert_eq!((h.key_id, h.algorithm, h.encoding), ("new", new_alg, enc));
        prop_assert_eq!(&ring.decrypt(&new, &ctx).unwrap()[..], &plaintext[..]);
        prop_assert!(matches!(ring.reencrypt(&new, &ctx).unwrap(), Reencrypted::AlreadyPrimary));
        // The old ring cannot read it, and a wrong context fails.
        prop_assert!(old.decrypt(&new, &ctx).is_err());
        let mut other = ctx.clone();
        other.push(b"x");
        prop_assert_eq!(ring.decrypt(&new, &other).unwrap_err().kind(), "authentication_failed");
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in hostile_bytes(), alg in alg()) {
        let ring = ring_of("k1", alg, [9; 32]);
        prop_assert!(decode_all(&ring, &bytes, &[]).is_none());
    }

    #[test]
    fn mutated_values_never_decrypt(
        plaintext in prop::collection::vec(any::<u8>(), 0..300),
        ctx in context(),
        alg in alg(),
        enc in encoding(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let ring = ring_of("k1", alg, [7; 32]);
        let ctx = refs(&ctx);
        let stored = ring.encrypt(&plaintext, &ctx, enc).unwrap();
        let mut bad = stored.clone();
        for m in &mutations {
            if bad.is_empty() {
                break;
            }
            bad = apply(&bad, m);
        }
        let got = decode_all(&ring, &bad, &ctx);
        if bad == stored {
            prop_assert_eq!(got.as_deref(), Some(&plaintext[..]));
        } else {
            // Any change to a stored value must be detected, whatever it
            // turns the value into.
            prop_assert!(got.is_none(), "a modified value decrypted");
        }
    }
}

/// The associated data as docs/FORMAT.md defines it, built independently of
/// the crate: binary header up to the ciphertext length, then each context
/// part as u32 BE length ‖ bytes.
fn spec_aad(header: &[u8], ctx: &[Vec<u8>]) -> Vec<u8> {
    let mut aad = header.to_vec();
    for p in ctx {
        aad.extend_from_slice(&(p.len() as u32).to_be_bytes());
        aad.extend_from_slice(p);
    }
    aad
}

proptest! {
    /// Our XChaCha20-Poly1305 (HChaCha20 + aws-lc ChaCha20-Poly1305) gives
    /// the same bytes as RustCrypto's, and our AES-256-GCM the same as
    /// aws-lc's AES-256-GCM used directly, for the AAD of the spec.
    #[test]
    fn aead_matches_independent_implementations(
        plaintext in prop::collection::vec(any::<u8>(), 0..600),
        ctx in context(),
        material in any::<[u8; 32]>(),
        nonce24 in any::<[u8; 24]>(),
        alg in alg(),
    ) {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        let id = KeyId::new("k1").unwrap();
        let key = SecretKey::from_bytes(alg, &material).unwrap();
        let nonce = &nonce24[..alg.nonce_len()];
        let stored =
            v1::seal_with_nonce(&key, &id, &plaintext, &refs(&ctx), Encoding::Binary, nonce).unwrap();
        let header_len = 5 + 2 + 4;
        let aad = spec_aad(&stored[..header_len], &ctx);
        let body = &stored[header_len + nonce.len()..];
        let mut buf = plaintext.clone();
        let tag: Vec<u8> = match alg {
            Algorithm::XChaCha20Poly1305 => {
                let c = chacha20poly1305::XChaCha20Poly1305::new(&material.into());
                c.encrypt_in_place_detached(nonce.into(), &aad, &mut buf).unwrap().to_vec()
            }
            _ => {
                use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
                let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &material).unwrap());
                k.seal_in_place_separate_tag(
                    Nonce::try_assume_unique_for_key(nonce).unwrap(),
                    Aad::from(&aad),
                    &mut buf,
                )
                .unwrap()
                .as_ref()
                .to_vec()
            }
        };
        prop_assert_eq!(&body[..plaintext.len()], &buf[..]);
        prop_assert_eq!(&body[plaintext.len()..], &tag[..]);
    }
}
