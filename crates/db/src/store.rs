//! [`Store`]: [`Database`] implemented once over any [`Driver`].
//!
//! The hot path and the lock go straight to the driver; the census and
//! every bookkeeping table (checkpoints, runs, bad rows, audit, key
//! catalog, instances) are ordinary code here over the driver's plain
//! statements ([`Sql`]), with their SQL text from the modules that own the
//! tables (`meta.rs`, `audit.rs`, `catalog.rs`, `instances.rs`) and
//! [`Dialect`].

use crate::driver::{Driver, Record, Value, values};
use crate::sql::Dialect;
use crate::{
    AuditRow, AuditRowBuilder, AuditTip, Backend, BadRow, BadRowAck, BadRowRecord, BoxFuture,
    CasUpdate, CatalogRow, CatalogWrite, Checkpoint, ColumnCounts, ColumnRef, Database, DbError,
    InstanceHeartbeat, InstanceRow, InstanceSnapshot, KeyCensus, LockHolder, LockInfo, LockOutcome,
    Pk, PkValue, Row, RunControl, RunRecord, Skip, TableInfo,
};
use async_trait::async_trait;
use backon::Retryable;

/// A database: one driver, and keyturn's bookkeeping over it.
#[derive(Debug)]
pub(crate) struct Store<D: Driver> {
    pub(crate) driver: D,
}

impl<D: Driver> std::ops::Deref for Store<D> {
    type Target = D;

    fn deref(&self) -> &D {
        &self.driver
    }
}

impl<D: Driver> Store<D> {
    pub(crate) fn new(driver: D) -> Store<D> {
        Store { driver }
    }

    fn d(&self) -> Dialect {
        self.driver.dialect()
    }

    async fn execute(&self, what: &str, sql: &str, params: Vec<Value>) -> Result<u64, DbError> {
        self.driver
            .execute(sql, params)
            .await
            .map_err(DbError::at(what))
    }

    async fn query(
        &self,
        what: &str,
        sql: &str,
        params: Vec<Value>,
    ) -> Result<Vec<Record>, DbError> {
        self.driver
            .query(sql, params)
            .await
            .map_err(DbError::at(what))
    }

