//! keyturn's own tables in the target database.
//!
//! | table                 | holds                                                        |
//! |-----------------------|--------------------------------------------------------------|
//! | `keyturn_checkpoints` | where an unfinished rotate/encrypt stopped, per column       |
//! | `keyturn_runs`        | one row per run: operation, actor, times, outcome, summary   |
//! | `keyturn_bad_rows`    | rows a run could not process: table, column, key, reason     |
//! | `keyturn_lock`        | who holds the rotation lock and since when                   |
//!
//! Times are stored as RFC 3339 UTC text so the three backends agree.

use crate::sql::Dialect;
use crate::{DbError, LockInfo};
use serde::Serialize;

/// Where an unfinished operation on one column stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// `rotate` or `encrypt`.
    pub operation: String,
    pub table: String,
    pub column: String,
    /// The primary key id the run was writing under: a checkpoint taken
    /// under another primary is not resumed.
    pub target_key: String,
    /// The last primary key (JSON array) whose batch is fully written.
    pub last_pk: String,
    pub rows_done: u64,
    pub run_id: String,
    pub updated_at: String,
}

/// A row a run could not process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadRow {
    pub run_id: String,
    pub table: String,
    pub column: String,
    /// The primary key, rendered for people.
    pub pk: String,
    pub reason: String,
    pub seen_at: String,
}

/// One run of a state-changing command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub operation: String,
    pub actor: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `running`, `ok`, `completed_with_errors`, `interrupted`, `failed`.
    pub outcome: String,
    /// JSON summary (counts per column).
    pub summary: String,
}

/// Who is taking the lock.
#[derive(Clone, Debug)]
pub struct LockHolder {
    /// `user@host pid N (operation)`.
    pub description: String,
    pub host: String,
    pub pid: u32,
    /// Unique to this holder (a run's id): the lock's `keyturn_lock` row
    /// carries it, so a holder checks and deletes only its own row.
    pub token: String,
}

impl LockHolder {
    /// This process, with a token of its own (see [`LockHolder::with_token`]).
    pub fn current(operation: &str) -> LockHolder {
        let host = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown-host".into());
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".into());
        let pid = std::process::id();
        static TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        LockHolder {
            description: format!("{user}@{host} pid {pid} ({operation})"),
            token: format!("{pid}-{nanos}-{n}"),
            host,
            pid,
        }
    }

    /// The same holder with `token` (at most 64 characters), e.g. the run id.
    pub fn with_token(mut self, token: &str) -> LockHolder {
        self.token = token.to_owned();
        self
    }
}

/// Says who holds a lock from its `keyturn_lock` row (holder, since,
/// token): a row missing, or naming `own_token` (a holder that lost the lock
/// to a session that wrote no row), tells nothing about the new holder.
pub(crate) fn other_holder(
    row: Option<(String, String, String)>,
    own_token: Option<&str>,
) -> LockInfo {
    match row {
        Some((holder, since, token)) if own_token != Some(token.as_str()) => LockInfo {
            holder,
            since,
            token: Some(token).filter(|t| !t.is_empty()),
        },
        _ => LockInfo {
            holder: "another session (no details recorded)".into(),
            since: "unknown".into(),
            token: None,
        },
    }
}

/// The query reading `keyturn_lock`'s row as (holder, since, token), or
/// `None` when the table does not exist; the token reads empty from a
/// table made before tokens existed.
pub(crate) async fn lock_row_sql(
    db: &dyn crate::Database,
) -> Result<Option<&'static str>, DbError> {
    let Some(info) = db.describe_table("keyturn_lock").await? else {
        return Ok(None);
    };
    Ok(Some(if info.column_type("holder_token").is_some() {
        LOCK_ROW_SQL
    } else {
        "SELECT holder, since, '' FROM keyturn_lock WHERE name = 'rotation'"
    }))
}

/// How long a check of the lock's session may take before the session is
/// taken for dead (a network that dropped it without a word).
pub(crate) const LOCK_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads `keyturn_lock`'s row as (holder, since, token).
pub(crate) const LOCK_ROW_SQL: &str =
    "SELECT holder, since, holder_token FROM keyturn_lock WHERE name = 'rotation'";

/// Reads a lock row's three text columns.
macro_rules! lock_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        match $row {
            Some(r) => Some((
                r.try_get::<String, _>(0)
                    .map_err(DbError::query("reading the rotation lock"))?,
                r.try_get::<String, _>(1)
                    .map_err(DbError::query("reading the rotation lock"))?,
                r.try_get::<String, _>(2)
                    .map_err(DbError::query("reading the rotation lock"))?,
            )),
            None => None,
        }
    }};
}

/// The current time as RFC 3339 UTC text.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

