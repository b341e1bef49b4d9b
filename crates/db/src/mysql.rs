//! MySQL / MariaDB: batches written with one multi-row `UPDATE … JOIN`
//! statement each (split when large values would exceed the server's
//! `max_allowed_packet`); the rotation lock is `GET_LOCK` held on a dedicated
//! connection.

use crate::driver::Driver;
use crate::error::redact_url;
use crate::sql::Dialect;
use crate::{
    Backend, CasUpdate, ColumnRef, ConnectOptions, DbError, HeldLock, LockCheck, LockGuard,
    LockHolder, LockInfo, LockOutcome, Pk, PkValue, Row, Skip, TableInfo, ValueKind,
};
use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions};
use sqlx::{Connection, Row as _};
use std::str::FromStr;
use std::time::Duration;

/// What MySQL / MariaDB can do ([`crate::Capabilities`]).
pub(crate) const CAPABILITIES: crate::Capabilities = crate::Capabilities {
    // Bind parameters per statement are limited to 65535 (a batch write
    // binds every key column, the old and the new value of each row).
    max_write_binds: Some(60_000),
    // Writers run in parallel on a server.
    default_workers: 2,
    // JSON_VALID tests a value without failing on invalid input.
    json_valid: true,
    // Lock wait timeout, deadlock.
    transient_codes: &["1205", "1213"],
    transient_messages: &["Lock wait timeout", "Deadlock found"],
};

/// `GET_LOCK` names are server-wide, not per database: the lock name ends
/// with a hash of the current database's name so that rotations of two
/// databases on one server do not block each other (49 characters, within
/// the 64 allowed).
const LOCK_NAME_SQL: &str = "CONCAT('keyturn.rotation.', MD5(COALESCE(DATABASE(), '')))";

#[derive(Clone, Debug)]
pub(crate) struct MySqlDriver {
    pool: MySqlPool,
    /// Bytes of old and new values one write statement may carry: a
    /// statement larger than the server's `max_allowed_packet` is refused.
    write_budget: usize,
}

sqlx_sql!(MySqlDriver, sqlx::MySql, Dialect::MySql);

