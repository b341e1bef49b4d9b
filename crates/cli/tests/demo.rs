//! `keyturn demo`, the README's first command, end to end (small row count),
//! and the follow-up commands it prints.

use std::process::Command;

fn keyturn(cwd: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keyturn"))
        .current_dir(cwd)
        .args(args)
        .env_remove("KEYTURN_KEYS")
        .env_remove("KEYTURN_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn demo_encrypts_rotates_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = keyturn(tmp.path(), &["demo", "--rows", "600"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("verify --deep (primary key \"k2\"): OK"),
        "{out}"
    );
    assert!(out.contains("What just happened"), "{out}");
    // The commands the demo suggests work as printed.
    let (code, out, err) = keyturn(
        tmp.path(),
        &["--config", "keyturn-demo/keyturn.toml", "--json", "status"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for c in v["columns"].as_array().unwrap() {
        assert_eq!(c["needs_rotation"], 0, "{c}");
        assert_eq!(c["by_key"][0]["key_id"], "k2", "{c}");
    }
    let (code, out, err) = keyturn(
        tmp.path(),
        &["--config", "keyturn-demo/keyturn.toml", "verify", "--deep"],
    );
    assert_eq!(code, 0, "{out}{err}");
    // The config's relative paths hold from any directory.
    let (code, out, err) = keyturn(
        &tmp.path().join("keyturn-demo"),
        &["--config", "keyturn.toml", "verify", "--no-record"],
    );
    assert_eq!(code, 0, "{out}{err}");
    // A second run never overwrites the first one's files...
    let keys = std::fs::read_to_string(tmp.path().join("keyturn-demo/keys")).unwrap();
    let (code, out, err) = keyturn(tmp.path(), &["demo", "--rows", "50"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("keyturn.toml already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("keyturn-demo/keys")).unwrap(),
        keys
    );
    // ...unless told to: --force starts from a fresh database.
    let (code, out, err) = keyturn(tmp.path(), &["--json", "demo", "--rows", "50", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(v["runs"][1]["operation"], "rotate", "{v}");
    assert_eq!(v["verify"]["ok"], true, "{v}");
}
