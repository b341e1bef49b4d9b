//! keyturn's rotation engine: status, rotate, encrypt and verify over any
//! supported database, for any [`Codec`](keyturn_format::Codec).
//!
//! The engine reads configuration, resolves it against the live schema
//! ([`plan`]), and runs operations through the [`keyturn_db::Database`]
//! trait. It never writes SQL itself and never prints: progress goes to a
//! [`ProgressSink`] supplied by the caller.
#![forbid(unsafe_code)]

pub mod config;
mod error;
pub mod live;
pub mod multi;
pub mod pacing;
pub mod plan;
mod progress;
pub mod remote;
mod retry;
pub mod run;
mod scan;
pub mod status;
pub mod verify;

pub use error::{EngineError, UnusableKey};
pub use plan::{ColumnPlan, Plan};
pub use progress::{BatchStats, NoProgress, ProgressSink};
pub use run::{
    BadRowReport, ColumnSummary, LockLost, Operation, Run, RunOptions, RunOutcome, RunSummary,
};
pub use status::{ColumnStatus, CountedBy, StatusOptions, StatusReport};
pub use verify::{VerifyOptions, VerifyReport};
