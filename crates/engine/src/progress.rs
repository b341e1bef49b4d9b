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
    /// A batch is done: what it held and did ([`BatchStats`]). Its counts
    /// add up, over a column, to the column's [`crate::ColumnSummary`]
    /// counts (`failed` is `bad` here).
    fn batch_written(&self, _table: &str, _column: &str, _batch: &BatchStats) {}
    /// The run starts writing: its id (in `keyturn_runs`) and whether it
    /// holds the rotation lock (a dry run takes none).
    fn run_started(&self, _run_id: &str, _lock_held: bool) {}
    /// The run released the rotation lock as it ended.
    fn lock_released(&self) {}
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

/// What one batch held and did, as [`ProgressSink::batch_written`] reports
/// it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// Rows the batch held.
    pub rows: u64,
    /// Values written (in a dry run: that would be written).
    pub written: u64,
    /// Values left as they were: already under the primary, or deleted or
    /// set to NULL by the application meanwhile.
    pub skipped: u64,
    /// Compare-and-swap misses (the application changed the row between
    /// read and write) re-read and retried; each such row is also counted
    /// once as written, skipped or bad.
    pub retried: u64,
    /// Values that could not be processed, recorded as bad rows.
    pub bad: u64,
    /// The most rows a batch of this column holds (the run's batch size,
    /// within the database's limit of bind parameters).
    pub batch_size: u64,
    /// How long the batch's writes took, compare-and-swap rounds included;
    /// `None` when it had nothing to write (and in a dry run).
    pub took: Option<std::time::Duration>,
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ProgressSink for NoProgress {}
