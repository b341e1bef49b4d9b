//! `verify`: proves every value is under the primary key, and with `deep`,
//! that every value decrypts (with its context).

use crate::plan::Plan;
use crate::{EngineError, ProgressSink};
use keyturn_db::{Database, pk_display};
use keyturn_format::Inspection;
use rayon::prelude::*;
use serde::Serialize;

/// Failing rows listed per column.
const FIRST_FAILURES: usize = 20;

#[derive(Clone, Debug)]
pub struct VerifyOptions {
    pub deep: bool,
    pub batch_size: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct FailingRow {
    pub pk: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ColumnVerify {
    pub table: String,
    pub column: String,
    pub checked: u64,
    pub under_primary: u64,
    /// Under another key, unrecognized or (deep) undecryptable.
    pub failing: u64,
    pub first_failures: Vec<FailingRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub deep: bool,
    pub primary_key_id: String,
    pub columns: Vec<ColumnVerify>,
    pub ok: bool,
}

pub async fn verify(
    db: &dyn Database,
    plan: &Plan,
    opts: &VerifyOptions,
    progress: &dyn ProgressSink,
) -> Result<VerifyReport, EngineError> {
    let mut columns = Vec::new();
    for c in &plan.columns {
        let ring = c.ring()?.clone();
        let primary = ring.primary_id().as_str().to_owned();
        let mut cv = ColumnVerify {
            table: c.col.table.clone(),
            column: c.col.column.clone(),
            checked: 0,
            under_primary: 0,
            failing: 0,
            first_failures: Vec::new(),
        };
        let prefix = c.codec.primary_prefix(&ring);
        if !opts.deep && prefix.is_some() {
            // Counting is the database's job; only the first failing rows
            // are fetched.
            let counts = db.count_keys(&c.col, &c.codec.key_id_location()).await?;
            cv.checked = counts.total - counts.nulls;
            cv.under_primary = counts
                .by_key
                .iter()
                .filter(|(k, _)| k.as_deref() == Some(primary.as_str()))
                .map(|(_, n)| n)
                .sum();
            cv.failing = cv.checked - cv.under_primary;
            if cv.failing > 0 {
                for r in db
                    .fetch_batch(&c.col, None, prefix.as_deref(), FIRST_FAILURES)
                    .await?
                {
                    let reason = match c.codec.inspect(&r.value) {
                        Inspection::UnderKey(k) => {
                            format!("under key {k:?}, not the primary {primary:?}")
                        }
                        Inspection::Invalid(e) => e.to_string(),
                        _ => "not a ciphertext of this column's format (plaintext?)".into(),
                    };
                    cv.first_failures.push(FailingRow {
                        pk: pk_display(&r.pk),
                        reason,
                    });
                }
            }
        } else {
            progress.column_started(
                &c.col.table,
                &c.col.column,
                db.count_without_prefix(&c.col, None).await?,
                0,
            );
            let mut after = None;
            loop {
                let rows = db
                    .fetch_batch(&c.col, after.as_deref(), None, opts.batch_size)
                    .await?;
                let Some(last) = rows.last() else { break };
                after = Some(last.pk.clone());
                let n = rows.len() as u64;
                let (ring2, plan2, primary2) = (ring.clone(), c.clone(), primary.clone());
                let results: Vec<(String, Option<String>)> =
                    tokio::task::spawn_blocking(move || {
                        rows.par_iter()
                            .map(|r| {
                                let parts = plan2.context_parts(&r.pk);
                                let ctx: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                                let why = match plan2.codec.decrypt(&ring2, &r.value, &ctx) {
                                    Ok(o) if o.key_id.as_str() == primary2 => None,
                                    Ok(o) => Some(format!(
                                        "decrypts, but under key {:?}, not the primary",
                                        o.key_id.as_str()
                                    )),
                                    Err(e) => Some(e.to_string()),
                                };
                                (pk_display(&r.pk), why)
                            })
                            .collect()
                    })
                    .await
                    .map_err(|e| EngineError::Usage(format!("verify worker failed: {e}")))?;
                for (pk, why) in results {
                    cv.checked += 1;
                    match why {
                        None => cv.under_primary += 1,
                        Some(reason) => {
                            cv.failing += 1;
                            if cv.first_failures.len() < FIRST_FAILURES {
                                cv.first_failures.push(FailingRow { pk, reason });
                            }
                        }
                    }
                }
                progress.advanced(&c.col.table, &c.col.column, n);
            }
            progress.column_finished(&c.col.table, &c.col.column);
        }
        columns.push(cv);
    }
    let ok = columns.iter().all(|c| c.failing == 0);
    Ok(VerifyReport {
        deep: opts.deep,
        primary_key_id: plan.primary_key_ids().join(","),
        columns,
        ok,
    })
}
