//! SQLite, the embedded default: each batch written by one compare-and-swap
//! `UPDATE … FROM (VALUES …)` in its own transaction; the rotation lock is a lease row with a
//! heartbeat, taken over when its holder is gone.

use crate::common::PackedBatchRead;
use crate::sql::Dialect;
use crate::{
    ColumnRef, ConnectOptions, DbError, LockGuard, LockHolder, LockOutcome, LockRelease, PkKind,
    PkValue, Row, TableInfo, ValueKind,
};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Connection, Row as _};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A lease whose heartbeat is older than this is considered abandoned.
const LEASE_STALE_SECS: i64 = 30;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// Bind parameters per statement: SQLite's limit is 32766 (since 3.32).
pub(crate) const MAX_BINDS: usize = 32_000;
const ROW_BUFFER: usize = 4096;

/// One compare-and-swap statement for `rows` rows: the new values joined in
/// from a `VALUES` list (`column1…` are the primary key, then the old and
/// the new value); a row is written only where it still holds the old value.
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

/// A batch read as one aggregated row: `count(*)`, the number of rows
/// whose key or value has an unexpected storage class, and every row framed
/// as `<octet length>:<bytes>` per key column and value, concatenated. One
/// row crosses from sqlx's SQLite thread instead of thousands (each a row
/// object, its values and a channel hop); measured, this halves the CPU a
/// batch read costs. Only for integer keys: the aggregate's order is not
/// guaranteed, and integer keys sort back into the keyset order under any
/// collation ([`parse_packed_batch`]). `concat` (SQLite 3.44) copies each
/// row once, where chained `||` would copy it per operator.
fn packed_batch_statement(
    col: &ColumnRef,
    after: Option<&[PkValue]>,
    skip_prefix: Option<&[u8]>,
    limit: usize,
) -> Option<(String, Vec<crate::sql::Bind>)> {
    if col.has_cells() || col.pk.iter().any(|p| p.kind != PkKind::Int) {
        return None;
    }
    let (inner, binds) = Dialect::Sqlite.fetch_batch_aliased(col, after, skip_prefix, limit);
    let keys: Vec<String> = (0..col.pk.len()).map(|i| format!("keyturn_p{i}")).collect();
    let mut frame: Vec<String> = keys
        .iter()
        .map(|k| format!("octet_length({k}), ':', {k}"))
        .collect();
    frame.push("octet_length(keyturn_v), ':', keyturn_v".to_owned());
    let mut odd: Vec<String> = keys
        .iter()
        .map(|k| format!("typeof({k}) <> 'integer'"))
        .collect();
    odd.push(format!(
        "typeof(keyturn_v) <> '{}'",
        match col.kind {
            ValueKind::Text => "text",
            ValueKind::Binary => "blob",
        }
    ));
    let sql = format!(
        "SELECT count(*), count(CASE WHEN {} THEN 1 END), CAST(group_concat(concat({}), '') AS BLOB) FROM ({inner}) AS keyturn_b",
        odd.join(" OR "),
        frame.join(", "),
    );
    Some((sql, binds))
}

/// Splits one `<octet length>:<bytes>` field off the front of `rest`.
fn take_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    // usize::MAX has 20 digits.
    let colon = rest.iter().take(21).position(|&b| b == b':')?;
    let digits = &rest[..colon];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let body = rest.get(colon + 1..colon.checked_add(1)?.checked_add(len)?)?;
    *rest = &rest[colon + 1 + len..];
    Some(body)
}

