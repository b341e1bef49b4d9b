//! The optional `[catalog]` section of `keyturn.toml`.
//!
//! ```toml
//! [catalog]
//! name = "default"                      # bound into every wrapped DEK
//! kek = "local"                         # or "aws-kms", "vault-transit"
//! master_key = "env:KEYTURN_MASTER_KEY" # local: env:NAME or file:PATH
//! # aws-kms: key_id = "alias/keyturn", region = "eu-west-1", endpoint_url = "http://127.0.0.1:5000"
//! # vault-transit: address = "http://127.0.0.1:8200", mount = "transit", key = "keyturn",
//! #                token = "env:VAULT_TOKEN" (or file:PATH; default VAULT_TOKEN, then BAO_TOKEN),
//! #                binding = "embedded" (default) or "aad"
//! safety_period_hours = 24
//! retention_days = 30
//! instance_ttl_seconds = 300            # tracked app instances: live while seen this recently
//! ```

use crate::CatalogError;
use crate::lifecycle::Policy;
use keyturn_kms::{
    AwsKmsConfig, AwsKmsKek, ContextBinding, KekProvider, LocalKek, MasterKeySource, TokenSource,
    TransitConfig, TransitKek,
};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

/// Settings of one KEK.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekConfig {
    /// `local`, `aws-kms` or `vault-transit` (alias `transit`).
    pub kek: String,
    /// local: `env:NAME` or `file:PATH` [default: env:KEYTURN_MASTER_KEY].
    pub master_key: Option<String>,
    /// aws-kms: key id, ARN or alias.
    pub key_id: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    /// vault-transit: `http(s)://host:port`.
    pub address: Option<String>,
    pub mount: Option<String>,
    /// vault-transit: the transit key's name.
    pub key: Option<String>,
    /// vault-transit: `env:NAME` or `file:PATH` [default: VAULT_TOKEN, then BAO_TOKEN].
    pub token: Option<String>,
    pub namespace: Option<String>,
    /// vault-transit: how new wraps bind the context, `embedded` (default:
    /// transit's rewrap can then move DEKs to a new key version inside the
    /// server) or `aad` (transit `associated_data`).
    pub binding: Option<String>,
}

/// The `[catalog]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(flatten)]
    pub kek: KekConfig,
    #[serde(default = "default_safety")]
    pub safety_period_hours: u64,
    #[serde(default = "default_retention")]
    pub retention_days: u64,
    /// A tracked application instance without a heartbeat for this long is
    /// stale and ignored by `keys promote` (docs/CATALOG.md).
    #[serde(default = "default_instance_ttl")]
    pub instance_ttl_seconds: u64,
}

fn default_name() -> String {
    "default".into()
}
fn default_safety() -> u64 {
    24
}
fn default_retention() -> u64 {
    30
}
fn default_instance_ttl() -> u64 {
    crate::lifecycle::DEFAULT_INSTANCE_TTL_SECONDS
}

impl CatalogConfig {
    pub fn policy(&self) -> Policy {
        Policy {
            safety_period: time::Duration::hours(self.safety_period_hours.min(1 << 20) as i64),
            retention: time::Duration::days(self.retention_days.min(1 << 16) as i64),
            instance_ttl: time::Duration::seconds(self.instance_ttl_seconds.min(1 << 30) as i64),
        }
    }

    /// Checks what can be checked without I/O.
    pub fn validate(&self) -> Result<(), CatalogError> {
        keyturn_kms::WrapContext::new(
            &self.name,
            keyturn_kms::KeyId::new("probe").map_err(|e| CatalogError::Config(e.to_string()))?,
        )
        .map_err(|e| CatalogError::Config(format!("name: {e}")))?;
        if self.instance_ttl_seconds == 0 {
            return Err(CatalogError::Config(
                "instance_ttl_seconds must be at least 1 (it should exceed the applications' refresh interval)".into(),
            ));
        }
        self.kek.validate()
    }
}

fn source_of(s: &str, what: &str) -> Result<(Option<String>, Option<PathBuf>), CatalogError> {
    if let Some(v) = s.strip_prefix("env:") {
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(CatalogError::Config(format!(
                "{what}: env var names are A-Z, 0-9 and _"
            )));
        }
        return Ok((Some(v.to_owned()), None));
    }
    if let Some(p) = s.strip_prefix("file:")
        && !p.is_empty()
    {
        return Ok((None, Some(PathBuf::from(p))));
    }
    // Never echo the value: it may be a pasted secret.
    Err(CatalogError::Config(format!(
        "{what} is env:NAME or file:PATH (the secret itself is never accepted in the config)"
    )))
}

