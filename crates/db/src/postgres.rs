//! PostgreSQL: batches written with one `UPDATE … FROM unnest(…)` each; the
//! rotation lock is a session advisory lock held on a dedicated connection.

use crate::driver::Driver;
use crate::error::redact_url;
use crate::sql::Dialect;
use crate::{
    Backend, CasUpdate, ColumnRef, ConnectOptions, DbError, HeldLock, LockCheck, LockGuard,
    LockHolder, LockInfo, LockOutcome, Pk, PkKind, PkValue, Row, Skip, TableInfo, ValueKind,
};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Row as _};
use std::str::FromStr;
use std::time::Duration;

/// What PostgreSQL can do ([`crate::Capabilities`]).
pub(crate) const CAPABILITIES: crate::Capabilities = crate::Capabilities {
    // A batch is written with one array parameter per column
    // (`unnest`), whatever its size.
    max_write_binds: None,
    // Writers run in parallel on a server.
    default_workers: 2,
    // A cast of one invalid value to jsonb fails the whole statement: the
    // census matches JSON values' text instead.
    json_valid: false,
    // Serialization failure, deadlock, admin shutdown, crash shutdown,
    // cannot connect now, connection exceptions.
    transient_codes: &[
        "40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003", "08006",
    ],
    transient_messages: &[],
};

/// Advisory lock key: the first 8 bytes of "keyturn\0" read as an integer.
const ADVISORY_KEY: i64 = 0x6b65_7974_7572_6e00;

#[derive(Clone, Debug)]
pub(crate) struct PgDriver {
    pool: PgPool,
    /// `lock_timeout` of batch writes (set locally in their transaction:
    /// reads and bookkeeping wait as the server says).
    lock_timeout: Option<Duration>,
}

sqlx_sql!(PgDriver, sqlx::Postgres, Dialect::Postgres);

impl PgDriver {
    pub(crate) async fn connect(url: &str, opts: &ConnectOptions) -> Result<PgDriver, DbError> {
        let target = redact_url(url);
        let url = known_params_only(url);
        let options = PgConnectOptions::from_str(&url).map_err(DbError::connect(target.clone()))?;
        // One plain connection first: the pool retries a refused
        // connection until its acquire timeout (30 s) and then reports only
        // "pool timed out"; this fails at once with the real cause
        // (refused, authentication, unknown database).
        let probe = PgConnection::connect_with(&options)
            .await
            .map_err(DbError::connect(target.clone()))?;
        let _ = probe.close().await;
        // Lazy: the probe proved the server answers, and each connection
        // costs a server process; the pool opens them as work needs them.
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(options.clone());
        Ok(PgDriver {
            pool,
            lock_timeout: opts.lock_timeout,
        })
    }
}

/// The URL query parameters sqlx's PostgreSQL driver reads; `options[…]`
/// too.
const KNOWN_PARAMS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// The URL without the query parameters the driver does not know, each
/// named (never its value) in a warning: sqlx would ignore them too, but
/// log each one's value, and `sslpassword=…` or a mistyped `pasword=…` holds
/// a secret.
fn known_params_only(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((main, query)) = url.split_once('?') else {
        return url.into();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(k, _)| k);
        if KNOWN_PARAMS.contains(&name) || name.starts_with("options[") {
            kept.push(pair);
        } else {
            tracing::warn!(
                "ignoring the connection parameter {} of database.url: not one keyturn's PostgreSQL driver reads (its value is not shown)",
                keyturn_format::shown(name)
            );
        }
    }
    if kept.len() == query.split('&').filter(|p| !p.is_empty()).count() {
        return url.into();
    }
    let mut out = main.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out.into()
}

