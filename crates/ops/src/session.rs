//! A session: the config, one database connection pool and the plan (each
//! column with its keyring), opened once per command and closed once.

use crate::{Config, OpsError};
use keyturn_db::{ConnectOptions, Database};
use keyturn_engine::Plan;
use keyturn_format::Keyring;
use keyturn_kms::DekCache;
use std::sync::Arc;

/// Which configured columns a command works on (none: all).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only this table.
    pub table: Option<String>,
    /// Only this column (with `table`).
    pub column: Option<String>,
}

/// Config, database and plan, with every selected column's keyring loaded.
#[derive(Debug)]
#[non_exhaustive]
pub struct Session {
    /// The config the session was opened with.
    pub cfg: Config,
    /// The database.
    pub db: Arc<dyn Database>,
    /// The selected columns, each with its keyring.
    pub plan: Plan,
}

impl Session {
    /// Loads the keys (from their sources, or from the key catalog when the
    /// config has one), connects with `connections` connections at most,
    /// and resolves the plan. Keys from sources are checked before
    /// connecting: a bad key never costs a connection.
    pub async fn open(cfg: Config, sel: &Selection, connections: u32) -> Result<Session, OpsError> {
        let (table, column) = (sel.table.as_deref(), sel.column.as_deref());
        let rings = if cfg.catalog.is_none() {
            Some(crate::load_rings(&cfg, table, column, None)?)
        } else {
            None
        };
        let db = connect(&cfg, connections).await?;
        let plan = async {
            let rings = match rings {
                Some(r) => r,
                None => {
                    let ring = catalog_ring(&cfg, &db).await?;
                    crate::load_rings(&cfg, table, column, ring)?
                }
            };
            let plan = keyturn_engine::plan::resolve(
                db.as_ref(),
                &cfg.targets,
                Some(&rings),
                table,
                column,
            )
            .await?;
            Ok::<_, OpsError>(plan)
        }
        .await;
        match plan {
            Ok(plan) => Ok(Session { cfg, db, plan }),
            Err(e) => {
                // Close the connections properly (no "aborted connection"
                // in the server's log).
                db.close().await;
                Err(e)
            }
        }
    }

    /// Closes the database connections.
    pub async fn close(self) {
        self.db.close().await;
    }
}

/// Config and database without keys: the audit trail, `due`, `report` and
/// the bad-row list never need key material (a cron job or an auditor
/// should not hold keys).
#[derive(Debug)]
#[non_exhaustive]
pub struct ReadSession {
    /// The config.
    pub cfg: Config,
    /// The database.
    pub db: Arc<dyn Database>,
    /// The database URL without its password, for messages and reports.
    pub label: String,
}

impl ReadSession {
    /// Connects (two connections at most).
    pub async fn open(cfg: Config) -> Result<ReadSession, OpsError> {
        let db = connect(&cfg, 2).await?;
        let label = keyturn_db::redact_url(&cfg.database.url);
        Ok(ReadSession { cfg, db, label })
    }

    /// The selected columns, without keyrings.
    pub async fn plan(&self, sel: &Selection) -> Result<Plan, OpsError> {
        Ok(keyturn_engine::plan::resolve(
            self.db.as_ref(),
            &self.cfg.targets,
            None,
            sel.table.as_deref(),
            sel.column.as_deref(),
        )
        .await?)
    }

    /// Closes the database connections.
    pub async fn close(self) {
        self.db.close().await;
    }
}

/// Connects to the config's database.
pub async fn connect(cfg: &Config, connections: u32) -> Result<Arc<dyn Database>, OpsError> {
    Ok(keyturn_db::connect(
        &cfg.database.url,
        &ConnectOptions {
            max_connections: connections,
            create_if_missing: false,
            lock_timeout: cfg.rotation.lock_timeout(),
        },
    )
    .await?)
}

/// The `[keys]` keyring from the key catalog (`None` without a catalog).
pub async fn catalog_ring(
    cfg: &Config,
    db: &Arc<dyn Database>,
) -> Result<Option<Arc<Keyring>>, OpsError> {
    let Some(cc) = &cfg.catalog else {
        return Ok(None);
    };
    let kek = cc.kek.provider().await?;
    let cat = keyturn_catalog::Catalog::open(db.clone(), &cc.name, cc.policy()).await?;
    let ring = cat
        .load_keyring(&DekCache::new(kek), cfg.keys.allow_retired)
        .await
        .map_err(|e| {
            OpsError::step(
                format!("loading the keyring from key catalog {:?}", cc.name),
                e,
            )
        })?;
    Ok(Some(Arc::new(ring)))
}

/// Ids of the catalog keys flagged compromised (none without a catalog).
pub async fn compromised_ids(
    cfg: &Config,
    db: &Arc<dyn Database>,
) -> Result<Vec<String>, OpsError> {
    let Some(cc) = &cfg.catalog else {
        return Ok(Vec::new());
    };
    let cat = keyturn_catalog::Catalog::open(db.clone(), &cc.name, cc.policy()).await?;
    Ok(cat
        .list()
        .await?
        .into_iter()
        .filter(|e| e.compromised)
        .map(|e| e.id)
        .collect())
}

/// Connects to `url`, creating a SQLite file that does not exist yet (the
/// demo's database).
pub async fn connect_creating(url: &str) -> Result<Arc<dyn Database>, OpsError> {
    Ok(keyturn_db::connect(
        url,
        &ConnectOptions {
            max_connections: 2,
            create_if_missing: true,
            lock_timeout: None,
        },
    )
    .await?)
}
