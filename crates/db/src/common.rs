//! Trait methods whose code is identical for every backend (only the SQL
//! text differs, and that comes from [`crate::sql::Dialect`]). A macro rather
//! than generics over `sqlx::Database`: the three drivers' types share method
//! names but not a usable common bound.

/// A backend's own way to read a batch, tried before the generic
/// row-by-row read of [`crate::Database::fetch_batch`] through sqlx.
#[async_trait::async_trait]
pub(crate) trait OwnBatchRead {
    /// The batch, or `None` to read it through sqlx.
    async fn fetch_batch_own(
        &self,
        _col: &crate::ColumnRef,
        _after: Option<&[crate::PkValue]>,
        _skip: Option<&crate::Skip>,
        _limit: usize,
    ) -> Result<Option<Vec<crate::Row>>, crate::DbError> {
        Ok(None)
    }
}

/// Binds a list of [`crate::sql::Bind`] to a query.
macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                $crate::sql::Bind::I64(i) => q.bind(i),
                $crate::sql::Bind::Str(s) => q.bind(s),
                $crate::sql::Bind::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
}

/// Runs one `CREATE TABLE IF NOT EXISTS` unless the table exists already
/// (see [`crate::missing`]: a login without CREATE may use existing
/// tables), running it again when it lost a race with another session
/// creating the same table (two keyturn processes starting together); see
/// [`crate::DbError::is_concurrent_create`].
macro_rules! create_if_missing {
    ($pool:expr, $sql:expr, $what:expr) => {{
        let sql: String = $sql;
        let exists = match $crate::missing::created_table(&sql) {
            Some(name) => sqlx::query_scalar::<_, i64>($crate::missing::exists_sql(Self::DIALECT))
                .bind(name.to_owned())
                .fetch_one($pool)
                .await
                .map(|n| n > 0)
                .map_err(DbError::query($what)),
            None => Ok(false),
        };
        match exists {
            Ok(true) => Ok::<(), DbError>(()),
            Err(e) => Err(e),
            Ok(false) => {
                let mut attempt = 0u32;
                loop {
                    attempt += 1;
                    match sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                        .execute($pool)
                        .await
                        .map_err(DbError::query($what))
                    {
                        Ok(_) => break Ok::<(), DbError>(()),
                        Err(e) if attempt < 4 && e.is_concurrent_create() => {
                            tokio::time::sleep(std::time::Duration::from_millis(
                                5 * u64::from(attempt),
                            ))
                            .await;
                        }
                        Err(e) => break Err(e),
                    }
                }
            }
        }
    }};
}

/// The key token in the first column of a census row: text, or bytes
/// where the server returns a binary string (MySQL's casts).
macro_rules! census_token {
    ($r:expr, $what:expr) => {{
        let token: Option<Vec<u8>> = match $r.try_get::<Option<String>, _>(0) {
            Ok(k) => k.map(String::into_bytes),
            Err(_) => $r
                .try_get::<Option<Vec<u8>>, _>(0)
                .map_err($crate::DbError::query($what))?,
        };
        token
    }};
}

/// Decodes the primary key of a row whose first columns are the key's.
macro_rules! decode_pk {
    ($r:expr, $col:expr) => {{
        use sqlx::Row as _;
        let col: &$crate::ColumnRef = $col;
        let what = || $crate::DbError::query(format!("reading a primary key of {}", col.table));
        let mut pk = Vec::with_capacity(col.pk.len());
        for (i, p) in col.pk.iter().enumerate() {
            pk.push(match p.kind {
                $crate::PkKind::Int => {
                    $crate::PkValue::Int($r.try_get::<i64, _>(i).map_err(what())?)
                }
                $crate::PkKind::Text | $crate::PkKind::Decimal => {
                    $crate::PkValue::Text($r.try_get::<String, _>(i).map_err(what())?)
                }
                $crate::PkKind::Bytes => {
                    $crate::PkValue::Bytes($r.try_get::<Vec<u8>, _>(i).map_err(what())?)
                }
            });
        }
        pk
    }};
}

