//! Database adapters: one trait ([`Database`]) over PostgreSQL, MySQL /
//! MariaDB and SQLite, each driver behind it.
//!
//! The trait speaks in terms the rotation engine needs — keyset-paginated
//! batches, compare-and-swap batch writes (one statement per batch), counts
//! per key id computed by the database, and keyturn's own bookkeeping tables
//! (checkpoints, runs, bad rows, lock) — so the engine never writes SQL.
//!
//! Inside, each server is one `Driver` (`postgres.rs`, `mysql.rs`,
//! `sqlite.rs`: the hot path, the lock primitive, plain statements), and one
//! generic `Store<D: Driver>` (`store.rs`) implements [`Database`] over any
//! of them, bookkeeping included; `driver.rs` describes the seam and
//! docs/ARCHITECTURE.md ("Adding a database") what a new server takes.
#![forbid(unsafe_code)]

#[macro_use]
mod driver;
mod audit;
mod catalog;
pub mod cells;
mod census;
mod config;
mod error;
mod instances;
#[cfg(test)]
mod lock_tests;
mod meta;
mod missing;
mod mysql;
mod postgres;
pub mod replicas;
mod runs;
mod sql;
mod sqlite;
mod sqlite_direct;
mod store;
pub mod testing;
pub mod ts;

pub use audit::{AuditRow, AuditRowBuilder, AuditTip};
pub use catalog::{CatalogRow, CatalogWrite};
pub use census::KeyCensus;
pub use config::DatabaseConfig;
pub use error::{DbError, DriverError, DriverErrorKind, redact_url};
pub use instances::{BoxFuture, InstanceHeartbeat, InstanceRow, InstanceSnapshot};
pub use meta::{
    BadRow, BadRowAck, BadRowRecord, Checkpoint, LockHolder, RunRecord, host_name, now_rfc3339,
    value_fingerprint,
};
pub use runs::{OpenRun, open_runs};

use async_trait::async_trait;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// Which database server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// SQLite (`sqlite://` URLs).
    Sqlite,
    /// PostgreSQL (`postgres://` or `postgresql://` URLs).
    Postgres,
    /// MySQL or MariaDB (`mysql://` or `mariadb://` URLs).
    MySql,
}

impl Backend {
    /// The backend's lowercase name, as reports and JSON output spell it:
    /// `sqlite`, `postgres` or `mysql`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
        }
    }

    /// Recognizes the backend from a connection URL's scheme (compared
    /// case-insensitively); any other scheme is a [`DbError::Config`].
    pub fn from_url(url: &str) -> Result<Backend, DbError> {
        let scheme = url
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "mysql" | "mariadb" => Ok(Backend::MySql),
            _ => Err(DbError::Config(format!(
                "unsupported database URL scheme {scheme:?}: use sqlite://, postgres:// or mysql://"
            ))),
        }
    }

    /// What this kind of database can do ([`Capabilities`]): each backend
    /// states its own, next to its driver.
    pub fn capabilities(self) -> Capabilities {
        match self {
            Backend::Sqlite => sqlite::CAPABILITIES,
            Backend::Postgres => postgres::CAPABILITIES,
            Backend::MySql => mysql::CAPABILITIES,
        }
    }
}

/// What a database can do, as the layers above need to know it: asked of
/// the database ([`Database::capabilities`], or [`Backend::capabilities`]
/// before connecting), never decided by backend name above this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Bind parameters one batch-write statement may carry, when a batch
    /// must stay under a limit (`None`: batches are written without one;
    /// the engine then caps a batch at its configured size only).
    pub max_write_binds: Option<usize>,
    /// Batches in flight when `[rotation] workers` is not set.
    pub default_workers: usize,
    /// The database tests JSON validity without failing on invalid input
    /// (`JSON_VALID`, `json_valid`), so the census may read a JSON value's
    /// key with JSON functions; otherwise it matches the value's text.
    pub json_valid: bool,
    /// Server error codes (SQLSTATE or the server's own numbers) after
    /// which retrying may succeed: serialization failures, deadlocks, lock
    /// time-outs, a busy database, a server shutting down.
    pub transient_codes: &'static [&'static str],
    /// Parts of error messages that mean the same, for errors whose code
    /// does not say it.
    pub transient_messages: &'static [&'static str],
}

