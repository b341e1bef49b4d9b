//! keyturn.toml, composed from the sections each crate owns: `[database]`
//! (keyturn-db), `[keys]` and `[keyrings.NAME]` (keyturn-keys), `[rotation]`
//! and `[[target]]` (keyturn-engine), `[policy]` (keyturn-audit) and
//! `[catalog]` (keyturn-catalog, its KEK from keyturn-kms). This module reads
//! the file, resolves what depends on where it lies (relative paths) and on
//! the environment (`${VAR}` in the URL), and checks the sections against
//! each other.
//!
//! ```toml
//! [database]
//! url = "postgres://app:${DB_PASSWORD}@127.0.0.1/app"   # ${VAR} read from the environment
//!
//! [keys]
//! sources = ["env:KEYTURN_KEYS"]   # env:NAME, file:PATH or stdin; never the keys themselves
//! primary = "k2"
//!
//! [rotation]
//! batch_size = 5000
//! workers = 2      # default: 1 on SQLite (one writer at a time), 2 on servers
//!
//! # Other frameworks' formats: a codec per column, with its own keyring.
//! [keyrings.django]
//! sources = ["env:FERNET_KEYS"]     # one key per line: id=<key in the framework's form>
//! primary = "f2"
//!
//! [[target]]
//! table = "patients"
//! primary_key = "id"                # or ["region", "id"]
//! columns = [
//!   { name = "phone", encoding = "text", context = true },
//!   { name = "nino", encoding = "binary" },
//! ]
//! ```

use keyturn_audit::policy::PolicyConfig;
use keyturn_catalog::CatalogConfig;
use keyturn_db::DatabaseConfig;
use keyturn_engine::EngineError;
use keyturn_engine::config::{RotationConfig, TargetConfig};
use keyturn_format::shown;
use keyturn_keys::{KeySource, KeysConfig, RingPolicy};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Env var naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "KEYTURN_CONFIG";
/// Config file used when neither `--config` nor the env var is given.
pub const DEFAULT_CONFIG: &str = "keyturn.toml";

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `[database]` section: which database holds the encrypted columns.
    pub database: DatabaseConfig,
    /// The `[keys]` section: the default keyring's sources and policy.
    #[serde(default)]
    pub keys: KeysConfig,
    /// The `[rotation]` section: batch size, workers and pacing of runs.
    #[serde(default)]
    pub rotation: RotationConfig,
    /// The `[[target]]` tables: which columns of which tables hold encrypted values.
    #[serde(rename = "target", default)]
    pub targets: Vec<TargetConfig>,
    /// Named keyrings for columns in other frameworks' formats (keys in the
    /// framework's own string form, `id=key` per line).
    #[serde(default)]
    pub keyrings: BTreeMap<String, KeysConfig>,
    /// Maximum key age and reminders (`keyturn due`); optional.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Optional key catalog (docs/CATALOG.md): when present, the `[keys]`
    /// keyring is loaded from the catalog table, DEKs unwrapped by its KEK.
    #[serde(default)]
    pub catalog: Option<CatalogConfig>,
    /// `[kms.NAME]`: KMS servers that rotate `kms = "NAME"` columns inside
    /// themselves (keyturn-kms's section; docs/KMS.md).
    #[serde(default)]
    pub kms: BTreeMap<String, keyturn_kms::ServerConfig>,
    /// `[metrics]`: where `rotate` and `encrypt` serve `/metrics` and
    /// `/health` while they run (the CLI's `--metrics-addr` overrides it).
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// Longest `[metrics] linger_seconds`.
pub const METRICS_LINGER_MAX: u64 = 300;