/// Reads one stored value of column `$i` (of kind `$kind`, named `$name`)
/// as `(Option<bytes>, Option<ReadProblem>)`: NULL is `None`; a text value
/// that is not UTF-8, or a SQLite value of another storage class than the
/// column's, is a problem of that row (read as empty bytes), never an
/// error of the batch.
macro_rules! decode_value {
    ($r:expr, $i:expr, $kind:expr, $name:expr, $dialect:expr) => {{
        use sqlx::{Row as _, TypeInfo as _, ValueRef as _};
        let class: Option<&'static str> = if $dialect == $crate::sql::Dialect::Sqlite {
            let raw = $r
                .try_get_raw($i)
                .map_err($crate::DbError::query(format!("reading column {}", $name)))?;
            if raw.is_null() {
                None
            } else {
                let found = raw.type_info();
                let want = match $kind {
                    $crate::ValueKind::Text => "TEXT",
                    $crate::ValueKind::Binary => "BLOB",
                };
                match found.name() {
                    n if n == want => None,
                    "TEXT" => Some("TEXT"),
                    "BLOB" => Some("BLOB"),
                    "INTEGER" => Some("INTEGER"),
                    "REAL" => Some("REAL"),
                    _ => Some("another type"),
                }
            }
        } else {
            None
        };
        match (class, $kind) {
            (Some(c), _) => (Some(Vec::new()), Some($crate::ReadProblem::StorageClass(c))),
            (None, $crate::ValueKind::Text) => match $r.try_get::<Option<String>, _>($i) {
                Ok(v) => (v.map(String::into_bytes), None),
                Err(_) => (Some(Vec::new()), Some($crate::ReadProblem::NotUtf8)),
            },
            (None, $crate::ValueKind::Binary) => (
                $r.try_get::<Option<Vec<u8>>, _>($i)
                    .map_err($crate::DbError::query(format!(
                        "reading binary column {}",
                        $name
                    )))?,
                None,
            ),
        }
    }};
}

/// Decodes `pk columns…, value` rows into the rows with a non-NULL value.
macro_rules! decode_rows {
    ($rows:expr, $col:expr, $dialect:expr) => {{
        let col: &$crate::ColumnRef = $col;
        let mut out = Vec::with_capacity($rows.len());
        for r in $rows {
            let pk = decode_pk!(r, col);
            let (value, problem) = decode_value!(r, col.pk.len(), col.kind, &col.column, $dialect);
            if let Some(value) = value {
                out.push($crate::Row { pk, value, problem });
            }
        }
        out
    }};
}

/// Decodes `pk columns…, value` rows, or `pk columns…, cells…` rows of a
/// multi-column value into its packed form (`crate::cells`).
macro_rules! decode_value_rows {
    ($rows:expr, $col:expr, $dialect:expr) => {{
        let col: &$crate::ColumnRef = $col;
        if col.has_cells() {
            decode_cell_rows!($rows, col, $dialect)
        } else {
            decode_rows!($rows, col, $dialect)
        }
    }};
}

