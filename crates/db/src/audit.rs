//! keyturn's audit table, `keyturn_audit`: one row per event, hash-chained.
//!
//! This layer only stores and reads rows; what an event means, how its hash
//! is computed and how the chain is verified live in `keyturn-audit`
//! (docs/AUDIT.md). The database's part is concurrency: an append reads the
//! chain's tip and inserts `seq = tip + 1` in one transaction; `seq` is the
//! primary key, so two concurrent appenders cannot both extend the same tip
//! (one gets a unique-key violation and retries against the new tip).

use crate::sql::Dialect;
use serde::Serialize;

/// One stored audit event, column for column. JSON columns hold text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    /// 1, 2, 3, … without gaps; the primary key.
    pub seq: i64,
    /// Version of the event's canonical form (1).
    pub format_version: i64,
    /// RFC 3339 UTC with milliseconds, e.g. `2025-03-01T10:00:00.000Z`.
    pub event_time: String,
    /// What happened, by the action's name in `keyturn-audit`
    /// (`key.add`, `rotate.start`, …).
    pub action: String,
    /// Who: `--actor`, else `user@host`.
    pub actor: String,
    /// How it ended (`started`, `ok`, `completed_with_errors`, `failed`, …).
    pub outcome: String,
    /// Why, if given (free text).
    pub reason: Option<String>,
    /// The engine's run id, for rotate and encrypt events.
    pub run_id: Option<String>,
    /// JSON array of key ids.
    pub key_ids: String,
    /// JSON array of per-column counts.
    pub column_counts: String,
    /// How long the action took, in milliseconds (end events only).
    pub duration_ms: Option<i64>,
    /// JSON object.
    pub details: String,
    /// Hex SHA-256 of the previous event (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of this event's canonical form.
    pub hash: String,
}

/// The last event of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditTip {
    /// The last event's sequence number; the next event takes `seq + 1`.
    pub seq: i64,
    /// The last event's hash (hex SHA-256), the next event's `prev_hash`.
    pub hash: String,
}

/// Builds the row to insert after the given tip (`None`: the chain is
/// empty). Called again with the new tip when another appender won the race.
pub type AuditRowBuilder<'a> =
    dyn Fn(Option<&AuditTip>) -> Result<AuditRow, String> + Send + Sync + 'a;

/// Attempts before an append gives up under contention.
pub(crate) const APPEND_ATTEMPTS: usize = 50;

/// How an append waits before trying again against the new tip: 2 ms,
/// growing by half each attempt up to 40 ms, each pause with random jitter
/// (up to its own length) so that racing appenders spread out; at most
/// [`APPEND_ATTEMPTS`] attempts (a few seconds in all).
pub(crate) fn append_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(2))
        .with_factor(1.5)
        .with_max_delay(std::time::Duration::from_millis(40))
        .with_jitter()
        .with_max_times(APPEND_ATTEMPTS - 1)
}

pub(crate) const COLUMNS: &str = "seq, format_version, event_time, action, actor, outcome, reason, run_id, key_ids, column_counts, duration_ms, details, prev_hash, hash";

pub(crate) fn create_table(d: Dialect) -> String {
    let text = d.long_text();
    // MySQL/MariaDB: utf8mb4 with a binary collation whatever the database's
    // default, so every character is stored and read back exactly (the hash
    // covers the exact text).
    let options = match d {
        Dialect::MySql => " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        _ => "",
    };
    format!(
        "CREATE TABLE IF NOT EXISTS keyturn_audit (
            seq BIGINT NOT NULL PRIMARY KEY,
            format_version BIGINT NOT NULL,
            event_time VARCHAR(40) NOT NULL,
            action VARCHAR(64) NOT NULL,
            actor VARCHAR(255) NOT NULL,
            outcome VARCHAR(32) NOT NULL,
            reason {text},
            run_id VARCHAR(64),
            key_ids {text} NOT NULL,
            column_counts {text} NOT NULL,
            duration_ms BIGINT,
            details {text} NOT NULL,
            prev_hash VARCHAR(64) NOT NULL,
            hash VARCHAR(64) NOT NULL){options}"
    )
}

pub(crate) fn insert_sql(d: Dialect) -> String {
    let phs: Vec<String> = (1..=14).map(|i| d.ph(i)).collect();
    format!(
        "INSERT INTO keyturn_audit ({COLUMNS}) VALUES ({})",
        phs.join(", ")
    )
}

pub(crate) fn tip_sql() -> &'static str {
    "SELECT seq, hash FROM keyturn_audit ORDER BY seq DESC LIMIT 1"
}

pub(crate) fn read_sql(d: Dialect) -> String {
    format!(
        "SELECT {COLUMNS} FROM keyturn_audit WHERE seq > {} ORDER BY seq LIMIT {}",
        d.ph(1),
        d.ph(2)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;
    use std::time::Duration;

    #[test]
    fn append_backoff_is_bounded_and_jittered() {
        let delays: Vec<Duration> = append_backoff().build().collect();
        assert_eq!(delays.len(), APPEND_ATTEMPTS - 1);
        // Jitter adds at most the delay itself: never above twice the cap.
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(80)));
        assert!(delays[0] >= Duration::from_millis(2));
        let total: Duration = delays.iter().sum();
        assert!(total < Duration::from_secs(5), "{total:?}");
        // Two appenders racing do not wait in lockstep.
        let other: Vec<Duration> = append_backoff().build().collect();
        assert_ne!(delays, other);
    }
}