/// How a primary-key column is read, bound and ordered. Keyset pagination
/// compares each key in the column's own type, so every kind reads back
/// exactly what it binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PkKind {
    /// An integer type, read and bound as i64.
    Int,
    /// Text, varchar, char, uuid, …: read as text and bound as text cast
    /// back to the column's type.
    Text,
    /// numeric / decimal (and MySQL's `bigint unsigned`): read as the
    /// database's exact text form, bound as an exact number.
    Decimal,
    /// bytea, BLOB, binary, varbinary: read and bound as bytes.
    Bytes,
}

/// One primary-key column.
#[derive(Clone, Debug)]
pub struct PkColumn {
    /// The column's name, as the table declares it.
    pub name: String,
    /// How the column's values are read, bound and ordered.
    pub kind: PkKind,
    /// The column's type as the database spells it (used in casts).
    pub sql_type: String,
}

/// How an encrypted column stores its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// A text column (text, varchar, char, clob, …): values are read as
    /// their UTF-8 bytes and written back as text.
    Text,
    /// A binary column (bytea, BLOB, binary, varbinary): values are read
    /// and written as raw bytes.
    Binary,
}

/// One encrypted column of one table, resolved against the live schema.
#[derive(Clone, Debug)]
pub struct ColumnRef {
    /// The table's name, optionally `schema.table` (see
    /// [`check_identifier`]).
    pub table: String,
    /// The table's primary-key columns, in key order; keyset pagination
    /// orders rows by them.
    pub pk: Vec<PkColumn>,
    /// The encrypted column (for a multi-column value, the anchor: a row
    /// whose `column` is NULL holds no value).
    pub column: String,
    /// Whether `column` stores text or bytes.
    pub kind: ValueKind,
    /// A value spread over several columns of the row (a multi-column
    /// codec): every column read and written together, in packing order,
    /// `column` among them. Empty for a value held in `column` alone. See
    /// [`cells`] for how such a row travels as one [`Row::value`].
    pub cells: Vec<CellColumn>,
    /// Columns read beside the value but never written: what a KMS needs
    /// per row (a transit key name, a derivation context, an encryption
    /// context). Read in their text form (`CAST(col AS TEXT)`), into
    /// [`Row::aux`] in this order. The compare-and-swap compares the value
    /// alone.
    pub aux: Vec<String>,
}

/// One column of a multi-column value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellColumn {
    /// The column's name.
    pub name: String,
    /// Whether the column stores text or bytes.
    pub kind: ValueKind,
}

impl ColumnRef {
    /// Whether the value spans several columns ([`ColumnRef::cells`]).
    pub fn has_cells(&self) -> bool {
        !self.cells.is_empty()
    }
}

/// An operator's request to a running run, from any host that reaches the
/// database (`keyturn runs pause|resume|stop`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RunControl {
    /// The run it is for.
    pub run_id: String,
    /// `pause`, `resume` or `stop`.
    pub action: String,
    /// Who asked.
    pub actor: String,
    /// When (keyturn's timestamp format).
    pub requested_at: String,
}

/// A single-column [`ColumnRef`] for unit tests: every key column of the
/// given kind gets `sql_type`.
#[cfg(test)]
pub(crate) fn test_column(
    table: &str,
    column: &str,
    pk: &[(&str, PkKind)],
    sql_type: &str,
    kind: ValueKind,
) -> ColumnRef {
    ColumnRef {
        table: table.into(),
        pk: pk
            .iter()
            .map(|(n, k)| PkColumn {
                name: (*n).into(),
                kind: *k,
                sql_type: sql_type.into(),
            })
            .collect(),
        column: column.into(),
        kind,
        cells: Vec::new(),
        aux: Vec::new(),
    }
}

/// One primary-key value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum PkValue {
    /// An integer key ([`PkKind::Int`]).
    Int(i64),
    /// Text, and the exact text form of numeric keys.
    Text(String),
    /// A binary key (bytea, BLOB, varbinary).
    Bytes(Vec<u8>),
}

impl PkValue {
    /// The value as text for associated data (docs/FORMAT.md §9): integers
    /// in decimal, text and numbers as the database writes them, bytes in
    /// lowercase hex.
    pub fn context_text(&self) -> String {
        match self {
            PkValue::Int(i) => i.to_string(),
            PkValue::Text(s) => s.clone(),
            PkValue::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        }
    }
}

