//! `rotate` and `encrypt`: the online re-encryption pipeline.
//!
//! Per column, three stages overlap:
//! 1. read: keyset pagination by primary key (never OFFSET), values already
//!    under the primary key filtered out by SQL where the format allows;
//! 2. crypto: off the database's path, in parallel across cores (rayon);
//! 3. write: one compare-and-swap statement per batch, several batches in
//!    flight (`workers`). A row the application changed meanwhile is re-read
//!    and retried, or skipped if it is already under the primary key: the
//!    application's writes are never overwritten.
//!
//! Batches complete in order, so the checkpoint (the last primary key of the
//! last fully written batch) never runs ahead of the data. A crash, SIGKILL
//! or Ctrl-C resumes from it.

use crate::plan::{ColumnPlan, Plan};
use crate::retry::{with_retry, write_retry};
use crate::{BatchStats, EngineError, ProgressSink, UnusableKey};
use futures::StreamExt;
use keyturn_db::{
    BadRow, CasUpdate, Checkpoint, ColumnCounts, ColumnRef, Database, LockCheck, LockGuard,
    LockHolder, LockOutcome, Pk, Row, RunRecord, Skip, now_rfc3339, pk_display,
};
use keyturn_format::{Codec, FormatError, Inspection, KeyIdLocation, Keyring, Reencryption};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Compare-and-swap rounds for one batch before a row that keeps changing
/// is reported instead of retried.
const CAS_ROUNDS: usize = 5;
/// Bytes of values one batch may hold: bounds memory when values are large.
const BATCH_BYTES: usize = 32 << 20;
/// Batches the reader may hold ready ahead of the writers.
const READ_AHEAD: usize = 2;
/// How often the checkpoint is saved while a column runs.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Bad rows kept in memory for the summary; all are recorded in the
/// database's `keyturn_bad_rows` table.
const BAD_ROWS_IN_SUMMARY: usize = 10_000;

/// Which rewrite a run performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Re-encrypt every value not under the primary key.
    Rotate,
    /// Encrypt plaintext values in place.
    Encrypt,
}

impl Operation {
    /// The operation's name (`rotate` or `encrypt`), as in run records and locks.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Rotate => "rotate",
            Operation::Encrypt => "encrypt",
        }
    }
}

/// How a run reads, paces and writes.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Rows read and written per batch.
    pub batch_size: usize,
    /// Batches written concurrently (database connections writing).
    pub workers: usize,
    /// At most this many rows a second across all workers; `None` for no limit.
    pub max_rows_per_sec: Option<u64>,
    /// Read, decrypt and check everything; write nothing at all.
    pub dry_run: bool,
    /// Who runs it (for the run record).
    pub actor: String,
    /// Rows under keys the keyring cannot decrypt become bad rows instead of
    /// stopping the run in the preflight.
    pub skip_unknown_keys: bool,
}

/// What a run did in one column.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ColumnSummary {
    /// The column's table.
    pub table: String,
    /// The column's name.
    pub column: String,
    /// Values written (or, in a dry run, that would be written).
    pub written: u64,
    /// Values left alone: already under the primary key (rotate), already
    /// encrypted (encrypt), or deleted/changed by the application.
    pub skipped: u64,
    /// Compare-and-swap misses that were re-read and retried.
    pub retried: u64,
    /// Values that could not be processed and were recorded as bad rows.
    pub failed: u64,
    /// Rows already done by an earlier, interrupted run.
    pub resumed_rows: u64,
    /// Wall-clock time spent on the column, in seconds.
    pub seconds: f64,
}

/// A row whose value could not be processed, as listed in the summary.
#[derive(Clone, Debug, Serialize)]
pub struct BadRowReport {
    /// The row's table.
    pub table: String,
    /// The encrypted column.
    pub column: String,
    /// The row's primary key, as text.
    pub pk: String,
    /// Why the value could not be processed.
    pub reason: String,
}

/// What a rotate or encrypt run did, returned when it ends (also when interrupted).
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// Rotate or encrypt.
    pub operation: Operation,
    /// The run's id, as in `keyturn_runs` and the audit trail.
    pub run_id: String,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// The primary key id of each column's keyring, comma-separated.
    pub current_key_id: String,
    /// Per column, in plan order.
    pub columns: Vec<ColumnSummary>,
    /// Bad rows found, up to a limit (see `bad_rows_truncated`).
    pub bad_rows: Vec<BadRowReport>,
    /// More bad rows exist than listed here (all are in keyturn_bad_rows).
    pub bad_rows_truncated: bool,
    /// Keys the keyring cannot decrypt whose rows were left alone
    /// (`--skip-unknown-keys`); each of those rows is among the bad rows.
    pub unusable_keys: Vec<UnusableKey>,
    /// Stopped before the end (Ctrl-C, or the lock lost): resumable.
    pub interrupted: bool,
    /// Wall-clock duration of the whole run, in seconds.
    pub seconds: f64,
    /// Values processed (written, skipped or failed) per second of the run; 0 if it took no
    /// measurable time.
    pub rows_per_sec: f64,
    /// How the run ended.
    pub outcome: RunOutcome,
    /// Times the lock's session was found gone and the lock taken again.
    pub lock_retaken: u32,
    /// Who took the rotation lock, when that stopped this run (outcome
    /// `lock_lost`).
    pub lock_lost: Option<LockLost>,
    /// What went wrong without changing the outcome (e.g. the lock's record
    /// could not be deleted).
    pub warnings: Vec<String>,
}

/// How a run ended; `keyturn_runs.outcome` and the audit trail's end event
/// hold the same word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunOutcome {
    /// Still running (a summary is never returned in this state).
    Running,
    /// Every value done.
    Ok,
    /// Done, with bad rows named.
    CompletedWithErrors,
    /// Stopped before the end (Ctrl-C, a closed pipe): resumable.
    Interrupted,
    /// Stopped because another run took the rotation lock: resumable.
    LockLost,
    /// Stopped by an error.
    Failed,
}

impl RunOutcome {
    /// The word stored in `keyturn_runs` and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Ok => "ok",
            RunOutcome::CompletedWithErrors => "completed_with_errors",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::LockLost => "lock_lost",
            RunOutcome::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RunSummary {
    /// Values that failed, over all columns.
    pub fn failed(&self) -> u64 {
        self.columns.iter().map(|c| c.failed).sum()
    }
    /// Values written (or that a dry run would write), over all columns.
    pub fn written(&self) -> u64 {
        self.columns.iter().map(|c| c.written).sum()
    }
}

/// Everything the pipeline stages share.
struct Shared {
    db: Arc<dyn Database>,
    op: Operation,
    opts: RunOptions,
    progress: Arc<dyn ProgressSink>,
    stop: Arc<AtomicBool>,
    run_id: String,
    lock: LockWatch,
    /// Asked before each batch write ([`crate::pacing`]).
    pacing: Vec<Arc<dyn crate::pacing::Pacing>>,
    /// One check at a time; when the pause being reported was last shown.
    pace: tokio::sync::Mutex<Option<Instant>>,
    /// The progress published for `keyturn runs` (not in dry runs).
    live: Option<Arc<crate::live::LiveProgress>>,
    /// Adaptive batches: how long one batch write should take.
    batch_target: Option<Duration>,
    /// The batch size the reader uses now (adapted to `batch_target`), and
    /// the column's cap.
    batch_now: std::sync::atomic::AtomicUsize,
    batch_cap: std::sync::atomic::AtomicUsize,
}

/// The least rows an adaptive batch shrinks to.
const MIN_ADAPTIVE_BATCH: usize = 16;

/// The next adaptive batch size after `rows` rows were written in `took`
/// with batches of `old` rows: halfway towards the size whose write would
/// take `target`, by at most a factor of two, within
/// [`MIN_ADAPTIVE_BATCH`] and `cap`.
fn next_batch(old: usize, cap: usize, rows: u64, took: Duration, target: Duration) -> usize {
    let cap = cap.max(1);
    let old = old.clamp(1, cap);
    if rows == 0 || took.is_zero() {
        return old;
    }
    let per_row = took.as_secs_f64() / rows as f64;
    let desired = (target.as_secs_f64() / per_row).min(usize::MAX as f64 / 4.0) as usize;
    (old.saturating_add(desired) / 2)
        .clamp((old / 2).max(1), old.saturating_mul(2))
        .clamp(MIN_ADAPTIVE_BATCH.min(cap), cap)
}

impl Shared {
    /// Adapts the batch size to a batch of `rows` whose writes took `took`:
    /// towards the size whose write takes `batch_target`, at most halving or
    /// doubling at a time, within [`MIN_ADAPTIVE_BATCH`] and the cap.
    fn adapt_batch(&self, rows: u64, took: Duration) {
        let Some(target) = self.batch_target else {
            return;
        };
        let cap = self.batch_cap.load(Ordering::Relaxed);
        let old = self.batch_now.load(Ordering::Relaxed);
        let next = next_batch(old, cap, rows, took, target);
        self.batch_now.store(next, Ordering::Relaxed);
    }

