//! `verify`: proves every value is under the primary key, and with `deep`,
//! that every value decrypts (with its context).
//!
//! Plain `verify` counts in SQL (the census) where the format names its key
//! in every value; where it does not (Fernet, Laravel, Lockbox, node-gcm, a
//! Rails value without a key reference), SQL cannot tell, so the column is
//! decided by decrypting it, and the report says so.
//!
//! Odd rows (not of the format, damaged, under a key the keyring cannot
//! decrypt with) are recorded in `keyturn_bad_rows` like a rotation's; a row
//! an operator acknowledged there (`keyturn bad-rows ack`) is listed, not
//! failing, as long as its value is the one acknowledged.

use crate::plan::{ColumnPlan, Plan};
use crate::run::{Operation, clear_if_mended};
use crate::scan::{Finding, decrypt_all, not_this_format};
use crate::status::CountedBy;
use crate::{EngineError, ProgressSink};
use keyturn_db::{
    BadRow, BadRowRecord, Database, Pk, Skip, now_rfc3339, pk_display, value_fingerprint,
};
use keyturn_format::Inspection;
use serde::Serialize;
use std::collections::HashMap;

/// Failing rows listed per column.
pub const LISTED_FAILURES: usize = 1000;

/// Options of [`verify`].
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Decrypt every value (with its context) instead of counting key ids in SQL.
    pub deep: bool,
    /// Rows per read when decrypting.
    pub batch_size: usize,
    /// Record the odd rows found in `keyturn_bad_rows`, and clear the
    /// records of rows that verify now. Off for `--no-record` and dry looks.
    pub record: bool,
    /// Names the run in the bad-row records it writes.
    pub run_id: String,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            deep: false,
            batch_size: 5000,
            record: false,
            run_id: "verify".into(),
        }
    }
}

/// A row that does not verify.
#[derive(Clone, Debug, Serialize)]
pub struct FailingRow {
    /// The row's primary key, as text.
    pub pk: String,
    /// Why it fails: under another key, not of the format, or not decryptable.
    pub reason: String,
}

/// The result of verifying one column.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnVerify {
    /// The column's table.
    pub table: String,
    /// The column's name.
    pub column: String,
    /// Non-NULL values checked.
    pub checked: u64,
    /// Values under the primary key (and, with `deep`, that decrypt).
    pub under_current: u64,
    /// Under another key, unrecognized or undecryptable, and not
    /// acknowledged.
    pub failing: u64,
    /// The failing rows in primary-key order, up to [`LISTED_FAILURES`].
    pub first_failures: Vec<FailingRow>,
    /// Rows that fail but were acknowledged as they are (`keyturn bad-rows
    /// ack`): listed, not failing.
    pub acknowledged: Vec<FailingRow>,
    /// `sql` (key ids read by the database) or `decryption` (every value
    /// decrypted: `--deep`, or a format whose key SQL cannot read).
    pub counted_by: CountedBy,
    /// Why the column was decided by decryption, when the format names no key in SQL; `None`
    /// otherwise.
    pub note: Option<String>,
}

/// What `keyturn verify` found for every column of a plan.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// Whether every value was decrypted (`--deep`).
    pub deep: bool,
    /// The primary key id of each column's keyring, comma-separated.
    pub current_key_id: String,
    /// Per column, in plan order.
    pub columns: Vec<ColumnVerify>,
    /// True when no column has failing rows (acknowledged rows do not count).
    pub ok: bool,
    /// What could not be done beside the check itself (recording bad rows
    /// on a read-only login, …).
    pub warnings: Vec<String>,
}

/// One failing row as found.
struct Failure {
    pk: Pk,
    reason: String,
    /// An odd row (recorded as a bad row), not merely under an older key
    /// that still decrypts.
    odd: bool,
    fingerprint: String,
}

