//! `codec = "envelope"` with `kms = "NAME"`: a KMS envelope over four
//! columns of a row whose data keys were made by the KMS itself (AWS KMS
//! `GenerateDataKey`, transit `datakey/wrapped`), so that the wrapped data
//! key is the KMS's own ciphertext:
//!
//! | role | column holds (binary, or base64 in a text column) |
//! |---|---|
//! | ciphertext | `ct ‖ tag(16)`: AES-256-GCM of the value under the row's data key, no associated data |
//! | IV | the 12-byte GCM nonce |
//! | key id | an id of `key_catalog` / `kms_keys`, naming the KMS key that wrapped the data key |
//! | wrapped key | the AWS `CiphertextBlob`, or transit's `vault:vN:…` text (kept as text in either column type) |
//!
//! Rotation moves rows to `target_key_id`:
//! - `rotation = "rewrap"` (default): AWS `ReEncrypt` of the blob to the
//!   target's KMS key, or transit `rewrap` (same transit key) /
//!   `decrypt` + `encrypt` (another transit key: the data key passes
//!   through this process, zeroized); the key-id and wrapped-key columns
//!   change, the ciphertext and IV are untouched. The payload is not
//!   read: a damaged payload keeps its damage under a new wrapping.
//! - `rotation = "reencrypt"`: the old data key is decrypted by the KMS,
//!   the payload opened (its tag checked), a new data key made under the
//!   target (`GenerateDataKey`, `datakey/plaintext`) and the value sealed
//!   again under a fresh IV: every column changes.
//!
//! Each row is one KMS round (two for a full rotation), `max_in_flight`
//! rows at once, transient failures (throttling, 5xx, unreachable) retried
//! with backoff. A value the KMS refuses, or a payload that does not open,
//! is that row's bad row; anything else stops the run, resumable.
//!
//! The codec of the plan ([`KmsEnvelopeLayout`]) only inspects the cells'
//! layout: the key-id cell is packed first, so the census counts rows per
//! catalog id in SQL and skips rows already at `target_key_id`.

use super::{Finding, RemoteKeys, RemoteOutcome, RemoteRow, aux_value};
use crate::EngineError;
use crate::config::ColumnConfig;
use crate::multi::PackedCells;
use backon::Retryable;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyturn_codecs::multi::{Cells, MultiColumnCodec, Role};
use keyturn_db::{CellColumn, ColumnRef, Database, TableInfo, ValueKind, value_kind_of};
use keyturn_format::{
    Algorithm, Codec, Field, FormatError, Inspection, KeyId, KeyState, Keyring, Opened, SecretKey,
    TAG_LEN,
};
use keyturn_kms::{AwsKmsKek, KekProvider as _, KmsError, ServerConfig, TransitKek};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The roles, in packing order (the key id first: see [`PackedCells`]).
const ORDER: &[Role] = &[Role::KeyId, Role::WrappedKey, Role::Iv, Role::Ciphertext];

/// Length of the GCM nonce in the IV column.
const IV_LEN: usize = 12;
/// Length of a data key.
const DEK_LEN: usize = 32;
/// The longest wrapped data key accepted (AWS blobs are under 300 bytes,
/// transit's `vault:vN:` text of a 32-byte key under 200).
const MAX_WRAPPED: usize = 4096;
/// Attempts of one KMS call on a transient failure (throttled, 5xx,
/// unreachable): the first and up to four retries.
const ATTEMPTS: usize = 5;

/// The pauses between [`ATTEMPTS`] attempts of one KMS call: 50 ms,
/// doubling, each lengthened by random jitter of up to its own length, so
/// pause `n` lies between half and all of `100 ms × 2ⁿ`: under 1.5 s in all
/// before the run stops (resumable) on a KMS that keeps failing. Jittered,
/// as the `max_in_flight` calls of a throttled KMS fail together and would
/// otherwise come back together.
fn kms_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_factor(2.0)
        .without_max_delay()
        .with_jitter()
        .with_max_times(ATTEMPTS - 1)
}

/// Whether a failed KMS call is made again: a transient failure that is not
/// the value's own problem (see [`value_problem`]: that row is a bad row).
fn retry_call(e: &KmsError, transit: bool) -> bool {
    value_problem(e, transit).is_none() && e.is_transient()
}

/// The wrapped key of a local wrap (`codec = "envelope"` without `kms`):
/// AES-GCM (60 bytes) or AES key wrap (40 bytes).
pub(crate) fn is_local_wrap_len(len: usize) -> bool {
    len == 60 || len == 40
}

/// How `rotation` rotates rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rotation {
    Rewrap,
    Reencrypt,
}

fn rotation_of(c: &ColumnConfig) -> Result<Rotation, String> {
    let Some(o) = &c.options else {
        return Ok(Rotation::Rewrap);
    };
    for k in o.keys() {
        if k != "rotation" {
            return Err(format!(
                "options.{}: an envelope column with kms takes options = {{ rotation = \"rewrap\" | \"reencrypt\" }}",
                keyturn_format::shown(k)
            ));
        }
    }
    match o.get("rotation").map(|v| v.as_str()) {
        None | Some(Some("rewrap")) => Ok(Rotation::Rewrap),
        Some(Some("reencrypt")) => Ok(Rotation::Reencrypt),
        _ => Err("options.rotation: \"rewrap\" (the default) or \"reencrypt\"".into()),
    }
}

