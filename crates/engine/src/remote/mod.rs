//! Columns rotated inside a KMS (`kms = "NAME"` on a column): the server
//! re-encrypts each value itself (transit `rewrap`, AWS `ReEncrypt`, a new
//! data key from the KMS), so the keys never leave it and, for a rewrap,
//! no plaintext reaches keyturn.
//!
//! The pipeline is the one of every column (keyset reads, compare-and-swap
//! writes, checkpoints, bad rows); only the crypto stage differs: instead of
//! re-encrypting each row with a local keyring, a batch of rows goes to a
//! [`RemoteKeys`], which answers per row. A failure that concerns one value
//! (it does not decrypt, its version is below `min_decryption_version`) is
//! that row's bad row; one that concerns the server (403, sealed,
//! unreachable, throttled past the retries) is an error that stops the run
//! with its checkpoint saved.
//!
//! One file per KMS and codec: [`transit`] (`vault:vN:` values), [`aws`]
//! (AWS KMS ciphertext blobs, re-encrypted by `ReEncrypt`), [`envelope`]
//! (four-column envelopes whose data keys the KMS made).
//! docs/ARCHITECTURE.md says how to add one.

pub mod aws;
pub mod envelope;
pub mod transit;

use crate::EngineError;
use crate::config::{ColumnConfig, TargetConfig};
use keyturn_db::{ColumnRef, Database, Pk};
use keyturn_format::{Codec, KeyState};
use keyturn_kms::ServerConfig;
use std::sync::Arc;

/// What deciding one stored value found (by decrypting it locally, or by
/// asking the KMS).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finding {
    /// It decrypts (with its context) under this key.
    Under(String),
    /// A value of the format that names a key that cannot decrypt it (not
    /// in the keyring, retired, below `min_decryption_version`): the key id
    /// and the reason.
    Unusable(String, String),
    /// Not a value of the column's format (plaintext, garbage, another
    /// format), with the reason.
    NotThisFormat(String),
    /// A value of the format that does not decrypt: the reason.
    Bad(String),
}

/// One row handed to a KMS.
#[derive(Debug, Clone, Copy)]
pub struct RemoteRow<'a> {
    /// The row's primary key.
    pub pk: &'a Pk,
    /// The value as stored (for a multi-column codec: the packed cells).
    pub value: &'a [u8],
    /// The column's auxiliary columns ([`ColumnRef::aux`]), as text.
    pub aux: &'a [Option<String>],
    /// Table, column and primary-key parts, when the column binds them
    /// (`context = true`); empty otherwise.
    pub context: &'a [Vec<u8>],
}

/// What the KMS decided for one row of a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteOutcome {
    /// Write this value in place of the one read.
    Write(Vec<u8>),
    /// Already under the target key: nothing to write.
    Current,
    /// This row cannot be rotated: the reason (never the value).
    Bad(String),
}

/// A column's keys inside a KMS: what the engine asks of it.
#[async_trait::async_trait]
pub trait RemoteKeys: Send + Sync + std::fmt::Debug {
    /// The KMS and key, for messages (`OpenBao transit key app at
    /// http://…`). No credentials.
    fn describe(&self) -> String;

    /// The key id, as the column's census counts it (`v3`, a catalog id, a
    /// key ARN), that rows end under; resolved from the KMS when the plan
    /// was made.
    fn target(&self) -> &str;

    /// What the KMS says of a key id the census found: `Primary` for the
    /// target, `DecryptOnly` for one that still decrypts, `Retired` for one
    /// that no longer does (below `min_decryption_version`), `None` for an
    /// id the KMS does not know.
    fn state(&self, key_id: &str) -> Option<KeyState>;

    /// The stored prefix of values under the target, when SQL can skip
    /// them (`vault:v3:`); `None` when it cannot.
    fn primary_prefix(&self) -> Option<Vec<u8>>;

