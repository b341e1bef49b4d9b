//! The application side: load the keyring from the catalog, refresh it on
//! demand or on an interval, report which keys this instance holds (opt-in),
//! and a self-test for health checks.

use crate::instances;
use crate::{Catalog, CatalogError, Policy, SelfTest};
use keyturn_db::{ConnectOptions, Database};
use keyturn_format::Keyring;
use keyturn_kms::{DekCache, KekProvider};
use serde::Serialize;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::RwLock;

/// Why the last refresh (or heartbeat) failed. Holds no key material.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefreshError {
    /// When it failed (RFC 3339 UTC, this host's clock).
    pub at: String,
    /// `heartbeat` when only the instance heartbeat failed; otherwise the
    /// error's kind (`unreachable`, `wrong_kek`, `database`, …).
    pub kind: String,
    /// The error's message (never key material).
    pub message: String,
}

/// The identity under which this handle reports its keyring.
#[derive(Clone, Debug)]
struct Tracking {
    instance_id: String,
    label: String,
    host: String,
}

/// A keyring kept in sync with a catalog. Unwrapped DEKs are cached for the
/// handle's life (one KMS call per DEK); [`refresh`](Self::refresh) re-reads
/// the catalog, so a newly added or promoted key is picked up, and only new
/// DEKs reach the KMS. [`spawn_refresh`](Self::spawn_refresh) does that on
/// an interval in the background.
///
/// With [`track_instance`](Self::track_instance) the handle also records, in
/// `keyturn_instances`, which key ids it holds: on that call, after every
/// refresh (successful or not) and so on every interval. `keyturn keys
/// promote` refuses a key that a live tracked instance does not hold.
#[derive(Debug)]
pub struct AppKeyring {
    catalog: Catalog,
    cache: DekCache,
    ring: RwLock<Arc<Keyring>>,
    tracking: Mutex<Option<Tracking>>,
    last_error: Mutex<Option<RefreshError>>,
}

impl AppKeyring {
    /// Connects to the database at `url` and loads catalog `name`.
    pub async fn connect(
        url: &str,
        name: &str,
        kek: Arc<dyn KekProvider>,
    ) -> Result<AppKeyring, CatalogError> {
        let db = keyturn_db::connect(url, &ConnectOptions::default()).await?;
        AppKeyring::open(db, name, kek).await
    }

    /// Loads catalog `name` from an open database.
    pub async fn open(
        db: Arc<dyn Database>,
        name: &str,
        kek: Arc<dyn KekProvider>,
    ) -> Result<AppKeyring, CatalogError> {
        let catalog = Catalog::open(db, name, Policy::default()).await?;
        let cache = DekCache::new(kek);
        let ring = Arc::new(catalog.load_keyring(&cache, false).await?);
        Ok(AppKeyring {
            catalog,
            cache,
            ring: RwLock::new(ring),
            tracking: Mutex::new(None),
            last_error: Mutex::new(None),
        })
    }

    /// The current keyring (cheap: an `Arc`).
    pub async fn keyring(&self) -> Arc<Keyring> {
        self.ring.read().await.clone()
    }

    /// Re-reads the catalog. On error the previous keyring stays in use and
    /// the error is also kept for [`last_refresh_error`](Self::last_refresh_error)
    /// and logged (`tracing` warn). A tracked instance then records a
    /// heartbeat with whatever keyring it holds: a heartbeat failure is
    /// logged and kept as the last error (kind `heartbeat`) but does not
    /// fail the refresh.
    pub async fn refresh(&self) -> Result<Arc<Keyring>, CatalogError> {
        let loaded = self.catalog.load_keyring(&self.cache, false).await;
        let result = match loaded {
            Ok(ring) => {
                let ring = Arc::new(ring);
                *self.ring.write().await = ring.clone();
                self.set_error(None);
                Ok(ring)
            }
            Err(e) => {
                tracing::warn!(
                    catalog = self.catalog.name(),
                    kind = e.kind(),
                    "keyturn keyring refresh failed, keeping the previous keyring: {e}"
                );
                self.set_error(Some(RefreshError {
                    at: keyturn_db::now_rfc3339(),
                    kind: e.kind().to_owned(),
                    message: e.to_string(),
                }));
                Err(e)
            }
        };
        if let Err(e) = self.heartbeat().await {
            tracing::warn!(
                catalog = self.catalog.name(),
                "keyturn instance heartbeat failed: {e}"
            );
            // A failed load is the more useful last error; keep it.
            if result.is_ok() {
                self.set_error(Some(RefreshError {
                    at: keyturn_db::now_rfc3339(),
                    kind: "heartbeat".into(),
                    message: e.to_string(),
                }));
            }
        }
        result
    }