    /// Waits until every [`Pacing`](crate::pacing::Pacing) lets the next
    /// batch be written, or the run is stopping (the batch in hand is then
    /// written, as a stop finishes the batches in flight).
    async fn wait_to_write(&self) -> Result<(), EngineError> {
        if self.pacing.is_empty() {
            return Ok(());
        }
        loop {
            let mut paused = self.pace.lock().await;
            let mut wait = None;
            for p in &self.pacing {
                let pace = p.check().await?;
                for (name, lag) in p.observed() {
                    self.progress.replica_lag(&name, lag);
                }
                match pace {
                    crate::pacing::Pace::Wait(why) => {
                        wait = Some(why);
                        break;
                    }
                    crate::pacing::Pace::Stop(why) => {
                        if !self.stop.swap(true, Ordering::SeqCst) {
                            self.progress
                                .note(&format!("stopping: {why}; finishing the batches in flight"));
                            if let Some(l) = &self.live {
                                l.set_stopping();
                            }
                        }
                        if paused.take().is_some() {
                            self.progress.paused(None);
                        }
                        return Ok(());
                    }
                    _ => {}
                }
            }
            match wait {
                None => {
                    if paused.take().is_some() {
                        self.progress.paused(None);
                    }
                    return Ok(());
                }
                Some(why) => {
                    if self.stopping() {
                        return Ok(());
                    }
                    // Shown when the pause starts, then every few seconds
                    // with the reason as it stands.
                    if paused.is_none_or(|t| t.elapsed() >= PAUSE_REPORT_EVERY) {
                        self.progress.paused(Some(&why));
                        *paused = Some(Instant::now());
                    }
                }
            }
            drop(paused);
            tokio::time::sleep(crate::pacing::RECHECK).await;
        }
    }

    /// Whether the run should stop at the next batch boundary: Ctrl-C, or
    /// the lock lost to another holder.
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.lock.gone()
    }
}

/// Per-column counts taken once before a run, in the plan's column order:
/// the preflight, the progress totals (and the CLI's audit start event) all
/// read them, so a run scans each table once before it starts writing.
pub async fn census(db: &dyn Database, plan: &Plan) -> Result<Vec<ColumnCounts>, EngineError> {
    let mut out = Vec::with_capacity(plan.columns.len());
    for c in &plan.columns {
        out.push(db.count_keys(&c.col, &c.census()).await?);
    }
    Ok(out)
}

/// Rows named per key the keyring cannot decrypt.
const PREFLIGHT_ROWS: usize = 20;

/// Lists keys the data uses that this keyring cannot decrypt, per column,
/// counted by the database, with the first rows under each. Nothing is
/// written.
pub async fn preflight(db: &dyn Database, plan: &Plan) -> Result<(), EngineError> {
    check_preflight(db, plan, &census(db, plan).await?, false)
        .await
        .map(drop)
}

/// The preflight over counts already taken (see [`census`]). With
/// `skip_unknown`, keys the keyring cannot decrypt are returned instead of
/// refused: their rows become bad rows and the rest is rotated.
pub async fn check_preflight(
    db: &dyn Database,
    plan: &Plan,
    census: &[ColumnCounts],
    skip_unknown: bool,
) -> Result<Vec<UnusableKey>, EngineError> {
    let mut layouts = Vec::new();
    for c in &plan.columns {
        layouts.extend(wrapped_key_layout(db, c).await?);
    }
    if !layouts.is_empty() {
        return Err(EngineError::Schema(layouts.join("; ")));
    }
    let mut problems = Vec::new();
    for (c, counts) in plan.columns.iter().zip(census) {
        for k in &counts.by_key {
            let Err(retired) = c.key_usable(&k.key_id)? else {
                continue;
            };
            let first_rows = db
                .rows_with_tokens(&c.col, &c.census(), &k.tokens, PREFLIGHT_ROWS)
                .await?
                .iter()
                .map(|pk| pk_display(pk))
                .collect();
            problems.push(UnusableKey {
                table: c.col.table.clone(),
                column: c.col.column.clone(),
                key_id: k.key_id.clone(),
                rows: k.rows,
                retired,
                first_rows,
            });
        }
    }
    if problems.is_empty() || skip_unknown {
        Ok(problems)
    } else {
        Err(EngineError::Preflight(problems))
    }
}

/// Rows of an envelope column sampled for the layout of their wrapped keys.
const LAYOUT_SAMPLE: usize = 200;

/// One message for an envelope column whose wrapped keys are of the other
/// kind than configured (KMS blobs under a local keyring, local 60/40-byte
/// wraps under `kms`), told from a sample of its first rows: refused before
/// any row is touched, instead of one bad row per value. `None`: the
/// sample fits (or the column is not an envelope).
async fn wrapped_key_layout(
    db: &dyn Database,
    c: &ColumnPlan,
) -> Result<Option<String>, EngineError> {
    if c.codec.name() != "envelope" {
        return Ok(None);
    }
    let rows = db.fetch_batch(&c.col, None, None, LAYOUT_SAMPLE).await?;
    let (mut present, mut lens) = (0usize, Vec::new());
    for r in rows.iter().filter(|r| r.problem.is_none()) {
        match c.codec.inspect(&r.value) {
            Inspection::NotThisFormat => {}
            Inspection::Invalid(FormatError::CellLength { cell, len, .. })
                if cell == keyturn_codecs::multi::Role::WrappedKey.name() =>
            {
                present += 1;
                lens.push(len);
            }
            _ => present += 1,
        }
    }
    // Most of the sample: a few odd rows are bad rows, not a layout.
    if lens.is_empty() || lens.len() * 2 < present {
        return Ok(None);
    }
    let (lo, hi) = (
        lens.iter().min().copied().unwrap_or_default(),
        lens.iter().max().copied().unwrap_or_default(),
    );
    let sizes = if lo == hi {
        format!("{lo}")
    } else {
        format!("{lo}..{hi}")
    };
    let label = c.label();
    Ok(Some(if c.remote.is_some() {
        format!(
            "wrapped keys of {label} are {sizes} bytes: a local aes-gcm/aes-kw wrap (60/40 bytes), not a KMS-wrapped data key; remove kms = ... and give the wrapping keys as keyring = \"NAME\" (docs/CODECS.md)"
        )
    } else {
        format!(
            "wrapped keys of {label} are {sizes} bytes: not a local aes-gcm/aes-kw wrap (60/40 bytes); a KMS-wrapped data key? configure kms = \"NAME\" (docs/KMS.md)"
        )
    }))
}

/// Runs `rotate` or `encrypt` over every column of the plan: [`Run::begin`]
/// (lock and run record), runs left `running` by a process that is gone
/// recorded as interrupted, [`census`], [`Run::execute`]. The CLI takes
/// these steps one by one to write its audit events between them.
pub async fn run(
    db: Arc<dyn Database>,
    plan: &Plan,
    op: Operation,
    opts: RunOptions,
    progress: Arc<dyn ProgressSink>,
    stop: Arc<AtomicBool>,
) -> Result<RunSummary, EngineError> {
    let run = Run::begin(db.clone(), op, opts).await?;
    let counted = async {
        for stale in run.stale_runs() {
            run.mark_interrupted(stale).await?;
        }
        census(db.as_ref(), plan).await
    }
    .await;
    match counted {
        Ok(counts) => run.execute(plan, counts, progress, stop).await,
        Err(e) => {
            run.abandon().await;
            Err(e)
        }
    }
}

