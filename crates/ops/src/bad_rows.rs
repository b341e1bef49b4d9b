//! The bad-row list as operations: list, and acknowledge (audited).

use crate::{OpsError, ReadSession};
use keyturn_audit::{AuditAction, NewEvent, Outcome};
use keyturn_db::BadRowAck;
pub use keyturn_db::BadRowRecord;
use keyturn_engine::EngineError;

/// The recorded bad rows, of one table / column when given.
pub async fn list(
    s: &ReadSession,
    table: Option<&str>,
    column: Option<&str>,
) -> Result<Vec<BadRowRecord>, OpsError> {
    Ok(s.db.load_bad_rows(table, column).await?)
}

/// Which rows to acknowledge.
#[derive(Clone, Debug, Default)]
pub struct AckRequest {
    /// Every recorded row (of `table` / `column` when given).
    pub all: bool,
    /// Only these rows (their keys as `bad-rows list` shows them); needs
    /// `table` and `column`.
    pub pks: Vec<String>,
    /// The table.
    pub table: Option<String>,
    /// The column.
    pub column: Option<String>,
    /// Why the rows are kept as they are (required).
    pub reason: String,
}

/// Acknowledges bad rows as they are: recorded in the audit trail first
/// (no acknowledgement without its event), then on the rows' records.
/// Returns the rows acknowledged, `(table, column, key)`.
pub async fn ack(
    s: &ReadSession,
    req: &AckRequest,
    actor: &str,
) -> Result<Vec<(String, String, String)>, OpsError> {
    let reason = req.reason.trim();
    if reason.is_empty() {
        return Err(EngineError::Usage("--reason must not be empty".into()).into());
    }
    if !req.all && req.pks.is_empty() {
        return Err(EngineError::Usage(
            "name the rows: --table T --column C --pk PK (repeatable), or --all".into(),
        )
        .into());
    }
    if !req.pks.is_empty() && (req.table.is_none() || req.column.is_none()) {
        return Err(EngineError::Usage("--pk needs --table and --column".into()).into());
    }
    let records = list(s, req.table.as_deref(), req.column.as_deref()).await?;
    let chosen: Vec<&BadRowRecord> = if req.all {
        records.iter().collect()
    } else {
        let missing: Vec<&str> = req
            .pks
            .iter()
            .filter(|pk| !records.iter().any(|r| &r.pk == *pk))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(EngineError::Config(format!(
                "no bad row recorded for key{} {} in {}.{} (see `keyturn bad-rows list`); nothing was acknowledged",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", "),
                req.table.as_deref().unwrap_or(""),
                req.column.as_deref().unwrap_or("")
            ))
            .into());
        }
        records.iter().filter(|r| req.pks.contains(&r.pk)).collect()
    };
    let rows: Vec<(String, String, String)> = chosen
        .iter()
        .map(|r| (r.table.clone(), r.column.clone(), r.pk.clone()))
        .collect();
    if rows.is_empty() {
        return Ok(rows);
    }
    let ack = BadRowAck {
        by: actor.to_owned(),
        at: keyturn_db::ts::now_text(),
        reason: reason.to_owned(),
    };
    let listed: Vec<serde_json::Value> = rows
        .iter()
        .take(1000)
        .map(|(t, c, pk)| serde_json::json!({ "table": t, "column": c, "pk": pk }))
        .collect();
    let ev = NewEvent::new(AuditAction::BadRowsAck, actor, Outcome::Ok)
        .reason(Some(reason))
        .detail("rows", rows.len() as u64)
        .detail("acknowledged", serde_json::Value::Array(listed));
    keyturn_audit::append(s.db.as_ref(), &ev)
        .await
        .map_err(|e| {
            OpsError::step(
                "recording the acknowledgement in the audit trail (nothing was acknowledged)",
                e,
            )
        })?;
    s.db.ack_bad_rows(&rows, &ack).await?;
    Ok(rows)
}
