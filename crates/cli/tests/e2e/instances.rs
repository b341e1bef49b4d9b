//! `keyturn keys instances` and `keyturn keys promote [--force]` with
//! application instances tracked by this test process (through
//! `keyturn_catalog::AppKeyring`), on SQLite, PostgreSQL and MariaDB, each
//! in its own database (see `common`): promote is refused while a live
//! instance lacks the key and names it, allowed once it refreshed; stale
//! instances are ignored and listed as stale; `--force` is audited.
//!
//! Run one backend: `cargo test -p keyturn --test e2e instances::postgres::`.

use crate::common::*;
use keyturn_catalog::AppKeyring;
use keyturn_kms::{KekProvider, LocalKek, MasterKeySource, SecretString};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

scenarios!(promote_checks_tracked_instances);

const MK: &str = "mk1:aes256gcm:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

fn write_config(dir: &Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("keyturn.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[database]
url = {}

[catalog]
kek = "local"
master_key = "env:KT_MK"
instance_ttl_seconds = 120

[[target]]
table = "inst_t"
primary_key = "id"
columns = [{{ name = "secret", encoding = "text" }}]
"#,
            toml_str(url)
        ),
    )
    .unwrap();
    path
}

/// Runs the real binary (blocking: it is short) and checks that the master
/// key never shows up in its output.
fn keyturn(config: &Path, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_keyturn"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("KT_MK", MK)
        .env("NO_COLOR", "1")
        .env_remove("KEYTURN_CONFIG")
        .env_remove("KEYTURN_KEYS")
        .output()
        .unwrap();
    let o = Out {
        label: format!("keyturn {}", args.join(" ")),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for text in [&o.stdout, &o.stderr] {
        assert!(!text.contains(&MK[14..]), "master key in output: {o}");
    }
    o
}

fn kek() -> Arc<dyn KekProvider> {
    Arc::new(LocalKek::load(&MasterKeySource::Value(SecretString::from(MK))).unwrap())
}

fn live_labels(j: &Value) -> Vec<(String, bool, Vec<String>)> {
    j["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["label"].as_str().unwrap().to_owned(),
                i["live"].as_bool().unwrap(),
                i["key_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

async fn promote_checks_tracked_instances(t: TestDb) {
    t.exec("CREATE TABLE inst_t (id BIGINT PRIMARY KEY, secret TEXT)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &t.url);
    let pid = std::process::id().to_string();

    keyturn(&cfg, &["keys", "add", "--id", "k1"]).expect(0);
    let o = keyturn(&cfg, &["keys", "promote", "k1"]).expect(0);
    assert!(o.stderr.contains("nothing was checked"), "{o}");
    let o = keyturn(&cfg, &["keys", "instances"]).expect(0);
    assert!(o.stdout.contains("no tracked application instances"), "{o}");

    // This test process is the application.
    let web = AppKeyring::connect(&t.url, "default", kek()).await.unwrap();
    web.track_instance("web-test").await.unwrap();
    let o = keyturn(&cfg, &["--json", "keys", "instances"]).expect(0);
    let j = o.json();
    assert_eq!(j["instance_ttl_seconds"], 120);
    assert_eq!(
        live_labels(&j),
        vec![("web-test".into(), true, vec!["k1".into()])]
    );
    assert_eq!(j["instances"][0]["pid"].as_i64().unwrap().to_string(), pid);

    // k2 pending; web-test has not refreshed: refused, named, nothing written.
    keyturn(&cfg, &["keys", "add", "--id", "k2"]).expect(0);
    let o = keyturn(&cfg, &["--json", "keys", "promote", "k2"]).expect(1);
    assert_eq!(o.json()["kind"], "instances_missing_key", "{o}");
    for part in [
        "web-test (host ",
        &format!("pid {pid}"),
        "holds k1)",
        "--force",
    ] {
        assert!(o.stderr.contains(part), "{part:?} missing: {o}");
    }
    let list = keyturn(&cfg, &["--json", "keys", "list"]).expect(0).json();
    let state = |list: &Value, id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["state"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(state(&list, "k2"), "pending");

    // After a refresh the instance holds k2: promote goes through.
    web.refresh().await.unwrap();
    let o = keyturn(&cfg, &["keys", "promote", "k2"]).expect(0);
    assert!(o.stderr.contains("all 1 live tracked"), "{o}");

    // A stale instance is ignored (and listed as stale).
    let gone = AppKeyring::connect(&t.url, "default", kek()).await.unwrap();
    let gone_id = gone.track_instance("stale-worker").await.unwrap();
    t.exec(&format!(
        "UPDATE keyturn_instances SET last_seen = '2000-01-01T00:00:00Z' WHERE instance_id = '{gone_id}'"
    ))
    .await;
    keyturn(&cfg, &["keys", "add", "--id", "k3"]).expect(0);
    web.refresh().await.unwrap();
    let o = keyturn(&cfg, &["keys", "promote", "k3"]).expect(0);
    assert!(
        o.stderr.contains("ignored 1 stale") && o.stderr.contains("stale-worker ("),
        "{o}"
    );
    let o = keyturn(&cfg, &["keys", "instances"]).expect(0);
    let row = o
        .stdout
        .lines()
        .find(|l| l.contains("stale-worker"))
        .unwrap_or_else(|| panic!("{o}"));
    assert!(row.contains(" stale "), "{o}");
    assert!(o.stdout.contains("1 stale"), "{o}");

    // --force: promoted although web-test lacks k4; audited as an override.
    keyturn(&cfg, &["keys", "add", "--id", "k4"]).expect(0);
    let o = keyturn(&cfg, &["--json", "keys", "promote", "k4", "--force"]).expect(0);
    let warnings = o.json()["warnings"].to_string();
    assert!(
        warnings.contains("--force") && warnings.contains("web-test ("),
        "{o}"
    );
    let list = keyturn(&cfg, &["--json", "keys", "list"]).expect(0).json();
    assert_eq!(state(&list, "k4"), "primary");
    let o = keyturn(&cfg, &["--json", "audit", "export"]).expect(0);
    let events: Vec<Value> = o.json()["events"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no events: {o}"));
    let about_k4 = |action: &str| {
        events
            .iter()
            .find(|e| e["action"] == action && e["key_ids"].to_string().contains("\"k4\""))
            .cloned()
            .unwrap_or_else(|| panic!("no {action} event for k4 in {}", o.stdout))
    };
    let promote = about_k4("key.promote");
    assert_eq!(promote["details"]["forced"], true, "{promote}");
    assert!(
        promote["details"]["warnings"]
            .to_string()
            .contains("web-test ("),
        "{promote}"
    );
    let over = about_k4("override");
    assert!(
        over["reason"]
            .as_str()
            .unwrap()
            .contains("--force on promote"),
        "{over}"
    );
    // The unforced promotes are not overrides.
    let overrides = events.iter().filter(|e| e["action"] == "override").count();
    assert_eq!(overrides, 1, "{}", o.stdout);
    keyturn(&cfg, &["audit", "verify"]).expect(0);

    // rotate --to: the new key is added (and audited), the promote refused
    // with what to do next.
    let o = keyturn(&cfg, &["rotate", "--to", "k9"]).expect(1);
    assert!(
        o.stderr.contains("run `keyturn rotate --to k9` again") && o.stderr.contains("web-test ("),
        "{o}"
    );
    let list = keyturn(&cfg, &["--json", "keys", "list"]).expect(0).json();
    assert_eq!(state(&list, "k9"), "pending");
    assert_eq!(state(&list, "k4"), "primary");
    let o = keyturn(&cfg, &["--json", "audit", "export"]).expect(0);
    assert!(
        o.json()["events"].as_array().is_some_and(|events| events
            .iter()
            .any(|e| e["action"] == "key.add" && e["key_ids"].to_string().contains("\"k9\""))),
        "{o}"
    );

    // Prune deletes the stale row; untrack deletes ours.
    let o = keyturn(&cfg, &["--json", "keys", "instances", "--prune"]).expect(0);
    let j = o.json();
    assert_eq!(j["pruned"][0]["label"], "stale-worker", "{o}");
    assert_eq!(
        live_labels(&j),
        vec![(
            "web-test".into(),
            true,
            vec!["k1".into(), "k2".into(), "k3".into()]
        )]
    );
    assert!(web.untrack().await.unwrap());
    let o = keyturn(&cfg, &["--json", "keys", "instances"]).expect(0);
    assert!(o.json()["instances"].as_array().unwrap().is_empty(), "{o}");
}
