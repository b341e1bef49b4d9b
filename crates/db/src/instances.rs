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
//!
//! The trait methods are written as functions returning boxed futures (what
//! `async_trait` would generate) so that the three backends get them from one
//! macro, [`instance_methods!`], placed inside their `impl Database`.

use crate::sql::Dialect;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future (the shape of the instance methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an instance reports on each heartbeat. Holds key ids, never keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceHeartbeat {
    pub catalog: String,
    /// Random per `AppKeyring` handle (a process restart is a new instance).
    pub instance_id: String,
    pub host: String,
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

/// The instance methods of [`crate::Database`], for one backend: expands
/// inside its `impl Database` (where `self.pool` and `Self::DIALECT` are
/// visible).
macro_rules! instance_methods {
    () => {
        fn ensure_instances(&self) -> $crate::instances::BoxFuture<'_, Result<(), DbError>> {
            Box::pin(async move {
                create_if_missing!(
                    &self.pool,
                    $crate::instances::create_table(Self::DIALECT),
                    "creating the instance table keyturn_instances"
                )
            })
        }

        fn record_instance<'a>(
            &'a self,
            hb: &'a $crate::InstanceHeartbeat,
        ) -> $crate::instances::BoxFuture<'a, Result<(), DbError>> {
            Box::pin(async move {
                let sql = $crate::instances::upsert_sql(Self::DIALECT);
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(hb.catalog.clone())
                    .bind(hb.instance_id.clone())
                    .bind(hb.host.clone())
                    .bind(hb.pid)
                    .bind(hb.label.clone())
                    .bind($crate::instances::encode_key_ids(&hb.key_ids))
                    .bind(hb.primary_key_id.clone())
                    .bind(hb.keyring_fingerprint.clone())
                    .execute(&self.pool)
                    .await
                    .map_err(DbError::query(format!(
                        "recording the heartbeat of instance {:?} in keyturn_instances",
                        hb.label
                    )))?;
                Ok(())
            })
        }

        fn load_instances<'a>(
            &'a self,
            catalog: &'a str,
        ) -> $crate::instances::BoxFuture<'a, Result<$crate::InstanceSnapshot, DbError>> {
            Box::pin(async move {
                use sqlx::Row as _;
                let what = || format!("reading the instances of key catalog {catalog:?}");
                let now_row = sqlx::query(sqlx::AssertSqlSafe($crate::instances::now_sql(
                    Self::DIALECT,
                )))
                .fetch_one(&self.pool)
                .await
                .map_err(DbError::query("reading the database's clock"))?;
                let now: String = now_row
                    .try_get(0)
                    .map_err(DbError::query("reading the database's clock"))?;
                let mut instances = Vec::new();
                if self.describe_table("keyturn_instances").await?.is_none() {
                    return Ok($crate::InstanceSnapshot { now, instances });
                }
                let rows = sqlx::query(sqlx::AssertSqlSafe($crate::instances::select_sql(
                    Self::DIALECT,
                )))
                .bind(catalog.to_owned())
                .fetch_all(&self.pool)
                .await
                .map_err(DbError::query(what()))?;
                for r in rows {
                    let key_ids: String = r.try_get(5).map_err(DbError::query(what()))?;
                    instances.push($crate::InstanceRow {
                        heartbeat: $crate::InstanceHeartbeat {
                            catalog: r.try_get(0).map_err(DbError::query(what()))?,
                            instance_id: r.try_get(1).map_err(DbError::query(what()))?,
                            host: r.try_get(2).map_err(DbError::query(what()))?,
                            pid: r.try_get(3).map_err(DbError::query(what()))?,
                            label: r.try_get(4).map_err(DbError::query(what()))?,
                            key_ids: $crate::instances::decode_key_ids(&key_ids)?,
                            primary_key_id: r.try_get(6).map_err(DbError::query(what()))?,
                            keyring_fingerprint: r.try_get(7).map_err(DbError::query(what()))?,
                        },
                        first_seen: r.try_get(8).map_err(DbError::query(what()))?,
                        last_seen: r.try_get(9).map_err(DbError::query(what()))?,
                    });
                }
                Ok($crate::InstanceSnapshot { now, instances })
            })
        }

        fn remove_instance<'a>(
            &'a self,
            catalog: &'a str,
            instance_id: &'a str,
            if_last_seen: Option<&'a str>,
        ) -> $crate::instances::BoxFuture<'a, Result<bool, DbError>> {
            Box::pin(async move {
                if self.describe_table("keyturn_instances").await?.is_none() {
                    return Ok(false);
                }
                let mut q = sqlx::query(sqlx::AssertSqlSafe($crate::instances::delete_sql(
                    Self::DIALECT,
                    if_last_seen.is_some(),
                )))
                .bind(catalog.to_owned())
                .bind(instance_id.to_owned());
                if let Some(seen) = if_last_seen {
                    q = q.bind(seen.to_owned());
                }
                let done = q.execute(&self.pool).await.map_err(DbError::query(
                    "removing an instance from keyturn_instances",
                ))?;
                Ok(done.rows_affected() > 0)
            })
        }
    };
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
