//! `keyturn report`: the evidence an auditor asks for, in one document —
//! key inventory, rotation history, where the data is (values per key per
//! column), the latest verify, the audit chain's integrity and policy
//! compliance. Rendered as JSON or as one self-contained HTML page
//! ([`crate::html`]).

use crate::chain::ChainReport;
use crate::due::{self, ColumnKeys, DueReport, DueStatus, KeyDates, KnownDates, SinceSource};
use crate::event::{AuditAction, AuditEvent};
use crate::policy::PolicyConfig;
use crate::{AuditError, ts};
use keyturn_db::AuditRow;
use keyturn_db::OpenRun;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;

/// Events listed in the history (newest first); the JSON and the HTML say
/// how many more exist.
pub const HISTORY_LIMIT: usize = 500;

/// Values under one key id in a column.
#[derive(Clone, Debug, Serialize)]
pub struct KeyCount {
    /// The key id.
    pub key_id: String,
    /// Values counted under it.
    pub rows: u64,
}

/// Values per key in one column, counted by the database.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnDistribution {
    /// The column's table.
    pub table: String,
    /// The column's name.
    pub column: String,
    /// Rows in the table, NULLs included.
    pub total: u64,
    /// Rows whose column is NULL.
    pub nulls: u64,
    /// Values per key id that SQL could read.
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
    /// The current key of the column's own keyring (`[keyrings.NAME]`);
    /// `None`: the `[keys]` section's.
    #[serde(skip)]
    pub primary: Option<String>,
}

impl ColumnDistribution {
    /// The column as `table.column`.
    pub fn label(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }
}

/// One key, as far as the config, the data and the audit trail know it.
#[derive(Clone, Debug, Serialize)]
pub struct KeyInventory {
    /// The key id.
    pub key_id: String,
    /// `primary`, `decrypt-only`, `retired`, `destroyed`, or `unused` (seen
    /// in the audit trail only, no values left).
    pub state: String,
    /// Whether the audit trail marks it compromised.
    pub compromised: bool,
    /// Values under it, over all columns.
    pub rows: u64,
    /// The columns holding values under it, as `table.column`.
    pub columns: Vec<String>,
    /// When it came into use (RFC 3339 UTC); `None` if unknown.
    pub since: Option<String>,
    /// Where `since` comes from.
    pub since_source: Option<SinceSource>,
    /// Whole days in use as of the report; `None` if the start is unknown.
    pub age_days: Option<i64>,
    /// When it reaches its policy limit (RFC 3339 UTC), the earliest over its columns; `None` if
    /// unknown or not in use.
    pub due_at: Option<String>,
    /// Policy status where the key holds data (or is the primary).
    pub status: Option<DueStatus>,
    /// The last audit event naming this key.
    pub last_event: Option<String>,
}

/// The report's overall verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compliance {
    /// Keys within the policy, and nothing below needs attention.
    Ok,
    /// A key in use reaches the policy's age limit within the warning window.
    DueSoon,
    /// A key in use is older than the policy allows.
    Overdue,
    /// Keys within the policy, but something else is wrong (a failed
    /// verify, an interrupted or failed run, a broken audit trail):
    /// [`Summary::attention`] says what.
    Attention,
}

impl Compliance {
    /// The verdict for people (`ok`, `due soon`, `OVERDUE`, `NEEDS ATTENTION`).
    pub fn label(self) -> &'static str {
        match self {
            Compliance::Ok => "ok",
            Compliance::DueSoon => "due soon",
            Compliance::Overdue => "OVERDUE",
            Compliance::Attention => "NEEDS ATTENTION",
        }
    }
}

/// A run the report flags: interrupted or failed, with no run of the same
/// operation finished after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlaggedRun {
    /// The run's id; `None` if the audit event did not record one.
    pub run_id: Option<String>,
    /// `rotate` or `encrypt`.
    pub operation: String,
    /// `interrupted`, `lock_lost` or `failed`.
    pub outcome: String,
    /// When it was recorded (the event's time), or when it started.
    pub time: String,
    /// The audit event that says so; `None` for a run found still
    /// `running` in `keyturn_runs` with its process gone (the next run
    /// records it).
    pub seq: Option<u64>,
    /// The error, or who took the lock.
    pub detail: Option<String>,
}