/// The primary-key part of an `UPDATE … FROM unnest(…)`: one array
/// parameter per key column (`$1::bigint[]`, `$2::text[]`, …) named
/// `k0`, `k1`, … in `keyturn_v`, and the join conditions on them (text keys
/// cast back to the column's type so the index is used).
pub(crate) fn unnest_pk(col: &ColumnRef) -> (Vec<String>, Vec<String>, Vec<String>) {
    let d = Dialect::Postgres;
    let (mut arrays, mut names, mut conds) = (Vec::new(), Vec::new(), Vec::new());
    for (i, p) in col.pk.iter().enumerate() {
        let at = match p.kind {
            PkKind::Int => "bigint",
            PkKind::Text | PkKind::Decimal => "text",
            PkKind::Bytes => "bytea",
        };
        arrays.push(format!("${}::{at}[]", i + 1));
        names.push(format!("k{i}"));
        let rhs = match p.kind {
            PkKind::Int | PkKind::Bytes => format!("keyturn_v.k{i}"),
            PkKind::Text | PkKind::Decimal => {
                format!("CAST(keyturn_v.k{i} AS {})", p.sql_type)
            }
        };
        conds.push(format!("keyturn_t.{} = {rhs}", d.quote(&p.name)));
    }
    (arrays, names, conds)
}

/// One primary-key column's values for [`unnest_pk`]'s parameters.
pub(crate) enum PkArray {
    Int(Vec<i64>),
    Text(Vec<String>),
    Bytes(Vec<Vec<u8>>),
}

/// The values of [`unnest_pk`]'s parameters, in key-column order.
pub(crate) fn pk_arrays<'a>(
    col: &ColumnRef,
    pks: impl Iterator<Item = &'a [PkValue]> + Clone,
) -> Result<Vec<PkArray>, DbError> {
    let mut out = Vec::with_capacity(col.pk.len());
    for (i, p) in col.pk.iter().enumerate() {
        let wrong = || {
            DbError::Invalid(format!(
                "a key value of another kind for key column {}",
                p.name
            ))
        };
        out.push(match p.kind {
            PkKind::Int => PkArray::Int(
                pks.clone()
                    .map(|pk| match &pk[i] {
                        PkValue::Int(v) => Ok(*v),
                        _ => Err(wrong()),
                    })
                    .collect::<Result<Vec<i64>, _>>()?,
            ),
            PkKind::Text | PkKind::Decimal => PkArray::Text(
                pks.clone()
                    .map(|pk| match &pk[i] {
                        PkValue::Text(v) => Ok(v.clone()),
                        _ => Err(wrong()),
                    })
                    .collect::<Result<Vec<String>, _>>()?,
            ),
            PkKind::Bytes => PkArray::Bytes(
                pks.clone()
                    .map(|pk| match &pk[i] {
                        PkValue::Bytes(v) => Ok(v.clone()),
                        _ => Err(wrong()),
                    })
                    .collect::<Result<Vec<Vec<u8>>, _>>()?,
            ),
        });
    }
    Ok(out)
}

/// Runs one batch's compare-and-swap statement (single- or multi-column) in
/// its own transaction; returns the rows written.
pub(crate) async fn write_batch(
    pool: &PgPool,
    statement: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    col: &ColumnRef,
    lock_timeout: Option<Duration>,
) -> Result<u64, DbError> {
    let what = || format!("writing a batch of {}.{}", col.table, col.column);
    let mut tx = pool.begin().await.map_err(DbError::query(what()))?;
    // The batch's commit need not wait for its WAL flush: a server crash
    // can lose only the last few batches, which then still hold their
    // old ciphertext (readable: the old key stays in the keyring) and
    // are rotated again on resume. The checkpoint and the run record
    // commit later in the same WAL, with the default synchronous commit,
    // so they are never durable ahead of the rows they describe.
    // The batch waits at most `lock_timeout` for a row lock the
    // application holds (55P03, a lock time-out: the engine splits the
    // batch and comes back to the row).
    let timeout = lock_timeout.map_or_else(String::new, |t| format!("{}ms", t.as_millis().max(1)));
    sqlx::query(
        "SELECT set_config('synchronous_commit', 'off', true), \
         CASE WHEN $1 <> '' THEN set_config('lock_timeout', $1, true) END",
    )
    .bind(timeout)
    .execute(&mut *tx)
    .await
    .map_err(DbError::query(what()))?;
    let done = statement
        .execute(&mut *tx)
        .await
        .map_err(DbError::query(what()))?;
    tx.commit().await.map_err(DbError::query(what()))?;
    Ok(done.rows_affected())
}

