//! The event model: what happened, who did it, to which keys and columns,
//! with what result.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// What an event records. Stored as its dotted name (`rotate.start`).
/// Names this build does not know (written by a newer keyturn) are kept as
/// [`AuditAction::Other`] so old builds still list and verify them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A data key was added to the key catalog.
    KeyAdd,
    /// A key became the primary (the one that encrypts).
    KeyPromote,
    /// A key was retired: it no longer decrypts.
    KeyRetire,
    /// A key's material was destroyed.
    KeyDestroy,
    /// A key was declared compromised.
    KeyCompromised,
    /// `rotate` began (written before any value changes).
    RotateStart,
    /// `rotate` ended: counts, duration, outcome.
    RotateEnd,
    /// `encrypt` began.
    EncryptStart,
    /// `encrypt` ended.
    EncryptEnd,
    /// `verify` ran: whether every value is under the current key.
    Verify,
    /// The key-encryption key (KMS master key) was rotated.
    KekRotate,
    /// A safety check was overridden (`--force` and the like).
    Override,
    /// A run's process was found gone while its record still said
    /// `running` (killed, or lost with its machine); written by the next run
    /// when it takes the lock, which records the run as `interrupted`.
    RunInterrupted,
    /// Bad rows were acknowledged as they are (`keyturn bad-rows ack`).
    BadRowsAck,
    /// An operator asked a running run to pause, resume or stop (`keyturn
    /// runs pause|resume|stop`); the detail `action` says which.
    RunControl,
    /// An action this build does not know.
    Other(String),
}

impl AuditAction {
    /// Every action this build knows, in documentation order.
    pub const KNOWN: [AuditAction; 15] = [
        AuditAction::KeyAdd,
        AuditAction::KeyPromote,
        AuditAction::KeyRetire,
        AuditAction::KeyDestroy,
        AuditAction::KeyCompromised,
        AuditAction::RotateStart,
        AuditAction::RotateEnd,
        AuditAction::EncryptStart,
        AuditAction::EncryptEnd,
        AuditAction::Verify,
        AuditAction::KekRotate,
        AuditAction::Override,
        AuditAction::RunInterrupted,
        AuditAction::BadRowsAck,
        AuditAction::RunControl,
    ];

    /// The action's name as stored (`key.add`, `rotate.end`, ...), or the stored text for an
    /// unknown action.
    pub fn as_str(&self) -> &str {
        match self {
            AuditAction::KeyAdd => "key.add",
            AuditAction::KeyPromote => "key.promote",
            AuditAction::KeyRetire => "key.retire",
            AuditAction::KeyDestroy => "key.destroy",
            AuditAction::KeyCompromised => "key.compromised",
            AuditAction::RotateStart => "rotate.start",
            AuditAction::RotateEnd => "rotate.end",
            AuditAction::EncryptStart => "encrypt.start",
            AuditAction::EncryptEnd => "encrypt.end",
            AuditAction::Verify => "verify",
            AuditAction::KekRotate => "kek.rotate",
            AuditAction::Override => "override",
            AuditAction::RunInterrupted => "run.interrupted",
            AuditAction::BadRowsAck => "bad_rows.ack",
            AuditAction::RunControl => "run.control",
            AuditAction::Other(s) => s,
        }
    }

    /// Parses a stored action name; a name this version does not know becomes
    /// [`AuditAction::Other`].
    pub fn parse(s: &str) -> AuditAction {
        AuditAction::KNOWN
            .iter()
            .find(|a| a.as_str() == s)
            .cloned()
            .unwrap_or_else(|| AuditAction::Other(s.to_owned()))
    }

    /// `--action` filters: an exact name (`rotate.end`) or a group
    /// (`rotate` matches `rotate.start` and `rotate.end`; `key` every key
    /// lifecycle action).
    pub fn matches(&self, filter: &str) -> bool {
        let name = self.as_str();
        name == filter
            || name
                .strip_prefix(filter)
                .is_some_and(|rest| rest.starts_with('.'))
    }

    /// Whether `filter` names a known action or group.
    pub fn is_known_filter(filter: &str) -> bool {
        AuditAction::KNOWN.iter().any(|a| a.matches(filter))
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AuditAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuditAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(AuditAction::parse(&String::deserialize(d)?))
    }
}

/// How the action ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A start event: the action is under way.
    Started,
    /// Finished: every value done, or the action succeeded.
    Ok,
    /// Finished, but some rows could not be processed (bad rows).
    CompletedWithErrors,
    /// Stopped by Ctrl-C / SIGTERM after saving its checkpoint.
    Interrupted,
    /// Stopped by an error (`details.error` says which).
    Failed,
    /// Stopped at a batch boundary because another run took the rotation
    /// lock (its checkpoint saved; `details.lock_holder` names the other).
    LockLost,
    /// `verify`: some values are not under the current key or do not decrypt.
    Mismatch,
    /// An outcome this version does not know, kept as stored.
    Other(String),
}

