//! A run's summary as the webhook message keyturn-audit posts.

use keyturn_audit::notify::{ColumnNotice, RunNotice};
use keyturn_engine::{Operation, RunSummary};

/// The notice for a finished rotate / encrypt run.
pub fn run_notice(s: &RunSummary) -> RunNotice {
    RunNotice {
        operation: s.operation.name().into(),
        verb: match s.operation {
            Operation::Rotate => "rotated",
            Operation::Encrypt => "encrypted",
        }
        .into(),
        current_key_id: s.current_key_id.clone(),
        outcome: s.outcome.as_str().to_owned(),
        seconds: s.seconds,
        columns: s
            .columns
            .iter()
            .map(|c| ColumnNotice {
                label: format!("{}.{}", c.table, c.column),
                written: c.written,
                skipped: c.skipped,
                failed: c.failed,
            })
            .collect(),
        data: serde_json::to_value(s).unwrap_or(serde_json::Value::Null),
    }
}
