//! A run's lifecycle under faults, through the real `keyturn` binary on
//! SQLite, PostgreSQL and MariaDB (`sqlite::*`, `postgres::*`,
//! `mariadb::*`; see `common` for the databases):
//!
//! - the rotation lock's session ends mid-run: the run takes the lock again
//!   and finishes; or another run has taken it: the first stops at a batch
//!   boundary, exit 6 "rotation lock lost", and both keyturn_runs and the
//!   audit trail say so;
//! - the lock's record cannot be deleted at the end: a warning, exit 0;
//! - a run killed (SIGKILL) during its census or its work is seen as
//!   interrupted by `status`, `audit list` and `report`, and recorded so by
//!   the next run;
//! - stdout and stderr a closed pipe: no panic, the run completes.
//!
//! Run one backend: `cargo test -p keyturn --test e2e lock::postgres::`.

use crate::common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

scenarios!(
    lock_session_ended_is_taken_again,
    lock_taken_by_another_run_stops_the_first,
    failed_release_is_a_warning,
    killed_runs_are_recorded_interrupted,
    closed_pipe_never_kills_a_run,
);

// ---------------------------------------------------------------------------
// Set-up and helpers
// ---------------------------------------------------------------------------

/// `n` rows with a text `secret` bound to its row, encrypted under k1 by
/// `keyturn encrypt`; the plaintexts and keys k1, k2.
async fn encrypted(t: &TestDb, what: &str, n: i64) -> (Table, Data, Key, Key) {
    let tb = Table::new(
        &t.table_name(what),
        &[("id", PkKind::Int)],
        &[("secret", ColKind::Text, true)],
    );
    t.create_table(&tb, &[]).await;
    let mut rng = t.rng();
    let plain: Data = (1..=n)
        .map(|id| {
            (
                int_pk(id),
                vec![Some(format!("secret {id} {}", rng.u64(..)).into_bytes())],
            )
        })
        .collect();
    t.insert(&tb, &plain).await;
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    t.keyturn(&Cfg::new(&[&tb], &[&k1], "k1"), &["encrypt"])
        .await
        .expect(0);
    (tb, plain, k1, k2)
}

/// Every value under k2, decrypting to its plaintext.
async fn all_under_k2(t: &TestDb, tb: &Table, plain: &Data, k1: &Key, k2: &Key) {
    assert_decrypts(tb, &t.read(tb).await, plain, &ring(&[k1, k2], "k2"), "k2");
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Waits until `cond` holds (polled every 20 ms); fails after `secs`.
async fn until<F, Fut>(what: &str, secs: u64, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting until {what}"
        );
        sleep_ms(20).await;
    }
}

const PG_ADVISORY: &str = "FROM pg_locks WHERE locktype = 'advisory' \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
const MY_LOCK: &str = "CONCAT('keyturn.rotation.', MD5(DATABASE()))";

/// Whether some session holds the rotation lock (SQLite: a lease row).
async fn lock_taken(t: &TestDb) -> bool {
    match t.kind {
        Kind::Postgres => t.count(&format!("SELECT count(*) {PG_ADVISORY}")).await > 0,
        Kind::MariaDb => {
            t.count(&format!(
                "SELECT CAST(IS_USED_LOCK({MY_LOCK}) IS NOT NULL AS SIGNED)"
            ))
            .await
                > 0
        }
        Kind::Sqlite => t.count("SELECT count(*) FROM keyturn_lock").await > 0,
    }
}

/// Ends the database session that holds the rotation lock, as an operator
/// or a failover would (SQLite: the lease row vanishes), and waits until
/// the lock is free.
async fn end_lock_session(t: &TestDb) {
    match t.kind {
        Kind::Postgres => {
            let n = t
                .count(&format!(
                    "SELECT count(pg_terminate_backend(pid)) {PG_ADVISORY}"
                ))
                .await;
            assert_eq!(n, 1, "one session holds the advisory lock");
        }
        Kind::MariaDb => {
            let id = t
                .count(&format!("SELECT CAST(IS_USED_LOCK({MY_LOCK}) AS SIGNED)"))
                .await;
            t.exec(&format!("KILL {id}")).await;
        }
        Kind::Sqlite => t.exec("DELETE FROM keyturn_lock").await,
    }
    until("the lock is free", 20, || async { !lock_taken(t).await }).await;
}

/// keyturn_runs rows: (run_id, operation, outcome), oldest first.
async fn runs(t: &TestDb) -> Vec<(String, String, String)> {
    t.strings("SELECT run_id, operation, outcome FROM keyturn_runs ORDER BY started_at, run_id")
        .await
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect()
}

