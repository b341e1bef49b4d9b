//! Test support: a [`Database`] that lets a test play the application
//! between keyturn's read of a batch and its compare-and-swap write, and
//! passes everything else through unchanged. One wrapper for every test that
//! needs it, so a new trait method is delegated once.

use crate::{
    AuditRow, AuditRowBuilder, Backend, BadRow, BadRowAck, BadRowRecord, BoxFuture, CasUpdate,
    CatalogRow, CatalogWrite, Checkpoint, ColumnCounts, ColumnRef, Database, DbError,
    InstanceHeartbeat, InstanceSnapshot, KeyCensus, LockHolder, LockInfo, LockOutcome, Pk, PkValue,
    Row, RunRecord, TableInfo,
};
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;

/// What runs just before each batch write of a [`WithWriteHook`].
#[async_trait]
pub trait BeforeWrite: Send + Sync {
    /// Called with the database underneath (writes through it are the
    /// application's) and the batch about to be written. An error fails the
    /// write with it.
    async fn before_write(
        &self,
        db: &dyn Database,
        col: &ColumnRef,
        updates: &[CasUpdate],
    ) -> Result<(), DbError>;
}

/// `inner`, with `hook` run before every [`Database::write_cas`].
pub struct WithWriteHook<H> {
    inner: Arc<dyn Database>,
    hook: H,
}

impl<H: BeforeWrite> WithWriteHook<H> {
    /// Wraps `inner` so that `hook` runs before each of its batch writes.
    pub fn new(inner: Arc<dyn Database>, hook: H) -> WithWriteHook<H> {
        WithWriteHook { inner, hook }
    }

    /// The hook, to read what it recorded.
    pub fn hook(&self) -> &H {
        &self.hook
    }
}

