use keyturn_db::DbError;
use keyturn_format::FormatError;
use keyturn_keys::KeyError;
use serde::Serialize;

/// A key id the data uses that the column's keyring cannot decrypt with.
#[derive(Clone, Debug, Serialize)]
pub struct UnusableKey {
    pub table: String,
    pub column: String,
    /// A validated key id read from the values.
    pub key_id: String,
    /// Values under it.
    pub rows: u64,
    /// Retired in the keyring (else: not in it at all).
    pub retired: bool,
    /// The primary keys of the first rows under it, in key order.
    pub first_rows: Vec<String>,
}

impl UnusableKey {
    /// One line for messages.
    pub fn describe(&self) -> String {
        let why = if self.retired {
            "retired: allow retired keys to rotate it away"
        } else {
            "not in the keyring"
        };
        let more = if (self.first_rows.len() as u64) < self.rows {
            ", …"
        } else {
            ""
        };
        format!(
            "  {}.{}: {} rows under key {:?} ({why}); rows: {}{more}",
            self.table,
            self.column,
            self.rows,
            self.key_id,
            self.first_rows.join(", ")
        )
    }
}

/// Why an engine operation could not run. Bad rows are not errors: they
/// are reported in the run summary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("config: {0}")]
    Config(String),
    #[error("keys: {0}")]
    Keys(KeyError),
    #[error("keyring: {0}")]
    Format(FormatError),
    #[error("database: {0}")]
    Db(DbError),
    #[error("schema: {0}")]
    Schema(String),
    #[error(
        "preflight failed, nothing was written: the data uses keys this keyring cannot decrypt:\n{}\nadd these keys to a key source (or allow retired keys) and run again, or rerun with --skip-unknown-keys to record these rows as bad rows and rotate the rest",
        .0.iter().map(UnusableKey::describe).collect::<Vec<_>>().join("\n")
    )]
    Preflight(Vec<UnusableKey>),
    #[error("another keyturn run holds the rotation lock: {holder}, since {since}")]
    LockHeld { holder: String, since: String },
    /// A run lost the rotation lock to another holder and stopped at a
    /// batch boundary, its checkpoint saved.
    #[error(
        "rotation lock lost: {holder} has held it since {since}; this run stopped after the batches in flight, its progress saved: run it again once that run has finished"
    )]
    LockLost { holder: String, since: String },
    /// The user's mistake in flags or arguments (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A failure inside keyturn (a worker task that panicked or was
    /// cancelled), not the user's doing.
    #[error("internal error: {0}")]
    Internal(String),
}

// Not `#[from]`: that would make the inner error the `source` as well as
// part of the message, and a printed chain would say everything twice.
impl From<KeyError> for EngineError {
    fn from(e: KeyError) -> Self {
        EngineError::Keys(e)
    }
}

impl From<FormatError> for EngineError {
    fn from(e: FormatError) -> Self {
        EngineError::Format(e)
    }
}

impl From<DbError> for EngineError {
    fn from(e: DbError) -> Self {
        EngineError::Db(e)
    }
}