/// The `[metrics]` section (docs/OPERATIONS.md, "Metrics").
///
/// ```toml
/// [metrics]
/// addr = "127.0.0.1:9187"   # IP:PORT; loopback unless a scraper elsewhere needs it
/// linger_seconds = 15       # keep serving the final counts this long after the run
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to listen (`IP:PORT`); no endpoint when absent.
    pub addr: Option<std::net::SocketAddr>,
    /// Seconds the endpoint keeps serving after the run ends, so a last
    /// scrape sees the final counts; 0 (the default) to
    /// [`METRICS_LINGER_MAX`].
    #[serde(default)]
    pub linger_seconds: u64,
}

/// Where the config came from (for messages).
pub fn config_path(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_owned();
    }
    match std::env::var_os(CONFIG_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_CONFIG),
    }
}

impl Config {
    /// Reads and checks a config file. Relative `file:` key sources (in
    /// `[keys]`, `[keyrings.*]` and the catalog's `master_key` / `token`)
    /// and a relative SQLite path resolve against the file's folder, so a
    /// config means the same from any working directory.
    pub fn load(path: &Path) -> Result<Config, EngineError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            EngineError::Config(format!(
                "cannot read {}: {e}{}",
                path.display(),
                if e.kind() == std::io::ErrorKind::NotFound {
                    " (pass --config FILE, set KEYTURN_CONFIG, or run `keyturn demo` to see an example)"
                } else {
                    ""
                }
            ))
        })?;
        let in_file = |e: EngineError| match e {
            EngineError::Config(m) => EngineError::Config(format!("{}: {m}", path.display())),
            other => other,
        };
        let mut cfg = Config::parse(&text).map_err(in_file)?;
        let base = path.parent().unwrap_or(Path::new(""));
        if !base.as_os_str().is_empty() {
            cfg.resolve_relative(base);
        }
        Ok(cfg)
    }

    /// Makes relative file paths relative to `base` (the config's folder).
    fn resolve_relative(&mut self, base: &Path) {
        self.keys = std::mem::take(&mut self.keys).relative_to(base);
        for ring in self.keyrings.values_mut() {
            *ring = std::mem::take(ring).relative_to(base);
        }
        if let Some(c) = &mut self.catalog {
            c.kek = c.kek.clone().relative_to(base);
        }
        self.database = self.database.clone().relative_to(base);
        for s in self.kms.values_mut() {
            *s = s.clone().relative_to(base);
        }
    }

    /// Parses and checks the text of a config file.
    pub fn parse(text: &str) -> Result<Config, EngineError> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| EngineError::Config(toml_error(text, &e)))?;
        cfg.database = cfg
            .database
            .interpolated("database.url")
            .map_err(|e| EngineError::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), EngineError> {
        let bad = |key: &str, why: String| Err(EngineError::Config(format!("{key}: {why}")));
        keyturn_engine::config::validate_targets(&self.targets, |k| self.keyrings.contains_key(k))?;
        self.rotation.validate()?;
        if self.metrics.linger_seconds > METRICS_LINGER_MAX {
            return bad(
                "metrics.linger_seconds",
                format!(
                    "{} is more than {METRICS_LINGER_MAX}",
                    self.metrics.linger_seconds
                ),
            );
        }
        for (name, s) in &self.kms {
            if !keyturn_format::is_showable(name) {
                return bad(
                    "kms",
                    "a [kms.NAME] section's name is 1-32 characters A-Za-z0-9._- (its value is not shown)"
                        .into(),
                );
            }
            s.validate(name)
                .map_err(|e| EngineError::Config(e.to_string()))?;
        }
        for (i, t) in self.targets.iter().enumerate() {
            for (j, c) in t.columns.iter().enumerate() {
                if let Some(k) = &c.kms
                    && !self.kms.contains_key(k)
                {
                    return bad(
                        &format!("target[{i}].columns[{j}].kms"),
                        if keyturn_format::is_showable(k) {
                            format!("no [kms.{k}] section")
                        } else {
                            "no [kms.NAME] section of that name (the value is not shown)".into()
                        },
                    );
                }
            }
        }
        if let Some(c) = &self.catalog {
            c.validate()
                .map_err(|e| EngineError::Config(format!("catalog: {e}")))?;
        }
        // `[keys]` may be left out when every column has its own keyring or
        // is rotated inside a KMS.
        let needs_keys = self.targets.iter().any(|t| {
            t.columns
                .iter()
                .any(|c| c.kms.is_none() && c.keyring.is_none())
        });
        if needs_keys || !self.keys.sources.is_empty() {
            self.keys
                .validate("keys")
                .map_err(|e| EngineError::Config(e.to_string()))?;
        }
        for (name, k) in &self.keyrings {
            if !keyturn_format::is_showable(name) {
                return bad(
                    "keyrings",
                    "a keyring's name is 1-32 characters A-Za-z0-9._- (its value is not shown)"
                        .into(),
                );
            }
            let key = format!("keyrings.{name}");
            k.validate(&key)
                .map_err(|e| EngineError::Config(e.to_string()))?;
            // Keys are parsed in the codec's own form: one codec per keyring.
            let codecs: std::collections::BTreeSet<&str> = self
                .targets
                .iter()
                .flat_map(|t| t.columns.iter())
                .filter(|c| c.keyring.as_deref() == Some(name.as_str()))
                .map(|c| c.codec.as_str())
                .collect();
            if codecs.len() > 1 {
                return bad(
                    &key,
                    format!(
                        "used by columns of different codecs ({}); give each codec its own keyring",
                        codecs
                            .iter()
                            .map(|c| shown(c))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        self.policy
            .validate(|t, c| {
                self.targets
                    .iter()
                    .any(|x| x.table == t && x.columns.iter().any(|y| y.name == c))
            })
            .map_err(|e| EngineError::Config(e.to_string()))?;
        Ok(())
    }

    /// The keyring config a configured column uses: its `[keyrings.NAME]`,
    /// or `[keys]`; `None` for a column that is not configured.
    pub fn keyring_config_for(&self, table: &str, column: &str) -> Option<&KeysConfig> {
        let c = self
            .targets
            .iter()
            .filter(|t| t.table == table)
            .flat_map(|t| t.columns.iter())
            .find(|c| c.name == column)?;
        match &c.keyring {
            Some(name) => self.keyrings.get(name),
            None => Some(&self.keys),
        }
    }

    /// The parsed sources of the `[keys]` section (loading the config has
    /// checked that they parse).
    pub fn key_sources(&self) -> Vec<KeySource> {
        // validate() parsed every source already.
        self.keys
            .sources
            .iter()
            .filter_map(|s| KeySource::parse(s).ok())
            .collect()
    }

    /// Which key of the `[keys]` ring encrypts and which refuse to decrypt.
    pub fn ring_policy(&self) -> RingPolicy {
        self.keys.policy()
    }
}

/// A TOML error as `line L, column C: message`: never the source line the
/// parser quotes (a key pasted under a misspelt field would be echoed),
/// and the message with values removed ([`scrub_message`]).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = keyturn_format::scrub_message(e.message());
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            // The section the error is in: the last table header before it.
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let this_line = text[line_start..].lines().next().unwrap_or_default();
            let section = std::iter::once(this_line)
                .chain(text[..line_start].lines().rev())
                .map(str::trim)
                .find(|l| l.starts_with('['))
                .and_then(|l| l.split(']').next())
                .map(|h| h.trim_start_matches('[').trim())
                .filter(|h| {
                    !h.is_empty()
                        && h.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-\" ".contains(&b))
                });
            match section {
                Some(h) => format!("line {line}, column {column}: {msg} (in [{h}])"),
                None => format!("line {line}, column {column}: {msg}"),
            }
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_codecs::multi::Role;
    use keyturn_engine::config::EncodingConfig;

    const OK: &str = r#"
[database]
url = "sqlite://x.db"
[keys]
primary = "k2"
[[target]]
table = "patients"
primary_key = ["region", "id"]
columns = [{ name = "phone", context = true }, { name = "nino", encoding = "binary" }]
"#;

    #[test]
    fn parses_a_complete_config() {
        let c = Config::parse(OK).unwrap();
        assert_eq!(c.targets[0].primary_key.to_vec(), vec!["region", "id"]);
        assert_eq!(
            c.targets[0].columns[1].encoding,
            Some(EncodingConfig::Binary)
        );
        assert!(c.targets[0].columns[0].context);
        assert_eq!(c.rotation.batch_size, 5000);
        assert_eq!(c.keys.sources, vec!["env:KEYTURN_KEYS"]);
    }

    #[test]
    fn metrics_section_is_optional_and_checked() {
        let c = Config::parse(OK).unwrap();
        assert_eq!(c.metrics.addr, None);
        assert_eq!(c.metrics.linger_seconds, 0);
        let with = |m: &str| OK.replace("[keys]", &format!("[metrics]\n{m}\n[keys]"));
        let c = Config::parse(&with("addr = \"127.0.0.1:9187\"\nlinger_seconds = 5")).unwrap();
        assert_eq!(c.metrics.addr, Some(([127, 0, 0, 1], 9187).into()));
        assert_eq!(c.metrics.linger_seconds, 5);
        let e = Config::parse(&with("addr = \"localhost\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("addr"), "{e}");
        let e = Config::parse(&with("linger_seconds = 301"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics.linger_seconds"), "{e}");
        let e = Config::parse(&with("adr = \"127.0.0.1:1\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("adr"), "{e}");
    }

    #[test]
    fn workers_default_per_database_unless_configured() {
        let c = Config::parse(OK).unwrap();
        assert_eq!(c.rotation.workers, None);
        assert_eq!(c.rotation.workers_for("sqlite://x.db"), 1);
        assert_eq!(c.rotation.workers_for("postgres://h/db"), 2);
        assert_eq!(c.rotation.workers_for("mariadb://h/db"), 2);
        let set = Config::parse(&OK.replace("[keys]", "[rotation]\nworkers = 3\n[keys]")).unwrap();
        assert_eq!(set.rotation.workers_for("sqlite://x.db"), 3);
        assert_eq!(
            set.rotation
                .workers_for_targets("sqlite://x.db", &set.targets),
            3
        );
        let kms = Config::parse(
            "[database]\nurl = \"sqlite://x.db\"\n[kms.bao]\nkind = \"vault-transit\"\naddress = \"http://127.0.0.1:8200\"\n[[target]]\ntable = \"t\"\nprimary_key = \"id\"\ncolumns = [{ name = \"ssn\", codec = \"vault-transit\", kms = \"bao\", key = \"app\" }]\n",
        )
        .unwrap();
        // The server's time overlaps the database's: two batches in flight.
        assert_eq!(
            kms.rotation
                .workers_for_targets("sqlite://x.db", &kms.targets),
            2
        );
        assert_eq!(kms.rotation.workers_for("sqlite://x.db"), 1);
        let e = Config::parse(&OK.replace("[keys]", "[rotation]\nworkers = 0\n[keys]"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rotation.workers") && e.contains("1..=64"),
            "{e}"
        );
    }

    #[test]
    fn rejects_with_exact_key_and_reason() {
        let typo = OK.replace("columns =", "colums =");
        let e = Config::parse(&typo).unwrap_err().to_string();
        assert!(e.contains("colums"), "{e}");
        let e = Config::parse(&OK.replace("\"nino\"", "\"id\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("target[0].columns[1].name") && e.contains("primary key"),
            "{e}"
        );
        let e = Config::parse(&OK.replace("[keys]", "[rotation]\nbatch_size = 0\n[keys]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("rotation.batch_size"), "{e}");
        let e = Config::parse(&OK.replace("patients", "pat;ients"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("target[0].table"), "{e}");
        let e = Config::parse(&OK.replace("[keys]", "[keys]\nsources = [\"k1:aes256gcm:AAAA\"]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("keys.sources[0]") && !e.contains("AAAA"), "{e}");
    }

    #[test]
    fn codec_columns_need_a_keyring_and_valid_options() {
        let base = r#"
[database]
url = "sqlite://x.db"
[keyrings.lara]
sources = ["env:LARAVEL_KEYS"]
primary = "new"
[[target]]
table = "users"
primary_key = "id"
"#;
        let ok = format!(
            "{base}columns = [{{ name = \"token\", codec = \"laravel\", options = {{ cipher = \"aes-256-gcm\" }}, keyring = \"lara\" }}]"
        );
        let c = Config::parse(&ok).unwrap();
        assert!(
            c.targets[0].columns[0]
                .codec_config("users")
                .unwrap()
                .is_some()
        );
        let e = Config::parse(&ok.replace(", keyring = \"lara\"", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("target[0].columns[0].keyring"), "{e}");
        let e = Config::parse(&ok.replace("cipher", "ciphr"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("target[0].columns[0]") && e.contains("ciphr"),
            "{e}"
        );
        let e = Config::parse(&ok.replace("\"laravel\"", "\"laraval\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("laraval"), "{e}");
        let e = Config::parse(&ok.replace("keyring = \"lara\"", "keyring = \"nope\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no [keyrings.nope]"), "{e}");
        // Lockbox takes table and column from the target.
        let lb = format!(
            "{base}columns = [{{ name = \"email_ciphertext\", codec = \"lockbox\", keyring = \"lara\" }}]"
        );
        let c = Config::parse(&lb).unwrap();
        assert!(
            format!(
                "{:?}",
                c.targets[0].columns[0].codec_config("users").unwrap()
            )
            .contains("email_ciphertext")
        );
    }

    #[test]
    fn multi_column_codecs_name_their_columns() {
        let base = r#"
[database]
url = "sqlite://x.db"
[keyrings.kek]
sources = ["env:KEKS"]
primary = "kek-2"
[[target]]
table = "accounts"
primary_key = "id"
"#;
        let entry = r#"{ name = "ssn", codec = "envelope", keyring = "kek", iv_column = "ssn_iv", key_id_column = "ssn_kek", wrapped_key_column = "ssn_dek" }"#;
        let ok = format!("{base}columns = [{entry}]");
        let c = Config::parse(&ok).unwrap();
        let col = &c.targets[0].columns[0];
        assert_eq!(col.role_column(Role::WrappedKey), Some("ssn_dek"));
        assert_eq!(col.role_column(Role::Ciphertext), Some("ssn"));
        let err = |text: &str| Config::parse(text).unwrap_err().to_string();
        let e = err(&ok.replace(r#", wrapped_key_column = "ssn_dek""#, ""));
        assert!(
            e.contains("target[0].columns[0].wrapped_key_column")
                && e.contains("needs the column holding the wrapped key"),
            "{e}"
        );
        let e = err(&ok.replace(r#""envelope""#, r#""split-columns""#));
        assert!(
            e.contains("target[0].columns[0].wrapped_key_column") && e.contains("remove"),
            "{e}"
        );
        let e = err(&ok.replace(r#""envelope""#, r#""laravel""#));
        assert!(
            e.contains("target[0].columns[0].iv_column") && e.contains("only multi-column"),
            "{e}"
        );
        let e = err(&ok.replace(r#"key_id_column = "ssn_kek""#, r#"key_id_column = "id""#));
        assert!(
            e.contains("target[0].columns[0].key_id_column") && e.contains("primary key"),
            "{e}"
        );
        let e = err(&ok.replace(r#"iv_column = "ssn_iv""#, r#"iv_column = "ssn""#));
        assert!(
            e.contains("target[0].columns[0].iv_column")
                && e.contains("ssn is already used by target[0].columns[0].name"),
            "{e}"
        );
        let e = err(&format!(
            r#"{base}columns = [{entry}, {{ name = "ssn_iv" }}]"#
        ));
        assert!(
            e.contains("target[0].columns[1].name: ssn_iv is already used by target[0].columns[0].iv_column"),
            "{e}"
        );
        let e = err(&ok.replace(r#"iv_column = "ssn_iv""#, r#"iv_column = "ssn iv""#));
        assert!(e.contains("target[0].columns[0].iv_column"), "{e}");
        let e = err(&ok.replace("keyring = ", "context = true, keyring = "));
        assert!(e.contains("target[0].columns[0].context"), "{e}");
        let e = err(&ok.replace(
            "keyring = ",
            r#"options = { wrapp = "aes-kw" }, keyring = "#,
        ));
        assert!(
            e.contains("target[0].columns[0]") && e.contains("wrapp"),
            "{e}"
        );
        let kw = ok.replace(
            "keyring = ",
            r#"options = { wrap = "aes-kw", rotation = "reencrypt" }, keyring = "#,
        );
        Config::parse(&kw).unwrap();
    }

    /// Every codec line of README.md's per-framework section parses and builds.
    #[test]
    fn readme_codec_examples_are_valid() {
        let examples = [
            r#"codec = "fernet""#,
            r#"codec = "django-fernet-fields""#,
            r#"codec = "django-fernet-fields", options = { use_hkdf = false }"#,
            r#"codec = "laravel", options = { cipher = "aes-256-cbc" }"#,
            r#"codec = "laravel", options = { cipher = "aes-256-gcm" }"#,
            r#"codec = "rails", options = { key_derivation_salt = "salt", kdf = "sha256" }"#,
            r#"codec = "rails", options = { key_derivation_salt = "salt", kdf = "sha1" }"#,
            r#"codec = "lockbox""#,
            r#"codec = "vault-transit""#,
            r#"codec = "cloak""#,
            r#"codec = "node-gcm", options = { iv_len = 16 }"#,
            r#"codec = "node-gcm", options = { iv_len = 12 }"#,
            r#"codec = "version-byte", options = { versions = { "1" = "v1", "2" = "v2" } }"#,
            r#"codec = "sodium-prefix", options = { algorithm = "xsalsa20poly1305" }"#,
            r#"codec = "sodium-prefix", options = { algorithm = "xchacha20poly1305" }"#,
            r#"codec = "json-envelope""#,
            r#"codec = "envelope", iv_column = "c_iv", key_id_column = "c_kek", wrapped_key_column = "c_dek""#,
            r#"codec = "envelope", options = { rotation = "reencrypt" }, iv_column = "c_iv", key_id_column = "c_kek", wrapped_key_column = "c_dek""#,
            r#"codec = "split-columns", iv_column = "c_iv", key_id_column = "c_kek""#,
        ];
        let readme = include_str!("../../../README.md");
        for ex in examples {
            let text = format!(
                "[database]\nurl = \"sqlite://x.db\"\n[keyrings.app]\nsources = [\"env:K\"]\n[[target]]\ntable = \"users\"\nprimary_key = \"id\"\ncolumns = [{{ name = \"c\", {ex}, keyring = \"app\" }}]\n"
            );
            Config::parse(&text).unwrap_or_else(|e| panic!("{ex}: {e}"));
            let codec = ex.split(", ").next().unwrap_or(ex);
            assert!(
                readme.contains(&format!("`{codec}`")) || readme.contains(&format!("`{codec},")),
                "README lacks {codec}"
            );
        }
    }

    /// The envelope example of docs/CODECS.md parses as written.
    #[test]
    fn codecs_md_envelope_example_is_valid() {
        let doc = include_str!("../../../docs/CODECS.md");
        let start = doc
            .find("```toml\n[keyrings.kms]")
            .expect("the envelope example in docs/CODECS.md");
        let body = &doc[start + "```toml\n".len()..];
        let example = &body[..body.find("```").unwrap()];
        let c = Config::parse(&format!("[database]\nurl = \"sqlite://x.db\"\n{example}")).unwrap();
        let col = &c.targets[0].columns[0];
        assert_eq!(col.codec, "envelope");
        assert_eq!(col.role_column(Role::WrappedKey), Some("ssn_wrapped_dek"));
        let with_options = example.replace("# options", "options");
        Config::parse(&format!(
            "[database]\nurl = \"sqlite://x.db\"\n{with_options}"
        ))
        .unwrap();
    }

    const SPEC: &str = "k1:aes256gcm:q0cXZq+Wv7pj8sLXS9N4DhfOQ1H/4jVXk4GMI84kvgE=";

    /// The error for `text`, checked to hold neither the spec nor any part
    /// of its key material.
    fn clean_error(text: &str) -> String {
        let e = Config::parse(text).unwrap_err().to_string();
        for part in [SPEC, "q0cXZq", "4jVXk4GM", "kvgE="] {
            assert!(!e.contains(part), "{e}");
        }
        e
    }

    #[test]
    fn toml_errors_give_position_never_the_value() {
        // A spec pasted under a misspelt field: no source snippet.
        let e = clean_error(&OK.replace("primary = \"k2\"", &format!("primry = \"{SPEC}\"")));
        assert!(
            e.contains("line 5, column 1: unknown field `primry`, expected one of"),
            "{e}"
        );
        assert!(!e.contains('|') && !e.contains('^'), "{e}");
        // A value of the wrong type: the kind only.
        let e = clean_error(&OK.replace(
            "[keys]",
            &format!("[rotation]\nbatch_size = \"{SPEC}\"\n[keys]"),
        ));
        assert!(
            e.contains("line 5, column 14: invalid type: string (value not shown), expected usize"),
            "{e}"
        );
        // An enum value.
        let e =
            clean_error(&OK.replace("encoding = \"binary\"", &format!("encoding = \"{SPEC}\"")));
        assert!(
            e.contains("unknown variant (value not shown), expected"),
            "{e}"
        );
        let e = clean_error(&OK.replace("encoding = \"binary\"", "encoding = \"binarry\""));
        assert!(e.contains("unknown variant `binarry`"), "{e}");
        // Codec options deserialized from the config's values.
        let e = clean_error(&OK.replace(
            "encoding = \"binary\"",
            &format!("codec = \"node-gcm\", options = {{ iv_len = \"{SPEC}\" }}, keyring = \"x\""),
        ));
        assert!(e.contains("invalid type: string (value not shown)"), "{e}");
        let e = clean_error(&OK.replace("encoding = \"binary\"", &format!("codec = \"{SPEC}\"")));
        assert!(e.contains("target[0].columns[1]"), "{e}");
        // A syntax error.
        let e = clean_error(&format!("{OK}\n[keys2\nsources = [\"{SPEC}\"]\n"));
        assert!(
            e.starts_with("config: line 11, column 7: unclosed table"),
            "{e}"
        );
    }

    #[test]
    fn catalog_toml_errors_never_echo_values() {
        let cat = |body: &str| format!("{OK}\n[catalog]\n{body}\n");
        let e = clean_error(&cat(&format!("kek = \"local\"\nmaster_kee = \"{SPEC}\"")));
        assert!(
            e.contains("line 11, column 1: unknown field `master_kee`"),
            "{e}"
        );
        let e = clean_error(&cat(&format!("kek = \"{SPEC}\"")));
        assert!(
            e.contains(
                "line 11, column 1: unknown variant (value not shown), expected one of `local`"
            ),
            "{e}"
        );
        let e = clean_error(&cat(&format!("kek = \"local\"\nmaster_key = \"{SPEC}\"")));
        assert!(
            e.contains(
                "master_key: bad key source: a secret source is env:NAME, file:PATH or stdin"
            ),
            "{e}"
        );
        let e = clean_error(&cat(&format!(
            "kek = \"local\"\nretention_days = \"{SPEC}\""
        )));
        assert!(
            e.contains("line 13, column 18: invalid type: string (value not shown)"),
            "{e}"
        );
    }

    #[test]
    fn key_ids_in_the_config_are_checked_not_echoed() {
        let e = clean_error(&OK.replace("primary = \"k2\"", &format!("primary = \"{SPEC}\"")));
        assert!(
            e.contains("keys.primary is not a valid key id (1-32 characters A-Za-z0-9._-); its value is not shown"),
            "{e}"
        );
        let e = clean_error(&OK.replace(
            "primary = \"k2\"",
            &format!("retired = [\"k1\", \"{SPEC}\"]"),
        ));
        assert!(e.contains("keys.retired[1] is not a valid key id"), "{e}");
        let ring = format!(
            "{OK}[keyrings.app]\nsources = [\"env:X\"]\nprimary = \"{}\"\n",
            &SPEC[13..]
        );
        let e = clean_error(&ring);
        assert!(
            e.contains("keyrings.app.primary is not a valid key id"),
            "{e}"
        );
        let e = clean_error(&OK.replace("\"patients\"", &format!("\"{SPEC}\"")));
        assert!(
            e.contains("target[0].table: table (value not shown)"),
            "{e}"
        );
        let e = clean_error(&OK.replace(
            "encoding = \"binary\"",
            &format!("codec = \"fernet\", keyring = \"{SPEC}\""),
        ));
        assert!(e.contains("keyring: no [keyrings.NAME] section"), "{e}");
    }

    #[test]
    fn rates_and_ranges() {
        let with = |r: &str| OK.replace("[keys]", &format!("[rotation]\n{r}\n[keys]"));
        let e = Config::parse(&with("max_rows_per_sec = 0"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rotation.max_rows_per_sec: 0 would let no row through"),
            "{e}"
        );
        let c = Config::parse(&with("max_rows_per_sec = 1")).unwrap();
        assert_eq!(c.rotation.max_rows_per_sec, Some(1));
        let e = Config::parse(&with("batch_size = 100001"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside 1..=100000"), "{e}");
        Config::parse(&with("batch_size = 100000\nworkers = 64")).unwrap();
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("conf");
        std::fs::create_dir(&sub).unwrap();
        let text = format!(
            "{}\n[keyrings.app]\nsources = [\"file:app.keys\", \"file:/abs/x.keys\", \"env:K\"]\n[catalog]\nkek = \"local\"\nmaster_key = \"file:secrets/mk\"\n",
            OK.replace("sqlite://x.db", "sqlite://data/x.db?mode=rwc")
                .replace("[keys]", "[keys]\nsources = [\"file:keys.txt\", \"stdin\"]")
        );
        let path = sub.join("keyturn.toml");
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        let s = sub.display();
        assert_eq!(
            c.keys.sources,
            vec![format!("file:{s}/keys.txt"), "stdin".into()]
        );
        assert_eq!(
            c.keyrings["app"].sources,
            vec![
                format!("file:{s}/app.keys"),
                "file:/abs/x.keys".into(),
                "env:K".into()
            ]
        );
        assert_eq!(
            c.catalog.unwrap().kek,
            keyturn_kms::KekConfig::Local {
                master_key: Some(format!("file:{s}/secrets/mk"))
            }
        );
        assert_eq!(c.database.url, format!("sqlite://{s}/data/x.db?mode=rwc"));
        // Parsing alone (no file) leaves them as written.
        assert_eq!(Config::parse(OK).unwrap().database.url, "sqlite://x.db");
    }

    #[test]
    fn debug_hides_the_database_password() {
        let c = Config::parse(&OK.replace(
            "sqlite://x.db",
            "postgres://u:s3cret@h/db?sslpassword=s3cret",
        ))
        .unwrap();
        let d = format!("{c:?}");
        assert!(d.contains("postgres://u:***@h/db?sslpassword=***"), "{d}");
        assert!(!d.contains("s3cret"), "{d}");
    }
}
