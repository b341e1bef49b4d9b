//! keyturn's own tables in the target database.
//!
//! | table                 | holds                                                        |
//! |-----------------------|--------------------------------------------------------------|
//! | `keyturn_checkpoints` | where an unfinished rotate/encrypt stopped, per column       |
//! | `keyturn_runs`        | one row per run: operation, actor, times, outcome, summary   |
//! | `keyturn_bad_rows`    | one record per row a run or verify could not process: table, column, key, reason, first/last seen, times seen, acknowledgement |
//! | `keyturn_lock`        | who holds the rotation lock and since when                   |
//!
//! Times are stored as RFC 3339 UTC text so the three backends agree.

use crate::driver::{Record, Sql, Tx, Value};
use crate::sql::Dialect;
use crate::{DbError, LockInfo};
use serde::Serialize;

/// Where an unfinished operation on one column stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// `rotate` or `encrypt`.
    pub operation: String,
    /// The table the operation works on.
    pub table: String,
    /// The column the operation works on.
    pub column: String,
    /// The primary key id the run was writing under: a checkpoint taken
    /// under another primary is not resumed.
    pub target_key: String,
    /// The last primary key (JSON array) whose batch is fully written.
    pub last_pk: String,
    /// Rows processed up to `last_pk` (written, skipped or failed), earlier
    /// runs' included.
    pub rows_done: u64,
    /// The run that saved the checkpoint.
    pub run_id: String,
    /// When it was saved (keyturn's timestamp format, [`crate::ts`]).
    pub updated_at: String,
}

/// A row a run (or `verify`) could not process, as seen once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadRow {
    /// The run (or verify) that saw it.
    pub run_id: String,
    /// The row's table.
    pub table: String,
    /// The column whose value could not be processed.
    pub column: String,
    /// The primary key, rendered for people ([`crate::pk_display`]).
    pub pk: String,
    /// Why the value could not be processed.
    pub reason: String,
    /// When it was seen (keyturn's timestamp format, [`crate::ts`]).
    pub seen_at: String,
    /// [`value_fingerprint`] of the value as read: an acknowledgement holds
    /// only while the value stays the same. Never shown.
    #[serde(skip)]
    pub value_fingerprint: String,
}

/// The record of one bad row in `keyturn_bad_rows`: one per (table,
/// column, primary key), however often it was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadRowRecord {
    /// The row's table.
    pub table: String,
    /// The column whose value could not be processed.
    pub column: String,
    /// The primary key, rendered for people ([`crate::pk_display`]).
    pub pk: String,
    /// The reason given the last time it was seen.
    pub reason: String,
    /// When it was first seen (keyturn's timestamp format, [`crate::ts`]).
    pub first_seen: String,
    /// When it was last seen.
    pub last_seen: String,
    /// How many times runs and verifies have recorded it.
    pub times_seen: u64,
    /// The run (or verify) that saw it last.
    pub run_id: String,
    /// Acknowledged for the value it holds now (`keyturn bad-rows ack`).
    pub acknowledged: bool,
    /// Acknowledged once, but the value changed since: no longer
    /// acknowledged.
    pub changed_since_ack: bool,
    /// When it was last acknowledged; `None` if it never was.
    pub acked_at: Option<String>,
    /// Who acknowledged it last; `None` if nobody did.
    pub acked_by: Option<String>,
    /// Why it was last acknowledged; `None` if it never was.
    pub ack_reason: Option<String>,
    /// [`value_fingerprint`] of the value as last seen. Never shown.
    #[serde(skip)]
    pub value_fingerprint: String,
}

/// An acknowledgement of bad rows: who, when, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRowAck {
    /// Who acknowledges.
    pub by: String,
    /// When (keyturn's timestamp format, [`crate::ts`]).
    pub at: String,
    /// Why they are acknowledged (free text).
    pub reason: String,
}