/// The rows of a packed batch in key order, or `None` when anything does
/// not parse exactly into `count` rows (the caller then reads the batch row
/// by row, which reports any real problem in its own words).
fn parse_packed_batch(col: &ColumnRef, packed: &[u8], count: usize) -> Option<Vec<Row>> {
    let mut rows = Vec::with_capacity(count);
    let mut rest = packed;
    while !rest.is_empty() {
        let mut pk = Vec::with_capacity(col.pk.len());
        for _ in &col.pk {
            let f = take_field(&mut rest)?;
            pk.push(PkValue::Int(std::str::from_utf8(f).ok()?.parse().ok()?));
        }
        let value = take_field(&mut rest)?;
        if col.kind == ValueKind::Text && std::str::from_utf8(value).is_err() {
            return None;
        }
        rows.push(Row {
            pk,
            value: value.to_vec(),
        });
    }
    if rows.len() != count {
        return None;
    }
    // Integer keys compare the same in Rust as in SQL; SQLite hands the
    // rows over in the inner query's order in practice, so this is a check.
    if !rows.is_sorted_by(|a, b| a.pk < b.pk) {
        rows.sort_unstable_by(|a, b| a.pk.cmp(&b.pk));
    }
    Some(rows)
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

#[derive(Debug)]
pub(crate) struct SqliteDb {
    pool: SqlitePool,
    /// Cleared when the packed read fails as SQL (an SQLite older than
    /// 3.44, without ordered aggregates): every batch is then read row by
    /// row.
    packed_reads: AtomicBool,
    /// Batch writes take turns here: SQLite has one writer at a time, and a
    /// second `BEGIN IMMEDIATE` would wait in SQLite's busy handler, which
    /// sleeps in steps of 1 to 100 ms and so wakes late; this wakes the next
    /// writer the moment the previous one commits.
    writer: tokio::sync::Mutex<()>,
}

impl SqliteDb {
    const DIALECT: Dialect = Dialect::Sqlite;

    pub(crate) async fn connect(url: &str, opts: &ConnectOptions) -> Result<SqliteDb, DbError> {
        let target = url.to_owned();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|source| DbError::Connect {
                target: target.clone(),
                source,
            })?
            .create_if_missing(opts.create_if_missing)
            .busy_timeout(Duration::from_secs(30))
            // sqlx hands rows from its SQLite thread to the async side
            // through a channel of this many rows (default 50): a small one
            // makes the two sides take turns row by row on a batch read.
            .row_buffer_size(ROW_BUFFER);
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(|conn, _| Box::pin(async move { relax_wal_sync(conn).await }))
            .connect_with(options)
            .await
            .map_err(|source| DbError::Connect { target, source })?;
        Ok(SqliteDb {
            pool,
            packed_reads: AtomicBool::new(true),
            writer: tokio::sync::Mutex::new(()),
        })
    }
}

#[async_trait]
impl PackedBatchRead for SqliteDb {
    /// A batch through [`packed_batch_statement`]; `None` when the column
    /// does not qualify or the result is not plain (the caller reads row by
    /// row then).
    async fn fetch_batch_packed(
        &self,
        col: &ColumnRef,
        after: Option<&[PkValue]>,
        skip_prefix: Option<&[u8]>,
        limit: usize,
    ) -> Result<Option<Vec<Row>>, DbError> {
        if !self.packed_reads.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let Some((sql, binds)) = packed_batch_statement(col, after, skip_prefix, limit) else {
            return Ok(None);
        };
        let q = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), binds);
        let row = match q.fetch_one(&self.pool).await {
            Ok(row) => row,
            Err(sqlx::Error::Database(e)) => {
                tracing::debug!("packed batch read unavailable, reading row by row: {e}");
                self.packed_reads.store(false, Ordering::Relaxed);
                return Ok(None);
            }
            Err(e) => {
                return Err(DbError::query(format!(
                    "reading a batch of {}.{}",
                    col.table, col.column
                ))(e));
            }
        };
        let what = || format!("reading a batch of {}.{}", col.table, col.column);
        let count: i64 = row.try_get(0).map_err(DbError::query(what()))?;
        let odd: i64 = row.try_get(1).map_err(DbError::query(what()))?;
        if odd > 0 {
            return Ok(None);
        }
        let packed: Option<&[u8]> = row.try_get(2).map_err(DbError::query(what()))?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        Ok(parse_packed_batch(col, packed.unwrap_or_default(), count))
    }
}

struct SqliteLock {
    pool: SqlitePool,
    heartbeat: tokio::task::JoinHandle<()>,
    host: String,
    pid: u32,
}

