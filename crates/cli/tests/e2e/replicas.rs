//! Replica lag (`rotation.max_replica_lag`) against a real PostgreSQL
//! streaming replica: `.ci/start-replica.sh` makes one with `pg_basebackup
//! -R` on another port and exports `KEYTURN_PG_REPLICA_URL`. A run pauses
//! while the replica's replay is paused (`pg_wal_replay_pause()`) and goes
//! on after `pg_wal_replay_resume()`; a replica whose lag cannot be read
//! refuses the run unless it is optional.
//!
//! Without the variable the tests skip loudly, or fail under
//! `KEYTURN_REQUIRE_DBS=1`.

use crate::common::*;
use std::time::{Duration, Instant};

const REPLICA_ENV: &str = "KEYTURN_PG_REPLICA_URL";

fn replica_server(test: &str) -> Option<String> {
    match std::env::var(REPLICA_ENV) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            let msg = format!(
                "SKIPPED {test}: no PostgreSQL replica ({REPLICA_ENV} unset; bash .ci/start-replica.sh makes one)"
            );
            assert!(
                !std::env::var("KEYTURN_REQUIRE_DBS").is_ok_and(|v| v == "1"),
                "{msg}, and KEYTURN_REQUIRE_DBS=1"
            );
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "\n!!!!!!!!!! {msg} !!!!!!!!!!");
            None
        }
    }
}

/// Runs SQL on the replica (its `postgres` database).
async fn on_replica(server: &str, sql: &str) {
    let url = with_database(server, "postgres");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connecting to the replica");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql} on the replica: {e}"));
    pool.close().await;
}

/// Resumes the replica's replay when dropped, whatever the test did.
struct ResumeReplay(String);

impl Drop for ResumeReplay {
    fn drop(&mut self) {
        let url = with_database(&self.0, "postgres");
        let _ = std::process::Command::new("psql")
            .arg(url)
            .arg("-qAtc")
            .arg("select pg_wal_replay_resume()")
            .output();
    }
}

async fn plaintext_table(t: &TestDb, n: i64) -> Table {
    t.plaintext_table(&t.table_name("replica"), "v", n).await
}

async fn encrypted(t: &TestDb, tb: &Table) -> usize {
    t.read(tb)
        .await
        .values()
        .filter(|v| !v[0].as_deref().unwrap_or_default().starts_with(b"value-"))
        .count()
}

#[test]
fn pauses_while_replay_is_paused() {
    run(Kind::Postgres, "replica_pause", |t: TestDb| async move {
        let Some(server) = replica_server("pauses_while_replay_is_paused") else {
            return;
        };
        let n = 6000;
        let tb = plaintext_table(&t, n).await;
        let key = t.key("k1");
        let mut cfg = Cfg::new(&[&tb], &[&key], "k1");
        cfg.batch_size = 200;
        cfg.rotation_toml = "max_replica_lag = \"1s\"".into();
        on_replica(&server, "select pg_wal_replay_pause()").await;
        let _guard = ResumeReplay(server.clone());
        let mut p = t.spawn(&cfg, &["--json", "encrypt", "--max-rows-per-sec", "3000"]);
        p.wait_stderr("\"event\":\"paused\"", Duration::from_secs(60))
            .await;
        assert!(
            p.stderr_so_far().contains("replica lag"),
            "{}",
            p.stderr_so_far()
        );
        // Paused: at most the batches already past the check are written.
        let before = encrypted(&t, &tb).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = encrypted(&t, &tb).await;
        assert!(
            after - before <= 2 * 200,
            "kept writing while paused: {before} -> {after}"
        );
        assert!(before < n as usize, "finished before the lag showed");
        assert!(!p.finished(), "the run ended while the replica was paused");
        on_replica(&server, "select pg_wal_replay_resume()").await;
        let o = p.wait(Duration::from_secs(120)).await.expect(0);
        assert!(o.stderr.contains("\"event\":\"resumed\""), "{o}");
        assert_eq!(encrypted(&t, &tb).await, n as usize);
        assert_eq!(o.json()["outcome"], "ok", "{o}");
    });
}

#[test]
fn unreadable_lag_refuses_unless_optional() {
    run(
        Kind::Postgres,
        "replica_unreadable",
        |t: TestDb| async move {
            let Some(_server) = replica_server("unreadable_lag_refuses_unless_optional") else {
                return;
            };
            let tb = plaintext_table(&t, 300).await;
            let key = t.key("k1");
            let mut cfg = Cfg::new(&[&tb], &[&key], "k1");
            // The primary named as a replica: it is not in recovery, so it has
            // no lag to read.
            cfg.rotation_toml = format!("max_replica_lag = \"2s\"\nreplicas = [\"{}\"]", t.url);
            let o = t.keyturn(&cfg, &["encrypt"]).await.expect(1);
            assert!(o.stderr.contains("cannot be read"), "{o}");
            assert!(o.stderr.contains("optional"), "{o}");
            assert_eq!(encrypted(&t, &tb).await, 0, "wrote before refusing");
            cfg.rotation_toml = format!(
                "max_replica_lag = \"2s\"\nreplicas = [{{ url = \"{}\", optional = true }}]",
                t.url
            );
            let started = Instant::now();
            t.keyturn(&cfg, &["encrypt"]).await.expect(0);
            assert_eq!(encrypted(&t, &tb).await, 300);
            assert!(started.elapsed() < Duration::from_secs(60));
        },
    );
}

/// MariaDB/MySQL replicas are named in `rotation.replicas` and read with
/// `SHOW REPLICA STATUS`; a server that is not a replica has no lag to read.
#[test]
fn mariadb_replica_that_is_not_one_is_refused_unless_optional() {
    run(Kind::MariaDb, "replica_mariadb", |t: TestDb| async move {
        let tb = plaintext_table(&t, 200).await;
        let key = t.key("k1");
        let mut cfg = Cfg::new(&[&tb], &[&key], "k1");
        // Without named replicas there is nothing MariaDB could find itself.
        cfg.rotation_toml = "max_replica_lag = \"2s\"".into();
        let o = t.keyturn(&cfg, &["encrypt"]).await.expect(1);
        assert!(o.stderr.contains("list them in rotation.replicas"), "{o}");
        cfg.rotation_toml = format!("max_replica_lag = \"2s\"\nreplicas = [\"{}\"]", t.url);
        let o = t.keyturn(&cfg, &["encrypt"]).await.expect(1);
        assert!(o.stderr.contains("it is not a replica"), "{o}");
        assert_eq!(encrypted(&t, &tb).await, 0, "wrote before refusing");
        cfg.rotation_toml = format!(
            "max_replica_lag = \"2s\"\nreplicas = [{{ url = \"{}\", optional = true }}]",
            t.url
        );
        t.keyturn(&cfg, &["encrypt"]).await.expect(0);
        assert_eq!(encrypted(&t, &tb).await, 200);
    });
}
