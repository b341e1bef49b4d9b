//! `keyturn runs`: running and recent runs, from keyturn's tables (so from
//! any host that reaches the database), and an operator's pause, resume
//! and stop, applied by the running process at its next batch boundary.

use crate::OpsError;
use keyturn_audit::{AuditAction, NewEvent, Outcome};
use keyturn_db::{Database, RunControl};
use keyturn_engine::EngineError;
use serde::Serialize;

/// One run as `keyturn runs` shows it.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct RunView {
    /// The run's id.
    pub run_id: String,
    /// `rotate` or `encrypt`.
    pub operation: String,
    /// Who started it.
    pub actor: String,
    /// When it started.
    pub started_at: String,
    /// When it ended, if it has.
    pub finished_at: Option<String>,
    /// `running`, `interrupted` (its process is gone), or how it ended
    /// (`ok`, `completed_with_errors`, `failed`, …).
    pub state: String,
    /// While it runs: its live progress (host, pid, per column rows done and
    /// to do, rate, ETA, pause state), as it published it.
    pub progress: Option<serde_json::Value>,
    /// Once ended: its summary (per column: written, skipped, retried,
    /// failed, resumed rows, seconds).
    pub summary: Option<serde_json::Value>,
    /// The latest operator request for it (pause, resume, stop).
    pub control: Option<RunControl>,
}

/// The `limit` most recent runs, newest first, running ones judged live or
/// interrupted by who holds the rotation lock.
pub async fn list(db: &dyn Database, limit: usize) -> Result<Vec<RunView>, OpsError> {
    let open = keyturn_db::open_runs(db).await?;
    let mut out = Vec::new();
    for r in db.recent_runs(limit).await? {
        let state = match open.iter().find(|o| o.run_id == r.run_id) {
            Some(o) => o.state.clone(),
            None => r.outcome.clone(),
        };
        let parsed: Option<serde_json::Value> = serde_json::from_str(&r.summary).ok();
        let live = parsed
            .as_ref()
            .is_some_and(|v| v.get("live").and_then(serde_json::Value::as_bool) == Some(true));
        let control = if r.outcome == "running" {
            db.run_control(&r.run_id).await?
        } else {
            None
        };
        out.push(RunView {
            run_id: r.run_id,
            operation: r.operation,
            actor: r.actor,
            started_at: r.started_at,
            finished_at: r.finished_at,
            state,
            progress: if live { parsed.clone() } else { None },
            summary: if live {
                None
            } else {
                parsed.filter(|v| match v {
                    serde_json::Value::Object(o) => !o.is_empty(),
                    serde_json::Value::Array(a) => !a.is_empty(),
                    _ => false,
                })
            },
            control,
        });
    }
    Ok(out)
}

/// What an operator may ask of a running run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// Stop writing at the next batch boundary until resumed.
    Pause,
    /// Go on after a pause.
    Resume,
    /// End the run like Ctrl-C: the batches in flight finish, the
    /// checkpoint is saved, the run is resumable.
    Stop,
}

impl Control {
    /// `pause`, `resume` or `stop`.
    pub fn name(self) -> &'static str {
        match self {
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Stop => "stop",
        }
    }
}

/// Records `control` for the run `run_id` (or, without it, for the one run
/// that is running now), audited as `run.control`. Refused when that run is
/// not running.
pub async fn control(
    db: &dyn Database,
    run_id: Option<&str>,
    control: Control,
    actor: &str,
) -> Result<RunControl, OpsError> {
    let running: Vec<_> = keyturn_db::open_runs(db)
        .await?
        .into_iter()
        .filter(|r| r.state == "running")
        .collect();
    let run_id = match run_id {
        Some(id) => {
            if !running.iter().any(|r| r.run_id == id) {
                return Err(EngineError::Usage(format!(
                    "run {} is not running (see `keyturn runs`)",
                    keyturn_format::shown(id)
                ))
                .into());
            }
            id.to_owned()
        }
        None => match running.as_slice() {
            [one] => one.run_id.clone(),
            [] => {
                return Err(
                    EngineError::Usage("no run is running (see `keyturn runs`)".into()).into(),
                );
            }
            _ => {
                return Err(EngineError::Usage(
                    "several runs are recorded as running; name one (see `keyturn runs`)".into(),
                )
                .into());
            }
        },
    };
    let request = RunControl {
        run_id: run_id.clone(),
        action: control.name().to_owned(),
        actor: actor.to_owned(),
        requested_at: keyturn_db::ts::now_text(),
    };
    let done = db.request_run_control(&request).await;
    let ev = NewEvent::new(
        AuditAction::RunControl,
        actor,
        if done.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Failed
        },
    )
    .run_id(Some(&run_id))
    .detail("action", control.name());
    let recorded = keyturn_audit::append(db, &ev).await;
    done?;
    recorded
        .map_err(|e| OpsError::step("the request was recorded, but not in the audit trail", e))?;
    Ok(request)
}
