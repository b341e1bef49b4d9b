//! Appending to and reading the audit table through the `Database` trait.

use crate::chain::{self, ChainReport, ChainVerifier, FORMAT_VERSION, GENESIS};
use crate::event::{AuditEvent, NewEvent};
use crate::{AuditError, ts};
use keyturn_db::{AuditRow, AuditTip, Database};
use serde_json::Value;

/// Rows read per query.
const PAGE: usize = 1000;
const MAX_ACTOR: usize = 255;
const MAX_REASON: usize = 2000;

/// Appends one event to the database's audit trail and returns it as
/// stored. Safe under concurrency: the database serializes appenders on the
/// `seq` primary key, and a loser retries against the new tip, so the chain
/// never forks. Every command that changes state calls this.
pub async fn append(db: &dyn Database, ev: &NewEvent) -> Result<AuditEvent, AuditError> {
    check(ev)?;
    let key_ids = serde_json::to_value(&ev.key_ids).map_err(invalid)?;
    let columns = serde_json::to_value(&ev.columns).map_err(invalid)?;
    let details = Value::Object(ev.details.clone());
    // Refuse what the canonical form cannot hold before touching the table.
    for (what, v) in [
        ("key_ids", &key_ids),
        ("columns", &columns),
        ("details", &details),
    ] {
        chain::canonical_json(v)
            .map_err(|e| AuditError::Invalid(format!("audit event {what}: {e}")))?;
    }
    let key_ids = key_ids.to_string();
    let column_counts = columns.to_string();
    let details = details.to_string();
    let duration_ms = ev.duration_ms.map(|d| i64::try_from(d).unwrap_or(i64::MAX));
    let build = |tip: Option<&AuditTip>| -> Result<AuditRow, String> {
        let (seq, prev_hash) = match tip {
            Some(t) => (t.seq + 1, t.hash.clone()),
            None => (1, GENESIS.to_owned()),
        };
        let mut row = AuditRow {
            seq,
            format_version: i64::from(FORMAT_VERSION),
            event_time: ts::format(ts::now()),
            action: ev.action.as_str().to_owned(),
            actor: ev.actor.clone(),
            outcome: ev.outcome.as_str().to_owned(),
            reason: ev.reason.clone(),
            run_id: ev.run_id.clone(),
            key_ids: key_ids.clone(),
            column_counts: column_counts.clone(),
            duration_ms,
            details: details.clone(),
            prev_hash,
            hash: String::new(),
        };
        row.hash = chain::row_hash(&row)?;
        Ok(row)
    };
    let row = db.audit_append(&build).await?;
    Ok(AuditEvent::from_row(&row))
}

fn invalid(e: serde_json::Error) -> AuditError {
    AuditError::Invalid(format!("audit event: {e}"))
}

fn check(ev: &NewEvent) -> Result<(), AuditError> {
    let bad = |m: String| Err(AuditError::Invalid(m));
    if ev.actor.trim().is_empty() {
        return bad("the actor (--actor) must not be empty".into());
    }
    if ev.actor.chars().count() > MAX_ACTOR {
        return bad(format!(
            "the actor (--actor) is longer than {MAX_ACTOR} characters"
        ));
    }
    if let Some(r) = &ev.reason {
        if r.trim().is_empty() {
            return bad("--reason must not be empty".into());
        }
        if r.chars().count() > MAX_REASON {
            return bad(format!("--reason is longer than {MAX_REASON} characters"));
        }
    }
    if ev.action.as_str().len() > 64 || ev.outcome.as_str().len() > 32 {
        return bad("audit action or outcome name too long".into());
    }
    if ev.run_id.as_ref().is_some_and(|r| r.len() > 64) {
        return bad("run id too long".into());
    }
    // PostgreSQL text cannot hold NUL; no backend should see it.
    let texts = [Some(&ev.actor), ev.reason.as_ref(), ev.run_id.as_ref()];
    if texts.into_iter().flatten().any(|s| s.contains('\0'))
        || serde_json::to_string(&ev.details)
            .map(|s| s.contains("\\u0000"))
            .unwrap_or(false)
    {
        return bad("audit event text must not contain NUL characters".into());
    }
    Ok(())
}

/// Every stored row in `seq` order (paged).
pub async fn read_rows(db: &dyn Database) -> Result<Vec<AuditRow>, AuditError> {
    let mut out = Vec::new();
    let mut after = 0i64;
    loop {
        let page = db.audit_read(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let n = page.len();
        out.extend(page);
        if n < PAGE {
            break;
        }
    }
    Ok(out)
}

/// Every stored event in `seq` order.
pub async fn read_events(db: &dyn Database) -> Result<Vec<AuditEvent>, AuditError> {
    Ok(read_rows(db)
        .await?
        .iter()
        .map(AuditEvent::from_row)
        .collect())
}

/// Checks the whole chain in the database.
pub async fn verify(
    db: &dyn Database,
    anchor: Option<(u64, String)>,
) -> Result<ChainReport, AuditError> {
    let mut v = ChainVerifier::new();
    if let Some((seq, hash)) = anchor {
        v = v.anchor(seq, &hash);
    }
    let mut after = 0i64;
    loop {
        let page = db.audit_read(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            v.push_row(r);
        }
        if page.len() < PAGE {
            break;
        }
    }
    Ok(v.finish())
}

/// Checks an export (JSON lines, as written by `audit export`).
pub fn verify_export(text: &str, anchor: Option<(u64, String)>) -> ChainReport {
    let mut v = ChainVerifier::partial();
    if let Some((seq, hash)) = anchor {
        v = v.anchor(seq, &hash);
    }
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value = serde_json::from_str::<Value>(line).unwrap_or(Value::Null);
        v.push_exported(&value);
    }
    v.finish()
}

/// Filters for `audit list` / `audit export`.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Events at or after this time (RFC 3339 UTC text compares in order).
    pub since: Option<String>,
    /// Action names or groups (`rotate`, `key`, `verify`); any matches.
    pub actions: Vec<String>,
}

impl EventFilter {
    /// Whether an event passes the filter: at or after `since`, and of one of `actions` (any action
    /// when empty).
    pub fn matches(&self, ev: &AuditEvent) -> bool {
        self.since
            .as_ref()
            .is_none_or(|s| ev.time.as_str() >= s.as_str())
            && (self.actions.is_empty() || self.actions.iter().any(|a| ev.action.matches(a)))
    }

    /// [`EventFilter::matches`] for a stored row.
    pub fn matches_row(&self, r: &AuditRow) -> bool {
        self.matches(&AuditEvent::from_row(r))
    }
}
