//! `keyturn due`: is each column's data under a key young enough?
//!
//! A key's age runs from the earliest known date it came into use
//! ([`KeyDates`]): today the audit trail (the start of the first rotate /
//! encrypt that wrote under it, or a `key.add` / `key.promote` event) and
//! `[[policy.key]] since` in the config; when the key catalog lands it adds
//! its created / promoted dates through the same trait.
//!
//! For a column with limit `max_key_age_days` (M) and `warn_days` (W), and a
//! key in use there since S (UTC instants, days of exactly 24 h):
//! - due at `S + M days`; from that instant on (age ≥ M days) it is **overdue**;
//! - from `S + (M − W) days` on it is **due soon**;
//! - before that it is **ok**.
//!
//! Keys "in use" in a column: every key id that has values there, plus the
//! current primary key (new writes use it) once its start is known. A key
//! with values but no known start is overdue: compliance cannot be shown.

use crate::event::{AuditAction, AuditEvent};
use crate::policy::PolicyConfig;
use crate::ts;
use serde::Serialize;
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// ok < due soon < overdue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DueStatus {
    /// Every key in use is younger than the due-soon threshold.
    Ok,
    /// A key in use reaches its limit within `warn_days`.
    DueSoon,
    /// A key in use has reached its limit, or its start is unknown.
    Overdue,
}

impl DueStatus {
    /// The documented exit code of `keyturn due`: 0, 10, 11.
    pub fn exit_code(self) -> u8 {
        match self {
            DueStatus::Ok => 0,
            DueStatus::DueSoon => 10,
            DueStatus::Overdue => 11,
        }
    }

    /// The status as a machine word (`ok`, `due_soon`, `overdue`), as in JSON output and
    /// notifications.
    pub fn as_str(self) -> &'static str {
        match self {
            DueStatus::Ok => "ok",
            DueStatus::DueSoon => "due_soon",
            DueStatus::Overdue => "overdue",
        }
    }

    /// The status for people (`ok`, `due soon`, `OVERDUE`).
    pub fn label(self) -> &'static str {
        match self {
            DueStatus::Ok => "ok",
            DueStatus::DueSoon => "due soon",
            DueStatus::Overdue => "OVERDUE",
        }
    }
}

/// Where a key's start date came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinceSource {
    /// The audit trail: first rotate / encrypt under the key, or a key
    /// lifecycle event.
    AuditTrail,
    /// `[[policy.key]] since` in the config.
    Config,
    /// The key catalog (created / promoted), once it exists.
    Catalog,
}

/// When a key came into use, as far as anyone knows.
pub trait KeyDates {
    /// When the key came into use and who says so; `None` if nobody knows.
    fn since(&self, key_id: &str) -> Option<(OffsetDateTime, SinceSource)>;

    /// The key the last completed rotation of a column (every value it
    /// could decrypt rewritten; bad rows named) moved it to. Its values
    /// that name no key are then under that key.
    fn rotated_to(&self, _table: &str, _column: &str) -> Option<&str> {
        None
    }
}

/// Key start dates gathered from the audit trail and the config; the
/// earliest known date of each key wins (a key is at least as old as the
/// oldest evidence of it).
#[derive(Clone, Debug, Default)]
pub struct KnownDates {
    dates: BTreeMap<String, (OffsetDateTime, SinceSource)>,
    /// `(table, column)` → the target key of its last completed rotation.
    rotated: BTreeMap<(String, String), String>,
}

impl KnownDates {
    /// Records `t` for `key` if it is earlier than what is known.
    pub fn add(&mut self, key: &str, t: OffsetDateTime, source: SinceSource) {
        let e = self.dates.entry(key.to_owned()).or_insert((t, source));
        if t < e.0 {
            *e = (t, source);
        }
    }

