//! How the engine reports progress: the CLI draws bars or log lines.

/// Receives progress from a running operation. All methods have empty
/// defaults so a caller implements only what it shows.
pub trait ProgressSink: Send + Sync {
    /// A column starts; `todo` is the number of values expected to need work.
    fn column_started(&self, _table: &str, _column: &str, _todo: u64, _resumed_from: u64) {}
    /// Values processed in the current column since the last call.
    fn advanced(&self, _table: &str, _column: &str, _processed: u64) {}
    /// A column is done (finished, or stopped with the operation).
    fn column_finished(&self, _table: &str, _column: &str) {}
    /// A human-readable note (resume, retry, lock take-over…).
    fn note(&self, _message: &str) {}
    /// A batch was written: rows it held, rows written, and how long its
    /// writes took (compare-and-swap rounds included).
    fn batch_written(
        &self,
        _table: &str,
        _column: &str,
        _rows: u64,
        _written: u64,
        _took: std::time::Duration,
    ) {
    }
    /// A watched replica's lag, at each check ([`crate::pacing`]).
    fn replica_lag(&self, _replica: &str, _lag: std::time::Duration) {}
    /// The run lost the rotation lock to another holder and is stopping.
    fn lock_lost(&self) {}
    /// Writing paused (`Some(why)`: "replica lag 3.4 s on …") or went on
    /// (`None`). The default shows it as a note.
    fn paused(&self, why: Option<&str>) {
        match why {
            Some(w) => self.note(&format!("paused: {w}")),
            None => self.note("resumed"),
        }
    }
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ProgressSink for NoProgress {}
