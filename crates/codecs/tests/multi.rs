//! Multi-column codecs (`envelope`, `split-columns`): the vector files under
//! testdata/codecs whose codec spans columns (rows of cells written by an
//! independent implementation, positive and negative), and property tests.

mod common;

use common::{vector_files, workspace_root};
use keyturn_codecs::multi::{Cells, Role, RowReencryption};
use keyturn_codecs::{CodecConfig, EnvelopeRotation, EnvelopeWrap, build_multi, load_ring};
use keyturn_format::{Inspection, Keyring};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct MultiFile {
    codec: CodecConfig,
    source: String,
    keys: Vec<common::Key>,
    primary: String,
    cases: Vec<MultiCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MultiCase {
    name: String,
    cells: CellsJson,
    #[serde(default)]
    plaintext: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    inspect: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    decrypt_error: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CellsJson {
    #[serde(default)]
    ciphertext_hex: Option<String>,
    #[serde(default)]
    iv_hex: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    wrapped_key_hex: Option<String>,
}

impl CellsJson {
    fn cells(&self) -> Cells {
        let h = |s: &Option<String>| s.as_ref().map(|s| hex::decode(s).expect("hex cell"));
        Cells {
            ciphertext: h(&self.ciphertext_hex),
            iv: h(&self.iv_hex),
            key_id: self.key_id.clone(),
            wrapped_key: h(&self.wrapped_key_hex),
        }
    }
}

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

fn multi_files() -> Vec<(std::path::PathBuf, MultiFile)> {
    vector_files(&workspace_root().join("testdata/codecs"))
        .into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let codec: CodecConfig = serde_json::from_value(v["codec"].clone()).unwrap();
            codec.is_multi_column().then(|| {
                let f: MultiFile =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                (p, f)
            })
        })
        .collect()
}

