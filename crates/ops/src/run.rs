//! `rotate` and `encrypt` as one audited operation: the lock and the run
//! record, the runs a gone process left `running`, one census, compromised
//! keys first, the audit start event, the work, the end event, and the
//! webhook.
//!
//! The order makes a killed run leave a trace from its first moment: the
//! lock and the `running` record, then runs a gone process left `running`
//! recorded as interrupted, the census, the start event (with the run id
//! and the counts), the work, the end event. Dry runs are not recorded
//! (not even an audit event): `--dry-run` writes nothing at all.

use crate::{OpsError, Session};
use keyturn_audit::notify::{self, Message, NotifyFormat};
use keyturn_audit::{AuditAction, ColumnCounts, NewEvent, Outcome};
use keyturn_engine::{
    EngineError, Operation, ProgressSink, Run, RunOptions, RunOutcome, RunSummary,
};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// What a run records besides its counts, and where it announces itself.
#[derive(Clone, Debug)]
pub struct RunAudit {
    /// Why the run happens (`scheduled`, `compromise`, …), in the audit
    /// trail.
    pub reason: Option<String>,
    /// A webhook to post the summary to when the run ends.
    pub notify: Option<String>,
    /// The webhook body's format.
    pub notify_format: NotifyFormat,
}

impl Default for RunAudit {
    fn default() -> Self {
        RunAudit {
            reason: None,
            notify: None,
            notify_format: NotifyFormat::Slack,
        }
    }
}

impl RunAudit {
    /// Checks the options before anything runs.
    pub fn check(&self) -> Result<(), OpsError> {
        if self.reason.as_ref().is_some_and(|r| r.trim().is_empty()) {
            return Err(EngineError::Usage("--reason must not be empty".into()).into());
        }
        Ok(())
    }
}

/// How a finished run stands, for its caller's exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Every value done.
    Done,
    /// Done, with bad rows named.
    BadRows,
    /// Stopped early (Ctrl-C, a closed pipe): resumable.
    Interrupted,
    /// Another run took the rotation lock: resumable.
    LockLost,
}

/// A run that went to its end (possibly an early, resumable one).
#[derive(Debug)]
pub struct RunReport {
    /// The engine's summary.
    pub summary: RunSummary,
    /// What the operation did besides the work: runs it recorded as
    /// interrupted, columns it moved first for compromised keys (each also
    /// sent to the progress sink's `note` when it happened).
    pub notes: Vec<String>,
    /// The run's end could not be recorded in the audit trail (the work
    /// itself is done and in `keyturn_runs`).
    pub record_error: Option<OpsError>,
    /// The webhook could not be reached.
    pub notify_error: Option<String>,
    /// Columns that may still hold rows under a compromised key after the
    /// run (`table.column`, key id, rows counted before the run): their
    /// rows failed, or the run stopped early.
    pub compromised_left: Vec<(String, String, u64)>,
}

impl RunReport {
    /// How the run stands.
    pub fn verdict(&self) -> Verdict {
        match self.summary.outcome {
            RunOutcome::LockLost => Verdict::LockLost,
            RunOutcome::Interrupted => Verdict::Interrupted,
            _ if self.summary.interrupted => Verdict::Interrupted,
            _ if self.summary.failed() > 0 => Verdict::BadRows,
            _ => Verdict::Done,
        }
    }
}

