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
use keyturn_format::shown;
use keyturn_keys::{KeySource, RingPolicy};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Env var naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "KEYTURN_CONFIG";
/// Config file used when neither `--config` nor the env var is given.
pub const DEFAULT_CONFIG: &str = "keyturn.toml";

/// `rotation.batch_size` and `--batch-size`: rows per batch.
pub const BATCH_SIZE_MIN: usize = 1;
/// See [`BATCH_SIZE_MIN`].
pub const BATCH_SIZE_MAX: usize = 100_000;
/// `rotation.workers` and `--workers`: batches in flight.
pub const WORKERS_MIN: usize = 1;
/// See [`WORKERS_MIN`].
pub const WORKERS_MAX: usize = 64;
/// `rotation.max_rows_per_sec` and `--max-rows-per-sec`: at least one row a
/// second (leave it out for no limit).
pub const MAX_ROWS_PER_SEC_MIN: u64 = 1;

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

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path`, `postgres://…` or `mysql://…`, with `${VAR}`
    /// interpolation.
    pub url: String,
}

/// The URL with its password and password-like parameters hidden
/// (`keyturn_db::redact_url`): after interpolation it may hold a secret.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &keyturn_db::redact_url(&self.url))
            .finish()
    }
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
            .map_err(|e| {
                format!(
                    "codec {}: {}",
                    shown(&self.codec),
                    scrub_message(&e.to_string())
                )
            })
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
        let resolve_source = |s: &mut String| {
            if let Some(p) = s.strip_prefix("file:")
                && !p.is_empty()
                && Path::new(p).is_relative()
            {
                *s = format!("file:{}", base.join(p).display());
            }
        };
        self.keys.sources.iter_mut().for_each(resolve_source);
        for ring in self.keyrings.values_mut() {
            ring.sources.iter_mut().for_each(resolve_source);
        }
        if let Some(c) = &mut self.catalog {
            for s in [&mut c.kek.master_key, &mut c.kek.token]
                .into_iter()
                .flatten()
            {
                resolve_source(s);
            }
        }
        if let Some(url) = sqlite_relative_to(&self.database.url, base) {
            self.database.url = url;
        }
    }

    pub fn parse(text: &str) -> Result<Config, EngineError> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| EngineError::Config(toml_error(text, &e)))?;
        cfg.database.url = interpolate_url(&cfg.database.url, "database.url")?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), EngineError> {
        let bad = |key: &str, why: String| Err(EngineError::Config(format!("{key}: {why}")));
        if self.targets.is_empty() {
            return bad("target", "no [[target]] tables configured".into());
        }
        if !(BATCH_SIZE_MIN..=BATCH_SIZE_MAX).contains(&self.rotation.batch_size) {
            return bad(
                "rotation.batch_size",
                format!(
                    "{} is outside {BATCH_SIZE_MIN}..={BATCH_SIZE_MAX}",
                    self.rotation.batch_size
                ),
            );
        }
        if let Some(w) = self.rotation.workers
            && !(WORKERS_MIN..=WORKERS_MAX).contains(&w)
        {
            return bad(
                "rotation.workers",
                format!("{w} is outside {WORKERS_MIN}..={WORKERS_MAX}"),
            );
        }
        if let Some(r) = self.rotation.max_rows_per_sec
            && r < MAX_ROWS_PER_SEC_MIN
        {
            return bad(
                "rotation.max_rows_per_sec",
                format!(
                    "{r} would let no row through; the least is {MAX_ROWS_PER_SEC_MIN} (leave it out for no limit)"
                ),
            );
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
        check_key_ids(&self.keys, "keys")?;
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
                                "codec {} needs its own keyring: add keyring = \"NAME\" and a [keyrings.NAME] section",
                                shown(&c.codec)
                            ),
                        );
                    }
                    (_, Some(k)) if !self.keyrings.contains_key(k) => {
                        return bad(
                            &format!("{ckey}.keyring"),
                            if keyturn_format::is_showable(k) {
                                format!("no [keyrings.{k}] section")
                            } else {
                                "no [keyrings.NAME] section of that name (the value is not shown)"
                                    .into()
                            },
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
                            "only multi-column codecs (envelope, split-columns) take {k}; codec {} keeps its value in one column",
                            shown(&c.codec)
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
            if !keyturn_format::is_showable(name) {
                return bad(
                    "keyrings",
                    "a keyring's name is 1-32 characters A-Za-z0-9._- (its value is not shown)"
                        .into(),
                );
            }
            let key = format!("keyrings.{name}");
            check_key_ids(k, &key)?;
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
                            "codec {} needs the column holding the {}: add {key} = \"COLUMN\"",
                            shown(&c.codec),
                            role.name()
                        ),
                    );
                }
                (false, Some(_)) => {
                    return bad(
                        key,
                        format!(
                            "codec {} has no {} column; remove {key}",
                            shown(&c.codec),
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
                    "codec {} binds no associated data; remove context",
                    shown(&c.codec)
                ),
            );
        }
        if c.encoding.is_some() {
            return bad(
                "encoding",
                format!(
                    "codec {} writes raw bytes; the columns' types decide, remove encoding",
                    shown(&c.codec)
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

/// Checks that `primary` and `retired` of a keyring section are key ids;
/// a value that is not (a key spec pasted there) is never echoed.
fn check_key_ids(k: &KeysConfig, section: &str) -> Result<(), EngineError> {
    let not_an_id = |key: String| {
        Err(EngineError::Config(format!(
            "{key} is not a valid key id (1-32 characters A-Za-z0-9._-); its value is not shown"
        )))
    };
    if let Some(p) = &k.primary
        && !keyturn_format::is_showable(p)
    {
        return not_an_id(format!("{section}.primary"));
    }
    for (i, r) in k.retired.iter().enumerate() {
        if !keyturn_format::is_showable(r) {
            return not_an_id(format!("{section}.retired[{i}]"));
        }
    }
    Ok(())
}

/// A TOML error as `line L, column C: message`: never the source line the
/// parser quotes (a key pasted under a misspelt field would be echoed),
/// and the message with values removed ([`scrub_message`]).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = scrub_message(e.message());
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {msg}")
        }
        None => msg,
    }
}

