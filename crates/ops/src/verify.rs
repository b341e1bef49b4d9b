//! `status` and `verify` as operations.

use crate::{OpsError, Session};
use keyturn_audit::{AuditAction, ColumnCounts, NewEvent, Outcome};
use keyturn_db::OpenRun;
use keyturn_engine::verify::VerifyReport;
use keyturn_engine::{EngineError, ProgressSink, StatusOptions, StatusReport, VerifyOptions};
use std::time::Instant;

/// What `status` found.
#[derive(Debug)]
pub struct Status {
    /// The counts per column (flagged where rows are under compromised keys).
    pub report: StatusReport,
    /// Runs `keyturn_runs` still says are running: live, or interrupted.
    /// An error when keyturn's tables cannot be read (a login that may read
    /// the data but not keyturn's tables still gets the counts).
    pub runs: Result<Vec<OpenRun>, OpsError>,
}

/// Counts every selected column's values per key (`deep`: by decrypting
/// the values whose key SQL cannot read).
pub async fn status(session: &Session, deep: bool) -> Result<Status, OpsError> {
    let opts = StatusOptions {
        deep,
        batch_size: session.cfg.rotation.batch_size,
    };
    let mut report =
        keyturn_engine::status::status(session.db.as_ref(), &session.plan, &opts).await?;
    flag_compromised(session, &mut report).await?;
    let runs = keyturn_db::open_runs(session.db.as_ref())
        .await
        .map_err(OpsError::from);
    Ok(Status { report, runs })
}

/// A warning per column that still has rows under a compromised catalog
/// key, and one if the primary itself is compromised.
async fn flag_compromised(session: &Session, report: &mut StatusReport) -> Result<(), OpsError> {
    let compromised = crate::session::compromised_ids(&session.cfg, &session.db).await?;
    for c in &report.columns {
        for k in &c.by_key {
            if k.rows > 0 && compromised.contains(&k.key_id) {
                report.warnings.push(format!(
                    "COMPROMISED key {:?}: {} rows of {}.{} are still under it; run `keyturn rotate` now",
                    k.key_id, k.rows, c.table, c.column
                ));
            }
        }
    }
    for k in &compromised {
        if report.columns.iter().any(|col| &col.current_key_id == k) {
            report.warnings.push(format!(
                "COMPROMISED key {k:?} is the current key: `keyturn keys add`, `keyturn keys promote` a new key, then rotate"
            ));
        }
    }
    Ok(())
}

/// What `verify` found.
#[derive(Debug)]
pub struct Verified {
    /// The verdict and the failing rows.
    pub report: VerifyReport,
    /// The result could not be recorded in the audit trail (a read-only
    /// login): the verdict stands.
    pub record_error: Option<OpsError>,
}

/// Checks that every value is under its column's primary key (`deep`: by
/// decrypting each one), records odd rows in `keyturn_bad_rows` and the
/// verdict in the audit trail unless `record` is false.
pub async fn verify(
    session: &Session,
    actor: &str,
    deep: bool,
    record: bool,
    progress: &dyn ProgressSink,
) -> Result<Verified, OpsError> {
    let at = Instant::now();
    let report = keyturn_engine::verify::verify(
        session.db.as_ref(),
        &session.plan,
        &VerifyOptions {
            deep,
            batch_size: session.cfg.rotation.batch_size,
            // Odd rows found go to keyturn_bad_rows, records of rows that
            // verify now are cleared; not with --no-record.
            record,
            run_id: keyturn_engine::run::new_run_id(),
        },
        progress,
    )
    .await;
    let recorded = if record {
        record_verify(session, actor, deep, at, &report).await
    } else {
        Ok(())
    };
    match report {
        Ok(report) => Ok(Verified {
            report,
            record_error: recorded.err(),
        }),
        Err(e) => match recorded {
            Ok(()) => Err(e.into()),
            Err(r) => Err(OpsError::step(
                format!("verify failed, and so did recording it ({r})"),
                e,
            )),
        },
    }
}

/// Appends a `verify` event (outcome ok / mismatch, or failed on an error).
async fn record_verify(
    session: &Session,
    actor: &str,
    deep: bool,
    at: Instant,
    report: &Result<VerifyReport, EngineError>,
) -> Result<(), OpsError> {
    let primary = session.plan.current_key_ids().join(",");
    let mut ev = NewEvent::new(AuditAction::Verify, actor, Outcome::Failed)
        .keys([primary])
        .duration_ms(at.elapsed().as_millis().min(u128::from(u64::MAX)) as u64)
        .detail("deep", deep);
    match report {
        Ok(r) => {
            ev.outcome = if r.ok { Outcome::Ok } else { Outcome::Mismatch };
            ev.columns = r
                .columns
                .iter()
                .map(|c| {
                    ColumnCounts::new(&c.table, &c.column)
                        .count("checked", c.checked)
                        .count("under_current", c.under_current)
                        .count("failing", c.failing)
                })
                .collect();
        }
        Err(e) => ev = ev.detail("error", e.to_string()),
    }
    keyturn_audit::append(session.db.as_ref(), &ev)
        .await
        .map_err(|e| {
            OpsError::step(
                "verify ran, but its result could not be recorded in the audit trail",
                e,
            )
        })?;
    Ok(())
}
