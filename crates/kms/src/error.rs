//! Errors of the key providers.
//!
//! Every message says what failed, where (provider, address, KEK) and what to
//! do about it. None carries key material, plaintext or tokens: they are safe
//! to log and to show to an operator. Messages relayed from a server are
//! cut to a few hundred characters.

/// Which kind of provider an error or a blob belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProviderKind {
    /// [`crate::LocalKek`]: a master key held by this process.
    Local,
    /// [`crate::AwsKmsKek`]: AWS KMS (or an API-compatible server).
    AwsKms,
    /// [`crate::TransitKek`]: the transit engine of Vault or OpenBao.
    Transit,
}

impl ProviderKind {
    /// The name used in blobs, configuration and messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::AwsKms => "aws-kms",
            ProviderKind::Transit => "transit",
        }
    }

    /// Parses a provider name (`local`, `aws-kms`, `transit`); `None` for any other string.
    pub fn from_name(s: &str) -> Option<ProviderKind> {
        match s {
            "local" => Some(ProviderKind::Local),
            "aws-kms" => Some(ProviderKind::AwsKms),
            "transit" => Some(ProviderKind::Transit),
            _ => None,
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a KEK operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The provider's configuration is incomplete or invalid (missing master
    /// key or token, bad address, no credentials...).
    #[error("{provider} KEK configuration: {message}")]
    Config {
        /// The provider whose configuration is wrong.
        provider: ProviderKind,
        /// What is missing or invalid (never a secret value).
        message: String,
    },

    /// The KMS could not be reached (connection refused, DNS, TLS, timeout).
    #[error(
        "{provider}: cannot reach the KMS at {address}: {reason} (is the server running, and are the address and port right?)"
    )]
    Unreachable {
        /// The provider that could not be reached.
        provider: ProviderKind,
        /// The address (endpoint URL) that was tried.
        address: String,
        /// The transport's reason (connection refused, DNS, TLS, timeout...).
        reason: String,
    },

    /// The KMS refused the credentials themselves: revoked, expired or
    /// unknown token / access key.
    #[error(
        "{provider} at {address} rejected the credentials ({detail}): the token or access key is invalid, expired or revoked; supply a valid one"
    )]
    InvalidCredentials {
        /// The provider that rejected the credentials.
        provider: ProviderKind,
        /// The address (endpoint URL) that rejected them.
        address: String,
        /// The KMS's own error code or message.
        detail: String,
    },

    /// The credentials are valid but may not use this KEK for this operation.
    #[error(
        "{provider}: access denied to KEK {kek} ({detail}); grant this identity encrypt/decrypt on the key, or check that the DEK was wrapped under this key"
    )]
    AccessDenied {
        /// The provider that denied access.
        provider: ProviderKind,
        /// The KEK that may not be used (id, ARN or `<mount>/<key>`).
        kek: String,
        /// The KMS's own error code or message.
        detail: String,
    },

    /// The configured KEK does not exist.
    #[error(
        "{provider}: KEK {kek} not found ({detail}); check the key id, alias, ARN, region or mount"
    )]
    KeyNotFound {
        /// The provider that was asked.
        provider: ProviderKind,
        /// The KEK that was not found, as configured.
        kek: String,
        /// The KMS's own error code or message.
        detail: String,
    },

    /// The KEK exists but cannot be used now (disabled, pending deletion).
    #[error("{provider}: KEK {kek} cannot be used: {detail}")]
    KeyUnusable {
        /// The provider that refused.
        provider: ProviderKind,
        /// The unusable KEK.
        kek: String,
        /// Why it cannot be used (the KMS's message: disabled, pending deletion...).
        detail: String,
    },

    /// The wrapped DEK names a different KEK (or provider) than the one asked
    /// to unwrap it.
    #[error(
        "the DEK is wrapped under {found}, but this provider is {expected}; unwrap it with the KEK it names (then rewrap) or fix the configuration"
    )]
    WrongKek {
        /// The KEK this provider is configured with.
        expected: String,
        /// The KEK the wrapped DEK names.
        found: String,
    },

    /// The KEK refused to unwrap under this context: the wrapped DEK belongs
    /// to another catalog or key id (copied between rows?), or it was altered.
    #[error(
        "{provider}: KEK {kek} refused to unwrap DEK {key_id:?} of catalog {catalog:?}: wrong encryption context (wrapped DEK copied from another catalog or key id?) or a tampered blob"
    )]
    WrongContext {
        /// The provider whose KEK refused.
        provider: ProviderKind,
        /// The KEK that refused to unwrap.
        kek: String,
        /// The catalog the unwrap was asked for.
        catalog: String,
        /// The key id the unwrap was asked for.
        key_id: String,
    },

    /// A stored wrapped DEK could not be parsed.
    #[error("malformed wrapped DEK: {0}")]
    Malformed(String),

    /// A catalog name or other input that cannot be bound as context.
    #[error("invalid wrap context: {0}")]
    InvalidContext(String),

    /// Any other failure reported by the KMS.
    #[error("{provider} at {address} failed: {message}")]
    Backend {
        /// The provider that failed.
        provider: ProviderKind,
        /// The address (endpoint URL) of the KMS.
        address: String,
        /// The KMS's error message.
        message: String,
    },
}

impl KmsError {
    /// A stable, machine-readable name of the error kind.
    pub fn kind(&self) -> &'static str {
        match self {
            KmsError::Config { .. } => "config",
            KmsError::Unreachable { .. } => "unreachable",
            KmsError::InvalidCredentials { .. } => "invalid_credentials",
            KmsError::AccessDenied { .. } => "access_denied",
            KmsError::KeyNotFound { .. } => "key_not_found",
            KmsError::KeyUnusable { .. } => "key_unusable",
            KmsError::WrongKek { .. } => "wrong_kek",
            KmsError::WrongContext { .. } => "wrong_context",
            KmsError::Malformed(_) => "malformed",
            KmsError::InvalidContext(_) => "invalid_context",
            KmsError::Backend { .. } => "backend",
        }
    }

    /// Whether retrying the same call later may succeed (network trouble or a
    /// server-side failure), as opposed to a configuration or data problem.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KmsError::Unreachable { .. } | KmsError::Backend { .. }
        )
    }

    /// Whether the error concerns one value (a damaged or foreign
    /// ciphertext, the wrong key or encryption context) rather than the
    /// KMS, the credentials or the configured key: a caller rotating many
    /// values skips that one and goes on.
    pub fn is_per_value(&self) -> bool {
        matches!(
            self,
            KmsError::Malformed(_) | KmsError::WrongKek { .. } | KmsError::WrongContext { .. }
        )
    }

    pub(crate) fn config(provider: ProviderKind, message: impl Into<String>) -> KmsError {
        KmsError::Config {
            provider,
            message: message.into(),
        }
    }
}

/// Longest server message relayed in an error.
const MAX_DETAIL: usize = 300;

/// Cuts a server-supplied message to a loggable size, on a char boundary, and
/// replaces control characters.
pub(crate) fn clip(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DETAIL)
        .collect();
    if s.chars().count() > MAX_DETAIL {
        out.push('…');
    }
    out
}