/// A deserializer's message without the values it quotes: serde's
/// `invalid type: string "…", expected …` loses the value, and any other
/// quoted (`` `…` `` or `"…"`) text that is not a plain name (field names,
/// enum variants, punctuation the parser expected) is replaced by
/// `(value not shown)`. Several lines become one.
fn scrub_message(msg: &str) -> String {
    let msg = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg.as_str();
    for lead in ["invalid type: ", "invalid value: "] {
        if let Some(after) = rest.strip_prefix(lead) {
            // `string "…"`, `integer `5``, `map`: keep the kind only.
            let end = after.find(", expected").unwrap_or(after.len());
            let kind = after[..end]
                .split(['"', '`'])
                .next()
                .unwrap_or_default()
                .trim();
            out.push_str(lead);
            out.push_str(kind);
            if after[..end].contains(['"', '`']) {
                out.push_str(" (value not shown)");
            }
            rest = &after[end..];
            break;
        }
    }
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[open] as char;
        out.push_str(&rest[..open]);
        let body = &rest[open + 1..];
        // The closing quote; `\"` inside a Debug-quoted string is escaped.
        let mut close = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                '\\' if quote == '"' => escaped = !escaped,
                c if c == quote && !escaped => {
                    close = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(close) = close else {
            // Unbalanced: whatever follows may be a value.
            out.push_str("(value not shown)");
            return out;
        };
        let inner = &body[..close];
        if keyturn_format::is_showable(inner) || inner.chars().count() <= 3 {
            out.push(quote);
            out.push_str(inner);
            out.push(quote);
        } else {
            out.push_str("(value not shown)");
        }
        rest = &body[close + 1..];
    }
    out.push_str(rest);
    out
}

