//! SQLite, the embedded default: each batch written by one compare-and-swap
//! `UPDATE … FROM (VALUES …)` in its own transaction; the rotation lock is a lease row with a
//! heartbeat, taken over when its holder is gone.

use crate::sql::Dialect;
use crate::{
    ColumnRef, ConnectOptions, DbError, LockGuard, LockHolder, LockOutcome, LockRelease, TableInfo,
    ValueKind,
};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Connection, Row as _};
use std::str::FromStr;
use std::time::Duration;

/// A lease whose heartbeat is older than this is considered abandoned.
const LEASE_STALE_SECS: i64 = 30;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// Bind parameters per statement: SQLite's limit is 32766 (since 3.32).
pub(crate) const MAX_BINDS: usize = 32_000;

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

#[derive(Debug)]
pub(crate) struct SqliteDb {
    pool: SqlitePool,
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
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await
            .map_err(|source| DbError::Connect { target, source })?;
        Ok(SqliteDb { pool })
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
                    ValueKind::Text => q
                        .bind(String::from_utf8_lossy(&u.old).into_owned())
                        .bind(String::from_utf8_lossy(&u.new).into_owned()),
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
