//! A running run seen from anywhere: its live progress in `keyturn_runs`
//! (rows done and to do per column, rate, pause state, host and pid) and
//! the operator's requests in `keyturn_run_control` (`keyturn runs
//! pause|resume|stop`), applied at the next batch boundary.

use crate::EngineError;
use crate::pacing::{Pace, Pacing};
use crate::progress::{BatchStats, ProgressSink};
use keyturn_db::{Database, RunControl};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a run publishes its progress.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(2);
/// How often a run reads its operator's requests (at batch boundaries).
pub const CONTROL_EVERY: Duration = Duration::from_secs(1);

/// One column's progress, as published.
#[derive(Clone, Debug, Serialize)]
pub struct LiveColumn {
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// Values expected to need work when the column started.
    pub todo: u64,
    /// Values processed since.
    pub done: u64,
    /// Rows done by an earlier run this one resumed.
    pub resumed: u64,
    /// Values processed per second so far.
    pub rows_per_sec: f64,
    /// Seconds left at that rate (`None` before any progress).
    pub eta_seconds: Option<f64>,
    /// Whether the column is finished.
    pub finished: bool,
}

/// A run's progress, as published in `keyturn_runs.summary` while it runs.
#[derive(Clone, Debug, Serialize)]
pub struct LiveState {
    /// Always `true`: tells a live summary from a final one.
    pub live: bool,
    /// The host the run's process runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// `running`, `paused` or `stopping`.
    pub state: String,
    /// Why it is paused, when it is.
    pub paused: Option<String>,
    /// The last replica lags read, in seconds.
    pub replica_lag: Vec<(String, f64)>,
    /// Per column, in plan order.
    pub columns: Vec<LiveColumn>,
    /// When this was published (keyturn's timestamp format).
    pub updated_at: String,
}

struct Col {
    table: String,
    column: String,
    todo: u64,
    done: u64,
    resumed: u64,
    started: Instant,
    finished: bool,
}

/// Wraps the caller's progress sink, keeping what [`LiveState`] needs.
pub(crate) struct LiveProgress {
    inner: Arc<dyn ProgressSink>,
    host: String,
    cols: Mutex<Vec<Col>>,
    paused: Mutex<Option<String>>,
    lags: Mutex<Vec<(String, f64)>>,
    stopping: Mutex<bool>,
}

impl LiveProgress {
    pub(crate) fn new(inner: Arc<dyn ProgressSink>) -> LiveProgress {
        LiveProgress {
            inner,
            host: keyturn_db::host_name(),
            cols: Mutex::new(Vec::new()),
            paused: Mutex::new(None),
            lags: Mutex::new(Vec::new()),
            stopping: Mutex::new(false),
        }
    }

    pub(crate) fn set_stopping(&self) {
        if let Ok(mut s) = self.stopping.lock() {
            *s = true;
        }
    }

