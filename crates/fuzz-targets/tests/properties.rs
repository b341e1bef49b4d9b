//! Property tests of the parsers the fuzz targets cover, from the other
//! side: generated values encode, then parse back to themselves.
//!
//! - format v1, both encodings: seal → parse gives the header, nonce and
//!   lengths that went in, the bytes are exactly the documented layout, and
//!   open gives the plaintext back;
//! - key specs: print → parse gives the same id, algorithm and material,
//!   and `parse_many` reads any mix of separators and comment lines;
//! - packed cells: pack → unpack gives the cells back, and packing is
//!   prefix-free cell by cell; `PackedCells` round-trips `Cells`;
//! - and every fuzz target on arbitrary bytes (a cheap smoke run on stable).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyturn_codecs::multi::Cells;
use keyturn_codecs::{CodecConfig, build_multi};
use keyturn_db::cells::{pack, unpack};
use keyturn_engine::multi::PackedCells;
use keyturn_format::v1::{self, Encoding};
use keyturn_format::{ALGORITHMS, Algorithm, KeyId, KeySpec, SecretKey};
use proptest::prelude::*;
use std::sync::Arc;

fn key_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,31}"
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(ALGORITHMS.to_vec())
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![Just(Encoding::Binary), Just(Encoding::Text)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn v1_seal_then_parse(
        id in key_id(),
        alg in algorithm(),
        enc in encoding(),
        material in prop::array::uniform32(any::<u8>()),
        plaintext in prop::collection::vec(any::<u8>(), 0..600),
        context in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..4),
        nonce_seed in any::<u8>(),
    ) {
        let kid = KeyId::new(&id).unwrap();
        let key = SecretKey::from_bytes(alg, &material).unwrap();
        let nonce: Vec<u8> = (0..alg.nonce_len()).map(|i| nonce_seed.wrapping_add(i as u8)).collect();
        let ctx: Vec<&[u8]> = context.iter().map(Vec::as_slice).collect();
        let stored = v1::seal_with_nonce(&key, &kid, &plaintext, &ctx, enc, &nonce).unwrap();
        let p = v1::parse(&stored).unwrap();
        prop_assert_eq!(p.header.encoding, enc);
        prop_assert_eq!(p.header.algorithm, alg);
        prop_assert_eq!(p.header.key_id, id.as_str());
        prop_assert_eq!(p.nonce(), &nonce[..]);
        prop_assert_eq!(p.plaintext_len(), plaintext.len());
        prop_assert_eq!(v1::peek(&stored).unwrap(), p.header);
        // The documented layout, byte for byte.
        let mut body = (plaintext.len() as u32).to_be_bytes().to_vec();
        body.extend_from_slice(p.nonce());
        body.extend_from_slice(p.ciphertext());
        body.extend_from_slice(p.tag());
        let want = match enc {
            Encoding::Binary => {
                let mut b = vec![0x8B, 0x4B, 1, alg.byte(), id.len() as u8];
                b.extend_from_slice(id.as_bytes());
                b.extend_from_slice(&body);
                b
            }
            Encoding::Text => format!(
                "kt1:{id}:{}:{}",
                alg.text_token() as char,
                URL_SAFE_NO_PAD.encode(&body)
            )
            .into_bytes(),
        };
        prop_assert_eq!(&stored, &want);
        prop_assert_eq!(&v1::open(&key, &p, &ctx).unwrap()[..], &plaintext[..]);
        // Cut anywhere, a value no longer parses.
        if !stored.is_empty() {
            let cut = stored.len() / 2;
            prop_assert!(v1::parse(&stored[..cut]).is_err());
        }
    }

    #[test]
    fn key_spec_print_then_parse(
        id in key_id(),
        alg in algorithm(),
        material in prop::array::uniform32(any::<u8>()),
    ) {
        let spec = KeySpec {
            id: KeyId::new(&id).unwrap(),
            key: SecretKey::from_bytes(alg, &material).unwrap(),
        };
        let printed = spec.to_spec_string();
        let back = KeySpec::parse(&printed).unwrap();
        prop_assert_eq!(back.id.as_str(), id.as_str());
        prop_assert_eq!(back.key.algorithm(), alg);
        prop_assert_eq!(back.key.expose_bytes(), &material[..]);
        prop_assert_eq!(&*back.to_spec_string(), &*printed);
    }

    #[test]
    fn key_specs_parse_many_with_any_separators(
        keys in prop::collection::vec((key_id(), algorithm(), prop::array::uniform32(any::<u8>())), 1..6),
        seps in prop::collection::vec(prop::sample::select(vec![" ", ",", "\n", " , ", "\n# comment\n", "\t"]), 6),
    ) {
        let mut text = String::from("# keyturn keys\n");
        for (i, (id, alg, m)) in keys.iter().enumerate() {
            let s = KeySpec {
                id: KeyId::new(id).unwrap(),
                key: SecretKey::from_bytes(*alg, m).unwrap(),
            };
            text.push_str(&s.to_spec_string());
            text.push_str(seps[i % seps.len()]);
        }
        let many = KeySpec::parse_many(&text).unwrap();
        prop_assert_eq!(many.len(), keys.len());
        for (got, (id, alg, m)) in many.iter().zip(&keys) {
            prop_assert_eq!(got.id.as_str(), id.as_str());
            prop_assert_eq!(got.key.algorithm(), *alg);
            prop_assert_eq!(got.key.expose_bytes(), &m[..]);
        }
    }

    #[test]
    fn cells_pack_then_unpack(
        cells in prop::collection::vec(prop::option::of(prop::collection::vec(any::<u8>(), 0..80)), 0..6),
        split in any::<prop::sample::Index>(),
    ) {
        let refs: Vec<Option<&[u8]>> = cells.iter().map(|c| c.as_deref()).collect();
        let packed = pack(refs.iter().copied());
        prop_assert_eq!(unpack(&packed).unwrap(), refs.clone());
        // Prefix-free per cell: the leading cells pack to a prefix.
        let k = if refs.is_empty() { 0 } else { split.index(refs.len() + 1) };
        prop_assert!(packed.starts_with(&pack(refs[..k].iter().copied())));
        // And a packing cut inside a cell no longer unpacks to the cells.
        if !packed.is_empty() {
            let cut = &packed[..packed.len() - 1];
            prop_assert!(unpack(cut).map(|c| c != refs).unwrap_or(true));
        }
    }

    #[test]
    fn packed_cells_round_trip(
        key_id in prop::option::of(key_id()),
        ciphertext in prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
        iv in prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
        wrapped_key in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
    ) {
        for (json, wraps) in [(r#"{"codec":"split-columns"}"#, false), (r#"{"codec":"envelope"}"#, true)] {
            let config: CodecConfig = serde_json::from_str(json).unwrap();
            let p = PackedCells::new(Arc::from(build_multi(&config).unwrap()));
            let cells = Cells {
                ciphertext: ciphertext.clone(),
                iv: iv.clone(),
                key_id: key_id.clone(),
                wrapped_key: if wraps { wrapped_key.clone() } else { None },
            };
            let packed = p.pack(&cells);
            prop_assert_eq!(p.unpack(&packed).unwrap(), cells);
        }
    }

    #[test]
    fn targets_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        for (_, f) in keyturn_fuzz_targets::TARGETS {
            f(&data);
        }
    }
}
