//! `keyturn keys …` and `keyturn kek rotate` end to end on SQLite with the
//! local KEK: lifecycle, refusals with exit code 1 and their `kind`,
//! rollback, compromised, KEK rotation that touches no data row, and no key
//! material in any output.

use keyturn_db::{ColumnRef, ConnectOptions, PkColumn, PkKind, ValueKind};
use std::path::Path;
use std::process::Command;

const MK1: &str = "mk1:aes256gcm:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const MK2: &str = "mk2:aes256gcm:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// An imported data key, to check it never shows up in any output.
const IMPORTED_B64: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn keyturn(dir: &Path, config: &str, mk: &str, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_keyturn"))
        .args(["--config", dir.join(config).to_str().unwrap()])
        .args(args)
        .env("KT_MK", mk)
        .env("KT_MK2", MK2)
        .env("IMPORTED", format!("imp:aes256gcm:{IMPORTED_B64}"))
        .env_remove("KEYTURN_KEYS")
        .output()
        .unwrap();
    let o = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for text in [&o.stdout, &o.stderr] {
        for secret in [IMPORTED_B64, &MK1[14..], &MK2[14..]] {
            assert!(!text.contains(secret), "key material in output: {text}");
        }
    }
    o
}

/// A catalog config (local KEK from `KT_MK`) over table `t` in `dir/t.db`;
/// the json suite uses it too.
pub(crate) fn write_config(dir: &Path, name: &str, safety_hours: u64) {
    let db = dir.join("t.db");
    std::fs::write(
        dir.join(name),
        format!(
            r#"
[database]
url = "sqlite://{}"

[catalog]
kek = "local"
master_key = "env:KT_MK"
safety_period_hours = {safety_hours}
retention_days = 30

[[target]]
table = "t"
primary_key = "id"
columns = [{{ name = "secret", encoding = "text", context = true }}]
"#,
            db.display()
        ),
    )
    .unwrap();
}

