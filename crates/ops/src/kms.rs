//! Operations on the keys of columns rotated inside a KMS (`kms = "NAME"`):
//! retiring the old key versions once no row needs them.

use crate::{OpsError, Session};
use keyturn_audit::{AuditAction, ColumnCounts, NewEvent, Outcome};
use keyturn_engine::EngineError;
use serde::Serialize;

/// What retiring the old versions did for one column.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Retired {
    /// The column's table.
    pub table: String,
    /// The column.
    pub column: String,
    /// The KMS and key (`transit key app (mount transit) at http://…`).
    pub kms: String,
    /// The key id rows are under (`v3`).
    pub target: String,
    /// What the KMS did, or why it has nothing to do.
    pub outcome: String,
}

/// Raises each selected `kms` column's minimum decryption version to the
/// version its rows are under (transit `min_decryption_version`), after
/// checking in SQL that no row of the column is under an older one. Refused,
/// with nothing changed, while any is; audited (`key.retire`) per column.
pub async fn retire_older_versions(
    session: &Session,
    actor: &str,
) -> Result<Vec<Retired>, OpsError> {
    let columns: Vec<_> = session
        .plan
        .columns
        .iter()
        .filter_map(|c| c.remote.as_ref().map(|r| (c, r)))
        .collect();
    if columns.is_empty() {
        return Err(EngineError::Usage(
            "no selected column is rotated inside a KMS (kms = \"NAME\"); nothing to retire".into(),
        )
        .into());
    }
    // Every column first: nothing changes unless all are ready.
    let mut behind = Vec::new();
    for (c, r) in &columns {
        let counts = session.db.count_keys(&c.col, &c.census()).await?;
        let older: Vec<String> = counts
            .by_key
            .iter()
            .filter(|k| k.rows > 0 && k.key_id != r.target())
            .map(|k| format!("{} under {}", k.rows, k.key_id))
            .collect();
        if !older.is_empty() {
            behind.push(format!("{}: {}", c.label(), older.join(", ")));
        }
    }
    if !behind.is_empty() {
        return Err(EngineError::Refused(format!(
            "rows still need the old key versions ({}); run `keyturn rotate` (and fix its bad rows) first",
            behind.join("; ")
        ))
        .into());
    }
    let mut out = Vec::new();
    for (c, r) in columns {
        let done = r.retire_older().await;
        let mut ev = NewEvent::new(AuditAction::KeyRetire, actor, Outcome::Failed)
            .keys([r.target().to_owned()])
            .detail("kms", r.describe());
        ev.columns = vec![ColumnCounts::new(&c.col.table, &c.col.column)];
        let outcome = match &done {
            Ok(Some(what)) => {
                ev.outcome = Outcome::Ok;
                ev = ev.detail("result", what.clone());
                what.clone()
            }
            Ok(None) => {
                ev.outcome = Outcome::Ok;
                let what = "this KMS has no minimum decryption version: disable the old key in the KMS, or schedule its deletion, once verified".to_owned();
                ev = ev.detail("result", what.clone());
                what
            }
            Err(e) => {
                ev = ev.detail("error", e.to_string());
                String::new()
            }
        };
        keyturn_audit::append(session.db.as_ref(), &ev)
            .await
            .map_err(|e| {
                OpsError::step("the retirement could not be recorded in the audit trail", e)
            })?;
        done?;
        out.push(Retired {
            table: c.col.table.clone(),
            column: c.col.column.clone(),
            kms: r.describe(),
            target: r.target().to_owned(),
            outcome,
        });
    }
    Ok(out)
}
