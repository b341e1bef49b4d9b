//! The TOML configuration: which database, which keys, which columns.
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

use crate::EngineError;
use keyturn_codecs::multi::Role;
use keyturn_db::check_identifier;
use keyturn_keys::{KeySource, RingPolicy};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Env var naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "KEYTURN_CONFIG";
/// Config file used when neither `--config` nor the env var is given.
pub const DEFAULT_CONFIG: &str = "keyturn.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub rotation: RotationConfig,
    #[serde(rename = "target", default)]
    pub targets: Vec<TargetConfig>,
    /// Named keyrings for columns in other frameworks' formats (keys in the
    /// framework's own string form, `id=key` per line).
    #[serde(default)]
    pub keyrings: std::collections::BTreeMap<String, KeysConfig>,
    /// Maximum key age and reminders (`keyturn due`); optional.
    #[serde(default)]
    pub policy: crate::policy::PolicyConfig,
    /// Optional key catalog (docs/CATALOG.md): when present, the `[keys]`
    /// keyring is loaded from the catalog table, DEKs unwrapped by its KEK.
    #[serde(default)]
    pub catalog: Option<keyturn_catalog::CatalogConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path`, `postgres://…` or `mysql://…`, with `${VAR}`
    /// interpolation.
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    #[serde(default = "default_sources")]
    pub sources: Vec<String>,
    pub primary: Option<String>,
    #[serde(default)]
    pub retired: Vec<String>,
    #[serde(default)]
    pub allow_retired: bool,
}

impl KeysConfig {
    pub fn policy(&self) -> RingPolicy {
        RingPolicy {
            primary: self.primary.clone(),
            retired: self.retired.clone(),
            allow_retired: self.allow_retired,
        }
    }

    pub fn sources(&self) -> Vec<KeySource> {
        // Config::validate parsed every source already.
        self.sources
            .iter()
            .filter_map(|s| KeySource::parse(s).ok())
            .collect()
    }
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
    vec![format!("env:{}", keyturn_keys::DEFAULT_ENV)]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Batches in flight; `None`: [`RotationConfig::workers_for`] picks
    /// per database.
    #[serde(default)]
    pub workers: Option<usize>,
    #[serde(default)]
    pub max_rows_per_sec: Option<u64>,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            batch_size: default_batch(),
            workers: None,
            max_rows_per_sec: None,
        }
    }
}

impl RotationConfig {
    /// The configured `workers`, else the database's default: 1 on SQLite
    /// (one writer at a time: a reader and a writer already keep two cores
    /// busy, and measured at 1M rows a second batch in flight was no faster
    /// and held 10 MB more), 2 on servers, whose writers run in parallel.
    pub fn workers_for(&self, database_url: &str) -> usize {
        self.workers
            .unwrap_or(match keyturn_db::Backend::from_url(database_url) {
                Ok(keyturn_db::Backend::Sqlite) => 1,
                _ => 2,
            })
    }
}

