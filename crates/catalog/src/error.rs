//! Errors of the catalog. None carries key material.

use crate::lifecycle::Refusal;
use keyturn_db::DbError;
use keyturn_kms::KmsError;

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A lifecycle rule refused the command; nothing was written.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The KEK could not wrap or unwrap (unreachable, wrong key, wrong
    /// context…); nothing was written.
    #[error("KEK: {0}")]
    Kms(KmsError),
    /// A database operation failed.
    #[error("database: {0}")]
    Db(DbError),
    /// A stored row or an input that does not make sense.
    #[error("{0}")]
    Invalid(String),
    /// The `[catalog]` section or the KEK configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// `kek rotate --new-version` created a new version of the KEK, then
    /// failed: the catalog is unchanged, and the version stays in the KMS.
    #[error(
        "{failure} (nothing was written to the catalog, but the KMS now has a new KEK version {version}: older versions still decrypt; rerun without --new-version to move the DEKs to it)"
    )]
    AfterNewKekVersion {
        /// The KEK version that was created.
        version: String,
        /// The error that stopped the rotation after it.
        failure: Box<CatalogError>,
    },
}

impl CatalogError {
    /// A stable, machine-readable name: the refusal's or KMS error's kind,
    /// `database`, `invalid` or `config`.
    pub fn kind(&self) -> &'static str {
        match self {
            CatalogError::Refused(r) => r.kind(),
            CatalogError::Kms(k) => k.kind(),
            CatalogError::Db(_) => "database",
            CatalogError::Invalid(_) => "invalid",
            CatalogError::Config(_) => "config",
            CatalogError::AfterNewKekVersion { failure, .. } => failure.kind(),
        }
    }

    /// Whether a lifecycle rule refused the command (nothing was written).
    pub fn is_refusal(&self) -> bool {
        matches!(self, CatalogError::Refused(_))
    }
}

// Not `#[from]`: that would make the inner error the `source`, and reports
// that print the chain would say everything twice.
impl From<Refusal> for CatalogError {
    fn from(r: Refusal) -> Self {
        CatalogError::Refused(r)
    }
}

impl From<KmsError> for CatalogError {
    fn from(e: KmsError) -> Self {
        CatalogError::Kms(e)
    }
}

impl From<DbError> for CatalogError {
    fn from(e: DbError) -> Self {
        CatalogError::Db(e)
    }
}
