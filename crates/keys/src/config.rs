//! The `[keys]` and `[keyrings.NAME]` sections of keyturn.toml.
//!
//! ```toml
//! [keys]
//! sources = ["env:KEYTURN_KEYS", "file:keys.txt"]  # env:NAME, file:PATH or stdin; never the keys
//! primary = "k2"          # the key that encrypts; every other key decrypts only
//! retired = []            # keys that refuse to decrypt
//! allow_retired = false   # let retired keys decrypt (restoring an old backup)
//! ```

use crate::{DEFAULT_ENV, KeyError, RingPolicy, SecretSource};
use serde::Deserialize;
use std::path::Path;

/// One keyring's section: where its keys come from and their roles.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Where the key specs are read from: `env:NAME`, `file:PATH` or `stdin`, never the keys
    /// themselves (default `env:KEYTURN_KEYS`).
    #[serde(default = "default_sources")]
    pub sources: Vec<String>,
    /// The id of the key that encrypts; `None` is allowed only when exactly one key is loaded,
    /// which is then primary.
    pub primary: Option<String>,
    /// Ids of keys that refuse to decrypt (unless `allow_retired`).
    #[serde(default)]
    pub retired: Vec<String>,
    /// Whether retired keys may decrypt anyway, e.g. to restore an old backup (default false).
    #[serde(default)]
    pub allow_retired: bool,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            sources: default_sources(),
            primary: None,
            retired: Vec::new(),
            allow_retired: false,
        }
    }
}

fn default_sources() -> Vec<String> {
    vec![format!("env:{DEFAULT_ENV}")]
}

impl KeysConfig {
    /// Which key encrypts, which refuse to decrypt.
    pub fn policy(&self) -> RingPolicy {
        RingPolicy {
            primary: self.primary.clone(),
            retired: self.retired.clone(),
            allow_retired: self.allow_retired,
        }
    }

    /// The parsed sources ([`KeysConfig::validate`] checks they parse).
    pub fn sources(&self) -> Vec<SecretSource> {
        self.sources
            .iter()
            .filter_map(|s| SecretSource::parse(s).ok())
            .collect()
    }

    /// Checks the section (`section` names it in messages, `keys` or
    /// `keyrings.NAME`): at least one source, each one parses, and
    /// `primary` and `retired` are key ids. A value that is not a key id (a
    /// key spec pasted there) is never echoed.
    pub fn validate(&self, section: &str) -> Result<(), KeyError> {
        let bad = |m: String| Err(KeyError::Config(m));
        if self.sources.is_empty() {
            return bad(format!(
                "{section}.sources: at least one key source is needed"
            ));
        }
        for (i, s) in self.sources.iter().enumerate() {
            SecretSource::parse(s)
                .map_err(|e| KeyError::Config(format!("{section}.sources[{i}]: {e}")))?;
        }
        let not_an_id = |key: String| {
            bad(format!(
                "{key} is not a valid key id (1-32 characters A-Za-z0-9._-); its value is not shown"
            ))
        };
        if let Some(p) = &self.primary
            && !keyturn_format::is_showable(p)
        {
            return not_an_id(format!("{section}.primary"));
        }
        for (i, r) in self.retired.iter().enumerate() {
            if !keyturn_format::is_showable(r) {
                return not_an_id(format!("{section}.retired[{i}]"));
            }
        }
        Ok(())
    }

    /// Relative `file:` sources taken against `base` (the config file's
    /// folder).
    pub fn relative_to(mut self, base: &Path) -> KeysConfig {
        for s in &mut self.sources {
            if let Some(p) = s.strip_prefix("file:")
                && !p.is_empty()
                && Path::new(p).is_relative()
            {
                *s = format!("file:{}", base.join(p).display());
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_sources_and_ids_without_echoing() {
        let mut k = KeysConfig::default();
        k.validate("keys").unwrap();
        k.sources = vec!["k1:aes256gcm:c2VjcmV0".into()];
        let e = k.validate("keys").unwrap_err().to_string();
        assert!(
            e.contains("keys.sources[0]") && !e.contains("c2VjcmV0"),
            "{e}"
        );
        let k = KeysConfig {
            primary: Some("k1:aes256gcm:c2VjcmV0c2VjcmV0".into()),
            ..KeysConfig::default()
        };
        let e = k.validate("keyrings.app").unwrap_err().to_string();
        assert!(
            e.contains("keyrings.app.primary") && !e.contains("c2VjcmV0"),
            "{e}"
        );
        let k = KeysConfig {
            sources: Vec::new(),
            ..KeysConfig::default()
        };
        assert!(k.validate("keys").is_err());
    }

    #[test]
    fn relative_files_follow_the_config() {
        let k = KeysConfig {
            sources: vec!["file:keys.txt".into(), "file:/abs".into(), "env:K".into()],
            ..KeysConfig::default()
        }
        .relative_to(Path::new("/etc/kt"));
        assert_eq!(k.sources, ["file:/etc/kt/keys.txt", "file:/abs", "env:K"]);
    }
}
