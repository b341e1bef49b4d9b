use keyturn_db::DbError;
use keyturn_format::FormatError;
use keyturn_keys::KeyError;

/// Why an engine operation could not run. Bad rows are not errors: they
/// are reported in the run summary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("config: {0}")]
    Config(String),
    #[error("keys: {0}")]
    Keys(#[from] KeyError),
    #[error("keyring: {0}")]
    Format(#[from] FormatError),
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("schema: {0}")]
    Schema(String),
    #[error(
        "preflight failed, nothing was written: the data uses keys this keyring cannot decrypt:\n{}\nadd these keys to a key source (or allow retired keys) and run again",
        .0.iter().map(|(t, c, k, n, why)| format!("  {t}.{c}: {n} rows under key {k:?} ({why})")).collect::<Vec<_>>().join("\n")
    )]
    Preflight(Vec<(String, String, String, u64, String)>),
    #[error("another keyturn run holds the rotation lock: {holder}, since {since}")]
    LockHeld { holder: String, since: String },
    /// A run lost the rotation lock to another holder and stopped at a
    /// batch boundary, its checkpoint saved.
    #[error(
        "rotation lock lost: {holder} has held it since {since}; this run stopped after the batches in flight, its progress saved: run it again once that run has finished"
    )]
    LockLost { holder: String, since: String },
    #[error("{0}")]
    Usage(String),
}