/// The audit trail as `audit list --json` gives it.
async fn events(t: &TestDb, cfg: &Cfg) -> Vec<Value> {
    t.keyturn(cfg, &["--json", "audit", "list"])
        .await
        .expect(0)
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn of_run<'a>(events: &'a [Value], run_id: &str, action: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["run_id"] == run_id && e["action"] == action)
        .collect()
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// The lock's session ends mid-run with nobody waiting: the run notices,
/// takes the lock again, says so, and finishes every row (exit 0); the end
/// event counts the re-take.
async fn lock_session_ended_is_taken_again(t: TestDb) {
    let (tb, plain, k1, k2) = encrypted(&t, "retake", 2000).await;
    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let mut p = t.spawn(
        &cfg,
        &["rotate", "--batch-size", "50", "--max-rows-per-sec", "400"],
    );
    p.wait_stderr("values to process", Duration::from_secs(60))
        .await;
    sleep_ms(500).await;
    end_lock_session(&t).await;
    p.wait_stderr("took it again", Duration::from_secs(30))
        .await;
    let out = p.wait(Duration::from_secs(120)).await.expect(0);
    assert!(out.stdout.contains("took it again"), "{out}");
    all_under_k2(&t, &tb, &plain, &k1, &k2).await;
    // Released at the end, the re-taken lock too.
    until("the lock is free", 20, || async { !lock_taken(&t).await }).await;
    let rs = runs(&t).await;
    let (id, _, outcome) = rs.last().unwrap();
    assert_eq!(outcome, "ok", "{rs:?}");
    let ev = events(&t, &cfg).await;
    let end = of_run(&ev, id, "rotate.end");
    assert_eq!(end.len(), 1, "{ev:#?}");
    assert_eq!(end[0]["outcome"], "ok");
    assert!(
        end[0]["details"]["lock_retaken"].as_u64().unwrap() >= 1,
        "{:#}",
        end[0]
    );
    assert_eq!(of_run(&ev, id, "rotate.start").len(), 1, "{ev:#?}");
}

/// While the first rotate is frozen (SIGSTOP), its lock's session ends and
/// a second rotate takes the lock (SQLite: another live holder's lease
/// replaces its own). Resumed, the first finds the lock lost: it stops at a
/// batch boundary, exit 6 "rotation lock lost" naming the new holder, its
/// summary, keyturn_runs and its end event all `lock_lost`; a rerun
/// finishes the job.
async fn lock_taken_by_another_run_stops_the_first(t: TestDb) {
    let (tb, plain, k1, k2) = encrypted(&t, "lost", 3000).await;
    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let slow = ["rotate", "--batch-size", "50", "--max-rows-per-sec", "300"];
    let first = t.spawn(&cfg, &[&["--json"][..], &slow[..]].concat());
    until("the first run saved a checkpoint", 60, || async {
        t.meta_rows("keyturn_checkpoints", &tb.name).await > 0
    })
    .await;
    first.sigstop();
    let (second, holder) = if t.kind == Kind::Sqlite {
        // A second process cannot take a live process's lease on one
        // machine: another machine's holder, heartbeat fresh, takes it.
        let now = keyturn_db::now_rfc3339();
        t.exec(&format!(
            "UPDATE keyturn_lock SET holder = 'itest-second@elsewhere pid 9 (rotate)', host = 'itest-elsewhere', \
             pid = 9, since = '{now}', heartbeat = '{now}', holder_token = 'itest-second'"
        ))
        .await;
        (None, "itest-second@elsewhere".to_owned())
    } else {
        end_lock_session(&t).await;
        let mut second = t.spawn(&cfg, &slow);
        second
            .wait_stderr("values to process", Duration::from_secs(60))
            .await;
        let holder = format!("pid {} (rotate)", second.pid());
        (Some(second), holder)
    };
    first.sigcont();
    let out = first.wait(Duration::from_secs(60)).await.expect(6);
    assert!(
        out.stderr.contains("error: rotation lock lost") && out.stderr.contains(&holder),
        "{out}"
    );
    let j = out.json();
    assert_eq!(j["outcome"], "lock_lost", "{out}");
    assert_eq!(j["interrupted"], true);
    assert!(j["lock_lost"]["holder"].as_str().unwrap().contains(&holder));
    let run_id = j["run_id"].as_str().unwrap().to_owned();
    let rs = runs(&t).await;
    let mine: Vec<_> = rs.iter().filter(|r| r.0 == run_id).collect();
    assert_eq!(mine.len(), 1, "{rs:?}");
    assert_eq!(mine[0].2, "lock_lost", "{rs:?}");
    assert!(
        t.meta_rows("keyturn_checkpoints", &tb.name).await > 0,
        "the checkpoint is kept"
    );
    let ev = events(&t, &cfg).await;
    let end = of_run(&ev, &run_id, "rotate.end");
    assert_eq!(end.len(), 1, "{ev:#?}");
    assert_eq!(end[0]["outcome"], "lock_lost");
    assert!(
        end[0]["details"]["lock_holder"]
            .as_str()
            .unwrap()
            .contains(&holder),
        "{:#}",
        end[0]
    );
    match second {
        Some(mut second) => {
            // The second run found the first recorded as running with its
            // lock's session gone, and recorded it as interrupted; the
            // first's own end (lock_lost) came after and stands.
            assert_eq!(of_run(&ev, &run_id, "run.interrupted").len(), 1, "{ev:#?}");
            if !second.finished() {
                second.sigint();
            }
            let code = second.wait(Duration::from_secs(60)).await.code;
            assert!(code == 130 || code == 0, "second run exited {code}");
        }
        None => t.exec("DELETE FROM keyturn_lock").await,
    }
    t.keyturn(&cfg, &["rotate"]).await.expect(0);
    all_under_k2(&t, &tb, &plain, &k1, &k2).await;
    t.keyturn(&cfg, &["verify", "--deep"]).await.expect(0);
}