impl fmt::Display for PkValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkValue::Int(i) => write!(f, "{i}"),
            PkValue::Text(s) => f.write_str(s),
            PkValue::Bytes(b) => {
                f.write_str("0x")?;
                for x in b {
                    write!(f, "{x:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// A full primary key (one value per key column, in key order).
pub type Pk = Vec<PkValue>;

/// Renders a primary key for reports: `42`, or `(7, "eu")` for composite keys.
pub fn pk_display(pk: &[PkValue]) -> String {
    if pk.len() == 1 {
        return pk[0].to_string();
    }
    let parts: Vec<String> = pk
        .iter()
        .map(|v| match v {
            PkValue::Text(s) => format!("{s:?}"),
            other => other.to_string(),
        })
        .collect();
    format!("({})", parts.join(", "))
}

/// A row with a non-NULL value in the encrypted column.
#[derive(Clone)]
pub struct Row {
    /// The row's primary key.
    pub pk: Pk,
    /// The value as stored (empty when `problem` says it could not be read).
    pub value: Vec<u8>,
    /// The value cannot be one of the column's format whatever its bytes:
    /// found while reading it. The row is a bad row and is never written.
    pub problem: Option<ReadProblem>,
    /// The [`ColumnRef::aux`] columns of the row, in their text form (`None`:
    /// NULL), in order.
    pub aux: Vec<Option<String>>,
}

/// The key, the value's length and the problem: never the value (a stored
/// value may be plaintext or garbage that must not reach a log).
impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Row")
            .field("pk", &self.pk)
            .field(
                "value",
                &format_args!("({} bytes, not shown)", self.value.len()),
            )
            .field("problem", &self.problem)
            .field("aux", &self.aux.len())
            .finish()
    }
}

impl Row {
    /// A row read without problems.
    pub fn new(pk: Pk, value: Vec<u8>) -> Row {
        Row {
            pk,
            value,
            problem: None,
            aux: Vec::new(),
        }
    }
}

/// Why a value read from the database cannot be a value of its column's
/// format, whatever its bytes (the reason of a bad row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadProblem {
    /// A text column's value is not valid UTF-8 (a PostgreSQL `SQL_ASCII`
    /// database, or SQLite, store any bytes as text).
    NotUtf8,
    /// SQLite stored the value with another storage class than the
    /// column's (the class found: `BLOB`, `TEXT`, `INTEGER`, `REAL`).
    StorageClass(&'static str),
}

impl fmt::Display for ReadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadProblem::NotUtf8 => f.write_str("the text value is not valid UTF-8"),
            ReadProblem::StorageClass(c) => {
                write!(f, "the value is stored as {c}, not as the column's type")
            }
        }
    }
}

/// Values a read leaves out: those under the primary key, told by the
/// primary's `prefix` and, when the codec has one, its [`KeyCensus`] shape —
/// a damaged value behind the primary's prefix is still read, so that it is
/// named as a bad row.
#[derive(Clone, Debug)]
pub struct Skip {
    /// The leading bytes of every value written under the primary key (for
    /// a multi-column value, the packed leading cells, see [`cells`]).
    pub prefix: Vec<u8>,
    /// The codec's census: a single-column value with `prefix` is left out
    /// only when it also has the codec's shape.
    pub census: KeyCensus,
}

/// Write `new` where the column still holds exactly `old`.
#[derive(Clone)]
pub struct CasUpdate {
    /// The row to write.
    pub pk: Pk,
    /// The value the row held when it was read ([`Row::value`]); the write
    /// is skipped if the column holds anything else now.
    pub old: Vec<u8>,
    /// The value to write (packed cells for a multi-column value).
    pub new: Vec<u8>,
}

/// The key and the lengths of the two values, never the values.
impl fmt::Debug for CasUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CasUpdate")
            .field("pk", &self.pk)
            .field(
                "old",
                &format_args!("({} bytes, not shown)", self.old.len()),
            )
            .field(
                "new",
                &format_args!("({} bytes, not shown)", self.new.len()),
            )
            .finish()
    }
}

/// A table's columns as the database describes them.
#[derive(Clone, Debug)]
pub struct TableInfo {
    /// (name, type) in table order.
    pub columns: Vec<(String, String)>,
    /// The table's declared primary key, if any.
    pub primary_key: Vec<String>,
}

