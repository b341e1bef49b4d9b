//! SQLite batch reads and writes on direct connections (rusqlite, the same
//! linked SQLite as sqlx's), run on tokio's blocking threads.
//!
//! Why not sqlx for these two: sqlx-sqlite runs each statement on its own
//! worker thread and hands rows and results across a channel, so a batch
//! could only be one huge statement (a 15,000-parameter `UPDATE … FROM
//! (VALUES …)`, and reads packed into one aggregated row), each parameter
//! copied into an owned `String` first. Here a batch write is one
//! `BEGIN IMMEDIATE` transaction stepping one cached prepared
//! compare-and-swap `UPDATE` per row (the shape SQLite is fastest at: no
//! temporary table for the join), binding the values where they lie, and a
//! read steps a prepared keyset `SELECT` straight into rows.
//!
//! Everything else (bookkeeping, counts, the lock, multi-column values)
//! stays on sqlx; an in-memory database, which a second library cannot
//! open, does too.

use crate::sql::{Bind, Dialect};
use crate::{CasUpdate, ColumnRef, DbError, PkKind, PkValue, ReadProblem, Row, ValueKind};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Prepared statements kept per connection: a column's read (first batch
/// and later ones) and write, for a few columns at a time.
const STATEMENT_CACHE: usize = 32;

/// Direct connections to one database file, opened on first use and
/// reused (a reader and a writer at a time, typically).
pub(crate) struct DirectConnections {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for DirectConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectConnections")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl DirectConnections {
    /// Direct connections to `path`, or `None` when it is not a database
    /// file on disk (an in-memory database: sqlx then does everything).
    pub(crate) fn for_file(path: &Path, busy_timeout: Duration) -> Option<Arc<DirectConnections>> {
        if !path.is_file() {
            return None;
        }
        Some(Arc::new(DirectConnections {
            path: path.to_owned(),
            busy_timeout,
            idle: Mutex::new(Vec::new()),
        }))
    }

    /// Opens a connection set up as keyturn's sqlx connections are: the
    /// same busy timeout, and `synchronous = NORMAL` on a WAL database
    /// (see `relax_wal_sync` in the SQLite adapter for why that is safe).
    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        register_regexp(&conn)?;
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if mode.eq_ignore_ascii_case("wal") {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        Ok(conn)
    }

    /// Runs `work` on a blocking thread with an idle connection (or a new
    /// one). The connection goes back to the pool afterwards unless `work`
    /// failed: an open transaction has been rolled back by then (rusqlite's
    /// `Transaction` does so on drop), but a failed connection is not
    /// worth trusting.
    async fn run<T, F>(self: &Arc<Self>, what: String, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let this = Arc::clone(self);
        let joined = tokio::task::spawn_blocking(move || {
            let pooled = this.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
            let mut conn = match pooled {
                Some(c) => c,
                None => this.open()?,
            };
            let out = work(&mut conn)?;
            if let Ok(mut idle) = this.idle.lock() {
                idle.push(conn);
            }
            Ok(out)
        })
        .await;
        match joined {
            Ok(result) => result.map_err(DbError::sqlite(what)),
            Err(e) => Err(DbError::Invalid(format!(
                "{what}: SQLite worker failed: {e}"
            ))),
        }
    }

    /// One keyset batch of a single-column value, as
    /// [`crate::Database::fetch_batch`].
    pub(crate) async fn fetch_batch(
        self: &Arc<Self>,
        col: &ColumnRef,
        after: Option<&[PkValue]>,
        skip: Option<&crate::Skip>,
        limit: usize,
    ) -> Result<Vec<Row>, DbError> {
        let (sql, binds) = Dialect::Sqlite.fetch_batch(col, after, skip, limit);
        let col = col.clone();
        let what = format!("reading a batch of {}.{}", col.table, col.column);
        self.run(what, move |conn| read_rows(conn, &sql, &binds, &col, limit))
            .await
    }

    /// One batch written in one transaction, as
    /// [`crate::Database::write_cas`]; returns the rows written.
    pub(crate) async fn write_cas(
        self: &Arc<Self>,
        col: &ColumnRef,
        updates: &[CasUpdate],
    ) -> Result<u64, DbError> {
        let sql = cas_row_statement(col);
        // The blocking thread needs the batch by value.
        let (col, updates) = (col.clone(), updates.to_vec());
        let what = format!("writing a batch of {}.{}", col.table, col.column);
        self.run(what, move |conn| write_rows(conn, &sql, &col, &updates))
            .await
    }
}

/// `X REGEXP P` as on keyturn's sqlx connections (sqlx's `with_regexp`):
/// Rust's regex syntax, NULL for a NULL value, and false for a value that is
/// not UTF-8 text (the census checks a value is ASCII before matching it).
fn register_regexp(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "regexp",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let re = ctx.get_or_create_aux(
                0,
                |p| -> Result<regex::Regex, Box<dyn std::error::Error + Send + Sync>> {
                    Ok(regex::Regex::new(p.as_str()?)?)
                },
            )?;
            Ok(match ctx.get_raw(1) {
                ValueRef::Null => None,
                ValueRef::Text(t) => Some(std::str::from_utf8(t).is_ok_and(|s| re.is_match(s))),
                _ => Some(false),
            })
        },
    )
}

/// The per-row compare-and-swap: `?1` the new value, then the key
/// columns, then the old value.
fn cas_row_statement(col: &ColumnRef) -> String {
    let d = Dialect::Sqlite;
    let c = d.quote(&col.column);
    let mut sql = format!("UPDATE {} SET {c} = ?1 WHERE ", d.quote(&col.table));
    for (i, p) in col.pk.iter().enumerate() {
        sql.push_str(&format!("{} = ?{} AND ", d.quote(&p.name), i + 2));
    }
    sql.push_str(&format!("{c} = ?{}", col.pk.len() + 2));
    sql
}

