//! SQLite, the embedded default: batches read and written on direct
//! connections ([`crate::sqlite_direct`]: one transaction per batch, one
//! prepared compare-and-swap per row); the rotation lock is a lease row with
//! a heartbeat, taken over when its holder is gone.

use crate::driver::{Driver, Record, Sql};
use crate::sql::Dialect;
use crate::sqlite_direct::DirectConnections;
use crate::store::Store;
use crate::{
    Backend, CasUpdate, ColumnRef, ConnectOptions, DbError, HeldLock, LockCheck, LockGuard,
    LockHolder, LockInfo, LockOutcome, Pk, PkValue, Row, Skip, TableInfo, ValueKind,
};
use async_trait::async_trait;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// What SQLite can do ([`crate::Capabilities`]).
pub(crate) const CAPABILITIES: crate::Capabilities = crate::Capabilities {
    // Batches are written one prepared statement per row (or, in memory,
    // split at [`MAX_BINDS`]): no limit for the engine to respect.
    max_write_binds: None,
    // One writer at a time: a reader and a writer already keep two cores
    // busy, and measured at 1M rows a second batch in flight was no faster
    // and held 10 MB more.
    default_workers: 1,
    // json_valid tests a value without failing on invalid input.
    json_valid: true,
    // BUSY, LOCKED (extended codes included).
    transient_codes: &["5", "6", "261", "517", "262"],
    transient_messages: &["database is locked"],
};

/// A lease whose heartbeat is older than this is considered abandoned.
const LEASE_STALE_SECS: i64 = 30;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// Bind parameters per statement: SQLite's limit is 32766 (since 3.32).
pub(crate) const MAX_BINDS: usize = 32_000;
const ROW_BUFFER: usize = 4096;

/// One compare-and-swap statement for `rows` rows, for an in-memory
/// database (no direct connections): the new values joined in from a
/// `VALUES` list (`column1…` are the primary key, then the old and the new
/// value); a row is written only where it still holds the old value.
/// SQLite scans the list and looks each row up by its primary key.
fn cas_statement(col: &ColumnRef, rows: usize) -> String {
    let d = Dialect::Sqlite;
    let n = col.pk.len();
    let c = d.quote(&col.column);
    let t = d.quote(&col.table);
    let tuple = format!("({})", vec!["?"; n + 2].join(","));
    let mut sql = String::with_capacity(64 + rows * (tuple.len() + 1) + 64 * n);
    sql.push_str(&format!(
        "UPDATE {t} SET {c} = keyturn_v.column{} FROM (VALUES ",
        n + 2
    ));
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&tuple);
    }
    sql.push_str(") AS keyturn_v WHERE ");
    for (i, p) in col.pk.iter().enumerate() {
        sql.push_str(&format!(
            "{t}.{} = keyturn_v.column{} AND ",
            d.quote(&p.name),
            i + 1
        ));
    }
    sql.push_str(&format!("{t}.{c} = keyturn_v.column{}", n + 1));
    sql
}

/// A text column's value as a parameter. `from_utf8` first: it validates
/// far faster than the lossy conversion, which is only for values that
/// are not UTF-8 (and then cannot match the stored text anyway).
fn text_param(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(value).into_owned(),
    }
}