/// A run of `rotate` or `encrypt` that has begun: it holds the rotation
/// lock and its `keyturn_runs` record says `running` (a dry run holds and
/// writes nothing), so a process killed from here on leaves a record that
/// the next run, `status` and the reports recognize as interrupted.
pub struct Run {
    db: Arc<dyn Database>,
    op: Operation,
    opts: RunOptions,
    run_id: String,
    lock: Option<Arc<LockGuard>>,
    record: RunRecord,
    stale: Vec<RunRecord>,
    started: Instant,
    pacing: Vec<Arc<dyn crate::pacing::Pacing>>,
    batch_target: Option<Duration>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("run_id", &self.run_id)
            .field("operation", &self.op)
            .field("dry_run", &self.opts.dry_run)
            .finish_non_exhaustive()
    }
}

impl Run {
    /// Takes the rotation lock (refused: [`EngineError::LockHeld`]), finds
    /// the runs a gone process left `running`, and records this run as
    /// `running`. A dry run only gets its run id.
    pub async fn begin(
        db: Arc<dyn Database>,
        op: Operation,
        opts: RunOptions,
    ) -> Result<Run, EngineError> {
        let run_id = new_run_id();
        let record = RunRecord {
            run_id: run_id.clone(),
            operation: op.name().to_owned(),
            actor: opts.actor.clone(),
            started_at: now_rfc3339(),
            finished_at: None,
            outcome: RunOutcome::Running.as_str().into(),
            summary: "{}".into(),
        };
        let mut run = Run {
            db: db.clone(),
            op,
            opts,
            run_id,
            lock: None,
            record,
            stale: Vec::new(),
            started: Instant::now(),
            pacing: Vec::new(),
            batch_target: None,
        };
        // A dry run touches nothing: no bookkeeping tables, no lock, no record.
        if run.opts.dry_run {
            return Ok(run);
        }
        db.ensure_meta().await?;
        let holder = LockHolder::current(op.name()).with_token(&run.run_id);
        match db.try_lock(&holder).await? {
            LockOutcome::Acquired(g) => run.lock = Some(Arc::new(g)),
            LockOutcome::Held { holder, since } => {
                return Err(EngineError::LockHeld { holder, since });
            }
        }
        let recorded = async {
            // This run holds the lock, so no other run can be live: one
            // still `running` was left so by a process that is gone.
            run.stale = db.running_runs().await?;
            run.stale.retain(|r| r.run_id != run.run_id);
            db.save_run(&run.record).await
        }
        .await;
        if let Err(e) = recorded {
            if let Some(lock) = &run.lock {
                let _ = lock.release().await;
            }
            return Err(e.into());
        }
        Ok(run)
    }

    /// Adaptive batches: sizes them so that one batch write takes about
    /// `target` (`rotation.target_batch_ms`); `None` (the default for the
    /// library): every batch `batch_size` rows.
    pub fn target_batch_time(&mut self, target: Option<Duration>) {
        self.batch_target = target;
    }

    /// Asks `p` before every batch write of [`execute`](Self::execute)
    /// (replica lag, an operator's pause).
    pub fn pace_with(&mut self, p: Arc<dyn crate::pacing::Pacing>) {
        self.pacing.push(p);
    }

    /// The run id, in `keyturn_runs`, `keyturn_bad_rows`, checkpoints and
    /// the audit trail.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Runs a process that is gone left `running` (killed, or stopped by a
    /// crash), found when this one took the lock; oldest first.
    pub fn stale_runs(&self) -> &[RunRecord] {
        &self.stale
    }

    /// Records one of [`Run::stale_runs`] as `interrupted`; whether it was
    /// still `running` (a run that lost its lock's session but lives on
    /// records its own outcome when it notices, later).
    pub async fn mark_interrupted(&self, stale: &RunRecord) -> Result<bool, EngineError> {
        Ok(self
            .db
            .mark_run_interrupted(&stale.run_id, &now_rfc3339())
            .await?)
    }

    /// Gives up before [`Run::execute`] (the census or the caller's audit
    /// record failed): the run is recorded as failed and the lock released.
    /// Returns what could not be cleaned up, as warnings.
    pub async fn abandon(mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.opts.dry_run {
            return warnings;
        }
        self.record.finished_at = Some(now_rfc3339());
        self.record.outcome = RunOutcome::Failed.as_str().into();
        self.record.summary = "[]".into();
        if let Err(e) = self.db.save_run(&self.record).await {
            warnings.push(format!("could not record the run as failed: {e}"));
        }
        if let Some(w) = release(self.lock.as_deref()).await {
            warnings.push(w);
        }
        warnings
    }

    /// Rotates or encrypts every column of the plan, with the counts of
    /// [`census`] (one entry per plan column), then records the outcome and
    /// releases the lock. While it runs, the lock is checked every
    /// [`LOCK_CHECK_EVERY`] and before each checkpoint: taken again if its
    /// session ended and it is free; if another holder has it, the run stops
    /// at a batch boundary, outcome `lock_lost` ([`RunSummary::lock_lost`]).
    pub async fn execute(
        self,
        plan: &Plan,
        census: Vec<ColumnCounts>,
        progress: Arc<dyn ProgressSink>,
        stop: Arc<AtomicBool>,
    ) -> Result<RunSummary, EngineError> {
        let Run {
            db,
            op,
            opts,
            run_id,
            lock,
            mut record,
            started,
            mut pacing,
            batch_target,
            ..
        } = self;
        // Not in a dry run: it has no record to publish to, and nothing to
        // pause.
        let live =
            (!opts.dry_run).then(|| Arc::new(crate::live::LiveProgress::new(progress.clone())));
        let progress: Arc<dyn ProgressSink> = match &live {
            Some(l) => l.clone(),
            None => progress,
        };
        if live.is_some() {
            pacing.push(Arc::new(crate::live::ControlGate::new(
                db.clone(),
                run_id.clone(),
            )));
        }
        let publisher = live.clone().map(|l| {
            Spawned(tokio::spawn(crate::live::publish(
                db.clone(),
                run_id.clone(),
                l,
            )))
        });
        let shared = Arc::new(Shared {
            db: db.clone(),
            op,
            opts: opts.clone(),
            progress: progress.clone(),
            stop,
            run_id: run_id.clone(),
            lock: LockWatch::new(lock.clone()),
            pacing,
            pace: tokio::sync::Mutex::new(None),
            live,
            batch_target,
            batch_now: std::sync::atomic::AtomicUsize::new(opts.batch_size.max(1)),
            batch_cap: std::sync::atomic::AtomicUsize::new(opts.batch_size.max(1)),
        });
        progress.run_started(&shared.run_id, lock.is_some());
        let watcher = lock
            .is_some()
            .then(|| Spawned(tokio::spawn(watch_lock(shared.clone()))));
        let mut summary = RunSummary {
            operation: op,
            run_id,
            dry_run: opts.dry_run,
            current_key_id: plan.current_key_ids().join(","),
            columns: Vec::new(),
            bad_rows: Vec::new(),
            bad_rows_truncated: false,
            unusable_keys: Vec::new(),
            interrupted: false,
            seconds: 0.0,
            rows_per_sec: 0.0,
            outcome: RunOutcome::Running,
            lock_retaken: 0,
            lock_lost: None,
            warnings: Vec::new(),
        };
        let result = process_plan(&shared, plan, &census, &mut summary).await;
        drop(watcher);
        drop(publisher);
        summary.seconds = started.elapsed().as_secs_f64();
        let processed: u64 = summary
            .columns
            .iter()
            .map(|c| c.written + c.skipped + c.failed)
            .sum();
        summary.rows_per_sec = if summary.seconds > 0.0 {
            processed as f64 / summary.seconds
        } else {
            0.0
        };
        summary.lock_retaken = shared.lock.retaken.load(Ordering::SeqCst);
        let lost = shared.lock.lost();
        summary.outcome = if result.is_err() {
            RunOutcome::Failed
        } else if summary.interrupted && lost.is_some() {
            summary.lock_lost = lost;
            RunOutcome::LockLost
        } else if summary.interrupted {
            RunOutcome::Interrupted
        } else if summary.failed() > 0 {
            RunOutcome::CompletedWithErrors
        } else {
            RunOutcome::Ok
        };
        if let (Some(l), None) = (shared.lock.lost(), &summary.lock_lost) {
            // Lost after the last batch: the work is done all the same.
            summary.warnings.push(format!(
                "the rotation lock went to {} (since {}) as the run finished",
                l.holder, l.since
            ));
        }
        if !opts.dry_run {
            record.finished_at = Some(now_rfc3339());
            record.outcome = summary.outcome.as_str().to_owned();
            record.summary =
                serde_json::to_string(&summary.columns).unwrap_or_else(|_| "[]".into());
            let saved = with_retry("recording the run", progress.as_ref(), || {
                db.save_run(&record)
            })
            .await;
            if let Some(w) = release(lock.as_deref()).await {
                // The run's own outcome stands: the lock is freed anyway
                // when its session closes with this process.
                match &result {
                    Ok(_) => summary.warnings.push(w),
                    Err(_) => progress.note(&format!("warning: {w}")),
                }
            }
            if lock.is_some() {
                progress.lock_released();
            }
            if result.is_ok() {
                saved?;
            }
        }
        result.map(|()| summary)
    }
}

