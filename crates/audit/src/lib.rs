//! keyturn's compliance layer: the tamper-evident audit trail, the rotation
//! schedule (`due`), webhook reminders and the evidence report.
//!
//! Sits beside the engine, under the operations layer (`keyturn-ops`, which
//! gathers what the report needs). Everything here is pure logic except
//! [`store`] (the audit table, through [`keyturn_db::Database`]) and
//! [`notify::post`] (HTTP). It owns the config's `[policy]` section
//! ([`policy`]).
//!
//! Any command that changes state records it with one call:
//!
//! ```no_run
//! # async fn f(db: &dyn keyturn_db::Database) -> Result<(), keyturn_audit::AuditError> {
//! use keyturn_audit::{AuditAction, NewEvent, Outcome, append};
//! let ev = NewEvent::new(AuditAction::KeyPromote, "alice@ops", Outcome::Ok)
//!     .keys(["k3"])
//!     .reason(Some("scheduled"));
//! append(db, &ev).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod chain;
pub mod due;
mod event;
pub mod html;
pub mod notify;
pub mod policy;
pub mod report;
pub mod store;
pub mod ts;

pub use chain::{ChainProblem, ChainReport, ChainVerifier, GENESIS};
pub use due::{DueReport, DueStatus};
pub use event::{AuditAction, AuditEvent, ColumnCounts, NewEvent, Outcome};
pub use store::{EventFilter, append, read_events, read_rows, verify, verify_export};

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Reading or writing the audit trail in the database failed.
    #[error("audit: {0}")]
    Db(keyturn_db::DbError),
    /// An input that does not make sense: a bad policy setting, an unreadable stored event, a bad
    /// option value; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// A webhook notification could not be sent (bad URL, HTTP client, request failed or refused).
    #[error("notify: {0}")]
    Notify(String),
}

impl AuditError {
    /// A stable, machine-readable name of the error class (`--json`'s
    /// `kind`): `database`, `usage` (an input that does not make sense) or
    /// `notify`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditError::Db(_) => "database",
            AuditError::Invalid(_) => "usage",
            AuditError::Notify(_) => "notify",
        }
    }
}

// Not `#[from]`: the message already holds the database error's text.
impl From<keyturn_db::DbError> for AuditError {
    fn from(e: keyturn_db::DbError) -> Self {
        AuditError::Db(e)
    }
}