impl MySqlDriver {
    pub(crate) async fn connect(url: &str, opts: &ConnectOptions) -> Result<MySqlDriver, DbError> {
        let target = redact_url(url);
        // `mariadb://` is accepted as a synonym.
        let url = url
            .strip_prefix("mariadb://")
            .map(|r| format!("mysql://{r}"))
            .unwrap_or_else(|| url.to_owned());
        let options =
            MySqlConnectOptions::from_str(&url).map_err(DbError::connect(target.clone()))?;
        // One plain connection first: the pool retries a refused
        // connection until its acquire timeout (30 s) and then reports only
        // "pool timed out"; this fails at once with the real cause
        // (refused, authentication, unknown database).
        let mut probe = MySqlConnection::connect_with(&options)
            .await
            .map_err(DbError::connect(target.clone()))?;
        let max_packet: i64 = sqlx::query("SELECT CAST(@@max_allowed_packet AS SIGNED)")
            .fetch_one(&mut probe)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(DbError::query("reading max_allowed_packet"))?;
        let _ = probe.close().await;
        // Lazy: the probe proved the server answers; the pool opens
        // connections as work needs them.
        // innodb_lock_wait_timeout counts whole seconds.
        let lock_wait = opts
            .lock_timeout
            .map(|t| t.as_millis().div_ceil(1000).max(1) as u64);
        let pool = MySqlPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if let Some(s) = lock_wait {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SET SESSION innodb_lock_wait_timeout = {s}"
                        )))
                        .execute(conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        // Leave room for the statement text and per-parameter framing.
        let write_budget = (max_packet.max(1 << 20) as usize) / 4 * 3;
        Ok(MySqlDriver { pool, write_budget })
    }

    /// One multi-row compare-and-swap `UPDATE … JOIN` statement.
    async fn write_cas_statement(
        &self,
        col: &ColumnRef,
        updates: &[CasUpdate],
    ) -> Result<u64, DbError> {
        let d = Dialect::MySql;
        let width = col.pk.len() + 2;
        // Values travel as bytes, cast to binary strings: a string parameter
        // becomes a VARCHAR column of the derived table, and MariaDB
        // silently truncates longer values to fit it (a CAS that never
        // matches, or worse, a truncated ciphertext written).
        let first: Vec<String> = col
            .pk
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{} AS k{i}", d.pk_param(p, "?")))
            .chain([
                "CAST(? AS BINARY) AS old".to_string(),
                "CAST(? AS BINARY) AS new".to_string(),
            ])
            .collect();
        let rest: Vec<&str> = (0..col.pk.len())
            .map(|_| "?")
            .chain(["CAST(? AS BINARY)"; 2])
            .collect();
        let rest = rest.join(", ");
        // (Not a table value constructor, `VALUES (…), (…)`: MariaDB types
        // its columns when the statement is prepared and then truncates,
        // or refuses, a longer value of a later execution.)
        let mut derived = String::with_capacity(updates.len() * (width * 20 + 20));
        derived.push_str("SELECT ");
        derived.push_str(&first.join(", "));
        for _ in 1..updates.len() {
            derived.push_str(" UNION ALL SELECT ");
            derived.push_str(&rest);
        }
        // With an integer leading key, the table drives the join over the
        // batch's key range and each row finds its new value through the
        // derived table's automatic key: MariaDB then updates rows as the
        // join meets them. Driven the other way, a multi-table UPDATE first
        // collects every row to change and updates them in a second pass,
        // about twice the time. (A keyset batch is one contiguous key
        // range; text keys are left out because the range would have to
        // be computed in the column's collation.)
        let range = match col.pk.first().map(|p| p.kind) {
            Some(crate::PkKind::Int) => {
                let firsts = updates.iter().filter_map(|u| match u.pk.first() {
                    Some(crate::PkValue::Int(i)) => Some(*i),
                    _ => None,
                });
                let (lo, hi) =
                    firsts.fold((i64::MAX, i64::MIN), |(lo, hi), i| (lo.min(i), hi.max(i)));
                (lo <= hi).then_some((lo, hi))
            }
            _ => None,
        };
        let mut conds: Vec<String> = col
            .pk
            .iter()
            .enumerate()
            .map(|(i, p)| format!("keyturn_t.{} = keyturn_v.k{i}", d.quote(&p.name)))
            .collect();
        let c = d.quote(&col.column);
        // Binary comparison: a case-insensitive collation must not let a
        // different value pass the compare-and-swap. Text is compared as the
        // UTF-8 the driver read (the connection charset is utf8mb4), whatever
        // the column's own charset.
        let (cmp, set) = match col.kind {
            ValueKind::Text => (
                format!("CAST(CONVERT(keyturn_t.{c} USING utf8mb4) AS BINARY) = keyturn_v.old"),
                "CONVERT(keyturn_v.new USING utf8mb4)",
            ),
            ValueKind::Binary => (format!("keyturn_t.{c} = keyturn_v.old"), "keyturn_v.new"),
        };
        conds.push(cmp);
        let mut sql = format!(
            "UPDATE {} AS keyturn_t {} ({derived}) AS keyturn_v ON {} SET keyturn_t.{c} = {set}",
            d.quote(&col.table),
            if range.is_some() {
                "STRAIGHT_JOIN"
            } else {
                "JOIN"
            },
            conds.join(" AND ")
        );
        if range.is_some() {
            sql.push_str(&format!(
                " WHERE keyturn_t.{} BETWEEN ? AND ?",
                d.quote(&col.pk[0].name)
            ));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for u in updates {
            for v in &u.pk {
                q = match v {
                    crate::PkValue::Int(i) => q.bind(*i),
                    crate::PkValue::Text(s) => q.bind(s.clone()),
                    crate::PkValue::Bytes(b) => q.bind(b.clone()),
                };
            }
            q = q.bind(u.old.clone()).bind(u.new.clone());
        }
        if let Some((lo, hi)) = range {
            q = q.bind(lo).bind(hi);
        }
        let done = q.execute(&self.pool).await.map_err(DbError::query(format!(
            "writing a batch of {}.{}",
            col.table, col.column
        )))?;
        Ok(done.rows_affected())
    }
}

