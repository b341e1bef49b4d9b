//! Reading a whole column and deciding each value by decrypting it: the
//! truth behind `status --deep`, `verify --deep`, and plain `verify` on
//! formats whose key SQL cannot read.

use crate::plan::ColumnPlan;
use crate::{EngineError, ProgressSink};
use keyturn_db::{Database, Pk, Row};
use keyturn_format::{FormatError, Inspection, Keyring};
use rayon::prelude::*;

pub(crate) use crate::remote::Finding;

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

/// Decides a batch of rows: by decrypting with the column's keyring, in
/// parallel across cores, or by asking the KMS that holds its keys.
pub(crate) async fn decide_batch(
    plan: &ColumnPlan,
    rows: Vec<Row>,
) -> Result<Vec<(Row, Finding)>, EngineError> {
    if let Some(remote) = &plan.remote {
        let parts: Vec<Vec<Vec<u8>>> = rows.iter().map(|r| plan.context_parts(&r.pk)).collect();
        let ready: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].problem.is_none())
            .collect();
        let inputs: Vec<crate::remote::RemoteRow<'_>> = ready
            .iter()
            .map(|&i| crate::remote::RemoteRow {
                pk: &rows[i].pk,
                value: &rows[i].value,
                aux: &rows[i].aux,
                context: &parts[i],
            })
            .collect();
        let checked = remote.check(&inputs).await?;
        if checked.len() != inputs.len() {
            return Err(EngineError::Internal(format!(
                "{}: the KMS answered {} of {} rows",
                plan.label(),
                checked.len(),
                inputs.len()
            )));
        }
        let mut found: Vec<Option<Finding>> = rows
            .iter()
            .map(|r| r.problem.map(|p| Finding::NotThisFormat(p.to_string())))
            .collect();
        for (i, f) in ready.into_iter().zip(checked) {
            found[i] = Some(f);
        }
        return Ok(rows
            .into_iter()
            .zip(found)
            .map(|(r, f)| (r, f.unwrap_or_else(|| Finding::Bad(String::new()))))
            .collect());
    }
    let (ring, plan) = (plan.ring()?.clone(), plan.clone());
    tokio::task::spawn_blocking(move || {
        rows.into_par_iter()
            .map(|r| {
                let f = decide(&plan, &ring, &r);
                (r, f)
            })
            .collect()
    })
    .await
    .map_err(|e| EngineError::Internal(format!("decryption worker failed: {e}")))
}

/// Reads every non-NULL value of the column in primary-key order and decides
/// each one by decrypting it; `each` sees every row and its finding, in
/// order. Returns the number of values read.
pub(crate) async fn decrypt_all(
    db: &dyn Database,
    plan: &ColumnPlan,
    batch_size: usize,
    progress: &dyn ProgressSink,
    mut each: impl FnMut(&Row, Finding),
) -> Result<u64, EngineError> {
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
        let found = decide_batch(plan, rows).await?;
        for (row, f) in found {
            each(&row, f);
        }
        read += n;
        progress.advanced(&col.table, &col.column, n);
    }
    progress.column_finished(&col.table, &col.column);
    Ok(read)
}