pub(crate) fn validate(c: &ColumnConfig, ckey: &str) -> Result<(), EngineError> {
    let bad = |key: &str, why: String| Err(EngineError::Config(format!("{ckey}.{key}: {why}")));
    for (k, col) in [
        ("iv_column", &c.iv_column),
        ("key_id_column", &c.key_id_column),
        ("wrapped_key_column", &c.wrapped_key_column),
    ] {
        match col {
            None => {
                return bad(
                    k,
                    format!("codec envelope needs {k} = \"COLUMN\" (docs/KMS.md)"),
                );
            }
            Some(name) => keyturn_db::check_identifier(name, "column")
                .map_err(|e| EngineError::Config(format!("{ckey}.{k}: {e}")))?,
        }
    }
    for (k, set) in [
        ("key", c.key.is_some()),
        ("key_column", c.key_column.is_some()),
        ("context_column", c.context_column.is_some()),
        ("context", c.context),
        ("encoding", c.encoding.is_some()),
    ] {
        if set {
            return bad(
                k,
                "an envelope column with kms takes key_catalog and/or kms_keys, target_key_id, encryption_context and options.rotation".into(),
            );
        }
    }
    if c.key_catalog.is_none() && c.kms_keys.is_none() {
        return bad(
            "key_catalog",
            "name the KMS key of each key id: key_catalog = { table = \"encryption_keys\", id_column = \"key_id\", kms_key_column = \"kms_key_arn\" } and/or kms_keys = { \"ID\" = \"KMS KEY\" }".into(),
        );
    }
    if let Some(cat) = &c.key_catalog {
        for (k, v) in [
            ("table", &cat.table),
            ("id_column", &cat.id_column),
            ("kms_key_column", &cat.kms_key_column),
        ] {
            keyturn_db::check_identifier(v, if k == "table" { "table" } else { "column" })
                .map_err(|e| EngineError::Config(format!("{ckey}.key_catalog.{k}: {e}")))?;
        }
    }
    if c.target_key_id.is_none() {
        return bad(
            "target_key_id",
            "name the key id rows move to: target_key_id = \"ID\" (of key_catalog or kms_keys)"
                .into(),
        );
    }
    rotation_of(c).map_err(|e| EngineError::Config(format!("{ckey}.{e}")))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// The layout
// ---------------------------------------------------------------------------

/// The cells of an envelope row with KMS data keys, as the plan's codec
/// sees them: it checks the layout (key id present, wrapped key neither
/// empty nor oversized nor a local 60/40-byte wrap, IV 12 bytes, ciphertext
/// at least a tag) and names the row's key id; it decrypts nothing (the
/// keys are in the KMS).
#[derive(Debug, Clone)]
pub(crate) struct KmsEnvelopeLayout {
    /// Per role of [`ORDER`]: the column is text (base64 cells).
    text: [bool; 4],
}

/// A row's cells, decoded.
pub(crate) struct Parts<'c> {
    key_id: &'c str,
    wrapped: Vec<u8>,
    iv: Vec<u8>,
    body: Vec<u8>,
}

fn pos(role: Role) -> usize {
    ORDER.iter().position(|r| *r == role).unwrap_or(0)
}

impl KmsEnvelopeLayout {
    /// The layout of cell columns in packing order.
    pub(crate) fn from_cells(cells: &[CellColumn]) -> KmsEnvelopeLayout {
        let mut text = [false; 4];
        for (t, c) in text.iter_mut().zip(cells) {
            *t = c.kind == ValueKind::Text;
        }
        KmsEnvelopeLayout { text }
    }

    fn is_text(&self, role: Role) -> bool {
        self.text[pos(role)]
    }

    /// A cell's bytes: base64-decoded from a text column; a transit
    /// wrapped key (`vault:`) as its text in either column type.
    fn decode(&self, role: Role, cell: &[u8]) -> Result<Vec<u8>, FormatError> {
        if role == Role::WrappedKey && cell.starts_with(b"vault:") {
            return Ok(cell.to_vec());
        }
        if !self.is_text(role) {
            return Ok(cell.to_vec());
        }
        STANDARD.decode(cell.trim_ascii()).map_err(|_| {
            FormatError::BadTextEncoding(match role {
                Role::WrappedKey => "the wrapped key column is not base64",
                Role::Iv => "the IV column is not base64",
                _ => "the ciphertext column is not base64",
            })
        })
    }

    /// Bytes as the cell of `role` stores them.
    pub(crate) fn encode(&self, role: Role, bytes: &[u8]) -> Vec<u8> {
        if self.is_text(role) && !(role == Role::WrappedKey && bytes.starts_with(b"vault:")) {
            STANDARD.encode(bytes).into_bytes()
        } else {
            bytes.to_vec()
        }
    }