#[test]
fn multi_column_vector_files() {
    let files = multi_files();
    let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    assert!(
        files.len() >= 3,
        "expected envelope (aes-gcm, aes-kw) and split-columns vectors: {names:?}"
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for (path, vf) in &files {
        assert_eq!(vf.source, "spec-derived");
        let codec = build_multi(&vf.codec).unwrap();
        let keys: Vec<(&str, &str)> = vf
            .keys
            .iter()
            .map(|k| (k.id.as_str(), k.text.as_str()))
            .collect();
        let ring = load_ring(&vf.codec, &keys, Some(&vf.primary), &[]).unwrap();
        let rewrap = matches!(
            vf.codec,
            CodecConfig::Envelope {
                rotation: EnvelopeRotation::Rewrap,
                ..
            }
        );
        for case in &vf.cases {
            checked += 1;
            let label = format!("{} / {}", path.display(), case.name);
            let cells = case.cells.cells();
            if let Some(want) = &case.inspect {
                let got = inspection_name(&codec.inspect_row(&cells));
                if &got != want {
                    failures.push(format!("{label}: inspect {got}, want {want}"));
                }
            }
            if let Some(err) = &case.error {
                match codec.reencrypt_row(&ring, &cells, &[]) {
                    Ok(r) => failures.push(format!("{label}: want error {err}, got {r:?}")),
                    Err(e) if e.kind() != err => {
                        failures.push(format!("{label}: want error {err}, got {} ({e})", e.kind()))
                    }
                    Err(_) => {}
                }
                let want = case.decrypt_error.as_ref().unwrap_or(err);
                match codec.decrypt_row(&ring, &cells, &[]) {
                    Ok(_) => failures.push(format!("{label}: decrypt succeeded")),
                    Err(e) if e.kind() != want => {
                        failures.push(format!("{label}: decrypt error {}, want {want}", e.kind()))
                    }
                    Err(_) => {}
                }
                continue;
            }
            let want_pt = case.plaintext.as_deref().expect("positive case");
            let opened = match codec.decrypt_row(&ring, &cells, &[]) {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("{label}: decrypt failed: {e}"));
                    continue;
                }
            };
            if &opened.plaintext[..] != want_pt.as_bytes()
                || Some(opened.key_id.as_str()) != case.key_id.as_deref()
            {
                failures.push(format!("{label}: wrong plaintext or key {}", opened.key_id));
            }
            match codec.reencrypt_row(&ring, &cells, &[]) {
                Err(e) => failures.push(format!("{label}: reencrypt failed: {e}")),
                Ok(RowReencryption::AlreadyPrimary) => {
                    if opened.key_id != *ring.primary_id() {
                        failures.push(format!("{label}: AlreadyPrimary under {}", opened.key_id));
                    }
                }
                Ok(RowReencryption::Rotated(new)) => {
                    let again = codec.decrypt_row(&ring, &new, &[]).unwrap();
                    assert_eq!(&again.plaintext[..], want_pt.as_bytes(), "{label}");
                    assert_eq!(again.key_id, *ring.primary_id(), "{label}");
                    assert_eq!(new.key_id.as_deref(), Some(ring.primary_id().as_str()));
                    for r in codec.roles() {
                        assert!(new.cell(*r).is_some(), "{label}: {r:?} not set");
                    }
                    if rewrap {
                        // Re-wrapping leaves the data alone.
                        assert_eq!(new.ciphertext, cells.ciphertext, "{label}");
                        assert_eq!(new.iv, cells.iv, "{label}");
                        assert_ne!(new.wrapped_key, cells.wrapped_key, "{label}");
                    }
                    assert!(matches!(
                        codec.reencrypt_row(&ring, &new, &[]).unwrap(),
                        RowReencryption::AlreadyPrimary
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

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

fn configs() -> Vec<CodecConfig> {
    let mut out = vec![CodecConfig::SplitColumns {}];
    for wrap in [EnvelopeWrap::AesGcm, EnvelopeWrap::AesKw] {
        for rotation in [EnvelopeRotation::Rewrap, EnvelopeRotation::Reencrypt] {
            out.push(CodecConfig::Envelope { wrap, rotation });
        }
    }
    out
}

fn rings(config: &CodecConfig) -> (Keyring, Keyring) {
    use base64::Engine as _;
    let k = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let (k1, k2) = (k(1), k(2));
    let old = load_ring(config, &[("old", &k1)], None, &[]).unwrap();
    let both = load_ring(config, &[("old", &k1), ("new", &k2)], Some("new"), &[]).unwrap();
    (old, both)
}

fn cell_mut(cells: &mut Cells, role: Role) -> &mut Option<Vec<u8>> {
    match role {
        Role::Iv => &mut cells.iv,
        Role::WrappedKey => &mut cells.wrapped_key,
        _ => &mut cells.ciphertext,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// encrypt under the old key → rotate → decrypt under the new key gives
    /// the plaintext back, for every layout, wrap and rotation mode.
    #[test]
    fn rotation_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..300)) {
        for config in configs() {
            let codec = build_multi(&config).unwrap();
            let (old, both) = rings(&config);
            let cells = codec.encrypt_row(&old, &plaintext, &[]).unwrap();
            prop_assert_eq!(&codec.decrypt_row(&both, &cells, &[]).unwrap().plaintext[..], &plaintext[..]);
            let RowReencryption::Rotated(new) = codec.reencrypt_row(&both, &cells, &[]).unwrap() else {
                panic!("{config:?}: not rotated");
            };
            let o = codec.decrypt_row(&both, &new, &[]).unwrap();
            prop_assert_eq!(&o.plaintext[..], &plaintext[..]);
            prop_assert_eq!(o.key_id.as_str(), "new");
        }
    }

    /// Any change to one cell of a row (a flipped bit, a cut, an extension,
    /// NULL) is refused, never decrypted to something else, never a panic.
    #[test]
    fn damaged_cells_are_refused(
        plaintext in proptest::collection::vec(any::<u8>(), 0..64),
        which in 0usize..3,
        at in any::<proptest::sample::Index>(),
        how in 0u8..4,
    ) {
        for config in configs() {
            let codec = build_multi(&config).unwrap();
            let (old, both) = rings(&config);
            let mut cells = codec.encrypt_row(&old, &plaintext, &[]).unwrap();
            let role = [Role::Ciphertext, Role::Iv, Role::WrappedKey][which];
            if cells.cell(role).is_none() {
                continue;
            }
            let cell = cell_mut(&mut cells, role);
            let v = cell.as_mut().unwrap();
            match how {
                0 if !v.is_empty() => { let i = at.index(v.len()); v[i] ^= 1 << (i % 8); }
                1 if !v.is_empty() => { let n = at.index(v.len()); v.truncate(n); }
                2 => v.push(0),
                _ => *cell = None,
            }
            match codec.decrypt_row(&both, &cells, &[]) {
                Ok(o) => prop_assert!(false, "{config:?}: damaged row decrypted ({} bytes)", o.plaintext.len()),
                Err(_) => prop_assert!(codec.reencrypt_row(&both, &cells, &[]).is_err()),
            }
        }
    }

    /// Arbitrary cells never panic the codecs.
    #[test]
    fn arbitrary_cells_never_panic(
        ct in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
        iv in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        wrapped in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..70)),
        key_id in proptest::option::of("[a-z0-9 -]{0,8}"),
    ) {
        let cells = Cells { ciphertext: ct, iv, key_id, wrapped_key: wrapped };
        for config in configs() {
            let codec = build_multi(&config).unwrap();
            let (_, both) = rings(&config);
            let _ = codec.inspect_row(&cells);
            let _ = codec.reencrypt_row(&both, &cells, &[]);
            let _ = codec.decrypt_row(&both, &cells, &[]);
        }
    }
}

#[test]
fn multi_configs_parse_and_build_only_as_multi() {
    let c: CodecConfig =
        serde_json::from_str(r#"{"codec":"envelope","wrap":"aes-kw","rotation":"reencrypt"}"#)
            .unwrap();
    assert!(c.is_multi_column());
    assert_eq!(c.name(), "envelope");
    assert!(keyturn_codecs::build(&c).is_err());
    assert!(build_multi(&c).is_ok());
    assert!(build_multi(&serde_json::from_str(r#"{"codec":"fernet"}"#).unwrap()).is_err());
    assert!(serde_json::from_str::<CodecConfig>(r#"{"codec":"envelope","wrap":"rsa"}"#).is_err());
    assert!(
        serde_json::from_str::<CodecConfig>(r#"{"codec":"envelope","iv_column":"x"}"#).is_err()
    );
}