impl TableInfo {
    /// The type of the column called `name` (compared exactly), or `None`
    /// if the table has no such column.
    pub fn column_type(&self, name: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    }
}

/// Per-column counts computed by the database ([`Database::count_keys`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ColumnCounts {
    /// Rows in the table.
    pub total: u64,
    /// Rows whose value is NULL (for a multi-column value: whose anchor
    /// column is NULL).
    pub nulls: u64,
    /// Rows per key id, for values of the column's format that name their
    /// key (well-formed values only), sorted by key id.
    pub by_key: Vec<KeyCount>,
    /// Values of the column's format that name no key: their key is decided
    /// by decryption.
    pub keyless: u64,
    /// Non-NULL values that are not of the column's format: plaintext,
    /// garbage, another format, the wrong storage class or encoding.
    pub unrecognized: u64,
}

impl ColumnCounts {
    /// Non-NULL values.
    pub fn values(&self) -> u64 {
        self.total - self.nulls
    }

    /// Values counted under `key_id`.
    pub fn rows_under(&self, key_id: &str) -> u64 {
        self.by_key
            .iter()
            .filter(|k| k.key_id == key_id)
            .map(|k| k.rows)
            .sum()
    }
}

/// Values under one key id.
#[derive(Clone, Serialize)]
pub struct KeyCount {
    /// A validated key id.
    pub key_id: String,
    /// Rows whose value names this key.
    pub rows: u64,
    /// How the database spells the key in the values (hex, base64, the id
    /// itself), for [`Database::rows_with_tokens`]. Never shown.
    #[serde(skip)]
    pub tokens: Vec<Vec<u8>>,
}

/// The key id and its count; the database's spellings of the key are not
/// shown.
impl fmt::Debug for KeyCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCount")
            .field("key_id", &self.key_id)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// Outcome of trying to take the rotation lock.
#[derive(Debug)]
pub enum LockOutcome {
    /// The lock is ours until the guard is released or dropped.
    Acquired(LockGuard),
    /// Someone else holds it.
    Held {
        /// Who, as their `keyturn_lock` row describes them
        /// ([`LockInfo::holder`]).
        holder: String,
        /// Since when ([`LockInfo::since`]).
        since: String,
    },
}

/// Who holds the rotation lock, as [`Database::lock_status`] sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockInfo {
    /// `user@host pid N (operation)`, or a note that the holder left no
    /// record.
    pub holder: String,
    /// When the holder took the lock, in keyturn's timestamp format
    /// ([`ts`]), or `unknown` when it left no record.
    pub since: String,
    /// The holder's token (a run's id), when its record names one.
    pub token: Option<String>,
}

/// What [`LockGuard::check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockCheck {
    /// Still held.
    Held,
    /// The lock had gone (its session ended, the server restarted, or the
    /// lease row vanished) and nobody else had it: it is held again.
    Retaken,
    /// Someone else holds it now.
    Lost {
        /// Who, as [`LockInfo::holder`].
        holder: String,
        /// Since when, as [`LockInfo::since`].
        since: String,
    },
}

/// Holds the one-rotation-per-database lock until released or dropped
/// (dropping closes the lock's session, which frees it, but leaves its
/// `keyturn_lock` row behind).
pub struct LockGuard {
    token: String,
    inner: Box<dyn HeldLock>,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    fn new(token: &str, inner: Box<dyn HeldLock>) -> LockGuard {
        LockGuard {
            token: token.to_owned(),
            inner,
        }
    }

    /// The holder's token ([`LockHolder::token`]).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether the lock is still held; when its session is gone and the lock
    /// is free, takes it again (and rewrites the holder's record).
    pub async fn check(&self) -> Result<LockCheck, DbError> {
        self.inner.check().await
    }

    /// Frees the lock and deletes the holder's own `keyturn_lock` row (never
    /// a row another holder wrote after this one lost the lock). An error
    /// means the row could not be deleted; the lock itself is freed anyway
    /// (its session is closed). Later calls do nothing.
    pub async fn release(&self) -> Result<(), DbError> {
        self.inner.release().await
    }
}

/// A backend's held lock.
#[async_trait]
trait HeldLock: Send + Sync {
    async fn check(&self) -> Result<LockCheck, DbError>;
    async fn release(&self) -> Result<(), DbError>;
}