    pub(crate) fn snapshot(&self) -> LiveState {
        let columns = self
            .cols
            .lock()
            .map(|cols| {
                cols.iter()
                    .map(|c| {
                        let secs = c.started.elapsed().as_secs_f64();
                        let rate = if secs > 0.0 {
                            c.done as f64 / secs
                        } else {
                            0.0
                        };
                        LiveColumn {
                            table: c.table.clone(),
                            column: c.column.clone(),
                            todo: c.todo,
                            done: c.done,
                            resumed: c.resumed,
                            rows_per_sec: rate,
                            eta_seconds: (rate > 0.0 && !c.finished)
                                .then(|| c.todo.saturating_sub(c.done) as f64 / rate),
                            finished: c.finished,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let paused = self.paused.lock().ok().and_then(|p| p.clone());
        let stopping = self.stopping.lock().map(|s| *s).unwrap_or(false);
        LiveState {
            live: true,
            host: self.host.clone(),
            pid: std::process::id(),
            state: if stopping {
                "stopping"
            } else if paused.is_some() {
                "paused"
            } else {
                "running"
            }
            .into(),
            paused,
            replica_lag: self.lags.lock().map(|l| l.clone()).unwrap_or_default(),
            columns,
            updated_at: keyturn_db::ts::now_text(),
        }
    }
}

impl ProgressSink for LiveProgress {
    fn column_started(&self, table: &str, column: &str, todo: u64, resumed_from: u64) {
        if let Ok(mut cols) = self.cols.lock() {
            cols.push(Col {
                table: table.into(),
                column: column.into(),
                todo,
                done: 0,
                resumed: resumed_from,
                started: Instant::now(),
                finished: false,
            });
        }
        self.inner.column_started(table, column, todo, resumed_from);
    }

    fn advanced(&self, table: &str, column: &str, processed: u64) {
        if let Ok(mut cols) = self.cols.lock()
            && let Some(c) = cols
                .iter_mut()
                .rev()
                .find(|c| c.table == table && c.column == column)
        {
            c.done += processed;
        }
        self.inner.advanced(table, column, processed);
    }

    fn column_finished(&self, table: &str, column: &str) {
        if let Ok(mut cols) = self.cols.lock()
            && let Some(c) = cols
                .iter_mut()
                .rev()
                .find(|c| c.table == table && c.column == column)
        {
            c.finished = true;
        }
        self.inner.column_finished(table, column);
    }

    fn note(&self, message: &str) {
        self.inner.note(message);
    }

    fn batch_written(&self, table: &str, column: &str, batch: &BatchStats) {
        self.inner.batch_written(table, column, batch);
    }

    fn run_started(&self, run_id: &str, lock_held: bool) {
        self.inner.run_started(run_id, lock_held);
    }

    fn lock_released(&self) {
        self.inner.lock_released();
    }

    fn replica_lag(&self, replica: &str, lag: Duration) {
        if let Ok(mut l) = self.lags.lock() {
            match l.iter_mut().find(|(n, _)| n == replica) {
                Some(e) => e.1 = lag.as_secs_f64(),
                None => l.push((replica.to_owned(), lag.as_secs_f64())),
            }
        }
        self.inner.replica_lag(replica, lag);
    }

    fn lock_lost(&self) {
        self.inner.lock_lost();
    }

    fn paused(&self, why: Option<&str>) {
        if let Ok(mut p) = self.paused.lock() {
            *p = why.map(str::to_owned);
        }
        self.inner.paused(why);
    }
}

/// Publishes `live` into the run's record every [`PUBLISH_EVERY`] until
/// dropped (a failed write is retried at the next tick: the run goes on).
pub(crate) async fn publish(db: Arc<dyn Database>, run_id: String, live: Arc<LiveProgress>) {
    loop {
        if let Ok(json) = serde_json::to_string(&live.snapshot())
            && let Err(e) = db.update_run_progress(&run_id, &json).await
        {
            tracing::debug!("publishing the run's progress: {e}");
        }
        tokio::time::sleep(PUBLISH_EVERY).await;
    }
}

/// The operator's requests for one run, read at most every
/// [`CONTROL_EVERY`].
#[derive(Debug)]
pub(crate) struct ControlGate {
    db: Arc<dyn Database>,
    run_id: String,
    read: tokio::sync::Mutex<Option<(Instant, Option<RunControl>)>>,
}

impl ControlGate {
    pub(crate) fn new(db: Arc<dyn Database>, run_id: String) -> ControlGate {
        ControlGate {
            db,
            run_id,
            read: tokio::sync::Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl Pacing for ControlGate {
    async fn check(&self) -> Result<Pace, EngineError> {
        let mut read = self.read.lock().await;
        let fresh = read
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < CONTROL_EVERY);
        if !fresh {
            // A failed read leaves the run as it was; the next one tries again.
            let got = match self.db.run_control(&self.run_id).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("reading keyturn_run_control: {e}");
                    read.as_ref().and_then(|(_, c)| c.clone())
                }
            };
            *read = Some((Instant::now(), got));
        }
        let control = read.as_ref().and_then(|(_, c)| c.clone());
        Ok(match control {
            Some(c) if c.action == "pause" => Pace::Wait(format!(
                "paused by {} at {} (`keyturn runs resume {}` goes on)",
                c.actor, c.requested_at, self.run_id
            )),
            Some(c) if c.action == "stop" => Pace::Stop(format!(
                "stop requested by {} at {}",
                c.actor, c.requested_at
            )),
            _ => Pace::Go,
        })
    }
}
