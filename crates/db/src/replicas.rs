//! Reading how far replicas are behind, for `rotation.max_replica_lag`.
//!
//! - PostgreSQL finds its streaming replicas itself: `pg_stat_replication`
//!   on the primary gives each one's replayed WAL position (needs
//!   `pg_monitor`, or the replication role, to see the positions).
//! - `rotation.replicas` names replicas explicitly: a PostgreSQL standby
//!   reports `pg_last_wal_replay_lsn()`, a MariaDB/MySQL replica
//!   `Seconds_Behind_Master` (`SHOW REPLICA STATUS` or `SHOW SLAVE STATUS`).
//!
//! A replayed position is not yet a lag in time; the engine turns positions
//! into seconds by remembering when the primary's WAL passed each position
//! ([`ReplicaWatch::primary_position`]).

use crate::{DbError, redact_url};
use sqlx::Row as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// One replica named in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSpec {
    /// `postgres://…` or `mysql://…` / `mariadb://…` of the replica.
    pub url: String,
    /// A lag that cannot be read is skipped (with a warning) instead of
    /// stopping the run.
    pub optional: bool,
}

/// What one replica says of itself.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Reading {
    /// A PostgreSQL replica has replayed the primary's WAL up to here (bytes).
    Replayed(u64),
    /// A MariaDB/MySQL replica is this far behind its source.
    Behind(Duration),
    /// The lag cannot be read: why.
    Unknown(String),
}

/// One replica's reading.
#[derive(Clone, Debug)]
pub struct ReplicaReading {
    /// The replica, for messages (`walreceiver@127.0.0.1`, a URL without
    /// its password).
    pub name: String,
    /// Whether an unreadable lag may be skipped.
    pub optional: bool,
    /// What it says.
    pub reading: Reading,
}

#[derive(Debug)]
enum Probe {
    Pg(PgPool),
    My(MySqlPool),
}

/// Connections to the primary (PostgreSQL: for its WAL position and its
/// replicas) and to the replicas named in the config.
#[derive(Debug)]
pub struct ReplicaWatch {
    primary: Option<PgPool>,
    discover: bool,
    named: Vec<(String, bool, Probe)>,
}

const TIMEOUT: Duration = Duration::from_secs(5);

async fn pg_pool(url: &str) -> Result<PgPool, DbError> {
    let opts = PgConnectOptions::from_str(url).map_err(DbError::connect(redact_url(url)))?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(TIMEOUT)
        .connect_with(opts)
        .await
        .map_err(DbError::connect(redact_url(url)))?;
    Ok(pool)
}

async fn my_pool(url: &str) -> Result<MySqlPool, DbError> {
    let url = url
        .strip_prefix("mariadb://")
        .map(|r| format!("mysql://{r}"))
        .unwrap_or_else(|| url.to_owned());
    let opts = MySqlConnectOptions::from_str(&url).map_err(DbError::connect(redact_url(&url)))?;
    MySqlPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(TIMEOUT)
        .connect_with(opts)
        .await
        .map_err(DbError::connect(redact_url(&url)))
}

