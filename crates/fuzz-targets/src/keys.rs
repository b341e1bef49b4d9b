//! Key specs (keyturn-format's `KeySpec`) and key sources (keyturn-keys).

use crate::check::{assert_no_canary, assert_no_echo, with_canary};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyturn_format::{Algorithm, KeyId, KeySpec};
use keyturn_keys::{KeysConfig, SecretSource, split_foreign_keys};

/// A spec that `KeySpec::parse` must answer exactly as it answers `spec`,
/// if its messages depend on the spec only as promised: the id when it is
/// a valid key id (otherwise only its length and where it breaks the
/// rules), never the algorithm name, and the key material only through
/// whether it is base64 and how many bytes it decodes to.
fn canonical_spec(spec: &str) -> String {
    let mut parts = spec.splitn(3, ':');
    let (Some(id), Some(alg), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return "no-colons".into();
    };
    let id = if KeyId::new(id).is_ok() {
        id.to_owned()
    } else {
        id.bytes()
            .map(|b| match b {
                b'.' | b'_' | b'-' => b as char,
                b if b.is_ascii_alphanumeric() => 'a',
                _ => '%',
            })
            .collect()
    };
    let alg = if Algorithm::from_name(alg).is_ok() {
        alg
    } else {
        "?"
    };
    let b64 = match STANDARD.decode(b64.trim()) {
        Ok(bytes) => STANDARD.encode(vec![0u8; bytes.len()]),
        Err(_) => "!".into(),
    };
    format!("{id}:{alg}:{b64}")
}

fn check_one_spec(spec: &str) -> Result<KeySpec, String> {
    match KeySpec::parse(spec) {
        Ok(k) => {
            // Printed and parsed again: the same key.
            let printed = k.to_spec_string();
            let again = KeySpec::parse(&printed).expect("a printed spec parses");
            assert_eq!(again.id, k.id);
            assert_eq!(again.key.kind(), k.key.kind());
            assert_eq!(again.key.expose_bytes(), k.key.expose_bytes());
            assert_eq!(*again.to_spec_string(), *printed, "printing is not stable");
            assert!(
                KeySpec::parse(&canonical_spec(spec)).is_ok(),
                "canonical form of a valid spec fails"
            );
            Ok(k)
        }
        Err(e) => {
            let msg = e.to_string();
            let canon = KeySpec::parse(&canonical_spec(spec))
                .err()
                .map(|e| e.to_string());
            assert_eq!(
                Some(&msg),
                canon.as_ref(),
                "KeySpec::parse: the message depends on more than the promised parts"
            );
            let id = spec.split(':').next().unwrap_or_default();
            let allowed: &[&str] = if KeyId::new(id).is_ok() { &[id] } else { &[] };
            assert_no_echo("KeySpec::parse", &msg, spec.as_bytes(), allowed);
            Err(msg)
        }
    }
}

/// `KeySpec::parse` and `KeySpec::parse_many`. Checks: a spec that parses
/// prints a spec that parses to the same key; an error message is the same
/// for a spec whose material is replaced by anything of the same decoded
/// length (or validity), whose invalid id is replaced by one breaking the
/// same rule at the same place, and whose unknown algorithm is replaced:
/// key material never shapes a message; `parse_many` parses exactly the
/// specs its documented splitting yields and fails on the first bad one,
/// naming its line and position.
pub fn key_spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = check_one_spec(text);
    let many = KeySpec::parse_many(text);
    let mut parsed = Vec::new();
    let mut first_err = None;
    'lines: for (line, l) in text.lines().enumerate() {
        if l.trim_start().starts_with('#') {
            continue;
        }
        for spec in l
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
        {
            match check_one_spec(spec) {
                Ok(k) => parsed.push(k),
                Err(msg) => {
                    let at = format!("line {}, key spec #{}", line + 1, parsed.len() + 1);
                    first_err = Some(msg.replacen("key spec #1", &at, 1));
                    break 'lines;
                }
            }
        }
    }
    match (many, first_err) {
        (Ok(v), None) => {
            assert_eq!(v.len(), parsed.len());
            for (a, b) in v.iter().zip(&parsed) {
                assert_eq!(a.id, b.id);
                assert_eq!(a.key.expose_bytes(), b.key.expose_bytes());
            }
        }
        (Err(e), Some(want)) => assert_eq!(e.to_string(), want),
        (Ok(_), Some(want)) => panic!("parse_many accepts a bad spec: {want}"),
        (Err(e), None) => panic!("parse_many fails on good specs: {e}"),
    }
}

/// Key sources (keyturn-keys), with every `@@` of the input replaced by
/// [`crate::CANARY_SPEC`]. Checks: `SecretSource::parse` round-trips through
/// `Display`, and its errors echo nothing; `split_foreign_keys` yields
/// valid ids or none, and non-empty trimmed keys; a `[keys]` section
/// (`KeysConfig`, TOML) that fails `validate` never shows the canary.
pub fn key_source(data: &[u8]) {
    let Some(text) = with_canary(data) else {
        return;
    };
    match SecretSource::parse(&text) {
        Ok(src) => {
            let shown = src.to_string();
            let again = SecretSource::parse(&shown).expect("a shown source parses");
            assert_eq!(again, src, "SecretSource display round trip");
        }
        Err(e) => {
            let msg = e.to_string();
            assert_no_echo("SecretSource::parse", &msg, text.as_bytes(), &[]);
            assert_no_canary("SecretSource::parse", &msg);
        }
    }
    for (id, key) in split_foreign_keys(&text) {
        if !id.is_empty() {
            KeyId::new(&id).expect("split_foreign_keys: a valid id or none");
        }
        assert!(!key.is_empty(), "split_foreign_keys: an empty key");
        assert_eq!(
            key.trim(),
            key.as_str(),
            "split_foreign_keys: untrimmed key"
        );
        if id.is_empty() {
            // A whole line: never a comment.
            assert!(!key.starts_with('#'), "split_foreign_keys: a comment line");
        }
    }
    if let Ok(cfg) = toml::from_str::<KeysConfig>(&text)
        && let Err(e) = cfg.validate("keys")
    {
        let msg = e.to_string();
        assert_no_canary("KeysConfig::validate", &msg);
        assert_no_echo("KeysConfig::validate", &msg, text.as_bytes(), &[]);
    }
}