/// A one-way fingerprint of a stored value (SHA-256, hex), so that an
/// acknowledgement of a bad row can tell whether the value changed. It is
/// kept only next to the row's own record in the same database, deleted
/// with it, and never printed, audited or reported.
pub fn value_fingerprint(value: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of a bad-row record: SHA-256 of the rendered primary key, so a
/// key of any length fits a primary-key index on every database.
pub(crate) fn pk_hash(pk: &str) -> String {
    value_fingerprint(pk.as_bytes())
}

/// One run of a state-changing command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// The run's unique id (also its lock token and audit `run_id`).
    pub run_id: String,
    /// `rotate` or `encrypt`.
    pub operation: String,
    /// Who ran it.
    pub actor: String,
    /// When it started (keyturn's timestamp format, [`crate::ts`]).
    pub started_at: String,
    /// When it ended; `None` while it is `running`.
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
    /// The host the holder runs on.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// Unique to this holder (a run's id): the lock's `keyturn_lock` row
    /// carries it, so a holder checks and deletes only its own row.
    pub token: String,
}

/// This machine's host name (from the OS, through the `hostname` crate),
/// or `unknown-host`: the one place keyturn asks (locks, runs, instances,
/// audit actors, webhook messages).
pub fn host_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

impl LockHolder {
    /// This process, with a token of its own (see [`LockHolder::with_token`]).
    pub fn current(operation: &str) -> LockHolder {
        let host = host_name();
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

/// How long a check of the lock's session may take before the session is
/// taken for dead (a network that dropped it without a word).
pub(crate) const LOCK_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads `keyturn_lock`'s row as (holder, since, token).
pub(crate) const LOCK_ROW_SQL: &str =
    "SELECT holder, since, holder_token FROM keyturn_lock WHERE name = 'rotation'";

/// The current time in keyturn's one timestamp format ([`crate::ts`]).
pub fn now_rfc3339() -> String {
    crate::ts::now_text()
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
        bad_rows_table(d),
        run_control_table(),
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

/// `keyturn_run_control`: an operator's latest request per run.
pub(crate) fn run_control_table() -> String {
    "CREATE TABLE IF NOT EXISTS keyturn_run_control (
        run_id VARCHAR(64) NOT NULL PRIMARY KEY,
        action VARCHAR(16) NOT NULL,
        actor VARCHAR(255) NOT NULL,
        requested_at VARCHAR(40) NOT NULL)"
        .to_string()
}

/// Records a request for a run (run id, action, actor, requested at).
pub(crate) fn run_control_upsert(d: Dialect) -> String {
    let phs: Vec<String> = (1..=4).map(|i| d.ph(i)).collect();
    let cols = "run_id, action, actor, requested_at";
    match d {
        Dialect::MySql => format!(
            "REPLACE INTO keyturn_run_control ({cols}) VALUES ({})",
            phs.join(", ")
        ),
        _ => format!(
            "INSERT INTO keyturn_run_control ({cols}) VALUES ({}) \
             ON CONFLICT (run_id) DO UPDATE SET action = excluded.action, actor = excluded.actor, requested_at = excluded.requested_at",
            phs.join(", ")
        ),
    }
}

/// `keyturn_bad_rows`: one record per row.
pub(crate) fn bad_rows_table(d: Dialect) -> String {
    let text = d.long_text();
    format!(
        "CREATE TABLE IF NOT EXISTS keyturn_bad_rows (
            table_name VARCHAR(190) NOT NULL,
            column_name VARCHAR(190) NOT NULL,
            pk_hash VARCHAR(64) NOT NULL,
            pk {text} NOT NULL,
            reason {text} NOT NULL,
            first_seen VARCHAR(40) NOT NULL,
            last_seen VARCHAR(40) NOT NULL,
            times_seen BIGINT NOT NULL,
            run_id VARCHAR(64) NOT NULL,
            value_fingerprint VARCHAR(64) NOT NULL,
            acked_fingerprint VARCHAR(64),
            acked_at VARCHAR(40),
            acked_by VARCHAR(255),
            ack_reason {text},
            PRIMARY KEY (table_name, column_name, pk_hash))"
    )
}

/// Inserts or updates one bad-row record per row (parameters: see
/// [`bad_row_binds`]).
pub(crate) fn bad_rows_upsert(d: Dialect, rows: usize) -> String {
    let cols = "table_name, column_name, pk_hash, pk, reason, first_seen, last_seen, times_seen, run_id, value_fingerprint";
    let mut values = Vec::with_capacity(rows);
    for i in 0..rows {
        let b = i * 9;
        let ph: Vec<String> = (1..=9).map(|j| d.ph(b + j)).collect();
        values.push(format!(
            "({}, {}, {}, {}, {}, {}, {}, 1, {}, {})",
            ph[0], ph[1], ph[2], ph[3], ph[4], ph[5], ph[6], ph[7], ph[8]
        ));
    }
    let values = values.join(", ");
    match d {
        Dialect::MySql => format!(
            "INSERT INTO keyturn_bad_rows ({cols}) VALUES {values} ON DUPLICATE KEY UPDATE \
             reason = VALUES(reason), last_seen = VALUES(last_seen), times_seen = times_seen + 1, \
             run_id = VALUES(run_id), value_fingerprint = VALUES(value_fingerprint)"
        ),
        _ => format!(
            "INSERT INTO keyturn_bad_rows ({cols}) VALUES {values} \
             ON CONFLICT (table_name, column_name, pk_hash) DO UPDATE SET \
             reason = excluded.reason, last_seen = excluded.last_seen, \
             times_seen = keyturn_bad_rows.times_seen + 1, run_id = excluded.run_id, \
             value_fingerprint = excluded.value_fingerprint"
        ),
    }
}

/// The parameters of one row of [`bad_rows_upsert`], in order.
pub(crate) fn bad_row_binds(r: &BadRow) -> [String; 9] {
    [
        r.table.clone(),
        r.column.clone(),
        pk_hash(&r.pk),
        r.pk.clone(),
        r.reason.clone(),
        r.seen_at.clone(),
        r.seen_at.clone(),
        r.run_id.clone(),
        r.value_fingerprint.clone(),
    ]
}

/// Every record, or one table's or column's, in a stable order.
pub(crate) fn bad_rows_select(d: Dialect, table: bool, column: bool) -> String {
    let mut conds = Vec::new();
    let mut n = 0;
    if table {
        n += 1;
        conds.push(format!("table_name = {}", d.ph(n)));
    }
    if column {
        n += 1;
        conds.push(format!("column_name = {}", d.ph(n)));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    format!(
        "SELECT table_name, column_name, pk, reason, first_seen, last_seen, times_seen, run_id, \
         value_fingerprint, acked_fingerprint, acked_at, acked_by, ack_reason \
         FROM keyturn_bad_rows{filter} ORDER BY table_name, column_name, first_seen, pk"
    )
}

/// Deletes the records of the given rows of one column.
pub(crate) fn bad_rows_delete(d: Dialect, rows: usize) -> String {
    let phs: Vec<String> = (3..rows + 3).map(|i| d.ph(i)).collect();
    format!(
        "DELETE FROM keyturn_bad_rows WHERE table_name = {} AND column_name = {} AND pk_hash IN ({})",
        d.ph(1),
        d.ph(2),
        phs.join(", ")
    )
}

/// Acknowledges one row's record for the value it holds now.
pub(crate) fn bad_row_ack(d: Dialect) -> String {
    format!(
        "UPDATE keyturn_bad_rows SET acked_fingerprint = value_fingerprint, acked_at = {}, acked_by = {}, ack_reason = {} \
         WHERE table_name = {} AND column_name = {} AND pk_hash = {}",
        d.ph(1),
        d.ph(2),
        d.ph(3),
        d.ph(4),
        d.ph(5),
        d.ph(6)
    )
}

/// Where keyturn 0.1's `keyturn_bad_rows` (one line per sighting) is moved
/// before its rows are folded into today's table.
pub(crate) const OLD_BAD_ROWS: &str = "keyturn_bad_rows_v0";

pub(crate) fn bad_rows_rename_old(d: Dialect) -> String {
    match d {
        Dialect::MySql => format!("RENAME TABLE keyturn_bad_rows TO {OLD_BAD_ROWS}"),
        _ => format!("ALTER TABLE keyturn_bad_rows RENAME TO {OLD_BAD_ROWS}"),
    }
}

/// One line of keyturn 0.1's table.
pub(crate) struct OldSighting {
    pub run_id: String,
    pub table: String,
    pub column: String,
    pub pk: String,
    pub reason: String,
    pub seen_at: String,
}

/// A record folded from old sightings.
pub(crate) struct FoldedRecord {
    pub last: OldSighting,
    pub first_seen: String,
    pub times_seen: u64,
}

impl FoldedRecord {
    /// The parameters of [`bad_row_import`] but the last (times seen).
    pub(crate) fn binds(&self) -> [String; 9] {
        let l = &self.last;
        [
            l.table.clone(),
            l.column.clone(),
            pk_hash(&l.pk),
            l.pk.clone(),
            l.reason.clone(),
            self.first_seen.clone(),
            l.seen_at.clone(),
            l.run_id.clone(),
            // The value was not fingerprinted then: the next sighting does.
            String::new(),
        ]
    }
}

/// Sightings in time order → one record per (table, column, key).
pub(crate) fn fold_old_sightings(seen: Vec<OldSighting>) -> Vec<FoldedRecord> {
    let mut out: Vec<FoldedRecord> = Vec::new();
    let mut index: std::collections::HashMap<(String, String, String), usize> =
        std::collections::HashMap::new();
    for s in seen {
        let key = (s.table.clone(), s.column.clone(), s.pk.clone());
        match index.get(&key) {
            Some(&i) => {
                out[i].times_seen += 1;
                out[i].last = s;
            }
            None => {
                index.insert(key, out.len());
                out.push(FoldedRecord {
                    first_seen: s.seen_at.clone(),
                    times_seen: 1,
                    last: s,
                });
            }
        }
    }
    out
}

/// Inserts one folded record (parameters: [`FoldedRecord::binds`], then
/// times seen).
pub(crate) fn bad_row_import(d: Dialect) -> String {
    let ph: Vec<String> = (1..=10).map(|i| d.ph(i)).collect();
    format!(
        "INSERT INTO keyturn_bad_rows (table_name, column_name, pk_hash, pk, reason, first_seen, last_seen, run_id, value_fingerprint, times_seen) VALUES ({})",
        ph.join(", ")
    )
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

/// Inserts or replaces a checkpoint (parameters: operation, table,
/// column, target key, last key, rows done, run id, updated at).
pub(crate) fn checkpoint_upsert(d: Dialect) -> String {
    let phs: Vec<String> = (1..=8).map(|i| d.ph(i)).collect();
    let cols =
        "operation, table_name, column_name, target_key, last_pk, rows_done, run_id, updated_at";
    match d {
        Dialect::MySql => format!(
            "REPLACE INTO keyturn_checkpoints ({cols}) VALUES ({})",
            phs.join(", ")
        ),
        _ => format!(
            "INSERT INTO keyturn_checkpoints ({cols}) VALUES ({}) \
             ON CONFLICT (operation, table_name, column_name) DO UPDATE SET target_key = excluded.target_key, last_pk = excluded.last_pk, \
             rows_done = excluded.rows_done, run_id = excluded.run_id, updated_at = excluded.updated_at",
            phs.join(", ")
        ),
    }
}

/// Inserts a run, or records its end (parameters: run id, operation,
/// actor, started at, finished at, outcome, summary).
pub(crate) fn run_upsert(d: Dialect) -> String {
    let phs: Vec<String> = (1..=7).map(|i| d.ph(i)).collect();
    let cols = "run_id, operation, actor, started_at, finished_at, outcome, summary";
    match d {
        Dialect::MySql => format!(
            "REPLACE INTO keyturn_runs ({cols}) VALUES ({})",
            phs.join(", ")
        ),
        _ => format!(
            "INSERT INTO keyturn_runs ({cols}) VALUES ({}) \
             ON CONFLICT (run_id) DO UPDATE SET finished_at = excluded.finished_at, outcome = excluded.outcome, summary = excluded.summary",
            phs.join(", ")
        ),
    }
}

// ---------------------------------------------------------------------------
// The lock's row, `keyturn_lock`, the same for every lock primitive
// ---------------------------------------------------------------------------

/// Records `holder` in `keyturn_lock`, in `tx` when given (the row of an
/// earlier holder, whose session is gone since this one has the lock, is
/// replaced).
pub(crate) async fn record_holder(
    sql: &dyn Sql,
    tx: Option<&mut Box<dyn Tx>>,
    holder: &LockHolder,
    since: &str,
) -> Result<(), DbError> {
    let d = sql.dialect();
    let phs: Vec<String> = (1..=6).map(|i| d.ph(i)).collect();
    let cols = "name, holder, host, pid, since, heartbeat, holder_token";
    let statement = match d {
        Dialect::MySql | Dialect::Sqlite => format!(
            "REPLACE INTO keyturn_lock ({cols}) VALUES ('rotation', {})",
            phs.join(", ")
        ),
        Dialect::Postgres => format!(
            "INSERT INTO keyturn_lock ({cols}) VALUES ('rotation', {}) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, host = excluded.host, pid = excluded.pid, \
             since = excluded.since, heartbeat = excluded.heartbeat, holder_token = excluded.holder_token",
            phs.join(", ")
        ),
    };
    let params: Vec<Value> = vec![
        (&holder.description).into(),
        (&holder.host).into(),
        i64::from(holder.pid).into(),
        since.into(),
        since.into(),
        (&holder.token).into(),
    ];
    let what = "recording the rotation lock";
    match tx {
        Some(tx) => tx.execute(&statement, params).await,
        None => sql.execute(&statement, params).await,
    }
    .map_err(DbError::at(what))?;
    Ok(())
}

/// Deletes the holder's own row (never a row another holder wrote after
/// this one lost the lock).
pub(crate) async fn delete_holder(sql: &dyn Sql, token: &str) -> Result<(), DbError> {
    let statement = format!(
        "DELETE FROM keyturn_lock WHERE name = 'rotation' AND holder_token = {}",
        sql.dialect().ph(1)
    );
    sql.execute(&statement, vec![token.into()])
        .await
        .map_err(DbError::at("deleting the rotation lock's record"))?;
    Ok(())
}

/// Who holds the lock, from its row, for a holder that could not take it.
pub(crate) async fn holder_row(sql: &dyn Sql, own_token: &str) -> Result<LockInfo, DbError> {
    let rows = sql
        .query(LOCK_ROW_SQL, Vec::new())
        .await
        .map_err(DbError::at("reading the rotation lock"))?;
    Ok(other_holder(lock_row(&rows)?, Some(own_token)))
}

/// Who holds the lock, from its row (made by any keyturn), for a lock the
/// server says is held.
pub(crate) async fn held_by<D: crate::driver::Driver>(driver: &D) -> Result<LockInfo, DbError> {
    let rows = match driver.describe_table("keyturn_lock").await? {
        Some(info) => {
            let q = if info.column_type("holder_token").is_some() {
                LOCK_ROW_SQL
            } else {
                "SELECT holder, since, '' FROM keyturn_lock WHERE name = 'rotation'"
            };
            driver
                .query(q, Vec::new())
                .await
                .map_err(DbError::at("reading the rotation lock"))?
        }
        None => Vec::new(),
    };
    Ok(other_holder(lock_row(&rows)?, None))
}

/// A lock row's three text columns.
fn lock_row(rows: &[Record]) -> Result<Option<(String, String, String)>, DbError> {
    rows.first()
        .map(|r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_sightings_fold_into_one_record_per_row() {
        let s = |pk: &str, at: &str, why: &str| OldSighting {
            run_id: format!("run-{at}"),
            table: "t".into(),
            column: "c".into(),
            pk: pk.into(),
            reason: why.into(),
            seen_at: at.into(),
        };
        let folded = fold_old_sightings(vec![
            s("1", "a", "first"),
            s("2", "a", "x"),
            s("1", "b", "second"),
            s("1", "c", "third"),
        ]);
        assert_eq!(folded.len(), 2);
        assert_eq!(
            (
                folded[0].first_seen.as_str(),
                folded[0].last.seen_at.as_str(),
                folded[0].times_seen,
                folded[0].last.reason.as_str()
            ),
            ("a", "c", 3, "third")
        );
        assert_eq!(folded[1].times_seen, 1);
    }

    #[test]
    fn fingerprints_are_sha256_hex() {
        assert_eq!(
            value_fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(pk_hash("1").len(), 64);
    }
}
