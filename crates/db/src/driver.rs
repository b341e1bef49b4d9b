//! The seam between keyturn and one database server: [`Driver`].
//!
//! A backend (postgres.rs, mysql.rs, sqlite.rs) implements [`Driver`]: the
//! hot path (read a keyset batch, re-read rows, write one compare-and-swap
//! batch, single- or multi-column), the lock primitive, describing a table,
//! and [`Sql`], plain statements and queries with [`Value`] parameters.
//! [`crate::store::Store`] implements [`crate::Database`] once over any
//! driver: the census and every bookkeeping table (checkpoints, runs, bad
//! rows, audit, key catalog, instances, lock rows) are ordinary code over
//! [`Sql`], with the SQL text from [`Dialect`].

use crate::sql::Dialect;
use crate::{
    Backend, CasUpdate, ColumnRef, DbError, DriverError, LockHolder, LockInfo, LockOutcome, Pk,
    PkValue, Row, Skip, TableInfo,
};
use async_trait::async_trait;

/// A parameter of a bookkeeping statement, or a value read back. Typed even
/// when NULL: PostgreSQL types every parameter. A NULL read back is
/// `Text(None)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(Some(v))
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Value {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(Some(v.to_owned()))
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(Some(v.clone()))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(Some(v))
    }
}

impl From<&Option<String>> for Value {
    fn from(v: &Option<String>) -> Value {
        Value::Text(v.clone())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(Some(v))
    }
}

impl From<crate::sql::Bind> for Value {
    fn from(b: crate::sql::Bind) -> Value {
        match b {
            crate::sql::Bind::I64(i) => Value::Int(Some(i)),
            crate::sql::Bind::Str(s) => Value::Text(Some(s)),
            crate::sql::Bind::Bytes(v) => Value::Bytes(Some(v)),
        }
    }
}

/// The SQL builders' parameters ([`crate::sql::Bind`]) as [`Value`]s.
pub(crate) fn values(binds: Vec<crate::sql::Bind>) -> Vec<Value> {
    binds.into_iter().map(Value::from).collect()
}

impl Value {
    /// A primary-key value as a parameter.
    pub(crate) fn pk(v: &PkValue) -> Value {
        match v {
            PkValue::Int(i) => Value::Int(Some(*i)),
            PkValue::Text(s) => Value::Text(Some(s.clone())),
            PkValue::Bytes(b) => Value::Bytes(Some(b.clone())),
        }
    }

    fn is_null(&self) -> bool {
        matches!(
            self,
            Value::Int(None) | Value::Text(None) | Value::Bytes(None)
        )
    }
}

/// One result row of a bookkeeping query.
#[derive(Debug)]
pub(crate) struct Record(pub(crate) Vec<Value>);

impl Record {
    fn at(&self, i: usize) -> Result<&Value, DbError> {
        self.0
            .get(i)
            .ok_or_else(|| DbError::Invalid(format!("a result row without column {i}")))
    }

    fn wrong(i: usize, want: &str) -> DbError {
        DbError::Invalid(format!("column {i} of a result row is not {want}"))
    }

    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.at(i)? {
            v if v.is_null() => Ok(None),
            Value::Int(v) => Ok(*v),
            _ => Err(Self::wrong(i, "an integer")),
        }
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64, DbError> {
        self.opt_int(i)?.ok_or_else(|| Self::wrong(i, "an integer"))
    }

    /// Text; bytes that are UTF-8 too (a server may return a text
    /// expression as a binary string).
    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.at(i)? {
            v if v.is_null() => Ok(None),
            Value::Text(v) => Ok(v.clone()),
            Value::Bytes(Some(b)) => String::from_utf8(b.clone())
                .map(Some)
                .map_err(|_| Self::wrong(i, "text")),
            _ => Err(Self::wrong(i, "text")),
        }
    }

    pub(crate) fn text(&self, i: usize) -> Result<String, DbError> {
        self.opt_text(i)?.ok_or_else(|| Self::wrong(i, "text"))
    }

    /// Text or bytes, as bytes.
    pub(crate) fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, DbError> {
        match self.at(i)? {
            v if v.is_null() => Ok(None),
            Value::Text(Some(s)) => Ok(Some(s.clone().into_bytes())),
            Value::Bytes(v) => Ok(v.clone()),
            _ => Err(Self::wrong(i, "text or bytes")),
        }
    }

    /// The first `col.pk.len()` columns as a primary key.
    pub(crate) fn pk(&self, col: &ColumnRef) -> Result<Pk, DbError> {
        let mut pk = Vec::with_capacity(col.pk.len());
        for (i, p) in col.pk.iter().enumerate() {
            pk.push(match p.kind {
                crate::PkKind::Int => PkValue::Int(self.int(i)?),
                crate::PkKind::Text | crate::PkKind::Decimal => PkValue::Text(self.text(i)?),
                crate::PkKind::Bytes => PkValue::Bytes(
                    self.opt_bytes(i)?
                        .ok_or_else(|| Self::wrong(i, "a key value"))?,
                ),
            });
        }
        Ok(pk)
    }
}