impl FlaggedRun {
    /// One line for people.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} run {} {}",
            self.operation,
            self.run_id.as_deref().unwrap_or("(no run id)"),
            self.outcome.replace('_', " ")
        );
        match self.seq {
            Some(seq) => s.push_str(&format!(" (event #{seq})")),
            None => s.push_str(" (still 'running' in keyturn_runs; its process is gone)"),
        }
        if let Some(d) = &self.detail {
            s.push_str(&format!(": {d}"));
        }
        s
    }
}

/// The report's verdict and headline numbers.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// `ok` only when keys are within the policy and nothing needs
    /// attention; never `ok` beside a failed latest verify.
    pub compliance: Compliance,
    /// The key-age policy alone (what `keyturn due` reports).
    pub policy: DueStatus,
    /// Why the report needs attention besides key ages, one line each.
    pub attention: Vec<String>,
    /// Whether the audit chain verified without problems.
    pub chain_ok: bool,
    /// Audit events in the trail.
    pub events: u64,
    /// Outcome of the latest verify, if one was recorded.
    pub latest_verify: Option<String>,
    /// Keys that hold values in some column.
    pub keys_in_use: usize,
    /// Columns covered by the report.
    pub columns: usize,
    /// The current primary key id: the config's, else the audit trail's; `None` if neither names
    /// one.
    pub current_key_id: Option<String>,
}

/// The whole `keyturn report` document, rendered as JSON or HTML.
#[derive(Clone, Debug, Serialize)]
pub struct EvidenceReport {
    /// When the report was made (RFC 3339 UTC).
    pub generated_at: String,
    /// The keyturn version that made it.
    pub keyturn_version: String,
    /// Backend and URL without password.
    pub database: String,
    /// The verdict and headline numbers.
    pub summary: Summary,
    /// Every key known to the config, the data or the audit trail.
    pub keys: Vec<KeyInventory>,
    /// Values per key per column.
    pub columns: Vec<ColumnDistribution>,
    /// The key-age policy verdict (as `keyturn due`).
    pub due: DueReport,
    /// The audit chain's check.
    pub chain: ChainReport,
    /// The latest `verify` event, if any.
    pub latest_verify: Option<AuditEvent>,
    /// Interrupted and failed runs that no later run of their operation
    /// finished after, oldest first.
    pub flagged_runs: Vec<FlaggedRun>,
    /// Newest first, at most [`HISTORY_LIMIT`].
    pub history: Vec<AuditEvent>,
    /// Events in the trail, of which `history` lists the newest.
    pub history_total: usize,
}

/// What the report needs of the config: the `[keys]` section's primary and
/// retired key ids, and the rotation policy.
#[derive(Clone, Debug, Default)]
pub struct ReportConfig {
    /// The `[keys]` section's current key id (`primary = …`), if set.
    pub primary: Option<String>,
    /// The `[keys]` section's retired key ids.
    pub retired: Vec<String>,
    /// The `[policy]` section.
    pub policy: PolicyConfig,
}

/// The current primary: the config's, else the audit trail's.
pub fn current_primary(cfg: &ReportConfig, events: &[AuditEvent]) -> Option<String> {
    cfg.primary
        .clone()
        .or_else(|| due::primary_from_events(events))
}

/// Key start dates from the trail and the config.
pub fn known_dates(cfg: &ReportConfig, events: &[AuditEvent]) -> Result<KnownDates, AuditError> {
    KnownDates::from_events(events).with_config(&cfg.policy)
}

/// `due` over the given distribution.
pub fn due_report(
    now: OffsetDateTime,
    cfg: &ReportConfig,
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
            primary: c.primary.clone(),
        })
        .collect();
    let mut r = due::evaluate(now, &cfg.policy, primary.as_deref(), &keys, &dates);
    r.audit_tip = events.last().map(|e| format!("{}:{}", e.seq, e.hash));
    Ok(r)
}

/// Builds the report from what was read (pure: used by tests as is).
pub fn build(
    now: OffsetDateTime,
    cfg: &ReportConfig,
    database: &str,
    columns: Vec<ColumnDistribution>,
    rows: &[AuditRow],
    chain: ChainReport,
) -> Result<EvidenceReport, AuditError> {
    build_with_runs(now, cfg, database, columns, rows, chain, &[])
}

