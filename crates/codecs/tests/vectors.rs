//! Runs every vector file under testdata/codecs: positive cases decrypt to
//! the expected plaintext under the expected key, re-encrypt (or are already
//! under the primary) and read back; negative cases fail with the expected
//! error kind; `inspect` answers as expected.

mod common;

use common::*;
use keyturn_codecs::build;
use keyturn_format::{Carry, Inspection, Reencryption};

fn inspection_name(i: &Inspection<'_>) -> String {
    match i {
        Inspection::UnderKey(id) => format!("under:{id}"),
        Inspection::UnderKeyOwned(id) => format!("under:{id}"),
        Inspection::KeyUnknown => "key_unknown".into(),
        Inspection::NotThisFormat => "not_this_format".into(),
        Inspection::Invalid(_) => "invalid".into(),
        other => format!("{other:?}"),
    }
}

#[test]
fn all_vector_files() {
    let files = vector_files(&workspace_root().join("testdata/codecs"));
    assert!(
        files.len() >= 14,
        "expected the vector files, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in &files {
        let vf = load(path);
        if vf.codec.is_multi_column() {
            // Rows of cells: tests/multi.rs.
            continue;
        }
        let codec = build(&vf.codec).unwrap();
        let ring = vf.ring();
        let spec_derived = vf.source == "spec-derived";
        assert!(!vf.source.is_empty());
        let _ = spec_derived;
        for case in &vf.cases {
            let label = format!("{} / {}", path.display(), case.name);
            let stored = case.stored_bytes();
            checked += 1;
            if let Some(want) = &case.inspect {
                let got = inspection_name(&codec.inspect(&stored));
                if &got != want {
                    failures.push(format!("{label}: inspect {got}, want {want}"));
                }
            }
            if let Some(err) = &case.error {
                match codec.reencrypt(&ring, &stored, &[]) {
                    Ok(r) => failures.push(format!("{label}: want error {err}, got {r:?}")),
                    Err(e) if e.kind() != err => {
                        failures.push(format!("{label}: want error {err}, got {} ({e})", e.kind()))
                    }
                    Err(_) => {}
                }
                let want = case.decrypt_error.as_ref().unwrap_or(err);
                match codec.decrypt(&ring, &stored, &[]) {
                    Ok(_) => failures.push(format!("{label}: decrypt succeeded")),
                    Err(e) if e.kind() != want && want != "unknown_format" => {
                        failures.push(format!("{label}: decrypt error {}, want {want}", e.kind()))
                    }
                    Err(_) => {}
                }
                continue;
            }
            let want_pt = case
                .plaintext
                .as_deref()
                .expect("positive case has plaintext");
            let opened = match codec.decrypt(&ring, &stored, &[]) {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("{label}: decrypt failed: {e}"));
                    continue;
                }
            };
            if &opened.plaintext[..] != want_pt.as_bytes() {
                failures.push(format!("{label}: wrong plaintext"));
            }
            if Some(opened.key_id.as_str()) != case.key_id.as_deref() {
                failures.push(format!(
                    "{label}: key {} want {:?}",
                    opened.key_id, case.key_id
                ));
            }
            if let Some(ts) = case.timestamp
                && opened.carry != Carry::Timestamp(ts)
            {
                failures.push(format!(
                    "{label}: carry {:?} want timestamp {ts}",
                    opened.carry
                ));
            }
            match codec.reencrypt(&ring, &stored, &[]) {
                Err(e) => failures.push(format!("{label}: reencrypt failed: {e}")),
                Ok(Reencryption::AlreadyPrimary) => {
                    if opened.key_id != *ring.primary_id() {
                        failures.push(format!("{label}: AlreadyPrimary under {}", opened.key_id));
                    }
                }
                Ok(Reencryption::Rotated(new)) => {
                    if opened.key_id == *ring.primary_id() {
                        failures.push(format!(
                            "{label}: rotated a value already under the primary"
                        ));
                    }
                    let again = codec.decrypt(&ring, &new, &[]).unwrap();
                    assert_eq!(&again.plaintext[..], want_pt.as_bytes(), "{label}");
                    assert_eq!(again.key_id, *ring.primary_id(), "{label}");
                    assert_eq!(again.carry, opened.carry, "{label}: carried state changed");
                    if let Some(prefix) = codec.primary_prefix(&ring) {
                        assert!(new.starts_with(&prefix), "{label}: primary prefix");
                    }
                    assert!(matches!(
                        codec.reencrypt(&ring, &new, &[]).unwrap(),
                        Reencryption::AlreadyPrimary
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