pub(crate) fn create_tables(d: Dialect) -> Vec<String> {
    // VARCHAR lengths keep MySQL's index size limit happy with utf8mb4.
    let text = d.long_text();
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS keyturn_checkpoints (
                operation VARCHAR(32) NOT NULL,
                table_name VARCHAR(190) NOT NULL,
                column_name VARCHAR(190) NOT NULL,
                target_key VARCHAR(64) NOT NULL,
                last_pk {text} NOT NULL,
                rows_done BIGINT NOT NULL,
                run_id VARCHAR(64) NOT NULL,
                updated_at VARCHAR(40) NOT NULL,
                PRIMARY KEY (operation, table_name, column_name))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS keyturn_runs (
                run_id VARCHAR(64) NOT NULL PRIMARY KEY,
                operation VARCHAR(32) NOT NULL,
                actor VARCHAR(255) NOT NULL,
                started_at VARCHAR(40) NOT NULL,
                finished_at VARCHAR(40),
                outcome VARCHAR(32) NOT NULL,
                summary {text} NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS keyturn_bad_rows (
                run_id VARCHAR(64) NOT NULL,
                table_name VARCHAR(190) NOT NULL,
                column_name VARCHAR(190) NOT NULL,
                pk {text} NOT NULL,
                reason {text} NOT NULL,
                seen_at VARCHAR(40) NOT NULL)"
        ),
        "CREATE TABLE IF NOT EXISTS keyturn_lock (
                name VARCHAR(64) NOT NULL PRIMARY KEY,
                holder VARCHAR(255) NOT NULL,
                host VARCHAR(255) NOT NULL,
                pid BIGINT NOT NULL,
                since VARCHAR(40) NOT NULL,
                heartbeat VARCHAR(40) NOT NULL,
                holder_token VARCHAR(64) NOT NULL DEFAULT '')"
            .to_string(),
    ]
}

/// Brings keyturn's tables made by an older keyturn up to date: adds
/// `keyturn_lock.holder_token` where it is missing. Two processes doing it at
/// once: the loser's `ALTER` fails and it finds the column there.
pub(crate) async fn upgrade_tables(db: &dyn crate::Database) -> Result<(), DbError> {
    let has_token = |info: Option<crate::TableInfo>| {
        info.is_none_or(|i| i.column_type("holder_token").is_some())
    };
    if has_token(db.describe_table("keyturn_lock").await?) {
        return Ok(());
    }
    let added = db
        .execute_script(
            "ALTER TABLE keyturn_lock ADD COLUMN holder_token VARCHAR(64) NOT NULL DEFAULT ''",
        )
        .await;
    match added {
        Err(e) if !has_token(db.describe_table("keyturn_lock").await?) => Err(e),
        _ => Ok(()),
    }
}

/// The `Database` methods over `keyturn_runs` that the run lifecycle needs,
/// the same for every backend (expanded inside `impl_database!`, hence
/// boxed futures: `async_trait` does not see into a nested macro).
macro_rules! run_methods {
    () => {
        fn running_runs(
            &self,
        ) -> $crate::instances::BoxFuture<'_, Result<Vec<$crate::RunRecord>, DbError>> {
            Box::pin(async move {
                use sqlx::Row as _;
                if self.describe_table("keyturn_runs").await?.is_none() {
                    return Ok(Vec::new());
                }
                let what = "reading keyturn_runs";
                let rows = sqlx::query(
                    "SELECT run_id, operation, actor, started_at, finished_at, outcome, summary \
                 FROM keyturn_runs WHERE outcome = 'running' ORDER BY started_at, run_id",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(DbError::query(what))?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    out.push($crate::RunRecord {
                        run_id: r.try_get(0).map_err(DbError::query(what))?,
                        operation: r.try_get(1).map_err(DbError::query(what))?,
                        actor: r.try_get(2).map_err(DbError::query(what))?,
                        started_at: r.try_get(3).map_err(DbError::query(what))?,
                        finished_at: r.try_get(4).map_err(DbError::query(what))?,
                        outcome: r.try_get(5).map_err(DbError::query(what))?,
                        summary: r.try_get(6).map_err(DbError::query(what))?,
                    });
                }
                Ok(out)
            })
        }

        fn mark_run_interrupted<'a>(
            &'a self,
            run_id: &'a str,
            finished_at: &'a str,
        ) -> $crate::instances::BoxFuture<'a, Result<bool, DbError>> {
            Box::pin(async move {
                let d = Self::DIALECT;
                let sql = format!(
                    "UPDATE keyturn_runs SET outcome = 'interrupted', finished_at = {} \
                 WHERE run_id = {} AND outcome = 'running'",
                    d.ph(1),
                    d.ph(2)
                );
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(finished_at.to_owned())
                    .bind(run_id.to_owned())
                    .execute(&self.pool)
                    .await
                    .map_err(DbError::query("recording an interrupted run"))?;
                Ok(done.rows_affected() > 0)
            })
        }
    };
}