/// A relative SQLite database path made relative to `base`; `None` when
/// there is nothing to change (not SQLite, in memory, absolute, empty).
fn sqlite_relative_to(url: &str, base: &Path) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let in_memory = query.is_some_and(|q| q.split('&').any(|kv| kv == "mode=memory"));
    if path.is_empty() || path == ":memory:" || in_memory || Path::new(path).is_absolute() {
        return None;
    }
    // sqlx percent-decodes the path: the folder's own `%`, `?` and `#`
    // must stay literal.
    let mut folder = String::new();
    for c in base.display().to_string().chars() {
        match c {
            '%' => folder.push_str("%25"),
            '?' => folder.push_str("%3F"),
            '#' => folder.push_str("%23"),
            c => folder.push(c),
        }
    }
    let mut out = format!("sqlite://{folder}/{path}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// Characters of a substituted value kept as they are in a URL's userinfo:
/// RFC 3986's unreserved ones; everything else is percent-encoded.
const USERINFO_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Replaces `${VAR}` with the environment variable's value; in the URL's
/// userinfo (between `scheme://` and the `@` that ends the authority) the
/// value is percent-encoded, so a password such as `p@ss/w#rd` works as it
/// is. Elsewhere (host, path, query) it is inserted as it is.
fn interpolate_url(s: &str, key: &str) -> Result<String, EngineError> {
    interpolate_url_from(s, key, |name| std::env::var(name).ok())
}

/// [`interpolate_url`] with the variables from `lookup`.
fn interpolate_url_from(
    s: &str,
    key: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, EngineError> {
    let userinfo = userinfo_span(s);
    interpolate(s, key, lookup, |at, value, out| {
        if userinfo.as_ref().is_some_and(|r| r.contains(&at)) {
            out.extend(percent_encoding::utf8_percent_encode(
                value,
                USERINFO_ENCODE,
            ));
        } else {
            out.push_str(value);
        }
    })
}

/// Where the userinfo of a URL template lies (byte offsets), `${…}`
/// placeholders skipped over: from after `://` to the `@` that comes before
/// any `/`, `?` or `#`.
fn userinfo_span(s: &str) -> Option<std::ops::Range<usize>> {
    let start = s.find("://")? + 3;
    let b = s.as_bytes();
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'$' if b.get(i + 1) == Some(&b'{') => {
                i += s[i..].find('}')? + 1;
                continue;
            }
            b'@' => return Some(start..i),
            b'/' | b'?' | b'#' => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Replaces `${VAR}` with the environment variable's value, handed to
/// `put` with the placeholder's byte offset in `s`.
fn interpolate(
    s: &str,
    key: &str,
    lookup: impl Fn(&str) -> Option<String>,
    put: impl Fn(usize, &str, &mut String),
) -> Result<String, EngineError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let at = s.len() - rest.len() + start;
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| EngineError::Config(format!("{key}: unclosed ${{ in the value")))?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(EngineError::Config(format!(
                "{key}: ${{{}}} is not a valid variable name",
                if keyturn_format::is_showable(name) {
                    name
                } else {
                    "…"
                }
            )));
        }
        let val = zeroize::Zeroizing::new(lookup(name).ok_or_else(|| {
            EngineError::Config(format!("{key}: environment variable {name} is not set"))
        })?);
        put(at, &val, &mut out);
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
        assert!(e.contains("kek = (value not shown): use"), "{e}");
        let e = clean_error(&cat(&format!("kek = \"local\"\nmaster_key = \"{SPEC}\"")));
        assert!(e.contains("master_key is env:NAME or file:PATH"), "{e}");
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
            c.catalog.unwrap().kek.master_key,
            Some(format!("file:{s}/secrets/mk"))
        );
        assert_eq!(c.database.url, format!("sqlite://{s}/data/x.db?mode=rwc"));
        // Parsing alone (no file) leaves them as written.
        assert_eq!(Config::parse(OK).unwrap().database.url, "sqlite://x.db");
    }

    #[test]
    fn sqlite_urls_that_stay_as_they_are() {
        let base = Path::new("/etc/kt");
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
            "sqlite://x.db?mode=memory&cache=shared",
            "sqlite:///var/lib/x.db",
            "sqlite:///var/lib/x.db?mode=ro",
            "postgres://h/db",
        ] {
            assert_eq!(sqlite_relative_to(url, base), None, "{url}");
        }
        assert_eq!(
            sqlite_relative_to("sqlite:x.db", base).as_deref(),
            Some("sqlite:///etc/kt/x.db")
        );
        assert_eq!(
            sqlite_relative_to("sqlite://d/x.db", Path::new("/a b/100%?#")).as_deref(),
            Some("sqlite:///a b/100%25%3F%23/d/x.db")
        );
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

    #[test]
    fn variables_in_the_userinfo_are_percent_encoded() {
        let env = |name: &str| (name == "KEYTURN_TEST_URL_PW").then(|| "p@ss/w#rd:x%".to_owned());
        let u = |t: &str| interpolate_url_from(t, "database.url", env).unwrap();
        assert_eq!(
            u("postgres://app:${KEYTURN_TEST_URL_PW}@127.0.0.1/db"),
            "postgres://app:p%40ss%2Fw%23rd%3Ax%25@127.0.0.1/db"
        );
        assert_eq!(
            u("mysql://${KEYTURN_TEST_URL_PW}@h/db"),
            "mysql://p%40ss%2Fw%23rd%3Ax%25@h/db"
        );
        // Outside the userinfo: as it is.
        assert_eq!(
            u("postgres://h/db?application_name=${KEYTURN_TEST_URL_PW}"),
            "postgres://h/db?application_name=p@ss/w#rd:x%"
        );
        assert_eq!(
            u("postgres://u@h/${KEYTURN_TEST_URL_PW}"),
            "postgres://u@h/p@ss/w#rd:x%"
        );
        assert_eq!(userinfo_span("postgres://a:${X}@h"), Some(11..17));
        assert_eq!(userinfo_span("postgres://h/x@y"), None);
    }

    #[test]
    fn interpolates_env_and_reports_missing() {
        let e = interpolate_url("postgres://u:${KEYTURN_SURELY_UNSET}@h/db", "database.url")
            .unwrap_err()
            .to_string();
        assert!(e.contains("KEYTURN_SURELY_UNSET is not set"), "{e}");
        // PATH is set in every test environment.
        let v = interpolate_url("a${PATH}b", "x").unwrap();
        assert!(v.starts_with('a') && v.ends_with('b') && v.len() > 2);
    }
}