    /// From the audit trail: rotate / encrypt end events that wrote data
    /// (their run's start time), and `key.add` / `key.promote` events.
    pub fn from_events(events: &[AuditEvent]) -> KnownDates {
        let mut d = KnownDates::default();
        for e in events {
            let Ok(t) = ts::parse(&e.time) else { continue };
            let Some(key) = e.key() else { continue };
            if matches!(e.action, AuditAction::RotateEnd | AuditAction::EncryptEnd)
                && !e.is_dry_run()
            {
                for c in &e.columns {
                    let at = (c.table.clone(), c.column.clone());
                    if matches!(
                        e.outcome,
                        crate::Outcome::Ok | crate::Outcome::CompletedWithErrors
                    ) && e.action == AuditAction::RotateEnd
                    {
                        d.rotated.insert(at, key.to_owned());
                    } else if e.outcome.wrote_data() {
                        // Interrupted, or an encrypt: values under other
                        // keys may remain.
                        d.rotated.remove(&at);
                    }
                }
            }
            // A run over several keyrings targets one primary per ring:
            // its first key id lists them, comma-separated (key ids hold
            // no comma).
            for key in key.split(',').filter(|k| !k.is_empty()) {
                match e.action {
                    AuditAction::RotateEnd | AuditAction::EncryptEnd
                        if e.outcome.wrote_data() && !e.is_dry_run() =>
                    {
                        // The run's start: the key encrypted from then on.
                        let ms = i64::try_from(e.duration_ms.unwrap_or(0)).unwrap_or(i64::MAX);
                        d.add(key, t - Duration::milliseconds(ms), SinceSource::AuditTrail);
                    }
                    AuditAction::KeyAdd | AuditAction::KeyPromote
                        if e.outcome == crate::Outcome::Ok =>
                    {
                        d.add(key, t, SinceSource::AuditTrail);
                    }
                    _ => {}
                }
            }
        }
        d
    }

    /// Adds `[[policy.key]]` dates. Fails on an unparsable date.
    pub fn with_config(mut self, policy: &PolicyConfig) -> Result<KnownDates, crate::AuditError> {
        for (i, k) in policy.keys.iter().enumerate() {
            let t = ts::parse(&k.since)
                .map_err(|e| crate::AuditError::Invalid(format!("policy.key[{i}].since: {e}")))?;
            self.add(&k.id, t, SinceSource::Config);
        }
        Ok(self)
    }
}

impl KeyDates for KnownDates {
    fn since(&self, key_id: &str) -> Option<(OffsetDateTime, SinceSource)> {
        self.dates.get(key_id).copied()
    }

    fn rotated_to(&self, table: &str, column: &str) -> Option<&str> {
        self.rotated
            .get(&(table.to_owned(), column.to_owned()))
            .map(String::as_str)
    }
}

/// The primary key according to the audit trail: the target of the last
/// rotate / encrypt that wrote data, or of the last `key.promote`.
pub fn primary_from_events(events: &[AuditEvent]) -> Option<String> {
    events
        .iter()
        .rev()
        .find(|e| match e.action {
            AuditAction::RotateEnd | AuditAction::EncryptEnd => {
                e.outcome.wrote_data() && !e.is_dry_run()
            }
            AuditAction::KeyPromote => e.outcome == crate::Outcome::Ok,
            _ => false,
        })
        .and_then(|e| e.key().map(str::to_owned))
}

/// What `due` needs to know about one column: values per key id.
#[derive(Clone, Debug, Default)]
pub struct ColumnKeys {
    /// The column's table.
    pub table: String,
    /// The column's name.
    pub column: String,
    /// Values per key id, as counted by SQL.
    pub by_key: Vec<(String, u64)>,
    /// Values of the column's format that name no key (Fernet, Laravel,
    /// …): SQL cannot tell which key holds them.
    pub keyless: u64,
    /// The keys that may hold those values: declared with `[[policy.key]]`
    /// or named by the column's keyring in the config (primary, retired).
    /// Each one with a known start date counts as in use while
    /// `keyless > 0`.
    pub candidates: Vec<String>,
    /// The current key of the column's keyring, when it has its own
    /// (`[keyrings.NAME]`); `None`: the report's current key.
    pub primary: Option<String>,
}

