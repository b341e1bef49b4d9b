//! `status`: where every configured column stands, counted by the database
//! (the census), or with `deep`, by decrypting every value.
//!
//! The census counts a value under a key only when it has the codec's shape;
//! values of the format that name no key (Fernet, Laravel, Lockbox, …) are
//! counted as such ("key decided by decryption"), never as plaintext, and
//! everything else as unrecognized. No part of an unrecognized value is
//! shown.

use crate::plan::{ColumnPlan, Plan};
use crate::scan::{Finding, decrypt_all};
use crate::{EngineError, NoProgress};
use keyturn_db::{ColumnCounts, Database};
use keyturn_format::{KeyState, Keyring};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rows under one key id.
#[derive(Clone, Debug, Serialize)]
pub struct KeyRows {
    /// The key id, as read from the values.
    pub key_id: String,
    /// How many values are under it.
    pub rows: u64,
    /// `primary` (the key that encrypts), `decrypt-only`, `retired`, or
    /// `unknown` (not in the keyring).
    pub state: String,
}

/// How a column's counts were taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CountedBy {
    /// The database read the key ids (the census); values of the format
    /// without a key id are counted in `keyless`.
    Sql,
    /// Every value was decrypted (`status --deep`).
    Decryption,
}

/// What one column holds: counts per key, and values that need work.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnStatus {
    /// The column's table.
    pub table: String,
    /// The column's name.
    pub column: String,
    /// The codec's name.
    pub codec: String,
    /// The key that encrypts this column's values (its keyring's primary).
    pub current_key_id: String,
    /// Rows in the table, NULLs included.
    pub total: u64,
    /// Rows whose column is NULL.
    pub nulls: u64,
    /// Values per key id, most values first.
    pub by_key: Vec<KeyRows>,
    /// Values of the column's format whose key SQL cannot read: decided by
    /// decryption (`keyturn status --deep` counts them per key).
    pub keyless: u64,
    /// Non-NULL values that are not of the column's format: plaintext,
    /// garbage, another format, wrong storage class or encoding.
    pub unrecognized: u64,
    /// Values of the format that do not decrypt with the keyring
    /// (`--deep` only; without it they are counted where their header says).
    pub undecryptable: u64,
    /// Values under the primary key.
    pub under_current: u64,
    /// Values under a key other than the primary.
    pub needs_rotation: u64,
    /// How the counts were obtained: by SQL or by decrypting every value.
    pub counted_by: CountedBy,
    /// What the counts cannot show and how to get it (keyless, unrecognised or undecryptable
    /// values), if anything.
    pub note: Option<String>,
}

/// What `keyturn status` reports for every column of a plan.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    /// The database backend: `sqlite`, `postgres` or `mysql`.
    pub backend: String,
    /// The primary (encrypting) key of each column's keyring, comma-separated.
    pub current_key_id: String,
    /// Whether every value was decrypted (`--deep`) rather than counted in SQL.
    pub deep: bool,
    /// Per column, in plan order.
    pub columns: Vec<ColumnStatus>,
    /// Findings beyond the counts, e.g. an AES-256-GCM key that has encrypted close to its safe
    /// number of values.
    pub warnings: Vec<String>,
}

impl StatusReport {
    /// No value under a non-primary key, nothing unrecognized or
    /// undecryptable, and nothing left to decide by decryption.
    pub fn fully_rotated(&self) -> bool {
        self.columns.iter().all(|c| {
            c.needs_rotation == 0 && c.unrecognized == 0 && c.keyless == 0 && c.undecryptable == 0
        })
    }
}

/// Options of [`status`].
#[derive(Clone, Debug, Default)]
pub struct StatusOptions {
    /// Decrypt every value instead of counting in SQL.
    pub deep: bool,
    /// Rows per read when `deep`.
    pub batch_size: usize,
}

/// Random 96-bit nonces: stay well below 2^32 encryptions per key.
const AES_GCM_WARN_AT: u64 = 1 << 31;

fn state_of(c: &ColumnPlan, key: &str) -> &'static str {
    match c.key_state(key).ok().flatten() {
        Some(KeyState::Primary) => "current",
        Some(KeyState::DecryptOnly) => "decrypt-only",
        Some(KeyState::Retired) => "retired",
        _ => "unknown",
    }
}