/// [`build`], with the runs `keyturn_runs` still says are `running`
/// ([`keyturn_db::open_runs`]): an interrupted one is flagged.
pub fn build_with_runs(
    now: OffsetDateTime,
    cfg: &ReportConfig,
    database: &str,
    columns: Vec<ColumnDistribution>,
    rows: &[AuditRow],
    chain: ChainReport,
    open_runs: &[OpenRun],
) -> Result<EvidenceReport, AuditError> {
    let events: Vec<AuditEvent> = rows.iter().map(AuditEvent::from_row).collect();
    let due = due_report(now, cfg, &columns, &events)?;
    let primary = current_primary(cfg, &events);
    let dates = known_dates(cfg, &events)?;

    // Every key id anyone mentions.
    let mut ids: BTreeSet<String> = BTreeSet::new();
    ids.extend(cfg.primary.iter().cloned());
    ids.extend(cfg.retired.iter().cloned());
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
            "current"
        } else if lifecycle.get(id.as_str()) == Some(&&AuditAction::KeyDestroy) {
            "destroyed"
        } else if cfg.retired.contains(id)
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
        "current" => 0,
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
    let flagged_runs = flagged_runs(&events, open_runs);
    let mut attention = Vec::new();
    if let Some(v) = latest_verify
        .as_ref()
        .filter(|v| v.outcome != crate::Outcome::Ok)
    {
        attention.push(format!(
            "the latest verify (event #{}) says {}",
            v.seq,
            v.outcome.as_str().replace('_', " ")
        ));
    }
    if !chain.ok {
        attention.push(match &chain.first_bad {
            Some(p) => format!("the audit trail is broken at event #{}", p.seq),
            None => "the audit trail is broken".into(),
        });
    }
    attention.extend(flagged_runs.iter().map(FlaggedRun::describe));
    let compliance = match due.status {
        DueStatus::Overdue => Compliance::Overdue,
        DueStatus::DueSoon => Compliance::DueSoon,
        DueStatus::Ok if !attention.is_empty() => Compliance::Attention,
        DueStatus::Ok => Compliance::Ok,
    };
    let summary = Summary {
        compliance,
        policy: due.status,
        attention,
        chain_ok: chain.ok,
        events: chain.events,
        latest_verify: latest_verify.as_ref().map(|e| e.outcome.to_string()),
        keys_in_use: keys.iter().filter(|k| k.rows > 0).count(),
        columns: columns.len(),
        current_key_id: primary.clone(),
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
        flagged_runs,
        history,
        history_total,
    })
}

/// Interrupted and failed runs from the audit trail (end events and
/// `run.interrupted`) and from `keyturn_runs` (a `running` record whose
/// process is gone), less those a later run of the same operation finished
/// after. A run refused because another held the lock changed nothing and
/// is not flagged.
fn flagged_runs(events: &[AuditEvent], open_runs: &[OpenRun]) -> Vec<FlaggedRun> {
    use crate::Outcome;
    let mut flagged: Vec<FlaggedRun> = Vec::new();
    for e in events {
        let operation = match &e.action {
            AuditAction::RotateEnd => "rotate".to_owned(),
            AuditAction::EncryptEnd => "encrypt".to_owned(),
            AuditAction::RunInterrupted => {
                match e.details.get("operation").and_then(|v| v.as_str()) {
                    Some(op) => op.to_owned(),
                    None => continue,
                }
            }
            _ => continue,
        };
        match &e.outcome {
            Outcome::Ok | Outcome::CompletedWithErrors => {
                flagged.retain(|f| f.operation != operation);
            }
            Outcome::Failed
                if e.details.get("error_kind").and_then(|v| v.as_str()) == Some("locked") => {}
            Outcome::Interrupted | Outcome::LockLost | Outcome::Failed => {
                let detail = e
                    .details
                    .get("error")
                    .and_then(|v| v.as_str())
                    .map(|m| m.lines().next().unwrap_or_default().to_owned())
                    .or_else(|| {
                        e.details
                            .get("lock_holder")
                            .and_then(|v| v.as_str())
                            .map(|h| format!("the rotation lock went to {h}"))
                    });
                // One entry per run: a run.interrupted event and the run's
                // own later end (it lived on) describe the same run.
                flagged.retain(|f| f.run_id.is_none() || f.run_id != e.run_id);
                flagged.push(FlaggedRun {
                    run_id: e.run_id.clone(),
                    operation,
                    outcome: e.outcome.as_str().to_owned(),
                    time: e.time.clone(),
                    seq: Some(e.seq),
                    detail,
                });
            }
            _ => {}
        }
    }
    for r in open_runs.iter().filter(|r| r.state == "interrupted") {
        flagged.push(FlaggedRun {
            run_id: Some(r.run_id.clone()),
            operation: r.operation.clone(),
            outcome: "interrupted".into(),
            time: r.started_at.clone(),
            seq: None,
            detail: Some(format!("started by {}", r.actor)),
        });
    }
    flagged
}
