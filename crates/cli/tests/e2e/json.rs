//! `--json` on every command (docs/JSON.md), on SQLite with a key catalog:
//! stdout holds exactly one JSON document, whatever the outcome; a failing
//! command's document is `{"error", "kind", "exit_code"}` with
//! `exit_code` the process's own; a command where JSON means nothing
//! refuses the flag (exit 2). The commands are read from `keyturn --help`
//! recursively, so a new subcommand fails this test until it is covered.

use crate::catalog::write_config;
use keyturn_db::ConnectOptions;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const MK1: &str = "mk1:aes256gcm:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const MK2: &str = "mk2:aes256gcm:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// Two data keys `keys add --import` takes at once.
const IMPORTED: [&str; 2] = [
    "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=",
    "Q0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0M=",
];

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn keyturn(dir: &Path, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_keyturn"))
        .current_dir(dir)
        .args(args)
        .env("KT_MK", MK1)
        .env("KT_MK2", MK2)
        .env(
            "KT_IMPORT",
            format!(
                "imp1:aes256gcm:{}\nimp2:aes256gcm:{}",
                IMPORTED[0], IMPORTED[1]
            ),
        )
        .env_remove("KEYTURN_KEYS")
        .env_remove("KEYTURN_CONFIG")
        .env_remove("KEYTURN_NOTIFY_URL")
        .output()
        .expect("running keyturn");
    let o = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for text in [&o.stdout, &o.stderr] {
        for secret in [&MK1[14..], &MK2[14..], IMPORTED[0], IMPORTED[1]] {
            assert!(!text.contains(secret), "key material in output: {text}");
        }
    }
    o
}

/// The one JSON document on stdout; panics unless there is exactly one.
/// An error document's `exit_code` is the process's exit code.
fn one_document(args: &[&str], o: &Out) -> Value {
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&o.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| {
            panic!(
                "{args:?}: stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                o.stdout, o.stderr
            )
        });
    assert_eq!(
        docs.len(),
        1,
        "{args:?}: {} JSON documents on stdout:\n{}",
        docs.len(),
        o.stdout
    );
    let doc = docs.into_iter().next().expect("one document");
    if let Some(err) = doc.get("error") {
        assert!(err.is_string(), "{args:?}: {doc}");
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{args:?}: no kind: {doc}"));
        assert!(
            !kind.is_empty() && kind.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{args:?}: kind {kind:?} is not snake_case"
        );
        assert_eq!(
            doc["exit_code"].as_i64(),
            Some(i64::from(o.code)),
            "{args:?}: exit_code and the exit code differ: {doc}"
        );
        assert!(
            o.stderr.contains(err.as_str().unwrap_or_default()),
            "{args:?}: the error is on stderr too: {}",
            o.stderr
        );
    }
    doc
}

/// The commands (`keys add`, `runs`, …) under `path`, read from `--help`:
/// a command with subcommands is itself runnable when they are optional
/// (`[COMMAND]`, as `runs`).
fn commands_under(dir: &Path, path: &[String], found: &mut BTreeSet<String>) {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let o = keyturn(dir, &args);
    assert_eq!(o.code, 0, "{args:?}: {}", o.stderr);
    let usage = o
        .stdout
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or_else(|| panic!("{args:?}: no usage line"));
    let subs: Vec<String> = o
        .stdout
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        // A command's line starts with two spaces and its name; the
        // wrapped rest of a description is indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    if subs.is_empty() || usage.contains("[COMMAND]") {
        found.insert(path.join(" "));
    }
    for s in subs {
        let mut p = path.to_vec();
        p.push(s);
        commands_under(dir, &p, found);
    }
}

async fn seed(dir: &Path) {
    let db = keyturn_db::connect(
        &format!("sqlite://{}", dir.join("t.db").display()),
        &ConnectOptions {
            max_connections: 1,
            create_if_missing: true,
            lock_timeout: None,
        },
    )
    .await
    .expect("creating the database");
    db.execute_script(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, secret TEXT); \
         INSERT INTO t VALUES (1, 'alpha'), (2, 'beta'), (3, 'gamma'), (4, NULL)",
    )
    .await
    .expect("seeding");
    db.close().await;
}