/// Counts one column in SQL, or with `deep` by decrypting.
async fn column_status(
    db: &dyn Database,
    c: &ColumnPlan,
    opts: &StatusOptions,
) -> Result<ColumnStatus, EngineError> {
    let primary = c.primary_id()?;
    let census = c.census();
    let (counts, counted_by, undecryptable) = if opts.deep {
        let mut counts = db.count_keys(&c.col, &census).await?;
        let mut per_key: BTreeMap<String, u64> = BTreeMap::new();
        let (mut unrecognized, mut bad) = (0u64, 0u64);
        decrypt_all(db, c, opts.batch_size, &NoProgress, |_, f| match f {
            Finding::Under(k) | Finding::Unusable(k, _) => *per_key.entry(k).or_default() += 1,
            Finding::NotThisFormat(_) => unrecognized += 1,
            Finding::Bad(_) => bad += 1,
        })
        .await?;
        counts.by_key = per_key
            .into_iter()
            .map(|(key_id, rows)| keyturn_db::KeyCount {
                key_id,
                rows,
                tokens: Vec::new(),
            })
            .collect();
        counts.keyless = 0;
        counts.unrecognized = unrecognized;
        (counts, CountedBy::Decryption, bad)
    } else {
        (db.count_keys(&c.col, &census).await?, CountedBy::Sql, 0)
    };
    let ColumnCounts {
        total,
        nulls,
        by_key,
        keyless,
        unrecognized,
    } = counts;
    let mut rows: Vec<KeyRows> = by_key
        .into_iter()
        .map(|k| KeyRows {
            state: state_of(c, &k.key_id).into(),
            key_id: k.key_id,
            rows: k.rows,
        })
        .collect();
    rows.sort_by(|a, b| b.rows.cmp(&a.rows).then(a.key_id.cmp(&b.key_id)));
    let under_current = rows
        .iter()
        .filter(|k| k.key_id == primary)
        .map(|k| k.rows)
        .sum();
    let needs_rotation = rows
        .iter()
        .filter(|k| k.key_id != primary)
        .map(|k| k.rows)
        .sum();
    let codec = c.codec.name().to_owned();
    let mut notes = Vec::new();
    if let Some(r) = &c.remote {
        notes.push(format!("rotated inside the KMS: {}", r.describe()));
    }
    if keyless > 0 {
        notes.push(if crate::remote::key_decided_by_kms(&codec) {
            format!(
                "{keyless} {codec} values: key decided by KMS: `keyturn status --deep` asks KMS (ReEncrypt to the column's key, no plaintext comes back) and counts them per key; `rotate` and `verify --deep` ask it too"
            )
        } else if census.has_key_ids() {
            format!(
                "{keyless} {codec} values name no key: their key is decided by decryption (`keyturn status --deep` counts them per key)"
            )
        } else {
            format!(
                "{codec} values name no key: the key of each is decided by decryption (`keyturn status --deep` counts them per key; `rotate` and `verify` decrypt them)"
            )
        });
    }
    if unrecognized > 0 {
        notes.push(format!(
            "{unrecognized} values are not {codec} values (plaintext, garbage, another format, or the wrong storage class or encoding); `rotate` leaves them untouched and names them as bad rows"
        ));
    }
    if undecryptable > 0 {
        notes.push(format!(
            "{undecryptable} {codec} values do not decrypt with this keyring (damaged, or under a key not in it); `keyturn verify --deep` names them"
        ));
    }
    Ok(ColumnStatus {
        table: c.col.table.clone(),
        column: c.col.column.clone(),
        codec,
        current_key_id: primary,
        total,
        nulls,
        by_key: rows,
        keyless,
        unrecognized,
        undecryptable,
        under_current,
        needs_rotation,
        counted_by,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

/// Counts the values of every column of `plan` per key, in SQL or (with `deep`, or for formats
/// without key ids) by decrypting them; fails on a database error.
pub async fn status(
    db: &dyn Database,
    plan: &Plan,
    opts: &StatusOptions,
) -> Result<StatusReport, EngineError> {
    let mut columns = Vec::new();
    let mut warnings = Vec::new();
    // Values per (codec, key id) across columns, for the nonce-limit warning.
    let mut per_key_total: BTreeMap<(String, String), (u64, Arc<Keyring>)> = Default::default();
    for c in &plan.columns {
        let s = column_status(db, c, opts).await?;
        // Keys inside a KMS encrypt with nonces the KMS chooses.
        let Some(ring) = &c.ring else {
            columns.push(s);
            continue;
        };
        for k in &s.by_key {
            per_key_total
                .entry((s.codec.clone(), k.key_id.clone()))
                .or_insert_with(|| (0, ring.clone()))
                .0 += k.rows;
        }
        columns.push(s);
    }
    for ((_, k), (n, ring)) in per_key_total {
        if n >= AES_GCM_WARN_AT
            && ring.keys().any(|(id, _, key)| {
                id.as_str() == k && key.algorithm() == keyturn_format::Algorithm::Aes256Gcm
            })
        {
            warnings.push(format!(
                "key {k:?} encrypts {n} values: AES-256-GCM with random nonces is safe to about 2^32 encryptions per key; rotate to a new key (or use xchacha20poly1305)"
            ));
        }
    }
    Ok(StatusReport {
        backend: db.backend().name().to_owned(),
        current_key_id: plan.current_key_ids().join(","),
        deep: opts.deep,
        columns,
        warnings,
    })
}