/// `schema.table` as (schema, table).
fn split_table(table: &str) -> (Option<&str>, &str) {
    match table.split_once('.') {
        Some((s, t)) => (Some(s), t),
        None => (None, table),
    }
}

/// A fresh connection out of the pool (reusing an idle one when there is),
/// never handed back: `GET_LOCK` lives as long as it.
async fn lock_connection(pool: &MySqlPool) -> Result<MySqlConnection, DbError> {
    Ok(pool
        .acquire()
        .await
        .map_err(DbError::query("opening the lock connection"))?
        .detach())
}

async fn get_lock(conn: &mut MySqlConnection) -> Result<bool, DbError> {
    let got: Option<i64> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT GET_LOCK({LOCK_NAME_SQL}, 0)"
    )))
    .fetch_one(conn)
    .await
    .map_err(DbError::query("taking the rotation lock"))?
    .try_get(0)
    .map_err(DbError::query("taking the rotation lock"))?;
    Ok(got == Some(1))
}

struct MySqlLock {
    driver: MySqlDriver,
    holder: LockHolder,
    /// The lock's session; `None` once released, or while it is lost.
    conn: tokio::sync::Mutex<Option<MySqlConnection>>,
    released: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl HeldLock for MySqlLock {
    async fn check(&self) -> Result<LockCheck, DbError> {
        let mut slot = self.conn.lock().await;
        if self.released.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(DbError::Invalid("the rotation lock was released".into()));
        }
        if let Some(conn) = slot.as_mut() {
            let held = tokio::time::timeout(
                crate::meta::LOCK_CHECK_TIMEOUT,
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT CAST(COALESCE(IS_USED_LOCK({LOCK_NAME_SQL}) = CONNECTION_ID(), 0) AS SIGNED)"
                )))
                .fetch_one(&mut *conn),
            )
            .await;
            if let Ok(Ok(1)) = held.map(|r| r.and_then(|r| r.try_get::<i64, _>(0))) {
                return Ok(LockCheck::Held);
            }
        }
        // The session ended (killed, server restarted) or no longer holds
        // the lock: take it again on a new one if it is free.
        if let Some(old) = slot.take() {
            let _ = old.close().await;
        }
        let mut conn = lock_connection(&self.driver.pool).await?;
        if get_lock(&mut conn).await? {
            let now = crate::meta::now_rfc3339();
            crate::meta::record_holder(&self.driver, None, &self.holder, &now).await?;
            *slot = Some(conn);
            return Ok(LockCheck::Retaken);
        }
        let _ = conn.close().await;
        let other = crate::meta::holder_row(&self.driver, &self.holder.token).await?;
        Ok(LockCheck::Lost {
            holder: other.holder,
            since: other.since,
        })
    }

    async fn release(&self) -> Result<(), DbError> {
        let mut slot = self.conn.lock().await;
        if self
            .released
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        let deleted = crate::meta::delete_holder(&self.driver, &self.holder.token).await;
        if let Some(mut conn) = slot.take() {
            // Should the release fail, closing the session frees the lock.
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT RELEASE_LOCK({LOCK_NAME_SQL})"
            )))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
        }
        deleted
    }
}

#[async_trait]
impl Driver for MySqlDriver {
    const BACKEND: Backend = Backend::MySql;