/// Runs `op` over the session's plan with `opts`, recorded in
/// `keyturn_runs` and the audit trail alike and announced per `audit`.
/// `progress` receives the counts as they go; setting `stop` ends the run
/// at the next batch boundary, its checkpoint saved.
///
/// An `Err` is a run that did not reach its end: refused before any value
/// changed (lock held, preflight, a failed start record), or stopped by an
/// error; both are recorded as failed where the database allows it.
pub async fn run(
    session: &mut Session,
    op: Operation,
    opts: RunOptions,
    audit: &RunAudit,
    progress: Arc<dyn ProgressSink>,
    stop: Arc<AtomicBool>,
) -> Result<RunReport, OpsError> {
    audit.check()?;
    let compromised = if op == Operation::Rotate {
        crate::session::compromised_ids(&session.cfg, &session.db).await?
    } else {
        Vec::new()
    };
    refuse_compromised_primary(session, &compromised)?;
    let mut run = Run::begin(session.db.clone(), op, opts.clone()).await?;
    run.target_batch_time(session.cfg.rotation.target_batch());
    let run_id = run.run_id().to_owned();
    let mut notes = Vec::new();
    // One count per column serves the audit's start event, the preflight,
    // the progress totals and the compromised-key order.
    let prepared = async {
        if !opts.dry_run
            && let Some(gate) = replica_gate(session, progress.as_ref()).await?
        {
            run.pace_with(gate);
        }
        record_interrupted(session, &run, &mut notes, progress.as_ref()).await?;
        let census = keyturn_engine::run::census(session.db.as_ref(), &session.plan).await?;
        let census =
            put_compromised_first(session, census, &compromised, &mut notes, progress.as_ref());
        let started = run_started(session, op, &opts, audit, &census, &run_id).await?;
        Ok::<_, OpsError>((census, started))
    }
    .await;
    let (census, started) = match prepared {
        Ok(p) => p,
        Err(e) => {
            // Failed before any value changed: recorded as such in
            // keyturn_runs and the audit trail.
            notes.extend(run.abandon().await);
            if let Err(a) = run_finished(session, op, &opts, audit, &run_id, None, Err(&e)).await {
                return Err(OpsError::step(
                    format!("this failed, and so did recording it ({a})"),
                    e,
                ));
            }
            return Err(e);
        }
    };
    let under_compromised = compromised_counts(session, &census, &compromised);
    let result = run.execute(&session.plan, census, progress, stop).await;
    let result = result.map_err(OpsError::from);
    let recorded = run_finished(session, op, &opts, audit, &run_id, started, result.as_ref()).await;
    let summary = result?;
    let notify_error = if summary.dry_run {
        None
    } else {
        notify_run(session, audit, &summary).await
    };
    let compromised_left = if summary.dry_run {
        Vec::new()
    } else {
        left_under(&summary, under_compromised)
    };
    Ok(RunReport {
        summary,
        notes,
        record_error: recorded.err(),
        notify_error,
        compromised_left,
    })
}

// ---------------------------------------------------------- replicas