/// The advisory lock's key as `pg_locks` shows it: `classid` the high and
/// `objid` the low 32 bits (`objsubid` 1 marks a single bigint key).
const ADVISORY_CLASSID: i64 = ADVISORY_KEY >> 32;
const ADVISORY_OBJID: i64 = ADVISORY_KEY & 0xffff_ffff;

/// `pg_locks` rows of the rotation lock in this database.
const ADVISORY_LOCKS: &str = "FROM pg_locks WHERE locktype = 'advisory' AND granted \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1";

/// A fresh connection out of the pool (reusing an idle one when there is),
/// never handed back: a session-level advisory lock lives as long as it.
async fn lock_connection(pool: &PgPool) -> Result<PgConnection, DbError> {
    Ok(pool
        .acquire()
        .await
        .map_err(DbError::query("opening the lock connection"))?
        .detach())
}

async fn try_advisory_lock(conn: &mut PgConnection) -> Result<bool, DbError> {
    sqlx::query("SELECT pg_try_advisory_lock($1)")
        .bind(ADVISORY_KEY)
        .fetch_one(conn)
        .await
        .map_err(DbError::query("taking the rotation lock"))?
        .try_get(0)
        .map_err(DbError::query("taking the rotation lock"))
}

struct PgLock {
    driver: PgDriver,
    holder: LockHolder,
    /// The lock's session; `None` once released, or while it is lost.
    conn: tokio::sync::Mutex<Option<PgConnection>>,
    released: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl HeldLock for PgLock {
    async fn check(&self) -> Result<LockCheck, DbError> {
        let mut slot = self.conn.lock().await;
        if self.released.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(DbError::Invalid("the rotation lock was released".into()));
        }
        if let Some(conn) = slot.as_mut() {
            let held = tokio::time::timeout(
                crate::meta::LOCK_CHECK_TIMEOUT,
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT EXISTS (SELECT 1 {ADVISORY_LOCKS} AND pid = pg_backend_pid())"
                )))
                .bind(ADVISORY_CLASSID)
                .bind(ADVISORY_OBJID)
                .fetch_one(&mut *conn),
            )
            .await;
            if let Ok(Ok(true)) = held.map(|r| r.and_then(|r| r.try_get::<bool, _>(0))) {
                return Ok(LockCheck::Held);
            }
        }
        // The session ended (terminated, server restarted) or no longer
        // holds the lock: take it again on a new one if it is free.
        if let Some(old) = slot.take() {
            let _ = old.close().await;
        }
        let mut conn = lock_connection(&self.driver.pool).await?;
        if try_advisory_lock(&mut conn).await? {
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
            // Should the unlock fail, closing the session frees the lock.
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(ADVISORY_KEY)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
        deleted
    }
}

#[async_trait]
impl Driver for PgDriver {
    const BACKEND: Backend = Backend::Postgres;