    /// Runs one `CREATE TABLE IF NOT EXISTS` unless the table exists already
    /// (see [`crate::missing`]: a login without CREATE may use existing
    /// tables), running it again when it lost a race with another session
    /// creating the same table (two keyturn processes starting together);
    /// see [`DbError::is_concurrent_create`].
    async fn create_if_missing(&self, sql: String, what: &str) -> Result<(), DbError> {
        if let Some(name) = crate::missing::created_table(&sql) {
            let found = self
                .query(
                    what,
                    crate::missing::exists_sql(self.d()),
                    vec![name.into()],
                )
                .await?;
            if found.first().map(|r| r.int(0)).transpose()?.unwrap_or(0) > 0 {
                return Ok(());
            }
        }
        // A few quick tries: the other session's CREATE commits at once.
        let policy = backon::ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(5))
            .with_max_delay(std::time::Duration::from_millis(40))
            .with_jitter()
            .with_max_times(3);
        (|| self.execute(what, &sql, Vec::new()))
            .retry(policy)
            .when(DbError::is_concurrent_create)
            .await
            .map(|_| ())
    }

    /// Folds the sightings of keyturn 0.1's `keyturn_bad_rows` (moved
    /// aside as `keyturn_bad_rows_v0`) into one record per row, then
    /// drops the old table.
    async fn import_old_bad_rows(&self) -> Result<(), DbError> {
        let what = "importing the old keyturn_bad_rows";
        let rows = self
            .query(
                what,
                &format!(
                    "SELECT run_id, table_name, column_name, pk, reason, seen_at FROM {} ORDER BY seen_at",
                    crate::meta::OLD_BAD_ROWS
                ),
                Vec::new(),
            )
            .await?;
        let mut seen = Vec::with_capacity(rows.len());
        for r in rows {
            seen.push(crate::meta::OldSighting {
                run_id: r.text(0)?,
                table: r.text(1)?,
                column: r.text(2)?,
                pk: r.text(3)?,
                reason: r.text(4)?,
                seen_at: r.text(5)?,
            });
        }
        let sql = crate::meta::bad_row_import(self.d());
        for rec in crate::meta::fold_old_sightings(seen) {
            let mut params: Vec<Value> = rec.binds().into_iter().map(Value::from).collect();
            params.push((rec.times_seen as i64).into());
            self.execute(what, &sql, params).await?;
        }
        self.execute(
            what,
            &format!("DROP TABLE {}", crate::meta::OLD_BAD_ROWS),
            Vec::new(),
        )
        .await?;
        Ok(())
    }

    fn run_record(r: &Record) -> Result<RunRecord, DbError> {
        Ok(RunRecord {
            run_id: r.text(0)?,
            operation: r.text(1)?,
            actor: r.text(2)?,
            started_at: r.text(3)?,
            finished_at: r.opt_text(4)?,
            outcome: r.text(5)?,
            summary: r.text(6)?,
        })
    }

    fn audit_row(r: &Record) -> Result<AuditRow, DbError> {
        Ok(AuditRow {
            seq: r.int(0)?,
            format_version: r.int(1)?,
            event_time: r.text(2)?,
            action: r.text(3)?,
            actor: r.text(4)?,
            outcome: r.text(5)?,
            reason: r.opt_text(6)?,
            run_id: r.opt_text(7)?,
            key_ids: r.text(8)?,
            column_counts: r.text(9)?,
            duration_ms: r.opt_int(10)?,
            details: r.text(11)?,
            prev_hash: r.text(12)?,
            hash: r.text(13)?,
        })
    }

    fn catalog_row(r: &Record) -> Result<CatalogRow, DbError> {
        Ok(CatalogRow {
            catalog: r.text(0)?,
            key_id: r.text(1)?,
            algorithm: r.text(2)?,
            state: r.text(3)?,
            compromised: r.int(4)? != 0,
            fingerprint: r.text(5)?,
            kek: r.text(6)?,
            wrapped_dek: r.opt_text(7)?,
            created_at: r.text(8)?,
            promoted_at: r.opt_text(9)?,
            demoted_at: r.opt_text(10)?,
            retired_at: r.opt_text(11)?,
            destroyed_at: r.opt_text(12)?,
            compromised_at: r.opt_text(13)?,
            revision: r.int(14)?,
        })
    }

    /// One audit append attempt's transaction: reads the tip, builds the
    /// row after it and inserts it.
    async fn audit_append_once(
        &self,
        build: &AuditRowBuilder<'_>,
        what: &str,
    ) -> Result<AuditRow, DbError> {
        // IMMEDIATE: take SQLite's write lock before reading the tip.
        let mut tx = self
            .driver
            .begin(D::BACKEND == Backend::Sqlite)
            .await
            .map_err(DbError::at(what))?;
        let tip = match tx.query(crate::audit::tip_sql(), Vec::new()).await {
            Ok(rows) => match rows.first() {
                Some(r) => Some(AuditTip {
                    seq: r.int(0)?,
                    hash: r.text(1)?,
                }),
                None => None,
            },
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(DbError::at(what)(e));
            }
        };
        let row = build(tip.as_ref()).map_err(DbError::Invalid)?;
        let params: Vec<Value> = vec![
            row.seq.into(),
            row.format_version.into(),
            (&row.event_time).into(),
            (&row.action).into(),
            (&row.actor).into(),
            (&row.outcome).into(),
            (&row.reason).into(),
            (&row.run_id).into(),
            (&row.key_ids).into(),
            (&row.column_counts).into(),
            row.duration_ms.into(),
            (&row.details).into(),
            (&row.prev_hash).into(),
            (&row.hash).into(),
        ];
        match tx
            .execute(&crate::audit::insert_sql(self.d()), params)
            .await
        {
            Ok(_) => tx.commit().await.map_err(DbError::at(what))?,
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(DbError::at(what)(e));
            }
        }
        Ok(row)
    }
}

#[async_trait]
impl<D: Driver> Database for Store<D> {
    fn backend(&self) -> Backend {
        D::BACKEND
    }

