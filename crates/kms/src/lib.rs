//! keyturn's key providers: data keys (DEKs) wrapped under a key-encryption
//! key (KEK) held by a KMS.
//!
//! Three providers implement one async trait, [`KekProvider`]:
//! - [`LocalKek`]: AES-256-GCM under a master key from an env var or a file,
//!   for development and small deployments;
//! - [`AwsKmsKek`]: AWS KMS `Encrypt`/`Decrypt`/`ReEncrypt` (or a compatible
//!   server such as moto);
//! - [`TransitKek`]: the transit engine of Vault or OpenBao over its HTTP API.
//!
//! A wrapped DEK is a self-describing [`WrappedDek`] (provider, KEK and its
//! version, DEK algorithm, ciphertext) that serializes to JSON for the key
//! catalog. Every wrap binds a [`WrapContext`] (catalog name and DEK key id):
//! a wrapped DEK copied to another catalog or key id does not unwrap.
//!
//! [`DekCache`] keeps unwrapped DEKs for a run so that a caller makes one KMS
//! call per DEK, not per row; [`rewrap_all`] moves every DEK of a catalog to
//! a new KEK all-or-nothing. docs/KMS.md describes formats and failure modes.
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]

mod aws;
mod blob;
mod cache;
mod context;
mod error;
mod local;
mod rewrap;
mod secret;
mod transit;

pub use aws::{AwsCredentials, AwsKmsConfig, AwsKmsKek};
pub use blob::{ContextBinding, KekRef, WrappedDek};
pub use cache::DekCache;
pub use context::{MAX_CATALOG_LEN, WrapContext};
pub use error::{KmsError, ProviderKind};
pub use local::{LocalKek, MasterKeySource};
pub use rewrap::{rewrap_all, rewrap_all_in_kms};
pub use secret::SecretString;
pub use transit::{TokenSource, TransitConfig, TransitKek};

pub use keyturn_format::{Algorithm, KeyId, SecretKey};

use std::fmt::Debug;

/// A key-encryption key: wraps and unwraps data keys.
///
/// Implementations never log or return key material or credentials in
/// errors, and their `Debug` redacts secrets.
#[async_trait::async_trait]
pub trait KekProvider: Send + Sync + Debug {
    /// Which KEK this provider is configured to use, from configuration alone
    /// (no KMS call). The version is filled in where it is known offline.
    fn describe(&self) -> KekRef;

    /// Asks the KMS which key the configuration resolves to now (ARN of an
    /// alias, latest transit version): a preflight check of address,
    /// credentials and key. The default returns [`describe`](Self::describe).
    async fn resolve(&self) -> Result<KekRef, KmsError> {
        Ok(self.describe())
    }

    /// Wraps `dek` under the current KEK, binding `ctx`.
    async fn wrap(&self, dek: &SecretKey, ctx: &WrapContext) -> Result<WrappedDek, KmsError>;

    /// Unwraps a DEK wrapped by this provider's KEK under the same `ctx`.
    async fn unwrap(&self, wrapped: &WrappedDek, ctx: &WrapContext) -> Result<SecretKey, KmsError>;

    /// Re-wraps a DEK under this provider's current KEK (latest version, or the
    /// key an alias now points to). Where the KMS can re-encrypt in place
    /// (AWS `ReEncrypt`, transit `rewrap`) the DEK never leaves the KMS;
    /// otherwise this is `unwrap` then `wrap`.
    async fn rewrap(
        &self,
        wrapped: &WrappedDek,
        ctx: &WrapContext,
    ) -> Result<WrappedDek, KmsError> {
        let dek = self.unwrap(wrapped, ctx).await?;
        self.wrap(&dek, ctx).await
    }
}