/// One database, whatever the server.
#[async_trait]
pub trait Database: Send + Sync + fmt::Debug {
    /// Which server this database is.
    fn backend(&self) -> Backend;

    /// What this database can do (bind limits, default workers, JSON
    /// functions, transient errors).
    fn capabilities(&self) -> Capabilities {
        self.backend().capabilities()
    }

    /// The table's columns, or `None` if it does not exist.
    async fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError>;

    /// Total, NULL and per-key-id counts for one column, computed by the
    /// database in one scan: a value counts under a key id only when it has
    /// the codec's shape (the census, `census.rs`).
    async fn count_keys(
        &self,
        col: &ColumnRef,
        census: &KeyCensus,
    ) -> Result<ColumnCounts, DbError>;

    /// Primary keys of up to `limit` rows whose key is spelled by one of
    /// `tokens` ([`KeyCount::tokens`]), in key order.
    async fn rows_with_tokens(
        &self,
        col: &ColumnRef,
        census: &KeyCensus,
        tokens: &[Vec<u8>],
        limit: usize,
    ) -> Result<Vec<Pk>, DbError>;

    /// Counts non-NULL values, leaving out those `skip` says.
    async fn count_without_prefix(
        &self,
        col: &ColumnRef,
        skip: Option<&Skip>,
    ) -> Result<u64, DbError>;

    /// The next batch of non-NULL values in primary-key order after `after`,
    /// leaving out those `skip` says.
    async fn fetch_batch(
        &self,
        col: &ColumnRef,
        after: Option<&[PkValue]>,
        skip: Option<&Skip>,
        limit: usize,
    ) -> Result<Vec<Row>, DbError>;

    /// Current values of the given rows; rows that no longer exist or hold
    /// NULL are absent.
    async fn fetch_rows(&self, col: &ColumnRef, pks: &[Pk]) -> Result<Vec<Row>, DbError>;

    /// Compare-and-swap: writes every update whose row still holds `old`, in
    /// one statement (one transaction for SQLite; for MySQL, several
    /// statements when the values exceed `max_allowed_packet`). Returns how
    /// many rows were written.
    async fn write_cas(&self, col: &ColumnRef, updates: &[CasUpdate]) -> Result<u64, DbError>;

    /// Creates keyturn's own tables if they do not exist.
    async fn ensure_meta(&self) -> Result<(), DbError>;

    /// Takes the one-rotation-per-database lock without waiting.
    async fn try_lock(&self, holder: &LockHolder) -> Result<LockOutcome, DbError>;

    /// Who holds the rotation lock now (`None`: nobody), found without
    /// taking it, so that reading commands never get in a run's way.
    async fn lock_status(&self) -> Result<Option<LockInfo>, DbError>;

    /// Runs whose record still says `running`, oldest first (none when
    /// `keyturn_runs` does not exist).
    fn running_runs(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, DbError>>;

    /// Records a `running` run as `interrupted`, finished at `finished_at`;
    /// whether it was still `running`.
    fn mark_run_interrupted<'a>(
        &'a self,
        run_id: &'a str,
        finished_at: &'a str,
    ) -> BoxFuture<'a, Result<bool, DbError>>;

    /// The checkpoint of an unfinished `operation` on one column, or `None`
    /// when there is none.
    async fn load_checkpoint(
        &self,
        operation: &str,
        table: &str,
        column: &str,
    ) -> Result<Option<Checkpoint>, DbError>;
    /// Records where an operation on one column stopped, replacing the
    /// column's earlier checkpoint of the same operation.
    async fn save_checkpoint(&self, cp: &Checkpoint) -> Result<(), DbError>;

    /// Deletes the checkpoint of `operation` on one column, if any (the
    /// column is done).
    async fn clear_checkpoint(
        &self,
        operation: &str,
        table: &str,
        column: &str,
    ) -> Result<(), DbError>;

    /// Records bad rows: one record per (table, column, primary key),
    /// inserted the first time and updated after (reason, last seen, times
    /// seen, run, value fingerprint).
    async fn record_bad_rows(&self, rows: &[BadRow]) -> Result<(), DbError>;

    /// The bad-row records, all or of one table or column (none when the
    /// table does not exist yet).
    async fn load_bad_rows(
        &self,
        table: Option<&str>,
        column: Option<&str>,
    ) -> Result<Vec<BadRowRecord>, DbError>;

