//! The audit table on PostgreSQL and MariaDB/MySQL (each test in a fresh
//! database): exact round trip of every character (the hash covers the
//! exact text; the MariaDB test database is latin1 on purpose), edit
//! detection, and concurrent appenders that must not fork the chain.

mod common;

use common::{Server, ServerDb};
use keyturn_audit::{AuditAction, NewEvent, Outcome, append, store, verify};
use std::sync::Arc;

const TEXT: &str = "Schlüsselwechsel 🔑 \"q\" \\ \t\n ✓ 日本語";

async fn roundtrip_and_edit(server: Server, test: &str) {
    let Some(s) = ServerDb::create(server, test).await else {
        return;
    };
    let db = s.db.clone();
    for i in 0..5u64 {
        let e = NewEvent::new(AuditAction::RotateEnd, "ops@host", Outcome::Ok)
            .reason(Some(TEXT))
            .keys(["k2", "k1"])
            .detail("i", i)
            .detail("note", TEXT);
        append(db.as_ref(), &e).await.unwrap();
    }
    let evs = store::read_events(db.as_ref()).await.unwrap();
    assert_eq!(evs.len(), 5);
    assert_eq!(evs[2].reason.as_deref(), Some(TEXT));
    assert_eq!(evs[2].details["note"], TEXT);
    let r = verify(db.as_ref(), None).await.unwrap();
    assert!(r.ok, "{}: {r:?}", server.name());
    db.execute_script("UPDATE keyturn_audit SET actor = 'mallory' WHERE seq = 2")
        .await
        .unwrap();
    let bad = verify(db.as_ref(), None).await.unwrap().first_bad.unwrap();
    assert_eq!((bad.seq, bad.kind.as_str()), (2, "edited"));
    db.execute_script("DELETE FROM keyturn_audit WHERE seq = 4")
        .await
        .unwrap();
    let r = verify(db.as_ref(), None).await.unwrap();
    assert_eq!(
        r.problems.iter().map(|p| p.seq).collect::<Vec<_>>(),
        vec![2, 4]
    );
    s.drop_now().await;
}

async fn concurrent(server: Server, test: &str) {
    let Some(s) = ServerDb::create(server, test).await else {
        return;
    };
    let db = s.db.clone();
    // The table exists before the race (creation is not what is tested).
    append(
        db.as_ref(),
        &NewEvent::new(AuditAction::Verify, "setup", Outcome::Ok),
    )
    .await
    .unwrap();
    let mut handles = Vec::new();
    for t in 0..6 {
        let db: Arc<dyn keyturn_db::Database> = db.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let e = NewEvent::new(AuditAction::Verify, &format!("appender-{t}"), Outcome::Ok)
                    .detail("i", i);
                append(db.as_ref(), &e).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let rows = store::read_rows(db.as_ref()).await.unwrap();
    assert_eq!(rows.len(), 121);
    assert!(rows.iter().enumerate().all(|(i, r)| r.seq == i as i64 + 1));
    let r = verify(db.as_ref(), None).await.unwrap();
    assert!(r.ok, "{}: {r:?}", server.name());
    s.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_round_trip_and_edit() {
    roundtrip_and_edit(Server::Postgres, "postgres_round_trip_and_edit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_round_trip_and_edit() {
    roundtrip_and_edit(Server::MySql, "mysql_round_trip_and_edit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_appenders_never_fork_the_chain() {
    concurrent(
        Server::Postgres,
        "postgres_concurrent_appenders_never_fork_the_chain",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_concurrent_appenders_never_fork_the_chain() {
    concurrent(
        Server::MySql,
        "mysql_concurrent_appenders_never_fork_the_chain",
    )
    .await;
}