/// One key in one column.
#[derive(Clone, Debug, Serialize)]
pub struct KeyInColumn {
    /// The key id.
    pub key_id: String,
    /// Values counted under it by SQL (0 for a key that only may hold
    /// values, see `undetermined`).
    pub rows: u64,
    /// The column holds values whose key SQL cannot read, and this declared
    /// key may be one of them: it counts as in use.
    pub undetermined: bool,
    /// Whether it is the current key of the column's keyring.
    #[serde(rename = "current")]
    pub primary: bool,
    /// When it came into use (RFC 3339 UTC); `None` if unknown, which makes it overdue.
    pub since: Option<String>,
    /// Where `since` comes from.
    pub since_source: Option<SinceSource>,
    /// Whole days in use as of the report; `None` if the start is unknown.
    pub age_days: Option<i64>,
    /// When it reaches the column's limit (RFC 3339 UTC); `None` if the start is unknown.
    pub due_at: Option<String>,
    /// How it stands against the column's limit.
    pub status: DueStatus,
}

/// The policy verdict for one column.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnDue {
    /// The column's table.
    pub table: String,
    /// The column's name.
    pub column: String,
    /// The limit that applies to the column (its override or the section's).
    pub max_key_age_days: u32,
    /// The warning window that applies to the column.
    pub warn_days: u32,
    /// Every key in use in the column, overdue and undated first.
    pub keys: Vec<KeyInColumn>,
    /// When the oldest key in use reaches the limit (`None`: unknown, or no
    /// key in use).
    pub due_at: Option<String>,
    /// From when `due` says "due soon".
    pub warn_from: Option<String>,
    /// The worst status of its keys (overdue too when values name no key and no candidate key is
    /// dated).
    pub status: DueStatus,
    /// One line for people: what is due when, or what is unknown and how to fix it.
    pub message: String,
}

/// One key over all columns.
#[derive(Clone, Debug, Serialize)]
pub struct KeyDue {
    /// The key id.
    pub key_id: String,
    /// Whether it is the current key of a column's keyring.
    #[serde(rename = "current")]
    pub primary: bool,
    /// Values counted under it by SQL, over all columns.
    pub rows: u64,
    /// The columns it is in use in, as `table.column`.
    pub columns: Vec<String>,
    /// When it came into use (RFC 3339 UTC); `None` if unknown.
    pub since: Option<String>,
    /// Where `since` comes from.
    pub since_source: Option<SinceSource>,
    /// Whole days in use as of the report; `None` if the start is unknown.
    pub age_days: Option<i64>,
    /// The earliest due date over the columns it is in.
    pub due_at: Option<String>,
    /// The worst status over its columns.
    pub status: DueStatus,
}

/// What `keyturn due` reports: the policy verdict per column and per key.
#[derive(Clone, Debug, Serialize)]
pub struct DueReport {
    /// The instant the policy was evaluated at.
    pub now: String,
    /// The `[policy]` section's default limit, in days.
    pub max_key_age_days: u32,
    /// The `[policy]` section's default warning window, in days.
    pub warn_days: u32,
    /// The primary key id of the default keyring, if known.
    pub current_key_id: Option<String>,
    /// Per column, in the order given.
    pub columns: Vec<ColumnDue>,
    /// Per key, primary first, then by id.
    pub keys: Vec<KeyDue>,
    /// The worst column.
    pub status: DueStatus,
    /// 0 ok, 10 due soon, 11 overdue.
    pub exit_code: u8,
    /// The soonest due date of any column.
    pub next_due_at: Option<String>,
    /// The audit trail's last event as `seq:hash`: posted with reminders,
    /// it anchors the chain outside the database (docs/AUDIT.md).
    pub audit_tip: Option<String>,
}

impl DueReport {
    /// How many columns have status `s`.
    pub fn count(&self, s: DueStatus) -> usize {
        self.columns.iter().filter(|c| c.status == s).count()
    }
}