/// On a database in WAL mode, keyturn's own connections commit with
/// `synchronous = NORMAL`: a commit is appended to the WAL without an fsync
/// of its own (SQLite's default, FULL, syncs every commit; here that was
/// the writer's main wait). Nothing can be lost that matters: WAL commits
/// are replayed in order, so after a power cut the database holds a prefix
/// of keyturn's commits, and a checkpoint, committed after the rows it
/// covers, is never durable ahead of them - the resumed run redoes any
/// batch that did not survive, as after a crash. Only keyturn's connections
/// change; in rollback-journal mode, where NORMAL could corrupt the file on
/// a power cut, nothing changes.
async fn relax_wal_sync(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await?;
    if mode.eq_ignore_ascii_case("wal") {
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub(crate) struct SqliteDriver {
    pool: SqlitePool,
    /// Batch reads and writes of single-column values; `None` for an
    /// in-memory database.
    direct: Option<Arc<DirectConnections>>,
    /// Batch writes take turns here: SQLite has one writer at a time, and a
    /// second `BEGIN IMMEDIATE` would wait in SQLite's busy handler, which
    /// sleeps in steps of 1 to 100 ms and so wakes late; this wakes the next
    /// writer the moment the previous one commits.
    writer: Arc<tokio::sync::Mutex<()>>,
}

sqlx_sql!(SqliteDriver, sqlx::Sqlite, Dialect::Sqlite);

/// A SQLite database.
pub(crate) type SqliteDb = Store<SqliteDriver>;

impl SqliteDb {
    pub(crate) async fn connect(url: &str, opts: &ConnectOptions) -> Result<SqliteDb, DbError> {
        Ok(Store::new(SqliteDriver::connect(url, opts).await?))
    }
}

impl SqliteDriver {
    async fn connect(url: &str, opts: &ConnectOptions) -> Result<SqliteDriver, DbError> {
        let target = crate::error::redact_url(url);
        let busy_timeout = Duration::from_secs(30);
        let options = SqliteConnectOptions::from_str(url)
            .map_err(DbError::connect(target.clone()))?
            .create_if_missing(opts.create_if_missing)
            .busy_timeout(busy_timeout)
            // sqlx hands rows from its SQLite thread to the async side
            // through a channel of this many rows (default 50): a small one
            // makes the two sides take turns row by row on a batch read.
            .row_buffer_size(ROW_BUFFER)
            // The census matches values against the codecs' shapes
            // (census.rs): SQLite has no REGEXP of its own.
            .with_regexp();
        let file = options.get_filename().to_owned();
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(|conn, _| Box::pin(async move { relax_wal_sync(conn).await }))
            .connect_with(options)
            .await
            .map_err(DbError::connect(target))?;
        // After the pool: connecting has created the file if asked to.
        let direct = DirectConnections::for_file(&file, busy_timeout);
        Ok(SqliteDriver {
            pool,
            direct,
            writer: Arc::new(tokio::sync::Mutex::new(())),
        })
    }
}

/// The lease row: holder, host, pid, since, heartbeat, token.
type Lease = (String, String, i64, String, String, String);

/// Reads the lease row; `with_token`: the table has `holder_token` (made
/// by a keyturn that wrote tokens).
fn lease_sql(with_token: bool) -> &'static str {
    if with_token {
        "SELECT holder, host, pid, since, heartbeat, holder_token FROM keyturn_lock WHERE name = 'rotation'"
    } else {
        "SELECT holder, host, pid, since, heartbeat, '' FROM keyturn_lock WHERE name = 'rotation'"
    }
}

fn lease_of(rows: &[Record]) -> Result<Option<Lease>, DbError> {
    rows.first()
        .map(|r| {
            Ok((
                r.text(0)?,
                r.text(1)?,
                r.int(2)?,
                r.text(3)?,
                r.text(4)?,
                r.text(5)?,
            ))
        })
        .transpose()
}

async fn read_lease(driver: &SqliteDriver, with_token: bool) -> Result<Option<Lease>, DbError> {
    let rows = driver
        .query(lease_sql(with_token), Vec::new())
        .await
        .map_err(DbError::at("reading the rotation lock"))?;
    lease_of(&rows)
}

/// What [`take_lease`] found.
enum Taking {
    /// The lease was free or abandoned, and is this holder's now.
    Taken,
    /// The lease already names this holder.
    Ours,
    /// A live holder has it.
    Held(crate::LockInfo),
}

/// Takes the lease in one `BEGIN IMMEDIATE` transaction: unless a live
/// holder other than `holder` has it.
async fn take_lease(driver: &SqliteDriver, holder: &LockHolder) -> Result<Taking, DbError> {
    let what = "taking the rotation lock";
    let mut tx = driver.begin(true).await.map_err(DbError::at(what))?;
    let rows = tx
        .query(lease_sql(true), Vec::new())
        .await
        .map_err(DbError::at(what))?;
    if let Some((h, host, pid, since, beat, token)) = lease_of(&rows)? {
        if token == holder.token {
            tx.rollback().await.map_err(DbError::at(what))?;
            return Ok(Taking::Ours);
        }
        if holder_alive(&host, pid, &beat, holder) {
            tx.rollback().await.map_err(DbError::at(what))?;
            return Ok(Taking::Held(LockInfo {
                holder: h,
                since,
                token: Some(token).filter(|t| !t.is_empty()),
            }));
        }
        tracing::warn!("taking over an abandoned rotation lock held by {h} since {since}");
    }
    let now = crate::meta::now_rfc3339();
    crate::meta::record_holder(driver, Some(&mut tx), holder, &now).await?;
    tx.commit()
        .await
        .map_err(DbError::at("recording the rotation lock"))?;
    Ok(Taking::Taken)
}

struct SqliteLock {
    driver: SqliteDriver,
    holder: LockHolder,
    heartbeat: tokio::task::JoinHandle<()>,
    /// Checks and the release take turns.
    turn: tokio::sync::Mutex<()>,
    released: std::sync::atomic::AtomicBool,
}

impl Drop for SqliteLock {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

#[async_trait]
impl HeldLock for SqliteLock {
    async fn check(&self) -> Result<LockCheck, DbError> {
        let _turn = self.turn.lock().await;
        if self.released.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(DbError::Invalid("the rotation lock was released".into()));
        }
        // A plain read first: the write lock `take_lease` takes would make
        // each check wait for the batch being written.
        if read_lease(&self.driver, true)
            .await?
            .is_some_and(|lease| lease.5 == self.holder.token)
        {
            return Ok(LockCheck::Held);
        }
        Ok(match take_lease(&self.driver, &self.holder).await? {
            Taking::Ours => LockCheck::Held,
            Taking::Taken => LockCheck::Retaken,
            Taking::Held(other) => LockCheck::Lost {
                holder: other.holder,
                since: other.since,
            },
        })
    }

    async fn release(&self) -> Result<(), DbError> {
        let _turn = self.turn.lock().await;
        if self
            .released
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        self.heartbeat.abort();
        crate::meta::delete_holder(&self.driver, &self.holder.token).await
    }
}

/// Whether the process that wrote a lease is still running.
fn holder_alive(host: &str, pid: i64, heartbeat: &str, me: &LockHolder) -> bool {
    if host == me.host {
        if pid == i64::from(me.pid) {
            return true;
        }
        // Same machine: the process table answers exactly (Linux /proc).
        if std::path::Path::new("/proc/self").exists() {
            return std::path::Path::new(&format!("/proc/{pid}")).exists();
        }
    }
    let Ok(beat) =
        time::OffsetDateTime::parse(heartbeat, &time::format_description::well_known::Rfc3339)
    else {
        return false;
    };
    (time::OffsetDateTime::now_utc() - beat).whole_seconds() < LEASE_STALE_SECS
}

#[async_trait]
impl Driver for SqliteDriver {
    const BACKEND: Backend = Backend::Sqlite;

    async fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError> {
        let rows = self
            .query(
                "SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid",
                vec![table.into()],
            )
            .await
            .map_err(DbError::at(format!("describing table {table}")))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut columns = Vec::new();
        let mut pk: Vec<(i64, String)> = Vec::new();
        for r in rows {
            let name = r.text(0)?;
            let ty = r.text(1)?;
            let pos = r.int(2)?;
            if pos > 0 {
                pk.push((pos, name.clone()));
            }
            columns.push((name, ty));
        }
        pk.sort();
        Ok(Some(TableInfo {
            columns,
            primary_key: pk.into_iter().map(|(_, n)| n).collect(),
        }))
    }

    /// A single-column batch on a direct connection
    /// ([`crate::sqlite_direct`]); a multi-column value's, or any batch of
    /// an in-memory database, through sqlx.
    async fn fetch_batch(
        &self,
        col: &ColumnRef,
        after: Option<&[PkValue]>,
        skip: Option<&Skip>,
        limit: usize,
    ) -> Result<Vec<Row>, DbError> {
        if let Some(direct) = &self.direct
            && !col.has_cells()
        {
            return direct.fetch_batch(col, after, skip, limit).await;
        }
        let read = Dialect::Sqlite.fetch_batch(col, after, skip, limit);
        crate::driver::read_rows(&self.pool, read, col, "reading a batch of", true).await
    }

    async fn fetch_rows(&self, col: &ColumnRef, pks: &[Pk]) -> Result<Vec<Row>, DbError> {
        let read = Dialect::Sqlite.fetch_rows(col, pks);
        crate::driver::read_rows(&self.pool, read, col, "re-reading rows of", true).await
    }

    /// A single-column batch on a direct connection, one prepared
    /// compare-and-swap per row in one transaction; a multi-column value's,
    /// or any batch of an in-memory database, as one `UPDATE … FROM (VALUES
    /// …)` per batch through sqlx.
    async fn write_cas(&self, col: &ColumnRef, updates: &[CasUpdate]) -> Result<u64, DbError> {
        let _turn = self.writer.lock().await;
        if col.has_cells() {
            return crate::cells::write_cas_sqlite(&self.pool, col, updates).await;
        }
        if let Some(direct) = &self.direct {
            return direct.write_cas(col, updates).await;
        }
        let what = || format!("writing a batch of {}.{}", col.table, col.column);
        let per_row = col.pk.len() + 2;
        let chunk = (MAX_BINDS / per_row).max(1);
        let mut conn = self.pool.acquire().await.map_err(DbError::query(what()))?;
        // One transaction, so a batch is written whole or not at all even
        // when it needs more than one statement.
        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(DbError::query(what()))?;
        let mut written = 0;
        for part in updates.chunks(chunk) {
            let sql = cas_statement(col, part.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for u in part {
                for v in &u.pk {
                    q = match v {
                        PkValue::Int(i) => q.bind(*i),
                        PkValue::Text(s) => q.bind(s.clone()),
                        PkValue::Bytes(b) => q.bind(b.clone()),
                    };
                }
                q = match col.kind {
                    ValueKind::Text => {
                        // As on the direct path: a new value that is not
                        // UTF-8 fails the batch rather than go in lossy.
                        let new = std::str::from_utf8(&u.new).map_err(|e| {
                            DbError::Invalid(format!(
                                "{}: new text value is not UTF-8: {e}",
                                what()
                            ))
                        })?;
                        q.bind(text_param(&u.old)).bind(new.to_owned())
                    }
                    ValueKind::Binary => q.bind(u.old.clone()).bind(u.new.clone()),
                };
            }
            written += q
                .execute(&mut *tx)
                .await
                .map_err(DbError::query(what()))?
                .rows_affected();
        }
        tx.commit().await.map_err(DbError::query(what()))?;
        Ok(written)
    }

    async fn try_lock(&self, holder: &LockHolder) -> Result<LockOutcome, DbError> {
        if let Taking::Held(other) = take_lease(self, holder).await? {
            return Ok(LockOutcome::Held {
                holder: other.holder,
                since: other.since,
            });
        }
        let driver = self.clone();
        let token = holder.token.clone();
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                let _ = driver
                    .execute(
                        "UPDATE keyturn_lock SET heartbeat = ? WHERE name = 'rotation' AND holder_token = ?",
                        vec![crate::meta::now_rfc3339().into(), (&token).into()],
                    )
                    .await;
            }
        });
        Ok(LockOutcome::Acquired(LockGuard::new(
            &holder.token,
            Box::new(SqliteLock {
                driver: self.clone(),
                holder: holder.clone(),
                heartbeat,
                turn: tokio::sync::Mutex::new(()),
                released: std::sync::atomic::AtomicBool::new(false),
            }),
        )))
    }

    async fn lock_status(&self) -> Result<Option<LockInfo>, DbError> {
        let Some(info) = self.describe_table("keyturn_lock").await? else {
            return Ok(None);
        };
        let with_token = info.column_type("holder_token").is_some();
        let Some((holder, host, pid, since, beat, token)) = read_lease(self, with_token).await?
        else {
            return Ok(None);
        };
        let me = LockHolder::current("status");
        Ok(holder_alive(&host, pid, &beat, &me).then(|| LockInfo {
            holder,
            since,
            token: Some(token).filter(|t| !t.is_empty()),
        }))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CasUpdate, Database as _, PkKind, ReadProblem};

    fn col(pk: &[(&str, PkKind)], kind: ValueKind) -> ColumnRef {
        crate::test_column("t", "c", pk, "integer", kind)
    }

    /// The URLs both SQLite paths are tested on: a database file in `dir`
    /// (direct connections) and an in-memory database (sqlx only).
    fn both_paths(dir: &tempfile::TempDir) -> [String; 2] {
        [
            format!("sqlite://{}", dir.path().join("t.db").display()),
            "sqlite::memory:".to_owned(),
        ]
    }

    async fn open(url: &str) -> SqliteDb {
        SqliteDb::connect(
            url,
            &ConnectOptions {
                max_connections: 2,
                create_if_missing: true,
                lock_timeout: None,
            },
        )
        .await
        .unwrap()
    }

    /// A table of blobs (some NULL, some empty, some holding `:` and 0xff)
    /// under a two-column key, one part text; the stored non-NULL rows.
    async fn fill(db: &SqliteDb) -> Vec<(Vec<PkValue>, Vec<u8>)> {
        sqlx::query("CREATE TABLE t (a TEXT, b INTEGER, c BLOB, PRIMARY KEY (a, b))")
            .execute(&db.pool)
            .await
            .unwrap();
        let mut want = Vec::new();
        for id in -3i64..40 {
            let a = ["x", "y"][(id.rem_euclid(2)) as usize];
            let v: Vec<u8> = (0..(id.unsigned_abs() as usize % 7))
                .map(|i| [0u8, b':', b'7', 0xff][i % 4])
                .collect();
            let v = (id % 5 != 0).then_some(v);
            sqlx::query("INSERT INTO t VALUES (?, ?, ?)")
                .bind(a)
                .bind(id)
                .bind(v.clone())
                .execute(&db.pool)
                .await
                .unwrap();
            if let Some(v) = v {
                want.push((vec![PkValue::Text(a.into()), PkValue::Int(id)], v));
            }
        }
        want.sort();
        want
    }

    async fn read_all(db: &SqliteDb, c: &ColumnRef) -> Vec<(Vec<PkValue>, Vec<u8>)> {
        let mut got = Vec::new();
        let mut after: Option<Vec<PkValue>> = None;
        loop {
            let rows = db.fetch_batch(c, after.as_deref(), None, 8).await.unwrap();
            let Some(last) = rows.last() else { break };
            after = Some(last.pk.clone());
            got.extend(rows.into_iter().map(|r| (r.pk, r.value)));
        }
        got
    }

    /// A file database reads and writes batches on direct connections, an
    /// in-memory one through sqlx; both give the same rows, bytes and
    /// order, and the same compare-and-swap: a row is written only where it
    /// still holds the value read.
    #[tokio::test]
    async fn direct_and_sqlx_batches_agree() {
        let dir = tempfile::tempdir().unwrap();
        for url in both_paths(&dir) {
            let db = open(&url).await;
            assert_eq!(db.direct.is_some(), url != "sqlite::memory:", "{url}");
            let c = col(
                &[("a", PkKind::Text), ("b", PkKind::Int)],
                ValueKind::Binary,
            );
            let want = fill(&db).await;
            assert_eq!(read_all(&db, &c).await, want, "{url}");

            // The application changes one row after the read.
            sqlx::query("UPDATE t SET c = x'01' WHERE a = 'y' AND b = 1")
                .execute(&db.pool)
                .await
                .unwrap();
            let updates: Vec<CasUpdate> = want
                .iter()
                .map(|(pk, v)| CasUpdate {
                    pk: pk.clone(),
                    old: v.clone(),
                    new: [b"new:".as_slice(), v].concat(),
                })
                .collect();
            let written = db.write_cas(&c, &updates).await.unwrap();
            assert_eq!(written as usize, want.len() - 1, "{url}");
            let after = read_all(&db, &c).await;
            for ((pk, old), (pk2, now)) in want.iter().zip(&after) {
                assert_eq!(pk, pk2);
                if *pk == [PkValue::Text("y".into()), PkValue::Int(1)] {
                    assert_eq!(now, &[1u8], "{url}: the application's write stays");
                } else {
                    assert_eq!(now, &[b"new:".as_slice(), old].concat(), "{url}");
                }
            }
        }
    }

    /// Text that is not UTF-8 cannot be what a text column holds: a row
    /// whose old value is such is not written (the engine re-reads it), the
    /// rest are; a new value that is such fails the batch whole. The same on
    /// both paths.
    #[tokio::test]
    async fn text_that_is_not_utf8_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        for url in both_paths(&dir) {
            text_that_is_not_utf8_is_never_written_on(&url).await;
        }
    }

    fn update(id: i64, old: &[u8], new: &[u8]) -> CasUpdate {
        CasUpdate {
            pk: vec![PkValue::Int(id)],
            old: old.to_vec(),
            new: new.to_vec(),
        }
    }

    /// A database at `url` with a text column `t.c` holding `rows` (an SQL
    /// `VALUES` list).
    async fn text_table(url: &str, rows: &str) -> SqliteDb {
        let db = open(url).await;
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, c TEXT)")
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO t VALUES {rows}")))
            .execute(&db.pool)
            .await
            .unwrap();
        db
    }

    async fn text_that_is_not_utf8_is_never_written_on(url: &str) {
        let db = text_table(url, "(1, 'one'), (2, 'two')").await;
        let c = col(&[("id", PkKind::Int)], ValueKind::Text);
        let updates = vec![update(1, b"\xffone", b"ONE"), update(2, b"two", b"TWO")];
        assert_eq!(db.write_cas(&c, &updates).await.unwrap(), 1);
        let rows = db.fetch_batch(&c, None, None, 10).await.unwrap();
        let values: Vec<&[u8]> = rows.iter().map(|r| r.value.as_slice()).collect();
        assert_eq!(values, [b"one".as_slice(), b"TWO".as_slice()]);

        // A new value that is not UTF-8 cannot go into a text column: the
        // batch fails whole, nothing of it written.
        let updates = vec![update(1, b"one", b"uno"), update(2, b"TWO", b"\xffdos")];
        let e = db.write_cas(&c, &updates).await.unwrap_err();
        assert!(e.to_string().contains("writing a batch of t.c"), "{e}");
        let rows = db.fetch_batch(&c, None, None, 10).await.unwrap();
        let values: Vec<&[u8]> = rows.iter().map(|r| r.value.as_slice()).collect();
        assert_eq!(values, [b"one".as_slice(), b"TWO".as_slice()]);
    }

    /// A BLOB or text that is not UTF-8 in a text column, and text or a
    /// number in a binary column, are problems of their rows, read on both
    /// paths; the batch goes on and the good rows come back as they are.
    #[tokio::test]
    async fn values_of_the_wrong_storage_class_or_encoding_are_row_problems() {
        let dir = tempfile::tempdir().unwrap();
        for url in both_paths(&dir) {
            let db = text_table(
                &url,
                "(1, x'00ff'), (2, 'good'), (4, CAST(x'ff41' AS TEXT)), (5, NULL)",
            )
            .await;
            let c = col(&[("id", PkKind::Int)], ValueKind::Text);
            let rows = db.fetch_batch(&c, None, None, 10).await.unwrap();
            let got: Vec<(i64, Option<ReadProblem>)> = rows
                .iter()
                .map(|r| match r.pk[0] {
                    PkValue::Int(i) => (i, r.problem),
                    _ => panic!("integer key"),
                })
                .collect();
            assert_eq!(
                got,
                [
                    (1, Some(ReadProblem::StorageClass("BLOB"))),
                    (2, None),
                    (4, Some(ReadProblem::NotUtf8)),
                ],
                "{url}"
            );
            assert_eq!(rows[1].value, b"good");
            // A re-read says the same.
            let again = db
                .fetch_rows(&c, &[vec![PkValue::Int(1)], vec![PkValue::Int(2)]])
                .await
                .unwrap();
            assert_eq!(again.len(), 2, "{url}");
            assert!(again.iter().any(|r| r.problem.is_some()), "{url}");
            // Text in a binary column.
            sqlx::query("CREATE TABLE b (id INTEGER PRIMARY KEY, c BLOB)")
                .execute(&db.pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO b VALUES (1, 'text'), (2, x'0102'), (3, 7)")
                .execute(&db.pool)
                .await
                .unwrap();
            let mut c = col(&[("id", PkKind::Int)], ValueKind::Binary);
            c.table = "b".into();
            let rows = db.fetch_batch(&c, None, None, 10).await.unwrap();
            assert_eq!(
                rows[0].problem,
                Some(ReadProblem::StorageClass("TEXT")),
                "{url}"
            );
            assert_eq!(
                (rows[1].problem, rows[1].value.as_slice()),
                (None, &[1u8, 2][..])
            );
            assert_eq!(
                rows[2].problem,
                Some(ReadProblem::StorageClass("INTEGER")),
                "{url}"
            );
        }
    }

    /// Times one pass over 200,000 rows of a database file, as a rotation
    /// makes it (keyset batches of 5,000 read, each written back with one
    /// compare-and-swap batch), on the direct connections and through sqlx,
    /// alternating, twice each: the measurement docs/ARCHITECTURE.md gives
    /// for keeping the direct path. Run with `cargo test --release -p
    /// keyturn-db sqlite_paths -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore]
    async fn sqlite_paths_timed() {
        const ROWS: i64 = 200_000;
        let c = col(&[("id", PkKind::Int)], ValueKind::Text);
        for (path, direct) in [("direct", true), ("sqlx", false)].repeat(2) {
            let dir = tempfile::tempdir().unwrap();
            let mut db = open(&format!("sqlite://{}", dir.path().join("t.db").display())).await;
            db.execute_script(&format!(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, c TEXT); \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
                 INSERT INTO t SELECT i, printf('kt1:k1:%0120d', i) FROM n"
            ))
            .await
            .unwrap();
            if !direct {
                db.driver.direct = None;
            }
            let start = std::time::Instant::now();
            let (mut after, mut written) = (None::<Vec<PkValue>>, 0);
            loop {
                let rows = db
                    .fetch_batch(&c, after.as_deref(), None, 5000)
                    .await
                    .unwrap();
                let Some(last) = rows.last() else { break };
                after = Some(last.pk.clone());
                let updates: Vec<CasUpdate> = rows
                    .into_iter()
                    .map(|r| CasUpdate {
                        new: [b"kt1:k2:".as_slice(), &r.value[7..]].concat(),
                        pk: r.pk,
                        old: r.value,
                    })
                    .collect();
                written += db.write_cas(&c, &updates).await.unwrap();
            }
            assert_eq!(written, ROWS as u64);
            println!(
                "{path}: {ROWS} rows read and written in {:.2} s",
                start.elapsed().as_secs_f64()
            );
        }
    }

    /// An application's key catalog read as text pairs: NULL ids left out,
    /// NULL values kept as `None`, identifiers refused before any SQL.
    #[tokio::test]
    async fn read_pairs_reads_a_catalog() {
        let db = open("sqlite::memory:").await;
        db.execute_script(
            "CREATE TABLE encryption_keys (key_id TEXT, kms_key_arn TEXT, alias TEXT);
             INSERT INTO encryption_keys VALUES ('2025-01', 'arn:aws:kms:us-east-1:1:key/a', 'x'),
               ('2025-03', NULL, 'y'), (NULL, 'arn:aws:kms:us-east-1:1:key/c', 'z');",
        )
        .await
        .unwrap();
        let mut pairs = db
            .read_pairs("encryption_keys", "key_id", "kms_key_arn")
            .await
            .unwrap();
        pairs.sort();
        assert_eq!(
            pairs,
            vec![
                (
                    "2025-01".to_owned(),
                    Some("arn:aws:kms:us-east-1:1:key/a".to_owned())
                ),
                ("2025-03".to_owned(), None),
            ]
        );
        assert!(
            db.read_pairs("encryption_keys; DROP TABLE x", "key_id", "alias")
                .await
                .is_err()
        );
    }
}