    async fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError> {
        let regclass = Dialect::Postgres.quote(table);
        let cols = sqlx::query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(regclass.clone())
        .fetch_all(&self.pool)
        .await
        .map_err(DbError::query(format!("describing table {table}")))?;
        if cols.is_empty() {
            return Ok(None);
        }
        let pk = sqlx::query(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)",
        )
        .bind(regclass)
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
        let read = Dialect::Postgres.fetch_batch(col, after, skip, limit);
        crate::driver::read_rows(&self.pool, read, col, "reading a batch of", false).await
    }

    async fn fetch_rows(&self, col: &ColumnRef, pks: &[Pk]) -> Result<Vec<Row>, DbError> {
        let read = Dialect::Postgres.fetch_rows(col, pks);
        crate::driver::read_rows(&self.pool, read, col, "re-reading rows of", false).await
    }

    /// One `UPDATE … FROM unnest(…)` per batch.
    async fn write_cas(&self, col: &ColumnRef, updates: &[CasUpdate]) -> Result<u64, DbError> {
        if col.has_cells() {
            return crate::cells::write_cas_postgres(&self.pool, col, updates, self.lock_timeout)
                .await;
        }
        let d = Dialect::Postgres;
        let vt = match col.kind {
            ValueKind::Text => "text",
            ValueKind::Binary => "bytea",
        };
        let (mut arrays, mut names, mut conds) = unnest_pk(col);
        let n = col.pk.len();
        arrays.push(format!("${}::{vt}[]", n + 1));
        arrays.push(format!("${}::{vt}[]", n + 2));
        names.push("old".into());
        names.push("new".into());
        let c = d.quote(&col.column);
        conds.push(format!("keyturn_t.{c} = keyturn_v.old"));
        let sql = format!(
            "UPDATE {} AS keyturn_t SET {c} = keyturn_v.new FROM unnest({}) AS keyturn_v({}) WHERE {}",
            d.quote(&col.table),
            arrays.join(", "),
            names.join(", "),
            conds.join(" AND ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in pk_arrays(col, updates.iter().map(|u| u.pk.as_slice()))? {
            q = match a {
                PkArray::Int(v) => q.bind(v),
                PkArray::Text(v) => q.bind(v),
                PkArray::Bytes(v) => q.bind(v),
            };
        }
        q = match col.kind {
            ValueKind::Text => {
                let to_s = |b: &Vec<u8>| String::from_utf8_lossy(b).into_owned();
                q.bind(updates.iter().map(|u| to_s(&u.old)).collect::<Vec<_>>())
                    .bind(updates.iter().map(|u| to_s(&u.new)).collect::<Vec<_>>())
            }
            ValueKind::Binary => q
                .bind(updates.iter().map(|u| u.old.clone()).collect::<Vec<_>>())
                .bind(updates.iter().map(|u| u.new.clone()).collect::<Vec<_>>()),
        };
        write_batch(&self.pool, q, col, self.lock_timeout).await
    }

    async fn try_lock(&self, holder: &LockHolder) -> Result<LockOutcome, DbError> {
        let mut conn = lock_connection(&self.pool).await?;
        if !try_advisory_lock(&mut conn).await? {
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
            Box::new(PgLock {
                driver: self.clone(),
                holder: holder.clone(),
                conn: tokio::sync::Mutex::new(Some(conn)),
                released: std::sync::atomic::AtomicBool::new(false),
            }),
        )))
    }

    async fn lock_status(&self) -> Result<Option<LockInfo>, DbError> {
        let held: bool = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 {ADVISORY_LOCKS})"
        )))
        .bind(ADVISORY_CLASSID)
        .bind(ADVISORY_OBJID)
        .fetch_one(&self.pool)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(DbError::query("reading the rotation lock"))?;
        if !held {
            return Ok(None);
        }
        Ok(Some(crate::meta::held_by(self).await?))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_parameters_are_dropped() {
        assert_eq!(
            known_params_only("postgres://h/db?sslmode=disable&sslpassword=s3cret&options[x]=1"),
            "postgres://h/db?sslmode=disable&options[x]=1"
        );
        assert_eq!(
            known_params_only("postgres://h/db?pasword=s3cret"),
            "postgres://h/db"
        );
        assert_eq!(
            known_params_only("postgres://u:p@h/db?user=a&password=b"),
            "postgres://u:p@h/db?user=a&password=b"
        );
        assert_eq!(known_params_only("postgres://h/db"), "postgres://h/db");
    }
}