    /// Deletes the records of rows of one column (rendered primary keys):
    /// they rotated, verified, or hold NULL now.
    async fn clear_bad_rows(
        &self,
        table: &str,
        column: &str,
        pks: &[String],
    ) -> Result<u64, DbError>;

    /// Acknowledges the records of the given rows `(table, column, pk)` for
    /// the values they hold now; returns how many records were found.
    async fn ack_bad_rows(
        &self,
        rows: &[(String, String, String)],
        ack: &BadRowAck,
    ) -> Result<u64, DbError>;

    /// Records a run in `keyturn_runs`: inserted when it starts, and
    /// updated (finish time, outcome, summary) when it ends.
    async fn save_run(&self, run: &RunRecord) -> Result<(), DbError>;

    /// Replaces the summary of a run still recorded `running` with its
    /// live progress (JSON); nothing once the run has ended.
    async fn update_run_progress(&self, run_id: &str, progress: &str) -> Result<(), DbError>;

    /// The `limit` most recent runs, newest first (none when `keyturn_runs`
    /// does not exist).
    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>, DbError>;

    /// Records an operator's request for a run (`pause`, `resume`, `stop`),
    /// replacing the run's earlier one (`keyturn_run_control`, created if
    /// missing).
    async fn request_run_control(&self, control: &RunControl) -> Result<(), DbError>;

    /// The latest request for a run, if any (none when the table does not
    /// exist).
    async fn run_control(&self, run_id: &str) -> Result<Option<RunControl>, DbError>;

    /// Runs statements without results (setup for demos and tests).
    async fn execute_script(&self, sql: &str) -> Result<(), DbError>;

    /// Closes the pool.
    async fn close(&self);

    /// Appends one event to `keyturn_audit` (created if missing): in one
    /// transaction, reads the chain's tip, asks `build` for the row that
    /// follows it and inserts it. When a concurrent appender took the same
    /// `seq` (unique-key violation) or the transaction hit a transient
    /// error, the transaction is retried and `build` called with the new tip.
    async fn audit_append(&self, build: &AuditRowBuilder<'_>) -> Result<AuditRow, DbError>;

    /// Up to `limit` audit events with `seq > after_seq`, in `seq` order;
    /// nothing if the audit table does not exist.
    async fn audit_read(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditRow>, DbError>;
    // The key catalog (docs/CATALOG.md).

    /// Creates the key catalog table (`keyturn_keys_catalog`) if missing.
    async fn ensure_catalog(&self) -> Result<(), DbError>;

    /// Every key of one catalog, oldest first.
    async fn load_catalog(&self, catalog: &str) -> Result<Vec<CatalogRow>, DbError>;

    /// Every row of an application's table as (key column, value column)
    /// text pairs: the `encryption_keys` catalog of a KMS envelope scheme
    /// (key id -> KMS key). Rows whose key is NULL are left out; a NULL
    /// value is `None`. Identifiers are checked and quoted; nothing is
    /// written.
    async fn read_pairs(
        &self,
        table: &str,
        key_column: &str,
        value_column: &str,
    ) -> Result<Vec<(String, Option<String>)>, DbError>;

    /// Inserts and updates catalog rows in one transaction: all are written
    /// or none (an insert of an existing id, or an update whose expected
    /// revision no longer matches, rolls everything back).
    async fn write_catalog(&self, writes: &[CatalogWrite]) -> Result<(), DbError>;

    // Application instances of a catalog (`keyturn_instances`, opt-in
    // tracking, docs/CATALOG.md).

    /// Creates `keyturn_instances` if missing.
    fn ensure_instances(&self) -> BoxFuture<'_, Result<(), DbError>>;

    /// Inserts or refreshes one instance's row; `first_seen` and `last_seen`
    /// come from the database server's clock.
    fn record_instance<'a>(
        &'a self,
        heartbeat: &'a InstanceHeartbeat,
    ) -> BoxFuture<'a, Result<(), DbError>>;

    /// Every instance of one catalog, most recently seen first, with the
    /// database's current time (no instances if the table does not exist).
    fn load_instances<'a>(
        &'a self,
        catalog: &'a str,
    ) -> BoxFuture<'a, Result<InstanceSnapshot, DbError>>;