/// `impl Database for $ty`, with the backend's own methods given in the
/// braces and the shared ones added here (inside one item, so async_trait
/// sees every method).
macro_rules! impl_database {
    ($ty:ty, { $($specific:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::Database for $ty {
        $($specific)*
        instance_methods!();
        run_methods!();

        async fn count_keys(
            &self,
            col: &$crate::ColumnRef,
            census: &$crate::KeyCensus,
        ) -> Result<$crate::ColumnCounts, DbError> {
            use sqlx::Row as _;
            let what = || format!("counting values of {}.{}", col.table, col.column);
            let (sql, binds) = Self::DIALECT.census(col, census);
            let q = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), binds);
            let rows = q.fetch_all(&self.pool).await.map_err(DbError::query(what()))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let token = census_token!(r, what());
                let rows: i64 = r.try_get(1).map_err(DbError::query(what()))?;
                let values: i64 = r.try_get(2).map_err(DbError::query(what()))?;
                out.push((token, rows.max(0) as u64, values.max(0) as u64));
            }
            Ok($crate::census::fold(census, out))
        }

        async fn rows_with_tokens(
            &self,
            col: &$crate::ColumnRef,
            census: &$crate::KeyCensus,
            tokens: &[Vec<u8>],
            limit: usize,
        ) -> Result<Vec<$crate::Pk>, DbError> {
            if tokens.is_empty() || limit == 0 {
                return Ok(Vec::new());
            }
            let what = || format!("finding rows by key in {}.{}", col.table, col.column);
            let (sql, binds) = Self::DIALECT.rows_with_tokens(col, census, tokens, limit);
            let q = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), binds);
            let rows = q.fetch_all(&self.pool).await.map_err(DbError::query(what()))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(decode_pk!(r, col));
            }
            Ok(out)
        }

        async fn count_without_prefix(&self, col: &$crate::ColumnRef, skip: Option<&$crate::Skip>) -> Result<u64, DbError> {
            use sqlx::Row as _;
            let (sql, binds) = Self::DIALECT.count_without_prefix(col, skip);
            let q = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), binds);
            let row = q
                .fetch_one(&self.pool)
                .await
                .map_err(DbError::query(format!("counting values of {}.{}", col.table, col.column)))?;
            let n: i64 = row.try_get(0).map_err(DbError::query("reading a count"))?;
            Ok(n as u64)
        }

        async fn fetch_batch(
            &self,
            col: &$crate::ColumnRef,
            after: Option<&[$crate::PkValue]>,
            skip: Option<&crate::Skip>,
            limit: usize,
        ) -> Result<Vec<$crate::Row>, DbError> {
            if let Some(rows) =
                $crate::common::OwnBatchRead::fetch_batch_own(self, col, after, skip, limit).await?
            {
                return Ok(rows);
            }
            let (sql, binds) = Self::DIALECT.fetch_batch(col, after, skip, limit);
            let q = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), binds);
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(DbError::query(format!("reading a batch of {}.{}", col.table, col.column)))?;
            Ok(decode_value_rows!(rows, col, Self::DIALECT))
        }

        async fn fetch_rows(
            &self,
            col: &$crate::ColumnRef,
            pks: &[$crate::Pk],
        ) -> Result<Vec<$crate::Row>, DbError> {
            if pks.is_empty() {
                return Ok(Vec::new());
            }
            let (sql, binds) = Self::DIALECT.fetch_rows(col, pks);
            let q = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), binds);
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(DbError::query(format!("re-reading rows of {}.{}", col.table, col.column)))?;
            Ok(decode_value_rows!(rows, col, Self::DIALECT))
        }

        async fn ensure_meta(&self) -> Result<(), DbError> {
            // keyturn_bad_rows of keyturn 0.1 (one line per sighting) moves
            // aside first, so the table is created in today's form.
            let d = Self::DIALECT;
            if let Some(info) = self.describe_table("keyturn_bad_rows").await?
                && info.column_type("pk_hash").is_none()
            {
                sqlx::query(sqlx::AssertSqlSafe($crate::meta::bad_rows_rename_old(d)))
                    .execute(&self.pool)
                    .await
                    .map_err(DbError::query("moving the old keyturn_bad_rows aside"))?;
            }
            for stmt in $crate::meta::create_tables(d) {
                create_if_missing!(&self.pool, stmt, "creating keyturn's bookkeeping tables")?;
            }
            $crate::meta::upgrade_tables(self).await?;
            if self.describe_table($crate::meta::OLD_BAD_ROWS).await?.is_some() {
                self.import_old_bad_rows().await?;
            }
            Ok(())
        }

        async fn load_checkpoint(
            &self,
            operation: &str,
            table: &str,
            column: &str,
        ) -> Result<Option<$crate::Checkpoint>, DbError> {
            use sqlx::Row as _;
            let d = Self::DIALECT;
            let sql = format!(
                "SELECT target_key, last_pk, rows_done, run_id, updated_at FROM keyturn_checkpoints WHERE operation = {} AND table_name = {} AND column_name = {}",
                d.ph(1), d.ph(2), d.ph(3)
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(operation.to_owned())
                .bind(table.to_owned())
                .bind(column.to_owned())
                .fetch_optional(&self.pool)
                .await
                .map_err(DbError::query("reading a checkpoint"))?;
            let Some(r) = row else { return Ok(None) };
            let rows_done: i64 = r.try_get(2).map_err(DbError::query("reading a checkpoint"))?;
            Ok(Some($crate::Checkpoint {
                operation: operation.to_owned(),
                table: table.to_owned(),
                column: column.to_owned(),
                target_key: r.try_get(0).map_err(DbError::query("reading a checkpoint"))?,
                last_pk: r.try_get(1).map_err(DbError::query("reading a checkpoint"))?,
                rows_done: rows_done as u64,
                run_id: r.try_get(3).map_err(DbError::query("reading a checkpoint"))?,
                updated_at: r.try_get(4).map_err(DbError::query("reading a checkpoint"))?,
            }))
        }

        async fn save_checkpoint(&self, cp: &$crate::Checkpoint) -> Result<(), DbError> {
            let d = Self::DIALECT;
            let phs: Vec<String> = (1..=8).map(|i| d.ph(i)).collect();
            let sql = match d {
                $crate::sql::Dialect::MySql => format!(
                    "REPLACE INTO keyturn_checkpoints (operation, table_name, column_name, target_key, last_pk, rows_done, run_id, updated_at) VALUES ({})",
                    phs.join(", ")
                ),
                _ => format!(
                    "INSERT INTO keyturn_checkpoints (operation, table_name, column_name, target_key, last_pk, rows_done, run_id, updated_at) VALUES ({}) \
                     ON CONFLICT (operation, table_name, column_name) DO UPDATE SET target_key = excluded.target_key, last_pk = excluded.last_pk, \
                     rows_done = excluded.rows_done, run_id = excluded.run_id, updated_at = excluded.updated_at",
                    phs.join(", ")
                ),
            };
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(cp.operation.clone())
                .bind(cp.table.clone())
                .bind(cp.column.clone())
                .bind(cp.target_key.clone())
                .bind(cp.last_pk.clone())
                .bind(cp.rows_done as i64)
                .bind(cp.run_id.clone())
                .bind(cp.updated_at.clone())
                .execute(&self.pool)
                .await
                .map_err(DbError::query("saving a checkpoint"))?;
            Ok(())
        }

        async fn clear_checkpoint(&self, operation: &str, table: &str, column: &str) -> Result<(), DbError> {
            let d = Self::DIALECT;
            let sql = format!(
                "DELETE FROM keyturn_checkpoints WHERE operation = {} AND table_name = {} AND column_name = {}",
                d.ph(1), d.ph(2), d.ph(3)
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(operation.to_owned())
                .bind(table.to_owned())
                .bind(column.to_owned())
                .execute(&self.pool)
                .await
                .map_err(DbError::query("clearing a checkpoint"))?;
            Ok(())
        }

        async fn record_bad_rows(&self, rows: &[$crate::BadRow]) -> Result<(), DbError> {
            let d = Self::DIALECT;
            // A row once per statement (an upsert may not touch a record
            // twice); chunks keep every backend under its bind limit.
            let mut seen = std::collections::HashSet::new();
            let rows: Vec<&$crate::BadRow> = rows
                .iter()
                .filter(|r| seen.insert((&r.table, &r.column, &r.pk)))
                .collect();
            for chunk in rows.chunks(300) {
                let sql = $crate::meta::bad_rows_upsert(d, chunk.len());
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for r in chunk {
                    for v in $crate::meta::bad_row_binds(r) {
                        q = q.bind(v);
                    }
                }
                q.execute(&self.pool).await.map_err(DbError::query("recording bad rows"))?;
            }
            Ok(())
        }

        async fn load_bad_rows(
            &self,
            table: Option<&str>,
            column: Option<&str>,
        ) -> Result<Vec<$crate::BadRowRecord>, DbError> {
            use sqlx::Row as _;
            if self.describe_table("keyturn_bad_rows").await?.is_none() {
                return Ok(Vec::new());
            }
            let what = "reading keyturn_bad_rows";
            let sql = $crate::meta::bad_rows_select(Self::DIALECT, table.is_some(), column.is_some());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for v in [table, column].into_iter().flatten() {
                q = q.bind(v.to_owned());
            }
            let rows = q.fetch_all(&self.pool).await.map_err(DbError::query(what))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let fingerprint: String = r.try_get(8).map_err(DbError::query(what))?;
                let acked: Option<String> = r.try_get(9).map_err(DbError::query(what))?;
                let times: i64 = r.try_get(6).map_err(DbError::query(what))?;
                out.push($crate::BadRowRecord {
                    table: r.try_get(0).map_err(DbError::query(what))?,
                    column: r.try_get(1).map_err(DbError::query(what))?,
                    pk: r.try_get(2).map_err(DbError::query(what))?,
                    reason: r.try_get(3).map_err(DbError::query(what))?,
                    first_seen: r.try_get(4).map_err(DbError::query(what))?,
                    last_seen: r.try_get(5).map_err(DbError::query(what))?,
                    times_seen: times.max(0) as u64,
                    run_id: r.try_get(7).map_err(DbError::query(what))?,
                    acknowledged: acked.as_deref() == Some(fingerprint.as_str()),
                    changed_since_ack: acked.as_ref().is_some_and(|a| *a != fingerprint),
                    acked_at: r.try_get(10).map_err(DbError::query(what))?,
                    acked_by: r.try_get(11).map_err(DbError::query(what))?,
                    ack_reason: r.try_get(12).map_err(DbError::query(what))?,
                    value_fingerprint: fingerprint,
                });
            }
            Ok(out)
        }

        async fn clear_bad_rows(
            &self,
            table: &str,
            column: &str,
            pks: &[String],
        ) -> Result<u64, DbError> {
            let mut cleared = 0;
            for chunk in pks.chunks(500) {
                let sql = $crate::meta::bad_rows_delete(Self::DIALECT, chunk.len());
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(table.to_owned())
                    .bind(column.to_owned());
                for pk in chunk {
                    q = q.bind($crate::meta::pk_hash(pk));
                }
                cleared += q
                    .execute(&self.pool)
                    .await
                    .map_err(DbError::query("clearing bad rows"))?
                    .rows_affected();
            }
            Ok(cleared)
        }

        async fn ack_bad_rows(
            &self,
            rows: &[(String, String, String)],
            ack: &$crate::BadRowAck,
        ) -> Result<u64, DbError> {
            let what = "acknowledging bad rows";
            let mut tx = self.pool.begin().await.map_err(DbError::query(what))?;
            let mut found = 0;
            for (table, column, pk) in rows {
                found += sqlx::query(sqlx::AssertSqlSafe($crate::meta::bad_row_ack(Self::DIALECT)))
                    .bind(ack.at.clone())
                    .bind(ack.by.clone())
                    .bind(ack.reason.clone())
                    .bind(table.clone())
                    .bind(column.clone())
                    .bind($crate::meta::pk_hash(pk))
                    .execute(&mut *tx)
                    .await
                    .map_err(DbError::query(what))?
                    .rows_affected();
            }
            tx.commit().await.map_err(DbError::query(what))?;
            Ok(found)
        }

        async fn save_run(&self, run: &$crate::RunRecord) -> Result<(), DbError> {
            let d = Self::DIALECT;
            let phs: Vec<String> = (1..=7).map(|i| d.ph(i)).collect();
            let sql = match d {
                $crate::sql::Dialect::MySql => format!(
                    "REPLACE INTO keyturn_runs (run_id, operation, actor, started_at, finished_at, outcome, summary) VALUES ({})",
                    phs.join(", ")
                ),
                _ => format!(
                    "INSERT INTO keyturn_runs (run_id, operation, actor, started_at, finished_at, outcome, summary) VALUES ({}) \
                     ON CONFLICT (run_id) DO UPDATE SET finished_at = excluded.finished_at, outcome = excluded.outcome, summary = excluded.summary",
                    phs.join(", ")
                ),
            };
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(run.run_id.clone())
                .bind(run.operation.clone())
                .bind(run.actor.clone())
                .bind(run.started_at.clone())
                .bind(run.finished_at.clone())
                .bind(run.outcome.clone())
                .bind(run.summary.clone())
                .execute(&self.pool)
                .await
                .map_err(DbError::query("recording the run"))?;
            Ok(())
        }

        async fn execute_script(&self, sql: &str) -> Result<(), DbError> {
            for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(sqlx::AssertSqlSafe(stmt.to_owned()))
                    .execute(&self.pool)
                    .await
                    .map_err(DbError::query(format!("running {:?}", stmt.chars().take(60).collect::<String>())))?;
            }
            Ok(())
        }

        async fn close(&self) {
            self.pool.close().await;
        }

        async fn audit_append(
            &self,
            build: &$crate::AuditRowBuilder<'_>,
        ) -> Result<$crate::AuditRow, DbError> {
            use sqlx::Row as _;
            let d = Self::DIALECT;
            create_if_missing!(
                &self.pool,
                $crate::audit::create_table(d),
                "creating keyturn's audit table"
            )?;
            let what = "appending an audit event";
            let mut attempt = 0;
            loop {
                attempt += 1;
                // Another appender took this seq (unique-key violation), or a
                // transient error: start over against the new tip.
                let retry = |e: &DbError| {
                    attempt < $crate::audit::APPEND_ATTEMPTS
                        && ($crate::audit::is_unique_violation(e) || e.is_transient())
                };
                let begun = match d {
                    // IMMEDIATE: take SQLite's write lock before reading the tip.
                    $crate::sql::Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
                    _ => self.pool.begin().await,
                };
                let mut tx = match begun.map_err(DbError::query(what)) {
                    Ok(tx) => tx,
                    Err(e) if retry(&e) => {
                        $crate::audit::backoff(attempt).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let tip = match sqlx::query($crate::audit::tip_sql())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(DbError::query(what))
                {
                    Ok(Some(r)) => Some($crate::AuditTip {
                        seq: r.try_get(0).map_err(DbError::query(what))?,
                        hash: r.try_get(1).map_err(DbError::query(what))?,
                    }),
                    Ok(None) => None,
                    Err(e) if retry(&e) => {
                        let _ = tx.rollback().await;
                        $crate::audit::backoff(attempt).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let row = build(tip.as_ref()).map_err(DbError::Invalid)?;
                let inserted = sqlx::query(sqlx::AssertSqlSafe($crate::audit::insert_sql(d)))
                    .bind(row.seq)
                    .bind(row.format_version)
                    .bind(row.event_time.clone())
                    .bind(row.action.clone())
                    .bind(row.actor.clone())
                    .bind(row.outcome.clone())
                    .bind(row.reason.clone())
                    .bind(row.run_id.clone())
                    .bind(row.key_ids.clone())
                    .bind(row.column_counts.clone())
                    .bind(row.duration_ms)
                    .bind(row.details.clone())
                    .bind(row.prev_hash.clone())
                    .bind(row.hash.clone())
                    .execute(&mut *tx)
                    .await;
                let done = match inserted {
                    Ok(_) => tx.commit().await,
                    Err(e) => {
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                };
                match done.map_err(DbError::query(what)) {
                    Ok(()) => return Ok(row),
                    Err(e) if retry(&e) => $crate::audit::backoff(attempt).await,
                    Err(e) => return Err(e),
                }
            }
        }

        async fn audit_read(
            &self,
            after_seq: i64,
            limit: usize,
        ) -> Result<Vec<$crate::AuditRow>, DbError> {
            if self.describe_table("keyturn_audit").await?.is_none() {
                return Ok(Vec::new());
            }
            let rows = sqlx::query(sqlx::AssertSqlSafe($crate::audit::read_sql(Self::DIALECT)))
                .bind(after_seq)
                .bind(limit.min(i64::MAX as usize) as i64)
                .fetch_all(&self.pool)
                .await
                .map_err(DbError::query("reading the audit table"))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(decode_audit_row!(r));
            }
            Ok(out)
        }
        async fn ensure_catalog(&self) -> Result<(), DbError> {
            create_if_missing!(
                &self.pool,
                $crate::catalog::create_catalog_table(Self::DIALECT),
                "creating the key catalog table keyturn_keys_catalog"
            )
        }

        async fn load_catalog(&self, catalog: &str) -> Result<Vec<$crate::CatalogRow>, DbError> {
            use sqlx::Row as _;
            let what = || format!("reading key catalog {catalog:?}");
            let rows = sqlx::query(sqlx::AssertSqlSafe($crate::catalog::select_sql(Self::DIALECT)))
                .bind(catalog.to_owned())
                .fetch_all(&self.pool)
                .await
                .map_err(DbError::query(what()))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let compromised: i64 = r.try_get(4).map_err(DbError::query(what()))?;
                out.push($crate::CatalogRow {
                    catalog: r.try_get(0).map_err(DbError::query(what()))?,
                    key_id: r.try_get(1).map_err(DbError::query(what()))?,
                    algorithm: r.try_get(2).map_err(DbError::query(what()))?,
                    state: r.try_get(3).map_err(DbError::query(what()))?,
                    compromised: compromised != 0,
                    fingerprint: r.try_get(5).map_err(DbError::query(what()))?,
                    kek: r.try_get(6).map_err(DbError::query(what()))?,
                    wrapped_dek: r.try_get(7).map_err(DbError::query(what()))?,
                    created_at: r.try_get(8).map_err(DbError::query(what()))?,
                    promoted_at: r.try_get(9).map_err(DbError::query(what()))?,
                    demoted_at: r.try_get(10).map_err(DbError::query(what()))?,
                    retired_at: r.try_get(11).map_err(DbError::query(what()))?,
                    destroyed_at: r.try_get(12).map_err(DbError::query(what()))?,
                    compromised_at: r.try_get(13).map_err(DbError::query(what()))?,
                    revision: r.try_get(14).map_err(DbError::query(what()))?,
                });
            }
            Ok(out)
        }

        async fn write_catalog(&self, writes: &[$crate::CatalogWrite]) -> Result<(), DbError> {
            let what = "writing the key catalog";
            let mut tx = self.pool.begin().await.map_err(DbError::query(what))?;
            for w in writes {
                let r = &w.row;
                let compromised = i64::from(r.compromised);
                let result = match w.expected_revision {
                    None => sqlx::query(sqlx::AssertSqlSafe($crate::catalog::insert_sql(Self::DIALECT)))
                        .bind(r.catalog.clone())
                        .bind(r.key_id.clone())
                        .bind(r.algorithm.clone())
                        .bind(r.state.clone())
                        .bind(compromised)
                        .bind(r.fingerprint.clone())
                        .bind(r.kek.clone())
                        .bind(r.wrapped_dek.clone())
                        .bind(r.created_at.clone())
                        .bind(r.promoted_at.clone())
                        .bind(r.demoted_at.clone())
                        .bind(r.retired_at.clone())
                        .bind(r.destroyed_at.clone())
                        .bind(r.compromised_at.clone())
                        .bind(r.revision)
                        .execute(&mut *tx)
                        .await
                        .map_err(DbError::query(format!("adding key {:?} to the catalog (does it exist already?)", r.key_id)))?,
                    Some(expected) => sqlx::query(sqlx::AssertSqlSafe($crate::catalog::update_sql(Self::DIALECT)))
                        .bind(r.algorithm.clone())
                        .bind(r.state.clone())
                        .bind(compromised)
                        .bind(r.fingerprint.clone())
                        .bind(r.kek.clone())
                        .bind(r.wrapped_dek.clone())
                        .bind(r.created_at.clone())
                        .bind(r.promoted_at.clone())
                        .bind(r.demoted_at.clone())
                        .bind(r.retired_at.clone())
                        .bind(r.destroyed_at.clone())
                        .bind(r.compromised_at.clone())
                        .bind(r.revision)
                        .bind(r.catalog.clone())
                        .bind(r.key_id.clone())
                        .bind(expected)
                        .execute(&mut *tx)
                        .await
                        .map_err(DbError::query(format!("updating key {:?} in the catalog", r.key_id)))?,
                };
                if result.rows_affected() != 1 {
                    // Dropping the transaction rolls it back.
                    drop(tx);
                    return Err(DbError::Invalid(format!(
                        "key {:?} of catalog {:?} changed while this command ran (another keyturn?); nothing was written, run the command again",
                        r.key_id, r.catalog
                    )));
                }
            }
            tx.commit().await.map_err(DbError::query(what))?;
            Ok(())
        }
        }

        impl $ty {
            /// Folds the sightings of keyturn 0.1's `keyturn_bad_rows` (moved
            /// aside as `keyturn_bad_rows_v0`) into one record per row, then
            /// drops the old table.
            async fn import_old_bad_rows(&self) -> Result<(), DbError> {
                use sqlx::Row as _;
                let what = "importing the old keyturn_bad_rows";
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT run_id, table_name, column_name, pk, reason, seen_at FROM {} ORDER BY seen_at",
                    $crate::meta::OLD_BAD_ROWS
                )))
                .fetch_all(&self.pool)
                .await
                .map_err(DbError::query(what))?;
                let mut seen: Vec<$crate::meta::OldSighting> = Vec::with_capacity(rows.len());
                for r in rows {
                    seen.push($crate::meta::OldSighting {
                        run_id: r.try_get(0).map_err(DbError::query(what))?,
                        table: r.try_get(1).map_err(DbError::query(what))?,
                        column: r.try_get(2).map_err(DbError::query(what))?,
                        pk: r.try_get(3).map_err(DbError::query(what))?,
                        reason: r.try_get(4).map_err(DbError::query(what))?,
                        seen_at: r.try_get(5).map_err(DbError::query(what))?,
                    });
                }
                let d = Self::DIALECT;
                for rec in $crate::meta::fold_old_sightings(seen) {
                    let q = sqlx::query(sqlx::AssertSqlSafe($crate::meta::bad_row_import(d)));
                    let mut q = q;
                    for v in rec.binds() {
                        q = q.bind(v);
                    }
                    q.bind(rec.times_seen as i64)
                        .execute(&self.pool)
                        .await
                        .map_err(DbError::query(what))?;
                }
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP TABLE {}",
                    $crate::meta::OLD_BAD_ROWS
                )))
                .execute(&self.pool)
                .await
                .map_err(DbError::query(what))?;
                Ok(())
            }
        }
    };
}
