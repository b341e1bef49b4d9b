//! `keyturn report`: the evidence an auditor asks for, in one document —
//! key inventory, rotation history, where the data is (values per key per
//! column), the latest verify, the audit chain's integrity and policy
//! compliance. Rendered as JSON or as one self-contained HTML page
//! ([`crate::html`]).

use crate::chain::ChainReport;
use crate::due::{self, ColumnKeys, DueReport, DueStatus, KeyDates, KnownDates, SinceSource};
use crate::event::{AuditAction, AuditEvent};
use crate::{AuditError, ts};
use keyturn_db::{AuditRow, Database};
use keyturn_engine::{Config, Plan};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;

/// Events listed in the history (newest first); the JSON and the HTML say
/// how many more exist.
pub const HISTORY_LIMIT: usize = 500;

#[derive(Clone, Debug, Serialize)]
pub struct KeyCount {
    pub key_id: String,
    pub rows: u64,
}

/// Values per key in one column, counted by the database.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnDistribution {
    pub table: String,
    pub column: String,
    pub total: u64,
    pub nulls: u64,
    pub by_key: Vec<KeyCount>,
    /// Values of the column's format that name no key: decided by
    /// decryption, not by SQL.
    pub keyless: u64,
    /// Values that are not of the column's format: plaintext, garbage,
    /// another format, the wrong storage class or encoding.
    pub unrecognized: u64,
    /// Declared keys that may hold the `keyless` values (see
    /// [`crate::due::ColumnKeys::candidates`]).
    #[serde(skip)]
    pub candidates: Vec<String>,
}

impl ColumnDistribution {
    pub fn label(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }
}

