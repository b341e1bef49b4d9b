//! Exit codes (documented in README.md).

use keyturn_engine::EngineError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Everything done.
    Ok = 0,
    /// An error stopped the command (config, keys, database, schema).
    Error = 1,
    /// Command-line usage error.
    Usage = 2,
    /// The run finished but some rows could not be processed (bad rows).
    BadRows = 3,
    /// `verify` found values not under the primary key, or undecryptable.
    VerifyFailed = 4,
    /// Preflight: the data uses keys the keyring cannot decrypt; nothing written.
    Preflight = 5,
    /// Another run holds the rotation lock, or took it from this run (which
    /// stopped at a batch boundary, its progress saved).
    Locked = 6,
    /// `due`: a rotation is due within the warning window.
    DueSoon = 10,
    /// `due`: a rotation is overdue (a key in use is older than the policy allows).
    Overdue = 11,
    /// `audit verify`: the audit trail's hash chain is broken.
    AuditBroken = 12,
    /// Stopped by Ctrl-C / SIGTERM after saving a checkpoint.
    Interrupted = 130,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

pub fn code_for(err: &anyhow::Error) -> Exit {
    let engine = err
        .downcast_ref::<EngineError>()
        .or_else(|| err.downcast_ref::<keyturn_ops::OpsError>()?.engine());
    match engine {
        Some(EngineError::Preflight(_)) => Exit::Preflight,
        Some(EngineError::LockHeld { .. } | EngineError::LockLost { .. }) => Exit::Locked,
        Some(EngineError::Usage(_)) => Exit::Usage,
        _ => Exit::Error,
    }
}