async fn data_rows(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let db = keyturn_db::connect(
        &format!("sqlite://{}", dir.join("t.db").display()),
        &ConnectOptions::default(),
    )
    .await
    .unwrap();
    let col = ColumnRef {
        table: "t".into(),
        pk: vec![PkColumn {
            name: "id".into(),
            kind: PkKind::Int,
            sql_type: "INTEGER".into(),
        }],
        column: "secret".into(),
        kind: ValueKind::Text,
        cells: Vec::new(),
        aux: Vec::new(),
    };
    let rows = db.fetch_batch(&col, None, None, 1000).await.unwrap();
    db.close().await;
    rows.into_iter()
        .map(|r| (format!("{:?}", r.pk), r.value))
        .collect()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[tokio::test]
async fn catalog_commands_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let db = keyturn_db::connect(
            &format!("sqlite://{}", dir.join("t.db").display()),
            &ConnectOptions {
                max_connections: 1,
                create_if_missing: true,
                lock_timeout: None,
            },
        )
        .await
        .unwrap();
        db.execute_script(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, secret TEXT); \
             INSERT INTO t VALUES (1, 'alpha'), (2, 'beta'), (3, 'gamma'), (4, NULL)",
        )
        .await
        .unwrap();
        db.close().await;
    }
    write_config(dir, "k.toml", 24);
    write_config(dir, "quick.toml", 0);

    // No keys yet: a clear error for status.
    let o = keyturn(dir, "k.toml", MK1, &["status"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("no current key"), "{}", o.stderr);

    let o = keyturn(dir, "k.toml", MK1, &["--json", "keys", "add", "--id", "k1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(json(&o.stdout)["changed"][0]["state"], "pending");
    // Import from an env var (migration from key specs).
    let o = keyturn(
        dir,
        "k.toml",
        MK1,
        &["keys", "add", "--import", "env:IMPORTED"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = keyturn(dir, "k.toml", MK1, &["--json", "keys", "add", "--id", "k1"]);
    assert_eq!(o.code, 1);
    assert_eq!(json(&o.stdout)["kind"], "already_exists");

    let o = keyturn(dir, "k.toml", MK1, &["keys", "promote", "k1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains("every reader must have loaded it"),
        "{}",
        o.stderr
    );
    let o = keyturn(dir, "k.toml", MK1, &["encrypt"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let under_k1 = data_rows(dir).await;
    assert!(under_k1.iter().all(|(_, v)| v.starts_with(b"kt1:k1:")));

    keyturn(
        dir,
        "k.toml",
        MK1,
        &["keys", "add", "--id", "k2", "--alg", "xchacha20poly1305"],
    );
    let o = keyturn(dir, "k.toml", MK1, &["keys", "promote", "k2"]);
    assert_eq!(o.code, 0, "{}", o.stderr);

    // Retire refused while rows use k1, with --json kind; nothing written.
    let o = keyturn(dir, "k.toml", MK1, &["--json", "keys", "retire", "k1"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert_eq!(json(&o.stdout)["kind"], "rows_remain");
    assert!(o.stderr.contains("t.secret: 3"), "{}", o.stderr);
    assert_eq!(
        o.stderr.matches("still encrypts").count(),
        1,
        "{}",
        o.stderr
    );

    // Rollback and forward again: one promote each.
    let o = keyturn(dir, "k.toml", MK1, &["keys", "promote", "k1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = keyturn(dir, "k.toml", MK1, &["keys", "promote", "k2"]);
    assert_eq!(o.code, 0, "{}", o.stderr);

    let o = keyturn(dir, "k.toml", MK1, &["rotate"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = keyturn(dir, "k.toml", MK1, &["--json", "keys", "retire", "k1"]);
    assert_eq!(o.code, 1);
    assert_eq!(json(&o.stdout)["kind"], "safety_period");
    let o = keyturn(dir, "quick.toml", MK1, &["keys", "retire", "k1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = keyturn(dir, "quick.toml", MK1, &["--json", "keys", "destroy", "k1"]);
    assert_eq!(o.code, 1);
    assert_eq!(json(&o.stdout)["kind"], "retention_period");
    let o = keyturn(dir, "quick.toml", MK1, &["keys", "restore", "k1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);

    // Compromised: flagged in the list, never promoted.
    let o = keyturn(dir, "k.toml", MK1, &["keys", "compromised", "imp"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = keyturn(dir, "k.toml", MK1, &["--json", "keys", "promote", "imp"]);
    assert_eq!(o.code, 1);
    assert_eq!(json(&o.stdout)["kind"], "compromised");
    let o = keyturn(dir, "k.toml", MK1, &["--json", "keys", "list"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let list = json(&o.stdout);
    let states: Vec<(String, String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["state"].as_str().unwrap().to_owned(),
                e["compromised"].as_bool().unwrap(),
            )
        })
        .collect();
    let mut states = states;
    states.sort();
    assert_eq!(
        states,
        vec![
            ("imp".into(), "pending".into(), true),
            ("k1".into(), "decrypt-only".into(), false),
            ("k2".into(), "primary".into(), false),
        ]
    );
    let o = keyturn(dir, "k.toml", MK1, &["keys", "list"]);
    assert!(o.stdout.contains("pending!"), "{}", o.stdout);

    // KEK rotation: wrong target settings change nothing; then every DEK
    // moves to mk2 and no data row changes.
    let before = data_rows(dir).await;
    let o = keyturn(
        dir,
        "k.toml",
        MK1,
        &[
            "kek",
            "rotate",
            "--to",
            "local",
            "--master-key",
            "env:UNSET_VAR_X",
        ],
    );
    assert_eq!(o.code, 1, "{}", o.stderr);
    let o = keyturn(
        dir,
        "k.toml",
        MK2,
        &[
            "--json",
            "kek",
            "rotate",
            "--to",
            "local",
            "--master-key",
            "env:KT_MK2",
        ],
    );
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert_eq!(json(&o.stdout)["kind"], "wrong_kek");
    let o = keyturn(
        dir,
        "k.toml",
        MK1,
        &[
            "--json",
            "kek",
            "rotate",
            "--to",
            "local",
            "--master-key",
            "env:KT_MK2",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(json(&o.stdout)["rewrapped"], 3);
    assert_eq!(data_rows(dir).await, before);
    // The config now needs the new master key.
    let o = keyturn(dir, "k.toml", MK1, &["--json", "keys", "self-test"]);
    assert_eq!(o.code, 1);
    let o = keyturn(dir, "k.toml", MK2, &["--json", "keys", "self-test"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(json(&o.stdout)["current_key_id"], "k2");
    let o = keyturn(dir, "k.toml", MK2, &["verify", "--deep"]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);

    // Emergency: the primary k2 is compromised.
    let o = keyturn(dir, "k.toml", MK2, &["keys", "compromised", "k2"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = keyturn(dir, "k.toml", MK2, &["status"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let all = format!("{}{}", o.stdout, o.stderr);
    assert!(
        all.contains("COMPROMISED key \"k2\": 3 rows of t.secret"),
        "{all}"
    );
    let o = keyturn(dir, "k.toml", MK2, &["rotate"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("marked compromised"), "{}", o.stderr);
    let o = keyturn(dir, "k.toml", MK2, &["keys", "self-test"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    // Promote the previous key (restored above), rotate: k2's rows first,
    // none left under it.
    let o = keyturn(dir, "k.toml", MK2, &["keys", "promote", "k1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = keyturn(dir, "k.toml", MK2, &["rotate"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("rotated first"), "{}", o.stderr);
    assert!(
        data_rows(dir)
            .await
            .iter()
            .all(|(_, v)| v.starts_with(b"kt1:k1:"))
    );
    let o = keyturn(dir, "k.toml", MK2, &["status"]);
    assert!(!o.stdout.contains("COMPROMISED"), "{}", o.stdout);
    let o = keyturn(dir, "k.toml", MK2, &["keys", "self-test"]);
    assert_eq!(o.code, 0, "{}", o.stderr);

    // The whole staged sequence in one command: add, promote, rotate,
    // verify; the old primary stays decrypt-only within the safety period.
    let o = keyturn(dir, "k.toml", MK2, &["rotate", "--to", "k3"]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("retire it later"), "{}", o.stderr);
    assert!(
        data_rows(dir)
            .await
            .iter()
            .all(|(_, v)| v.starts_with(b"kt1:k3:"))
    );
    // Without a safety period the old primary is retired at the end.
    let o = keyturn(dir, "quick.toml", MK2, &["rotate", "--to", "k4"]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let o = keyturn(dir, "k.toml", MK2, &["--json", "keys", "list"]);
    let list = json(&o.stdout);
    let state = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(state("k4").as_deref(), Some("primary"));
    assert_eq!(state("k3").as_deref(), Some("retired"));
    assert!(
        data_rows(dir)
            .await
            .iter()
            .all(|(_, v)| v.starts_with(b"kt1:k4:"))
    );

    // Every lifecycle change is in the audit trail, and the chain holds.
    let o = keyturn(dir, "k.toml", MK2, &["--json", "audit", "export"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let actions: Vec<String> = json(&o.stdout)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    for want in [
        "key.add",
        "key.promote",
        "key.compromised",
        "kek.rotate",
        "rotate.start",
        "rotate.end",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "no {want} in {actions:?}"
        );
    }
    let o = keyturn(dir, "k.toml", MK2, &["audit", "verify"]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
}