impl KekConfig {
    pub fn validate(&self) -> Result<(), CatalogError> {
        let need = |v: &Option<String>, field: &str| {
            if v.as_deref().is_none_or(str::is_empty) {
                Err(CatalogError::Config(format!(
                    "kek = {} needs {field}",
                    keyturn_format::shown(&self.kek)
                )))
            } else {
                Ok(())
            }
        };
        match self.kek.as_str() {
            "local" => {
                if let Some(m) = &self.master_key {
                    source_of(m, "master_key")?;
                }
            }
            "aws-kms" => need(&self.key_id, "key_id")?,
            "vault-transit" | "transit" => {
                need(&self.address, "address")?;
                need(&self.key, "key")?;
                if let Some(t) = &self.token {
                    source_of(t, "token")?;
                }
                self.transit_binding()?;
            }
            other => {
                return Err(CatalogError::Config(format!(
                    "kek = {}: use \"local\", \"aws-kms\" or \"vault-transit\"",
                    keyturn_format::shown(other)
                )));
            }
        }
        if self.binding.is_some() && !matches!(self.kek.as_str(), "vault-transit" | "transit") {
            return Err(CatalogError::Config(format!(
                "binding applies to kek = \"vault-transit\" only, not {}",
                keyturn_format::shown(&self.kek)
            )));
        }
        Ok(())
    }

    fn transit_binding(&self) -> Result<ContextBinding, CatalogError> {
        match self.binding.as_deref() {
            None | Some("embedded") => Ok(ContextBinding::Embedded),
            Some("aad") => Ok(ContextBinding::Aad),
            Some(other) => Err(CatalogError::Config(format!(
                "binding = {}: use \"embedded\" (default) or \"aad\"",
                keyturn_format::shown(other)
            ))),
        }
    }

    /// Builds the provider (local reads its master key now; AWS loads its
    /// credentials).
    pub async fn provider(&self) -> Result<Arc<dyn KekProvider>, CatalogError> {
        self.validate()?;
        Ok(match self.kek.as_str() {
            "local" => {
                let source = match self.master_key.as_deref() {
                    None => MasterKeySource::default(),
                    Some(m) => match source_of(m, "master_key")? {
                        (Some(var), _) => MasterKeySource::Env(var),
                        (_, Some(path)) => {
                            keyturn_keys::warn_if_exposed(&path, "master key file");
                            MasterKeySource::File(path)
                        }
                        _ => unreachable!("source_of returns one of them"),
                    },
                };
                Arc::new(LocalKek::load(&source)?)
            }
            "aws-kms" => {
                let mut c = AwsKmsConfig::new(self.key_id.as_deref().unwrap_or_default());
                c.region = self.region.clone();
                c.endpoint_url = self.endpoint_url.clone();
                c.profile = self.profile.clone();
                Arc::new(AwsKmsKek::connect(c).await?)
            }
            _ => {
                let mut c = TransitConfig::new(
                    self.address.as_deref().unwrap_or_default(),
                    self.key.as_deref().unwrap_or_default(),
                );
                if let Some(m) = &self.mount {
                    c.mount = m.clone();
                }
                c.namespace = self.namespace.clone();
                c.binding = self.transit_binding()?;
                if let Some(t) = &self.token {
                    c.token = match source_of(t, "token")? {
                        (Some(var), _) => TokenSource::EnvVar(var),
                        (_, Some(path)) => {
                            keyturn_keys::warn_if_exposed(&path, "token file");
                            TokenSource::File(path)
                        }
                        _ => unreachable!("source_of returns one of them"),
                    };
                }
                Arc::new(TransitKek::new(c)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let c: CatalogConfig =
            toml_like(r#"{"kek":"local","master_key":"file:/run/mk","retention_days":7}"#);
        assert_eq!(c.name, "default");
        assert_eq!(c.safety_period_hours, 24);
        assert_eq!(c.policy().retention, time::Duration::days(7));
        assert_eq!(c.policy().instance_ttl, time::Duration::seconds(300));
        c.validate().unwrap();
        for (bad, why) in [
            (
                r#"{"kek":"local","master_key":"c2VjcmV0"}"#,
                "env:NAME or file:PATH",
            ),
            (r#"{"kek":"aws-kms"}"#, "key_id"),
            (
                r#"{"kek":"vault-transit","address":"http://x"}"#,
                "needs key",
            ),
            (r#"{"kek":"gcp"}"#, "use \"local\""),
            (
                r#"{"kek":"k1:aes256gcm:c2VjcmV0c2VjcmV0c2VjcmV0"}"#,
                "(value not shown): use",
            ),
            (
                r#"{"kek":"vault-transit","address":"http://x","key":"k","binding":"both"}"#,
                "binding",
            ),
            (r#"{"kek":"local","binding":"aad"}"#, "applies to kek"),
            (r#"{"kek":"local","name":"a b"}"#, "name"),
            (
                r#"{"kek":"local","instance_ttl_seconds":0}"#,
                "instance_ttl_seconds",
            ),
        ] {
            let e = toml_like(bad).validate().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("c2VjcmV0"), "{e}");
        }
    }

    fn toml_like(json: &str) -> CatalogConfig {
        serde_json::from_str(json).unwrap()
    }
}