    pub(crate) fn parts<'c>(&self, cells: &'c Cells) -> Result<Parts<'c>, FormatError> {
        let Some(body) = &cells.ciphertext else {
            return Err(FormatError::Empty);
        };
        let (key_id, wrapped, iv) = match (&cells.key_id, &cells.wrapped_key, &cells.iv) {
            (None, None, None) => return Err(FormatError::UnknownFormat),
            (None, _, _) => return Err(FormatError::NullCell(Role::KeyId.name())),
            (_, None, _) => return Err(FormatError::NullCell(Role::WrappedKey.name())),
            (_, _, None) => return Err(FormatError::NullCell(Role::Iv.name())),
            (Some(k), Some(w), Some(i)) => (k.as_str(), w, i),
        };
        KeyId::new(key_id)?;
        let wrapped = self.decode(Role::WrappedKey, wrapped)?;
        if wrapped.is_empty() || wrapped.len() > MAX_WRAPPED {
            return Err(FormatError::CellLength {
                cell: Role::WrappedKey.name(),
                len: wrapped.len(),
                want: "1..=4096 (a KMS-wrapped data key)",
            });
        }
        if is_local_wrap_len(wrapped.len()) {
            return Err(FormatError::CellLength {
                cell: Role::WrappedKey.name(),
                len: wrapped.len(),
                want: "a KMS-wrapped data key (60 / 40 bytes is a local aes-gcm / aes-kw wrap)",
            });
        }
        let iv = self.decode(Role::Iv, iv)?;
        if iv.len() != IV_LEN {
            return Err(FormatError::CellLength {
                cell: Role::Iv.name(),
                len: iv.len(),
                want: "12",
            });
        }
        let body = self.decode(Role::Ciphertext, body)?;
        if body.len() < TAG_LEN {
            return Err(FormatError::Truncated(Field::Tag));
        }
        Ok(Parts {
            key_id,
            wrapped,
            iv,
            body,
        })
    }

    fn in_kms() -> FormatError {
        FormatError::NotRotatable(
            "the data keys of an envelope column with kms = ... are in the KMS; keyturn rotates them through it".into(),
        )
    }
}

impl MultiColumnCodec for KmsEnvelopeLayout {
    fn name(&self) -> &str {
        "envelope"
    }

    fn roles(&self) -> &'static [Role] {
        ORDER
    }

    fn inspect_row<'c>(&self, cells: &'c Cells) -> Inspection<'c> {
        match self.parts(cells) {
            Ok(p) => Inspection::UnderKey(p.key_id),
            Err(FormatError::Empty | FormatError::UnknownFormat) => Inspection::NotThisFormat,
            Err(e) => Inspection::Invalid(e),
        }
    }

    fn decrypt_row(&self, _: &Keyring, _: &Cells, _: &[&[u8]]) -> Result<Opened, FormatError> {
        Err(Self::in_kms())
    }

    fn reseal_row(&self, _: &Keyring, _: &Opened, _: &[&[u8]]) -> Result<Cells, FormatError> {
        Err(Self::in_kms())
    }

    fn encrypt_row(&self, _: &Keyring, _: &[u8], _: &[&[u8]]) -> Result<Cells, FormatError> {
        Err(Self::in_kms())
    }

    fn key_id_role(&self) -> Option<Role> {
        Some(Role::KeyId)
    }
}

/// The cell columns of an envelope column with `kms`, in packing order:
/// every role's column must exist; any may be text (base64) or binary.
pub(crate) fn resolve_cells(
    info: &TableInfo,
    table: &str,
    c: &ColumnConfig,
) -> Result<Vec<CellColumn>, Vec<String>> {
    let mut text = [false; 4];
    for (i, role) in ORDER.iter().enumerate() {
        text[i] = c
            .role_column(*role)
            .and_then(|n| info.column_type(n))
            .and_then(value_kind_of)
            == Some(ValueKind::Text);
    }
    crate::multi::resolve_cells(info, table, c, Arc::new(KmsEnvelopeLayout { text }), true)
        .map(|(_, cells)| cells)
}

/// The plan's codec over a column's cells.
pub(crate) fn codec(col: &ColumnRef) -> Arc<dyn Codec> {
    Arc::new(PackedCells::new(Arc::new(KmsEnvelopeLayout::from_cells(
        &col.cells,
    ))))
}

// ---------------------------------------------------------------------------
// The KMS side
// ---------------------------------------------------------------------------

/// Where the column's data keys are wrapped.
enum Backend {
    Aws(AwsKmsKek),
    /// Transit clients by transit key name.
    Transit(HashMap<String, Arc<TransitKek>>),
}

/// See the [module docs](self).
struct EnvelopeKeys {
    label: String,
    target: String,
    /// Key id -> KMS key (AWS key id / ARN / alias, transit key name).
    ids: BTreeMap<String, String>,
    backend: Backend,
    rotation: Rotation,
    layout: KmsEnvelopeLayout,
    packed: PackedCells,
    cfg: ColumnConfig,
    in_flight: usize,
    /// `max_requests_per_sec`: the earliest time of the next call.
    pace: Option<(Duration, tokio::sync::Mutex<Instant>)>,
}

impl std::fmt::Debug for EnvelopeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeKeys")
            .field("kms", &self.label)
            .field("target", &self.target)
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