/// One key, as far as the config, the data and the audit trail know it.
#[derive(Clone, Debug, Serialize)]
pub struct KeyInventory {
    pub key_id: String,
    /// `primary`, `decrypt-only`, `retired`, `destroyed`, or `unused` (seen
    /// in the audit trail only, no values left).
    pub state: String,
    pub compromised: bool,
    pub rows: u64,
    pub columns: Vec<String>,
    pub since: Option<String>,
    pub since_source: Option<SinceSource>,
    pub age_days: Option<i64>,
    pub due_at: Option<String>,
    /// Policy status where the key holds data (or is the primary).
    pub status: Option<DueStatus>,
    /// The last audit event naming this key.
    pub last_event: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub compliance: DueStatus,
    pub chain_ok: bool,
    pub events: u64,
    /// Outcome of the latest verify, if one was recorded.
    pub latest_verify: Option<String>,
    pub keys_in_use: usize,
    pub columns: usize,
    pub primary_key_id: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvidenceReport {
    pub generated_at: String,
    pub keyturn_version: String,
    /// Backend and URL without password.
    pub database: String,
    pub summary: Summary,
    pub keys: Vec<KeyInventory>,
    pub columns: Vec<ColumnDistribution>,
    pub due: DueReport,
    pub chain: ChainReport,
    pub latest_verify: Option<AuditEvent>,
    /// Newest first, at most [`HISTORY_LIMIT`].
    pub history: Vec<AuditEvent>,
    pub history_total: usize,
}

/// Counts every planned column's values per key id (the census: the same
/// counts `status` shows).
pub async fn distribution(
    db: &dyn Database,
    cfg: &Config,
    plan: &Plan,
) -> Result<Vec<ColumnDistribution>, AuditError> {
    let mut out = Vec::new();
    for c in &plan.columns {
        let counts = db.count_keys(&c.col, &c.census()).await?;
        let mut by_key: Vec<KeyCount> = counts
            .by_key
            .into_iter()
            .map(|k| KeyCount {
                key_id: k.key_id,
                rows: k.rows,
            })
            .collect();
        by_key.sort_by(|a, b| b.rows.cmp(&a.rows).then(a.key_id.cmp(&b.key_id)));
        out.push(ColumnDistribution {
            table: c.col.table.clone(),
            column: c.col.column.clone(),
            total: counts.total,
            nulls: counts.nulls,
            by_key,
            keyless: counts.keyless,
            unrecognized: counts.unrecognized,
            candidates: declared_keys(cfg, &c.col.table, &c.col.column),
        });
    }
    Ok(out)
}

/// Keys declared for a column: `[[policy.key]]` ids and the primary and
/// retired keys its keyring's config names.
fn declared_keys(cfg: &Config, table: &str, column: &str) -> Vec<String> {
    let mut ids: Vec<String> = cfg.policy.keys.iter().map(|k| k.id.clone()).collect();
    if let Some(k) = cfg.keyring_config_for(table, column) {
        ids.extend(k.primary.iter().cloned());
        ids.extend(k.retired.iter().cloned());
    }
    ids.sort();
    ids.dedup();
    ids
}

/// The current primary: the config's, else the audit trail's.
pub fn current_primary(cfg: &Config, events: &[AuditEvent]) -> Option<String> {
    cfg.keys
        .primary
        .clone()
        .or_else(|| due::primary_from_events(events))
}

/// Key start dates from the trail and the config.
pub fn known_dates(cfg: &Config, events: &[AuditEvent]) -> Result<KnownDates, AuditError> {
    KnownDates::from_events(events).with_config(&cfg.policy)
}

/// `due` over the given distribution.
pub fn due_report(
    now: OffsetDateTime,
    cfg: &Config,
    columns: &[ColumnDistribution],
    events: &[AuditEvent],
) -> Result<DueReport, AuditError> {
    let dates = known_dates(cfg, events)?;
    let primary = current_primary(cfg, events);
    let keys: Vec<ColumnKeys> = columns
        .iter()
        .map(|c| ColumnKeys {
            table: c.table.clone(),
            column: c.column.clone(),
            by_key: c
                .by_key
                .iter()
                .map(|k| (k.key_id.clone(), k.rows))
                .collect(),
            keyless: c.keyless,
            candidates: c.candidates.clone(),
        })
        .collect();
    let mut r = due::evaluate(now, &cfg.policy, primary.as_deref(), &keys, &dates);
    r.audit_tip = events.last().map(|e| format!("{}:{}", e.seq, e.hash));
    Ok(r)
}

/// Builds the report from what was read (pure: used by tests as is).
pub fn build(
    now: OffsetDateTime,
    cfg: &Config,
    database: &str,
    columns: Vec<ColumnDistribution>,
    rows: &[AuditRow],
    chain: ChainReport,
) -> Result<EvidenceReport, AuditError> {
    let events: Vec<AuditEvent> = rows.iter().map(AuditEvent::from_row).collect();
    let due = due_report(now, cfg, &columns, &events)?;
    let primary = current_primary(cfg, &events);
    let dates = known_dates(cfg, &events)?;

    // Every key id anyone mentions.
    let mut ids: BTreeSet<String> = BTreeSet::new();
    ids.extend(cfg.keys.primary.iter().cloned());
    ids.extend(cfg.keys.retired.iter().cloned());
    ids.extend(cfg.policy.keys.iter().map(|k| k.id.clone()));
    ids.extend(primary.iter().cloned());
    for c in &columns {
        ids.extend(c.by_key.iter().map(|k| k.key_id.clone()));
    }
    for e in &events {
        ids.extend(e.key_ids.iter().cloned());
    }
    let mut last_event: BTreeMap<&str, &AuditEvent> = BTreeMap::new();
    let mut lifecycle: BTreeMap<&str, &AuditAction> = BTreeMap::new();
    let mut compromised: BTreeSet<&str> = BTreeSet::new();
    for e in &events {
        for k in &e.key_ids {
            last_event.insert(k, e);
        }
        if e.outcome == crate::Outcome::Ok
            && let Some(k) = e.key()
        {
            match e.action {
                AuditAction::KeyRetire | AuditAction::KeyDestroy | AuditAction::KeyPromote => {
                    lifecycle.insert(k, &e.action);
                }
                AuditAction::KeyCompromised => {
                    compromised.insert(k);
                }
                _ => {}
            }
        }
    }
    let mut keys = Vec::new();
    for id in &ids {
        let rows: u64 = columns
            .iter()
            .flat_map(|c| c.by_key.iter())
            .filter(|k| &k.key_id == id)
            .map(|k| k.rows)
            .sum();
        let cols: Vec<String> = columns
            .iter()
            .filter(|c| c.by_key.iter().any(|k| &k.key_id == id && k.rows > 0))
            .map(ColumnDistribution::label)
            .collect();
        let state = if primary.as_deref() == Some(id.as_str()) {
            "primary"
        } else if lifecycle.get(id.as_str()) == Some(&&AuditAction::KeyDestroy) {
            "destroyed"
        } else if cfg.keys.retired.contains(id)
            || lifecycle.get(id.as_str()) == Some(&&AuditAction::KeyRetire)
        {
            "retired"
        } else if rows > 0 {
            "decrypt-only"
        } else {
            "unused"
        };
        let kd = due.keys.iter().find(|k| &k.key_id == id);
        let since = dates.since(id);
        keys.push(KeyInventory {
            key_id: id.clone(),
            state: state.into(),
            compromised: compromised.contains(id.as_str()),
            rows,
            columns: cols,
            since: since.map(|(t, _)| ts::format(t)),
            since_source: since.map(|(_, s)| s),
            age_days: since.map(|(t, _)| ts::whole_days(t, now)),
            due_at: kd.and_then(|k| k.due_at.clone()),
            status: kd.map(|k| k.status),
            last_event: last_event.get(id.as_str()).map(|e| {
                format!(
                    "#{} {} {}",
                    e.seq,
                    e.action,
                    &e.time[..e.time.len().min(10)]
                )
            }),
        });
    }
    let order = |s: &str| match s {
        "primary" => 0,
        "decrypt-only" => 1,
        "retired" => 2,
        "unused" => 3,
        _ => 4,
    };
    keys.sort_by(|a, b| {
        order(&a.state)
            .cmp(&order(&b.state))
            .then(b.since.cmp(&a.since))
            .then(a.key_id.cmp(&b.key_id))
    });

    let latest_verify = events
        .iter()
        .rev()
        .find(|e| e.action == AuditAction::Verify)
        .cloned();
    let history_total = events.len();
    let history: Vec<AuditEvent> = events.iter().rev().take(HISTORY_LIMIT).cloned().collect();
    let summary = Summary {
        compliance: due.status,
        chain_ok: chain.ok,
        events: chain.events,
        latest_verify: latest_verify.as_ref().map(|e| e.outcome.to_string()),
        keys_in_use: keys.iter().filter(|k| k.rows > 0).count(),
        columns: columns.len(),
        primary_key_id: primary.clone(),
    };
    Ok(EvidenceReport {
        generated_at: ts::format(now),
        keyturn_version: env!("CARGO_PKG_VERSION").into(),
        database: database.into(),
        summary,
        keys,
        columns,
        due,
        chain,
        latest_verify,
        history,
        history_total,
    })
}

/// Reads everything from the database and builds the report.
pub async fn gather(
    db: &dyn Database,
    cfg: &Config,
    plan: &Plan,
    database: &str,
    now: OffsetDateTime,
) -> Result<EvidenceReport, AuditError> {
    let columns = distribution(db, cfg, plan).await?;
    let rows = crate::store::read_rows(db).await?;
    let mut v = crate::chain::ChainVerifier::new();
    for r in &rows {
        v.push_row(r);
    }
    build(now, cfg, database, columns, &rows, v.finish())
}
