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
        out.contains("verify --deep (current key \"k2\"): OK"),
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

/// `keyturn demo | head -1` with stderr on the same pipe, and with a pipe
/// closed at once: no panic (exit 101), the demo runs to the end, and its
/// database holds every run's record and audit events.
#[test]
fn demo_into_a_closed_pipe_runs_to_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    for (reader, dir) in [("head -n 1", "piped"), ("true", "closed")] {
        let out = Command::new("bash")
            .current_dir(tmp.path())
            .arg("-c")
            .arg(format!(
                "\"$0\" \"$@\" 2>&1 | {reader}; exit ${{PIPESTATUS[0]}}"
            ))
            .arg(env!("CARGO_BIN_EXE_keyturn"))
            .args(["demo", "--rows", "3000", "--dir", dir])
            .env_remove("KEYTURN_KEYS")
            .env_remove("KEYTURN_CONFIG")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{reader}: {text}");
        let config = format!("{dir}/keyturn.toml");
        let (code, listed, err) = keyturn(
            tmp.path(),
            &["--config", &config, "--json", "audit", "list"],
        );
        assert_eq!(code, 0, "{listed}{err}");
        let events: serde_json::Value = serde_json::from_str(&listed).unwrap();
        let actions: Vec<(&str, &str)> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap(),
                    e["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                ("encrypt.start", "started"),
                ("encrypt.end", "ok"),
                ("rotate.start", "started"),
                ("rotate.end", "ok"),
                ("verify", "ok")
            ],
            "{reader}"
        );
        let (code, out, err) = keyturn(tmp.path(), &["--config", &config, "verify", "--deep"]);
        assert_eq!(code, 0, "{out}{err}");
    }
}