    fn set_error(&self, e: Option<RefreshError>) {
        // A poisoned lock only means another thread panicked while holding
        // it; the value (an Option) is still consistent.
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// The error of the last refresh or heartbeat, `None` after a
    /// successful refresh.
    pub fn last_refresh_error(&self) -> Option<RefreshError> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Opt-in instance tracking: records this handle in `keyturn_instances`
    /// under `label` (the application's name for itself, e.g. `web` or
    /// `worker-3`) with its host, pid and the key ids it holds, and from
    /// now on after every refresh. Returns the instance id. Calling it again
    /// changes the label and keeps the id.
    ///
    /// Keep the heartbeat more frequent than the catalog's
    /// `instance_ttl_seconds` (default 300) with [`spawn_refresh`](Self::spawn_refresh),
    /// or the instance is considered gone and `promote` ignores it. Call
    /// [`untrack`](Self::untrack) on a clean shutdown.
    pub async fn track_instance(&self, label: &str) -> Result<String, CatalogError> {
        instances::check_label(label)?;
        self.catalog.db().ensure_instances().await?;
        let t = {
            let mut guard = self.tracking.lock().unwrap_or_else(|p| p.into_inner());
            let t = match guard.take() {
                Some(mut t) => {
                    t.label = label.to_owned();
                    t
                }
                None => {
                    let host = instances::host_name();
                    Tracking {
                        instance_id: instances::new_instance_id(&host),
                        label: label.to_owned(),
                        host,
                    }
                }
            };
            *guard = Some(t.clone());
            t
        };
        self.heartbeat().await?;
        Ok(t.instance_id)
    }

    /// Records a heartbeat now with the current keyring (nothing when the
    /// instance is not tracked).
    pub async fn heartbeat(&self) -> Result<(), CatalogError> {
        let Some(t) = self.tracking() else {
            return Ok(());
        };
        let ring = self.keyring().await;
        let hb = instances::heartbeat(
            self.catalog.name(),
            &t.instance_id,
            &t.label,
            &t.host,
            &ring,
        );
        self.catalog.db().record_instance(&hb).await?;
        Ok(())
    }

    fn tracking(&self) -> Option<Tracking> {
        self.tracking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// This handle's instance id, once tracked.
    pub fn instance_id(&self) -> Option<String> {
        self.tracking().map(|t| t.instance_id)
    }

    /// Stops tracking and deletes this instance's row (clean shutdown).
    /// Returns whether there was a row.
    pub async fn untrack(&self) -> Result<bool, CatalogError> {
        let t = self
            .tracking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match t {
            None => Ok(false),
            Some(t) => Ok(self
                .catalog
                .db()
                .remove_instance(self.catalog.name(), &t.instance_id, None)
                .await?),
        }
    }

    /// Refreshes the keyring every `every` in a background task on the
    /// current Tokio runtime, so that a newly added or promoted key reaches
    /// this process without a restart (and a tracked instance keeps its
    /// heartbeat). Errors keep the previous keyring and are reported as in
    /// [`refresh`](Self::refresh). The task holds only a weak reference: it
    /// ends when the returned handle is dropped or stopped, or when the last
    /// `Arc<AppKeyring>` is gone.
    ///
    /// Fails outside a Tokio runtime, or for an interval under 10 ms.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) -> Result<RefreshHandle, CatalogError> {
        if every < Duration::from_millis(10) {
            return Err(CatalogError::Config(format!(
                "refresh interval {every:?} is too short: use at least 10 ms (a minute is typical)"
            )));
        }
        let rt = tokio::runtime::Handle::try_current().map_err(|_| {
            CatalogError::Config("spawn_refresh must be called from within a Tokio runtime".into())
        })?;
        let weak: Weak<AppKeyring> = Arc::downgrade(self);
        let task = rt.spawn(async move {
            let start = tokio::time::Instant::now() + every;
            let mut tick = tokio::time::interval_at(start, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(app) = weak.upgrade() else {
                    break;
                };
                // Errors are logged and kept by refresh itself.
                let _ = app.refresh().await;
            }
        });
        Ok(RefreshHandle { task: Some(task) })
    }

    /// Encrypts and decrypts a probe with the primary (re-reading the
    /// catalog): for health checks.
    pub async fn self_test(&self) -> SelfTest {
        self.catalog.self_test(&self.cache).await
    }

    /// How many unwrap calls reached the KMS so far.
    pub fn kms_calls(&self) -> u64 {
        self.cache.kms_calls()
    }

    /// The catalog this handle loads its keyring from.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}

/// The background refresh of [`AppKeyring::spawn_refresh`]; stops when
/// dropped.
#[derive(Debug)]
pub struct RefreshHandle {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RefreshHandle {
    /// Stops the refreshes (a refresh in flight is cancelled; the keyring
    /// keeps its last value).
    pub fn stop(mut self) {
        self.abort();
    }

    /// Whether the task still runs.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    fn abort(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for RefreshHandle {
    fn drop(&mut self) {
        self.abort();
    }
}
