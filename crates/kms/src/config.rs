//! A KEK's settings as they are written in a config file (`[catalog]`) or
//! given on the command line (`keyturn kek rotate --to …`): one variant per
//! KMS, each with exactly its own fields.
//!
//! ```toml
//! kek = "local"                          # master_key = "env:NAME" | "file:PATH"
//! kek = "aws-kms"                        # key_id, region, endpoint_url, profile
//! kek = "vault-transit"                  # address, mount, key, token, namespace, binding
//! ```

use crate::{
    AwsKmsConfig, AwsKmsKek, ContextBinding, KekProvider, KmsError, LocalKek, ProviderKind,
    TransitConfig, TransitKek,
};
use keyturn_keys::SecretSource;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// The settings of one KEK, tagged by `kek`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kek", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum KekConfig {
    /// A master key held by keyturn's process.
    Local {
        /// `env:NAME` or `file:PATH` [default: `env:KEYTURN_MASTER_KEY`].
        master_key: Option<String>,
    },
    /// An AWS KMS key.
    AwsKms {
        /// Key id, ARN or alias.
        key_id: String,
        /// AWS region; by default the SDK's standard chain (`AWS_REGION`, profile...).
        region: Option<String>,
        /// A KMS-compatible endpoint (a local test server, a VPC endpoint).
        endpoint_url: Option<String>,
        /// Profile of the shared AWS config files; by default the standard chain's.
        profile: Option<String>,
    },
    /// A key of the transit engine of Vault or OpenBao.
    #[serde(alias = "transit")]
    VaultTransit {
        /// `http(s)://host:port`.
        address: String,
        /// The transit engine's mount path [default: `transit`].
        mount: Option<String>,
        /// The transit key's name.
        key: String,
        /// `env:NAME` or `file:PATH` [default: `VAULT_TOKEN`, then
        /// `BAO_TOKEN`].
        token: Option<String>,
        /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`), if any.
        namespace: Option<String>,
        /// How new wraps bind the context: `embedded` (default: transit's
        /// rewrap can then move DEKs to a new key version inside the
        /// server) or `aad` (transit `associated_data`).
        binding: Option<String>,
    },
}

impl KekConfig {
    /// `local`, `aws-kms` or `vault-transit`.
    pub fn kind(&self) -> &'static str {
        match self {
            KekConfig::Local { .. } => "local",
            KekConfig::AwsKms { .. } => "aws-kms",
            KekConfig::VaultTransit { .. } => "vault-transit",
        }
    }

    fn provider_kind(&self) -> ProviderKind {
        match self {
            KekConfig::Local { .. } => ProviderKind::Local,
            KekConfig::AwsKms { .. } => ProviderKind::AwsKms,
            KekConfig::VaultTransit { .. } => ProviderKind::Transit,
        }
    }

    fn secret(
        &self,
        field: &str,
        value: &Option<String>,
    ) -> Result<Option<SecretSource>, KmsError> {
        value
            .as_deref()
            .map(|v| {
                SecretSource::parse(v)
                    .map_err(|e| KmsError::config(self.provider_kind(), format!("{field}: {e}")))
            })
            .transpose()
    }

    /// Checks what can be checked without I/O: secret sources parse,
    /// required fields are not empty, the binding is known.
    pub fn validate(&self) -> Result<(), KmsError> {
        let need = |v: &str, field: &str| {
            if v.is_empty() {
                Err(KmsError::config(
                    self.provider_kind(),
                    format!("kek = {:?} needs {field}", self.kind()),
                ))
            } else {
                Ok(())
            }
        };
        match self {
            KekConfig::Local { master_key } => {
                self.secret("master_key", master_key)?;
            }
            KekConfig::AwsKms { key_id, .. } => need(key_id, "key_id")?,
            KekConfig::VaultTransit {
                address,
                key,
                token,
                ..
            } => {
                need(address, "address")?;
                need(key, "key")?;
                self.secret("token", token)?;
                self.binding()?;
            }
        }
        Ok(())
    }

    fn binding(&self) -> Result<ContextBinding, KmsError> {
        let KekConfig::VaultTransit { binding, .. } = self else {
            return Ok(ContextBinding::Embedded);
        };
        match binding.as_deref() {
            None | Some("embedded") => Ok(ContextBinding::Embedded),
            Some("aad") => Ok(ContextBinding::Aad),
            Some(_) => Err(KmsError::config(
                ProviderKind::Transit,
                "binding: use \"embedded\" (default) or \"aad\"",
            )),
        }
    }

    /// The relative `file:` paths of the secret sources taken against
    /// `base` (the config file's folder).
    pub fn relative_to(mut self, base: &Path) -> KekConfig {
        let fix = |v: &mut Option<String>| {
            if let Some(s) = v.as_deref()
                && let Ok(SecretSource::File(p)) = SecretSource::parse(s)
                && p.is_relative()
            {
                *v = Some(format!("file:{}", base.join(p).display()));
            }
        };
        match &mut self {
            KekConfig::Local { master_key } => fix(master_key),
            KekConfig::VaultTransit { token, .. } => fix(token),
            KekConfig::AwsKms { .. } => {}
        }
        self
    }

    /// Whether `other` names the same key in the same KMS (credentials and
    /// the binding of new wraps aside): rotating to it needs no config
    /// change.
    pub fn same_key(&self, other: &KekConfig) -> bool {
        match (self, other) {
            (KekConfig::Local { master_key: a }, KekConfig::Local { master_key: b }) => a == b,
            (
                KekConfig::AwsKms {
                    key_id: a,
                    region: ra,
                    endpoint_url: ea,
                    ..
                },
                KekConfig::AwsKms {
                    key_id: b,
                    region: rb,
                    endpoint_url: eb,
                    ..
                },
            ) => a == b && ra == rb && ea == eb,
            (
                KekConfig::VaultTransit {
                    address: a,
                    mount: ma,
                    key: ka,
                    namespace: na,
                    ..
                },
                KekConfig::VaultTransit {
                    address: b,
                    mount: mb,
                    key: kb,
                    namespace: nb,
                    ..
                },
            ) => a == b && ma == mb && ka == kb && na == nb,
            _ => false,
        }
    }

    /// Builds the provider (local reads its master key now; AWS loads its
    /// credentials).
    pub async fn provider(&self) -> Result<Arc<dyn KekProvider>, KmsError> {
        self.validate()?;
        Ok(match self {
            KekConfig::Local { master_key } => {
                let source = self
                    .secret("master_key", master_key)?
                    .unwrap_or_else(LocalKek::default_source);
                Arc::new(LocalKek::load(&source)?)
            }
            KekConfig::AwsKms {
                key_id,
                region,
                endpoint_url,
                profile,
            } => {
                let mut c = AwsKmsConfig::new(key_id);
                c.region = region.clone();
                c.endpoint_url = endpoint_url.clone();
                c.profile = profile.clone();
                Arc::new(AwsKmsKek::connect(c).await?)
            }
            KekConfig::VaultTransit {
                address,
                mount,
                key,
                token,
                namespace,
                ..
            } => {
                let mut c = TransitConfig::new(address, key);
                if let Some(m) = mount {
                    c.mount = m.clone();
                }
                c.namespace = namespace.clone();
                c.binding = self.binding()?;
                c.token = self.secret("token", token)?;
                Arc::new(TransitKek::new(c)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<KekConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn one_variant_per_kms_with_its_own_fields() {
        assert_eq!(
            parse(r#"{"kek":"local","master_key":"file:/run/mk"}"#).unwrap(),
            KekConfig::Local {
                master_key: Some("file:/run/mk".into())
            }
        );
        let t = parse(r#"{"kek":"transit","address":"http://x","key":"k"}"#).unwrap();
        assert_eq!(t.kind(), "vault-transit");
        assert!(parse(r#"{"kek":"local","key_id":"alias/x"}"#).is_err());
        assert!(
            parse(r#"{"kek":"aws-kms"}"#)
                .unwrap_err()
                .contains("key_id")
        );
        assert!(parse(r#"{"kek":"gcp"}"#).is_err());
    }

    #[test]
    fn validation_never_echoes_secrets() {
        for (bad, why) in [
            (r#"{"kek":"local","master_key":"c2VjcmV0"}"#, "env:NAME"),
            (r#"{"kek":"aws-kms","key_id":""}"#, "key_id"),
            (
                r#"{"kek":"vault-transit","address":"http://x","key":""}"#,
                "needs key",
            ),
            (
                r#"{"kek":"vault-transit","address":"http://x","key":"k","binding":"both"}"#,
                "binding",
            ),
            (
                r#"{"kek":"vault-transit","address":"http://x","key":"k","token":"s.c2VjcmV0"}"#,
                "token",
            ),
        ] {
            let e = parse(bad).unwrap().validate().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("c2VjcmV0"), "{e}");
        }
    }

    #[test]
    fn same_key_ignores_credentials_and_binding() {
        let a = parse(r#"{"kek":"vault-transit","address":"http://x","key":"k","token":"env:A"}"#)
            .unwrap();
        let b = parse(
            r#"{"kek":"vault-transit","address":"http://x","key":"k","token":"env:B","binding":"aad"}"#,
        )
        .unwrap();
        assert!(a.same_key(&b));
        let c = parse(r#"{"kek":"vault-transit","address":"http://x","key":"k2"}"#).unwrap();
        assert!(!a.same_key(&c));
    }

    #[test]
    fn relative_secret_files_follow_the_config() {
        let c = parse(r#"{"kek":"local","master_key":"file:mk"}"#)
            .unwrap()
            .relative_to(Path::new("/etc/keyturn"));
        assert_eq!(
            c,
            KekConfig::Local {
                master_key: Some("file:/etc/keyturn/mk".into())
            }
        );
    }
}
