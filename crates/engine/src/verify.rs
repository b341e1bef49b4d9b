//! `verify`: proves every value is under the primary key, and with `deep`,
//! that every value decrypts (with its context).
//!
//! Plain `verify` counts in SQL (the census) where the format names its key
//! in every value; where it does not (Fernet, Laravel, Lockbox, node-gcm, a
//! Rails value without a key reference), SQL cannot tell, so the column is
//! decided by decrypting it, and the report says so.

use crate::plan::{ColumnPlan, Plan};
use crate::scan::{Finding, decrypt_all, not_this_format};
use crate::status::CountedBy;
use crate::{EngineError, ProgressSink};
use keyturn_db::{Database, Pk, pk_display};
use keyturn_format::Inspection;
use serde::Serialize;

/// Failing rows listed per column.
pub const LISTED_FAILURES: usize = 1000;

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
    /// Under another key, unrecognized or undecryptable.
    pub failing: u64,
    /// The failing rows in primary-key order, up to [`LISTED_FAILURES`].
    pub first_failures: Vec<FailingRow>,
    /// `sql` (key ids read by the database) or `decryption` (every value
    /// decrypted: `--deep`, or a format whose key SQL cannot read).
    pub counted_by: CountedBy,
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub deep: bool,
    pub primary_key_id: String,
    pub columns: Vec<ColumnVerify>,
    pub ok: bool,
}

/// Why a value read without decrypting is not under the primary.
fn reason_from_header(c: &ColumnPlan, primary: &str, value: &[u8]) -> Option<String> {
    match c.codec.inspect(value) {
        Inspection::UnderKey(k) if k == primary => None,
        Inspection::UnderKeyOwned(k) if k.as_str() == primary => None,
        Inspection::UnderKey(k) => Some(format!("under key {k:?}, not the primary {primary:?}")),
        Inspection::UnderKeyOwned(k) => Some(format!(
            "under key {:?}, not the primary {primary:?}",
            k.as_str()
        )),
        Inspection::Invalid(e) => Some(e.to_string()),
        Inspection::KeyUnknown => Some(format!(
            "a {} value that names no key (verify --deep decides it)",
            c.codec.name()
        )),
        _ => Some(not_this_format(c.codec.name())),
    }
}

async fn verify_column(
    db: &dyn Database,
    c: &ColumnPlan,
    opts: &VerifyOptions,
    progress: &dyn ProgressSink,
) -> Result<ColumnVerify, EngineError> {
    let ring = c.ring()?.clone();
    let primary = ring.primary_id().as_str().to_owned();
    let census = c.census();
    let mut cv = ColumnVerify {
        table: c.col.table.clone(),
        column: c.col.column.clone(),
        checked: 0,
        under_primary: 0,
        failing: 0,
        first_failures: Vec::new(),
        counted_by: CountedBy::Sql,
        note: None,
    };
    let counts = if opts.deep {
        None
    } else {
        Some(db.count_keys(&c.col, &census).await?)
    };
    match counts {
        Some(counts) if census.has_key_ids() && counts.keyless == 0 => {
            // Counting is the database's job; only the failing rows are
            // read, to name them.
            cv.checked = counts.values();
            cv.under_primary = counts.rows_under(&primary);
            cv.failing = cv.checked - cv.under_primary;
            if cv.failing > 0 {
                let prefix = c.codec.primary_prefix(&ring);
                let mut after: Option<Pk> = None;
                while cv.first_failures.len() < LISTED_FAILURES {
                    let rows = db
                        .fetch_batch(&c.col, after.as_deref(), prefix.as_deref(), opts.batch_size)
                        .await?;
                    let Some(last) = rows.last() else { break };
                    after = Some(last.pk.clone());
                    for r in rows {
                        if cv.first_failures.len() == LISTED_FAILURES {
                            break;
                        }
                        let reason = match r.problem {
                            Some(p) => Some(p.to_string()),
                            None => reason_from_header(c, &primary, &r.value),
                        };
                        if let Some(reason) = reason {
                            cv.first_failures.push(FailingRow {
                                pk: pk_display(&r.pk),
                                reason,
                            });
                        }
                    }
                }
            }
        }
        counts => {
            cv.counted_by = CountedBy::Decryption;
            if counts.is_some() {
                cv.note = Some(format!(
                    "{} values name no key: SQL cannot tell, so every value was decrypted",
                    c.codec.name()
                ));
            }
            let mut failures = Vec::new();
            let (mut under, mut failing) = (0u64, 0u64);
            let checked = decrypt_all(db, c, opts.batch_size, progress, |pk, f| {
                let reason = match f {
                    Finding::Under(k) if k == primary => {
                        under += 1;
                        return;
                    }
                    Finding::Under(k) => {
                        format!("decrypts, but under key {k:?}, not the primary")
                    }
                    Finding::Unusable(_, why) | Finding::NotThisFormat(why) | Finding::Bad(why) => {
                        why
                    }
                };
                failing += 1;
                if failures.len() < LISTED_FAILURES {
                    failures.push(FailingRow {
                        pk: pk_display(&pk),
                        reason,
                    });
                }
            })
            .await?;
            cv.checked = checked;
            cv.under_primary = under;
            cv.failing = failing;
            cv.first_failures = failures;
        }
    }
    Ok(cv)
}

pub async fn verify(
    db: &dyn Database,
    plan: &Plan,
    opts: &VerifyOptions,
    progress: &dyn ProgressSink,
) -> Result<VerifyReport, EngineError> {
    let mut columns = Vec::new();
    for c in &plan.columns {
        columns.push(verify_column(db, c, opts, progress).await?);
    }
    let ok = columns.iter().all(|c| c.failing == 0);
    Ok(VerifyReport {
        deep: opts.deep,
        primary_key_id: plan.primary_key_ids().join(","),
        columns,
        ok,
    })
}