impl Outcome {
    const KNOWN: [Outcome; 7] = [
        Outcome::Started,
        Outcome::Ok,
        Outcome::CompletedWithErrors,
        Outcome::Interrupted,
        Outcome::Failed,
        Outcome::LockLost,
        Outcome::Mismatch,
    ];

    /// The outcome's name as stored (`started`, `ok`, `lock_lost`, ...), or the stored text for an
    /// unknown one.
    pub fn as_str(&self) -> &str {
        match self {
            Outcome::Started => "started",
            Outcome::Ok => "ok",
            Outcome::CompletedWithErrors => "completed_with_errors",
            Outcome::Interrupted => "interrupted",
            Outcome::Failed => "failed",
            Outcome::LockLost => "lock_lost",
            Outcome::Mismatch => "mismatch",
            Outcome::Other(s) => s,
        }
    }

    /// Parses a stored outcome name; a name this version does not know becomes [`Outcome::Other`].
    pub fn parse(s: &str) -> Outcome {
        Outcome::KNOWN
            .iter()
            .find(|o| o.as_str() == s)
            .cloned()
            .unwrap_or_else(|| Outcome::Other(s.to_owned()))
    }

    /// Whether data was (at least partly) written under the event's key.
    pub fn wrote_data(&self) -> bool {
        matches!(
            self,
            Outcome::Ok | Outcome::CompletedWithErrors | Outcome::Interrupted | Outcome::LockLost
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Outcome::parse(&String::deserialize(d)?))
    }
}

/// Counts for one column. Which counts depends on the action
/// (docs/AUDIT.md): `rotate.end` has `rotated`, `skipped`, `retried`,
/// `failed`; `verify` has `checked`, `under_current`, `failing`; start
/// events have `by_key` (values per key id before the run).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnCounts {
    /// The column's table.
    pub table: String,
    /// The column's name.
    pub column: String,
    /// Named counts for the action (e.g. `rotated`, `failed`, `checked`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
    /// Values per key id, on start events.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_key: BTreeMap<String, u64>,
}

impl ColumnCounts {
    /// Counts for `table.column`, none set yet.
    pub fn new(table: &str, column: &str) -> ColumnCounts {
        ColumnCounts {
            table: table.to_owned(),
            column: column.to_owned(),
            ..Default::default()
        }
    }

    /// Sets the count `name` to `n`.
    pub fn count(mut self, name: &str, n: u64) -> ColumnCounts {
        self.counts.insert(name.to_owned(), n);
        self
    }

    /// The count `name`, or 0 if it was not recorded.
    pub fn get(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// The column as `table.column`.
    pub fn label(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }
}

/// An event a command wants recorded; [`crate::append`] adds the sequence
/// number, time and hashes.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// What happened.
    pub action: AuditAction,
    /// Who: `--actor`, else `user@host`.
    pub actor: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why: `scheduled`, `compromise`, `staff-change`, … (free text).
    pub reason: Option<String>,
    /// The engine's run id, for rotate / encrypt.
    pub run_id: Option<String>,
    /// The keys concerned; for rotate / encrypt the first is the target
    /// (primary) key.
    pub key_ids: Vec<String>,
    /// Counts per column the action touched.
    pub columns: Vec<ColumnCounts>,
    /// How long the action took, in milliseconds (end events).
    pub duration_ms: Option<u64>,
    /// Anything else, as a JSON object (integers only, no fractions).
    pub details: Map<String, Value>,
}

impl NewEvent {
    /// An event with no reason, run id, keys, columns, duration or details.
    pub fn new(action: AuditAction, actor: &str, outcome: Outcome) -> NewEvent {
        NewEvent {
            action,
            actor: actor.to_owned(),
            outcome,
            reason: None,
            run_id: None,
            key_ids: Vec::new(),
            columns: Vec::new(),
            duration_ms: None,
            details: Map::new(),
        }
    }

    /// Sets the reason (why the action was taken).
    pub fn reason(mut self, reason: Option<&str>) -> NewEvent {
        self.reason = reason.map(str::to_owned);
        self
    }

    /// Sets the engine's run id.
    pub fn run_id(mut self, run_id: Option<&str>) -> NewEvent {
        self.run_id = run_id.map(str::to_owned);
        self
    }