/// Why a value read without decrypting is not under the primary, and
/// whether that makes it an odd row.
fn reason_from_header(c: &ColumnPlan, primary: &str, value: &[u8]) -> Option<(String, bool)> {
    let usable = |k: &str| matches!(c.key_usable(k), Ok(Ok(())));
    match c.codec.inspect(value) {
        Inspection::UnderKey(k) if k == primary => None,
        Inspection::UnderKeyOwned(k) if k.as_str() == primary => None,
        Inspection::UnderKey(k) => Some((
            format!("under key {k:?}, not the current key {primary:?}"),
            !usable(k),
        )),
        Inspection::UnderKeyOwned(k) => Some((
            format!(
                "under key {:?}, not the current key {primary:?}",
                k.as_str()
            ),
            !usable(k.as_str()),
        )),
        Inspection::Invalid(e) => Some((e.to_string(), true)),
        Inspection::KeyUnknown => Some((
            format!(
                "a {} value that names no key (verify --deep decides it)",
                c.codec.name()
            ),
            false,
        )),
        _ => Some((not_this_format(c.codec.name()), true)),
    }
}

/// The column's failing rows and counts.
struct Found {
    checked: u64,
    under_current: u64,
    /// Every failure seen, in key order (all of them when `complete`).
    failures: Vec<Failure>,
    /// Failures counted, seen or not.
    failing: u64,
    /// Every failing row was seen (acknowledgements can be applied exactly).
    complete: bool,
    counted_by: CountedBy,
    note: Option<String>,
}

async fn find_failures(
    db: &dyn Database,
    c: &ColumnPlan,
    opts: &VerifyOptions,
    progress: &dyn ProgressSink,
    acked: usize,
) -> Result<Found, EngineError> {
    let primary = c.primary_id()?;
    let census = c.census();
    let counts = if opts.deep {
        None
    } else {
        Some(db.count_keys(&c.col, &census).await?)
    };
    let prefix = c.primary_prefix()?;
    match (counts, prefix) {
        (Some(counts), Some(prefix)) if census.has_key_ids() && counts.keyless == 0 => {
            // Counting is the database's job; only the failing rows are
            // read, to name them (all of them when acknowledgements might
            // account for every one).
            let under_current = counts.rows_under(&primary);
            let failing = counts.values() - under_current;
            let wanted = if failing as usize <= acked + LISTED_FAILURES {
                usize::MAX
            } else {
                LISTED_FAILURES
            };
            let skip = Skip {
                prefix,
                census: census.clone(),
            };
            let mut failures = Vec::new();
            let mut after: Option<Pk> = None;
            let mut complete = failing == 0;
            while failing > 0 && failures.len() < wanted {
                let rows = db
                    .fetch_batch(&c.col, after.as_deref(), Some(&skip), opts.batch_size)
                    .await?;
                let Some(last) = rows.last() else {
                    complete = true;
                    break;
                };
                after = Some(last.pk.clone());
                for r in rows {
                    let found = match r.problem {
                        Some(p) => Some((p.to_string(), true)),
                        None => reason_from_header(c, &primary, &r.value),
                    };
                    if let Some((reason, odd)) = found {
                        failures.push(Failure {
                            fingerprint: value_fingerprint(&r.value),
                            pk: r.pk,
                            reason,
                            odd,
                        });
                    }
                }
            }
            Ok(Found {
                checked: counts.values(),
                under_current,
                failing,
                complete,
                failures,
                counted_by: CountedBy::Sql,
                note: None,
            })
        }
        (counts, _) => {
            let note = counts.is_some().then(|| {
                if crate::remote::key_decided_by_kms(c.codec.name()) {
                    format!(
                        "SQL cannot tell the key of {} values: KMS was asked for each value's key (ReEncrypt, no plaintext back)",
                        c.codec.name()
                    )
                } else {
                    format!(
                        "SQL cannot tell the key of {} values: every value was decrypted",
                        c.codec.name()
                    )
                }
            });
            let mut failures = Vec::new();
            let (mut under, mut failing) = (0u64, 0u64);
            // Enough failures kept to apply every acknowledgement and list
            // the rest; beyond that only counted.
            let keep = acked + LISTED_FAILURES;
            let checked = decrypt_all(db, c, opts.batch_size, progress, |row, f| {
                let (reason, odd) = match f {
                    Finding::Under(k) if k == primary => {
                        under += 1;
                        return;
                    }
                    Finding::Under(k) => (
                        format!("decrypts, but under key {k:?}, not the current key"),
                        false,
                    ),
                    Finding::Unusable(_, why) | Finding::NotThisFormat(why) | Finding::Bad(why) => {
                        (why, true)
                    }
                };
                failing += 1;
                if failures.len() < keep {
                    failures.push(Failure {
                        fingerprint: value_fingerprint(&row.value),
                        pk: row.pk.clone(),
                        reason,
                        odd,
                    });
                }
            })
            .await?;
            Ok(Found {
                checked,
                under_current: under,
                complete: failing as usize <= keep,
                failing,
                failures,
                counted_by: CountedBy::Decryption,
                note,
            })
        }
    }
}

