//! Runs every test vector in `testdata/v1/` (see docs/FORMAT.md, "Test
//! vectors"): builds a keyring from the file's key specs, decrypts, and
//! checks the exact outcome. Valid vectors are also re-sealed with their own
//! nonce and must reproduce the stored value byte for byte.

use keyturn_format::{
    Codec, FormatError, Inspection, KeyId, KeySpec, KeyState, Keyring, NativeCodec, Reencrypted,
    SecretKey, v1,
};
use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/v1")
}

fn str_list(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .map(|l| {
            l.as_array()
                .unwrap_or_else(|| panic!("{field} is not a list"))
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn plaintext(v: &Value) -> Vec<u8> {
    if let Some(h) = v.get("plaintext_hex") {
        return hex::decode(h.as_str().unwrap()).unwrap();
    }
    let r = &v["plaintext_repeat"];
    let byte = hex::decode(r["byte_hex"].as_str().unwrap()).unwrap();
    assert_eq!(byte.len(), 1);
    vec![byte[0]; r["count"].as_u64().unwrap() as usize]
}

fn stored(v: &Value) -> Vec<u8> {
    match v["encoding"].as_str().unwrap() {
        "binary" => hex::decode(v["ciphertext_hex"].as_str().unwrap()).unwrap(),
        "text" => v["ciphertext"].as_str().unwrap().as_bytes().to_vec(),
        other => panic!("unknown encoding {other}"),
    }
}

/// The vector's keys, none of them primary, plus a fresh primary key: every
/// value of the vector must be re-encrypted (or fail as when decrypting).
fn rotation_ring(v: &Value) -> Keyring {
    let retired = str_list(v, "retired");
    let mut b = Keyring::builder();
    for s in str_list(v, "keys") {
        let spec = KeySpec::parse(&s).unwrap();
        let state = if retired.iter().any(|r| r == spec.id.as_str()) {
            KeyState::Retired
        } else {
            KeyState::DecryptOnly
        };
        b = b.add(spec.id, spec.key, state);
    }
    b.add(
        KeyId::new("rotation-target").unwrap(),
        SecretKey::from_bytes(keyturn_format::Algorithm::Aes256Gcm, &[0xee; 32]).unwrap(),
        KeyState::Primary,
    )
    .build()
    .unwrap()
}

/// The ring a vector describes, and each key's id → SecretKey copy.
fn ring(v: &Value) -> (Keyring, Vec<(String, SecretKey)>) {
    let specs = str_list(v, "keys");
    let mut keys = Vec::new();
    let mut copies = Vec::new();
    for s in &specs {
        let spec = KeySpec::parse(s).unwrap();
        let copy = SecretKey::from_bytes(spec.key.algorithm(), spec.key.expose_bytes()).unwrap();
        copies.push((spec.id.as_str().to_owned(), copy));
        keys.push((spec.id, spec.key));
    }
    let primary = v["primary"].as_str().unwrap();
    let retired = str_list(v, "retired");
    (
        Keyring::from_keys(keys, Some(primary), &retired).unwrap(),
        copies,
    )
}

fn check(name: &str, v: &Value) {
    let stored = stored(v);
    let context_owned: Vec<Vec<u8>> = str_list(v, "context")
        .iter()
        .map(|h| hex::decode(h).unwrap())
        .collect();
    let context: Vec<&[u8]> = context_owned.iter().map(|p| &p[..]).collect();
    let (ring, copies) = ring(v);
    let outcome = ring.decrypt(&stored, &context);
    // The codec path must agree with the keyring.
    let codec = NativeCodec {
        encoding: v1::Encoding::Binary,
    };
    let via_codec = codec.decrypt(&ring, &stored, &context);
    // Re-encryption to a new primary decrypts the same way.
    let rotation = rotation_ring(v);
    let rotated = rotation.reencrypt(&stored, &context);

    match (v.get("expected"), v.get("expected_error")) {
        (Some(ok), None) => {
            assert_eq!(ok, "ok", "{name}");
            let pt = plaintext(v);
            let got = outcome.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(*got == pt, "{name}: plaintext differs");
            assert!(*via_codec.unwrap().plaintext == pt, "{name}: codec differs");
            let Ok(Reencrypted::Rotated(new)) = rotated else {
                panic!("{name}: not re-encrypted: {rotated:?}");
            };
            assert!(v1::peek(&new).unwrap().encoding == v1::peek(&stored).unwrap().encoding);
            assert!(
                *rotation.decrypt(&new, &context).unwrap() == pt,
                "{name}: rotated value differs"
            );

            // Re-seal with the same key and nonce: identical bytes.
            let parsed = v1::parse(&stored).unwrap();
            assert_eq!(parsed.header.encoding.name(), v["encoding"], "{name}");
            if let Some(n) = v.get("nonce_hex") {
                assert_eq!(hex::encode(parsed.nonce()), n.as_str().unwrap(), "{name}");
            }
            let id = parsed.header.key_id;
            let key = &copies.iter().find(|(i, _)| i == id).unwrap().1;
            let again = v1::seal_with_nonce(
                key,
                &KeyId::new(id).unwrap(),
                &pt,
                &context,
                parsed.header.encoding,
                parsed.nonce(),
            )
            .unwrap();
            assert!(again == stored, "{name}: re-sealing gave other bytes");
            assert_eq!(
                NativeCodec {
                    encoding: parsed.header.encoding
                }
                .inspect(&stored),
                Inspection::UnderKey(id),
                "{name}"
            );
        }
        (None, Some(kind)) => {
            let kind = kind.as_str().unwrap();
            let err = match outcome {
                Ok(_) => panic!("{name}: decrypted, expected {kind}"),
                Err(e) => e,
            };
            assert_eq!(err.kind(), kind, "{name}: got {err}");
            assert_eq!(
                via_codec.unwrap_err().kind(),
                kind,
                "{name}: codec disagrees"
            );
            assert_eq!(
                rotated.unwrap_err(),
                err,
                "{name}: re-encryption fails otherwise than decryption"
            );
            if let Some(field) = v.get("expected_field") {
                match &err {
                    FormatError::Truncated(f) => {
                        assert_eq!(f.as_str(), field.as_str().unwrap(), "{name}")
                    }
                    other => panic!("{name}: expected truncation, got {other}"),
                }
            }
        }
        _ => panic!("{name}: needs exactly one of expected / expected_error"),
    }
}

#[test]
fn every_vector() {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("testdata/v1 is missing")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 20,
        "only {} vectors in testdata/v1",
        names.len()
    );
    let (mut ok, mut failing) = (0, 0);
    for p in &names {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            v["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}: no description"
        );
        check(&name, &v);
        if v.get("expected").is_some() {
            ok += 1;
        } else {
            failing += 1;
        }
    }
    assert!(ok >= 8, "{ok} valid vectors");
    assert!(failing >= 12, "{failing} failing vectors");
}