    /// Sets the keys concerned; for rotate / encrypt the target (primary) key first.
    pub fn keys<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ids: I) -> NewEvent {
        self.key_ids = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the per-column counts.
    pub fn columns(mut self, columns: Vec<ColumnCounts>) -> NewEvent {
        self.columns = columns;
        self
    }

    /// Sets how long the action took, in milliseconds.
    pub fn duration_ms(mut self, ms: u64) -> NewEvent {
        self.duration_ms = Some(ms);
        self
    }

    /// Adds a detail member (`name` = `value`); integers only, no fractions.
    pub fn detail(mut self, name: &str, value: impl Into<Value>) -> NewEvent {
        self.details.insert(name.to_owned(), value.into());
        self
    }
}

/// A stored event, read back from the audit table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Canonical-form version (1).
    pub v: u32,
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    /// What happened.
    pub action: AuditAction,
    /// Who: `--actor`, else `user@host`.
    pub actor: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, if given (free text).
    pub reason: Option<String>,
    /// The engine's run id, for rotate / encrypt.
    pub run_id: Option<String>,
    /// The keys concerned; for rotate / encrypt the first is the target (primary) key.
    pub key_ids: Vec<String>,
    /// Counts per column.
    pub columns: Vec<ColumnCounts>,
    /// How long the action took, in milliseconds.
    pub duration_ms: Option<u64>,
    /// Anything else, as a JSON object.
    pub details: Map<String, Value>,
    /// The previous event's `hash` ([`crate::chain::GENESIS`] for the first event).
    pub prev_hash: String,
    /// SHA-256 (hex) of the event's canonical JSON, `prev_hash` included and `hash` excluded.
    pub hash: String,
}

impl AuditEvent {
    /// Parses a stored row. Lenient: JSON columns that do not parse (a
    /// tampered row) come back empty; `audit verify` reports such rows.
    pub fn from_row(r: &keyturn_db::AuditRow) -> AuditEvent {
        AuditEvent {
            seq: r.seq.max(0) as u64,
            v: r.format_version.clamp(0, i64::from(u32::MAX)) as u32,
            time: r.event_time.clone(),
            action: AuditAction::parse(&r.action),
            actor: r.actor.clone(),
            outcome: Outcome::parse(&r.outcome),
            reason: r.reason.clone(),
            run_id: r.run_id.clone(),
            key_ids: serde_json::from_str(&r.key_ids).unwrap_or_default(),
            columns: serde_json::from_str(&r.column_counts).unwrap_or_default(),
            duration_ms: r.duration_ms.map(|d| d.max(0) as u64),
            details: serde_json::from_str(&r.details).unwrap_or_default(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
        }
    }

    /// The first key id (the target key of rotate / encrypt).
    pub fn key(&self) -> Option<&str> {
        self.key_ids.first().map(String::as_str)
    }

    /// Whether the event records a dry run (`details.dry_run` is true).
    pub fn is_dry_run(&self) -> bool {
        self.details
            .get("dry_run")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Short human summary of the counts: `patients.phone 99 rotated, 1 failed`.
    pub fn counts_summary(&self) -> String {
        let parts: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let counts: Vec<String> = c
                    .counts
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(k, n)| format!("{n} {}", k.replace('_', " ")))
                    .collect();
                let by_key: Vec<String> =
                    c.by_key.iter().map(|(k, n)| format!("{k}: {n}")).collect();
                let mut all = counts;
                if !by_key.is_empty() {
                    all.push(format!("[{}]", by_key.join(", ")));
                }
                if all.is_empty() {
                    all.push("nothing to do".into());
                }
                format!("{} {}", c.label(), all.join(", "))
            })
            .collect();
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip_and_group_filters() {
        for a in AuditAction::KNOWN {
            assert_eq!(AuditAction::parse(a.as_str()), a);
        }
        assert_eq!(
            AuditAction::parse("key.rename"),
            AuditAction::Other("key.rename".into())
        );
        assert!(AuditAction::RotateStart.matches("rotate"));
        assert!(AuditAction::RotateEnd.matches("rotate.end"));
        assert!(!AuditAction::RotateEnd.matches("rotate.start"));
        assert!(!AuditAction::RotateEnd.matches("rot"));
        assert!(AuditAction::KeyCompromised.matches("key"));
        assert!(AuditAction::is_known_filter("kek"));
        assert!(AuditAction::RunInterrupted.matches("run"));
        assert_eq!(Outcome::parse("lock_lost"), Outcome::LockLost);
        assert!(!AuditAction::is_known_filter("rotat"));
    }

    #[test]
    fn serializes_as_names() {
        let v =
            serde_json::to_value((AuditAction::KekRotate, Outcome::CompletedWithErrors)).unwrap();
        assert_eq!(
            v,
            serde_json::json!(["kek.rotate", "completed_with_errors"])
        );
    }
}