/// The key ids of the column and their KMS keys, from `key_catalog` (read
/// from the database) and `kms_keys`.
async fn key_ids(
    db: &dyn Database,
    c: &ColumnConfig,
    label: &str,
) -> Result<BTreeMap<String, String>, EngineError> {
    let mut ids = BTreeMap::new();
    if let Some(cat) = &c.key_catalog {
        let pairs = db
            .read_pairs(&cat.table, &cat.id_column, &cat.kms_key_column)
            .await?;
        for (id, key) in pairs {
            match key.filter(|k| !k.trim().is_empty()) {
                Some(k) => {
                    ids.insert(id, k.trim().to_owned());
                }
                None => {
                    return Err(EngineError::Config(format!(
                        "{label}: key_catalog {}: key id {} has no KMS key ({} is NULL or empty)",
                        cat.table,
                        keyturn_format::shown(&id),
                        cat.kms_key_column
                    )));
                }
            }
        }
    }
    for (id, key) in c.kms_keys.iter().flatten() {
        match ids.get(id) {
            Some(k) if k != key => {
                return Err(EngineError::Config(format!(
                    "{label}: kms_keys.{}: names another KMS key than key_catalog does for this id",
                    keyturn_format::shown(id)
                )));
            }
            _ => {
                ids.insert(id.clone(), key.clone());
            }
        }
    }
    Ok(ids)
}