/// Evaluates the policy at `now`.
pub fn evaluate(
    now: OffsetDateTime,
    policy: &PolicyConfig,
    primary: Option<&str>,
    columns: &[ColumnKeys],
    dates: &dyn KeyDates,
) -> DueReport {
    let mut out = Vec::new();
    let global_primary = primary;
    for c in columns {
        let primary = c.primary.as_deref().or(global_primary);
        let limits = policy.limits_for(&c.table, &c.column);
        let max = Duration::days(i64::from(limits.max_key_age_days));
        let warn = Duration::days(i64::from(limits.warn_days));
        let mut keys: Vec<KeyInColumn> = Vec::new();
        let mut ids: Vec<(String, u64, bool)> = c
            .by_key
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.clone(), *n, false))
            .collect();
        if let Some(p) = primary
            && !ids.iter().any(|(k, _, _)| k == p)
            && dates.since(p).is_some()
        {
            ids.push((p.to_owned(), 0, false));
        }
        // The last completed rotation of this column went to the current
        // primary: the values that name no key are under it (those it could
        // not decrypt are bad rows, named by `bad-rows list`).
        let rotated_to_primary = c.keyless > 0
            && primary.is_some_and(|p| {
                dates
                    .rotated_to(&c.table, &c.column)
                    .is_some_and(|r| r.split(',').any(|k| k == p))
                    && dates.since(p).is_some()
            });
        if c.keyless > 0 && !rotated_to_primary {
            // SQL cannot rule any declared key out: each one whose start is
            // known counts as holding some of these values.
            for k in &c.candidates {
                if !ids.iter().any(|(x, _, _)| x == k) && dates.since(k).is_some() {
                    ids.push((k.clone(), 0, true));
                }
            }
        }
        let undetermined_without_date =
            c.keyless > 0 && !rotated_to_primary && !ids.iter().any(|(_, _, u)| *u);
        for (key, rows, undetermined) in ids {
            let since = dates.since(&key);
            let (status, due_at) = match since {
                None => (DueStatus::Overdue, None),
                Some((s, _)) => {
                    let due = s + max;
                    let status = if now >= due {
                        DueStatus::Overdue
                    } else if now >= due - warn {
                        DueStatus::DueSoon
                    } else {
                        DueStatus::Ok
                    };
                    (status, Some(due))
                }
            };
            keys.push(KeyInColumn {
                primary: primary == Some(key.as_str()),
                key_id: key,
                rows,
                undetermined,
                since: since.map(|(s, _)| ts::format(s)),
                since_source: since.map(|(_, src)| src),
                age_days: since.map(|(s, _)| ts::whole_days(s, now)),
                due_at: due_at.map(ts::format),
                status,
            });
        }
        // Oldest (and unknown) first.
        keys.sort_by(|a, b| {
            b.status
                .cmp(&a.status)
                .then(a.since.is_some().cmp(&b.since.is_some()))
                .then(a.since.cmp(&b.since))
                .then(a.key_id.cmp(&b.key_id))
        });
        let mut status = keys.iter().map(|k| k.status).max().unwrap_or(DueStatus::Ok);
        if undetermined_without_date {
            // Values whose key nobody can date: compliance cannot be shown.
            status = DueStatus::Overdue;
        }
        let due_at = keys
            .iter()
            .filter_map(|k| k.due_at.as_ref().and_then(|d| ts::parse(d).ok()))
            .min();
        let unknown: Vec<&str> = keys
            .iter()
            .filter(|k| k.since.is_none())
            .map(|k| k.key_id.as_str())
            .collect();
        let mut message = column_message(&keys, &unknown, due_at, now, limits.max_key_age_days);
        if undetermined_without_date {
            message = format!(
                "{} values name no key (their key is decided by decryption) and no declared key of this column has a known start: declare the keys with [[policy.key]] id = \"…\" since = \"YYYY-MM-DD\", or rotate (keyturn status --deep shows the keys)",
                c.keyless
            );
        } else if c.keyless > 0 {
            message = format!(
                "{} values name no key, so every declared key counts as in use (keyturn status --deep shows which hold data); {message}",
                c.keyless
            );
        }
        out.push(ColumnDue {
            table: c.table.clone(),
            column: c.column.clone(),
            max_key_age_days: limits.max_key_age_days,
            warn_days: limits.warn_days,
            keys,
            due_at: due_at.map(ts::format),
            warn_from: due_at.map(|d| ts::format(d - warn)),
            status,
            message,
        });
    }
    let mut by_key: BTreeMap<String, KeyDue> = BTreeMap::new();
    for c in &out {
        for k in &c.keys {
            let e = by_key.entry(k.key_id.clone()).or_insert_with(|| KeyDue {
                key_id: k.key_id.clone(),
                primary: k.primary,
                rows: 0,
                columns: Vec::new(),
                since: k.since.clone(),
                since_source: k.since_source,
                age_days: k.age_days,
                due_at: None,
                status: DueStatus::Ok,
            });
            e.rows += k.rows;
            e.columns.push(format!("{}.{}", c.table, c.column));
            e.status = e.status.max(k.status);
            if let Some(d) = &k.due_at
                && e.due_at.as_ref().is_none_or(|x| d < x)
            {
                e.due_at = Some(d.clone());
            }
        }
    }
    let mut keys: Vec<KeyDue> = by_key.into_values().collect();
    keys.sort_by(|a, b| b.primary.cmp(&a.primary).then(a.key_id.cmp(&b.key_id)));
    let status = out.iter().map(|c| c.status).max().unwrap_or(DueStatus::Ok);
    let next_due_at = out.iter().filter_map(|c| c.due_at.clone()).min();
    DueReport {
        now: ts::format(now),
        max_key_age_days: policy.max_key_age_days,
        warn_days: policy.warn_days,
        current_key_id: primary.map(str::to_owned),
        columns: out,
        keys,
        status,
        exit_code: status.exit_code(),
        next_due_at,
        audit_tip: None,
    }
}