/// The replica-lag gate of `rotation.max_replica_lag`, connected and read
/// once (a lag that cannot be read refuses the run before any write).
async fn replica_gate(
    session: &Session,
    progress: &dyn ProgressSink,
) -> Result<Option<Arc<dyn keyturn_engine::pacing::Pacing>>, OpsError> {
    let rotation = &session.cfg.rotation;
    let Some(max) = rotation.max_replica_lag() else {
        return Ok(None);
    };
    let url = &session.cfg.database.url;
    let pg = url.starts_with("postgres");
    if !pg && rotation.replicas.is_empty() {
        return Err(EngineError::Config(
            "rotation.max_replica_lag: on MariaDB/MySQL and SQLite keyturn cannot find replicas itself; list them in rotation.replicas".into(),
        )
        .into());
    }
    let specs: Vec<_> = rotation.replicas.iter().map(|r| r.spec()).collect();
    let watch = keyturn_db::replicas::ReplicaWatch::connect(url, &specs, pg).await?;
    let gate = keyturn_engine::pacing::LagGate::new(max, watch);
    let lags = gate.lags().await?;
    if lags.is_empty() {
        progress.note(
            "rotation.max_replica_lag: no replica found (pg_stat_replication is empty and none is listed in rotation.replicas); nothing to wait for",
        );
    } else {
        progress.note(&format!(
            "watching replica lag (max {:.1} s): {}",
            max.as_secs_f64(),
            lags.iter()
                .map(|(n, l)| format!("{n} {:.1} s", l.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Some(Arc::new(gate)))
}

// ---------------------------------------------------------- compromised

/// Refuses to rotate onto a compromised primary.
fn refuse_compromised_primary(session: &Session, compromised: &[String]) -> Result<(), OpsError> {
    for c in &session.plan.columns {
        let primary = c.primary_id()?;
        if compromised.contains(&primary) {
            return Err(EngineError::Config(format!(
                "the current key {primary:?} is marked compromised: add and promote a new key before rotating"
            ))
            .into());
        }
    }
    Ok(())
}

/// Rows per column under a compromised key, from the census.
fn compromised_weight(counts: &keyturn_db::ColumnCounts, compromised: &[String]) -> u64 {
    counts
        .by_key
        .iter()
        .filter(|k| compromised.contains(&k.key_id))
        .map(|k| k.rows)
        .sum()
}

/// Moves the columns with rows under compromised keys to the front (most
/// such rows first), with their census counts: the run's own census, no
/// extra scan.
fn put_compromised_first(
    session: &mut Session,
    census: Vec<keyturn_db::ColumnCounts>,
    compromised: &[String],
    notes: &mut Vec<String>,
    progress: &dyn ProgressSink,
) -> Vec<keyturn_db::ColumnCounts> {
    if compromised.is_empty() {
        return census;
    }
    let mut cols: Vec<_> = session.plan.columns.drain(..).zip(census).collect();
    cols.sort_by_key(|(_, counts)| std::cmp::Reverse(compromised_weight(counts, compromised)));
    let mut census = Vec::with_capacity(cols.len());
    for (col, counts) in cols {
        let w = compromised_weight(&counts, compromised);
        if w > 0 {
            let note = format!(
                "compromised key: {w} rows of {} are rotated first",
                col.label()
            );
            progress.note(&note);
            notes.push(note);
        }
        session.plan.columns.push(col);
        census.push(counts);
    }
    census
}

/// `(table.column, key id, rows)` under compromised keys before the run.
fn compromised_counts(
    session: &Session,
    census: &[keyturn_db::ColumnCounts],
    compromised: &[String],
) -> Vec<(String, String, String, u64)> {
    let mut out = Vec::new();
    for (c, counts) in session.plan.columns.iter().zip(census) {
        for k in &counts.by_key {
            if k.rows > 0 && compromised.contains(&k.key_id) {
                out.push((
                    c.col.table.clone(),
                    c.col.column.clone(),
                    k.key_id.clone(),
                    k.rows,
                ));
            }
        }
    }
    out
}

/// The compromised rows a run may have left: in columns where rows failed,
/// or all of them when the run stopped early. A run that went to its end
/// rewrote every other value it could decrypt under the primary.
fn left_under(
    summary: &RunSummary,
    before: Vec<(String, String, String, u64)>,
) -> Vec<(String, String, u64)> {
    before
        .into_iter()
        .filter(|(table, column, _, _)| {
            summary.interrupted
                || summary
                    .columns
                    .iter()
                    .any(|c| &c.table == table && &c.column == column && c.failed > 0)
        })
        .map(|(t, c, k, n)| (format!("{t}.{c}"), k, n))
        .collect()
}

// ---------------------------------------------------------- audit hooks

/// What the start event recorded, for the end event.
struct RunStarted {
    seq: u64,
    at: Instant,
    from_keys: Vec<String>,
}

/// Appends `rotate.start` / `encrypt.start` with the run id and the values
/// per key id before the run. Nothing for a dry run. An error here stops
/// the command before any value changes: no unrecorded rotation.
async fn run_started(
    session: &Session,
    op: Operation,
    opts: &RunOptions,
    audit: &RunAudit,
    census: &[keyturn_db::ColumnCounts],
    run_id: &str,
) -> Result<Option<RunStarted>, OpsError> {
    if opts.dry_run {
        return Ok(None);
    }
    let at = Instant::now();
    let primary = session.plan.current_key_ids().join(",");
    let mut columns = Vec::new();
    let mut from: Vec<String> = Vec::new();
    let mut keyring: Vec<String> = Vec::new();
    for (c, counts) in session.plan.columns.iter().zip(census) {
        let col_primary = c.primary_id()?;
        match &c.ring {
            Some(ring) => {
                for (id, _, _) in ring.keys() {
                    if !keyring.contains(&id.to_string()) {
                        keyring.push(id.to_string());
                    }
                }
            }
            // Keys inside a KMS: the target is the one the run knows.
            None => {
                if !keyring.contains(&col_primary) {
                    keyring.push(col_primary.clone());
                }
            }
        }
        let mut cc = ColumnCounts::new(&c.col.table, &c.col.column)
            .count("values", counts.total - counts.nulls);
        for k in &counts.by_key {
            if k.key_id != col_primary && !from.contains(&k.key_id) {
                from.push(k.key_id.clone());
            }
            cc.by_key.insert(k.key_id.clone(), k.rows);
        }
        // Values of the format without a key id (decided by decryption),
        // and values that are not of the format at all.
        if counts.keyless > 0 {
            cc.counts.insert("keyless".into(), counts.keyless);
        }
        if counts.unrecognized > 0 {
            cc.counts.insert("unrecognized".into(), counts.unrecognized);
        }
        columns.push(cc);
    }
    from.sort();
    let action = match op {
        Operation::Rotate => AuditAction::RotateStart,
        Operation::Encrypt => AuditAction::EncryptStart,
    };
    let ev = NewEvent::new(action, &opts.actor, Outcome::Started)
        .reason(audit.reason.as_deref().map(str::trim))
        .run_id(Some(run_id))
        .keys(std::iter::once(primary.clone()).chain(from.iter().cloned()))
        .columns(columns)
        .detail("target_key", primary)
        .detail("keyring", keyring)
        .detail("batch_size", opts.batch_size as u64)
        .detail("workers", opts.workers as u64)
        .detail("host", crate::host_name())
        .detail("pid", u64::from(std::process::id()))
        .detail("keyturn_version", env!("CARGO_PKG_VERSION"));
    let stored = keyturn_audit::append(session.db.as_ref(), &ev)
        .await
        .map_err(|e| {
            OpsError::step(
                "recording the start of the run in the audit trail (nothing was changed)",
                e,
            )
        })?;
    Ok(Some(RunStarted {
        seq: stored.seq,
        at,
        from_keys: from,
    }))
}

/// Appends `rotate.end` / `encrypt.end` with the outcome and counts, the
/// same outcome `keyturn_runs` holds for the run: the summary's, or
/// `failed` with the error (also for a run that failed before its start
/// event, `started` then `None`). Nothing for a dry run.
async fn run_finished(
    session: &Session,
    op: Operation,
    opts: &RunOptions,
    audit: &RunAudit,
    run_id: &str,
    started: Option<RunStarted>,
    result: Result<&RunSummary, &OpsError>,
) -> Result<(), OpsError> {
    if opts.dry_run {
        return Ok(());
    }
    let action = match op {
        Operation::Rotate => AuditAction::RotateEnd,
        Operation::Encrypt => AuditAction::EncryptEnd,
    };
    let written = match op {
        Operation::Rotate => "rotated",
        Operation::Encrypt => "encrypted",
    };
    let primary = session.plan.current_key_ids().join(",");
    let from_keys = started
        .as_ref()
        .map(|st| st.from_keys.clone())
        .unwrap_or_default();
    let mut ev = NewEvent::new(action, &opts.actor, Outcome::Failed)
        .reason(audit.reason.as_deref().map(str::trim))
        .run_id(Some(run_id))
        .keys(std::iter::once(primary.clone()).chain(from_keys));
    if let Some(st) = &started {
        ev = ev
            .duration_ms(st.at.elapsed().as_millis().min(u128::from(u64::MAX)) as u64)
            .detail("start_seq", st.seq);
    }
    match result {
        Ok(s) => {
            ev.outcome = Outcome::parse(s.outcome.as_str());
            ev.columns = s
                .columns
                .iter()
                .map(|c| {
                    ColumnCounts::new(&c.table, &c.column)
                        .count(written, c.written)
                        .count("skipped", c.skipped)
                        .count("retried", c.retried)
                        .count("failed", c.failed)
                        .count("resumed", c.resumed_rows)
                })
                .collect();
            ev = ev.detail("rows_per_sec", s.rows_per_sec.round() as u64);
            if s.lock_retaken > 0 {
                ev = ev.detail("lock_retaken", u64::from(s.lock_retaken));
            }
            if let Some(l) = &s.lock_lost {
                ev = ev
                    .detail("lock_holder", l.holder.clone())
                    .detail("lock_holder_since", l.since.clone());
            }
            if !s.warnings.is_empty() {
                ev = ev.detail("warnings", s.warnings.clone());
            }
        }
        Err(e) => {
            ev = ev
                .detail("error_kind", e.kind())
                .detail("error", e.to_string());
        }
    }
    let start = match &started {
        Some(st) => format!("the start is event #{}", st.seq),
        None => format!("run {run_id}"),
    };
    keyturn_audit::append(session.db.as_ref(), &ev)
        .await
        .map_err(|e| {
            OpsError::step(
                format!(
                    "the {} ran, but its end could not be recorded in the audit trail ({start})",
                    op.name()
                ),
                e,
            )
        })?;
    Ok(())
}

/// Records the runs a gone process left `running` (found by `run` when it
/// took the lock) as interrupted: first a `run.interrupted` event each,
/// then the run's record, so a failure leaves the two in agreement (the
/// next run tries again).
async fn record_interrupted(
    session: &Session,
    run: &Run,
    notes: &mut Vec<String>,
    progress: &dyn ProgressSink,
) -> Result<(), OpsError> {
    for stale in run.stale_runs() {
        let ev = NewEvent::new(
            AuditAction::RunInterrupted,
            &stale.actor,
            Outcome::Interrupted,
        )
        .run_id(Some(&stale.run_id))
        .detail("operation", stale.operation.clone())
        .detail("started_at", stale.started_at.clone())
        .detail("recorded_by_run", run.run_id());
        keyturn_audit::append(session.db.as_ref(), &ev)
            .await
            .map_err(|e| {
                OpsError::step(
                    "recording an interrupted run in the audit trail (nothing was changed)",
                    e,
                )
            })?;
        run.mark_interrupted(stale).await?;
        let note = format!(
            "{} run {} (started {} by {}) ended without a record of its end (killed, or its machine lost); recorded as interrupted",
            stale.operation, stale.run_id, stale.started_at, stale.actor
        );
        progress.note(&format!("note: {note}"));
        notes.push(note);
    }
    Ok(())
}

/// Posts the run summary if the audit options name a webhook. Returns the
/// error if delivery failed.
async fn notify_run(session: &Session, audit: &RunAudit, summary: &RunSummary) -> Option<String> {
    let url = audit.notify.as_deref().filter(|u| !u.is_empty())?;
    let msg = Message::from_run(
        &crate::notify::run_notice(summary),
        &keyturn_db::redact_url(&session.cfg.database.url),
        &crate::host_name(),
    );
    notify::post(url, &msg.payload(audit.notify_format))
        .await
        .err()
        .map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_engine::ColumnSummary;

    fn summary(failed: u64, interrupted: bool) -> RunSummary {
        RunSummary {
            operation: Operation::Rotate,
            run_id: "r".into(),
            dry_run: false,
            current_key_id: "k2".into(),
            columns: vec![ColumnSummary {
                table: "t".into(),
                column: "a".into(),
                failed,
                ..Default::default()
            }],
            bad_rows: Vec::new(),
            bad_rows_truncated: false,
            unusable_keys: Vec::new(),
            interrupted,
            seconds: 0.0,
            rows_per_sec: 0.0,
            outcome: RunOutcome::Ok,
            lock_retaken: 0,
            lock_lost: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn compromised_rows_left_only_where_the_run_could_not_finish() {
        let before = || vec![("t".into(), "a".into(), "k1".into(), 5)];
        assert!(left_under(&summary(0, false), before()).is_empty());
        assert_eq!(
            left_under(&summary(2, false), before()),
            vec![("t.a".to_string(), "k1".to_string(), 5)]
        );
        assert_eq!(left_under(&summary(0, true), before()).len(), 1);
    }

    #[test]
    fn an_empty_reason_is_refused() {
        let a = RunAudit {
            reason: Some("  ".into()),
            ..Default::default()
        };
        assert!(matches!(
            a.check().unwrap_err().engine(),
            Some(EngineError::Usage(_))
        ));
    }
}
