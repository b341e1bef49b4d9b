//! `keyturn kek rotate` against OpenBao transit, end to end through the real
//! binary: `--new-version` rotates the transit key and moves every DEK to
//! the new version inside the server (reported and audited as in-KMS); a
//! revoked token changes nothing. OpenBao is found or launched by the kms
//! crate's harness (skipped loudly without it unless `KEYTURN_REQUIRE_KMS=1`).

use keyturn_test_support::kms as common;

use serde_json::Value;
use std::path::Path;
use std::process::Command;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn keyturn(config: &Path, token: &str, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_keyturn"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("KT_BAO_TOKEN", token)
        .env("NO_COLOR", "1")
        .env_remove("KEYTURN_CONFIG")
        .env_remove("KEYTURN_KEYS")
        .env_remove("VAULT_TOKEN")
        .env_remove("BAO_TOKEN")
        .output()
        .unwrap();
    let o = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !o.stdout.contains(token) && !o.stderr.contains(token),
        "token in output: {} {}",
        o.stdout,
        o.stderr
    );
    o
}

fn json(o: &Out) -> Value {
    serde_json::from_str(o.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", o.stdout, o.stderr))
}

#[tokio::test]
async fn kek_rotate_new_transit_version_inside_the_server() {
    let Some(b) = common::bao("kek_rotate_new_transit_version_inside_the_server").await else {
        return;
    };
    let key = b.create_key().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    std::fs::File::create(&db).unwrap();
    let cfg = dir.path().join("k.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[database]
url = "sqlite://{}"

[catalog]
kek = "vault-transit"
address = "{}"
mount = "{}"
key = "{key}"
token = "env:KT_BAO_TOKEN"

[[target]]
table = "t"
primary_key = "id"
columns = [{{ name = "secret", encoding = "text" }}]
"#,
            db.display(),
            b.addr,
            b.mount
        ),
    )
    .unwrap();
    let child = b.create_token(&["root"], false).await;
    for id in ["k1", "k2"] {
        let o = keyturn(&cfg, &child, &["keys", "add", "--id", id]);
        assert_eq!(o.code, 0, "{}", o.stderr);
    }
    let o = keyturn(&cfg, &child, &["keys", "promote", "k1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let list = json(&keyturn(&cfg, &child, &["--json", "keys", "list"]));
    assert!(list.to_string().contains("(version 1)"), "{list}");

    let rotate = [
        "--json",
        "kek",
        "rotate",
        "--to",
        "vault-transit",
        "--address",
        &b.addr,
        "--mount",
        &b.mount,
        "--key",
        &key,
        "--token",
        "env:KT_BAO_TOKEN",
        "--new-version",
    ];
    let o = keyturn(&cfg, &child, &rotate);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("no config change needed"), "{}", o.stderr);
    let r = json(&o);
    assert_eq!(r["rewrapped"], 2, "{r}");
    assert_eq!(r["in_kms"], 2, "{r}");
    assert_eq!(r["unwrap_wrap"], 0, "{r}");
    assert_eq!(r["new_version"], "2", "{r}");
    let list = json(&keyturn(&cfg, &child, &["--json", "keys", "list"]));
    let keks: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kek"].as_str().unwrap())
        .collect();
    assert!(keks.iter().all(|k| k.ends_with("(version 2)")), "{keks:?}");
    let o = keyturn(&cfg, &child, &["keys", "self-test"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = keyturn(&cfg, &child, &["--json", "audit", "export"]);
    let ev: Value = json(&o)["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["action"] == "kek.rotate")
        .cloned()
        .unwrap_or_else(|| panic!("no kek.rotate event: {}", o.stdout));
    assert_eq!(ev["details"]["in_kms"], 2, "{ev}");
    assert_eq!(ev["details"]["new_version"], "2", "{ev}");

    // A revoked token: exit 1 with its kind, the catalog unchanged.
    b.revoke_token(&child).await;
    let root = b.root_token.clone();
    let before = json(&keyturn(&cfg, &root, &["--json", "keys", "list"]));
    let o = keyturn(&cfg, &child, &rotate);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert_eq!(json(&o)["kind"], "invalid_credentials", "{}", o.stdout);
    let after = json(&keyturn(&cfg, &root, &["--json", "keys", "list"]));
    assert_eq!(before, after);
}