/// Plain statements and queries: what bookkeeping needs of a database.
#[async_trait]
pub(crate) trait Sql: Send + Sync {
    fn dialect(&self) -> Dialect;

    /// Runs one statement; the rows it changed.
    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, DriverError>;

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Record>, DriverError>;

    /// Starts a transaction; `immediate`: take the write lock first
    /// (SQLite's `BEGIN IMMEDIATE`; the servers' transactions need none).
    async fn begin(&self, immediate: bool) -> Result<Box<dyn Tx>, DriverError>;
}

/// A transaction of [`Sql`]; dropped without a commit, it rolls back.
#[async_trait]
pub(crate) trait Tx: Send {
    async fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, DriverError>;
    async fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Vec<Record>, DriverError>;
    async fn commit(self: Box<Self>) -> Result<(), DriverError>;
    async fn rollback(self: Box<Self>) -> Result<(), DriverError>;
}

/// One database server, as keyturn drives it.
#[async_trait]
pub(crate) trait Driver: Sql + std::fmt::Debug + 'static {
    const BACKEND: Backend;

    /// The table's columns, or `None` if it does not exist.
    async fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError>;

    /// The hot path's read: as [`crate::Database::fetch_batch`].
    async fn fetch_batch(
        &self,
        col: &ColumnRef,
        after: Option<&[PkValue]>,
        skip: Option<&Skip>,
        limit: usize,
    ) -> Result<Vec<Row>, DbError>;

    /// As [`crate::Database::fetch_rows`] (`pks` not empty).
    async fn fetch_rows(&self, col: &ColumnRef, pks: &[Pk]) -> Result<Vec<Row>, DbError>;

    /// The hot path's write: as [`crate::Database::write_cas`], for single-
    /// and multi-column values (`updates` not empty).
    async fn write_cas(&self, col: &ColumnRef, updates: &[CasUpdate]) -> Result<u64, DbError>;

    /// The lock primitive: takes the one-rotation-per-database lock without
    /// waiting (recording the holder with [`crate::meta::record_holder`]).
    async fn try_lock(&self, holder: &LockHolder) -> Result<LockOutcome, DbError>;

    /// Who holds the lock, found without taking it.
    async fn lock_status(&self) -> Result<Option<LockInfo>, DbError>;

    /// Closes the connections.
    async fn close(&self);
}

// ---------------------------------------------------------------------------
// sqlx plumbing shared by the three drivers
// ---------------------------------------------------------------------------

/// Binds bookkeeping parameters to a sqlx query.
pub(crate) fn bind_values<'q, DB: sqlx::Database>(
    mut q: sqlx::query::Query<'q, DB, DB::Arguments>,
    params: Vec<Value>,
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<String>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<Vec<u8>>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    for p in params {
        q = match p {
            Value::Int(v) => q.bind(v),
            Value::Text(v) => q.bind(v),
            Value::Bytes(v) => q.bind(v),
        };
    }
    q
}

/// A sqlx row as a [`Record`]: each column read as an integer, text or
/// bytes, whichever its type is.
pub(crate) fn record<R: sqlx::Row>(r: &R) -> Result<Record, DriverError>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    use sqlx::ValueRef as _;
    let mut out = Vec::with_capacity(r.len());
    for i in 0..r.len() {
        let null = r
            .try_get_raw(i)
            .map_err(|e| DriverError::from_sqlx(&e))?
            .is_null();
        out.push(if null {
            Value::Text(None)
        } else if let Ok(v) = r.try_get::<i64, _>(i) {
            Value::Int(Some(v))
        } else if let Ok(v) = r.try_get::<String, _>(i) {
            Value::Text(Some(v))
        } else {
            Value::Bytes(Some(
                r.try_get::<Vec<u8>, _>(i)
                    .map_err(|e| DriverError::from_sqlx(&e))?,
            ))
        });
    }
    Ok(Record(out))
}