/// What a command run with `--json` must answer.
enum Want {
    /// One document, and this exit code.
    Doc(i32),
    /// Refused as a usage error: exit 2, one error document of kind `usage`.
    Refused,
}

#[tokio::test]
async fn every_command_prints_one_json_document() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path();
    seed(dir).await;
    write_config(dir, "k.toml", 24);
    write_config(dir, "quick.toml", 0);
    let export = dir.join("audit.jsonl");
    let export = export.to_str().expect("a UTF-8 path");
    let demo = dir.join("demo");
    let demo = demo.to_str().expect("a UTF-8 path");

    // In order: each command finds the state the ones before left. The
    // first word(s) up to the first flag or argument name the command.
    let k = ["--config", "k.toml", "--json"];
    let quick = ["--config", "quick.toml", "--json"];
    let cases: Vec<(Vec<&str>, Vec<&str>, Want)> = vec![
        (k.to_vec(), vec!["keys", "add", "--id", "k1"], Want::Doc(0)),
        (k.to_vec(), vec!["keys", "promote", "k1"], Want::Doc(0)),
        (k.to_vec(), vec!["encrypt"], Want::Doc(0)),
        (k.to_vec(), vec!["status"], Want::Doc(0)),
        (k.to_vec(), vec!["verify"], Want::Doc(0)),
        // The whole staged rotation; the old key's safety period (24 h)
        // keeps it: a step outcome, not silence.
        (k.to_vec(), vec!["rotate", "--to", "k2"], Want::Doc(0)),
        (k.to_vec(), vec!["rotate"], Want::Doc(0)),
        (k.to_vec(), vec!["keys", "list"], Want::Doc(0)),
        (k.to_vec(), vec!["keys", "instances"], Want::Doc(0)),
        (k.to_vec(), vec!["keys", "self-test"], Want::Doc(0)),
        // Refused within the safety period: the error document.
        (k.to_vec(), vec!["keys", "retire", "k1"], Want::Doc(1)),
        (quick.to_vec(), vec!["keys", "retire", "k1"], Want::Doc(0)),
        (quick.to_vec(), vec!["keys", "restore", "k1"], Want::Doc(0)),
        (quick.to_vec(), vec!["keys", "retire", "k1"], Want::Doc(0)),
        (
            quick.to_vec(),
            vec!["keys", "destroy", "k1", "--force"],
            Want::Doc(0),
        ),
        (k.to_vec(), vec!["keys", "add", "--id", "k3"], Want::Doc(0)),
        (k.to_vec(), vec!["keys", "compromised", "k3"], Want::Doc(0)),
        // Several keys at once: still one document.
        (
            k.to_vec(),
            vec!["keys", "add", "--import", "env:KT_IMPORT"],
            Want::Doc(0),
        ),
        (k.to_vec(), vec!["audit", "list"], Want::Doc(0)),
        (k.to_vec(), vec!["audit", "export"], Want::Doc(0)),
        (
            k.to_vec(),
            vec!["audit", "export", "--output", "-"],
            Want::Doc(0),
        ),
        (
            k.to_vec(),
            vec!["audit", "export", "--output", export],
            Want::Doc(0),
        ),
        (k.to_vec(), vec!["audit", "verify"], Want::Doc(0)),
        (
            k.to_vec(),
            vec!["audit", "verify", "--file", export],
            Want::Doc(0),
        ),
        (k.to_vec(), vec!["due"], Want::Doc(0)),
        (k.to_vec(), vec!["report"], Want::Doc(0)),
        (k.to_vec(), vec!["bad-rows", "list"], Want::Doc(0)),
        (
            k.to_vec(),
            vec!["bad-rows", "ack", "--all", "--reason", "none"],
            Want::Doc(0),
        ),
        (k.to_vec(), vec!["runs"], Want::Doc(0)),
        (k.to_vec(), vec!["runs", "--watch"], Want::Refused),
        // Nothing is running: the error document (a usage error).
        (k.to_vec(), vec!["runs", "pause"], Want::Doc(2)),
        (k.to_vec(), vec!["runs", "resume"], Want::Doc(2)),
        (k.to_vec(), vec!["runs", "stop"], Want::Doc(2)),
        // No column is rotated inside a KMS here: the error document (its
        // success is in e2e kms_transit).
        (k.to_vec(), vec!["kms", "retire-old-versions"], Want::Doc(2)),
        (
            k.to_vec(),
            vec![
                "kek",
                "rotate",
                "--to",
                "local",
                "--master-key",
                "env:KT_MK2",
            ],
            Want::Doc(0),
        ),
        (
            vec!["--json"],
            vec!["demo", "--dir", demo, "--rows", "40"],
            Want::Doc(0),
        ),
        (vec!["--json"], vec!["keys", "generate"], Want::Refused),
        (vec!["--json"], vec!["completions", "bash"], Want::Refused),
        (vec!["--json"], vec!["man"], Want::Refused),
        // --config and --actor where they mean nothing.
        (
            k.to_vec(),
            vec!["demo", "--dir", demo, "--force"],
            Want::Refused,
        ),
        (
            vec!["--json", "--actor", "me"],
            vec!["keys", "generate"],
            Want::Refused,
        ),
        // A malformed command line, a config that does not exist.
        (k.to_vec(), vec!["status", "--no-such-flag"], Want::Refused),
        (
            vec!["--json", "--config", "missing.toml"],
            vec!["status"],
            Want::Doc(1),
        ),
    ];

    let mut covered = BTreeSet::new();
    let mut docs = Vec::new();
    for (global, args, want) in &cases {
        let all: Vec<&str> = global.iter().chain(args.iter()).copied().collect();
        let o = keyturn(dir, &all);
        let doc = one_document(&all, &o);
        match want {
            Want::Doc(code) => {
                assert_eq!(o.code, *code, "{all:?}: {doc}\n{}", o.stderr);
                if *code == 0 {
                    assert!(doc.get("error").is_none(), "{all:?}: {doc}");
                }
            }
            Want::Refused => {
                assert_eq!(o.code, 2, "{all:?}: {doc}\n{}", o.stderr);
                assert_eq!(doc["kind"], "usage", "{all:?}: {doc}");
            }
        }
        let name: Vec<&str> = args
            .iter()
            .take_while(|a| !a.starts_with('-') && !["k1", "k2", "k3", "bash"].contains(a))
            .copied()
            .collect();
        covered.insert(name.join(" "));
        docs.push((all.join(" "), doc));
    }

    // Every command keyturn has is covered.
    let mut commands = BTreeSet::new();
    commands_under(dir, &[], &mut commands);
    commands.remove("");
    let missing: Vec<_> = commands.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "commands without a --json case here: {missing:?}"
    );
    assert!(commands.len() >= 30, "{commands:?}");

    let doc = |cmd: &str| {
        &docs
            .iter()
            .find(|(c, _)| c == cmd)
            .unwrap_or_else(|| panic!("{cmd} was run"))
            .1
    };

    // rotate --to: the five steps, each with its outcome.
    let to = doc("--config k.toml --json rotate --to k2");
    let steps: Vec<(&str, &str)> = to["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or("?"),
                s["outcome"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("add", "done"),
            ("promote", "done"),
            ("rotate", "done"),
            ("check", "passed"),
            ("retire", "refused"),
        ],
        "{to}"
    );
    assert_eq!(to["previous_key_id"], "k1", "{to}");
    assert_eq!(to["exit_code"], 0, "{to}");
    let retire = &to["steps"][4];
    assert_eq!(retire["kind"], "safety_period", "{retire}");
    assert!(
        retire["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("retire refused: safety period until ")),
        "{retire}"
    );
    assert_eq!(to["steps"][2]["summary"]["current_key_id"], "k2", "{to}");

    let imported = doc("--config k.toml --json keys add --import env:KT_IMPORT");
    assert_eq!(imported["key_ids"], serde_json::json!(["imp1", "imp2"]));
    assert!(imported["key_id"].is_null(), "{imported}");

    // Error documents carry the typed kinds.
    assert_eq!(
        doc("--config k.toml --json keys retire k1")["kind"],
        "safety_period"
    );
    assert_eq!(doc("--json --config missing.toml status")["kind"], "config");
    assert_eq!(doc("--config k.toml --json runs pause")["kind"], "usage");

    // audit export: the events in the document, or their count and tip
    // beside the file, which `audit verify --file` checked above.
    let listed = doc("--config k.toml --json audit export");
    let n = listed["events"].as_array().expect("events").len();
    assert!(n > 5, "{listed}");
    assert_eq!(listed["count"], n);
    let written = doc(&format!(
        "--config k.toml --json audit export --output {export}"
    ));
    assert_eq!(written["count"], n, "{written}");
    assert!(written.get("events").is_none(), "{written}");
    assert_eq!(written["tip_hash"], listed["events"][n - 1]["hash"]);
    let lines = std::fs::read_to_string(export).expect("the export");
    assert_eq!(lines.lines().count(), n);

    // Without --json, `--output -` is stdout: the same JSON lines as the
    // file.
    let o = keyturn(
        dir,
        &["--config", "k.toml", "audit", "export", "--output", export],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = keyturn(
        dir,
        &["--config", "k.toml", "audit", "export", "--output", "-"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let file = std::fs::read_to_string(export).expect("the export");
    assert!(o.stdout == file, "--output - and --output FILE differ");
    assert_eq!(file.lines().count(), n + 1, "and kek rotate's event");
}

#[test]
fn refused_flags_are_not_offered() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    for (path, absent) in [
        (&["demo"][..], &["--config", "--actor"][..]),
        (&["keys", "generate"], &["--config", "--actor", "--json"]),
        (&["completions"], &["--config", "--actor", "--json"]),
        (&["man"], &["--config", "--actor", "--json"]),
    ] {
        let mut args = path.to_vec();
        args.push("--help");
        let o = keyturn(tmp.path(), &args);
        assert_eq!(o.code, 0, "{}", o.stderr);
        for flag in absent {
            assert!(
                !o.stdout.contains(flag),
                "{path:?} offers {flag}:\n{}",
                o.stdout
            );
        }
    }
    let o = keyturn(tmp.path(), &["status", "--help"]);
    for flag in ["--config", "--actor", "--json"] {
        assert!(o.stdout.contains(flag), "status lacks {flag}");
    }
}

/// A second Ctrl-C aborts a run at once: stdout still holds one document,
/// the run's summary (when the first stop was quicker) or the error
/// document of kind `interrupted`, and the exit code is 130.
#[tokio::test]
async fn a_second_ctrl_c_leaves_one_document() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path();
    seed(dir).await;
    {
        let db = keyturn_db::connect(
            &format!("sqlite://{}", dir.join("t.db").display()),
            &ConnectOptions::default(),
        )
        .await
        .expect("opening the database");
        let values: Vec<String> = (10..2010).map(|i| format!("({i}, 'row {i}')")).collect();
        db.execute_script(&format!("INSERT INTO t VALUES {}", values.join(", ")))
            .await
            .expect("more rows");
        db.close().await;
    }
    write_config(dir, "k.toml", 24);
    for args in [
        &["keys", "add", "--id", "k1"][..],
        &["keys", "promote", "k1"],
    ] {
        let all: Vec<&str> = ["--config", "k.toml"].iter().chain(args).copied().collect();
        let o = keyturn(dir, &all);
        assert_eq!(o.code, 0, "{all:?}: {}", o.stderr);
    }
    let child = Command::new(env!("CARGO_BIN_EXE_keyturn"))
        .current_dir(dir)
        .args(["--config", "k.toml", "--json", "encrypt"])
        .args(["--max-rows-per-sec", "50", "--batch-size", "10"])
        .env("KT_MK", MK1)
        .env_remove("KEYTURN_NOTIFY_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting keyturn");
    let pid = child.id().to_string();
    let sigint = || {
        let ok = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -INT {pid}");
    };
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    sigint();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    // The process may have ended on the first one already.
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let out = child.wait_with_output().expect("keyturn's output");
    let o = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(o.code, 130, "{}\n{}", o.stdout, o.stderr);
    let doc = one_document(&["encrypt", "(Ctrl-C twice)"], &o);
    match doc.get("error") {
        Some(_) => assert_eq!(doc["kind"], "interrupted", "{doc}"),
        None => assert_eq!(doc["interrupted"], true, "{doc}"),
    }
}
