//! Test databases: SQLite files in a temp dir, and — where reachable — a
//! fresh PostgreSQL / MariaDB database per test (created here, dropped at
//! the end), so tests never see each other's audit trails.
//!
//! - `KEYTURN_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! - `KEYTURN_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`)
//! - an unreachable server prints `SKIPPED: …` to stderr, unless
//!   `KEYTURN_REQUIRE_DBS=1`, which makes it a failure.
#![allow(dead_code)]

use keyturn_db::{ConnectOptions, Database};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

pub fn require_dbs() -> bool {
    std::env::var("KEYTURN_REQUIRE_DBS").is_ok_and(|v| v == "1")
}

/// A skip must be seen: straight to the process's stderr.
pub fn skip(test: &str, why: &str) {
    if require_dbs() {
        panic!(
            "KEYTURN_REQUIRE_DBS=1 but {test} cannot run: {why} (start them with: bash .ci/start-dbs.sh)"
        );
    }
    let line = format!(
        "SKIPPED: {test}: {why} (bash .ci/start-dbs.sh starts them; KEYTURN_REQUIRE_DBS=1 makes this a failure)\n"
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

pub async fn sqlite(dir: &std::path::Path, name: &str) -> Arc<dyn Database> {
    let url = format!("sqlite://{}", dir.join(name).display());
    keyturn_db::connect(
        &url,
        &ConnectOptions {
            max_connections: 8,
            create_if_missing: true,
            lock_timeout: None,
        },
    )
    .await
    .expect("open sqlite")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Postgres,
    MySql,
}

impl Server {
    pub fn base_url(self) -> String {
        match self {
            Server::Postgres => std::env::var("KEYTURN_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            Server::MySql => std::env::var("KEYTURN_TEST_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Server::Postgres => "PostgreSQL",
            Server::MySql => "MariaDB/MySQL",
        }
    }
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    format!("{}/{db}{query}", &base[..path_start])
}

/// A fresh database on a server, dropped by [`ServerDb::drop_now`].
pub struct ServerDb {
    pub server: Server,
    pub name: String,
    pub url: String,
    pub db: Arc<dyn Database>,
    admin: Arc<dyn Database>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl ServerDb {
    /// `None` (after a loud skip) when the server cannot be reached.
    pub async fn create(server: Server, test: &str) -> Option<ServerDb> {
        let base = server.base_url();
        let admin = match keyturn_db::connect(&base, &ConnectOptions::default()).await {
            Ok(a) => a,
            Err(e) => {
                skip(
                    test,
                    &format!(
                        "{} not reachable at {}: {e}",
                        server.name(),
                        keyturn_db::redact_url(&base)
                    ),
                );
                return None;
            }
        };
        let name = format!(
            "kt_audit_t{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        // MariaDB: a latin1 database on purpose; the audit table must
        // still hold every character exactly (it declares utf8mb4 itself).
        let create = match server {
            Server::Postgres => format!("CREATE DATABASE {name}"),
            Server::MySql => format!("CREATE DATABASE {name} CHARACTER SET latin1"),
        };
        admin
            .execute_script(&create)
            .await
            .expect("create test database");
        let url = with_database(&base, &name);
        let db = keyturn_db::connect(
            &url,
            &ConnectOptions {
                max_connections: 8,
                create_if_missing: false,
                lock_timeout: None,
            },
        )
        .await
        .expect("connect to the test database");
        Some(ServerDb {
            server,
            name,
            url,
            db,
            admin,
        })
    }

    pub async fn drop_now(self) {
        self.db.close().await;
        let sql = match self.server {
            Server::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            Server::MySql => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        let _ = self.admin.execute_script(&sql).await;
        self.admin.close().await;
    }
}
