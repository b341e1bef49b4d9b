//! Short locks for the application's writers (`rotation.lock_timeout`): an
//! application transaction holds a row lock during a run; keyturn does not
//! wait behind it, writes the rest of the table while the lock is held
//! (within 5 s on PostgreSQL; MariaDB counts lock waits in whole seconds, so
//! 8 s there), and comes back to that row once the lock is gone.
//! PostgreSQL and MariaDB (SQLite has no row locks).

use crate::common::*;
use sqlx::Connection as _;
use std::time::{Duration, Instant};

const ROWS: i64 = 4000;
const LOCKED: i64 = 1200;

#[test]
fn postgres_lock_held_by_the_application() {
    run(Kind::Postgres, "row_lock_held", held_lock);
}

#[test]
fn mariadb_lock_held_by_the_application() {
    run(Kind::MariaDb, "row_lock_held", held_lock);
}

async fn encrypted(t: &TestDb, tb: &Table) -> Vec<i64> {
    t.read(tb)
        .await
        .iter()
        .filter(|(_, v)| !v[0].as_deref().unwrap_or_default().starts_with(b"value-"))
        .map(|(pk, _)| match pk[0] {
            keyturn_db::PkValue::Int(i) => i,
            _ => unreachable!("integer keys"),
        })
        .collect()
}

/// Opens a transaction that locks row `LOCKED` and keeps it until the
/// returned sender fires (or is dropped), then commits. Returns when the
/// lock is taken.
async fn hold_lock(
    t: &TestDb,
    table: &str,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let url = t.url.clone();
    let kind = t.kind;
    let sql = format!("SELECT v FROM {table} WHERE id = {LOCKED} FOR UPDATE");
    let h = tokio::spawn(async move {
        match kind {
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
                let mut x = c.begin().await.expect("begin");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *x)
                    .await
                    .expect("lock");
                let _ = tx.send(());
                let _ = released.await;
                x.commit().await.expect("commit");
            }
            _ => {
                let mut c = sqlx::MySqlConnection::connect(&url).await.expect("connect");
                let mut x = c.begin().await.expect("begin");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *x)
                    .await
                    .expect("lock");
                let _ = tx.send(());
                let _ = released.await;
                x.commit().await.expect("commit");
            }
        }
    });
    rx.await.expect("the lock was taken");
    (h, release)
}

async fn held_lock(t: TestDb) {
    let tb = t
        .plaintext_table(&t.table_name("row_lock"), "v", ROWS)
        .await;
    let key = t.key("k1");
    let mut cfg = Cfg::new(&[&tb], &[&key], "k1");
    cfg.batch_size = 200;
    cfg.rotation_toml = "lock_timeout = \"200ms\"".into();
    let (holder, release) = hold_lock(&t, &tb.name).await;
    let locked_at = Instant::now();
    let deadline = match t.kind {
        Kind::MariaDb => Duration::from_secs(8),
        _ => Duration::from_secs(5),
    };
    let mut p = t.spawn(&cfg, &["--json", "encrypt"]);
    // While the lock is held, every other row is written.
    let mut others_done = false;
    while locked_at.elapsed() < deadline {
        let done = encrypted(&t, &tb).await;
        assert!(
            !done.contains(&LOCKED),
            "wrote through the application's lock"
        );
        if done.len() == (ROWS - 1) as usize {
            others_done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        others_done,
        "keyturn waited behind the locked row: {} of {} other rows written in {:?}",
        encrypted(&t, &tb).await.len(),
        ROWS - 1,
        locked_at.elapsed()
    );
    assert!(
        !p.finished(),
        "the run ended while the row was still locked"
    );
    let _ = release.send(());
    holder.await.expect("lock holder");
    let o = p.wait(Duration::from_secs(120)).await.expect(0);
    let r = o.json();
    assert_eq!(r["outcome"], "ok", "{o}");
    assert_eq!(r["columns"][0]["written"], ROWS, "{o}");
    assert_eq!(r["bad_rows"], serde_json::json!([]), "{o}");
    assert_eq!(encrypted(&t, &tb).await.len(), ROWS as usize);
    // The row the application held decrypts like every other.
    let v = t
        .keyturn(&cfg, &["--json", "verify", "--deep"])
        .await
        .expect(0);
    assert_eq!(v.json()["columns"][0]["failing"], 0, "{v}");
}
