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
use keyturn_kms::KekConfig;
use serde::Deserialize;

/// The `[catalog]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct CatalogConfig {
    /// The catalog's name, bound into every wrapped DEK (default `default`).
    #[serde(default = "default_name")]
    pub name: String,
    /// The KEK, tagged by `kek` (its unknown fields are refused there).
    #[serde(flatten)]
    pub kek: KekConfig,
    /// How long after a key stops being primary `retire` waits, in hours (default 24).
    #[serde(default = "default_safety")]
    pub safety_period_hours: u64,
    /// How long after `retire` `destroy` waits, in days (default 30).
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
    /// The lifecycle timing rules these settings make.
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
        self.kek
            .validate()
            .map_err(|e| CatalogError::Config(e.to_string()))
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
                "env:NAME, file:PATH",
            ),
            (r#"{"kek":"aws-kms","key_id":""}"#, "key_id"),
            (
                r#"{"kek":"vault-transit","address":"http://x","key":""}"#,
                "needs key",
            ),
            (
                r#"{"kek":"vault-transit","address":"http://x","key":"k","binding":"both"}"#,
                "binding",
            ),
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

    #[test]
    fn a_kek_takes_only_its_own_fields() {
        for bad in [
            r#"{"kek":"local","binding":"aad"}"#,
            r#"{"kek":"local","key_id":"alias/x"}"#,
            r#"{"kek":"gcp"}"#,
            r#"{"kek":"local","retention_dayz":7}"#,
        ] {
            assert!(serde_json::from_str::<CatalogConfig>(bad).is_err(), "{bad}");
        }
    }

    fn toml_like(json: &str) -> CatalogConfig {
        serde_json::from_str(json).unwrap()
    }
}
