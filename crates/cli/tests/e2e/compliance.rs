//! The compliance commands through the real `keyturn` binary: audit events
//! written by encrypt / rotate / verify (not by dry runs), `audit list |
//! export | verify`, `due` exit codes and webhook reminders, `report`.
//!
//! SQLite always; PostgreSQL and MariaDB where reachable, each in a fresh
//! database created and dropped here (`KEYTURN_TEST_POSTGRES_URL`,
//! `KEYTURN_TEST_MYSQL_URL`; `SKIPPED` unless `KEYTURN_REQUIRE_DBS=1`).

use keyturn_db::{ConnectOptions, Database};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

const BIN: &str = env!("CARGO_BIN_EXE_keyturn");

struct Env {
    dir: PathBuf,
    url: String,
    table: String,
}

impl Env {
    fn keyturn(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(self.dir.join("keyturn.toml"))
            .arg("--actor")
            .arg("tester@ci")
            .args(args)
            .env_remove("KEYTURN_NOTIFY_URL")
            .env_remove("KEYTURN_CONFIG")
            .env("NO_COLOR", "1");
        cmd.output().expect("run keyturn")
    }

    /// Runs a state-changing command, retrying while another keyturn run
    /// (another test suite on the same server) holds the rotation lock.
    fn run_ok(&self, args: &[&str]) -> Output {
        for _ in 0..20 {
            let out = self.keyturn(args);
            if out.status.code() == Some(6) {
                std::thread::sleep(std::time::Duration::from_secs(2));
                continue;
            }
            assert_eq!(
                out.status.code(),
                Some(0),
                "keyturn {args:?}: {}",
                text(&out)
            );
            return out;
        }
        panic!("keyturn {args:?}: the rotation lock stayed taken");
    }