pub(crate) async fn open(
    db: &dyn Database,
    server: &ServerConfig,
    c: &ColumnConfig,
    col: &ColumnRef,
) -> Result<(Arc<dyn Codec>, Arc<dyn RemoteKeys>), EngineError> {
    let label = format!("{}.{}", col.table, col.column);
    let rotation = rotation_of(c).map_err(|e| EngineError::Config(format!("{label}: {e}")))?;
    let ids = key_ids(db, c, &label).await?;
    let target = c.target_key_id.clone().unwrap_or_default();
    let Some(target_kms) = ids.get(&target).cloned() else {
        return Err(EngineError::Config(format!(
            "{label}: target_key_id {} is not a key id of {} (known: {})",
            keyturn_format::shown(&target),
            match (&c.key_catalog, &c.kms_keys) {
                (Some(cat), Some(_)) => format!("key_catalog {} or kms_keys", cat.table),
                (Some(cat), None) => format!("key_catalog {}", cat.table),
                _ => "kms_keys".into(),
            },
            if ids.is_empty() {
                "none".to_owned()
            } else {
                ids.keys()
                    .map(|k| keyturn_format::shown(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    };
    let (backend, label) = match server {
        ServerConfig::AwsKms { endpoint_url, .. } => {
            let kek = server.aws(&target_kms).await?;
            // The target must exist and encrypt before any row is touched.
            kek.resolve().await?;
            (
                Backend::Aws(kek),
                format!(
                    "AWS KMS{} data keys, {} key ids, target {}",
                    endpoint_url
                        .as_deref()
                        .map(|u| format!(" at {u}"))
                        .unwrap_or_default(),
                    ids.len(),
                    keyturn_format::shown(&target)
                ),
            )
        }
        _ => {
            if c.encryption_context.is_some() {
                return Err(EngineError::Config(format!(
                    "{label}: encryption_context is AWS KMS's; transit data keys take none (derived transit keys are not supported for envelope columns)"
                )));
            }
            let base = server.transit(&target_kms)?;
            let info = base.key_info().await?;
            if info.derived {
                return Err(EngineError::Config(format!(
                    "{label}: transit key {} is derived; envelope columns need a key without derivation",
                    base.key_name()
                )));
            }
            let mut keys = HashMap::new();
            for name in ids.values() {
                if !keys.contains_key(name) {
                    keys.insert(name.clone(), Arc::new(base.for_key(name)?));
                }
            }
            (
                Backend::Transit(keys),
                format!(
                    "transit data keys (mount {}) at {}, {} key ids, target {}",
                    base.mount(),
                    base.address(),
                    ids.len(),
                    keyturn_format::shown(&target)
                ),
            )
        }
    };
    let pace = match server {
        ServerConfig::AwsKms {
            max_requests_per_sec: Some(r),
            ..
        } => Some((
            Duration::from_secs_f64(1.0 / f64::from((*r).max(1))),
            tokio::sync::Mutex::new(Instant::now()),
        )),
        _ => None,
    };
    let layout = KmsEnvelopeLayout::from_cells(&col.cells);
    let remote = EnvelopeKeys {
        label,
        target,
        ids,
        backend,
        rotation,
        packed: PackedCells::new(Arc::new(layout.clone())),
        layout,
        cfg: c.clone(),
        in_flight: server.max_in_flight(),
        pace,
    };
    Ok((codec(col), Arc::new(remote)))
}

/// A row ready for the KMS.
struct Prepared {
    key_id: String,
    /// The KMS key of its key id.
    source: String,
    wrapped: Vec<u8>,
    iv: Vec<u8>,
    body: Vec<u8>,
    /// The IV and ciphertext cells as stored (kept by a rewrap).
    stored_iv: Vec<u8>,
    stored_body: Vec<u8>,
    context: keyturn_kms::EncryptionContext,
}

/// Why a row was not sent.
enum NotSent {
    /// Already at the target (rotation only).
    Current,
    /// Not a value of the layout (plaintext, garbage).
    NotThisFormat(String),
    /// A key id without a KMS key.
    Unknown(String, String),
    /// A damaged row.
    Bad(String),
}

/// Whether a KMS error concerns the value alone (and how to say so).
fn value_problem(e: &KmsError, transit: bool) -> Option<String> {
    match e {
        KmsError::Malformed(m) if transit => Some(m.clone()),
        KmsError::Malformed(_) | KmsError::WrongContext { .. } => Some(
            "the KMS could not decrypt the wrapped data key (damaged, or another encryption context)"
                .into(),
        ),
        KmsError::WrongKek { .. } => Some(
            "the wrapped data key is under another KMS key than its key id names".into(),
        ),
        _ => None,
    }
}

/// Opens a payload with its data key.
fn open_payload(dek: &[u8], iv: &[u8], body: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    if dek.len() != DEK_LEN {
        return Err(format!(
            "the KMS returned a data key of {} bytes, not 32 (not an AES-256 data key)",
            dek.len()
        ));
    }
    let key = SecretKey::from_bytes(Algorithm::Aes256Gcm, dek)
        .map_err(|_| "the data key is not an AES-256 key".to_string())?;
    let (ct, tag) = body.split_at(body.len() - TAG_LEN);
    let mut out = Zeroizing::new(vec![0u8; ct.len()]);
    key.open_into("the row's data key", iv, b"", ct, tag, &mut out)
        .map_err(|_| {
            "the payload does not open with its data key (tag check failed: damaged, or the wrapped key belongs to another row)".to_string()
        })?;
    Ok(out)
}

/// Seals `plaintext` under `dek` with a fresh random IV: (IV, `ct ‖ tag`).
fn seal_payload(dek: &[u8], plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), EngineError> {
    let key = SecretKey::from_bytes(Algorithm::Aes256Gcm, dek)?;
    let mut iv = [0u8; IV_LEN];
    aws_lc_rs::rand::fill(&mut iv)
        .map_err(|_| EngineError::Internal("the system random generator failed".into()))?;
    let mut body = plaintext.to_vec();
    let tag = key.seal_in_place(&iv, b"", &mut body)?;
    body.extend_from_slice(&tag);
    Ok((iv.to_vec(), body))
}

impl EnvelopeKeys {
    fn is_transit(&self) -> bool {
        matches!(self.backend, Backend::Transit(_))
    }

    fn context(&self, row: &RemoteRow<'_>) -> Result<keyturn_kms::EncryptionContext, String> {
        let Some(ec) = &self.cfg.encryption_context else {
            return Ok(None);
        };
        let mut out = HashMap::new();
        for (name, source) in ec {
            let v = match source.strip_prefix('=') {
                Some(lit) => lit.to_owned(),
                None => aux_value(&self.cfg, row, source)
                    .ok_or_else(|| format!("the encryption context column {source} is NULL"))?
                    .to_owned(),
            };
            out.insert(name.clone(), v);
        }
        Ok(Some(out))
    }

    /// A row's parts and KMS key; `all`: rows at the target too (a check).
    fn prepare(&self, row: &RemoteRow<'_>, all: bool) -> Result<Prepared, NotSent> {
        let cells = self
            .packed
            .unpack(row.value)
            .map_err(|e| NotSent::Bad(e.to_string()))?;
        let p = match self.layout.parts(&cells) {
            Ok(p) => p,
            Err(FormatError::Empty | FormatError::UnknownFormat) => {
                return Err(NotSent::NotThisFormat(crate::scan::not_this_format(
                    "envelope",
                )));
            }
            Err(e) => return Err(NotSent::Bad(e.to_string())),
        };
        if p.key_id == self.target && !all {
            return Err(NotSent::Current);
        }
        let Some(source) = self.ids.get(p.key_id) else {
            return Err(NotSent::Unknown(
                p.key_id.to_owned(),
                "the key id is not in key_catalog or kms_keys".into(),
            ));
        };
        let transit_value = p.wrapped.starts_with(b"vault:");
        if transit_value != self.is_transit() {
            return Err(NotSent::Bad(if transit_value {
                "the wrapped key is a transit vault:vN: value, and the column's KMS is AWS KMS"
                    .into()
            } else {
                "the wrapped key is not a transit vault:vN: value".into()
            }));
        }
        let context = self.context(row).map_err(NotSent::Bad)?;
        Ok(Prepared {
            key_id: p.key_id.to_owned(),
            source: source.clone(),
            wrapped: p.wrapped,
            iv: p.iv,
            body: p.body,
            stored_iv: cells.iv.clone().unwrap_or_default(),
            stored_body: cells.ciphertext.clone().unwrap_or_default(),
            context,
        })
    }

    /// Waits for the next call's slot under `max_requests_per_sec`.
    async fn paced(&self) {
        if let Some((gap, next)) = &self.pace {
            let at = {
                let mut n = next.lock().await;
                let now = Instant::now();
                let at = (*n).max(now);
                *n = at + *gap;
                at
            };
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        }
    }

    /// One KMS call, paced, retried under [`kms_backoff`] while it fails
    /// transiently ([`retry_call`]): `Ok(Err(why))` when the KMS refuses
    /// the value itself.
    async fn call<T, F, Fut>(&self, mut f: F) -> Result<Result<T, String>, EngineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, KmsError>>,
    {
        let transit = self.is_transit();
        let attempt = || {
            let call = f();
            async move {
                self.paced().await;
                call.await
            }
        };
        let done = attempt
            .retry(kms_backoff())
            .when(|e: &KmsError| retry_call(e, transit))
            .notify(|e: &KmsError, pause: Duration| {
                tracing::warn!("{}: {e}; retrying in {} ms", self.label, pause.as_millis());
            })
            .await;
        match done {
            Ok(v) => Ok(Ok(v)),
            Err(e) => match value_problem(&e, transit) {
                Some(why) => Ok(Err(why)),
                None => Err(e.into()),
            },
        }
    }

    fn transit(&self, name: &str) -> Result<&Arc<TransitKek>, EngineError> {
        match &self.backend {
            Backend::Transit(keys) => keys.get(name).ok_or_else(|| {
                EngineError::Internal(format!("{}: no transit client for a key id", self.label))
            }),
            Backend::Aws(_) => Err(EngineError::Internal("not a transit column".into())),
        }
    }

    fn target_kms(&self) -> &str {
        self.ids
            .get(&self.target)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The data key of a row, decrypted by the KMS.
    async fn decrypt_dek(
        &self,
        p: &Prepared,
    ) -> Result<Result<Zeroizing<Vec<u8>>, String>, EngineError> {
        match &self.backend {
            Backend::Aws(k) => {
                self.call(|| k.decrypt_blob(&p.wrapped, &p.source, &p.context))
                    .await
            }
            Backend::Transit(_) => {
                let t = self.transit(&p.source)?;
                let text = std::str::from_utf8(&p.wrapped).unwrap_or_default();
                self.call(|| t.decrypt_value(text, None)).await
            }
        }
    }

    /// The row's data key wrapped under the target (KEK rotation).
    async fn rewrap(&self, p: &Prepared, to: &str) -> Result<Result<Vec<u8>, String>, EngineError> {
        match &self.backend {
            Backend::Aws(k) => {
                self.call(|| k.re_encrypt_blob(&p.wrapped, &p.source, to, &p.context))
                    .await
            }
            Backend::Transit(_) => {
                let text = std::str::from_utf8(&p.wrapped).unwrap_or_default();
                if p.source == to {
                    let t = self.transit(to)?;
                    return Ok(self
                        .call(|| t.rewrap_value(text, None))
                        .await?
                        .map(String::into_bytes));
                }
                // Another transit key: transit cannot move a value between
                // keys, so the data key passes through here (zeroized).
                let dek = match self.decrypt_dek(p).await? {
                    Ok(d) => d,
                    Err(why) => return Ok(Err(why)),
                };
                let t = self.transit(to)?;
                Ok(self
                    .call(|| t.encrypt_value(&dek, None))
                    .await?
                    .map(String::into_bytes))
            }
        }
    }

    /// A new data key under the target: (key, wrapped).
    async fn new_dek(
        &self,
        p: &Prepared,
    ) -> Result<Result<(Zeroizing<Vec<u8>>, Vec<u8>), String>, EngineError> {
        let to = self.target_kms();
        match &self.backend {
            Backend::Aws(k) => self.call(|| k.generate_data_key(to, &p.context)).await,
            Backend::Transit(_) => {
                let t = self.transit(to)?;
                Ok(self
                    .call(|| t.datakey_plaintext(None))
                    .await?
                    .map(|(d, w)| (d, w.into_bytes())))
            }
        }
    }

    /// The new stored value of a row, or why it cannot be rotated.
    async fn rotate_one(&self, p: Prepared) -> Result<RemoteOutcome, EngineError> {
        let l = &self.layout;
        let target = Some(self.target.as_bytes());
        match self.rotation {
            Rotation::Rewrap => {
                let wrapped = match self.rewrap(&p, self.target_kms()).await? {
                    Ok(w) => w,
                    Err(why) => return Ok(RemoteOutcome::Bad(why)),
                };
                let w = l.encode(Role::WrappedKey, &wrapped);
                Ok(RemoteOutcome::Write(keyturn_db::cells::pack([
                    target,
                    Some(&w[..]),
                    Some(&p.stored_iv[..]),
                    Some(&p.stored_body[..]),
                ])))
            }
            Rotation::Reencrypt => {
                let dek = match self.decrypt_dek(&p).await? {
                    Ok(d) => d,
                    Err(why) => return Ok(RemoteOutcome::Bad(why)),
                };
                let plain = match open_payload(&dek, &p.iv, &p.body) {
                    Ok(x) => x,
                    Err(why) => return Ok(RemoteOutcome::Bad(why)),
                };
                drop(dek);
                let (dek2, wrapped) = match self.new_dek(&p).await? {
                    Ok(x) => x,
                    Err(why) => return Ok(RemoteOutcome::Bad(why)),
                };
                let (iv, body) = seal_payload(&dek2, &plain)?;
                let (w, iv, body) = (
                    l.encode(Role::WrappedKey, &wrapped),
                    l.encode(Role::Iv, &iv),
                    l.encode(Role::Ciphertext, &body),
                );
                Ok(RemoteOutcome::Write(keyturn_db::cells::pack([
                    target,
                    Some(&w[..]),
                    Some(&iv[..]),
                    Some(&body[..]),
                ])))
            }
        }
    }

    /// What the KMS says of a row: with `rewrap`, the wrapped key is
    /// re-encrypted to its own key and the result discarded (no plaintext
    /// comes back); with `reencrypt`, the data key is decrypted and the
    /// payload opened.
    async fn check_one(&self, p: Prepared) -> Result<Finding, EngineError> {
        let why = match self.rotation {
            Rotation::Rewrap => self.rewrap(&p, &p.source.clone()).await?.err(),
            Rotation::Reencrypt => match self.decrypt_dek(&p).await? {
                Ok(dek) => open_payload(&dek, &p.iv, &p.body).err(),
                Err(why) => Some(why),
            },
        };
        Ok(match why {
            None => Finding::Under(p.key_id),
            Some(why) => Finding::Bad(why),
        })
    }
}

#[async_trait::async_trait]
impl RemoteKeys for EnvelopeKeys {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn state(&self, key_id: &str) -> Option<KeyState> {
        if key_id == self.target {
            Some(KeyState::Primary)
        } else if self.ids.contains_key(key_id) {
            Some(KeyState::DecryptOnly)
        } else {
            None
        }
    }

    fn primary_prefix(&self) -> Option<Vec<u8>> {
        Some(keyturn_db::cells::pack([Some(self.target.as_bytes())]))
    }

    async fn rotate(&self, rows: &[RemoteRow<'_>]) -> Result<Vec<RemoteOutcome>, EngineError> {
        use futures::StreamExt as _;
        let mut out: Vec<RemoteOutcome> = vec![RemoteOutcome::Current; rows.len()];
        // In order, at most `in_flight` rows at once (a loop, not a closure:
        // the future must stay `Send`).
        let mut flying = futures::stream::FuturesOrdered::new();
        for (i, r) in rows.iter().enumerate() {
            let p = match self.prepare(r, false) {
                Ok(p) => p,
                Err(NotSent::Current) => continue,
                Err(NotSent::NotThisFormat(why) | NotSent::Bad(why) | NotSent::Unknown(_, why)) => {
                    out[i] = RemoteOutcome::Bad(why);
                    continue;
                }
            };
            if flying.len() >= self.in_flight
                && let Some((j, done)) = flying.next().await
            {
                out[j] = done?;
            }
            flying.push_back(async move { (i, self.rotate_one(p).await) });
        }
        while let Some((j, done)) = flying.next().await {
            out[j] = done?;
        }
        Ok(out)
    }

    async fn check(&self, rows: &[RemoteRow<'_>]) -> Result<Vec<Finding>, EngineError> {
        use futures::StreamExt as _;
        let mut out: Vec<Finding> = vec![Finding::Bad(String::new()); rows.len()];
        let mut flying = futures::stream::FuturesOrdered::new();
        for (i, r) in rows.iter().enumerate() {
            let p = match self.prepare(r, true) {
                Ok(p) => p,
                Err(NotSent::Current) => {
                    out[i] = Finding::Under(self.target.clone());
                    continue;
                }
                Err(NotSent::NotThisFormat(why)) => {
                    out[i] = Finding::NotThisFormat(why);
                    continue;
                }
                Err(NotSent::Unknown(id, why)) => {
                    out[i] = Finding::Unusable(id, why);
                    continue;
                }
                Err(NotSent::Bad(why)) => {
                    out[i] = Finding::Bad(why);
                    continue;
                }
            };
            if flying.len() >= self.in_flight
                && let Some((j, done)) = flying.next().await
            {
                out[j] = done?;
            }
            flying.push_back(async move { (i, self.check_one(p).await) });
        }
        while let Some((j, done)) = flying.next().await {
            out[j] = done?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_db::cells::pack;

    fn layout(text: bool) -> KmsEnvelopeLayout {
        KmsEnvelopeLayout {
            text: [true, text, text, text],
        }
    }

    fn cells(l: &KmsEnvelopeLayout, wrapped: &[u8], iv: &[u8], body: &[u8]) -> Vec<u8> {
        let (w, i, b) = (
            l.encode(Role::WrappedKey, wrapped),
            l.encode(Role::Iv, iv),
            l.encode(Role::Ciphertext, body),
        );
        pack([
            Some(&b"2025-01"[..]),
            Some(&w[..]),
            Some(&i[..]),
            Some(&b[..]),
        ])
    }

    #[test]
    fn layouts_are_read_in_binary_and_base64_columns() {
        for text in [false, true] {
            let l = layout(text);
            let c = PackedCells::new(Arc::new(l.clone()));
            let v = cells(&l, &[7; 96], &[1; 12], &[2; 40]);
            assert_eq!(c.inspect(&v), Inspection::UnderKey("2025-01"));
            let v = cells(&l, b"vault:v1:AAAA", &[1; 12], &[2; 16]);
            assert_eq!(c.inspect(&v), Inspection::UnderKey("2025-01"));
            // A local wrap, a short IV, a payload shorter than its tag.
            for (w, iv, body, kind) in [
                (
                    &[7u8; 60][..],
                    &[1u8; 12][..],
                    &[2u8; 40][..],
                    "wrapped key",
                ),
                (
                    &[7u8; 40][..],
                    &[1u8; 12][..],
                    &[2u8; 40][..],
                    "wrapped key",
                ),
                (&[7u8; 96][..], &[1u8; 16][..], &[2u8; 40][..], "IV"),
            ] {
                match c.inspect(&cells(&l, w, iv, body)) {
                    Inspection::Invalid(FormatError::CellLength { cell, .. }) => {
                        assert_eq!(cell, kind)
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert!(matches!(
                c.inspect(&cells(&l, &[7; 96], &[1; 12], &[2; 8])),
                Inspection::Invalid(FormatError::Truncated(_))
            ));
            let plain = pack([None, None, None, Some(&b"secret"[..])]);
            assert_eq!(c.inspect(&plain), Inspection::NotThisFormat);
            let half = pack([
                Some(&b"2025-01"[..]),
                None,
                Some(&b"x"[..]),
                Some(&b"y"[..]),
            ]);
            assert!(matches!(
                c.inspect(&half),
                Inspection::Invalid(FormatError::NullCell(_))
            ));
        }
        let l = layout(true);
        let c = PackedCells::new(Arc::new(l));
        let v = pack([
            Some(&b"2025-01"[..]),
            Some(&b"%%%"[..]),
            Some(&b"AAAAAAAAAAAAAAAA"[..]),
            Some(&b"AAAAAAAAAAAAAAAAAAAAAAAA"[..]),
        ]);
        assert!(matches!(
            c.inspect(&v),
            Inspection::Invalid(FormatError::BadTextEncoding(_))
        ));
    }

    #[test]
    fn payloads_seal_and_open_and_damage_is_named() {
        let dek = [9u8; 32];
        let (iv, body) = seal_payload(&dek, b"postgres://user:pw@host/db").unwrap();
        assert_eq!(iv.len(), 12);
        assert_eq!(
            &open_payload(&dek, &iv, &body).unwrap()[..],
            b"postgres://user:pw@host/db"
        );
        let mut bad = body.clone();
        bad[0] ^= 1;
        let why = open_payload(&dek, &iv, &bad).unwrap_err();
        assert!(why.contains("tag check failed"), "{why}");
        assert!(
            open_payload(&[1; 16], &iv, &body)
                .unwrap_err()
                .contains("16 bytes")
        );
    }

    #[test]
    fn options_take_the_rotation_only() {
        let mut c: ColumnConfig = toml::from_str(
            "name = \"p\"\ncodec = \"envelope\"\nkms = \"aws\"\niv_column = \"iv\"\nkey_id_column = \"k\"\nwrapped_key_column = \"w\"\ntarget_key_id = \"b\"\nkms_keys = { a = \"alias/a\", b = \"alias/b\" }",
        )
        .unwrap();
        validate(&c, "c").unwrap();
        assert_eq!(rotation_of(&c).unwrap(), Rotation::Rewrap);
        c.options = Some(toml::from_str("rotation = \"reencrypt\"").unwrap());
        assert_eq!(rotation_of(&c).unwrap(), Rotation::Reencrypt);
        c.options = Some(toml::from_str("rotation = \"both\"").unwrap());
        assert!(validate(&c, "c").is_err());
        c.options = None;
        c.target_key_id = None;
        assert!(
            validate(&c, "c")
                .unwrap_err()
                .to_string()
                .contains("target_key_id")
        );
        c.target_key_id = Some("b".into());
        c.kms_keys = None;
        assert!(
            validate(&c, "c")
                .unwrap_err()
                .to_string()
                .contains("key_catalog")
        );
        c.kms_keys = Some(BTreeMap::new());
        c.wrapped_key_column = None;
        assert!(
            validate(&c, "c")
                .unwrap_err()
                .to_string()
                .contains("wrapped_key_column")
        );
    }

    #[test]
    fn value_problems_are_told_from_server_problems() {
        assert!(value_problem(&KmsError::Malformed("x".into()), false).is_some());
        let backend = KmsError::Backend {
            provider: keyturn_kms::ProviderKind::AwsKms,
            address: "a".into(),
            message: "ThrottlingException".into(),
        };
        assert!(value_problem(&backend, false).is_none());
        assert!(backend.is_transient());
    }

    #[test]
    fn only_transient_server_problems_are_retried() {
        let aws = keyturn_kms::ProviderKind::AwsKms;
        let throttled = KmsError::Backend {
            provider: aws,
            address: "a".into(),
            message: "ThrottlingException: Rate exceeded".into(),
        };
        let down = KmsError::Unreachable {
            provider: aws,
            address: "a".into(),
            reason: "connection refused".into(),
        };
        for transit in [false, true] {
            assert!(retry_call(&throttled, transit));
            assert!(retry_call(&down, transit));
            // The value's own problem: a bad row, at once.
            assert!(!retry_call(&KmsError::Malformed("x".into()), transit));
            let wrong = KmsError::WrongKek {
                expected: "k1".into(),
                found: "k2".into(),
            };
            assert!(!retry_call(&wrong, transit));
            // The credentials' or the key's problem: the run stops at once.
            let denied = KmsError::AccessDenied {
                provider: aws,
                kek: "alias/app".into(),
                detail: "AccessDeniedException".into(),
            };
            assert!(!retry_call(&denied, transit));
        }
    }

    #[test]
    fn kms_backoff_is_bounded_and_jittered() {
        use backon::BackoffBuilder;
        let pauses: Vec<Duration> = kms_backoff().build().collect();
        assert_eq!(pauses.len(), ATTEMPTS - 1);
        let total: Duration = pauses.iter().sum();
        assert!(total <= Duration::from_millis(1_501), "{total:?}");
        assert!(pauses[0] >= Duration::from_millis(49), "{pauses:?}");
        assert_ne!(pauses, kms_backoff().build().collect::<Vec<_>>());
    }
}
