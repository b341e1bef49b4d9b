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
//! a new KEK all-or-nothing, and [`rotate_blobs`] does it inside the KMS
//! (AWS `ReEncrypt`, transit `rewrap`) when the old and new KEK live in the
//! same one. docs/KMS.md describes formats and failure modes.
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]

mod aws;
mod aws_datakey;
mod blob;
mod cache;
mod config;
mod context;
mod error;
mod local;
mod rewrap;
mod server;
mod transit;
mod transit_datakey;
mod transit_values;

pub use aws::{AWS_ATTEMPTS, AwsCredentials, AwsKmsConfig, AwsKmsKek, ReEncrypted};
pub use aws_datakey::EncryptionContext;
pub use blob::{ContextBinding, KekRef, WrappedDek};
pub use cache::DekCache;
pub use config::KekConfig;
pub use context::{MAX_CATALOG_LEN, WrapContext};
pub use error::{KmsError, ProviderKind};
pub use keyturn_keys::{SecretSource, SecretString};
pub use local::{LocalKek, MasterKeySource};
pub use rewrap::{RewrapPath, rewrap_all, rewrap_all_in_kms, rotate_blobs, same_kms};
pub use server::{
    DEFAULT_AWS_IN_FLIGHT, DEFAULT_BATCH_ITEMS, DEFAULT_TRANSIT_IN_FLIGHT, ServerConfig,
};
pub use transit::{TransitConfig, TransitKek};
pub use transit_values::{ItemOutcome, TransitItem, TransitKeyInfo, is_too_large};

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

    /// Which KMS, and which part of it, this provider re-encrypts within:
    /// two providers with the same domain can move each other's blobs with
    /// [`rewrap`](Self::rewrap) without the DEK leaving the KMS (AWS: the
    /// endpoint and region; transit: the address, namespace, mount and key).
    /// `None` (the default, and the local KEK): never.
    fn rewrap_domain(&self) -> Option<String> {
        None
    }

    /// Whether [`rewrap`](Self::rewrap) of this blob happens inside the KMS
    /// (AWS `ReEncrypt`; transit `rewrap` of an embedded-context blob) rather
    /// than as unwrap and wrap in this process. Default: no.
    fn rewraps_in_kms(&self, _wrapped: &WrappedDek) -> bool {
        false
    }

    /// Checks, without calling the KMS, that a blob was wrapped by this
    /// provider's KEK as far as its configuration tells (`wrong_kek`
    /// otherwise). The default checks the provider kind.
    fn check_owner(&self, wrapped: &WrappedDek) -> Result<(), KmsError> {
        wrapped.expect_provider(&self.describe())
    }

    /// Asks the KMS for a new version of the KEK, so that later wraps and
    /// rewraps use new key material (transit: `POST <mount>/keys/<name>/rotate`).
    /// Returns the KEK with its new version. The default refuses: AWS KMS
    /// rotates key material itself and a local master key is replaced, not
    /// versioned.
    async fn new_key_version(&self) -> Result<KekRef, KmsError> {
        Err(KmsError::config(
            self.describe().provider,
            "this KEK has no key versions keyturn can create: AWS KMS rotates key material itself (automatic or on-demand rotation; old blobs keep decrypting), and a local master key is replaced by a new one (kek rotate --to local --master-key …)",
        ))
    }
}