fn is_pg(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl ReplicaWatch {
    /// Connects to the replicas of `replicas`, and to the primary at
    /// `primary_url` when it is PostgreSQL (to read its WAL position and,
    /// with `discover`, its streaming replicas).
    pub async fn connect(
        primary_url: &str,
        replicas: &[ReplicaSpec],
        discover: bool,
    ) -> Result<ReplicaWatch, DbError> {
        let primary = if is_pg(primary_url) {
            Some(pg_pool(primary_url).await?)
        } else {
            None
        };
        let mut named = Vec::new();
        for r in replicas {
            let name = redact_url(&r.url);
            let probe = if is_pg(&r.url) {
                pg_pool(&r.url).await.map(Probe::Pg)
            } else if r.url.starts_with("mysql://") || r.url.starts_with("mariadb://") {
                my_pool(&r.url).await.map(Probe::My)
            } else {
                return Err(DbError::Config(format!(
                    "rotation.replicas: {name}: a replica is postgres://, mysql:// or mariadb://"
                )));
            };
            match probe {
                Ok(p) => named.push((name, r.optional, p)),
                Err(_) if r.optional => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ReplicaWatch {
            primary,
            discover: discover && primary_url.starts_with("postgres"),
            named,
        })
    }

    /// The primary's current WAL position (PostgreSQL), `None` elsewhere.
    pub async fn primary_position(&self) -> Result<Option<u64>, DbError> {
        let Some(p) = &self.primary else {
            return Ok(None);
        };
        let r = sqlx::query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
            .fetch_one(p)
            .await
            .map_err(DbError::query("reading the primary's WAL position"))?;
        let v: i64 = r
            .try_get(0)
            .map_err(DbError::query("reading the primary's WAL position"))?;
        Ok(Some(v.max(0) as u64))
    }

    /// Every replica's reading: those the primary streams to (PostgreSQL,
    /// when discovering), then those named in the config.
    pub async fn read(&self) -> Result<Vec<ReplicaReading>, DbError> {
        let mut out = Vec::new();
        if self.discover
            && let Some(p) = &self.primary
        {
            let rows = sqlx::query(
                "SELECT COALESCE(NULLIF(application_name, ''), 'replica') || '@' || COALESCE(host(client_addr), 'local'), \
                 pg_wal_lsn_diff(replay_lsn, '0/0')::bigint FROM pg_stat_replication ORDER BY 1",
            )
            .fetch_all(p)
            .await
            .map_err(DbError::query("reading pg_stat_replication"))?;
            for r in rows {
                let name: String = r
                    .try_get(0)
                    .map_err(DbError::query("reading pg_stat_replication"))?;
                let pos: Option<i64> = r
                    .try_get(1)
                    .map_err(DbError::query("reading pg_stat_replication"))?;
                out.push(ReplicaReading {
                    name,
                    optional: false,
                    reading: match pos {
                        Some(p) => Reading::Replayed(p.max(0) as u64),
                        None => Reading::Unknown(
                            "pg_stat_replication shows no replay position (grant pg_monitor to keyturn's login, or the replica has not replayed anything yet)".into(),
                        ),
                    },
                });
            }
        }
        for (name, optional, probe) in &self.named {
            let reading = match probe {
                Probe::Pg(p) => pg_replayed(p).await,
                Probe::My(p) => my_behind(p).await,
            };
            out.push(ReplicaReading {
                name: name.clone(),
                optional: *optional,
                reading,
            });
        }
        Ok(out)
    }

    /// Closes the connections.
    pub async fn close(&self) {
        if let Some(p) = &self.primary {
            p.close().await;
        }
        for (_, _, p) in &self.named {
            match p {
                Probe::Pg(p) => p.close().await,
                Probe::My(p) => p.close().await,
            }
        }
    }
}

async fn pg_replayed(p: &PgPool) -> Reading {
    let r = sqlx::query(
        "SELECT pg_is_in_recovery(), pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint",
    )
    .fetch_one(p)
    .await;
    match r {
        Err(e) => Reading::Unknown(format!("cannot read it: {}", crate::driver::sqlx_err(e))),
        Ok(r) => match (r.try_get::<bool, _>(0), r.try_get::<Option<i64>, _>(1)) {
            (Ok(false), _) => {
                Reading::Unknown("it is not a standby (pg_is_in_recovery() is false)".into())
            }
            (Ok(true), Ok(Some(p))) => Reading::Replayed(p.max(0) as u64),
            _ => Reading::Unknown("pg_last_wal_replay_lsn() is NULL".into()),
        },
    }
}

async fn my_behind(p: &MySqlPool) -> Reading {
    let mut rows = sqlx::query("SHOW REPLICA STATUS").fetch_all(p).await;
    if rows.is_err() {
        rows = sqlx::query("SHOW SLAVE STATUS").fetch_all(p).await;
    }
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            return Reading::Unknown(format!(
                "cannot read it: {} (grant REPLICATION CLIENT or SLAVE MONITOR)",
                crate::driver::sqlx_err(e)
            ));
        }
    };
    let Some(r) = rows.first() else {
        return Reading::Unknown("it is not a replica (SHOW REPLICA STATUS is empty)".into());
    };
    let secs = ["Seconds_Behind_Master", "Seconds_Behind_Source"]
        .iter()
        .find_map(|c| {
            r.try_get::<Option<i64>, _>(*c).ok().or_else(|| {
                r.try_get::<Option<u64>, _>(*c)
                    .ok()
                    .map(|v| v.map(|x| x as i64))
            })
        });
    match secs {
        Some(Some(s)) => Reading::Behind(Duration::from_secs(s.max(0) as u64)),
        Some(None) => Reading::Unknown(
            "Seconds_Behind_Master is NULL: the replica's SQL or I/O thread is not running".into(),
        ),
        None => Reading::Unknown("SHOW REPLICA STATUS has no Seconds_Behind_Master".into()),
    }
}
