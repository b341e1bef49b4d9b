//! `status`: where every configured column stands, counted by the database.

use crate::EngineError;
use crate::plan::Plan;
use keyturn_db::Database;
use keyturn_format::{KeyIdLocation, KeyState, Keyring};
use serde::Serialize;
use std::sync::Arc;

/// Rows under one key id.
#[derive(Clone, Debug, Serialize)]
pub struct KeyRows {
    pub key_id: String,
    pub rows: u64,
    /// `primary`, `decrypt-only`, `retired`, or `unknown` (not in the keyring).
    pub state: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ColumnStatus {
    pub table: String,
    pub column: String,
    pub codec: String,
    /// The key that encrypts this column's values.
    pub primary_key_id: String,
    pub total: u64,
    pub nulls: u64,
    pub by_key: Vec<KeyRows>,
    /// Non-NULL values without a recognizable key id: plaintext or another
    /// format.
    pub unrecognized: u64,
    pub under_primary: u64,
    /// Values under a key other than the primary.
    pub needs_rotation: u64,
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub backend: String,
    pub primary_key_id: String,
    pub columns: Vec<ColumnStatus>,
    pub warnings: Vec<String>,
}

impl StatusReport {
    /// No value under a non-primary key and nothing unrecognized.
    pub fn fully_rotated(&self) -> bool {
        self.columns
            .iter()
            .all(|c| c.needs_rotation == 0 && c.unrecognized == 0)
    }
}

/// Random 96-bit nonces: stay well below 2^32 encryptions per key.
const AES_GCM_WARN_AT: u64 = 1 << 31;

pub async fn status(db: &dyn Database, plan: &Plan) -> Result<StatusReport, EngineError> {
    let mut columns = Vec::new();
    let mut warnings = Vec::new();
    // Values per (codec, key id) across columns, for the nonce-limit warning.
    let mut per_key_total: std::collections::BTreeMap<(String, String), (u64, Arc<Keyring>)> =
        Default::default();
    for c in &plan.columns {
        let ring = c.ring()?;
        let primary = ring.primary_id().as_str().to_owned();
        let loc = c.codec.key_id_location();
        let counts = db.count_keys(&c.col, &loc).await?;
        let mut by_key = Vec::new();
        let mut unrecognized = 0;
        for (key, n) in &counts.by_key {
            match key {
                Some(k) => {
                    let state = match ring.state(k) {
                        Some(KeyState::Primary) => "primary",
                        Some(KeyState::DecryptOnly) => "decrypt-only",
                        Some(KeyState::Retired) => "retired",
                        _ => "unknown",
                    };
                    per_key_total
                        .entry((c.codec.name().to_owned(), k.clone()))
                        .or_insert_with(|| (0, ring.clone()))
                        .0 += n;
                    by_key.push(KeyRows {
                        key_id: k.clone(),
                        rows: *n,
                        state: state.into(),
                    });
                }
                None => unrecognized += n,
            }
        }
        by_key.sort_by(|a, b| b.rows.cmp(&a.rows).then(a.key_id.cmp(&b.key_id)));
        let under_primary = by_key
            .iter()
            .filter(|k| k.key_id == primary)
            .map(|k| k.rows)
            .sum();
        let needs_rotation = by_key
            .iter()
            .filter(|k| k.key_id != primary)
            .map(|k| k.rows)
            .sum();
        let note = match loc {
            KeyIdLocation::None => {
                Some("no key id in this format: rotation state found by trial decryption".into())
            }
            _ if unrecognized > 0 => Some(format!(
                "{unrecognized} values are not {} ciphertexts (plaintext or another format)",
                c.codec.name()
            )),
            _ => None,
        };
        columns.push(ColumnStatus {
            table: c.col.table.clone(),
            column: c.col.column.clone(),
            codec: c.codec.name().to_owned(),
            primary_key_id: primary,
            total: counts.total,
            nulls: counts.nulls,
            by_key,
            unrecognized,
            under_primary,
            needs_rotation,
            note,
        });
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
        primary_key_id: plan.primary_key_ids().join(","),
        columns,
        warnings,
    })
}
