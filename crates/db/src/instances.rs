//! Application instances that load a catalog's keyring, `keyturn_instances`
//! (opt-in, docs/CATALOG.md): one row per running process that called
//! `AppKeyring::track_instance`, with the key ids its keyring holds and when
//! it was last seen. `keyturn keys promote` reads them to refuse promoting a
//! key that a live instance does not hold yet.
//!
//! Both `first_seen` and `last_seen` are written from the **database
//! server's** clock, and [`InstanceSnapshot::now`] is read from the same
//! clock, so the clocks of application hosts and of the operator's machine
//! never enter the live/stale decision. Times are RFC 3339 UTC text with
//! whole seconds.

use crate::sql::Dialect;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future (the shape of the instance methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an instance reports on each heartbeat. Holds key ids, never keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceHeartbeat {
    /// The catalog whose keyring the instance loaded.
    pub catalog: String,
    /// Random per `AppKeyring` handle (a process restart is a new instance).
    pub instance_id: String,
    /// The instance's host name.
    pub host: String,
    /// The instance's process id.
    pub pid: i64,
    /// Chosen by the application (`web`, `worker-3`, …).
    pub label: String,
    /// Key ids the instance's keyring can decrypt with (primary, pending and
    /// decrypt-only keys), sorted.
    pub key_ids: Vec<String>,
    /// The key id the instance encrypts with.
    pub primary_key_id: String,
    /// A fingerprint over the keyring's ids, states and key fingerprints
    /// (reveals nothing about the keys): equal fingerprints, equal keyrings.
    pub keyring_fingerprint: String,
}

/// One stored instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceRow {
    /// What the instance reported on its latest heartbeat.
    #[serde(flatten)]
    pub heartbeat: InstanceHeartbeat,
    /// The first heartbeat (database clock).
    pub first_seen: String,
    /// The latest heartbeat (database clock).
    pub last_seen: String,
}

/// Every instance of one catalog, and the database's current time to judge
/// them by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceSnapshot {
    /// The database server's current time (RFC 3339 UTC).
    pub now: String,
    /// The catalog's instances, most recently seen first.
    pub instances: Vec<InstanceRow>,
}

pub(crate) const COLUMNS: &str = "catalog_name, instance_id, host, pid, label, key_ids, primary_key_id, keyring_fingerprint, first_seen, last_seen";

pub(crate) fn create_table(d: Dialect) -> String {
    let text = d.long_text();
    format!(
        "CREATE TABLE IF NOT EXISTS keyturn_instances (
            catalog_name VARCHAR(128) NOT NULL,
            instance_id VARCHAR(64) NOT NULL,
            host VARCHAR(255) NOT NULL,
            pid BIGINT NOT NULL,
            label VARCHAR(255) NOT NULL,
            key_ids {text} NOT NULL,
            primary_key_id VARCHAR(32) NOT NULL,
            keyring_fingerprint VARCHAR(64) NOT NULL,
            first_seen VARCHAR(40) NOT NULL,
            last_seen VARCHAR(40) NOT NULL,
            PRIMARY KEY (catalog_name, instance_id))"
    )
}

/// The server's current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn now_expr(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
        Dialect::MySql => "DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%dT%H:%i:%sZ')",
        Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
    }
}

/// Inserts the instance, or updates everything but `first_seen`.
pub(crate) fn upsert_sql(d: Dialect) -> String {
    let phs: Vec<String> = (1..=8).map(|i| d.ph(i)).collect();
    let now = now_expr(d);
    let updated = [
        "host",
        "pid",
        "label",
        "key_ids",
        "primary_key_id",
        "keyring_fingerprint",
        "last_seen",
    ];
    let head = format!(
        "INSERT INTO keyturn_instances ({COLUMNS}) VALUES ({}, {now}, {now})",
        phs.join(", ")
    );
    match d {
        Dialect::MySql => format!(
            "{head} ON DUPLICATE KEY UPDATE {}",
            updated
                .iter()
                .map(|c| format!("{c} = VALUES({c})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => format!(
            "{head} ON CONFLICT (catalog_name, instance_id) DO UPDATE SET {}",
            updated
                .iter()
                .map(|c| format!("{c} = excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub(crate) fn select_sql(d: Dialect) -> String {
    format!(
        "SELECT {COLUMNS} FROM keyturn_instances WHERE catalog_name = {} ORDER BY last_seen DESC, instance_id",
        d.ph(1)
    )
}

pub(crate) fn now_sql(d: Dialect) -> String {
    format!("SELECT {}", now_expr(d))
}

/// Deletes one instance's row; with `if_last_seen`, only while its
/// heartbeat is still the one that was read (a heartbeat that lands in
/// between keeps the row).
pub(crate) fn delete_sql(d: Dialect, if_last_seen: bool) -> String {
    let mut sql = format!(
        "DELETE FROM keyturn_instances WHERE catalog_name = {} AND instance_id = {}",
        d.ph(1),
        d.ph(2)
    );
    if if_last_seen {
        sql.push_str(&format!(" AND last_seen = {}", d.ph(3)));
    }
    sql
}

/// Key ids as stored: a JSON array.
pub(crate) fn encode_key_ids(ids: &[String]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn decode_key_ids(s: &str) -> Result<Vec<String>, crate::DbError> {
    serde_json::from_str(s).map_err(|e| {
        crate::DbError::Invalid(format!(
            "keyturn_instances.key_ids is not a JSON array of key ids ({e})"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_keep_first_seen() {
        for d in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
            let s = upsert_sql(d);
            assert!(s.contains("last_seen"), "{s}");
            let tail = s.split("UPDATE").nth(1).unwrap();
            assert!(!tail.contains("first_seen"), "{s}");
        }
        assert!(upsert_sql(Dialect::Postgres).contains("$8"));
        assert_eq!(
            decode_key_ids(&encode_key_ids(&["a".into(), "b".into()])).unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(decode_key_ids("a,b").is_err());
    }
}
