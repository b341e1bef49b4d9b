//! Runs recorded as `running` in `keyturn_runs`, and whether each one is
//! live or was interrupted, judged by who holds the rotation lock now.

use crate::{Database, DbError};
use serde::Serialize;

/// A run whose record still says `running`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OpenRun {
    /// The run's id ([`crate::RunRecord::run_id`]).
    pub run_id: String,
    /// `rotate` or `encrypt`, as the run recorded it.
    pub operation: String,
    /// Who started the run.
    pub actor: String,
    /// When the run started (keyturn's timestamp format, [`crate::ts`]).
    pub started_at: String,
    /// `running` (it holds the rotation lock) or `interrupted` (nobody
    /// holds the lock, or another run does: its process is gone, and the
    /// next `rotate` or `encrypt` records it so).
    pub state: String,
}

/// The runs whose record says `running`, each found running or
/// interrupted by who holds the rotation lock now. Reads only: the lock is
/// not taken and nothing is written.
pub async fn open_runs(db: &dyn Database) -> Result<Vec<OpenRun>, DbError> {
    let runs = db.running_runs().await?;
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let lock = db.lock_status().await?;
    Ok(runs
        .into_iter()
        .map(|r| {
            let live = match &lock {
                // A holder without a token (an older keyturn) cannot be
                // told apart from the run: assume it is that run.
                Some(l) => l.token.as_ref().is_none_or(|t| *t == r.run_id),
                None => false,
            };
            OpenRun {
                state: if live { "running" } else { "interrupted" }.into(),
                run_id: r.run_id,
                operation: r.operation,
                actor: r.actor,
                started_at: r.started_at,
            }
        })
        .collect())
}
