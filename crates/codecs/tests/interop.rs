//! Interop, second half: keyturn rotates values that the real libraries
//! wrote, and writes the results for the real libraries to read back.
//!
//! Ignored by default: run through `scripts/interop/check.sh`, which
//! generates fresh inputs with the real libraries into
//! `$KEYTURN_INTEROP_DIR/input`, runs this test, then decrypts
//! `$KEYTURN_INTEROP_DIR/rotated` with the real libraries using only the new
//! (primary) key.

mod common;

use common::*;
use keyturn_codecs::{build, parse_key};
use keyturn_format::{Carry, Reencryption};
use serde_json::json;
use std::path::PathBuf;

#[test]
#[ignore = "needs inputs from scripts/interop/check.sh"]
fn rotate_real_library_values() {
    let dir = PathBuf::from(
        std::env::var("KEYTURN_INTEROP_DIR").expect("set KEYTURN_INTEROP_DIR (see check.sh)"),
    );
    let input = dir.join("input");
    let files = vector_files(&input);
    assert!(!files.is_empty(), "no inputs under {}", input.display());
    let mut rotated_total = 0;
    for path in files {
        let vf = load(&path);
        let codec = build(&vf.codec).unwrap();
        let ring = vf.ring();
        let primary = vf
            .keys
            .iter()
            .find(|k| {
                parse_key(&vf.codec, &k.id, &k.text)
                    .map(|(id, _)| id == *ring.primary_id())
                    .unwrap_or(false)
            })
            .expect("primary key among the keys");
        let mut values = Vec::new();
        for case in vf.cases.iter().filter(|c| c.error.is_none()) {
            let stored = case.stored_bytes();
            let plaintext = case.plaintext.as_deref().unwrap();
            let new = match codec.reencrypt(&ring, &stored, &[]).unwrap() {
                Reencryption::Rotated(new) => new,
                Reencryption::AlreadyPrimary => continue,
            };
            let opened = codec.decrypt(&ring, &new, &[]).unwrap();
            assert_eq!(&opened.plaintext[..], plaintext.as_bytes());
            let mut v = json!({ "name": case.name, "plaintext": plaintext });
            if case.stored_hex.is_some() {
                v["stored_hex"] = json!(hex::encode(&new));
            } else {
                v["stored"] = json!(String::from_utf8(new).unwrap());
            }
            if let Carry::Timestamp(t) = opened.carry {
                v["timestamp"] = json!(t);
            }
            values.push(v);
        }
        assert!(!values.is_empty(), "{}: nothing rotated", path.display());
        // The odd values a real table holds next to these: each is refused
        // (a bad row), never rotated, and its error quotes none of it.
        if let Some(good) = vf.cases.iter().find(|c| c.error.is_none()) {
            let good = good.stored_bytes();
            let mut wrong_prefix = b"#".to_vec();
            wrong_prefix.extend_from_slice(&good);
            let odd: Vec<(&str, Vec<u8>)> = vec![
                ("empty", Vec::new()),
                ("truncated", good[..good.len() / 2].to_vec()),
                ("wrong prefix", wrong_prefix),
                ("plaintext", b"SSN 078-05-1120".to_vec()),
                ("plaintext a:b", b"user:admin".to_vec()),
                (
                    "JSON, not an envelope",
                    br#"{"key_id":"kek-v1","note":"x"}"#.to_vec(),
                ),
            ];
            for (what, v) in odd {
                match codec.reencrypt(&ring, &v, &[]) {
                    Err(e) => {
                        let msg = e.to_string();
                        assert!(
                            !msg.contains("078-05") && !msg.contains("admin"),
                            "{}: {what}: the error quotes the value: {msg}",
                            path.display()
                        );
                    }
                    Ok(_) => panic!("{}: {what} value was not refused", path.display()),
                }
            }
        }
        rotated_total += values.len();
        let mut doc = json!({
            "codec": vf.codec,
            "primary": { "id": ring.primary_id().as_str(), "text": primary.text },
            "values": values,
        });
        let raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if let Some(k) = raw.get("bao_key") {
            doc["bao_key"] = k.clone();
        }
        let rel = path.strip_prefix(&input).unwrap();
        let out = dir.join("rotated").join(rel);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        println!(
            "{}: {} values rotated",
            rel.display(),
            doc["values"].as_array().unwrap().len()
        );
    }
    println!("keyturn rotated {rotated_total} values");
}