fn column_message(
    keys: &[KeyInColumn],
    unknown: &[&str],
    due_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
    max_days: u32,
) -> String {
    if keys.is_empty() {
        return "no encrypted values and no current key in use yet".into();
    }
    if !unknown.is_empty() {
        return format!(
            "no record of when key{} {} came into use: rotate to a new key, or declare it with [[policy.key]] id = \"{}\" since = \"YYYY-MM-DD\"",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", "),
            unknown[0]
        );
    }
    let Some(due) = due_at else {
        return String::new();
    };
    let oldest = &keys[0];
    let age = oldest.age_days.unwrap_or(0);
    if now >= due {
        let late = ts::whole_days(due, now);
        format!(
            "key {} is {age} days old (limit {max_days}): rotation was due {} ({} day{} ago)",
            oldest.key_id,
            ts::format_date(due),
            late,
            if late == 1 { "" } else { "s" }
        )
    } else {
        let left = ts::whole_days(now, due);
        format!(
            "key {} is {age} days old (limit {max_days}): rotation due {} (in {} day{})",
            oldest.key_id,
            ts::format_date(due),
            left,
            if left == 1 { "" } else { "s" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn col(keys: &[(&str, u64)]) -> Vec<ColumnKeys> {
        vec![ColumnKeys {
            table: "patients".into(),
            column: "phone".into(),
            by_key: keys.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            ..Default::default()
        }]
    }

    fn dates(list: &[(&str, OffsetDateTime)]) -> KnownDates {
        let mut d = KnownDates::default();
        for (k, t) in list {
            d.add(k, *t, SinceSource::AuditTrail);
        }
        d
    }

    fn at(now: OffsetDateTime, since: OffsetDateTime) -> DueReport {
        evaluate(
            now,
            &PolicyConfig::default(),
            Some("k2"),
            &col(&[("k2", 10)]),
            &dates(&[("k2", since)]),
        )
    }

    #[test]
    fn exactly_90_days_is_overdue_one_second_before_is_due_soon() {
        let since = datetime!(2025-01-10 08:30 UTC);
        let due = since + Duration::days(90);
        assert_eq!(due, datetime!(2025-04-10 08:30 UTC));
        let r = at(due, since);
        assert_eq!(r.status, DueStatus::Overdue);
        assert_eq!(r.exit_code, 11);
        assert_eq!(
            r.columns[0].due_at.as_deref(),
            Some("2025-04-10T08:30:00.000Z")
        );
        assert_eq!(r.columns[0].keys[0].age_days, Some(90));
        let r = at(due - Duration::seconds(1), since);
        assert_eq!(r.status, DueStatus::DueSoon);
        assert_eq!(r.exit_code, 10);
        assert_eq!(r.columns[0].keys[0].age_days, Some(89));
    }

    #[test]
    fn warning_window_starts_exactly_warn_days_before() {
        let since = datetime!(2025-01-10 0:00 UTC);
        let warn_from = since + Duration::days(90 - 14);
        assert_eq!(at(warn_from, since).status, DueStatus::DueSoon);
        assert_eq!(
            at(warn_from - Duration::milliseconds(1), since).status,
            DueStatus::Ok
        );
        assert_eq!(
            at(warn_from, since).columns[0].warn_from.as_deref(),
            Some("2025-03-27T00:00:00.000Z")
        );
        assert_eq!(at(warn_from - Duration::days(30), since).exit_code, 0);
    }

    #[test]
    fn leap_years_count_the_29th_of_february() {
        // 2024 is a leap year: 90 days after 1 Feb is 1 May (not 2 May).
        let r = at(
            datetime!(2024-05-01 0:00 UTC),
            datetime!(2024-02-01 0:00 UTC),
        );
        assert_eq!(
            r.columns[0].due_at.as_deref(),
            Some("2024-05-01T00:00:00.000Z")
        );
        assert_eq!(r.status, DueStatus::Overdue);
        // 2025 is not: 90 days after 1 Feb is 2 May.
        let r = at(
            datetime!(2025-05-01 0:00 UTC),
            datetime!(2025-02-01 0:00 UTC),
        );
        assert_eq!(
            r.columns[0].due_at.as_deref(),
            Some("2025-05-02T00:00:00.000Z")
        );
        assert_eq!(r.status, DueStatus::DueSoon);
        // A key created on 29 Feb 2024 with a yearly (365-day) limit is due
        // on 28 Feb 2025: days, not calendar years.
        let p = PolicyConfig {
            max_key_age_days: 365,
            warn_days: 30,
            ..Default::default()
        };
        let r = evaluate(
            datetime!(2025-02-28 0:00 UTC),
            &p,
            Some("k2"),
            &col(&[("k2", 1)]),
            &dates(&[("k2", datetime!(2024-02-29 0:00 UTC))]),
        );
        assert_eq!(
            r.columns[0].due_at.as_deref(),
            Some("2025-02-28T00:00:00.000Z")
        );
        assert_eq!(r.status, DueStatus::Overdue);
    }

    #[test]
    fn times_with_offsets_are_compared_in_utc() {
        // since 2025-01-01T01:00+02:00 = 2024-12-31T23:00Z; due 2025-03-31T23:00Z.
        let since = ts::parse("2025-01-01T01:00:00+02:00").unwrap();
        let now_local = ts::parse("2025-04-01T00:59:59+02:00").unwrap(); // 22:59:59Z
        assert_eq!(at(now_local, since).status, DueStatus::DueSoon);
        let now_local = ts::parse("2025-04-01T01:00:00+02:00").unwrap();
        assert_eq!(at(now_local, since).status, DueStatus::Overdue);
        assert_eq!(
            at(now_local, since).columns[0].due_at.as_deref(),
            Some("2025-03-31T23:00:00.000Z")
        );
    }

    #[test]
    fn old_keys_still_holding_data_and_unknown_keys_make_a_column_overdue() {
        let now = datetime!(2025-06-01 0:00 UTC);
        let d = dates(&[
            ("k1", datetime!(2025-01-01 0:00 UTC)),
            ("k2", datetime!(2025-05-20 0:00 UTC)),
        ]);
        let r = evaluate(
            now,
            &PolicyConfig::default(),
            Some("k2"),
            &col(&[("k2", 90), ("k1", 10)]),
            &d,
        );
        assert_eq!(r.status, DueStatus::Overdue);
        assert_eq!(r.columns[0].keys[0].key_id, "k1");
        assert!(
            r.columns[0].message.contains("key k1 is 151 days old"),
            "{}",
            r.columns[0].message
        );
        // Rotated completely: only k2 remains.
        let r = evaluate(
            now,
            &PolicyConfig::default(),
            Some("k2"),
            &col(&[("k2", 100)]),
            &d,
        );
        assert_eq!(r.status, DueStatus::Ok);
        // k0 has values but nobody knows when it came into use.
        let r = evaluate(
            now,
            &PolicyConfig::default(),
            Some("k2"),
            &col(&[("k2", 99), ("k0", 1)]),
            &d,
        );
        assert_eq!(r.status, DueStatus::Overdue);
        assert!(
            r.columns[0].message.contains("[[policy.key]] id = \"k0\""),
            "{}",
            r.columns[0].message
        );
    }

    #[test]
    fn the_primary_ages_even_in_an_empty_column_and_overrides_apply() {
        let now = datetime!(2025-06-01 0:00 UTC);
        let d = dates(&[("k2", datetime!(2025-01-01 0:00 UTC))]);
        let r = evaluate(now, &PolicyConfig::default(), Some("k2"), &col(&[]), &d);
        assert_eq!(r.status, DueStatus::Overdue);
        assert_eq!(r.columns[0].keys[0].rows, 0);
        let mut p = PolicyConfig::default();
        p.columns.push(crate::policy::ColumnPolicy {
            table: "patients".into(),
            column: "phone".into(),
            max_key_age_days: Some(365),
            warn_days: None,
        });
        let r = evaluate(now, &p, Some("k2"), &col(&[("k2", 5)]), &d);
        assert_eq!(r.status, DueStatus::Ok);
        assert_eq!(r.columns[0].max_key_age_days, 365);
        assert_eq!(
            r.columns[0].due_at.as_deref(),
            Some("2026-01-01T00:00:00.000Z")
        );
        // No data and an unknown primary: nothing to say.
        let r = evaluate(
            now,
            &PolicyConfig::default(),
            Some("k9"),
            &col(&[]),
            &KnownDates::default(),
        );
        assert_eq!(r.status, DueStatus::Ok);
    }

    #[test]
    fn earliest_evidence_of_a_key_wins() {
        let mut d = KnownDates::default();
        d.add(
            "k1",
            datetime!(2025-03-01 0:00 UTC),
            SinceSource::AuditTrail,
        );
        d.add("k1", datetime!(2025-01-01 0:00 UTC), SinceSource::Config);
        d.add(
            "k1",
            datetime!(2025-02-01 0:00 UTC),
            SinceSource::AuditTrail,
        );
        assert_eq!(
            d.since("k1"),
            Some((datetime!(2025-01-01 0:00 UTC), SinceSource::Config))
        );
    }

    #[test]
    fn a_run_over_several_keyrings_dates_each_primary_and_columns_use_their_own() {
        let end = AuditEvent {
            seq: 1,
            v: 1,
            time: "2025-05-01T00:00:00.000Z".into(),
            action: AuditAction::RotateEnd,
            actor: "ops".into(),
            outcome: crate::Outcome::CompletedWithErrors,
            reason: None,
            run_id: Some("r1".into()),
            key_ids: vec!["k2,fernet-new".into(), "k1".into()],
            columns: vec![crate::event::ColumnCounts::new("patients", "phone")],
            duration_ms: Some(1000),
            details: Default::default(),
            prev_hash: String::new(),
            hash: String::new(),
        };
        let d = KnownDates::from_events(&[end]);
        let start = datetime!(2025-04-30 23:59:59 UTC);
        assert_eq!(d.since("k2").map(|s| s.0), Some(start));
        assert_eq!(d.since("fernet-new").map(|s| s.0), Some(start));
        assert_eq!(d.since("k2,fernet-new"), None);
        // A keyless column of the fernet ring: its own primary is in use,
        // not the [keys] one.
        let mut cols = col(&[]);
        cols[0].keyless = 10;
        cols[0].primary = Some("fernet-new".into());
        let now = datetime!(2025-06-01 0:00 UTC);
        let r = evaluate(now, &PolicyConfig::default(), Some("k2"), &cols, &d);
        assert_eq!(r.columns[0].keys.len(), 1, "{:?}", r.columns[0]);
        assert_eq!(r.columns[0].keys[0].key_id, "fernet-new");
        assert!(r.columns[0].keys[0].primary);
        assert_eq!(r.status, DueStatus::Ok);
        // Without a completed rotation of the column, SQL cannot tell which
        // key holds its values: overdue until the keys are declared.
        let mut other = cols.clone();
        other[0].column = "nino".into();
        let r = evaluate(now, &PolicyConfig::default(), Some("k2"), &other, &d);
        assert_eq!(r.status, DueStatus::Overdue, "{:?}", r.columns[0]);
    }
}