fn default_batch() -> usize {
    5000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub table: String,
    pub primary_key: OneOrMany,
    pub columns: Vec<ColumnConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingConfig {
    Text,
    Binary,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    pub name: String,
    /// Defaults to the column's type: text for TEXT/VARCHAR, binary for
    /// bytea/BLOB/VARBINARY.
    pub encoding: Option<EncodingConfig>,
    /// Bind table, column and primary key as associated data.
    #[serde(default)]
    pub context: bool,
    /// The stored format; `keyturn` (the default) is keyturn's own format v1.
    /// Others: fernet, django-fernet-fields, laravel, rails, lockbox,
    /// vault-transit, cloak, node-gcm, version-byte, sodium-prefix,
    /// json-envelope (docs/CODECS.md).
    #[serde(default = "default_codec")]
    pub codec: String,
    /// The codec's parameters, e.g. `{ cipher = "aes-256-gcm" }` for laravel.
    #[serde(default)]
    pub options: Option<toml::Table>,
    /// A `[keyrings.NAME]` section; required for other frameworks' formats,
    /// default: the `[keys]` keyring.
    pub keyring: Option<String>,
    /// Multi-column codecs (`envelope`, `split-columns`): the column holding
    /// the IV of the value whose ciphertext is in `name`.
    pub iv_column: Option<String>,
    /// Multi-column codecs: the column naming the key (of the column's
    /// keyring) that encrypted the value or wrapped its data key.
    pub key_id_column: Option<String>,
    /// `envelope`: the column holding the row's wrapped data key.
    pub wrapped_key_column: Option<String>,
}

impl ColumnConfig {
    /// The column holding `role` of a multi-column value (the ciphertext is
    /// the column's `name`).
    pub fn role_column(&self, role: Role) -> Option<&str> {
        match role {
            Role::Ciphertext => Some(&self.name),
            Role::Iv => self.iv_column.as_deref(),
            Role::KeyId => self.key_id_column.as_deref(),
            Role::WrappedKey => self.wrapped_key_column.as_deref(),
            _ => None,
        }
    }

    /// The role columns given in the config: (config key, column).
    fn role_columns(&self) -> Vec<(&'static str, &str)> {
        [
            ("iv_column", &self.iv_column),
            ("key_id_column", &self.key_id_column),
            ("wrapped_key_column", &self.wrapped_key_column),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }

    /// The codec configuration of a column in another framework's format, or
    /// `None` for keyturn's own format. Lockbox's table and column default to
    /// the target's.
    pub fn codec_config(&self, table: &str) -> Result<Option<keyturn_codecs::CodecConfig>, String> {
        if self.codec == "keyturn" {
            if self.options.as_ref().is_some_and(|o| !o.is_empty()) {
                return Err(
                    "options: keyturn's own format takes no options (use encoding and context)"
                        .into(),
                );
            }
            return Ok(None);
        }
        let mut t = self.options.clone().unwrap_or_default();
        t.insert("codec".into(), toml::Value::String(self.codec.clone()));
        if self.codec == "lockbox" {
            t.entry("table")
                .or_insert_with(|| toml::Value::String(table.to_owned()));
            t.entry("column")
                .or_insert_with(|| toml::Value::String(self.name.clone()));
        }
        keyturn_codecs::CodecConfig::deserialize(toml::Value::Table(t))
            .map(Some)
            .map_err(|e| format!("codec {:?}: {}", self.codec, e.to_string().trim()))
    }
}

fn default_codec() -> String {
    "keyturn".into()
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
        Config::parse(&text).map_err(|e| match e {
            EngineError::Config(m) => EngineError::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Config, EngineError> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| EngineError::Config(e.to_string()))?;
        cfg.database.url = interpolate(&cfg.database.url, "database.url")?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), EngineError> {
        let bad = |key: &str, why: String| Err(EngineError::Config(format!("{key}: {why}")));
        if self.targets.is_empty() {
            return bad("target", "no [[target]] tables configured".into());
        }
        if !(1..=100_000).contains(&self.rotation.batch_size) {
            return bad(
                "rotation.batch_size",
                format!("{} is outside 1..=100000", self.rotation.batch_size),
            );
        }
        if let Some(w) = self.rotation.workers
            && !(1..=64).contains(&w)
        {
            return bad("rotation.workers", format!("{w} is outside 1..=64"));
        }
        if let Some(c) = &self.catalog {
            c.validate()
                .map_err(|e| EngineError::Config(format!("catalog: {e}")))?;
        }
        if self.keys.sources.is_empty() {
            return bad("keys.sources", "at least one key source is needed".into());
        }
        for (i, s) in self.keys.sources.iter().enumerate() {
            KeySource::parse(s)
                .map_err(|e| EngineError::Config(format!("keys.sources[{i}]: {e}")))?;
        }
        for (i, t) in self.targets.iter().enumerate() {
            let key = format!("target[{i}]");
            check_identifier(&t.table, "table")
                .map_err(|e| EngineError::Config(format!("{key}.table: {e}")))?;
            let pk = t.primary_key.to_vec();
            if pk.is_empty() {
                return bad(&format!("{key}.primary_key"), "empty".into());
            }
            for p in &pk {
                check_identifier(p, "column")
                    .map_err(|e| EngineError::Config(format!("{key}.primary_key: {e}")))?;
            }
            if t.columns.is_empty() {
                return bad(
                    &format!("{key}.columns"),
                    format!("no encrypted columns for table {}", t.table),
                );
            }
            for (j, c) in t.columns.iter().enumerate() {
                let ckey = format!("{key}.columns[{j}]");
                check_identifier(&c.name, "column")
                    .map_err(|e| EngineError::Config(format!("{ckey}.name: {e}")))?;
                if pk.contains(&c.name) {
                    return bad(
                        &format!("{ckey}.name"),
                        format!("{} is part of the primary key", c.name),
                    );
                }
                if t.columns.iter().filter(|o| o.name == c.name).count() > 1 {
                    return bad(
                        &format!("{ckey}.name"),
                        format!("{} is listed twice", c.name),
                    );
                }
                let codec = c
                    .codec_config(&t.table)
                    .map_err(|e| EngineError::Config(format!("{ckey}: {e}")))?;
                match (&codec, &c.keyring) {
                    (Some(_), None) => {
                        return bad(
                            &format!("{ckey}.keyring"),
                            format!(
                                "codec {:?} needs its own keyring: add keyring = \"NAME\" and a [keyrings.NAME] section",
                                c.codec
                            ),
                        );
                    }
                    (_, Some(k)) if !self.keyrings.contains_key(k) => {
                        return bad(
                            &format!("{ckey}.keyring"),
                            format!("no [keyrings.{k}] section"),
                        );
                    }
                    _ => {}
                }
                match &codec {
                    Some(cc) if cc.is_multi_column() => {
                        self.validate_multi_column(t, c, cc, &ckey)?
                    }
                    Some(cc) => {
                        keyturn_codecs::build(cc)
                            .map_err(|e| EngineError::Config(format!("{ckey}: {e}")))?;
                    }
                    None => {}
                }
                if codec.as_ref().is_none_or(|cc| !cc.is_multi_column())
                    && let Some((k, _)) = c.role_columns().first()
                {
                    return bad(
                        &format!("{ckey}.{k}"),
                        format!(
                            "only multi-column codecs (envelope, split-columns) take {k}; codec {:?} keeps its value in one column",
                            c.codec
                        ),
                    );
                }
            }
            // A column plays one part: a ciphertext column of one entry is
            // not the IV or key-id column of another.
            let mut used: Vec<(&str, String)> = Vec::new();
            for (j, c) in t.columns.iter().enumerate() {
                let names = std::iter::once(("name", c.name.as_str())).chain(c.role_columns());
                for (k, col) in names {
                    let here = format!("{key}.columns[{j}].{k}");
                    if let Some((_, first)) = used.iter().find(|(u, _)| *u == col) {
                        return bad(&here, format!("{col} is already used by {first}"));
                    }
                    used.push((col, here));
                }
            }
            if self.targets.iter().filter(|o| o.table == t.table).count() > 1 {
                return bad(
                    &format!("{key}.table"),
                    format!("{} is configured twice", t.table),
                );
            }
        }
        for (name, k) in &self.keyrings {
            let key = format!("keyrings.{name}");
            if k.sources.is_empty() {
                return bad(
                    &format!("{key}.sources"),
                    "at least one key source is needed".into(),
                );
            }
            for (i, s) in k.sources.iter().enumerate() {
                KeySource::parse(s)
                    .map_err(|e| EngineError::Config(format!("{key}.sources[{i}]: {e}")))?;
            }
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
                        "used by columns of different codecs ({codecs:?}); give each codec its own keyring"
                    ),
                );
            }
        }
        self.policy.validate(&self.targets)?;
        Ok(())
    }

    /// Checks a multi-column codec's entry: the role columns it needs are
    /// given, the others are not, and each is a plain identifier outside the
    /// primary key.
    fn validate_multi_column(
        &self,
        t: &TargetConfig,
        c: &ColumnConfig,
        cc: &keyturn_codecs::CodecConfig,
        ckey: &str,
    ) -> Result<(), EngineError> {
        let bad = |key: &str, why: String| Err(EngineError::Config(format!("{ckey}.{key}: {why}")));
        let codec = keyturn_codecs::build_multi(cc)
            .map_err(|e| EngineError::Config(format!("{ckey}: {e}")))?;
        let roles = codec.roles();
        for role in [Role::Iv, Role::KeyId, Role::WrappedKey] {
            let key = crate::multi::role_key(role);
            match (roles.contains(&role), c.role_column(role)) {
                (true, None) => {
                    return bad(
                        key,
                        format!(
                            "codec {:?} needs the column holding the {}: add {key} = \"COLUMN\"",
                            c.codec,
                            role.name()
                        ),
                    );
                }
                (false, Some(_)) => {
                    return bad(
                        key,
                        format!(
                            "codec {:?} has no {} column; remove {key}",
                            c.codec,
                            role.name()
                        ),
                    );
                }
                (true, Some(col)) => {
                    check_identifier(col, "column")
                        .map_err(|e| EngineError::Config(format!("{ckey}.{key}: {e}")))?;
                    if t.primary_key.to_vec().iter().any(|p| p == col) {
                        return bad(key, format!("{col} is part of the primary key"));
                    }
                }
                (false, None) => {}
            }
        }
        if c.context {
            return bad(
                "context",
                format!(
                    "codec {:?} binds no associated data; remove context",
                    c.codec
                ),
            );
        }
        if c.encoding.is_some() {
            return bad(
                "encoding",
                format!(
                    "codec {:?} writes raw bytes; the columns' types decide, remove encoding",
                    c.codec
                ),
            );
        }
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

    pub fn key_sources(&self) -> Vec<KeySource> {
        // validate() parsed every source already.
        self.keys
            .sources
            .iter()
            .filter_map(|s| KeySource::parse(s).ok())
            .collect()
    }

    pub fn ring_policy(&self) -> RingPolicy {
        self.keys.policy()
    }
}