    /// Deletes one instance's row; whether there was one. With
    /// `if_last_seen`, only if its `last_seen` still equals that value.
    fn remove_instance<'a>(
        &'a self,
        catalog: &'a str,
        instance_id: &'a str,
        if_last_seen: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, DbError>>;
}

/// Connection options.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Connections in the pool (writers + reader + bookkeeping).
    pub max_connections: u32,
    /// SQLite only: create the file if missing.
    pub create_if_missing: bool,
    /// How long a statement waits for a row lock another transaction holds
    /// before it fails with a lock time-out ([`DbError::is_lock_timeout`]):
    /// PostgreSQL `lock_timeout`, MariaDB/MySQL `innodb_lock_wait_timeout`
    /// (whole seconds, at least 1). `None`: the server's setting. SQLite
    /// has no row locks.
    pub lock_timeout: Option<std::time::Duration>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: 4,
            create_if_missing: false,
            lock_timeout: None,
        }
    }
}

/// Connects to the database named by `url`.
pub async fn connect(url: &str, opts: &ConnectOptions) -> Result<Arc<dyn Database>, DbError> {
    match Backend::from_url(url)? {
        Backend::Sqlite => Ok(Arc::new(sqlite::SqliteDb::connect(url, opts).await?)),
        Backend::Postgres => Ok(Arc::new(store::Store::new(
            postgres::PgDriver::connect(url, opts).await?,
        ))),
        Backend::MySql => Ok(Arc::new(store::Store::new(
            mysql::MySqlDriver::connect(url, opts).await?,
        ))),
    }
}

/// Whether a column type stores text or bytes; `None` for types keyturn
/// cannot hold ciphertext in (numbers, dates, …).
pub fn value_kind_of(sql_type: &str) -> Option<ValueKind> {
    let t = sql_type.to_ascii_lowercase();
    let base = t.split(['(', ' ']).next().unwrap_or_default();
    match base {
        "text" | "varchar" | "character" | "char" | "nvarchar" | "nchar" | "tinytext"
        | "mediumtext" | "longtext" | "clob" | "citext" | "string" | "" => Some(ValueKind::Text),
        "bytea" | "blob" | "varbinary" | "binary" | "tinyblob" | "mediumblob" | "longblob" => {
            Some(ValueKind::Binary)
        }
        _ if t.starts_with("character varying") => Some(ValueKind::Text),
        _ => None,
    }
}

/// How a primary-key column of this type is paginated, or why it cannot be
/// (the plan refuses the table before any run).
pub fn pk_kind_of(backend: Backend, sql_type: &str) -> Result<PkKind, String> {
    let t = sql_type.to_ascii_lowercase();
    let base = t.split(['(', ' ']).next().unwrap_or_default();
    let refuse = || {
        Err(format!(
            "primary-key type {sql_type:?} is not supported (integers, text, uuid, numeric/decimal and binary keys are)"
        ))
    };
    if backend == Backend::Sqlite {
        // SQLite's affinity rules (https://sqlite.org/datatype3.html §3.1).
        return if t.contains("int") {
            Ok(PkKind::Int)
        } else if t.contains("char") || t.contains("clob") || t.contains("text") {
            Ok(PkKind::Text)
        } else if t.contains("blob") {
            Ok(PkKind::Bytes)
        } else if base == "numeric" || base == "decimal" || base == "uuid" {
            // NUMERIC affinity; a uuid declared as such is stored as text.
            Ok(if base == "uuid" {
                PkKind::Text
            } else {
                PkKind::Decimal
            })
        } else {
            refuse()
        };
    }
    match base {
        "bigint" if backend == Backend::MySql && t.contains("unsigned") => Ok(PkKind::Decimal),
        "int" | "integer" | "bigint" | "smallint" | "tinyint" | "mediumint" | "int2" | "int4"
        | "int8" | "serial" | "bigserial" | "smallserial" => Ok(PkKind::Int),
        "text" | "varchar" | "character" | "char" | "bpchar" | "citext" | "uuid" | "nvarchar"
        | "nchar" | "tinytext" | "mediumtext" | "longtext" | "name" => Ok(PkKind::Text),
        "numeric" | "decimal" => Ok(PkKind::Decimal),
        "bytea" | "blob" | "binary" | "varbinary" | "tinyblob" | "mediumblob" | "longblob" => {
            Ok(PkKind::Bytes)
        }
        _ if t.starts_with("character varying") => Ok(PkKind::Text),
        _ => refuse(),
    }
}