    fn json(&self, args: &[&str]) -> (Option<i32>, Value) {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.keyturn(&a);
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("keyturn {args:?}: not JSON ({e}): {}", text(&out)));
        (out.status.code(), v)
    }

    fn write_config(&self, primary: &str) {
        let cfg = format!(
            "[database]\nurl = \"{}\"\n[keys]\nsources = [\"file:{}\"]\nprimary = \"{primary}\"\n\
             [[target]]\ntable = \"{}\"\nprimary_key = \"id\"\ncolumns = [{{ name = \"phone\", context = true }}]\n",
            self.url,
            self.dir.join("keys").display(),
            self.table
        );
        std::fs::write(self.dir.join("keyturn.toml"), cfg).unwrap();
    }

    fn add_key(&self, id: &str) {
        let out = Command::new(BIN)
            .args(["keys", "generate", "--id", id])
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("keys"))
            .unwrap();
        f.write_all(&out.stdout).unwrap();
    }

    fn events(&self) -> Vec<Value> {
        let (code, v) = self.json(&["audit", "list"]);
        assert_eq!(code, Some(0));
        v.as_array().unwrap().clone()
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn skip(test: &str, why: &str) {
    if std::env::var("KEYTURN_REQUIRE_DBS").is_ok_and(|v| v == "1") {
        panic!("KEYTURN_REQUIRE_DBS=1 but {test} cannot run: {why}");
    }
    let _ = std::io::stderr().lock().write_all(
        format!("SKIPPED: {test}: {why} (bash .ci/start-dbs.sh; KEYTURN_REQUIRE_DBS=1 makes this a failure)\n").as_bytes(),
    );
}

async fn seed(db: &dyn Database, table: &str, text_type: &str) {
    db.execute_script(&format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, phone {text_type})"
    ))
    .await
    .unwrap();
    let values: Vec<String> = (1..=50)
        .map(|i| {
            if i % 10 == 0 {
                format!("({i}, NULL)")
            } else {
                format!("({i}, '+44 7700 9{i:05}')")
            }
        })
        .collect();
    db.execute_script(&format!(
        "INSERT INTO {table} (id, phone) VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();
}

/// encrypt → dry run → rotate → verify, then the events they left.
fn lifecycle(env: &Env) {
    env.add_key("k1");
    env.write_config("k1");
    env.run_ok(&["encrypt", "--reason", "initial encryption"]);
    env.add_key("k2");
    env.write_config("k2");
    let before = env.events().len();
    env.run_ok(&["rotate", "--dry-run", "--reason", "rehearsal"]);
    assert_eq!(env.events().len(), before, "a dry run must not be recorded");
    env.run_ok(&["rotate", "--reason", "staff change: Bob left"]);
    env.run_ok(&["verify", "--deep"]);

    let evs = env.events();
    let find = |action: &str, outcome: &str| {
        evs.iter()
            .rev()
            .find(|e| e["action"] == action && e["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {action} {outcome} in {evs:#?}"))
            .clone()
    };
    let es = find("encrypt.start", "started");
    assert_eq!(es["reason"], "initial encryption");
    assert_eq!(es["columns"][0]["counts"]["unrecognized"], 45);
    let ee = find("encrypt.end", "ok");
    assert_eq!(ee["key_ids"][0], "k1");
    assert_eq!(ee["columns"][0]["counts"]["encrypted"], 45);
    assert_eq!(ee["actor"], "tester@ci");
    assert!(ee["run_id"].is_string());
    assert!(ee["duration_ms"].is_u64());
    let rs = find("rotate.start", "started");
    assert_eq!(rs["columns"][0]["by_key"]["k1"], 45);
    assert_eq!(rs["key_ids"], serde_json::json!(["k2", "k1"]));
    let re = find("rotate.end", "ok");
    assert_eq!(re["reason"], "staff change: Bob left");
    assert_eq!(re["columns"][0]["counts"]["rotated"], 45);
    assert_eq!(re["columns"][0]["counts"]["failed"], 0);
    assert_eq!(re["details"]["start_seq"], rs["seq"]);
    assert_eq!(re["key_ids"], serde_json::json!(["k2", "k1"]));
    let v = find("verify", "ok");
    assert_eq!(v["details"]["deep"], true);
    assert_eq!(v["columns"][0]["counts"]["checked"], 45);
    assert_eq!(v["columns"][0]["counts"]["under_current"], 45);
    assert!(evs.iter().all(|e| e["reason"] != "rehearsal"));

    let out = env.keyturn(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit trail intact"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_audit_due_notify_report() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("app.db").display());
    let db = keyturn_db::connect(
        &url,
        &ConnectOptions {
            max_connections: 2,
            create_if_missing: true,
            lock_timeout: None,
        },
    )
    .await
    .unwrap();
    seed(db.as_ref(), "patients", "TEXT").await;
    let env = Env {
        dir: dir.path().to_owned(),
        url: url.clone(),
        table: "patients".into(),
    };
    lifecycle(&env);

    // A failed run is recorded too: a key the keyring lacks (preflight).
    let keys = std::fs::read_to_string(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys"), "").unwrap();
    env.add_key("k3");
    env.write_config("k3");
    let out = env.keyturn(&["rotate", "--reason", "compromise"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let evs = env.events();
    let last = evs.last().unwrap();
    assert_eq!(
        (last["action"].as_str(), last["outcome"].as_str()),
        (Some("rotate.end"), Some("failed"))
    );
    assert_eq!(last["details"]["error_kind"], "preflight");
    assert_eq!(last["reason"], "compromise");
    std::fs::write(dir.path().join("keys"), keys).unwrap();
    env.write_config("k2");

    // audit list filters.
    let (_, v) = env.json(&["audit", "list", "--action", "verify"]);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] == "verify")
    );
    let (_, v) = env.json(&["audit", "list", "--action", "rotate", "--limit", "1"]);
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (_, v) = env.json(&["audit", "list", "--since", "2999-01-01"]);
    assert!(v.as_array().unwrap().is_empty());
    let out = env.keyturn(&["audit", "list", "--action", "rotat"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = env.keyturn(&["audit", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("staff change: Bob left"));

    // due: ok now, due soon / overdue later (exact boundaries: unit tests).
    let (code, v) = env.json(&["due"]);
    assert_eq!((code, v["status"].as_str()), (Some(0), Some("ok")), "{v:#}");
    assert_eq!(v["columns"][0]["keys"][0]["key_id"], "k2");
    assert_eq!(v["columns"][0]["keys"][0]["since_source"], "audit_trail");
    let in_days = |d: i64| {
        let t = time::OffsetDateTime::now_utc() + time::Duration::days(d);
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let (code, v) = env.json(&["due", "--at", &in_days(80)]);
    assert_eq!((code, v["status"].as_str()), (Some(10), Some("due_soon")));
    let (code, v) = env.json(&["due", "--at", &in_days(91)]);
    assert_eq!((code, v["status"].as_str()), (Some(11), Some("overdue")));
    assert_eq!(v["exit_code"], 11);
    let out = env.keyturn(&["due", "--at", &in_days(91)]);
    assert_eq!(out.status.code(), Some(11));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("overall: OVERDUE (exit 11)"),
        "{}",
        text(&out)
    );

    // Reminders: only when something is due, unless --notify-always.
    let (hook, seen) = recorder(200);
    let url_hook = format!("{hook}/services/T1/B2/SECRET");
    let out = env.keyturn(&["due", "--notify", &url_hook]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(seen.lock().unwrap().len(), 0, "nothing due, nothing posted");
    let out = env.keyturn(&["due", "--at", &in_days(91), "--notify", &url_hook]);
    assert_eq!(out.status.code(), Some(11), "{}", text(&out));
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "/services/T1/B2/SECRET");
    let body: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert!(
        body["text"].as_str().unwrap().contains("OVERDUE"),
        "{body:#}"
    );
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("audit trail tip (keep as an anchor): "),
        "{body:#}"
    );
    assert_eq!(body["blocks"][0]["type"], "header");
    let out = env.keyturn(&[
        "due",
        "--notify",
        &url_hook,
        "--notify-always",
        "--notify-format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let body: Value = serde_json::from_slice(&seen.lock().unwrap()[1].1).unwrap();
    assert_eq!(
        (body["source"].as_str(), body["status"].as_str()),
        (Some("keyturn"), Some("ok"))
    );
    // Delivery failures are never silent: exit 1, the reason on stderr.
    let (bad_hook, _) = recorder(500);
    let out = env.keyturn(&[
        "due",
        "--at",
        &in_days(91),
        "--notify",
        &format!("{bad_hook}/hook/SECRET"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 500") && err.contains("NOT delivered") && !err.contains("SECRET"),
        "{err}"
    );
    let (code, v) = env.json(&[
        "due",
        "--at",
        &in_days(91),
        "--notify",
        &format!("{bad_hook}/x"),
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(v["notify"]["sent"], false);
    assert!(v["notify"]["error"].as_str().unwrap().contains("HTTP 500"));
    let out = env.keyturn(&["due", "--notify-format", "xml"]);
    assert_eq!(out.status.code(), Some(2));

    // rotate --notify posts the run summary.
    let before = seen.lock().unwrap().len();
    env.run_ok(&["rotate", "--notify", &url_hook, "--notify-format", "json"]);
    let body: Value = serde_json::from_slice(&seen.lock().unwrap()[before].1).unwrap();
    assert_eq!(
        (body["event"].as_str(), body["status"].as_str()),
        (Some("rotate"), Some("ok"))
    );

    // Export and offline verification; then tampering is caught (exit 12).
    let export = dir.path().join("audit.jsonl");
    env.run_ok(&["audit", "export", "--output", export.to_str().unwrap()]);
    let lines = std::fs::read_to_string(&export).unwrap();
    assert_eq!(lines.lines().count(), env.events().len());
    let out = env.keyturn(&["audit", "verify", "--file", export.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (_, chain) = env.json(&["audit", "verify"]);
    let anchor = format!(
        "{}:{}",
        chain["tip_seq"],
        chain["tip_hash"].as_str().unwrap()
    );
    db.execute_script("UPDATE keyturn_audit SET reason = 'routine' WHERE action = 'rotate.start' AND reason = 'staff change: Bob left'")
        .await
        .unwrap();
    let out = env.keyturn(&["audit", "verify", "--anchor", &anchor]);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("audit trail BROKEN: first bad event #3"),
        "{}",
        text(&out)
    );

    // The evidence report, HTML and JSON.
    let html = dir.path().join("report.html");
    env.run_ok(&["report", "--html", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("id=\"key-inventory\"") && page.contains("Broken at event #3."));
    // `-` is stdout: the same page, and nothing else on stdout.
    let out = env.run_ok(&["report", "--html", "-"]);
    let piped = String::from_utf8(out.stdout).unwrap();
    assert!(
        piped.starts_with("<!DOCTYPE html>") || piped.starts_with("<!doctype html>"),
        "{}",
        &piped[..60.min(piped.len())]
    );
    assert!(piped.contains("id=\"key-inventory\"") && piped.trim_end().ends_with("</html>"));
    let out = env.keyturn(&["--json", "report", "--html", "-"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let (code, v) = env.json(&["report"]);
    assert_eq!(code, Some(0));
    assert_eq!(v["summary"]["chain_ok"], false);
    assert_eq!(v["chain"]["first_bad"]["seq"], 3);
    assert_eq!(v["summary"]["latest_verify"], "ok");
    assert_eq!(v["columns"][0]["by_key"][0]["key_id"], "k2");
    db.close().await;
}

/// An HTTP server on 127.0.0.1 answering `status`, recording (path, body).
#[allow(clippy::type_complexity)]
fn recorder(status: u16) -> (String, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming().take(20) {
            let Ok(mut c) = c else { continue };
            let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let (head_end, len) = loop {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => break (None, 0),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0usize);
                    break (Some(i + 4), len);
                }
            };
            let Some(head_end) = head_end else { continue };
            while buf.len() < head_end + len {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let path = head.split(' ').nth(1).unwrap_or("").to_owned();
            s2.lock().unwrap().push((path, buf[head_end..].to_vec()));
            let _ = write!(
                c,
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    (format!("http://{addr}"), seen)
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path = base[start..]
        .find('/')
        .map(|i| i + start)
        .unwrap_or(base.len());
    format!("{}/{db}{query}", &base[..path])
}

async fn server_lifecycle(test: &str, env_var: &str, default: &str, postgres: bool) {
    let base = std::env::var(env_var).unwrap_or_else(|_| default.into());
    let admin = match keyturn_db::connect(&base, &ConnectOptions::default()).await {
        Ok(a) => a,
        Err(e) => {
            return skip(
                test,
                &format!("{} not reachable: {e}", keyturn_db::redact_url(&base)),
            );
        }
    };
    let name = format!("kt_audit_cli{}", std::process::id());
    admin
        .execute_script(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = with_database(&base, &name);
    let db = keyturn_db::connect(&url, &ConnectOptions::default())
        .await
        .unwrap();
    seed(
        db.as_ref(),
        "patients",
        if postgres { "TEXT" } else { "VARCHAR(255)" },
    )
    .await;
    db.close().await;
    let dir = tempfile::tempdir().unwrap();
    let env = Env {
        dir: dir.path().to_owned(),
        url,
        table: "patients".into(),
    };
    // Blocking commands; a panic still drops the test database below.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lifecycle(&env)));
    let drop = if postgres {
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    } else {
        format!("DROP DATABASE IF EXISTS {name}")
    };
    let _ = admin.execute_script(&drop).await;
    admin.close().await;
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rotate_encrypt_verify_are_audited() {
    server_lifecycle(
        "postgres_rotate_encrypt_verify_are_audited",
        "KEYTURN_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_rotate_encrypt_verify_are_audited() {
    server_lifecycle(
        "mysql_rotate_encrypt_verify_are_audited",
        "KEYTURN_TEST_MYSQL_URL",
        "mysql://root@127.0.0.1:3306/test",
        false,
    )
    .await;
}
