//! The engine's sections of keyturn.toml: `[rotation]` and `[[target]]`
//! (the whole file is composed in `keyturn-ops`; each section belongs to the
//! crate that reads it).
//!
//! ```toml
//! [rotation]
//! batch_size = 5000
//! workers = 2      # default: the database's (1 on SQLite, 2 on servers)
//!
//! [[target]]
//! table = "patients"
//! primary_key = "id"                # or ["region", "id"]
//! columns = [
//!   { name = "phone", encoding = "text", context = true },
//!   { name = "nino", encoding = "binary" },
//!   # another framework's format, with its own keyring (keyturn-ops checks it exists)
//!   { name = "otp", codec = "fernet", keyring = "django" },
//! ]
//! ```

use crate::EngineError;
use keyturn_codecs::multi::Role;
use keyturn_db::check_identifier;
use keyturn_format::shown;
use serde::Deserialize;

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

/// The `[rotation]` section: how a run reads and writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// Rows read and written per batch (default 5000).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Batches in flight; `None`: [`RotationConfig::workers_for`] picks
    /// per database.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Throttle: at most this many rows a second across all workers; `None` for no limit.
    #[serde(default)]
    pub max_rows_per_sec: Option<u64>,
    /// Pause writing while a replica is further behind than this (`"2s"`,
    /// `"500ms"`); `None`: replicas are not watched.
    #[serde(default)]
    pub max_replica_lag: Option<String>,
    /// Replicas to watch besides those PostgreSQL streams to (which it
    /// finds itself): `"postgres://…"`, `"mysql://…"`, or `{ url = "…",
    /// optional = true }` for one whose lag may be unreadable.
    #[serde(default)]
    pub replicas: Vec<ReplicaConfig>,
    /// How long a batch write waits for a row lock the application holds
    /// before keyturn splits the batch and comes back to the row later
    /// (`"300ms"`, the default; `"off"`: the server's own setting).
    #[serde(default)]
    pub lock_timeout: Option<String>,
    /// Adaptive batch size: batches grow or shrink (up to `batch_size`) so
    /// that one batch write takes about this many milliseconds, whatever the
    /// row size and the server's load [default: 200; 0: off, every batch
    /// `batch_size` rows].
    #[serde(default)]
    pub target_batch_ms: Option<u64>,
}

/// `rotation.target_batch_ms` unless configured.
pub const DEFAULT_TARGET_BATCH_MS: u64 = 200;

/// `rotation.lock_timeout` unless configured.
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(300);

/// One entry of `rotation.replicas`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ReplicaConfig {
    /// The replica's URL; its lag must be readable.
    Url(String),
    /// The replica's URL, and whether an unreadable lag is skipped.
    Entry {
        /// `postgres://…`, `mysql://…` or `mariadb://…`.
        url: String,
        /// Skip this replica (with a warning) when its lag cannot be read.
        #[serde(default)]
        optional: bool,
    },
}

impl ReplicaConfig {
    /// The replica as the database layer watches it.
    pub fn spec(&self) -> keyturn_db::replicas::ReplicaSpec {
        match self {
            ReplicaConfig::Url(u) => keyturn_db::replicas::ReplicaSpec {
                url: u.clone(),
                optional: false,
            },
            ReplicaConfig::Entry { url, optional } => keyturn_db::replicas::ReplicaSpec {
                url: url.clone(),
                optional: *optional,
            },
        }
    }
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            batch_size: default_batch(),
            workers: None,
            max_rows_per_sec: None,
            max_replica_lag: None,
            replicas: Vec::new(),
            lock_timeout: None,
            target_batch_ms: None,
        }
    }
}

impl RotationConfig {
    /// The configured `workers`, else the database's default, as its
    /// driver states it ([`keyturn_db::Capabilities::default_workers`]: 1 on
    /// SQLite, one writer at a time; 2 on servers, whose writers run in
    /// parallel); 2 for a URL no driver takes.
    pub fn workers_for(&self, database_url: &str) -> usize {
        self.workers.unwrap_or_else(|| {
            keyturn_db::Backend::from_url(database_url)
                .map_or(2, |b| b.capabilities().default_workers)
        })
    }

