//! `[kms.NAME]`: a KMS that rotates a column's values itself (server-side
//! rewrap), so that the column's keys never leave it.
//!
//! ```toml
//! [kms.bao]
//! kind = "vault-transit"            # Vault or OpenBao transit
//! address = "https://vault:8200"    # default: VAULT_ADDR, then BAO_ADDR
//! mount = "transit"
//! token = "file:/run/vault-agent/token"  # default: VAULT_TOKEN, then BAO_TOKEN
//! namespace = "team-a"              # default: VAULT_NAMESPACE
//! ca_file = "/etc/ssl/private-ca.pem"    # default: VAULT_CACERT
//! batch_items = 100                 # items per batch_input request (halved when the server refuses a batch as too large)
//! max_in_flight = 4                 # requests at once
//!
//! [kms.aws]
//! kind = "aws-kms"
//! region = "eu-west-1"              # default: the SDK's chain
//! endpoint_url = "http://127.0.0.1:5000"
//! max_in_flight = 16                # calls at once (KMS has no batch call)
//! max_requests_per_sec = 500        # a cap below the account's quota
//! ```
//!
//! A column opts in with `kms = "NAME"` (keyturn-engine's `[[target]]`).

use crate::{AwsKmsConfig, AwsKmsKek, KmsError, ProviderKind, TransitConfig, TransitKek};
use keyturn_keys::SecretSource;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Items per transit `batch_input` request unless configured.
pub const DEFAULT_BATCH_ITEMS: usize = 100;
/// Transit requests in flight unless configured.
pub const DEFAULT_TRANSIT_IN_FLIGHT: usize = 4;
/// AWS KMS calls in flight unless configured.
pub const DEFAULT_AWS_IN_FLIGHT: usize = 16;

/// One `[kms.NAME]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ServerConfig {
    /// The transit engine of Vault or OpenBao.
    #[serde(alias = "transit", alias = "openbao-transit")]
    VaultTransit {
        /// `http(s)://host:port`; default `VAULT_ADDR`, then `BAO_ADDR`.
        address: Option<String>,
        /// The transit mount [default: `transit`].
        mount: Option<String>,
        /// `env:NAME` or `file:PATH` [default: `VAULT_TOKEN`, then `BAO_TOKEN`].
        token: Option<String>,
        /// Namespace (`X-Vault-Namespace`); default `VAULT_NAMESPACE`.
        namespace: Option<String>,
        /// PEM file of the CAs to trust; default `VAULT_CACERT`.
        ca_file: Option<PathBuf>,
        /// Items per `batch_input` request [default: 100].
        batch_items: Option<usize>,
        /// Requests in flight [default: 4].
        max_in_flight: Option<usize>,
    },
    /// AWS KMS (or an API-compatible server).
    AwsKms {
        /// Region; default: the SDK's chain (`AWS_REGION`, profile).
        region: Option<String>,
        /// A KMS-compatible endpoint (a test server, a VPC endpoint).
        endpoint_url: Option<String>,
        /// Profile of the shared AWS config files.
        profile: Option<String>,
        /// Calls in flight [default: 16].
        max_in_flight: Option<usize>,
        /// At most this many calls a second; default: no cap (throttling
        /// answers are retried with backoff either way).
        max_requests_per_sec: Option<u32>,
    },
}

fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

