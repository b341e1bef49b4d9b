//! The application side: load the keyring from the catalog, refresh it on
//! demand, and a self-test for health checks.

use crate::{Catalog, CatalogError, Policy, SelfTest};
use keyturn_db::{ConnectOptions, Database};
use keyturn_format::Keyring;
use keyturn_kms::{DekCache, KekProvider};
use std::sync::Arc;
use tokio::sync::RwLock;

/// A keyring kept in sync with a catalog. Unwrapped DEKs are cached for the
/// handle's life (one KMS call per DEK); [`refresh`](Self::refresh) re-reads
/// the catalog, so a newly added or promoted key is picked up, and only new
/// DEKs reach the KMS.
#[derive(Debug)]
pub struct AppKeyring {
    catalog: Catalog,
    cache: DekCache,
    ring: RwLock<Arc<Keyring>>,
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
        })
    }

    /// The current keyring (cheap: an `Arc`).
    pub async fn keyring(&self) -> Arc<Keyring> {
        self.ring.read().await.clone()
    }

    /// Re-reads the catalog. On error the previous keyring stays in use.
    pub async fn refresh(&self) -> Result<Arc<Keyring>, CatalogError> {
        let ring = Arc::new(self.catalog.load_keyring(&self.cache, false).await?);
        *self.ring.write().await = ring.clone();
        Ok(ring)
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

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}