    /// [`workers_for`](Self::workers_for) for a run over `targets`: unless
    /// configured, at least 2 when a column is rotated inside a KMS, so that
    /// one batch is written while the next is at the server (the crypto is
    /// the server's, and does not compete with the database for the cores;
    /// on SQLite: keyturn ÷ plain rewrap loop 0.62 with one worker, 0.83
    /// with two, BENCHMARKS.md).
    pub fn workers_for_targets(&self, database_url: &str, targets: &[TargetConfig]) -> usize {
        let base = self.workers_for(database_url);
        let kms = targets
            .iter()
            .any(|t| t.columns.iter().any(|c| c.kms.is_some()));
        if self.workers.is_none() && kms {
            base.max(2)
        } else {
            base
        }
    }
}

fn default_batch() -> usize {
    5000
}

/// A setting that takes one string or a list of strings (e.g. `primary_key`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single string.
    One(String),
    /// A list of strings.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, one or many, in order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One `[[target]]` table: its primary key and the encrypted columns in it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The table's name.
    pub table: String,
    /// The column or columns of the table's primary key, which identify a row.
    pub primary_key: OneOrMany,
    /// The encrypted columns of this table.
    pub columns: Vec<ColumnConfig>,
}

/// How a column stores its values, where the column type does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingConfig {
    /// ASCII text (TEXT / VARCHAR columns).
    Text,
    /// Raw bytes (bytea / BLOB / VARBINARY columns).
    Binary,
}

/// One encrypted column of a `[[target]]` table and the format of its values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    /// The column's name (for multi-column codecs: the ciphertext column).
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
    /// Rotate inside this `[kms.NAME]` server (server-side rewrap): the
    /// column's keys never leave the KMS, and the column has no keyring.
    /// Codecs: `vault-transit`, `aws-kms`, `envelope` (docs/KMS.md).
    pub kms: Option<String>,
    /// `kms` columns: the KMS key. `vault-transit`: the transit key's name;
    /// `aws-kms`: the key (id, ARN or alias) values are re-encrypted to.
    pub key: Option<String>,
    /// `kms` + `vault-transit`: the column naming each row's transit key
    /// (instead of `key`).
    pub key_column: Option<String>,
    /// `kms` + `vault-transit` with a derived key: the column holding each
    /// row's derivation context (its text, as bytes). `context = true`
    /// instead derives from table, column and primary key (docs/KMS.md).
    pub context_column: Option<String>,
    /// `kms` + `aws-kms` / `envelope`: the encryption context of each value,
    /// `{ name = "COLUMN" }` (each row's column text) or `{ name = "=literal" }`.
    pub encryption_context: Option<std::collections::BTreeMap<String, String>>,
    /// `kms` + `envelope`: the table mapping the key-id column's ids to KMS keys.
    pub key_catalog: Option<KeyCatalogConfig>,
    /// `kms` + `envelope`: ids of the key-id column and their KMS keys (AWS
    /// key ARNs or ids, transit key names), in config instead of (or beside)
    /// `key_catalog`.
    pub kms_keys: Option<std::collections::BTreeMap<String, String>>,
    /// `kms` + `envelope`: the id (of `key_catalog` or `kms_keys`) whose KMS
    /// key rows are rotated to.
    pub target_key_id: Option<String>,
}

/// A table of the application's that maps key ids to KMS keys (the
/// `encryption_keys` catalog of envelope schemes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCatalogConfig {
    /// The table's name.
    pub table: String,
    /// The column holding the id the rows' key-id column refers to [default: `key_id`].
    #[serde(default = "default_catalog_id")]
    pub id_column: String,
    /// The column holding the KMS key (ARN, key id, alias, transit key name) [default: `kms_key_arn`].
    #[serde(default = "default_catalog_kms_key")]
    pub kms_key_column: String,
}

fn default_catalog_id() -> String {
    "key_id".into()
}

fn default_catalog_kms_key() -> String {
    "kms_key_arn".into()
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
                    keyturn_format::scrub_message(&e.to_string())
                )
            })
    }
}

fn default_codec() -> String {
    "keyturn".into()
}

impl RotationConfig {
    /// `max_replica_lag`, parsed (checked by [`validate`](Self::validate)).
    pub fn max_replica_lag(&self) -> Option<std::time::Duration> {
        self.max_replica_lag
            .as_deref()
            .and_then(|s| crate::pacing::parse_duration(s).ok())
    }

    /// `target_batch_ms` as a duration; `None` when off (0).
    pub fn target_batch(&self) -> Option<std::time::Duration> {
        match self.target_batch_ms.unwrap_or(DEFAULT_TARGET_BATCH_MS) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }

    /// `lock_timeout`: the configured one, [`DEFAULT_LOCK_TIMEOUT`] when
    /// unset, `None` for `"off"`.
    pub fn lock_timeout(&self) -> Option<std::time::Duration> {
        match self.lock_timeout.as_deref() {
            None => Some(DEFAULT_LOCK_TIMEOUT),
            Some("off") => None,
            Some(s) => crate::pacing::parse_duration(s).ok(),
        }
    }

