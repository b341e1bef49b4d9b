//! The rotation lock and the run records on SQLite, through the public
//! trait (PostgreSQL and MariaDB are covered by the CLI suite, where a test
//! terminates the lock's session).

use crate::{
    ConnectOptions, Database, LockCheck, LockGuard, LockHolder, LockOutcome, RunRecord, connect,
};
use std::sync::Arc;

async fn open(dir: &tempfile::TempDir) -> Arc<dyn Database> {
    let db = connect(
        &format!("sqlite://{}", dir.path().join("lock.db").display()),
        &ConnectOptions {
            max_connections: 2,
            create_if_missing: true,
            lock_timeout: None,
        },
    )
    .await
    .unwrap();
    db.ensure_meta().await.unwrap();
    db
}

fn holder(token: &str) -> LockHolder {
    LockHolder::current("rotate").with_token(token)
}

async fn take(db: &dyn Database, token: &str) -> LockGuard {
    match db.try_lock(&holder(token)).await.unwrap() {
        LockOutcome::Acquired(g) => g,
        LockOutcome::Held { holder, .. } => panic!("held by {holder}"),
    }
}

/// The lease row's token, if there is a row.
async fn lease_token(db: &dyn Database) -> Option<String> {
    db.lock_status().await.unwrap().and_then(|i| i.token)
}

#[tokio::test]
async fn a_second_holder_is_refused_and_status_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    assert_eq!(db.lock_status().await.unwrap(), None);
    let a = take(db.as_ref(), "run-a").await;
    assert_eq!(a.token(), "run-a");
    match db.try_lock(&holder("run-b")).await.unwrap() {
        LockOutcome::Held { holder, .. } => assert!(holder.contains("(rotate)"), "{holder}"),
        LockOutcome::Acquired(_) => panic!("taken twice"),
    }
    let status = db.lock_status().await.unwrap().expect("held");
    assert_eq!(status.token.as_deref(), Some("run-a"));
    assert_eq!(a.check().await.unwrap(), LockCheck::Held);
    a.release().await.unwrap();
    // Released: the row is gone; a second release does nothing.
    assert_eq!(db.lock_status().await.unwrap(), None);
    a.release().await.unwrap();
}

#[tokio::test]
async fn a_vanished_lease_is_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let a = take(db.as_ref(), "run-a").await;
    db.execute_script("DELETE FROM keyturn_lock").await.unwrap();
    assert_eq!(a.check().await.unwrap(), LockCheck::Retaken);
    assert_eq!(lease_token(db.as_ref()).await.as_deref(), Some("run-a"));
    assert_eq!(a.check().await.unwrap(), LockCheck::Held);
    a.release().await.unwrap();
}

/// A holder whose lease was taken over (its process looked gone) learns it
/// lost the lock and to whom, and its release leaves the new holder's row.
#[tokio::test]
async fn release_deletes_only_the_holders_own_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let a = take(db.as_ref(), "run-a").await;
    // A's lease as a dead process on another machine would leave it.
    db.execute_script(
        "UPDATE keyturn_lock SET host = 'elsewhere', heartbeat = '2000-01-01T00:00:00Z'",
    )
    .await
    .unwrap();
    let b = take(db.as_ref(), "run-b").await;
    match a.check().await.unwrap() {
        LockCheck::Lost { holder, .. } => assert!(holder.contains("(rotate)"), "{holder}"),
        other => panic!("{other:?}"),
    }
    a.release().await.unwrap();
    assert_eq!(lease_token(db.as_ref()).await.as_deref(), Some("run-b"));
    assert_eq!(b.check().await.unwrap(), LockCheck::Held);
    b.release().await.unwrap();
    assert_eq!(db.lock_status().await.unwrap(), None);
}

#[tokio::test]
async fn running_runs_are_listed_and_marked_interrupted_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let run = |id: &str, outcome: &str| RunRecord {
        run_id: id.into(),
        operation: "rotate".into(),
        actor: "tester".into(),
        started_at: format!("2026-01-01T00:00:0{}Z", id.len() % 10),
        finished_at: None,
        outcome: outcome.into(),
        summary: "{}".into(),
    };
    db.save_run(&run("r1", "running")).await.unwrap();
    db.save_run(&run("r22", "ok")).await.unwrap();
    let running = db.running_runs().await.unwrap();
    assert_eq!(running, vec![run("r1", "running")]);
    assert!(
        db.mark_run_interrupted("r1", "2026-01-01T01:00:00Z")
            .await
            .unwrap()
    );
    assert!(
        !db.mark_run_interrupted("r1", "2026-01-01T02:00:00Z")
            .await
            .unwrap()
    );
    assert!(
        !db.mark_run_interrupted("r22", "2026-01-01T02:00:00Z")
            .await
            .unwrap()
    );
    assert!(db.running_runs().await.unwrap().is_empty());
}

/// Nothing to read in a database keyturn never wrote to.
#[tokio::test]
async fn a_fresh_database_has_no_lock_and_no_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(
        &format!("sqlite://{}", dir.path().join("fresh.db").display()),
        &ConnectOptions {
            max_connections: 1,
            create_if_missing: true,
            lock_timeout: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(db.lock_status().await.unwrap(), None);
    assert!(db.running_runs().await.unwrap().is_empty());
}

/// A `keyturn_lock` made before holders had tokens gets the column, and its
/// old row still tells who holds the lock.
#[tokio::test]
async fn an_old_lock_table_is_brought_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(
        &format!("sqlite://{}", dir.path().join("old.db").display()),
        &ConnectOptions {
            max_connections: 1,
            create_if_missing: true,
            lock_timeout: None,
        },
    )
    .await
    .unwrap();
    db.execute_script(
        "CREATE TABLE keyturn_lock (name VARCHAR(64) NOT NULL PRIMARY KEY, holder VARCHAR(255) NOT NULL, \
         host VARCHAR(255) NOT NULL, pid BIGINT NOT NULL, since VARCHAR(40) NOT NULL, heartbeat VARCHAR(40) NOT NULL)",
    )
    .await
    .unwrap();
    let me = LockHolder::current("rotate");
    db.execute_script(&format!(
        "INSERT INTO keyturn_lock VALUES ('rotation', 'old@host pid {pid} (rotate)', '{host}', {pid}, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
        pid = me.pid,
        host = me.host
    ))
    .await
    .unwrap();
    let before = db
        .lock_status()
        .await
        .unwrap()
        .expect("held by this process");
    assert_eq!(before.token, None);
    db.ensure_meta().await.unwrap();
    db.ensure_meta().await.unwrap();
    let info = db.describe_table("keyturn_lock").await.unwrap().unwrap();
    assert!(info.column_type("holder_token").is_some());
    let after = db.lock_status().await.unwrap().expect("still held");
    assert_eq!(after.holder, before.holder);
}