/// Releases the lock; what went wrong, as a warning.
async fn release(lock: Option<&LockGuard>) -> Option<String> {
    let lock = lock?;
    lock.release().await.err().map(|e| {
        format!("could not release the rotation lock cleanly ({e}); the next run takes it over")
    })
}

/// Every column of the plan in turn, until done, stopped or failed.
async fn process_plan(
    shared: &Arc<Shared>,
    plan: &Plan,
    census: &[ColumnCounts],
    summary: &mut RunSummary,
) -> Result<(), EngineError> {
    if census.len() != plan.columns.len() {
        return Err(EngineError::Internal(format!(
            "counts for {} columns given for a plan of {}",
            census.len(),
            plan.columns.len()
        )));
    }
    if shared.op == Operation::Rotate {
        let db = shared.db.as_ref();
        summary.unusable_keys =
            check_preflight(db, plan, census, shared.opts.skip_unknown_keys).await?;
        for k in &summary.unusable_keys {
            shared.progress.note(&format!(
                "--skip-unknown-keys: the rows under key {:?} in {}.{} ({}) are left as they are and recorded as bad rows",
                k.key_id, k.table, k.column, k.rows
            ));
        }
    }
    // The census may have taken long, unwatched: nothing is written before
    // the lock is known to be still this run's.
    shared.lock.check(shared.progress.as_ref()).await;
    for (column, counts) in plan.columns.iter().zip(census) {
        if shared.stopping() {
            summary.interrupted = true;
            break;
        }
        if process_column(shared, column, counts, summary).await? {
            summary.interrupted = true;
            break;
        }
    }
    Ok(())
}

/// How often a run checks that it still holds the rotation lock (and
/// before each checkpoint).
pub const LOCK_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Another holder took the rotation lock from a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockLost {
    /// Who holds the lock now: `user@host pid N (operation)`, or a note that the holder left no
    /// record.
    pub holder: String,
    /// When that holder took the lock (UTC timestamp).
    pub since: String,
}

/// A run's lock and what its checks found.
struct LockWatch {
    guard: Option<Arc<LockGuard>>,
    /// Set when another holder has the lock: the run stops.
    gone: AtomicBool,
    lost: std::sync::Mutex<Option<LockLost>>,
    retaken: AtomicU32,
    /// The last check failed (said once, not at every check).
    failing: AtomicBool,
}

impl LockWatch {
    fn new(guard: Option<Arc<LockGuard>>) -> LockWatch {
        LockWatch {
            guard,
            gone: AtomicBool::new(false),
            lost: std::sync::Mutex::new(None),
            retaken: AtomicU32::new(0),
            failing: AtomicBool::new(false),
        }
    }

    fn gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    fn lost(&self) -> Option<LockLost> {
        self.lost
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Checks the lock once and acts on the answer: a re-take is noted, a
    /// loss stops the run, a failed check is noted and the run goes on (its
    /// writes retry or fail on their own).
    async fn check(&self, progress: &dyn ProgressSink) {
        let Some(guard) = &self.guard else { return };
        if self.gone() {
            return;
        }
        match guard.check().await {
            Ok(LockCheck::Held) => {
                if self.failing.swap(false, Ordering::SeqCst) {
                    progress.note("rotation lock: checked again, still held");
                }
            }
            Ok(LockCheck::Retaken) => {
                self.failing.store(false, Ordering::SeqCst);
                self.retaken.fetch_add(1, Ordering::SeqCst);
                progress.note(
                    "rotation lock: its database session had ended; the lock was free and this run took it again",
                );
            }
            Ok(LockCheck::Lost { holder, since }) => {
                progress.note(&format!(
                    "rotation lock lost to {holder} (since {since}): stopping after the batches in flight"
                ));
                let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
                *lost = Some(LockLost { holder, since });
                self.gone.store(true, Ordering::SeqCst);
                progress.lock_lost();
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::SeqCst) {
                    progress.note(&format!(
                        "rotation lock: could not check it ({e}); the run goes on and checks again"
                    ));
                }
            }
        }
    }
}

/// Checks the lock every [`LOCK_CHECK_EVERY`] until it is lost (or the
/// task is dropped with the run).
async fn watch_lock(shared: Arc<Shared>) {
    while !shared.lock.gone() {
        tokio::time::sleep(LOCK_CHECK_EVERY).await;
        shared.lock.check(shared.progress.as_ref()).await;
    }
}

pub use keyturn_db::OpenRun;

/// The runs whose record says `running`, each found running or
/// interrupted by who holds the rotation lock now ([`keyturn_db::open_runs`]).
pub async fn open_runs(db: &dyn Database) -> Result<Vec<OpenRun>, EngineError> {
    Ok(keyturn_db::open_runs(db).await?)
}

/// A run id: a UUID v7 (its first 48 bits are the start time in
/// milliseconds, so ids sort by start), unique across hosts.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// What the crypto stage decided for one row.
enum RowOutcome {
    /// The new value to write in place of the one read.
    Write(Vec<u8>),
    Skip,
    Bad(String),
}

/// Decides one row: re-encrypt (rotate) or encrypt (encrypt).
fn crypto_one(op: Operation, ring: &Keyring, plan: &ColumnPlan, row: &Row) -> RowOutcome {
    if let Some(problem) = row.problem {
        return RowOutcome::Bad(problem.to_string());
    }
    let (pk, value) = (&row.pk, row.value.as_slice());
    let parts = plan.context_parts(pk);
    let ctx: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let codec: &dyn Codec = plan.codec.as_ref();
    match op {
        Operation::Rotate => match codec.reencrypt(ring, value, &ctx) {
            Ok(Reencryption::AlreadyPrimary) => RowOutcome::Skip,
            Ok(Reencryption::Rotated(new)) => RowOutcome::Write(new),
            Err(FormatError::UnknownFormat) => {
                RowOutcome::Bad(crate::scan::not_this_format(codec.name()))
            }
            Err(e) => RowOutcome::Bad(e.to_string()),
        },
        Operation::Encrypt => match codec.inspect(value) {
            Inspection::NotThisFormat => match codec.encrypt(ring, value, &ctx) {
                Ok(new) => RowOutcome::Write(new),
                Err(e) => RowOutcome::Bad(e.to_string()),
            },
            Inspection::Invalid(e) => RowOutcome::Bad(format!(
                "looks like a damaged {} ciphertext ({e}); not encrypting it again",
                codec.name()
            )),
            _ => RowOutcome::Skip,
        },
    }
}