    /// Rotates a batch: one outcome per row, in order. An error is the
    /// server's (or the credentials'): no row of the batch is written and
    /// the run stops, resumable.
    async fn rotate(&self, rows: &[RemoteRow<'_>]) -> Result<Vec<RemoteOutcome>, EngineError>;

    /// Decides each row by asking the KMS (`verify --deep`, `status
    /// --deep`): one finding per row, in order. Where the KMS can check a
    /// value without returning its plaintext (transit `rewrap`, AWS
    /// `ReEncrypt`), it does so.
    async fn check(&self, rows: &[RemoteRow<'_>]) -> Result<Vec<Finding>, EngineError>;

    /// Retires the key versions below the target inside the KMS, once no
    /// row needs them (transit: raises `min_decryption_version` to the
    /// latest version). Returns what it did, for the report and the audit
    /// trail; `None`: this KMS has no such setting (AWS KMS: disable the
    /// old key, or schedule its deletion). The caller checks the rows first.
    async fn retire_older(&self) -> Result<Option<String>, EngineError> {
        Ok(None)
    }
}

/// The codec that reads the column's values (shape, census, key ids) and
/// the KMS that rotates them, for a column with `kms = "NAME"`.
/// `db` reads an envelope column's `key_catalog`; `col` carries the cell
/// columns of a multi-column codec.
pub(crate) async fn open(
    db: &dyn Database,
    server: &ServerConfig,
    c: &ColumnConfig,
    col: &ColumnRef,
) -> Result<(Arc<dyn Codec>, Arc<dyn RemoteKeys>), EngineError> {
    match c.codec.as_str() {
        "vault-transit" => transit::open(server, c, col).await,
        "aws-kms" => aws::open(server, c, col).await,
        "envelope" => envelope::open(db, server, c, col).await,
        other => Err(EngineError::Config(format!(
            "codec {}: no server-side rotation (kms = ...) for it; use vault-transit, aws-kms or envelope",
            keyturn_format::shown(other)
        ))),
    }
}

/// The codec of a `kms` column, for a plan made without keys (counting
/// only: `due`, `report`): the KMS is not asked.
pub(crate) fn codec_only(c: &ColumnConfig, col: &ColumnRef) -> Result<Arc<dyn Codec>, EngineError> {
    match c.codec.as_str() {
        "vault-transit" => Ok(Arc::new(keyturn_codecs::vault::VaultTransitCodec)),
        "aws-kms" => Ok(Arc::new(aws::codec(c, col))),
        "envelope" => Ok(envelope::codec(col)),
        other => Err(EngineError::Config(format!(
            "codec {}: no server-side rotation (kms = ...) for it",
            keyturn_format::shown(other)
        ))),
    }
}

/// Whether KMS, not SQL nor local decryption, decides the key of each of
/// this codec's values (the census counts them as keyless).
pub(crate) fn key_decided_by_kms(codec: &str) -> bool {
    codec == "aws-kms"
}

/// The auxiliary columns a `kms` column reads beside its value, in the
/// order [`RemoteRow::aux`] holds them.
pub(crate) fn aux_columns(c: &ColumnConfig) -> Vec<String> {
    let mut aux: Vec<String> = Vec::new();
    aux.extend(c.key_column.clone());
    aux.extend(c.context_column.clone());
    if let Some(ec) = &c.encryption_context {
        for v in ec.values() {
            if !v.starts_with('=') && !aux.contains(v) {
                aux.push(v.clone());
            }
        }
    }
    aux
}

/// The text of auxiliary column `name` of a row (`None`: NULL).
pub(crate) fn aux_value<'a>(c: &ColumnConfig, row: &RemoteRow<'a>, name: &str) -> Option<&'a str> {
    let i = aux_columns(c).iter().position(|a| a == name)?;
    row.aux.get(i)?.as_deref()
}

/// Checks a `kms` column's settings without I/O.
pub(crate) fn validate_column(
    _t: &TargetConfig,
    c: &ColumnConfig,
    ckey: &str,
) -> Result<(), EngineError> {
    let bad = |key: &str, why: String| Err(EngineError::Config(format!("{ckey}.{key}: {why}")));
    if c.keyring.is_some() {
        return bad(
            "keyring",
            "a column rotated inside a KMS (kms = ...) has no keyring; remove keyring".into(),
        );
    }
    for col in aux_columns(c) {
        keyturn_db::check_identifier(&col, "column")
            .map_err(|e| EngineError::Config(format!("{ckey}: {e}")))?;
        if col == c.name {
            return bad("name", format!("{col} is also an auxiliary column"));
        }
    }
    match c.codec.as_str() {
        "vault-transit" => transit::validate(c, ckey),
        "aws-kms" => aws::validate(c, ckey),
        "envelope" => envelope::validate(c, ckey),
        other => bad(
            "kms",
            format!(
                "codec {} is not rotated inside a KMS; kms = ... takes codec vault-transit, aws-kms or envelope",
                keyturn_format::shown(other)
            ),
        ),
    }
}

/// Refuses `kms`-only settings on a column without `kms`.
pub(crate) fn refuse_kms_fields(c: &ColumnConfig, ckey: &str) -> Result<(), EngineError> {
    let set = [
        ("key", c.key.is_some()),
        ("key_column", c.key_column.is_some()),
        ("context_column", c.context_column.is_some()),
        ("encryption_context", c.encryption_context.is_some()),
        ("key_catalog", c.key_catalog.is_some()),
        ("kms_keys", c.kms_keys.is_some()),
        ("target_key_id", c.target_key_id.is_some()),
    ];
    if let Some((k, _)) = set.iter().find(|(_, s)| *s) {
        return Err(EngineError::Config(format!(
            "{ckey}.{k}: only columns rotated inside a KMS take {k}; add kms = \"NAME\" (a [kms.NAME] section) or remove it"
        )));
    }
    if c.codec == "aws-kms" {
        return Err(EngineError::Config(format!(
            "{ckey}.kms: codec aws-kms is rotated by AWS KMS itself: add kms = \"NAME\" naming an aws-kms [kms.NAME] section"
        )));
    }
    Ok(())
}
