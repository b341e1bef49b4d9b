use keyturn_db::DbError;
use keyturn_format::FormatError;
use keyturn_keys::KeyError;
use serde::Serialize;

/// A key id the data uses that the column's keyring cannot decrypt with.
#[derive(Clone, Debug, Serialize)]
pub struct UnusableKey {
    /// The table of the column.
    pub table: String,
    /// The column whose values use the key.
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
    /// The configuration is invalid (a missing or wrong setting); the message names it.
    #[error("config: {0}")]
    Config(String),
    /// The keys could not be loaded from their sources.
    #[error("keys: {0}")]
    Keys(KeyError),
    /// A keyring or codec error that stops the operation (e.g. a keyring
    /// that cannot be built); single values that fail become bad rows
    /// instead.
    #[error("keyring: {0}")]
    Format(FormatError),
    /// A database operation failed.
    #[error("database: {0}")]
    Db(DbError),
    /// A KMS that rotates a column's values failed as a whole (unreachable,
    /// sealed, credentials refused or revoked, key missing); a value it
    /// refuses alone is a bad row instead.
    #[error("kms: {0}")]
    Kms(keyturn_kms::KmsError),
    /// The database schema does not fit the configuration (missing table, column or primary key,
    /// wrong column type); the message lists every problem.
    #[error("schema: {0}")]
    Schema(String),
    /// The preflight found keys that the data uses and the keyring cannot decrypt with; nothing was
    /// written.
    #[error(
        "preflight failed, nothing was written: the data uses keys this keyring cannot decrypt:\n{}\nadd these keys to a key source (or allow retired keys) and run again, or rerun with --skip-unknown-keys to record these rows as bad rows and rotate the rest",
        .0.iter().map(UnusableKey::describe).collect::<Vec<_>>().join("\n")
    )]
    Preflight(Vec<UnusableKey>),
    /// Another run holds the rotation lock of this database; this run did not start.
    #[error("another keyturn run holds the rotation lock: {holder}, since {since}")]
    LockHeld {
        /// Who holds it: `user@host pid N (operation)`, or a note that the
        /// holder left no record.
        holder: String,
        /// When the holder took it (UTC timestamp).
        since: String,
    },
    /// A run lost the rotation lock to another holder and stopped at a
    /// batch boundary, its checkpoint saved.
    #[error(
        "rotation lock lost: {holder} has held it since {since}; this run stopped after the batches in flight, its progress saved: run it again once that run has finished"
    )]
    LockLost {
        /// Who holds the lock now.
        holder: String,
        /// When that holder took it (UTC timestamp).
        since: String,
    },
    /// The data or the KMS is not in the state an operation needs (rows
    /// still under an old key version when retiring it); nothing changed.
    #[error("refused: {0}")]
    Refused(String),
    /// The user's mistake in flags or arguments (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A failure inside keyturn (a worker task that panicked or was
    /// cancelled), not the user's doing.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// A stable, machine-readable name of the error class (`--json`'s
    /// `kind`): `config`, `keys`, `keyring`, `database`, `kms`, `schema`,
    /// `preflight`, `locked`, `refused`, `usage` or `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::Config(_) => "config",
            EngineError::Keys(_) => "keys",
            EngineError::Format(_) => "keyring",
            EngineError::Db(_) => "database",
            EngineError::Kms(_) => "kms",
            EngineError::Schema(_) => "schema",
            EngineError::Preflight(_) => "preflight",
            EngineError::LockHeld { .. } | EngineError::LockLost { .. } => "locked",
            EngineError::Refused(_) => "refused",
            EngineError::Usage(_) => "usage",
            EngineError::Internal(_) => "internal",
        }
    }
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

impl From<keyturn_kms::KmsError> for EngineError {
    fn from(e: keyturn_kms::KmsError) -> Self {
        EngineError::Kms(e)
    }
}

impl From<DbError> for EngineError {
    fn from(e: DbError) -> Self {
        EngineError::Db(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_its_kind() {
        let cases = [
            (EngineError::Config("x".into()), "config"),
            (EngineError::Keys(KeyError::Empty("env:K".into())), "keys"),
            (EngineError::Format(FormatError::Empty), "keyring"),
            (EngineError::Db(DbError::Invalid("x".into())), "database"),
            (EngineError::Schema("x".into()), "schema"),
            (EngineError::Preflight(Vec::new()), "preflight"),
            (
                EngineError::LockHeld {
                    holder: "h".into(),
                    since: "s".into(),
                },
                "locked",
            ),
            (
                EngineError::LockLost {
                    holder: "h".into(),
                    since: "s".into(),
                },
                "locked",
            ),
            (EngineError::Refused("x".into()), "refused"),
            (EngineError::Usage("x".into()), "usage"),
            (EngineError::Internal("x".into()), "internal"),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
        }
    }
}