/// Decides a batch of rows: with the column's keyring, in parallel across
/// cores, or by the KMS that holds the column's keys.
async fn crypto_batch(
    op: Operation,
    plan: &ColumnPlan,
    rows: Vec<Row>,
) -> Result<Vec<(Row, RowOutcome)>, EngineError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(remote) = &plan.remote {
        if op != Operation::Rotate {
            return Err(EngineError::Usage(format!(
                "{}: {} is not done through a KMS; the application writes new values (kms = ... columns are rotated only)",
                plan.label(),
                op.name()
            )));
        }
        let parts: Vec<Vec<Vec<u8>>> = rows.iter().map(|r| plan.context_parts(&r.pk)).collect();
        let (ready, problems): (Vec<usize>, Vec<usize>) =
            (0..rows.len()).partition(|&i| rows[i].problem.is_none());
        let inputs: Vec<crate::remote::RemoteRow<'_>> = ready
            .iter()
            .map(|&i| crate::remote::RemoteRow {
                pk: &rows[i].pk,
                value: &rows[i].value,
                aux: &rows[i].aux,
                context: &parts[i],
            })
            .collect();
        let decided = remote.rotate(&inputs).await?;
        if decided.len() != inputs.len() {
            return Err(EngineError::Internal(format!(
                "{}: the KMS answered {} of {} rows",
                plan.label(),
                decided.len(),
                inputs.len()
            )));
        }
        let mut outcomes: Vec<Option<RowOutcome>> = (0..rows.len()).map(|_| None).collect();
        for (i, d) in ready.into_iter().zip(decided) {
            outcomes[i] = Some(match d {
                crate::remote::RemoteOutcome::Write(v) => RowOutcome::Write(v),
                crate::remote::RemoteOutcome::Current => RowOutcome::Skip,
                crate::remote::RemoteOutcome::Bad(why) => RowOutcome::Bad(why),
            });
        }
        for i in problems {
            let why = rows[i].problem.map(|p| p.to_string()).unwrap_or_default();
            outcomes[i] = Some(RowOutcome::Bad(why));
        }
        return Ok(rows
            .into_iter()
            .zip(outcomes)
            .map(|(r, o)| (r, o.unwrap_or(RowOutcome::Skip)))
            .collect());
    }
    let (ring, plan2) = (plan.ring()?.clone(), plan.clone());
    tokio::task::spawn_blocking(move || {
        rows.into_par_iter()
            .map(|r| {
                let o = crypto_one(op, &ring, &plan2, &r);
                (r, o)
            })
            .collect()
    })
    .await
    .map_err(|e| EngineError::Internal(format!("crypto worker failed: {e}")))
}

/// A row the batch could not process.
struct BadSeen {
    pk: Pk,
    reason: String,
    /// Of the value as read ([`keyturn_db::value_fingerprint`]).
    fingerprint: String,
}

impl BadSeen {
    fn new(pk: Pk, reason: String, value: &[u8]) -> BadSeen {
        BadSeen {
            pk,
            reason,
            fingerprint: keyturn_db::value_fingerprint(value),
        }
    }
}

#[derive(Default)]
struct BatchOutcome {
    written: u64,
    skipped: u64,
    retried: u64,
    bad: Vec<BadSeen>,
    last_pk: Option<Pk>,
    rows: u64,
    /// Rows whose lock another transaction held past the lock time-out:
    /// come back to them at the end of the column.
    deferred: Vec<Pk>,
    /// How long its writes took (`None`: nothing to write, or a dry run).
    took: Option<Duration>,
}

impl BatchOutcome {
    /// What [`ProgressSink::batch_written`] is told, `extra_skipped` rows
    /// counted as skipped besides the batch's own.
    fn stats(&self, batch_size: usize, extra_skipped: u64) -> BatchStats {
        BatchStats {
            rows: self.rows,
            written: self.written,
            skipped: self.skipped + extra_skipped,
            retried: self.retried,
            bad: self.bad.len() as u64,
            batch_size: batch_size as u64,
            took: self.took,
        }
    }
}

/// Rows per part when a batch write meets a lock time-out.
const LOCK_CHUNK: usize = 16;