    async fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError> {
        self.driver.describe_table(table).await
    }

    async fn count_keys(
        &self,
        col: &ColumnRef,
        census: &KeyCensus,
    ) -> Result<ColumnCounts, DbError> {
        let what = format!("counting values of {}.{}", col.table, col.column);
        let (sql, binds) = self.d().census(col, census);
        let rows = self.query(&what, &sql, values(binds)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            // The key token: text, or bytes where the server returns a
            // binary string (MySQL's casts).
            let token = r.opt_bytes(0)?;
            out.push((token, r.int(1)?.max(0) as u64, r.int(2)?.max(0) as u64));
        }
        Ok(crate::census::fold(census, out))
    }

    async fn rows_with_tokens(
        &self,
        col: &ColumnRef,
        census: &KeyCensus,
        tokens: &[Vec<u8>],
        limit: usize,
    ) -> Result<Vec<Pk>, DbError> {
        if tokens.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let what = format!("finding rows by key in {}.{}", col.table, col.column);
        let (sql, binds) = self.d().rows_with_tokens(col, census, tokens, limit);
        let rows = self.query(&what, &sql, values(binds)).await?;
        rows.iter().map(|r| r.pk(col)).collect()
    }

    async fn count_without_prefix(
        &self,
        col: &ColumnRef,
        skip: Option<&Skip>,
    ) -> Result<u64, DbError> {
        let what = format!("counting values of {}.{}", col.table, col.column);
        let (sql, binds) = self.d().count_without_prefix(col, skip);
        let rows = self.query(&what, &sql, values(binds)).await?;
        let n = rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    async fn fetch_batch(
        &self,
        col: &ColumnRef,
        after: Option<&[PkValue]>,
        skip: Option<&Skip>,
        limit: usize,
    ) -> Result<Vec<Row>, DbError> {
        self.driver.fetch_batch(col, after, skip, limit).await
    }

    async fn fetch_rows(&self, col: &ColumnRef, pks: &[Pk]) -> Result<Vec<Row>, DbError> {
        if pks.is_empty() {
            return Ok(Vec::new());
        }
        self.driver.fetch_rows(col, pks).await
    }

    async fn write_cas(&self, col: &ColumnRef, updates: &[CasUpdate]) -> Result<u64, DbError> {
        if updates.is_empty() {
            return Ok(0);
        }
        self.driver.write_cas(col, updates).await
    }

    async fn ensure_meta(&self) -> Result<(), DbError> {
        // keyturn_bad_rows of keyturn 0.1 (one line per sighting) moves
        // aside first, so the table is created in today's form.
        let d = self.d();
        if let Some(info) = self.describe_table("keyturn_bad_rows").await?
            && info.column_type("pk_hash").is_none()
        {
            self.execute(
                "moving the old keyturn_bad_rows aside",
                &crate::meta::bad_rows_rename_old(d),
                Vec::new(),
            )
            .await?;
        }
        for stmt in crate::meta::create_tables(d) {
            self.create_if_missing(stmt, "creating keyturn's bookkeeping tables")
                .await?;
        }
        crate::meta::upgrade_tables(self).await?;
        if self
            .describe_table(crate::meta::OLD_BAD_ROWS)
            .await?
            .is_some()
        {
            self.import_old_bad_rows().await?;
        }
        Ok(())
    }

    async fn try_lock(&self, holder: &LockHolder) -> Result<LockOutcome, DbError> {
        self.driver.try_lock(holder).await
    }

    async fn lock_status(&self) -> Result<Option<LockInfo>, DbError> {
        self.driver.lock_status().await
    }

    fn running_runs(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, DbError>> {
        Box::pin(async move {
            if self.describe_table("keyturn_runs").await?.is_none() {
                return Ok(Vec::new());
            }
            let rows = self
                .query(
                    "reading keyturn_runs",
                    "SELECT run_id, operation, actor, started_at, finished_at, outcome, summary \
                     FROM keyturn_runs WHERE outcome = 'running' ORDER BY started_at, run_id",
                    Vec::new(),
                )
                .await?;
            rows.iter().map(Self::run_record).collect()
        })
    }

    fn mark_run_interrupted<'a>(
        &'a self,
        run_id: &'a str,
        finished_at: &'a str,
    ) -> BoxFuture<'a, Result<bool, DbError>> {
        Box::pin(async move {
            let d = self.d();
            let sql = format!(
                "UPDATE keyturn_runs SET outcome = 'interrupted', finished_at = {} \
                 WHERE run_id = {} AND outcome = 'running'",
                d.ph(1),
                d.ph(2)
            );
            let n = self
                .execute(
                    "recording an interrupted run",
                    &sql,
                    vec![finished_at.into(), run_id.into()],
                )
                .await?;
            Ok(n > 0)
        })
    }