#[async_trait]
impl LockRelease for SqliteLock {
    async fn release(self: Box<Self>) -> Result<(), DbError> {
        self.heartbeat.abort();
        sqlx::query("DELETE FROM keyturn_lock WHERE name = 'rotation' AND host = ? AND pid = ?")
            .bind(self.host.clone())
            .bind(i64::from(self.pid))
            .execute(&self.pool)
            .await
            .map_err(DbError::query("releasing the rotation lock"))?;
        Ok(())
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

impl_database!(SqliteDb, {
    fn backend(&self) -> crate::Backend {
        crate::Backend::Sqlite
    }

    async fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError> {
        let rows = sqlx::query("SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid")
            .bind(table.to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(DbError::query(format!("describing table {table}")))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut columns = Vec::new();
        let mut pk: Vec<(i64, String)> = Vec::new();
        for r in rows {
            let name: String = r.try_get(0).map_err(DbError::query("reading the schema"))?;
            let ty: String = r.try_get(1).map_err(DbError::query("reading the schema"))?;
            let pos: i64 = r.try_get(2).map_err(DbError::query("reading the schema"))?;
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

    async fn write_cas(
        &self,
        col: &ColumnRef,
        updates: &[crate::CasUpdate],
    ) -> Result<u64, DbError> {
        let _turn = self.writer.lock().await;
        if col.has_cells() {
            return crate::cells::write_cas_sqlite(&self.pool, col, updates).await;
        }
        if updates.is_empty() {
            return Ok(0);
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
                        crate::PkValue::Int(i) => q.bind(*i),
                        crate::PkValue::Text(s) => q.bind(s.clone()),
                    };
                }
                q = match col.kind {
                    ValueKind::Text => q.bind(text_param(&u.old)).bind(text_param(&u.new)),
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
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(DbError::query("taking the rotation lock"))?;
        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(DbError::query("taking the rotation lock"))?;
        let row = sqlx::query(
            "SELECT holder, host, pid, since, heartbeat FROM keyturn_lock WHERE name = 'rotation'",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(DbError::query("reading the rotation lock"))?;
        if let Some(r) = row {
            let h: String = r
                .try_get(0)
                .map_err(DbError::query("reading the rotation lock"))?;
            let host: String = r
                .try_get(1)
                .map_err(DbError::query("reading the rotation lock"))?;
            let pid: i64 = r
                .try_get(2)
                .map_err(DbError::query("reading the rotation lock"))?;
            let since: String = r
                .try_get(3)
                .map_err(DbError::query("reading the rotation lock"))?;
            let beat: String = r
                .try_get(4)
                .map_err(DbError::query("reading the rotation lock"))?;
            if holder_alive(&host, pid, &beat, holder) {
                tx.rollback()
                    .await
                    .map_err(DbError::query("reading the rotation lock"))?;
                return Ok(LockOutcome::Held { holder: h, since });
            }
            tracing::warn!("taking over an abandoned rotation lock held by {h} since {since}");
        }
        let now = crate::meta::now_rfc3339();
        sqlx::query("REPLACE INTO keyturn_lock (name, holder, host, pid, since, heartbeat) VALUES ('rotation', ?, ?, ?, ?, ?)")
            .bind(holder.description.clone())
            .bind(holder.host.clone())
            .bind(i64::from(holder.pid))
            .bind(now.clone())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(DbError::query("recording the rotation lock"))?;
        tx.commit()
            .await
            .map_err(DbError::query("recording the rotation lock"))?;
        let pool = self.pool.clone();
        let (host, pid) = (holder.host.clone(), holder.pid);
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                let _ = sqlx::query("UPDATE keyturn_lock SET heartbeat = ? WHERE name = 'rotation' AND host = ? AND pid = ?")
                    .bind(crate::meta::now_rfc3339())
                    .bind(host.clone())
                    .bind(i64::from(pid))
                    .execute(&pool)
                    .await;
            }
        });
        Ok(LockOutcome::Acquired(LockGuard {
            inner: Box::new(SqliteLock {
                pool: self.pool.clone(),
                heartbeat,
                host: holder.host.clone(),
                pid: holder.pid,
            }),
        }))
    }
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CellColumn, Database as _, PkColumn};

    fn col(pk: &[(&str, PkKind)], kind: ValueKind) -> ColumnRef {
        ColumnRef {
            table: "t".into(),
            pk: pk
                .iter()
                .map(|(n, k)| PkColumn {
                    name: (*n).into(),
                    kind: *k,
                    sql_type: "integer".into(),
                })
                .collect(),
            column: "c".into(),
            kind,
            cells: Vec::new(),
        }
    }

    /// `<len>:<bytes>` per field, as SQLite's `concat` writes it.
    fn frame(fields: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in fields {
            out.extend_from_slice(format!("{}:", f.len()).as_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    #[test]
    fn packed_reads_only_for_integer_keys_and_single_columns() {
        let text_key = col(&[("id", PkKind::Text)], ValueKind::Text);
        assert!(packed_batch_statement(&text_key, None, None, 10).is_none());
        let mixed = col(&[("a", PkKind::Int), ("b", PkKind::Text)], ValueKind::Text);
        assert!(packed_batch_statement(&mixed, None, None, 10).is_none());
        let mut cells = col(&[("id", PkKind::Int)], ValueKind::Binary);
        cells.cells = vec![CellColumn {
            name: "c".into(),
            kind: ValueKind::Binary,
        }];
        assert!(packed_batch_statement(&cells, None, None, 10).is_none());

        let c = col(&[("a", PkKind::Int), ("b", PkKind::Int)], ValueKind::Binary);
        let after = [PkValue::Int(1), PkValue::Int(2)];
        let (sql, binds) = packed_batch_statement(&c, Some(&after), Some(b"\x01"), 10).unwrap();
        assert!(
            sql.contains("concat(octet_length(keyturn_p0), ':', keyturn_p0"),
            "{sql}"
        );
        assert!(sql.contains("typeof(keyturn_v) <> 'blob'"), "{sql}");
        assert!(sql.contains("LIMIT 10"), "{sql}");
        // The keyset condition's three keys and the skipped prefix.
        assert_eq!(binds.len(), 4);
    }

    #[test]
    fn parses_framed_rows_exactly() {
        let c = col(&[("id", PkKind::Int)], ValueKind::Binary);
        let mut packed = frame(&[b"-7", b"1:2:\x00\xff"]);
        packed.extend(frame(&[b"12", b""]));
        packed.extend(frame(&[b"300", b"9999"]));
        let rows = parse_packed_batch(&c, &packed, 3).unwrap();
        let got: Vec<(Vec<PkValue>, Vec<u8>)> = rows.into_iter().map(|r| (r.pk, r.value)).collect();
        assert_eq!(
            got,
            vec![
                (vec![PkValue::Int(-7)], b"1:2:\x00\xff".to_vec()),
                (vec![PkValue::Int(12)], Vec::new()),
                (vec![PkValue::Int(300)], b"9999".to_vec()),
            ]
        );
        // Anything but an exact parse into `count` rows is refused.
        assert!(parse_packed_batch(&c, &packed, 2).is_none());
        assert!(parse_packed_batch(&c, &packed[..packed.len() - 1], 3).is_none());
        let mut trailing = packed.clone();
        trailing.extend_from_slice(b"3:");
        assert!(parse_packed_batch(&c, &trailing, 3).is_none());
        assert!(parse_packed_batch(&c, &frame(&[b"1.5", b"x"]), 1).is_none());
        assert!(parse_packed_batch(&c, b"+1:1x", 1).is_none());
        assert!(parse_packed_batch(&c, b"99999999999999999999999:1", 1).is_none());
        assert_eq!(parse_packed_batch(&c, b"", 0).unwrap().len(), 0);
    }

    #[test]
    fn text_values_must_be_utf8_and_rows_come_back_in_key_order() {
        let c = col(&[("a", PkKind::Int), ("b", PkKind::Int)], ValueKind::Text);
        assert!(parse_packed_batch(&c, &frame(&[b"1", b"1", b"\xff"]), 1).is_none());
        let mut packed = frame(&[b"2", b"1", b"late"]);
        packed.extend(frame(&[b"1", b"5", b"early"]));
        packed.extend(frame(&[b"1", b"9", b"middle"]));
        let rows = parse_packed_batch(&c, &packed, 3).unwrap();
        let keys: Vec<Vec<PkValue>> = rows.into_iter().map(|r| r.pk).collect();
        assert_eq!(
            keys,
            vec![
                vec![PkValue::Int(1), PkValue::Int(5)],
                vec![PkValue::Int(1), PkValue::Int(9)],
                vec![PkValue::Int(2), PkValue::Int(1)],
            ]
        );
    }

    /// The packed read against a real SQLite: the same rows, bytes and
    /// order as stored, page by page; a row of another storage class makes
    /// it step aside for the row-by-row read.
    #[tokio::test]
    async fn packed_batches_match_the_table() {
        let db = SqliteDb::connect(
            "sqlite::memory:",
            &ConnectOptions {
                max_connections: 1,
                create_if_missing: true,
            },
        )
        .await
        .unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, c BLOB)")
            .execute(&db.pool)
            .await
            .unwrap();
        let mut want = Vec::new();
        for id in -3i64..40 {
            let v: Vec<u8> = (0..(id.unsigned_abs() as usize % 7))
                .map(|i| [0u8, b':', b'7', 0xff][i % 4])
                .collect();
            let v = (id % 5 != 0).then_some(v);
            sqlx::query("INSERT INTO t VALUES (?, ?)")
                .bind(id)
                .bind(v.clone())
                .execute(&db.pool)
                .await
                .unwrap();
            if let Some(v) = v {
                want.push((vec![PkValue::Int(id)], v));
            }
        }
        let c = col(&[("id", PkKind::Int)], ValueKind::Binary);
        let mut got = Vec::new();
        let mut after: Option<Vec<PkValue>> = None;
        loop {
            let rows = db
                .fetch_batch_packed(&c, after.as_deref(), None, 8)
                .await
                .unwrap()
                .expect("the packed read applies");
            let Some(last) = rows.last() else { break };
            after = Some(last.pk.clone());
            got.extend(rows.into_iter().map(|r| (r.pk, r.value)));
        }
        assert_eq!(got, want);

        // A text value in the blob column: the batch is read row by row.
        sqlx::query("UPDATE t SET c = 'text' WHERE id = 1")
            .execute(&db.pool)
            .await
            .unwrap();
        assert!(
            db.fetch_batch_packed(&c, None, None, 100)
                .await
                .unwrap()
                .is_none()
        );
        let rows = db.fetch_batch(&c, None, None, 100).await.unwrap();
        assert_eq!(rows.len(), want.len());
    }
}