/// The lock's record cannot be deleted at the end (its table was moved
/// away mid-run): the run still exits 0 with its summary, the failure is a
/// warning on stderr and in the end event, and keyturn_runs and the audit
/// trail both say ok. The next run takes the lock over.
async fn failed_release_is_a_warning(t: TestDb) {
    let (tb, plain, k1, k2) = encrypted(&t, "release", 1200).await;
    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let mut p = t.spawn(
        &cfg,
        &["rotate", "--batch-size", "50", "--max-rows-per-sec", "600"],
    );
    p.wait_stderr("values to process", Duration::from_secs(60))
        .await;
    let rename = |from: &str, to: &str| match t.kind {
        Kind::MariaDb => format!("RENAME TABLE {from} TO {to}"),
        _ => format!("ALTER TABLE {from} RENAME TO {to}"),
    };
    t.exec(&rename("keyturn_lock", "keyturn_lock_moved")).await;
    let out = p.wait(Duration::from_secs(120)).await.expect(0);
    assert!(
        out.stderr
            .contains("warning: could not release the rotation lock cleanly"),
        "{out}"
    );
    assert!(out.stdout.contains("outcome: ok"), "{out}");
    t.exec(&rename("keyturn_lock_moved", "keyturn_lock")).await;
    all_under_k2(&t, &tb, &plain, &k1, &k2).await;
    let rs = runs(&t).await;
    let (id, _, outcome) = rs.last().unwrap().clone();
    assert_eq!(outcome, "ok");
    let ev = events(&t, &cfg).await;
    let end = of_run(&ev, &id, "rotate.end");
    assert_eq!(end[0]["outcome"], "ok", "{ev:#?}");
    let warnings = end[0]["details"]["warnings"].to_string();
    assert!(warnings.contains("could not release"), "{warnings}");
    // The record left behind names a holder that is gone: taken over.
    t.keyturn(&cfg, &["rotate"]).await.expect(0);
}

