//! Resolves the configuration against the live schema before anything runs:
//! every configured table, key column and encrypted column must exist and
//! have a type that can hold ciphertext.

use crate::EngineError;
use crate::config::TargetConfig;
use keyturn_db::{ColumnRef, Database, PkColumn, PkValue, ValueKind, pk_kind_of, value_kind_of};
use keyturn_format::{Codec, Encoding, Keyring, NativeCodec};
use keyturn_keys::KeysConfig;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The keyrings a plan's columns use: the `[keys]` ring and named
/// `[keyrings.NAME]` rings (keys in another framework's form).
#[derive(Debug, Clone, Default)]
pub struct Rings {
    /// The `[keys]` keyring, if a selected column uses it.
    pub default: Option<Arc<Keyring>>,
    /// The `[keyrings.NAME]` rings that selected columns use, by name.
    pub named: BTreeMap<String, Arc<Keyring>>,
    /// The `[kms.NAME]` servers that rotate `kms = "NAME"` columns.
    pub servers: BTreeMap<String, keyturn_kms::ServerConfig>,
}

impl Rings {
    /// Loads only the rings the selected columns use, so a run on one table
    /// does not need every other table's keys.
    pub fn load(
        targets: &[TargetConfig],
        keys: &KeysConfig,
        keyrings: &BTreeMap<String, KeysConfig>,
        table: Option<&str>,
        column: Option<&str>,
    ) -> Result<Rings, EngineError> {
        Rings::load_with_default(targets, keys, keyrings, table, column, None)
    }