/// Checks an SQL identifier (table or column name, optionally
/// `schema.table`): letters, digits, `_` and `$`, not starting with a digit.
/// keyturn still quotes every identifier; this keeps names unambiguous in
/// reports and refuses anything odd in a config early.
pub fn check_identifier(name: &str, what: &str) -> Result<(), DbError> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && !p.as_bytes()[0].is_ascii_digit()
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
    };
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|p| ok_part(p)) {
        // Shown only if it looks like a name: a key pasted as a table or
        // column name is never echoed.
        return Err(DbError::Config(format!(
            "{what} {} is not a plain identifier (letters, digits, _ and $, optionally schema.table)",
            keyturn_format::shown(name)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            value_kind_of("character varying(255)"),
            Some(ValueKind::Text)
        );
        assert_eq!(value_kind_of("VARBINARY(512)"), Some(ValueKind::Binary));
        assert_eq!(value_kind_of("bytea"), Some(ValueKind::Binary));
        assert_eq!(value_kind_of("integer"), None);
        let pk = |b, t| pk_kind_of(b, t);
        assert_eq!(pk(Backend::Postgres, "bigint"), Ok(PkKind::Int));
        assert_eq!(pk(Backend::MySql, "int(11) unsigned"), Ok(PkKind::Int));
        assert_eq!(
            pk(Backend::MySql, "bigint(20) unsigned"),
            Ok(PkKind::Decimal)
        );
        assert_eq!(pk(Backend::Postgres, "uuid"), Ok(PkKind::Text));
        assert_eq!(
            pk(Backend::Postgres, "character varying(20)"),
            Ok(PkKind::Text)
        );
        assert_eq!(pk(Backend::Postgres, "numeric(12,2)"), Ok(PkKind::Decimal));
        assert_eq!(pk(Backend::Postgres, "bytea"), Ok(PkKind::Bytes));
        assert_eq!(pk(Backend::MySql, "varbinary(16)"), Ok(PkKind::Bytes));
        assert_eq!(pk(Backend::Sqlite, "BLOB"), Ok(PkKind::Bytes));
        assert_eq!(pk(Backend::Sqlite, "INTEGER"), Ok(PkKind::Int));
        assert_eq!(pk(Backend::Sqlite, "VARCHAR(10)"), Ok(PkKind::Text));
        assert_eq!(pk(Backend::Sqlite, "NUMERIC"), Ok(PkKind::Decimal));
        for (b, t) in [
            (Backend::Postgres, "timestamp without time zone"),
            (Backend::Postgres, "double precision"),
            (Backend::MySql, "datetime"),
            (Backend::Sqlite, "REAL"),
            (Backend::Sqlite, ""),
        ] {
            assert!(pk(b, t).is_err(), "{t}");
        }
    }

    #[test]
    fn debug_never_shows_a_value() {
        let row = Row::new(vec![PkValue::Int(7)], b"SSN 078-05-1120".to_vec());
        let cas = CasUpdate {
            pk: vec![PkValue::Int(7)],
            old: b"SSN 078-05-1120".to_vec(),
            new: b"kt1:k2:a:secret-body".to_vec(),
        };
        for text in [format!("{row:?}"), format!("{cas:?}")] {
            assert!(
                !text.contains("078-05") && !text.contains("secret-body"),
                "{text}"
            );
            assert!(text.contains("not shown"), "{text}");
        }
    }

    #[test]
    fn identifiers() {
        check_identifier("patients", "table").unwrap();
        check_identifier("public.patients", "table").unwrap();
        assert!(check_identifier("p; drop table x", "table").is_err());
        assert!(check_identifier("a.b.c", "table").is_err());
        assert!(check_identifier("1abc", "table").is_err());
    }

    #[test]
    fn pk_rendering() {
        assert_eq!(pk_display(&[PkValue::Int(4)]), "4");
        assert_eq!(
            pk_display(&[PkValue::Int(4), PkValue::Text("eu".into())]),
            "(4, \"eu\")"
        );
        assert_eq!(pk_display(&[PkValue::Bytes(b"ab".to_vec())]), "0x6162");
        assert_eq!(PkValue::Bytes(vec![0xff, 1]).context_text(), "ff01");
    }
}