impl<H> fmt::Debug for WithWriteHook<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithWriteHook")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<H: BeforeWrite> Database for WithWriteHook<H> {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    fn capabilities(&self) -> crate::Capabilities {
        self.inner.capabilities()
    }

    async fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError> {
        self.inner.describe_table(table).await
    }

    async fn count_keys(
        &self,
        col: &ColumnRef,
        census: &KeyCensus,
    ) -> Result<ColumnCounts, DbError> {
        self.inner.count_keys(col, census).await
    }

    async fn rows_with_tokens(
        &self,
        col: &ColumnRef,
        census: &KeyCensus,
        tokens: &[Vec<u8>],
        limit: usize,
    ) -> Result<Vec<Pk>, DbError> {
        self.inner
            .rows_with_tokens(col, census, tokens, limit)
            .await
    }

    async fn count_without_prefix(
        &self,
        col: &ColumnRef,
        skip: Option<&crate::Skip>,
    ) -> Result<u64, DbError> {
        self.inner.count_without_prefix(col, skip).await
    }

    async fn fetch_batch(
        &self,
        col: &ColumnRef,
        after: Option<&[PkValue]>,
        skip: Option<&crate::Skip>,
        limit: usize,
    ) -> Result<Vec<Row>, DbError> {
        self.inner.fetch_batch(col, after, skip, limit).await
    }

    async fn fetch_rows(&self, col: &ColumnRef, pks: &[Pk]) -> Result<Vec<Row>, DbError> {
        self.inner.fetch_rows(col, pks).await
    }

    async fn write_cas(&self, col: &ColumnRef, updates: &[CasUpdate]) -> Result<u64, DbError> {
        self.hook
            .before_write(self.inner.as_ref(), col, updates)
            .await?;
        self.inner.write_cas(col, updates).await
    }

    async fn ensure_meta(&self) -> Result<(), DbError> {
        self.inner.ensure_meta().await
    }

    async fn try_lock(&self, holder: &LockHolder) -> Result<LockOutcome, DbError> {
        self.inner.try_lock(holder).await
    }

    async fn lock_status(&self) -> Result<Option<LockInfo>, DbError> {
        self.inner.lock_status().await
    }

    fn running_runs(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, DbError>> {
        self.inner.running_runs()
    }

    fn mark_run_interrupted<'a>(
        &'a self,
        run_id: &'a str,
        finished_at: &'a str,
    ) -> BoxFuture<'a, Result<bool, DbError>> {
        self.inner.mark_run_interrupted(run_id, finished_at)
    }

    async fn load_checkpoint(
        &self,
        operation: &str,
        table: &str,
        column: &str,
    ) -> Result<Option<Checkpoint>, DbError> {
        self.inner.load_checkpoint(operation, table, column).await
    }

    async fn save_checkpoint(&self, cp: &Checkpoint) -> Result<(), DbError> {
        self.inner.save_checkpoint(cp).await
    }

    async fn clear_checkpoint(
        &self,
        operation: &str,
        table: &str,
        column: &str,
    ) -> Result<(), DbError> {
        self.inner.clear_checkpoint(operation, table, column).await
    }

    async fn record_bad_rows(&self, rows: &[BadRow]) -> Result<(), DbError> {
        self.inner.record_bad_rows(rows).await
    }

    async fn load_bad_rows(
        &self,
        table: Option<&str>,
        column: Option<&str>,
    ) -> Result<Vec<BadRowRecord>, DbError> {
        self.inner.load_bad_rows(table, column).await
    }

    async fn clear_bad_rows(
        &self,
        table: &str,
        column: &str,
        pks: &[String],
    ) -> Result<u64, DbError> {
        self.inner.clear_bad_rows(table, column, pks).await
    }

    async fn ack_bad_rows(
        &self,
        rows: &[(String, String, String)],
        ack: &BadRowAck,
    ) -> Result<u64, DbError> {
        self.inner.ack_bad_rows(rows, ack).await
    }

    async fn save_run(&self, run: &RunRecord) -> Result<(), DbError> {
        self.inner.save_run(run).await
    }

    async fn update_run_progress(&self, run_id: &str, progress: &str) -> Result<(), DbError> {
        self.inner.update_run_progress(run_id, progress).await
    }

    async fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>, DbError> {
        self.inner.recent_runs(limit).await
    }

    async fn request_run_control(&self, control: &crate::RunControl) -> Result<(), DbError> {
        self.inner.request_run_control(control).await
    }

    async fn run_control(&self, run_id: &str) -> Result<Option<crate::RunControl>, DbError> {
        self.inner.run_control(run_id).await
    }

    async fn execute_script(&self, sql: &str) -> Result<(), DbError> {
        self.inner.execute_script(sql).await
    }

    async fn close(&self) {
        self.inner.close().await
    }

    async fn audit_append(&self, build: &AuditRowBuilder<'_>) -> Result<AuditRow, DbError> {
        self.inner.audit_append(build).await
    }

    async fn audit_read(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditRow>, DbError> {
        self.inner.audit_read(after_seq, limit).await
    }

    async fn ensure_catalog(&self) -> Result<(), DbError> {
        self.inner.ensure_catalog().await
    }

    async fn load_catalog(&self, catalog: &str) -> Result<Vec<CatalogRow>, DbError> {
        self.inner.load_catalog(catalog).await
    }

    async fn read_pairs(
        &self,
        table: &str,
        key_column: &str,
        value_column: &str,
    ) -> Result<Vec<(String, Option<String>)>, DbError> {
        self.inner.read_pairs(table, key_column, value_column).await
    }

    async fn write_catalog(&self, writes: &[CatalogWrite]) -> Result<(), DbError> {
        self.inner.write_catalog(writes).await
    }

    fn ensure_instances(&self) -> BoxFuture<'_, Result<(), DbError>> {
        self.inner.ensure_instances()
    }

    fn record_instance<'a>(
        &'a self,
        heartbeat: &'a InstanceHeartbeat,
    ) -> BoxFuture<'a, Result<(), DbError>> {
        self.inner.record_instance(heartbeat)
    }

    fn load_instances<'a>(
        &'a self,
        catalog: &'a str,
    ) -> BoxFuture<'a, Result<InstanceSnapshot, DbError>> {
        self.inner.load_instances(catalog)
    }

    fn remove_instance<'a>(
        &'a self,
        catalog: &'a str,
        instance_id: &'a str,
        if_last_seen: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, DbError>> {
        self.inner
            .remove_instance(catalog, instance_id, if_last_seen)
    }
}