impl ServerConfig {
    /// `vault-transit` or `aws-kms`.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerConfig::VaultTransit { .. } => "vault-transit",
            ServerConfig::AwsKms { .. } => "aws-kms",
        }
    }

    /// Requests (transit) or calls (AWS) in flight.
    pub fn max_in_flight(&self) -> usize {
        match self {
            ServerConfig::VaultTransit { max_in_flight, .. } => {
                max_in_flight.unwrap_or(DEFAULT_TRANSIT_IN_FLIGHT)
            }
            ServerConfig::AwsKms { max_in_flight, .. } => {
                max_in_flight.unwrap_or(DEFAULT_AWS_IN_FLIGHT)
            }
        }
        .max(1)
    }

    /// Transit: items per `batch_input` request.
    pub fn batch_items(&self) -> usize {
        match self {
            ServerConfig::VaultTransit { batch_items, .. } => {
                batch_items.unwrap_or(DEFAULT_BATCH_ITEMS).max(1)
            }
            ServerConfig::AwsKms { .. } => 1,
        }
    }

    /// Checks what can be checked without I/O; `name` is the section's.
    pub fn validate(&self, name: &str) -> Result<(), KmsError> {
        let bad =
            |p: ProviderKind, m: String| Err(KmsError::config(p, format!("[kms.{name}] {m}")));
        match self {
            ServerConfig::VaultTransit {
                token,
                batch_items,
                max_in_flight,
                ..
            } => {
                if let Some(t) = token
                    && let Err(e) = SecretSource::parse(t)
                {
                    return bad(ProviderKind::Transit, format!("token: {e}"));
                }
                if matches!(batch_items, Some(0 | 10_001..)) {
                    return bad(ProviderKind::Transit, "batch_items: 1..=10000".into());
                }
                if matches!(max_in_flight, Some(0 | 257..)) {
                    return bad(ProviderKind::Transit, "max_in_flight: 1..=256".into());
                }
            }
            ServerConfig::AwsKms {
                max_in_flight,
                max_requests_per_sec,
                ..
            } => {
                if matches!(max_in_flight, Some(0 | 1025..)) {
                    return bad(ProviderKind::AwsKms, "max_in_flight: 1..=1024".into());
                }
                if matches!(max_requests_per_sec, Some(0)) {
                    return bad(
                        ProviderKind::AwsKms,
                        "max_requests_per_sec: at least 1 (leave it out for no cap)".into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// Relative `file:` token and CA paths taken against `base` (the config
    /// file's folder).
    pub fn relative_to(mut self, base: &Path) -> ServerConfig {
        if let ServerConfig::VaultTransit { token, ca_file, .. } = &mut self {
            if let Some(s) = token.as_deref()
                && let Ok(SecretSource::File(p)) = SecretSource::parse(s)
                && p.is_relative()
            {
                *token = Some(format!("file:{}", base.join(p).display()));
            }
            if let Some(p) = ca_file
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        }
        self
    }

    /// A transit client for `key` (no request made). Fails for an AWS section.
    pub fn transit(&self, key: &str) -> Result<TransitKek, KmsError> {
        let ServerConfig::VaultTransit {
            address,
            mount,
            token,
            namespace,
            ca_file,
            ..
        } = self
        else {
            return Err(KmsError::config(
                ProviderKind::AwsKms,
                "this [kms] section is aws-kms, not vault-transit",
            ));
        };
        let address = address
            .clone()
            .or_else(|| env_nonempty("VAULT_ADDR"))
            .or_else(|| env_nonempty("BAO_ADDR"))
            .ok_or_else(|| {
                KmsError::config(
                    ProviderKind::Transit,
                    "no address: set address in the [kms] section, or VAULT_ADDR",
                )
            })?;
        let mut c = TransitConfig::new(&address, key);
        if let Some(m) = mount {
            c.mount = m.trim_matches('/').to_owned();
        }
        c.namespace = namespace
            .clone()
            .or_else(|| env_nonempty("VAULT_NAMESPACE"));
        c.token = token
            .as_deref()
            .map(SecretSource::parse)
            .transpose()
            .map_err(|e| KmsError::config(ProviderKind::Transit, format!("token: {e}")))?;
        c.ca_file = ca_file.clone();
        c.timeout = std::time::Duration::from_secs(30);
        TransitKek::new(c)
    }

    /// An AWS KMS client whose default key is `key_id` (loads credentials,
    /// makes no request), with the section's `max_in_flight` and
    /// `max_requests_per_sec`; its [`AwsKmsKek::re_encrypt_value`] retries
    /// throttling itself (the SDK does not retry). Fails for a transit
    /// section.
    pub async fn aws(&self, key_id: &str) -> Result<AwsKmsKek, KmsError> {
        let ServerConfig::AwsKms {
            region,
            endpoint_url,
            profile,
            max_in_flight,
            max_requests_per_sec,
        } = self
        else {
            return Err(KmsError::config(
                ProviderKind::Transit,
                "this [kms] section is vault-transit, not aws-kms",
            ));
        };
        let mut c = AwsKmsConfig::new(key_id);
        c.region = region.clone();
        c.endpoint_url = endpoint_url.clone();
        c.profile = profile.clone();
        c.max_in_flight = Some(max_in_flight.unwrap_or(DEFAULT_AWS_IN_FLIGHT).max(1));
        c.max_requests_per_sec = *max_requests_per_sec;
        c.max_attempts = 1;
        AwsKmsKek::connect(c).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<ServerConfig, String> {
        toml::from_str(t).map_err(|e| e.to_string())
    }

    #[test]
    fn sections_parse_and_validate() {
        let t = parse(
            "kind = \"vault-transit\"\naddress = \"http://127.0.0.1:8200\"\nbatch_items = 50",
        )
        .unwrap();
        assert_eq!(t.batch_items(), 50);
        assert_eq!(t.max_in_flight(), DEFAULT_TRANSIT_IN_FLIGHT);
        t.validate("bao").unwrap();
        let a = parse("kind = \"aws-kms\"\nmax_requests_per_sec = 0").unwrap();
        assert!(
            a.validate("aws")
                .unwrap_err()
                .to_string()
                .contains("[kms.aws]")
        );
        assert!(parse("kind = \"gcp\"").is_err());
        assert!(parse("kind = \"aws-kms\"\nmount = \"x\"").is_err());
        let bad = parse("kind = \"transit\"\ntoken = \"s.c2VjcmV0\"").unwrap();
        let e = bad.validate("bao").unwrap_err().to_string();
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_config() {
        let t = parse("kind = \"transit\"\ntoken = \"file:tok\"\nca_file = \"ca.pem\"")
            .unwrap()
            .relative_to(Path::new("/etc/keyturn"));
        let ServerConfig::VaultTransit { token, ca_file, .. } = t else {
            panic!()
        };
        assert_eq!(token.as_deref(), Some("file:/etc/keyturn/tok"));
        assert_eq!(ca_file, Some(PathBuf::from("/etc/keyturn/ca.pem")));
    }
}