pub(crate) fn sqlx_err(e: sqlx::Error) -> DriverError {
    DriverError::from_sqlx(&e)
}

/// A sqlx transaction as a [`Tx`] (implemented per driver by
/// [`sqlx_sql!`]).
pub(crate) struct SqlxTx<DB: sqlx::Database>(pub(crate) sqlx::Transaction<'static, DB>);

/// A bookkeeping statement with its parameters bound.
pub(crate) fn statement<'q, DB: sqlx::Database>(
    sql: &str,
    params: Vec<Value>,
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<String>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<Vec<u8>>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    bind_values(sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())), params)
}

/// [`Sql`] for a driver with a sqlx `pool` of database `$db` (and, through
/// [`sqlx_tx!`], [`Tx`] for its transactions): the same few lines for each
/// driver, which sqlx's executor traits make impractical to write once
/// generically.
macro_rules! sqlx_sql {
    ($driver:ty, $db:ty, $dialect:expr) => {
        const _: () = {
            use $crate::driver::{Record, SqlxTx, Tx, Value, record, sqlx_err, statement};
            use $crate::{DriverError, sql::Dialect};
            #[async_trait::async_trait]
            impl $crate::driver::Sql for $driver {
                fn dialect(&self) -> Dialect {
                    $dialect
                }
                async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, DriverError> {
                    let done = statement(sql, params).execute(&self.pool).await;
                    done.map(|d| d.rows_affected()).map_err(sqlx_err)
                }
                async fn query(
                    &self,
                    sql: &str,
                    params: Vec<Value>,
                ) -> Result<Vec<Record>, DriverError> {
                    let rows = statement(sql, params).fetch_all(&self.pool).await;
                    rows.map_err(sqlx_err)?.iter().map(record).collect()
                }
                async fn begin(&self, immediate: bool) -> Result<Box<dyn Tx>, DriverError> {
                    let tx = match immediate {
                        true => self.pool.begin_with("BEGIN IMMEDIATE").await,
                        false => self.pool.begin().await,
                    };
                    Ok(Box::new(SqlxTx::<$db>(tx.map_err(sqlx_err)?)))
                }
            }
            sqlx_tx!($db);
        };
    };
}

/// [`Tx`] for a sqlx transaction of database `$db` (see [`sqlx_sql!`]).
macro_rules! sqlx_tx {
    ($db:ty) => {
        #[async_trait::async_trait]
        impl Tx for SqlxTx<$db> {
            async fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, DriverError> {
                let done = statement(sql, params).execute(&mut *self.0).await;
                done.map(|d| d.rows_affected()).map_err(sqlx_err)
            }
            async fn query(
                &mut self,
                sql: &str,
                params: Vec<Value>,
            ) -> Result<Vec<Record>, DriverError> {
                let rows = statement(sql, params).fetch_all(&mut *self.0).await;
                rows.map_err(sqlx_err)?.iter().map(record).collect()
            }
            async fn commit(self: Box<Self>) -> Result<(), DriverError> {
                self.0.commit().await.map_err(sqlx_err)
            }
            async fn rollback(self: Box<Self>) -> Result<(), DriverError> {
                self.0.rollback().await.map_err(sqlx_err)
            }
        }
    };
}

/// Runs a batch read built by the SQL builders (`fetch_batch`,
/// `fetch_rows`: the statement and its parameters) on a sqlx pool and
/// decodes its rows ([`decode_rows`]); `what` names the read in errors
/// ("reading a batch of t.c"). The same for every sqlx driver.
pub(crate) async fn read_rows<DB>(
    pool: &sqlx::Pool<DB>,
    (sql, binds): (String, Vec<crate::sql::Bind>),
    col: &ColumnRef,
    what: &str,
    storage_classes: bool,
) -> Result<Vec<Row>, DbError>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments: sqlx::IntoArguments<DB>,
    for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<String>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<Vec<u8>>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'r> i64: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'r> Vec<u8>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
{
    let rows = bind_values(sqlx::query(sqlx::AssertSqlSafe(sql)), values(binds))
        .fetch_all(pool)
        .await
        .map_err(DbError::query(format!(
            "{what} {}.{}",
            col.table, col.column
        )))?;
    decode_rows(&rows, col, storage_classes)
}

