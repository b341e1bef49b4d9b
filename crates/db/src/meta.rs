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
}

impl LockHolder {
    pub fn current(operation: &str) -> LockHolder {
        let host = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown-host".into());
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".into());
        let pid = std::process::id();
        LockHolder {
            description: format!("{user}@{host} pid {pid} ({operation})"),
            host,
            pid,
        }
    }
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
                heartbeat VARCHAR(40) NOT NULL)"
            .to_string(),
    ]
}