/// Replaces `${VAR}` with the environment variable's value.
fn interpolate(s: &str, key: &str) -> Result<String, EngineError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| EngineError::Config(format!("{key}: unclosed ${{ in the value")))?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(EngineError::Config(format!(
                "{key}: ${{{name}}} is not a valid variable name"
            )));
        }
        let val = std::env::var(name).map_err(|_| {
            EngineError::Config(format!("{key}: environment variable {name} is not set"))
        })?;
        out.push_str(&val);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn workers_default_per_database_unless_configured() {
        let c = Config::parse(OK).unwrap();
        assert_eq!(c.rotation.workers, None);
        assert_eq!(c.rotation.workers_for("sqlite://x.db"), 1);
        assert_eq!(c.rotation.workers_for("postgres://h/db"), 2);
        assert_eq!(c.rotation.workers_for("mariadb://h/db"), 2);
        let set = Config::parse(&OK.replace("[keys]", "[rotation]\nworkers = 3\n[keys]")).unwrap();
        assert_eq!(set.rotation.workers_for("sqlite://x.db"), 3);
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

    #[test]
    fn interpolates_env_and_reports_missing() {
        let e = interpolate("postgres://u:${KEYTURN_SURELY_UNSET}@h/db", "database.url")
            .unwrap_err()
            .to_string();
        assert!(e.contains("KEYTURN_SURELY_UNSET is not set"), "{e}");
        // PATH is set in every test environment.
        let v = interpolate("a${PATH}b", "x").unwrap();
        assert!(v.starts_with('a') && v.ends_with('b') && v.len() > 2);
    }
}