/// Reads the rows of a batch read (`pk columns…, value`, or `pk columns…,
/// cells…` of a multi-column value) into the rows holding a value: a text
/// value that is not UTF-8 or, with `storage_classes` (SQLite), a value of
/// another storage class than the column's, is a problem of its row (read
/// as empty bytes), never an error of the batch.
pub(crate) fn decode_rows<R: sqlx::Row>(
    rows: &[R],
    col: &ColumnRef,
    storage_classes: bool,
) -> Result<Vec<Row>, DbError>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let n = col.pk.len();
    let anchor = col.cells.iter().position(|c| c.name == col.column);
    let first_aux = n + col.cells.len().max(1);
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let pk = decode_pk(r, col)?;
        let mut aux = Vec::with_capacity(col.aux.len());
        for (j, name) in col.aux.iter().enumerate() {
            aux.push(
                r.try_get::<Option<String>, _>(first_aux + j)
                    .map_err(DbError::query(format!("reading column {name} as text")))?,
            );
        }
        if !col.has_cells() {
            let (value, problem) = decode_value(r, n, col.kind, &col.column, storage_classes)?;
            if let Some(value) = value {
                out.push(Row {
                    pk,
                    value,
                    problem,
                    aux,
                });
            }
            continue;
        }
        let mut cells: Vec<Option<Vec<u8>>> = Vec::with_capacity(col.cells.len());
        let mut problem = None;
        for (j, c) in col.cells.iter().enumerate() {
            let (v, p) = decode_value(r, n + j, c.kind, &c.name, storage_classes)?;
            problem = problem.or(p);
            cells.push(v);
        }
        if anchor.is_some_and(|a| cells[a].is_none()) {
            continue;
        }
        let value = if problem.is_some() {
            Vec::new()
        } else {
            crate::cells::pack(cells.iter().map(|c| c.as_deref()))
        };
        out.push(Row {
            pk,
            value,
            problem,
            aux,
        });
    }
    Ok(out)
}

/// The primary key of a row whose first columns are the key's.
pub(crate) fn decode_pk<R: sqlx::Row>(r: &R, col: &ColumnRef) -> Result<Pk, DbError>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let what = || DbError::query(format!("reading a primary key of {}", col.table));
    let mut pk = Vec::with_capacity(col.pk.len());
    for (i, p) in col.pk.iter().enumerate() {
        pk.push(match p.kind {
            crate::PkKind::Int => PkValue::Int(r.try_get::<i64, _>(i).map_err(what())?),
            crate::PkKind::Text | crate::PkKind::Decimal => {
                PkValue::Text(r.try_get::<String, _>(i).map_err(what())?)
            }
            crate::PkKind::Bytes => PkValue::Bytes(r.try_get::<Vec<u8>, _>(i).map_err(what())?),
        });
    }
    Ok(pk)
}

/// One stored value of column `i`: NULL is `None`.
fn decode_value<R: sqlx::Row>(
    r: &R,
    i: usize,
    kind: crate::ValueKind,
    name: &str,
    storage_classes: bool,
) -> Result<(Option<Vec<u8>>, Option<crate::ReadProblem>), DbError>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    use crate::{ReadProblem, ValueKind};
    use sqlx::{TypeInfo as _, ValueRef as _};
    if storage_classes {
        let raw = r
            .try_get_raw(i)
            .map_err(DbError::query(format!("reading column {name}")))?;
        if !raw.is_null() {
            let want = match kind {
                ValueKind::Text => "TEXT",
                ValueKind::Binary => "BLOB",
            };
            let found = raw.type_info();
            let class = match found.name() {
                n if n == want => None,
                "TEXT" => Some("TEXT"),
                "BLOB" => Some("BLOB"),
                "INTEGER" => Some("INTEGER"),
                "REAL" => Some("REAL"),
                _ => Some("another type"),
            };
            if let Some(c) = class {
                return Ok((Some(Vec::new()), Some(ReadProblem::StorageClass(c))));
            }
        }
    }
    Ok(match kind {
        ValueKind::Text => match r.try_get::<Option<String>, _>(i) {
            Ok(v) => (v.map(String::into_bytes), None),
            Err(_) => (Some(Vec::new()), Some(ReadProblem::NotUtf8)),
        },
        ValueKind::Binary => (
            r.try_get::<Option<Vec<u8>>, _>(i)
                .map_err(DbError::query(format!("reading binary column {name}")))?,
            None,
        ),
    })
}