async fn verify_column(
    db: &dyn Database,
    c: &ColumnPlan,
    opts: &VerifyOptions,
    progress: &dyn ProgressSink,
    warnings: &mut Vec<String>,
) -> Result<ColumnVerify, EngineError> {
    let records: HashMap<String, BadRowRecord> = db
        .load_bad_rows(Some(&c.col.table), Some(&c.col.column))
        .await?
        .into_iter()
        .map(|r| (r.pk.clone(), r))
        .collect();
    let acked = records.values().filter(|r| r.acknowledged).count();
    let found = find_failures(db, c, opts, progress, acked).await?;
    let mut cv = ColumnVerify {
        table: c.col.table.clone(),
        column: c.col.column.clone(),
        checked: found.checked,
        under_current: found.under_current,
        failing: found.failing,
        first_failures: Vec::new(),
        acknowledged: Vec::new(),
        counted_by: found.counted_by,
        note: found.note,
    };
    let mut odd = Vec::new();
    let mut failing_keys = std::collections::HashSet::new();
    for f in found.failures {
        let shown = pk_display(&f.pk);
        failing_keys.insert(shown.clone());
        let is_acked = records
            .get(&shown)
            .is_some_and(|r| r.acknowledged && r.value_fingerprint == f.fingerprint);
        let row = FailingRow {
            pk: shown.clone(),
            reason: f.reason.clone(),
        };
        if is_acked {
            cv.failing -= 1;
            cv.acknowledged.push(row);
        } else if cv.first_failures.len() < LISTED_FAILURES {
            cv.first_failures.push(row);
        }
        if f.odd {
            odd.push(BadRow {
                run_id: opts.run_id.clone(),
                table: c.col.table.clone(),
                column: c.col.column.clone(),
                pk: shown,
                reason: f.reason,
                seen_at: now_rfc3339(),
                value_fingerprint: f.fingerprint,
            });
        }
    }
    if opts.record {
        // Odd rows are recorded (a sighting of an acknowledged row whose
        // value is unchanged keeps its acknowledgement); records of rows
        // that verify now are cleared.
        let mut recorded = db.record_bad_rows(&odd).await;
        if recorded.is_ok() && found.complete {
            let gone: Vec<String> = records
                .keys()
                .filter(|k| !failing_keys.contains(*k))
                .cloned()
                .collect();
            recorded = clear_if_mended(db, Operation::Rotate, c, &gone)
                .await
                .map(drop)
                .map_err(|e| match e {
                    EngineError::Db(d) => d,
                    other => keyturn_db::DbError::Invalid(other.to_string()),
                });
        }
        if let Err(e) = recorded {
            warnings.push(format!(
                "{}: the bad rows found could not be recorded in keyturn_bad_rows: {e}",
                c.label()
            ));
        }
    }
    Ok(cv)
}

/// Checks that every value of every column of `plan` is under its primary key (and, with `deep`,
/// decrypts), recording odd rows in `keyturn_bad_rows` when `record` is set; fails only on a
/// database or keyring error.
pub async fn verify(
    db: &dyn Database,
    plan: &Plan,
    opts: &VerifyOptions,
    progress: &dyn ProgressSink,
) -> Result<VerifyReport, EngineError> {
    let mut columns = Vec::new();
    let mut warnings = Vec::new();
    for c in &plan.columns {
        columns.push(verify_column(db, c, opts, progress, &mut warnings).await?);
    }
    let ok = columns.iter().all(|c| c.failing == 0);
    Ok(VerifyReport {
        deep: opts.deep,
        current_key_id: plan.current_key_ids().join(","),
        columns,
        ok,
        warnings,
    })
}