    /// Checks the ranges (the command line's flags use the same ones).
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |key: &str, why: String| Err(EngineError::Config(format!("{key}: {why}")));
        if self.target_batch_ms.is_some_and(|ms| ms > 600_000) {
            return bad(
                "rotation.target_batch_ms",
                "at most 600000 (10 minutes); 0 turns adaptive batches off".into(),
            );
        }
        if let Some(l) = self.lock_timeout.as_deref()
            && l != "off"
            && let Err(e) = crate::pacing::parse_duration(l)
        {
            return bad("rotation.lock_timeout", format!("{e}, or \"off\""));
        }
        if let Some(l) = &self.max_replica_lag
            && let Err(e) = crate::pacing::parse_duration(l)
        {
            return bad("rotation.max_replica_lag", e);
        }
        for r in &self.replicas {
            let url = r.spec().url;
            let ok = ["postgres://", "postgresql://", "mysql://", "mariadb://"]
                .iter()
                .any(|p| url.starts_with(p));
            if !ok {
                return bad(
                    "rotation.replicas",
                    format!(
                        "{}: a replica is a postgres://, mysql:// or mariadb:// URL",
                        keyturn_db::redact_url(&url)
                    ),
                );
            }
        }
        if !self.replicas.is_empty() && self.max_replica_lag.is_none() {
            return bad(
                "rotation.replicas",
                "replicas are watched against rotation.max_replica_lag: set it (e.g. \"2s\")"
                    .into(),
            );
        }
        if !(BATCH_SIZE_MIN..=BATCH_SIZE_MAX).contains(&self.batch_size) {
            return bad(
                "rotation.batch_size",
                format!(
                    "{} is outside {BATCH_SIZE_MIN}..={BATCH_SIZE_MAX}",
                    self.batch_size
                ),
            );
        }
        if let Some(w) = self.workers
            && !(WORKERS_MIN..=WORKERS_MAX).contains(&w)
        {
            return bad(
                "rotation.workers",
                format!("{w} is outside {WORKERS_MIN}..={WORKERS_MAX}"),
            );
        }
        if let Some(r) = self.max_rows_per_sec
            && r < MAX_ROWS_PER_SEC_MIN
        {
            return bad(
                "rotation.max_rows_per_sec",
                format!(
                    "{r} would let no row through; the least is {MAX_ROWS_PER_SEC_MIN} (leave it out for no limit)"
                ),
            );
        }
        Ok(())
    }
}

/// Checks the `[[target]]` sections against each other and against the
/// codecs' needs (identifiers, keys not encrypted, one part per column,
/// codec options, multi-column roles); `keyring_exists(name)` says whether a
/// `[keyrings.NAME]` section exists. Nothing is looked up in the database.
pub fn validate_targets(
    targets: &[TargetConfig],
    keyring_exists: impl Fn(&str) -> bool,
) -> Result<(), EngineError> {
    let bad = |key: &str, why: String| Err(EngineError::Config(format!("{key}: {why}")));
    if targets.is_empty() {
        return bad("target", "no [[target]] tables configured".into());
    }
    for (i, t) in targets.iter().enumerate() {
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
            if c.kms.is_some() {
                crate::remote::validate_column(t, c, &ckey)?;
                continue;
            }
            crate::remote::refuse_kms_fields(c, &ckey)?;
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
                (_, Some(k)) if !keyring_exists(k) => {
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
                Some(cc) if cc.is_multi_column() => validate_multi_column(t, c, cc, &ckey)?,
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
        if targets.iter().filter(|o| o.table == t.table).count() > 1 {
            return bad(
                &format!("{key}.table"),
                format!("{} is configured twice", t.table),
            );
        }
    }
    Ok(())
}

/// Checks a multi-column codec's entry: the role columns it needs are
/// given, the others are not, and each is a plain identifier outside the
/// primary key.
fn validate_multi_column(
    t: &TargetConfig,
    c: &ColumnConfig,
    cc: &keyturn_codecs::CodecConfig,
    ckey: &str,
) -> Result<(), EngineError> {
    let bad = |key: &str, why: String| Err(EngineError::Config(format!("{ckey}.{key}: {why}")));
    let codec =
        keyturn_codecs::build_multi(cc).map_err(|e| EngineError::Config(format!("{ckey}: {e}")))?;
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