/// A rotate killed (SIGKILL) during its census, and another during its
/// work: before anything else runs, `status`, `audit list` and `report`
/// show each as interrupted without writing anything; the next rotate
/// records it (keyturn_runs `interrupted`, a `run.interrupted` event), its
/// own start event carries its run id, and it finishes the job.
async fn killed_runs_are_recorded_interrupted(t: TestDb) {
    let (tb, plain, k1, k2) = encrypted(&t, "killed", 3000).await;
    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let starts = |ev: &[Value]| ev.iter().filter(|e| e["action"] == "rotate.start").count();
    let before = starts(&events(&t, &cfg).await);

    // 1. Killed during the census: the test holds the table so that the
    // census waits (SQLite readers never wait: there the kill lands as
    // soon as the run is recorded, during its census or just after).
    let hold = hold_table(&t, &tb.name).await;
    let p = t.spawn(&cfg, &["rotate", "--max-rows-per-sec", "500"]);
    until("the run is recorded as running", 60, || async {
        t.table_exists("keyturn_runs").await
            && t.count("SELECT count(*) FROM keyturn_runs WHERE outcome = 'running'")
                .await
                > 0
    })
    .await;
    if hold.is_some() {
        sleep_ms(300).await;
    }
    assert_eq!(p.kill().code, -9);
    if let Some(h) = hold {
        h.release().await;
    }
    let census_killed = starts(&events(&t, &cfg).await) == before;
    assert!(
        census_killed || t.kind == Kind::Sqlite,
        "the run got past its census while the table was held"
    );
    let (a, _, outcome) = runs(&t).await.last().unwrap().clone();
    assert_eq!(outcome, "running");
    seen_interrupted(&t, &cfg, &a, census_killed).await;

    // 2. The next run records it, then is killed during its work.
    let mut p = t.spawn(
        &cfg,
        &["rotate", "--batch-size", "50", "--max-rows-per-sec", "500"],
    );
    p.wait_stderr("values to process", Duration::from_secs(60))
        .await;
    assert!(
        p.stderr_so_far().contains(&format!("run {a} ")),
        "the note names the interrupted run\n{}",
        p.stderr_so_far()
    );
    sleep_ms(t.rng().u64(300..1200)).await;
    assert_eq!(p.kill().code, -9);
    let rs = runs(&t).await;
    assert_eq!(
        rs[rs.len() - 2],
        (a.clone(), "rotate".into(), "interrupted".into())
    );
    let (b, _, outcome) = rs.last().unwrap().clone();
    assert_eq!(outcome, "running");
    let ev = events(&t, &cfg).await;
    let marked = of_run(&ev, &a, "run.interrupted");
    assert_eq!(marked.len(), 1, "{ev:#?}");
    assert_eq!(marked[0]["outcome"], "interrupted");
    assert_eq!(marked[0]["details"]["operation"], "rotate");
    assert_eq!(marked[0]["details"]["recorded_by_run"], b.as_str());
    // Every start event carries its run id.
    assert_eq!(of_run(&ev, &b, "rotate.start").len(), 1, "{ev:#?}");
    assert!(
        ev.iter()
            .filter(|e| e["action"] == "rotate.start" || e["action"] == "encrypt.start")
            .all(|e| e["run_id"].as_str().is_some_and(|r| !r.is_empty())),
        "{ev:#?}"
    );
    seen_interrupted(&t, &cfg, &b, false).await;

    // 3. The next run records the second one and finishes the job.
    let out = t.keyturn(&cfg, &["rotate"]).await.expect(0);
    assert!(out.stderr.contains(&format!("run {b} ")), "{out}");
    assert!(out.stderr.contains("recorded as interrupted"), "{out}");
    all_under_k2(&t, &tb, &plain, &k1, &k2).await;
    let rs = runs(&t).await;
    let outcomes: Vec<&str> = rs.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(
        outcomes,
        ["ok", "interrupted", "interrupted", "ok"],
        "{rs:?}"
    );
    let ev = events(&t, &cfg).await;
    assert_eq!(of_run(&ev, &b, "run.interrupted").len(), 1, "{ev:#?}");
    let st = t
        .keyturn(&cfg, &["--json", "status"])
        .await
        .expect(0)
        .json();
    assert_eq!(st["runs"], serde_json::json!([]), "{st:#}");
    // A rotate finished after both: nothing left to flag.
    let r = t
        .keyturn(&cfg, &["--json", "report"])
        .await
        .expect(0)
        .json();
    assert_eq!(r["flagged_runs"], serde_json::json!([]), "{r:#}");
}

