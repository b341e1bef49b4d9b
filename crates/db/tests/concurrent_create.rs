//! keyturn's own tables are created on first use by whichever process gets
//! there first. Several processes (or one process's tasks) starting together
//! must all succeed: on PostgreSQL two concurrent `CREATE TABLE IF NOT
//! EXISTS` can otherwise fail with a unique violation on `pg_type`.
//!
//! Each round uses a schema (PostgreSQL) or database (MariaDB) of its own, so
//! the tables really are missing when the racers start. Servers come from
//! `KEYTURN_TEST_POSTGRES_URL` / `KEYTURN_TEST_MYSQL_URL`; an unreachable one
//! is skipped loudly unless `KEYTURN_REQUIRE_DBS=1`.

use keyturn_db::{ConnectOptions, Database};
use std::sync::Arc;

const RACERS: usize = 8;
const ROUNDS: usize = 6;

fn require() -> bool {
    std::env::var("KEYTURN_REQUIRE_DBS").is_ok_and(|v| v == "1")
}

fn unique(prefix: &str, round: usize) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{n}_{round}", std::process::id())
}

async fn connect(url: &str) -> Option<Arc<dyn Database>> {
    let opts = ConnectOptions {
        max_connections: RACERS as u32,
        ..ConnectOptions::default()
    };
    match keyturn_db::connect(url, &opts).await {
        Ok(db) => Some(db),
        Err(e) if require() => panic!("{url} required (KEYTURN_REQUIRE_DBS=1) but: {e}"),
        Err(e) => {
            eprintln!("SKIPPED concurrent-create test on {url}: {e}");
            None
        }
    }
}

/// Every racer creates every bookkeeping table at the same moment; all must
/// succeed and the tables must then be usable.
async fn race(db: Arc<dyn Database>) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..RACERS {
        let db = db.clone();
        set.spawn(async move {
            db.ensure_meta().await?;
            db.ensure_catalog().await?;
            db.ensure_instances().await
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.unwrap().unwrap();
    }
    // The tables exist and answer queries.
    assert!(
        db.load_instances("nobody")
            .await
            .unwrap()
            .instances
            .is_empty()
    );
    assert!(db.load_catalog("nobody").await.unwrap().is_empty());
}

#[tokio::test]
async fn postgres_tables_created_by_racing_sessions() {
    let url = std::env::var("KEYTURN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let Some(admin) = connect(&url).await else {
        return;
    };
    for round in 0..ROUNDS {
        let schema = unique("kt_race", round);
        admin
            .execute_script(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
        let db = connect(&scoped).await.expect("the server just answered");
        race(db.clone()).await;
        db.close().await;
        admin
            .execute_script(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }
    admin.close().await;
}

#[tokio::test]
async fn mysql_tables_created_by_racing_sessions() {
    let url = std::env::var("KEYTURN_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned());
    let Some(admin) = connect(&url).await else {
        return;
    };
    // The URL's database is replaced by a fresh one per round.
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url.as_str(), String::new()),
    };
    let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
    for round in 0..ROUNDS {
        let database = unique("kt_race", round);
        admin
            .execute_script(&format!("CREATE DATABASE {database}"))
            .await
            .unwrap();
        let db = connect(&format!("{server}/{database}{query}"))
            .await
            .expect("the server just answered");
        race(db.clone()).await;
        db.close().await;
        admin
            .execute_script(&format!("DROP DATABASE {database}"))
            .await
            .unwrap();
    }
    admin.close().await;
}