/// Binds a value as the column stores it. Text that is not UTF-8 is an
/// error for a new value (nothing of the batch is written: a text column
/// cannot hold it, and a lossy copy would corrupt it) and `Ok(false)` for an
/// old one (it cannot equal what SQLite stores as text, so the row is left
/// to the engine's re-read).
fn bind_value(
    st: &mut rusqlite::CachedStatement<'_>,
    i: usize,
    kind: ValueKind,
    v: &[u8],
    is_new: bool,
) -> rusqlite::Result<bool> {
    match kind {
        ValueKind::Binary => st.raw_bind_parameter(i, v)?,
        ValueKind::Text => match std::str::from_utf8(v) {
            Ok(s) => st.raw_bind_parameter(i, s)?,
            Err(e) if is_new => return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))),
            Err(_) => return Ok(false),
        },
    }
    Ok(true)
}

fn write_rows(
    conn: &mut Connection,
    sql: &str,
    col: &ColumnRef,
    updates: &[CasUpdate],
) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut written = 0u64;
    {
        let mut st = tx.prepare_cached(sql)?;
        let old_at = col.pk.len() + 2;
        for u in updates {
            bind_value(&mut st, 1, col.kind, &u.new, true)?;
            for (i, v) in u.pk.iter().enumerate() {
                match v {
                    PkValue::Int(x) => st.raw_bind_parameter(i + 2, x)?,
                    PkValue::Text(s) => st.raw_bind_parameter(i + 2, s.as_str())?,
                    PkValue::Bytes(b) => st.raw_bind_parameter(i + 2, b.as_slice())?,
                }
            }
            if bind_value(&mut st, old_at, col.kind, &u.old, false)? {
                written += st.raw_execute()? as u64;
            }
        }
    }
    tx.commit()?;
    Ok(written)
}

fn read_rows(
    conn: &mut Connection,
    sql: &str,
    binds: &[Bind],
    col: &ColumnRef,
    limit: usize,
) -> rusqlite::Result<Vec<Row>> {
    let mut st = conn.prepare_cached(sql)?;
    for (i, b) in binds.iter().enumerate() {
        match b {
            Bind::I64(x) => st.raw_bind_parameter(i + 1, x)?,
            Bind::Str(s) => st.raw_bind_parameter(i + 1, s.as_str())?,
            Bind::Bytes(v) => st.raw_bind_parameter(i + 1, v.as_slice())?,
        }
    }
    let n = col.pk.len();
    let mut out = Vec::with_capacity(limit);
    let mut rows = st.raw_query();
    while let Some(r) = rows.next()? {
        let mut pk = Vec::with_capacity(n);
        for (i, p) in col.pk.iter().enumerate() {
            pk.push(match p.kind {
                PkKind::Int => PkValue::Int(r.get(i)?),
                PkKind::Text | PkKind::Decimal => PkValue::Text(r.get(i)?),
                PkKind::Bytes => PkValue::Bytes(r.get(i)?),
            });
        }
        // SQLite stores what it is given: a value of another storage class
        // than the column's, or text that is not UTF-8, is a problem of its
        // row (a bad row), never an error of the batch.
        let (value, problem) = match (col.kind, r.get_ref(n)?) {
            (_, ValueRef::Null) => continue,
            (ValueKind::Text, ValueRef::Text(t)) => match std::str::from_utf8(t) {
                Ok(_) => (t.to_vec(), None),
                Err(_) => (Vec::new(), Some(ReadProblem::NotUtf8)),
            },
            (ValueKind::Binary, ValueRef::Blob(b)) => (b.to_vec(), None),
            (_, v) => (
                Vec::new(),
                Some(ReadProblem::StorageClass(match v {
                    ValueRef::Text(_) => "TEXT",
                    ValueRef::Blob(_) => "BLOB",
                    ValueRef::Integer(_) => "INTEGER",
                    _ => "REAL",
                })),
            ),
        };
        let first_aux = n + col.cells.len().max(1);
        let mut aux = Vec::with_capacity(col.aux.len());
        for j in 0..col.aux.len() {
            aux.push(r.get::<_, Option<String>>(first_aux + j)?);
        }
        out.push(Row {
            pk,
            value,
            problem,
            aux,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(pk: &[(&str, PkKind)], kind: ValueKind) -> ColumnRef {
        crate::test_column("t", "c", pk, "", kind)
    }

    #[test]
    fn the_compare_and_swap_binds_new_then_keys_then_old() {
        assert_eq!(
            cas_row_statement(&col(&[("id", PkKind::Int)], ValueKind::Text)),
            r#"UPDATE "t" SET "c" = ?1 WHERE "id" = ?2 AND "c" = ?3"#
        );
        assert_eq!(
            cas_row_statement(&col(
                &[("a", PkKind::Text), ("b", PkKind::Int)],
                ValueKind::Binary
            )),
            r#"UPDATE "t" SET "c" = ?1 WHERE "a" = ?2 AND "b" = ?3 AND "c" = ?4"#
        );
    }

    #[test]
    fn an_in_memory_database_has_no_direct_connections() {
        assert!(
            DirectConnections::for_file(Path::new(":memory:"), Duration::from_secs(1)).is_none()
        );
        assert!(
            DirectConnections::for_file(Path::new("/nonexistent/x.db"), Duration::from_secs(1))
                .is_none()
        );
    }
}