    /// Like [`load`](Self::load), with the `[keys]` ring given by the caller
    /// (loaded from the key catalog) instead of read from key sources.
    pub fn load_with_default(
        targets: &[TargetConfig],
        keys: &KeysConfig,
        keyrings: &BTreeMap<String, KeysConfig>,
        table: Option<&str>,
        column: Option<&str>,
        default: Option<Arc<Keyring>>,
    ) -> Result<Rings, EngineError> {
        let mut rings = Rings {
            default,
            ..Rings::default()
        };
        for t in targets
            .iter()
            .filter(|t| table.is_none_or(|x| x == t.table))
        {
            for c in t
                .columns
                .iter()
                .filter(|c| column.is_none_or(|x| x == c.name) && c.kms.is_none())
            {
                match &c.keyring {
                    None => {
                        if rings.default.is_none() {
                            rings.default = Some(Arc::new(keyturn_keys::load_keyring(
                                &keys.sources(),
                                &keys.policy(),
                            )?));
                        }
                    }
                    Some(name) if !rings.named.contains_key(name) => {
                        let k = keyrings.get(name).ok_or_else(|| {
                            EngineError::Config(format!("no [keyrings.{name}] section"))
                        })?;
                        let codec = c.codec_config(&t.table).map_err(EngineError::Config)?;
                        let ring = match codec {
                            Some(cc) => keyturn_keys::load_foreign_keyring(
                                &k.sources(),
                                &k.policy(),
                                |id, text| keyturn_codecs::parse_key(&cc, id, text),
                            )?,
                            None => keyturn_keys::load_keyring(&k.sources(), &k.policy())?,
                        };
                        rings.named.insert(name.clone(), Arc::new(ring));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(rings)
    }

    fn get(&self, name: Option<&str>) -> Result<Arc<Keyring>, EngineError> {
        match name {
            None => self.default.clone(),
            Some(n) => self.named.get(n).cloned(),
        }
        .ok_or_else(|| {
            EngineError::Config(format!(
                "keyring {} was not loaded",
                name.unwrap_or("[keys]")
            ))
        })
    }
}

/// One encrypted column, ready to process.
#[derive(Debug, Clone)]
pub struct ColumnPlan {
    /// The table, column and primary key of the column in the database.
    pub col: ColumnRef,
    /// The codec of the column's values.
    pub codec: Arc<dyn Codec>,
    /// The keys of this column's format; its primary encrypts. `None` when
    /// the plan was resolved without keys (commands that only count, such
    /// as `due` and `report`).
    pub ring: Option<Arc<Keyring>>,
    /// Bind table, column and primary key as associated data.
    pub context: bool,
    /// The KMS that rotates this column's values (`kms = "NAME"`); `None`
    /// for a column whose keys are in `ring`, or a plan made without keys.
    pub remote: Option<Arc<dyn crate::remote::RemoteKeys>>,
}

impl ColumnPlan {
    /// The key id rows end under: the ring's primary, or the KMS's target.
    pub fn primary_id(&self) -> Result<String, EngineError> {
        match &self.remote {
            Some(r) => Ok(r.target().to_owned()),
            None => Ok(self.ring()?.primary_id().to_string()),
        }
    }

    /// The stored prefix of values under [`primary_id`](Self::primary_id),
    /// when SQL can skip them.
    pub fn primary_prefix(&self) -> Result<Option<Vec<u8>>, EngineError> {
        match &self.remote {
            Some(r) => Ok(r.primary_prefix()),
            None => Ok(self.codec.primary_prefix(self.ring()?)),
        }
    }

    /// What the column's keys say of a key id the census found.
    pub fn key_state(&self, key_id: &str) -> Result<Option<keyturn_format::KeyState>, EngineError> {
        match &self.remote {
            Some(r) => Ok(r.state(key_id)),
            None => Ok(self.ring()?.state(key_id)),
        }
    }

    /// Whether a key id the census found can be decrypted (`Ok`), or why
    /// not (`Err(retired)`).
    pub fn key_usable(&self, key_id: &str) -> Result<Result<(), bool>, EngineError> {
        use keyturn_format::KeyState;
        Ok(match &self.remote {
            Some(r) => match r.state(key_id) {
                Some(KeyState::Primary | KeyState::DecryptOnly) => Ok(()),
                Some(KeyState::Retired) => Err(true),
                _ => Err(false),
            },
            None => match self.ring()?.decryption_key(key_id) {
                Ok(_) => Ok(()),
                Err(e) => Err(matches!(e, keyturn_format::FormatError::KeyRetired(_))),
            },
        })
    }

    /// The column's keyring, or an error if the plan was made without keys.
    pub fn ring(&self) -> Result<&Arc<Keyring>, EngineError> {
        self.ring.as_ref().ok_or_else(|| {
            EngineError::Usage(format!(
                "{}: keys were not loaded for this command",
                self.label()
            ))
        })
    }

    /// The associated-data parts for one row: table, column, then each
    /// primary-key value as text (see docs/FORMAT.md).
    pub fn context_parts(&self, pk: &[PkValue]) -> Vec<Vec<u8>> {
        if !self.context {
            return Vec::new();
        }
        let mut parts = Vec::with_capacity(2 + pk.len());
        parts.push(self.col.table.as_bytes().to_vec());
        parts.push(self.col.column.as_bytes().to_vec());
        parts.extend(pk.iter().map(|v| v.context_text().into_bytes()));
        parts
    }

    /// What the database's census needs of this column's codec.
    pub fn census(&self) -> keyturn_db::KeyCensus {
        keyturn_db::KeyCensus::of(self.codec.as_ref())
    }

    /// The column as `table.column`, for messages.
    pub fn label(&self) -> String {
        format!("{}.{}", self.col.table, self.col.column)
    }
}

/// Every column an operation will touch, in config order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The selected columns, in config order.
    pub columns: Vec<ColumnPlan>,
}

impl Plan {
    /// The distinct primary key ids of the columns' keyrings, in column order.
    pub fn current_key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for c in &self.columns {
            let Ok(p) = c.primary_id() else { continue };
            if !ids.contains(&p) {
                ids.push(p);
            }
        }
        ids
    }
}

/// Checks the config against the database and builds the plan. `table` and
/// `column` narrow it down (`--table`, `--column`). All problems are reported
/// together.
pub async fn resolve(
    db: &dyn Database,
    targets: &[TargetConfig],
    rings: Option<&Rings>,
    table: Option<&str>,
    column: Option<&str>,
) -> Result<Plan, EngineError> {
    if let Some(t) = table
        && !targets.iter().any(|x| x.table == t)
    {
        return Err(EngineError::Usage(format!(
            "--table {t}: not a configured table (configured: {})",
            targets
                .iter()
                .map(|x| x.table.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if let Some(c) = column {
        let found = targets
            .iter()
            .filter(|x| table.is_none_or(|t| x.table == t))
            .any(|x| x.columns.iter().any(|y| y.name == c));
        if !found {
            return Err(EngineError::Usage(format!(
                "--column {c}: not a configured column"
            )));
        }
    }
    let mut problems = Vec::new();
    let mut columns = Vec::new();
    for t in targets {
        if table.is_some_and(|x| x != t.table) {
            continue;
        }
        let Some(info) = db.describe_table(&t.table).await? else {
            problems.push(format!("table {} does not exist", t.table));
            continue;
        };
        let mut pk = Vec::new();
        for name in t.primary_key.to_vec() {
            match info.column_type(&name) {
                Some(ty) => match pk_kind_of(db.backend(), ty) {
                    Ok(kind) => pk.push(PkColumn {
                        name: name.clone(),
                        kind,
                        sql_type: ty.to_owned(),
                    }),
                    Err(why) => {
                        problems.push(format!("{}: primary key column {name}: {why}", t.table))
                    }
                },
                None => problems.push(format!(
                    "{}: primary key column {name} does not exist",
                    t.table
                )),
            }
        }
        if pk.len() != t.primary_key.to_vec().len() {
            continue;
        }
        if !info.primary_key.is_empty() && info.primary_key != t.primary_key.to_vec() {
            problems.push(format!(
                "{}: configured primary_key {:?} differs from the table's primary key {:?}",
                t.table,
                t.primary_key.to_vec(),
                info.primary_key
            ));
        }
        for c in &t.columns {
            if column.is_some_and(|x| x != c.name) {
                continue;
            }
            let Some(ty) = info.column_type(&c.name) else {
                problems.push(format!("{}: column {} does not exist", t.table, c.name));
                continue;
            };
            let Some(kind) = value_kind_of(ty) else {
                problems.push(format!(
                    "{}.{}: type {ty} cannot hold ciphertext (use a text or binary column)",
                    t.table, c.name
                ));
                continue;
            };
            let encoding = match (c.encoding, kind) {
                (None, ValueKind::Text)
                | (Some(crate::config::EncodingConfig::Text), ValueKind::Text) => Encoding::Text,
                (None, ValueKind::Binary)
                | (Some(crate::config::EncodingConfig::Binary), ValueKind::Binary) => {
                    Encoding::Binary
                }
                (Some(crate::config::EncodingConfig::Binary), ValueKind::Text) => {
                    problems.push(format!(
                        "{}.{}: encoding = \"binary\" but the column is {ty}; use encoding = \"text\" or a binary column",
                        t.table, c.name
                    ));
                    continue;
                }
                (Some(crate::config::EncodingConfig::Text), ValueKind::Binary) => Encoding::Text,
            };
            let mut cells = Vec::new();
            let mut aux = Vec::new();
            let mut remote = None;
            let codec: Arc<dyn Codec> = match c.kms.as_deref() {
                Some(name) => {
                    aux = crate::remote::aux_columns(c);
                    for a in &aux {
                        if info.column_type(a).is_none() {
                            problems.push(format!("{}: column {a} does not exist", t.table));
                        }
                    }
                    if c.codec == "envelope" {
                        match crate::remote::envelope::resolve_cells(&info, &t.table, c) {
                            Ok(cs) => cells = cs,
                            Err(p) => {
                                problems.extend(p);
                                continue;
                            }
                        }
                    }
                    let col = ColumnRef {
                        table: t.table.clone(),
                        pk: pk.clone(),
                        column: c.name.clone(),
                        kind,
                        cells: cells.clone(),
                        aux: aux.clone(),
                    };
                    match rings {
                        // A plan without keys (counting only) needs the
                        // codec alone: the KMS is not asked.
                        None => crate::remote::codec_only(c, &col)?,
                        Some(r) => {
                            let server = r.servers.get(name).ok_or_else(|| {
                                EngineError::Config(format!(
                                    "{}.{}: kms = {}: no [kms.{name}] section",
                                    t.table,
                                    c.name,
                                    keyturn_format::shown(name)
                                ))
                            })?;
                            let (codec, r) = crate::remote::open(db, server, c, &col).await?;
                            remote = Some(r);
                            codec
                        }
                    }
                }
                None => match c.codec_config(&t.table).map_err(EngineError::Config)? {
                    None => Arc::new(NativeCodec { encoding }),
                    Some(cc) if cc.is_multi_column() => {
                        let inner = Arc::from(keyturn_codecs::build_multi(&cc)?);
                        match crate::multi::resolve_cells(&info, &t.table, c, inner, false) {
                            Ok((codec, cs)) => {
                                cells = cs;
                                codec
                            }
                            Err(p) => {
                                problems.extend(p);
                                continue;
                            }
                        }
                    }
                    Some(cc) => {
                        if c.codec == "version-byte" && kind == ValueKind::Text {
                            problems.push(format!(
                            "{}.{}: codec version-byte writes raw bytes; the column is {ty}, use a binary column",
                            t.table, c.name
                        ));
                            continue;
                        }
                        Arc::from(keyturn_codecs::build(&cc)?)
                    }
                },
            };
            columns.push(ColumnPlan {
                col: ColumnRef {
                    table: t.table.clone(),
                    pk: pk.clone(),
                    column: c.name.clone(),
                    kind,
                    cells,
                    aux,
                },
                codec,
                ring: match rings {
                    Some(r) if c.kms.is_none() => Some(r.get(c.keyring.as_deref())?),
                    _ => None,
                },
                context: c.context,
                remote,
            });
        }
    }
    if !problems.is_empty() {
        return Err(EngineError::Schema(problems.join("; ")));
    }
    Ok(Plan { columns })
}