    async fn load_checkpoint(
        &self,
        operation: &str,
        table: &str,
        column: &str,
    ) -> Result<Option<Checkpoint>, DbError> {
        let d = self.d();
        let sql = format!(
            "SELECT target_key, last_pk, rows_done, run_id, updated_at FROM keyturn_checkpoints \
             WHERE operation = {} AND table_name = {} AND column_name = {}",
            d.ph(1),
            d.ph(2),
            d.ph(3)
        );
        let rows = self
            .query(
                "reading a checkpoint",
                &sql,
                vec![operation.into(), table.into(), column.into()],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(Checkpoint {
            operation: operation.to_owned(),
            table: table.to_owned(),
            column: column.to_owned(),
            target_key: r.text(0)?,
            last_pk: r.text(1)?,
            rows_done: r.int(2)? as u64,
            run_id: r.text(3)?,
            updated_at: r.text(4)?,
        }))
    }

    async fn save_checkpoint(&self, cp: &Checkpoint) -> Result<(), DbError> {
        let sql = crate::meta::checkpoint_upsert(self.d());
        let params = vec![
            (&cp.operation).into(),
            (&cp.table).into(),
            (&cp.column).into(),
            (&cp.target_key).into(),
            (&cp.last_pk).into(),
            (cp.rows_done as i64).into(),
            (&cp.run_id).into(),
            (&cp.updated_at).into(),
        ];
        self.execute("saving a checkpoint", &sql, params).await?;
        Ok(())
    }

    async fn clear_checkpoint(
        &self,
        operation: &str,
        table: &str,
        column: &str,
    ) -> Result<(), DbError> {
        let d = self.d();
        let sql = format!(
            "DELETE FROM keyturn_checkpoints WHERE operation = {} AND table_name = {} AND column_name = {}",
            d.ph(1),
            d.ph(2),
            d.ph(3)
        );
        self.execute(
            "clearing a checkpoint",
            &sql,
            vec![operation.into(), table.into(), column.into()],
        )
        .await?;
        Ok(())
    }

    async fn record_bad_rows(&self, rows: &[BadRow]) -> Result<(), DbError> {
        // A row once per statement (an upsert may not touch a record
        // twice); chunks keep every backend under its bind limit.
        let mut seen = std::collections::HashSet::new();
        let rows: Vec<&BadRow> = rows
            .iter()
            .filter(|r| seen.insert((&r.table, &r.column, &r.pk)))
            .collect();
        for chunk in rows.chunks(300) {
            let sql = crate::meta::bad_rows_upsert(self.d(), chunk.len());
            let params: Vec<Value> = chunk
                .iter()
                .flat_map(|r| crate::meta::bad_row_binds(r))
                .map(Value::from)
                .collect();
            self.execute("recording bad rows", &sql, params).await?;
        }
        Ok(())
    }

