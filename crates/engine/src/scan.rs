//! Reading a whole column and deciding each value by decrypting it: the
//! truth behind `status --deep`, `verify --deep`, and plain `verify` on
//! formats whose key SQL cannot read.

use crate::plan::ColumnPlan;
use crate::{EngineError, ProgressSink};
use keyturn_db::{Database, Pk, Row};
use keyturn_format::{FormatError, Inspection, Keyring};
use rayon::prelude::*;
use std::sync::Arc;

/// What decrypting one stored value found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Finding {
    /// It decrypts (with its context) under this key.
    Under(String),
    /// A value of the format that names a key the keyring cannot decrypt
    /// with (not in it, or retired): the key id and the reason.
    Unusable(String, String),
    /// Not a value of the column's format (plaintext, garbage, another
    /// format), with the reason.
    NotThisFormat(String),
    /// A value of the format that does not decrypt: the reason.
    Bad(String),
}

/// The reason given for a value that is not of the column's format.
pub(crate) fn not_this_format(codec: &str) -> String {
    format!("not a {codec} value (plaintext, garbage or another format)")
}

/// Decides one value by decrypting it.
pub(crate) fn decide(plan: &ColumnPlan, ring: &Keyring, row: &Row) -> Finding {
    if let Some(problem) = row.problem {
        return Finding::NotThisFormat(problem.to_string());
    }
    let (pk, value) = (&row.pk, row.value.as_slice());
    let parts = plan.context_parts(pk);
    let ctx: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let codec = plan.codec.as_ref();
    match codec.decrypt(ring, value, &ctx) {
        Ok(o) => Finding::Under(o.key_id.to_string()),
        Err(e) => match codec.inspect(value) {
            Inspection::NotThisFormat => Finding::NotThisFormat(not_this_format(codec.name())),
            _ => match e {
                FormatError::UnknownKey(ref k) | FormatError::KeyRetired(ref k) => {
                    Finding::Unusable(k.clone(), e.to_string())
                }
                other => Finding::Bad(other.to_string()),
            },
        },
    }
}

/// Reads every non-NULL value of the column in primary-key order and decides
/// each one by decrypting it; `each` sees every row's key and finding, in
/// order. Returns the number of values read.
pub(crate) async fn decrypt_all(
    db: &dyn Database,
    plan: &ColumnPlan,
    batch_size: usize,
    progress: &dyn ProgressSink,
    mut each: impl FnMut(Pk, Finding),
) -> Result<u64, EngineError> {
    let ring: Arc<Keyring> = plan.ring()?.clone();
    let col = &plan.col;
    progress.column_started(
        &col.table,
        &col.column,
        db.count_without_prefix(col, None).await?,
        0,
    );
    let mut after: Option<Pk> = None;
    let mut read = 0u64;
    loop {
        let rows = db
            .fetch_batch(col, after.as_deref(), None, batch_size.max(1))
            .await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.pk.clone());
        let n = rows.len() as u64;
        let (ring, plan) = (ring.clone(), plan.clone());
        let found: Vec<(Pk, Finding)> = tokio::task::spawn_blocking(move || {
            rows.into_par_iter()
                .map(|r| {
                    let f = decide(&plan, &ring, &r);
                    (r.pk, f)
                })
                .collect()
        })
        .await
        .map_err(|e| EngineError::Internal(format!("decryption worker failed: {e}")))?;
        for (pk, f) in found {
            each(pk, f);
        }
        read += n;
        progress.advanced(&col.table, &col.column, n);
    }
    progress.column_finished(&col.table, &col.column);
    Ok(read)
}