/// Before any run records it, `status`, `audit list` and `report` show the
/// killed run `run_id` as interrupted, and write nothing.
async fn seen_interrupted(t: &TestDb, cfg: &Cfg, run_id: &str, census_killed: bool) {
    let st = t.keyturn(cfg, &["--json", "status"]).await.expect(0).json();
    let open = st["runs"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{st:#}");
    assert_eq!(open[0]["run_id"], run_id);
    assert_eq!(open[0]["state"], "interrupted");
    let text = t.keyturn(cfg, &["status"]).await.expect(0);
    assert!(
        text.stdout.contains(&format!("{run_id} ")) && text.stdout.contains("INTERRUPTED"),
        "{text}"
    );

    let ev = events(t, cfg).await;
    let start = of_run(&ev, run_id, "rotate.start");
    let list = t.keyturn(cfg, &["audit", "list"]).await.expect(0);
    if census_killed {
        assert!(start.is_empty(), "{ev:#?}");
        assert!(
            list.stdout.contains(run_id)
                && list.stdout.contains("interrupted before its start event"),
            "{list}"
        );
    } else {
        assert_eq!(start.len(), 1, "{ev:#?}");
        assert_eq!(start[0]["run_state"], "interrupted", "{:#}", start[0]);
        assert!(list.stdout.contains("INTERRUPTED"), "{list}");
    }

    let r = t.keyturn(cfg, &["--json", "report"]).await.expect(0).json();
    let flagged: Vec<&Value> = r["flagged_runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["run_id"] == run_id)
        .collect();
    assert_eq!(flagged.len(), 1, "{r:#}");
    assert_eq!(flagged[0]["outcome"], "interrupted");
    assert_eq!(flagged[0]["seq"], Value::Null);
    assert_ne!(r["summary"]["compliance"], "ok", "{:#}", r["summary"]);
    let text = t.keyturn(cfg, &["report"]).await.expect(0);
    assert!(
        !text.stdout.contains("compliance: ok") && text.stdout.contains(run_id),
        "{text}"
    );

    // Read-only: the record still says running.
    let still: Vec<_> = runs(t)
        .await
        .into_iter()
        .filter(|r| r.0 == run_id)
        .collect();
    assert_eq!(still[0].2, "running");
}

/// Holds `table` so that reading it waits (PostgreSQL: an ACCESS EXCLUSIVE
/// lock in an open transaction; MariaDB: LOCK TABLES … WRITE), until the
/// returned guard is dropped. `None` on SQLite.
async fn hold_table(t: &TestDb, table: &str) -> Option<TableHold> {
    use sqlx::Connection as _;
    match t.kind {
        Kind::Postgres => {
            let mut c = sqlx::PgConnection::connect(&t.url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            )))
            .execute(&mut c)
            .await
            .unwrap();
            Some(TableHold::Pg(c))
        }
        Kind::MariaDb => {
            let mut c = sqlx::MySqlConnection::connect(&t.url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("LOCK TABLES {table} WRITE")))
                .execute(&mut c)
                .await
                .unwrap();
            Some(TableHold::My(c))
        }
        Kind::Sqlite => None,
    }
}

/// A connection holding a table.
enum TableHold {
    Pg(sqlx::PgConnection),
    My(sqlx::MySqlConnection),
}

impl TableHold {
    /// Closes the connection, which ends the hold.
    async fn release(self) {
        use sqlx::Connection as _;
        let closed = match self {
            TableHold::Pg(c) => c.close().await,
            TableHold::My(c) => c.close().await,
        };
        closed.expect("closing the holding connection");
    }
}

/// stdout and stderr are one pipe whose reader goes away after the first
/// line (or at once): `rotate`, `verify --deep` and `status` never panic
/// (exit 101) and the rotation completes, recorded in keyturn_runs and the
/// audit trail.
async fn closed_pipe_never_kills_a_run(t: TestDb) {
    let (tb, plain, k1, k2) = encrypted(&t, "pipe", 1500).await;
    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let out = t
        .keyturn_into_pipe(
            &cfg,
            &["rotate", "--batch-size", "100", "--max-rows-per-sec", "250"],
            "head -n 1",
        )
        .await
        .expect(0);
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    all_under_k2(&t, &tb, &plain, &k1, &k2).await;
    let rs = runs(&t).await;
    let (id, _, outcome) = rs.last().unwrap().clone();
    assert_eq!(outcome, "ok", "{rs:?}");
    let ev = events(&t, &cfg).await;
    assert_eq!(of_run(&ev, &id, "rotate.end")[0]["outcome"], "ok");

    // Closed before anything is written, with --json too.
    let cfg_k3 = {
        let k3 = t.key("k3");
        Cfg::new(&[&tb], &[&k1, &k2, &k3], "k3")
    };
    t.keyturn_into_pipe(&cfg_k3, &["--json", "rotate"], "true")
        .await
        .expect(0);
    t.keyturn_into_pipe(&cfg_k3, &["rotate", "--max-rows-per-sec", "2000"], "true")
        .await
        .expect(0);
    let rs = runs(&t).await;
    assert!(rs.iter().all(|r| r.2 == "ok"), "{rs:?}");
    t.keyturn_into_pipe(&cfg_k3, &["verify", "--deep"], "head -n 1")
        .await
        .expect(0);
    t.keyturn_into_pipe(&cfg_k3, &["status"], "true")
        .await
        .expect(0);
    let ev = events(&t, &cfg_k3).await;
    let last = ev.last().unwrap();
    assert_eq!(last["action"], "verify", "{last:#}");
    assert_eq!(last["outcome"], "ok", "{last:#}");
    t.keyturn(&cfg_k3, &["verify", "--deep"]).await.expect(0);
}