    async fn load_bad_rows(
        &self,
        table: Option<&str>,
        column: Option<&str>,
    ) -> Result<Vec<BadRowRecord>, DbError> {
        if self.describe_table("keyturn_bad_rows").await?.is_none() {
            return Ok(Vec::new());
        }
        let sql = crate::meta::bad_rows_select(self.d(), table.is_some(), column.is_some());
        let params: Vec<Value> = [table, column]
            .into_iter()
            .flatten()
            .map(Value::from)
            .collect();
        let rows = self.query("reading keyturn_bad_rows", &sql, params).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let fingerprint = r.text(8)?;
            let acked = r.opt_text(9)?;
            out.push(BadRowRecord {
                table: r.text(0)?,
                column: r.text(1)?,
                pk: r.text(2)?,
                reason: r.text(3)?,
                first_seen: r.text(4)?,
                last_seen: r.text(5)?,
                times_seen: r.int(6)?.max(0) as u64,
                run_id: r.text(7)?,
                acknowledged: acked.as_deref() == Some(fingerprint.as_str()),
                changed_since_ack: acked.as_ref().is_some_and(|a| *a != fingerprint),
                acked_at: r.opt_text(10)?,
                acked_by: r.opt_text(11)?,
                ack_reason: r.opt_text(12)?,
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
            let sql = crate::meta::bad_rows_delete(self.d(), chunk.len());
            let mut params: Vec<Value> = vec![table.into(), column.into()];
            params.extend(chunk.iter().map(|pk| crate::meta::pk_hash(pk).into()));
            cleared += self.execute("clearing bad rows", &sql, params).await?;
        }
        Ok(cleared)
    }

    async fn ack_bad_rows(
        &self,
        rows: &[(String, String, String)],
        ack: &BadRowAck,
    ) -> Result<u64, DbError> {
        let what = "acknowledging bad rows";
        let sql = crate::meta::bad_row_ack(self.d());
        let mut tx = self.driver.begin(false).await.map_err(DbError::at(what))?;
        let mut found = 0;
        for (table, column, pk) in rows {
            let params = vec![
                (&ack.at).into(),
                (&ack.by).into(),
                (&ack.reason).into(),
                table.into(),
                column.into(),
                crate::meta::pk_hash(pk).into(),
            ];
            found += tx.execute(&sql, params).await.map_err(DbError::at(what))?;
        }
        tx.commit().await.map_err(DbError::at(what))?;
        Ok(found)
    }

    async fn save_run(&self, run: &RunRecord) -> Result<(), DbError> {
        let sql = crate::meta::run_upsert(self.d());
        let params = vec![
            (&run.run_id).into(),
            (&run.operation).into(),
            (&run.actor).into(),
            (&run.started_at).into(),
            (&run.finished_at).into(),
            (&run.outcome).into(),
            (&run.summary).into(),
        ];
        self.execute("recording the run", &sql, params).await?;
        Ok(())
    }

    async fn update_run_progress(&self, run_id: &str, progress: &str) -> Result<(), DbError> {
        let d = self.d();
        let sql = format!(
            "UPDATE keyturn_runs SET summary = {} WHERE run_id = {} AND outcome = 'running'",
            d.ph(1),
            d.ph(2)
        );
        self.execute(
            "recording the run's progress",
            &sql,
            vec![progress.into(), run_id.into()],
        )
        .await?;
        Ok(())
    }

    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>, DbError> {
        if self.describe_table("keyturn_runs").await?.is_none() {
            return Ok(Vec::new());
        }
        let rows = self
            .query(
                "reading keyturn_runs",
                &format!(
                    "SELECT run_id, operation, actor, started_at, finished_at, outcome, summary \
                     FROM keyturn_runs ORDER BY started_at DESC, run_id DESC LIMIT {}",
                    limit.clamp(1, 10_000)
                ),
                Vec::new(),
            )
            .await?;
        rows.iter().map(Self::run_record).collect()
    }

    async fn request_run_control(&self, control: &RunControl) -> Result<(), DbError> {
        self.create_if_missing(
            crate::meta::run_control_table(),
            "creating keyturn_run_control",
        )
        .await?;
        let sql = crate::meta::run_control_upsert(self.d());
        self.execute(
            "recording the request in keyturn_run_control",
            &sql,
            vec![
                (&control.run_id).into(),
                (&control.action).into(),
                (&control.actor).into(),
                (&control.requested_at).into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn run_control(&self, run_id: &str) -> Result<Option<RunControl>, DbError> {
        let d = self.d();
        let rows = match self
            .query(
                "reading keyturn_run_control",
                &format!(
                    "SELECT run_id, action, actor, requested_at FROM keyturn_run_control WHERE run_id = {}",
                    d.ph(1)
                ),
                vec![run_id.into()],
            )
            .await
        {
            Ok(r) => r,
            // Created with keyturn's other tables; an older database may
            // not have it until a request is made.
            Err(_) if self.describe_table("keyturn_run_control").await?.is_none() => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        rows.first()
            .map(|r| {
                Ok(RunControl {
                    run_id: r.text(0)?,
                    action: r.text(1)?,
                    actor: r.text(2)?,
                    requested_at: r.text(3)?,
                })
            })
            .transpose()
    }

    async fn execute_script(&self, sql: &str) -> Result<(), DbError> {
        for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let what = format!("running {:?}", stmt.chars().take(60).collect::<String>());
            self.execute(&what, stmt, Vec::new()).await?;
        }
        Ok(())
    }

    async fn close(&self) {
        self.driver.close().await;
    }

    async fn audit_append(&self, build: &AuditRowBuilder<'_>) -> Result<AuditRow, DbError> {
        self.create_if_missing(
            crate::audit::create_table(self.d()),
            "creating keyturn's audit table",
        )
        .await?;
        let what = "appending an audit event";
        // Another appender took this seq (unique-key violation), or a
        // transient error: start over against the new tip.
        (|| self.audit_append_once(build, what))
            .retry(crate::audit::append_backoff())
            .when(|e: &DbError| e.is_unique_violation() || e.is_transient())
            .await
    }

    async fn audit_read(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditRow>, DbError> {
        if self.describe_table("keyturn_audit").await?.is_none() {
            return Ok(Vec::new());
        }
        let rows = self
            .query(
                "reading the audit table",
                &crate::audit::read_sql(self.d()),
                vec![
                    after_seq.into(),
                    (limit.min(i64::MAX as usize) as i64).into(),
                ],
            )
            .await?;
        rows.iter().map(Self::audit_row).collect()
    }

    async fn ensure_catalog(&self) -> Result<(), DbError> {
        self.create_if_missing(
            crate::catalog::create_catalog_table(self.d()),
            "creating the key catalog table keyturn_keys_catalog",
        )
        .await
    }

    async fn load_catalog(&self, catalog: &str) -> Result<Vec<CatalogRow>, DbError> {
        let what = format!("reading key catalog {catalog:?}");
        let rows = self
            .query(
                &what,
                &crate::catalog::select_sql(self.d()),
                vec![catalog.into()],
            )
            .await?;
        rows.iter().map(Self::catalog_row).collect()
    }

    async fn read_pairs(
        &self,
        table: &str,
        key_column: &str,
        value_column: &str,
    ) -> Result<Vec<(String, Option<String>)>, DbError> {
        crate::check_identifier(table, "table")?;
        crate::check_identifier(key_column, "column")?;
        crate::check_identifier(value_column, "column")?;
        let d = self.d();
        let sql = format!(
            "SELECT {}, {} FROM {} WHERE {} IS NOT NULL",
            d.text_of(key_column),
            d.text_of(value_column),
            d.quote(table),
            d.quote(key_column)
        );
        let what = format!("reading {key_column} and {value_column} of table {table}");
        let rows = self.query(&what, &sql, Vec::new()).await?;
        rows.iter()
            .map(|r| Ok((r.text(0)?, r.opt_text(1)?)))
            .collect()
    }

    async fn write_catalog(&self, writes: &[CatalogWrite]) -> Result<(), DbError> {
        let what = "writing the key catalog";
        let d = self.d();
        let mut tx = self.driver.begin(false).await.map_err(DbError::at(what))?;
        for w in writes {
            let r = &w.row;
            let columns: Vec<Value> = vec![
                (&r.algorithm).into(),
                (&r.state).into(),
                i64::from(r.compromised).into(),
                (&r.fingerprint).into(),
                (&r.kek).into(),
                (&r.wrapped_dek).into(),
                (&r.created_at).into(),
                (&r.promoted_at).into(),
                (&r.demoted_at).into(),
                (&r.retired_at).into(),
                (&r.destroyed_at).into(),
                (&r.compromised_at).into(),
                r.revision.into(),
            ];
            let written = match w.expected_revision {
                None => {
                    let mut params: Vec<Value> = vec![(&r.catalog).into(), (&r.key_id).into()];
                    params.extend(columns);
                    tx.execute(&crate::catalog::insert_sql(d), params)
                        .await
                        .map_err(DbError::at(format!(
                            "adding key {:?} to the catalog (does it exist already?)",
                            r.key_id
                        )))?
                }
                Some(expected) => {
                    let mut params = columns;
                    params.extend([(&r.catalog).into(), (&r.key_id).into(), expected.into()]);
                    tx.execute(&crate::catalog::update_sql(d), params)
                        .await
                        .map_err(DbError::at(format!(
                            "updating key {:?} in the catalog",
                            r.key_id
                        )))?
                }
            };
            if written != 1 {
                // Dropping the transaction rolls it back.
                drop(tx);
                return Err(DbError::Invalid(format!(
                    "key {:?} of catalog {:?} changed while this command ran (another keyturn?); nothing was written, run the command again",
                    r.key_id, r.catalog
                )));
            }
        }
        tx.commit().await.map_err(DbError::at(what))?;
        Ok(())
    }

    fn ensure_instances(&self) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(self.create_if_missing(
            crate::instances::create_table(self.d()),
            "creating the instance table keyturn_instances",
        ))
    }

    fn record_instance<'a>(
        &'a self,
        hb: &'a InstanceHeartbeat,
    ) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(async move {
            let params = vec![
                (&hb.catalog).into(),
                (&hb.instance_id).into(),
                (&hb.host).into(),
                hb.pid.into(),
                (&hb.label).into(),
                crate::instances::encode_key_ids(&hb.key_ids).into(),
                (&hb.primary_key_id).into(),
                (&hb.keyring_fingerprint).into(),
            ];
            let what = format!(
                "recording the heartbeat of instance {:?} in keyturn_instances",
                hb.label
            );
            self.execute(&what, &crate::instances::upsert_sql(self.d()), params)
                .await?;
            Ok(())
        })
    }

    fn load_instances<'a>(
        &'a self,
        catalog: &'a str,
    ) -> BoxFuture<'a, Result<InstanceSnapshot, DbError>> {
        Box::pin(async move {
            let clock = "reading the database's clock";
            let now_rows = self
                .query(clock, &crate::instances::now_sql(self.d()), Vec::new())
                .await?;
            let now = match now_rows.first() {
                Some(r) => r.text(0)?,
                None => return Err(DbError::Invalid(format!("{clock}: no row"))),
            };
            let mut instances = Vec::new();
            if self.describe_table("keyturn_instances").await?.is_none() {
                return Ok(InstanceSnapshot { now, instances });
            }
            let what = format!("reading the instances of key catalog {catalog:?}");
            let rows = self
                .query(
                    &what,
                    &crate::instances::select_sql(self.d()),
                    vec![catalog.into()],
                )
                .await?;
            for r in rows {
                instances.push(InstanceRow {
                    heartbeat: InstanceHeartbeat {
                        catalog: r.text(0)?,
                        instance_id: r.text(1)?,
                        host: r.text(2)?,
                        pid: r.int(3)?,
                        label: r.text(4)?,
                        key_ids: crate::instances::decode_key_ids(&r.text(5)?)?,
                        primary_key_id: r.text(6)?,
                        keyring_fingerprint: r.text(7)?,
                    },
                    first_seen: r.text(8)?,
                    last_seen: r.text(9)?,
                });
            }
            Ok(InstanceSnapshot { now, instances })
        })
    }

    fn remove_instance<'a>(
        &'a self,
        catalog: &'a str,
        instance_id: &'a str,
        if_last_seen: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, DbError>> {
        Box::pin(async move {
            if self.describe_table("keyturn_instances").await?.is_none() {
                return Ok(false);
            }
            let sql = crate::instances::delete_sql(self.d(), if_last_seen.is_some());
            let mut params: Vec<Value> = vec![catalog.into(), instance_id.into()];
            params.extend(if_last_seen.map(Value::from));
            let n = self
                .execute("removing an instance from keyturn_instances", &sql, params)
                .await?;
            Ok(n > 0)
        })
    }
}
