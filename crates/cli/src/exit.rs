//! Exit codes (documented in README.md) and the error classes of `--json`
//! error documents (docs/JSON.md).

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
    /// `verify` found values not under the current key, or undecryptable.
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

/// An error whose `--json` document carries more than the error: e.g. the
/// summary of a run that finished but whose end could not be recorded.
/// Its text, kind and exit code are those of `error`.
#[derive(Debug)]
pub struct ErrorWith {
    /// The error itself.
    pub error: anyhow::Error,
    /// Fields added to the error document (never `error`, `kind` or
    /// `exit_code`).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl std::fmt::Display for ErrorWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The whole chain: this wrapper exposes no `source` of its own.
        f.write_str(&crate::output::error_chain(self.error.as_ref()))
    }
}

impl std::error::Error for ErrorWith {}

/// The error itself, under an [`ErrorWith`] if there is one.
pub fn root(err: &anyhow::Error) -> &anyhow::Error {
    match err.downcast_ref::<ErrorWith>() {
        Some(w) => &w.error,
        None => err,
    }
}

fn engine_of(err: &anyhow::Error) -> Option<&EngineError> {
    err.downcast_ref::<EngineError>()
        .or_else(|| err.downcast_ref::<keyturn_ops::OpsError>()?.engine())
}

pub fn code_for(err: &anyhow::Error) -> Exit {
    match engine_of(root(err)) {
        Some(EngineError::Preflight(_)) => Exit::Preflight,
        Some(EngineError::LockHeld { .. } | EngineError::LockLost { .. }) => Exit::Locked,
        Some(EngineError::Usage(_)) => Exit::Usage,
        _ => Exit::Error,
    }
}

/// The stable, snake_case class of an error (`--json`'s `kind`), from its
/// type, never from its text: the library errors' own `kind`s, `io` for
/// a file or stream keyturn could not read or write, `error` for anything
/// else.
pub fn kind_for(err: &anyhow::Error) -> &'static str {
    let err = root(err);
    if let Some(e) = err.downcast_ref::<keyturn_ops::OpsError>() {
        return e.class();
    }
    if let Some(e) = err.downcast_ref::<EngineError>() {
        return e.kind();
    }
    if let Some(e) = err.downcast_ref::<keyturn_catalog::CatalogError>() {
        return e.kind();
    }
    if let Some(e) = err.downcast_ref::<keyturn_audit::AuditError>() {
        return e.kind();
    }
    if err.downcast_ref::<keyturn_keys::KeyError>().is_some() {
        return "keys";
    }
    if err.downcast_ref::<keyturn_format::FormatError>().is_some() {
        return "keyring";
    }
    if err.downcast_ref::<std::io::Error>().is_some() {
        return "io";
    }
    "error"
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn kinds_come_from_the_types() {
        let e = anyhow::Error::new(EngineError::Usage("--alg".into()));
        assert_eq!((kind_for(&e), code_for(&e)), ("usage", Exit::Usage));
        let e = anyhow::Error::new(keyturn_ops::OpsError::step(
            "rotating",
            EngineError::Preflight(Vec::new()),
        ));
        assert_eq!((kind_for(&e), code_for(&e)), ("preflight", Exit::Preflight));
        let e = anyhow::Error::new(keyturn_ops::OpsError::from(EngineError::LockHeld {
            holder: "h".into(),
            since: "s".into(),
        }));
        assert_eq!((kind_for(&e), code_for(&e)), ("locked", Exit::Locked));
        let e = Err::<(), _>(std::io::Error::other("disk full"))
            .context("writing out.jsonl")
            .unwrap_err();
        assert_eq!((kind_for(&e), code_for(&e)), ("io", Exit::Error));
        let e = anyhow::Error::new(keyturn_catalog::CatalogError::Invalid("x".into()));
        assert_eq!(kind_for(&e), "invalid");
        assert_eq!(kind_for(&anyhow::anyhow!("plain")), "error");
    }

    #[test]
    fn an_error_with_fields_is_classed_as_its_error() {
        let e = anyhow::Error::new(ErrorWith {
            error: EngineError::Config("rows remain under compromised keys".into()).into(),
            fields: serde_json::Map::new(),
        });
        assert_eq!((kind_for(&e), code_for(&e)), ("config", Exit::Error));
    }
}