    async fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError> {
        let (schema, name) = split_table(table);
        let schema_cond = if schema.is_some() {
            "TABLE_SCHEMA = ?"
        } else {
            "TABLE_SCHEMA = DATABASE()"
        };
        let sql = format!(
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR) FROM information_schema.COLUMNS \
             WHERE {schema_cond} AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(s) = schema {
            q = q.bind(s.to_owned());
        }
        let cols = q
            .bind(name.to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(DbError::query(format!("describing table {table}")))?;
        if cols.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.KEY_COLUMN_USAGE \
             WHERE {schema_cond} AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(s) = schema {
            q = q.bind(s.to_owned());
        }
        let pk = q
            .bind(name.to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(DbError::query(format!("describing table {table}")))?;
        let mut columns = Vec::new();
        for r in cols {
            columns.push((
                r.try_get::<String, _>(0)
                    .map_err(DbError::query("reading the catalog"))?,
                r.try_get::<String, _>(1)
                    .map_err(DbError::query("reading the catalog"))?,
            ));
        }
        let mut primary_key = Vec::new();
        for r in pk {
            primary_key.push(
                r.try_get::<String, _>(0)
                    .map_err(DbError::query("reading the catalog"))?,
            );
        }
        Ok(Some(TableInfo {
            columns,
            primary_key,
        }))
    }

    async fn fetch_batch(
        &self,
        col: &ColumnRef,
        after: Option<&[PkValue]>,
        skip: Option<&Skip>,
        limit: usize,
    ) -> Result<Vec<Row>, DbError> {
        let read = Dialect::MySql.fetch_batch(col, after, skip, limit);
        crate::driver::read_rows(&self.pool, read, col, "reading a batch of", false).await
    }

    async fn fetch_rows(&self, col: &ColumnRef, pks: &[Pk]) -> Result<Vec<Row>, DbError> {
        let read = Dialect::MySql.fetch_rows(col, pks);
        crate::driver::read_rows(&self.pool, read, col, "re-reading rows of", false).await
    }

    async fn write_cas(&self, col: &ColumnRef, updates: &[CasUpdate]) -> Result<u64, DbError> {
        if col.has_cells() {
            return crate::cells::write_cas_mysql(&self.pool, self.write_budget, col, updates)
                .await;
        }
        // Usually one statement per batch; several when the batch's values
        // would not fit in one packet (large values).
        let mut written = 0;
        let (mut start, mut bytes) = (0, 0);
        for (i, u) in updates.iter().enumerate() {
            let size = u.old.len() + u.new.len() + 64 * (col.pk.len() + 2);
            if size > self.write_budget {
                return Err(DbError::Invalid(format!(
                    "{}.{}: a value of {} bytes does not fit in one statement under this server's max_allowed_packet; raise max_allowed_packet",
                    col.table,
                    col.column,
                    u.old.len().max(u.new.len())
                )));
            }
            if i > start && bytes + size > self.write_budget {
                written += self.write_cas_statement(col, &updates[start..i]).await?;
                (start, bytes) = (i, 0);
            }
            bytes += size;
        }
        if start < updates.len() {
            written += self.write_cas_statement(col, &updates[start..]).await?;
        }
        Ok(written)
    }

    async fn try_lock(&self, holder: &LockHolder) -> Result<LockOutcome, DbError> {
        let mut conn = lock_connection(&self.pool).await?;
        if !get_lock(&mut conn).await? {
            let _ = conn.close().await;
            let other = crate::meta::holder_row(self, &holder.token).await?;
            return Ok(LockOutcome::Held {
                holder: other.holder,
                since: other.since,
            });
        }
        let now = crate::meta::now_rfc3339();
        if let Err(e) = crate::meta::record_holder(self, None, holder, &now).await {
            let _ = conn.close().await;
            return Err(e);
        }
        Ok(LockOutcome::Acquired(LockGuard::new(
            &holder.token,
            Box::new(MySqlLock {
                driver: self.clone(),
                holder: holder.clone(),
                conn: tokio::sync::Mutex::new(Some(conn)),
                released: std::sync::atomic::AtomicBool::new(false),
            }),
        )))
    }

    async fn lock_status(&self) -> Result<Option<LockInfo>, DbError> {
        let used: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(IS_USED_LOCK({LOCK_NAME_SQL}) IS NOT NULL AS SIGNED)"
        )))
        .fetch_one(&self.pool)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(DbError::query("reading the rotation lock"))?;
        if used == 0 {
            return Ok(None);
        }
        Ok(Some(crate::meta::held_by(self).await?))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
