//! The operations layer's error: one variant per layer below, each message
//! holding its cause's text (no cause is exposed again as a `source`).

use keyturn_audit::AuditError;
use keyturn_catalog::CatalogError;
use keyturn_db::DbError;
use keyturn_engine::EngineError;
use keyturn_kms::KmsError;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// The engine refused or failed (config, keys, schema, preflight, lock,
    /// usage, database).
    #[error("{0}")]
    Engine(EngineError),
    /// The audit trail could not be read or appended to.
    #[error("{0}")]
    Audit(AuditError),
    /// The key catalog refused or failed.
    #[error("{0}")]
    Catalog(CatalogError),
    /// A step of an operation failed: `step` says which, and what it means
    /// for the data (e.g. "nothing was changed").
    #[error("{step}: {cause}")]
    Step {
        /// What was being done.
        step: String,
        /// Why it failed.
        cause: Box<OpsError>,
    },
}

impl OpsError {
    /// `cause`, said to have happened while doing `step`.
    pub fn step(step: impl Into<String>, cause: impl Into<OpsError>) -> OpsError {
        OpsError::Step {
            step: step.into(),
            cause: Box::new(cause.into()),
        }
    }

    /// The engine error at the root of this one, if it is one (the exit
    /// code of a preflight refusal, a held lock or a usage error).
    pub fn engine(&self) -> Option<&EngineError> {
        match self {
            OpsError::Engine(e) => Some(e),
            OpsError::Step { cause, .. } => cause.engine(),
            _ => None,
        }
    }

    /// The catalog error at the root of this one, if it is one.
    pub fn catalog(&self) -> Option<&CatalogError> {
        match self {
            OpsError::Catalog(e) => Some(e),
            OpsError::Step { cause, .. } => cause.catalog(),
            _ => None,
        }
    }

    /// A short machine-readable kind for records: `preflight`, `locked`,
    /// `database`, `kms`, `usage` or `error`.
    pub fn kind(&self) -> &'static str {
        match self.engine() {
            Some(EngineError::Preflight(_)) => "preflight",
            Some(EngineError::LockHeld { .. } | EngineError::LockLost { .. }) => "locked",
            Some(EngineError::Db(_)) => "database",
            Some(EngineError::Kms(_)) => "kms",
            Some(EngineError::Usage(_)) => "usage",
            _ if self.is_database() => "database",
            _ => "error",
        }
    }

    /// The stable, specific name of the root cause, for error reports
    /// (`--json`'s `kind`): [`EngineError::kind`], [`CatalogError::kind`]
    /// or [`AuditError::kind`]. [`OpsError::kind`] stays the coarse name
    /// stored in audit records.
    pub fn class(&self) -> &'static str {
        match self {
            OpsError::Engine(e) => e.kind(),
            OpsError::Audit(e) => e.kind(),
            OpsError::Catalog(e) => e.kind(),
            OpsError::Step { cause, .. } => cause.class(),
        }
    }

    fn is_database(&self) -> bool {
        match self {
            OpsError::Audit(AuditError::Db(_)) | OpsError::Catalog(CatalogError::Db(_)) => true,
            OpsError::Step { cause, .. } => cause.is_database(),
            _ => false,
        }
    }
}

// Not `#[from]`: the messages already hold the cause's text.
impl From<EngineError> for OpsError {
    fn from(e: EngineError) -> Self {
        OpsError::Engine(e)
    }
}

impl From<DbError> for OpsError {
    fn from(e: DbError) -> Self {
        OpsError::Engine(EngineError::Db(e))
    }
}

impl From<keyturn_keys::KeyError> for OpsError {
    fn from(e: keyturn_keys::KeyError) -> Self {
        OpsError::Engine(EngineError::Keys(e))
    }
}

impl From<AuditError> for OpsError {
    fn from(e: AuditError) -> Self {
        match e {
            // A malformed filter, date or format: the user's to fix.
            AuditError::Invalid(m) => OpsError::Engine(EngineError::Usage(m)),
            other => OpsError::Audit(other),
        }
    }
}

impl From<CatalogError> for OpsError {
    fn from(e: CatalogError) -> Self {
        OpsError::Catalog(e)
    }
}

impl From<KmsError> for OpsError {
    fn from(e: KmsError) -> Self {
        OpsError::Catalog(CatalogError::Kms(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_says_its_cause_once() {
        let cause = EngineError::Schema("no table t".into());
        let e = OpsError::step("this failed, and so did recording it (audit: gone)", cause);
        let text = e.to_string();
        assert_eq!(text.matches("no table t").count(), 1, "{text}");
        assert!(matches!(e.engine(), Some(EngineError::Schema(_))));
        assert_eq!(e.class(), "schema");
    }

    #[test]
    fn class_names_the_root_cause() {
        let e = OpsError::step(
            "retiring",
            CatalogError::Invalid("a stored row makes no sense".into()),
        );
        assert_eq!(e.class(), "invalid");
        let e = OpsError::from(AuditError::Notify("refused".into()));
        assert_eq!(e.class(), "notify");
        assert_eq!(e.kind(), "error");
        let e = OpsError::from(AuditError::Invalid("bad --since".into()));
        assert_eq!(e.class(), "usage");
    }
}