/// Writes `updates`, splitting the batch (into parts of [`LOCK_CHUNK`]
/// rows, then single rows) when a row lock is not granted in time, down to
/// the single rows that stay locked: those are
/// moved to `deferred` (their values untouched). Returns the rows written.
async fn write_splitting(
    shared: &Shared,
    col: &ColumnRef,
    updates: &mut Vec<CasUpdate>,
    deferred: &mut Vec<Pk>,
) -> Result<u64, EngineError> {
    let db = shared.db.clone();
    let mut written = 0;
    let mut locked: Vec<usize> = Vec::new();
    let mut parts = vec![(0, updates.len())];
    while let Some((a, b)) = parts.pop() {
        let slice = &updates[a..b];
        match write_retry("writing a batch", shared.progress.as_ref(), || {
            db.write_cas(col, slice)
        })
        .await
        {
            Ok(n) => written += n,
            Err(e) if e.is_lock_timeout() => {
                // Three waits at most per locked row: the batch, its chunk
                // of LOCK_CHUNK rows, the row.
                let step = if b - a > LOCK_CHUNK { LOCK_CHUNK } else { 1 };
                if b - a == 1 {
                    locked.push(a);
                } else {
                    let mut at = b;
                    while at > a {
                        let from = at.saturating_sub(step).max(a);
                        parts.push((from, at));
                        at = from;
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    locked.sort_unstable();
    for i in locked.into_iter().rev() {
        deferred.push(updates.remove(i).pk);
    }
    Ok(written)
}

/// Crypto then compare-and-swap write for one batch.
async fn process_batch(
    shared: Arc<Shared>,
    plan: ColumnPlan,
    rows: Vec<Row>,
) -> Result<BatchOutcome, EngineError> {
    let mut out = BatchOutcome {
        last_pk: rows.last().map(|r| r.pk.clone()),
        rows: rows.len() as u64,
        ..Default::default()
    };
    let outcomes = crypto_batch(shared.op, &plan, rows).await?;
    let mut pending = Vec::new();
    for (row, o) in outcomes {
        match o {
            // The value read moves into the update: no copy per row.
            RowOutcome::Write(new) => pending.push(CasUpdate {
                pk: row.pk,
                old: row.value,
                new,
            }),
            RowOutcome::Skip => out.skipped += 1,
            RowOutcome::Bad(why) => out.bad.push(BadSeen::new(row.pk, why, &row.value)),
        }
    }
    if shared.opts.dry_run {
        out.written = pending.len() as u64;
        return Ok(out);
    }
    shared.wait_to_write().await?;
    let writing = Instant::now();
    let to_write = !pending.is_empty();
    let db = shared.db.clone();
    let col = &plan.col;
    for round in 0..=CAS_ROUNDS {
        if pending.is_empty() {
            break;
        }
        if round == CAS_ROUNDS {
            for u in pending.drain(..) {
                out.bad.push(BadSeen::new(
                    u.pk,
                    format!("changed by the application during each of {CAS_ROUNDS} attempts; run again to finish it"),
                    &u.old,
                ));
            }
            break;
        }
        let n = write_splitting(&shared, col, &mut pending, &mut out.deferred).await?;
        if n as usize == pending.len() {
            out.written += n;
            break;
        }
        // Some rows changed under us (or a retried write had already
        // landed): look at what the rows hold now.
        let pks: Vec<Pk> = pending.iter().map(|u| u.pk.clone()).collect();
        let mut current: HashMap<Pk, Row> =
            with_retry("re-reading changed rows", shared.progress.as_ref(), || {
                db.fetch_rows(col, &pks)
            })
            .await?
            .into_iter()
            .map(|r| (r.pk.clone(), r))
            .collect();
        let mut next = Vec::new();
        let mut again = Vec::new();
        for u in pending.drain(..) {
            match current.remove(&u.pk) {
                Some(r) if r.problem.is_none() && r.value == u.new => out.written += 1,
                // Deleted or set to NULL by the application: nothing to do.
                None => out.skipped += 1,
                Some(r) => {
                    out.retried += 1;
                    again.push(r);
                }
            }
        }
        for (r, o) in crypto_batch(shared.op, &plan, again).await? {
            match o {
                RowOutcome::Write(new) => next.push(CasUpdate {
                    pk: r.pk,
                    old: r.value,
                    new,
                }),
                RowOutcome::Skip => out.skipped += 1,
                RowOutcome::Bad(why) => out.bad.push(BadSeen::new(r.pk, why, &r.value)),
            }
        }
        pending = next;
    }
    out.took = to_write.then(|| writing.elapsed());
    if let Some(took) = out.took {
        shared.adapt_batch(out.written, took);
    }
    Ok(out)
}

/// How often a pause is reported again while it lasts.
const PAUSE_REPORT_EVERY: Duration = Duration::from_secs(5);

/// A spawned task, aborted when dropped (e.g. when a column stops on an
/// error).
///
/// The pipeline's stages run as tasks rather than as futures polled by
/// `buffered`: a future is only polled while the consumer polls the stream,
/// so while the consumer awaited a checkpoint save, a batch suspended in the
/// middle of its SQLite write transaction (or a read holding its shared lock)
/// kept the database locked, and the checkpoint save waited for it forever.
struct Spawned<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for Spawned<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// Runs one column. Returns whether it was interrupted.
async fn process_column(
    shared: &Arc<Shared>,
    plan: &ColumnPlan,
    counts: &ColumnCounts,
    summary: &mut RunSummary,
) -> Result<bool, EngineError> {
    let started = Instant::now();
    let db = shared.db.clone();
    let col = &plan.col;
    let op = shared.op;
    let progress = shared.progress.clone();
    let skip_prefix = match op {
        Operation::Rotate => plan.primary_prefix()?.map(|prefix| Skip {
            prefix,
            census: plan.census(),
        }),
        Operation::Encrypt => None,
    };
    let mut cs = ColumnSummary {
        table: col.table.clone(),
        column: col.column.clone(),
        ..Default::default()
    };
    let mut after: Option<Pk> = None;
    if !shared.opts.dry_run
        && let Some(cp) = db
            .load_checkpoint(op.name(), &col.table, &col.column)
            .await?
    {
        if cp.target_key == checkpoint_key(&plan.primary_id()?) {
            match serde_json::from_str::<Pk>(&cp.last_pk) {
                Ok(pk) => {
                    progress.note(&format!(
                        "{}: resuming after primary key {} ({} rows done by run {})",
                        plan.label(),
                        pk_display(&pk),
                        cp.rows_done,
                        cp.run_id
                    ));
                    cs.resumed_rows = cp.rows_done;
                    after = Some(pk);
                }
                Err(_) => {
                    progress.note(&format!("{}: unreadable checkpoint ignored", plan.label()))
                }
            }
        } else {
            progress.note(&format!(
                "{}: checkpoint was for key {:?}, the current key is now {:?}: starting over",
                plan.label(),
                cp.target_key,
                plan.primary_id()?
            ));
        }
    }
    let non_null = counts.total - counts.nulls;
    let todo = match &skip_prefix {
        None => non_null,
        // Values under the primary are filtered out by SQL and never seen.
        Some(_) if plan.codec.key_id_location() != KeyIdLocation::None => {
            non_null.saturating_sub(counts.rows_under(&plan.primary_id()?))
        }
        Some(p) => db.count_without_prefix(col, Some(p)).await?,
    };
    progress.column_started(&col.table, &col.column, todo, cs.resumed_rows);

    // Stage 1: the reader, a stream of batches in primary-key order.
    // A database whose batch write binds every key column, the old and the
    // new value of each row, under a limit of bind parameters per statement
    // (MySQL's), says so: a batch stays within it.
    let batch_cap = match db.capabilities().max_write_binds {
        Some(binds) => shared.opts.batch_size.min(binds / (col.pk.len() + 2)),
        None => shared.opts.batch_size,
    };
    shared.batch_cap.store(batch_cap.max(1), Ordering::Relaxed);
    shared.batch_now.store(batch_cap.max(1), Ordering::Relaxed);
    let mut last_saved = Instant::now();
    let mut checkpoint_pk: Option<Pk> = after.clone();
    let mut dirty = false;
    let mut failure = None;
    // A resumed run, once at the end, sweeps the column again from the
    // start: rows before the checkpoint that the application rewrote under
    // an old key meanwhile are rotated too. Only where SQL filters out the
    // values already under the primary, so the sweep reads just what is
    // left. Bad rows it meets again are not reported twice.
    let sweep = after.is_some() && skip_prefix.is_some();
    let starts = if sweep {
        vec![after.clone(), None]
    } else {
        vec![after.clone()]
    };
    // Filtering in SQL costs a comparison on every row read (on SQLite about
    // a third of a batch read); it pays only when there are values under the
    // primary to leave out. A fresh run over a column where the census
    // counted none reads without it: values the application writes under the
    // primary meanwhile still arrive, and the codec skips them from their
    // header, without decrypting. (A fresh run has no sweep pass.)
    let sql_skip = if after.is_none() && todo == non_null {
        None
    } else {
        skip_prefix.clone()
    };
    let mut reported: std::collections::HashSet<String> = std::collections::HashSet::new();
    // Rows another transaction kept locked past the lock time-out.
    let mut deferred: Vec<Pk> = Vec::new();
    for (pass, start) in starts.into_iter().enumerate() {
        if failure.is_some() || shared.stopping() {
            break;
        }
        if pass > 0 {
            progress.note(&format!(
                "{}: resumed run finished; sweeping rows before the checkpoint for values rewritten under an old key meanwhile",
                plan.label()
            ));
        }
        // The reader runs as its own task, up to READ_AHEAD batches ahead of
        // the writers, so reading the next batch overlaps crypto and writing
        // instead of waiting for a write to finish. Memory stays bounded:
        // READ_AHEAD batches queued plus `workers` in flight.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<Row>, EngineError>>(READ_AHEAD);
        let reader = Spawned(tokio::spawn(read_batches(
            shared.clone(),
            plan.col.clone(),
            start.clone(),
            sql_skip.clone(),
            batch_cap,
            tx,
        )));
        let batches =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        // Stages 2 and 3: crypto and write, `workers` batches in flight, results
        // in order.
        let sh = shared.clone();
        let pl = plan.clone();
        let mut results = batches
            .map(move |b| {
                let sh = sh.clone();
                let pl = pl.clone();
                // Spawned, so a batch in flight keeps going (and finishes its
                // transaction) while the loop below awaits something else.
                Spawned(tokio::spawn(async move {
                    match b {
                        Ok(rows) => process_batch(sh, pl, rows).await,
                        Err(e) => Err(e),
                    }
                }))
            })
            .buffered(shared.opts.workers.max(1))
            .map(|r| {
                r.unwrap_or_else(|e| {
                    Err(EngineError::Internal(format!("batch worker failed: {e}")))
                })
            })
            .boxed();

        while let Some(r) = results.next().await {
            let mut b = match r {
                Ok(b) => b,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            // Each bad row is named once per run, even when the sweep of a
            // resumed run meets it again.
            b.bad
                .retain(|r| reported.insert(pk_display(&r.pk)) || pass == 0);
            progress.batch_written(
                &col.table,
                &col.column,
                &b.stats(shared.batch_now.load(Ordering::Relaxed), 0),
            );
            cs.written += b.written;
            cs.skipped += b.skipped;
            cs.retried += b.retried;
            cs.failed += b.bad.len() as u64;
            deferred.append(&mut b.deferred);
            record_bad(shared, col, summary, b.bad).await?;
            progress.advanced(&col.table, &col.column, b.rows);
            if b.last_pk.is_some() {
                checkpoint_pk = b.last_pk;
                dirty = true;
            }
            if dirty && !shared.opts.dry_run && last_saved.elapsed() >= CHECKPOINT_EVERY {
                save_checkpoint(shared, plan, checkpoint_pk.as_ref(), &cs).await?;
                last_saved = Instant::now();
                dirty = false;
            }
        }
        drop(results);
        drop(reader);
    }
    if failure.is_none()
        && !deferred.is_empty()
        && let Err(e) =
            come_back_to_locked(shared, plan, deferred, batch_cap, &mut cs, summary).await
    {
        failure = Some(e);
    }
    let interrupted = shared.stopping();
    if !shared.opts.dry_run {
        if failure.is_some() || interrupted {
            // Save where we stopped; the error (if any) is reported after.
            if dirty {
                save_checkpoint(shared, plan, checkpoint_pk.as_ref(), &cs).await?;
            }
        } else {
            with_retry("clearing the checkpoint", progress.as_ref(), || {
                db.clear_checkpoint(op.name(), &col.table, &col.column)
            })
            .await?;
        }
        if failure.is_none() {
            let cleared = clear_mended_bad_rows(shared, plan, &reported).await?;
            if cleared > 0 {
                progress.note(&format!(
                    "{}: {cleared} rows recorded as bad earlier are fine now; their records are cleared",
                    plan.label()
                ));
            }
        }
    }
    progress.column_finished(&col.table, &col.column);
    cs.seconds = started.elapsed().as_secs_f64();
    summary.columns.push(cs);
    match failure {
        Some(e) => Err(e),
        None => Ok(interrupted),
    }
}

/// How long a run keeps coming back to rows another transaction holds
/// locked before it names them as bad rows (a later run rotates them).
const LOCKED_PATIENCE: Duration = Duration::from_secs(60);

/// Records a batch's bad rows and lists the first ones in the summary.
async fn record_bad(
    shared: &Shared,
    col: &ColumnRef,
    summary: &mut RunSummary,
    bad: Vec<BadSeen>,
) -> Result<(), EngineError> {
    if bad.is_empty() {
        return Ok(());
    }
    let now = now_rfc3339();
    let rows: Vec<BadRow> = bad
        .into_iter()
        .map(|r| BadRow {
            run_id: shared.run_id.clone(),
            table: col.table.clone(),
            column: col.column.clone(),
            pk: pk_display(&r.pk),
            reason: r.reason,
            seen_at: now.clone(),
            value_fingerprint: r.fingerprint,
        })
        .collect();
    if !shared.opts.dry_run {
        with_retry("recording bad rows", shared.progress.as_ref(), || {
            shared.db.record_bad_rows(&rows)
        })
        .await?;
    }
    for r in rows {
        if summary.bad_rows.len() < BAD_ROWS_IN_SUMMARY {
            summary.bad_rows.push(BadRowReport {
                table: r.table,
                column: r.column,
                pk: r.pk,
                reason: r.reason,
            });
        } else {
            summary.bad_rows_truncated = true;
        }
    }
    Ok(())
}

/// After a column's pass: the rows whose locks the application held past
/// the lock time-out are read, decided and written again, with growing,
/// jittered pauses ([`crate::retry::locked_rows_backoff`]), until they are
/// done or [`LOCKED_PATIENCE`] has passed; those still locked then become
/// bad rows (a later run rotates them).
async fn come_back_to_locked(
    shared: &Arc<Shared>,
    plan: &ColumnPlan,
    mut locked: Vec<Pk>,
    batch_cap: usize,
    cs: &mut ColumnSummary,
    summary: &mut RunSummary,
) -> Result<(), EngineError> {
    let col = &plan.col;
    shared.progress.note(&format!(
        "{}: {} rows were locked by another transaction past the lock time-out; coming back to them",
        plan.label(),
        locked.len()
    ));
    let started = Instant::now();
    let mut pauses = backon::BackoffBuilder::build(crate::retry::locked_rows_backoff());
    while !locked.is_empty() && !shared.stopping() {
        let db = shared.db.clone();
        let rows = with_retry("re-reading locked rows", shared.progress.as_ref(), || {
            db.fetch_rows(col, &locked)
        })
        .await?;
        let present: std::collections::HashSet<Pk> = rows.iter().map(|r| r.pk.clone()).collect();
        // Deleted (or set to NULL) meanwhile: nothing left to do.
        let gone = locked.iter().filter(|pk| !present.contains(*pk)).count() as u64;
        cs.skipped += gone;
        let b = process_batch(shared.clone(), plan.clone(), rows).await?;
        shared
            .progress
            .batch_written(&col.table, &col.column, &b.stats(batch_cap, gone));
        cs.written += b.written;
        cs.skipped += b.skipped;
        cs.retried += b.retried;
        cs.failed += b.bad.len() as u64;
        record_bad(shared, col, summary, b.bad).await?;
        locked = b.deferred;
        if locked.is_empty() {
            break;
        }
        if started.elapsed() >= LOCKED_PATIENCE {
            let still: Vec<BadSeen> = locked
                .drain(..)
                .map(|pk| BadSeen {
                    pk,
                    reason: format!(
                        "locked by another transaction for over {} s; run again to rotate it",
                        LOCKED_PATIENCE.as_secs()
                    ),
                    fingerprint: String::new(),
                })
                .collect();
            cs.failed += still.len() as u64;
            shared.progress.batch_written(
                &col.table,
                &col.column,
                &BatchStats {
                    rows: still.len() as u64,
                    bad: still.len() as u64,
                    batch_size: batch_cap as u64,
                    ..BatchStats::default()
                },
            );
            record_bad(shared, col, summary, still).await?;
            break;
        }
        // The policy never runs out of pauses; 5 s is its longest anyway.
        let pause = pauses.next().unwrap_or(Duration::from_secs(5));
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

/// After a column: the rows recorded as bad earlier that this run did not
/// find bad are looked at again; a row that is under the primary now (it
/// rotated, or the application rewrote it), or that holds NULL or is gone,
/// has its record cleared. Returns how many were cleared.
async fn clear_mended_bad_rows(
    shared: &Shared,
    plan: &ColumnPlan,
    reported: &std::collections::HashSet<String>,
) -> Result<u64, EngineError> {
    let col = &plan.col;
    let records = shared
        .db
        .load_bad_rows(Some(&col.table), Some(&col.column))
        .await?;
    let candidates: Vec<String> = records
        .into_iter()
        .map(|r| r.pk)
        .filter(|pk| !reported.contains(pk))
        .collect();
    clear_if_mended(shared.db.as_ref(), shared.op, plan, &candidates).await
}

/// Clears the records of those of `pks` (rendered keys of bad-row records
/// of the column) whose rows are fine now: under the primary key (or, for
/// `encrypt`, encrypted), NULL, or gone.
pub(crate) async fn clear_if_mended(
    db: &dyn Database,
    op: Operation,
    plan: &ColumnPlan,
    pks: &[String],
) -> Result<u64, EngineError> {
    if pks.is_empty() {
        return Ok(0);
    }
    let col = &plan.col;
    // Records name rows by their rendered key; the keys are matched back
    // through the rows that exist.
    let wanted: std::collections::HashSet<&str> = pks.iter().map(String::as_str).collect();
    // A record whose key does not parse back (written for another key
    // type) is left for an operator.
    let parsed: Vec<Pk> = pks
        .iter()
        .filter_map(|pk| parse_pk_display(col, pk))
        .collect();
    let mut mended: Vec<String> = Vec::new();
    for chunk in parsed.chunks(500) {
        let current = db.fetch_rows(col, chunk).await?;
        let mut present: std::collections::HashMap<String, Row> = current
            .into_iter()
            .map(|r| (pk_display(&r.pk), r))
            .collect();
        let mut check = Vec::new();
        for pk in chunk {
            let shown = pk_display(pk);
            if !wanted.contains(shown.as_str()) {
                continue;
            }
            match present.remove(&shown) {
                None => mended.push(shown),
                Some(r) => check.push(r),
            }
        }
        for (r, o) in crypto_batch(op, plan, check).await? {
            if matches!(o, RowOutcome::Skip) {
                mended.push(pk_display(&r.pk));
            }
        }
    }
    if mended.is_empty() {
        return Ok(0);
    }
    Ok(db.clear_bad_rows(&col.table, &col.column, &mended).await?)
}

/// A rendered primary key ([`pk_display`]) read back in the column's key
/// kinds; `None` when it does not parse.
pub(crate) fn parse_pk_display(col: &ColumnRef, shown: &str) -> Option<Pk> {
    use keyturn_db::{PkKind, PkValue};
    let one = |kind: PkKind, s: &str| -> Option<PkValue> {
        match kind {
            PkKind::Int => s.parse().ok().map(PkValue::Int),
            PkKind::Text | PkKind::Decimal => Some(PkValue::Text(s.to_owned())),
            PkKind::Bytes => {
                let hex = s.strip_prefix("0x")?;
                if hex.len() % 2 != 0 {
                    return None;
                }
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect::<Option<Vec<u8>>>()
                    .map(PkValue::Bytes)
            }
        }
    };
    if col.pk.len() == 1 {
        return Some(vec![one(col.pk[0].kind, shown)?]);
    }
    // `(1, "eu")`: the parts as rendered, text parts as JSON strings.
    let inner = shown.strip_prefix('(')?.strip_suffix(')')?;
    let mut out = Vec::with_capacity(col.pk.len());
    let mut rest = inner;
    for (i, p) in col.pk.iter().enumerate() {
        rest = rest.trim_start();
        let (part, tail) = if rest.starts_with('"') {
            let mut de = serde_json::Deserializer::from_str(rest).into_iter::<String>();
            let s = de.next()?.ok()?;
            let used = de.byte_offset();
            (PkValue::Text(s), &rest[used..])
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            (one(p.kind, rest[..end].trim())?, &rest[end..])
        };
        out.push(match (p.kind, part) {
            (PkKind::Text | PkKind::Decimal, v @ PkValue::Text(_)) => v,
            (_, PkValue::Text(s)) => one(p.kind, &s)?,
            (_, v) => v,
        });
        rest = tail.trim_start();
        if i + 1 < col.pk.len() {
            rest = rest.strip_prefix(',')?;
        }
    }
    rest.trim().is_empty().then_some(out)
}

/// Stage 1: keyset-paginated batches in primary-key order, sent to `tx`
/// until the column is done, an error (sent, then stop), Ctrl-C, or the
/// receiver going away.
async fn read_batches(
    shared: Arc<Shared>,
    col: ColumnRef,
    mut after: Option<Pk>,
    skip: Option<Skip>,
    batch_cap: usize,
    tx: tokio::sync::mpsc::Sender<Result<Vec<Row>, EngineError>>,
) {
    let mut started = Instant::now();
    // Start small: the first batch tells how large values are.
    let mut limit = batch_cap.min(32);
    let mut emitted = 0u64;
    while !shared.stopping() {
        if let Some(rate) = shared.opts.max_rows_per_sec.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(emitted as f64 / rate as f64);
            let elapsed = started.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            } else if elapsed - due > Duration::from_secs(1) {
                // Far behind the schedule (a pause, a slow stretch): start
                // it again from now instead of catching up in a burst.
                started = Instant::now();
                emitted = 0;
            }
        }
        let db = shared.db.clone();
        let fetched = with_retry("reading a batch", shared.progress.as_ref(), || {
            db.fetch_batch(&col, after.as_deref(), skip.as_ref(), limit)
        })
        .await;
        let rows = match fetched {
            Ok(rows) if rows.is_empty() => return,
            Ok(rows) => rows,
            Err(e) => {
                let _ = tx.send(Err(EngineError::from(e))).await;
                return;
            }
        };
        after = rows.last().map(|r| r.pk.clone());
        emitted += rows.len() as u64;
        let bytes: usize = rows.iter().map(|r| r.value.len() + 64).sum();
        let avg = (bytes / rows.len()).max(1);
        limit = (BATCH_BYTES / avg)
            .clamp(1, batch_cap)
            .min(shared.batch_now.load(Ordering::Relaxed).max(1));
        if tx.send(Ok(rows)).await.is_err() {
            return;
        }
    }
}

async fn save_checkpoint(
    shared: &Shared,
    plan: &ColumnPlan,
    pk: Option<&Pk>,
    cs: &ColumnSummary,
) -> Result<(), EngineError> {
    let Some(pk) = pk else { return Ok(()) };
    // Only the lock's holder writes checkpoints: a run that lost the lock
    // leaves its last one (and the new holder's) as they are.
    shared.lock.check(shared.progress.as_ref()).await;
    if shared.lock.gone() {
        return Ok(());
    }
    let cp = Checkpoint {
        operation: shared.op.name().to_owned(),
        table: plan.col.table.clone(),
        column: plan.col.column.clone(),
        target_key: checkpoint_key(&plan.primary_id()?),
        last_pk: serde_json::to_string(pk)
            .map_err(|e| EngineError::Internal(format!("checkpoint encoding: {e}")))?,
        rows_done: cs.resumed_rows + cs.written + cs.skipped + cs.failed,
        run_id: shared.run_id.clone(),
        updated_at: now_rfc3339(),
    };
    with_retry("saving the checkpoint", shared.progress.as_ref(), || {
        shared.db.save_checkpoint(&cp)
    })
    .await?;
    Ok(())
}

/// The target key as a checkpoint records it: the key id when it fits the
/// checkpoint's column (64 characters), else `sha256:` and the first 57 hex
/// digits of its SHA-256 (a KMS key ARN is longer).
fn checkpoint_key(id: &str) -> String {
    if id.len() <= 64 {
        id.to_owned()
    } else {
        format!(
            "sha256:{}",
            &keyturn_db::value_fingerprint(id.as_bytes())[..57]
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn checkpoint_keys_fit_their_column() {
        assert_eq!(checkpoint_key("v3"), "v3");
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let k = checkpoint_key(arn);
        assert_eq!(k.len(), 64);
        assert!(k.starts_with("sha256:"), "{k}");
        assert_eq!(k, checkpoint_key(arn));
        assert_ne!(k, checkpoint_key(&arn.replace("us-east-1", "eu-west-1")));
    }

    use super::*;
    use keyturn_db::{PkColumn, PkKind, PkValue, ValueKind};

    fn col(kinds: &[PkKind]) -> ColumnRef {
        ColumnRef {
            table: "t".into(),
            pk: kinds
                .iter()
                .enumerate()
                .map(|(i, k)| PkColumn {
                    name: format!("k{i}"),
                    kind: *k,
                    sql_type: String::new(),
                })
                .collect(),
            column: "c".into(),
            kind: ValueKind::Text,
            cells: Vec::new(),
            aux: Vec::new(),
        }
    }

    #[test]
    fn adaptive_batches_move_towards_the_target() {
        let ms = Duration::from_millis;
        // 1000 rows in 400 ms, target 200 ms: shrink, by half at most.
        assert_eq!(next_batch(1000, 5000, 1000, ms(400), ms(200)), 750);
        assert_eq!(next_batch(1000, 5000, 1000, ms(4000), ms(200)), 525);
        assert_eq!(next_batch(1000, 5000, 1000, ms(400_000), ms(200)), 500);
        // Fast writes grow the batch, up to double and the cap.
        assert_eq!(next_batch(1000, 5000, 1000, ms(20), ms(200)), 2000);
        assert_eq!(next_batch(4000, 5000, 4000, ms(10), ms(200)), 5000);
        // Never below the floor, never above the cap.
        assert_eq!(next_batch(20, 5000, 20, ms(10_000), ms(200)), 16);
        assert_eq!(next_batch(8, 8, 8, ms(1), ms(200)), 8);
        // Nothing written: unchanged.
        assert_eq!(next_batch(300, 5000, 0, ms(0), ms(200)), 300);
        // On target: stays.
        assert_eq!(next_batch(1000, 5000, 1000, ms(200), ms(200)), 1000);
    }

    #[test]
    fn rendered_keys_parse_back() {
        let cases: Vec<(Vec<PkKind>, Pk)> = vec![
            (vec![PkKind::Int], vec![PkValue::Int(-42)]),
            (
                vec![PkKind::Text],
                vec![PkValue::Text("a, \"b\" (c)".into())],
            ),
            (
                vec![PkKind::Bytes],
                vec![PkValue::Bytes(vec![0, 0xff, 0x61])],
            ),
            (vec![PkKind::Decimal], vec![PkValue::Text("12.50".into())]),
            (
                vec![PkKind::Text, PkKind::Int, PkKind::Bytes, PkKind::Decimal],
                vec![
                    PkValue::Text("eu, \"x\"".into()),
                    PkValue::Int(7),
                    PkValue::Bytes(b"ab".to_vec()),
                    PkValue::Text("1.5".into()),
                ],
            ),
        ];
        for (kinds, pk) in cases {
            let c = col(&kinds);
            let shown = pk_display(&pk);
            assert_eq!(parse_pk_display(&c, &shown), Some(pk), "{shown}");
        }
        assert_eq!(parse_pk_display(&col(&[PkKind::Int]), "x"), None);
        assert_eq!(
            parse_pk_display(&col(&[PkKind::Int, PkKind::Int]), "(1, 2, 3)"),
            None
        );
    }
}
