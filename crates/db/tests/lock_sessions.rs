//! The rotation lock when its session dies, on PostgreSQL and MariaDB: the
//! holder notices, takes the lock again when it is free, learns who has it
//! when it is not, and its release deletes only its own `keyturn_lock` row.
//!
//! Each test uses a database of its own (advisory locks and `GET_LOCK`
//! names are per database here). Servers come from
//! `KEYTURN_TEST_POSTGRES_URL` / `KEYTURN_TEST_MYSQL_URL`; an unreachable one
//! is skipped loudly unless `KEYTURN_REQUIRE_DBS=1`.

use keyturn_db::{ConnectOptions, Database, LockCheck, LockGuard, LockHolder, LockOutcome};
use sqlx::Connection as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn require() -> bool {
    std::env::var("KEYTURN_REQUIRE_DBS").is_ok_and(|v| v == "1")
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{n}", std::process::id())
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
    format!("{server}/{db}{query}")
}

async fn connect(url: &str) -> Option<Arc<dyn Database>> {
    match keyturn_db::connect(url, &ConnectOptions::default()).await {
        Ok(db) => Some(db),
        Err(e) if require() => panic!("{url} required (KEYTURN_REQUIRE_DBS=1) but: {e}"),
        Err(e) => {
            eprintln!("SKIPPED lock session test on {url}: {e}");
            None
        }
    }
}

async fn take(db: &dyn Database, who: &str) -> LockGuard {
    let holder = LockHolder {
        description: format!("{who}@itest pid 1 (rotate)"),
        host: "itest".into(),
        pid: 1,
        token: format!("token-{who}"),
    };
    match db.try_lock(&holder).await.unwrap() {
        LockOutcome::Acquired(g) => g,
        LockOutcome::Held { holder, .. } => panic!("held by {holder}"),
    }
}

/// Waits until nobody holds the lock (a terminated session takes a moment
/// to go).
async fn until_free(db: &dyn Database) {
    let start = Instant::now();
    while db.lock_status().await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the lock's session did not end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The scenario, with `kill` ending the session that holds the lock.
async fn scenario<K, F>(db: Arc<dyn Database>, kill: K)
where
    K: Fn() -> F,
    F: std::future::Future<Output = ()>,
{
    db.ensure_meta().await.unwrap();
    assert_eq!(db.lock_status().await.unwrap(), None);
    let a = take(db.as_ref(), "alice").await;
    let st = db.lock_status().await.unwrap().expect("held");
    assert_eq!(st.token.as_deref(), Some("token-alice"));
    assert!(st.holder.starts_with("alice@itest"), "{st:?}");
    assert_eq!(a.check().await.unwrap(), LockCheck::Held);

    // Session ended, nobody waiting: taken again.
    kill().await;
    until_free(db.as_ref()).await;
    assert_eq!(a.check().await.unwrap(), LockCheck::Retaken);
    assert_eq!(a.check().await.unwrap(), LockCheck::Held);
    assert_eq!(
        db.lock_status().await.unwrap().and_then(|s| s.token),
        Some("token-alice".into())
    );

    // Session ended and someone else got there first.
    kill().await;
    until_free(db.as_ref()).await;
    let b = take(db.as_ref(), "bob").await;
    match a.check().await.unwrap() {
        LockCheck::Lost { holder, .. } => assert!(holder.starts_with("bob@itest"), "{holder}"),
        other => panic!("expected the lock lost to bob, got {other:?}"),
    }
    // Alice's release leaves Bob's lock and record alone.
    a.release().await.unwrap();
    let st = db.lock_status().await.unwrap().expect("bob holds it");
    assert_eq!(st.token.as_deref(), Some("token-bob"));
    assert_eq!(b.check().await.unwrap(), LockCheck::Held);
    b.release().await.unwrap();
    assert_eq!(db.lock_status().await.unwrap(), None);
    db.close().await;
}

#[tokio::test]
async fn postgres_lock_session_terminated() {
    let url = std::env::var("KEYTURN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let Some(admin) = connect(&url).await else {
        return;
    };
    let name = unique("kt_lock");
    admin
        .execute_script(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let scoped = with_database(&url, &name);
    let db = connect(&scoped).await.expect("the server just answered");
    let kill = || {
        let scoped = scoped.clone();
        async move {
            let mut c = sqlx::PgConnection::connect(&scoped).await.unwrap();
            let n: i64 = sqlx::query_scalar(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(&mut c)
            .await
            .unwrap();
            assert_eq!(n, 1, "one session holds the lock");
            c.close().await.unwrap();
        }
    };
    scenario(db, kill).await;
    admin
        .execute_script(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
    admin.close().await;
}

#[tokio::test]
async fn mysql_lock_session_killed() {
    let url = std::env::var("KEYTURN_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned());
    let Some(admin) = connect(&url).await else {
        return;
    };
    let name = unique("kt_lock");
    admin
        .execute_script(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let scoped = with_database(&url, &name);
    let db = connect(&scoped).await.expect("the server just answered");
    let kill = || {
        let scoped = scoped.clone();
        async move {
            let mut c = sqlx::MySqlConnection::connect(&scoped).await.unwrap();
            let id: i64 = sqlx::query_scalar(
                "SELECT CAST(IS_USED_LOCK(CONCAT('keyturn.rotation.', MD5(DATABASE()))) AS SIGNED)",
            )
            .fetch_one(&mut c)
            .await
            .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL {id}")))
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
        }
    };
    scenario(db, kill).await;
    admin
        .execute_script(&format!("DROP DATABASE {name}"))
        .await
        .unwrap();
    admin.close().await;
}
