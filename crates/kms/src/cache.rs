//! Unwrapped DEKs kept in memory for one run.

use crate::KekProvider;
use crate::blob::WrappedDek;
use crate::context::WrapContext;
use crate::error::KmsError;
use keyturn_format::SecretKey;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

type Slot = Arc<OnceCell<Arc<SecretKey>>>;

/// Caches unwrapped DEKs so that a run makes one KMS call per DEK, however
/// many rows use it.
///
/// Entries are keyed by the exact wrapped blob and context, so a blob that
/// differs in any byte is unwrapped (and checked) on its own. Concurrent
/// requests for the same DEK share one KMS call; failures are not cached.
/// The keys are [`SecretKey`]s, zeroized when the last `Arc` to them drops:
/// when the cache is cleared or dropped and no caller still holds one.
pub struct DekCache {
    provider: Arc<dyn KekProvider>,
    slots: Mutex<HashMap<(WrapContext, WrappedDek), Slot>>,
    kms_calls: AtomicU64,
}

impl DekCache {
    /// An empty cache that unwraps DEKs with `provider` on first use.
    pub fn new(provider: Arc<dyn KekProvider>) -> DekCache {
        DekCache {
            provider,
            slots: Mutex::new(HashMap::new()),
            kms_calls: AtomicU64::new(0),
        }
    }

    /// The provider behind the cache.
    pub fn provider(&self) -> &Arc<dyn KekProvider> {
        &self.provider
    }

    /// The DEK of `wrapped`, unwrapped by the provider on first use.
    pub async fn get(
        &self,
        wrapped: &WrappedDek,
        ctx: &WrapContext,
    ) -> Result<Arc<SecretKey>, KmsError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .entry((ctx.clone(), wrapped.clone()))
                .or_default()
                .clone()
        };
        let key = slot
            .get_or_try_init(|| async {
                self.kms_calls.fetch_add(1, Ordering::Relaxed);
                self.provider.unwrap(wrapped, ctx).await.map(Arc::new)
            })
            .await?;
        Ok(Arc::clone(key))
    }

    /// How many unwrap calls reached the provider (successful or not).
    pub fn kms_calls(&self) -> u64 {
        self.kms_calls.load(Ordering::Relaxed)
    }

    /// How many DEKs are cached.
    pub fn len(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.values().filter(|s| s.initialized()).count()
    }

    /// Whether no DEK is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every cached DEK (zeroized once no caller holds it).
    pub fn clear(&self) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl fmt::Debug for DekCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DekCache")
            .field("provider", &self.provider)
            .field("cached", &self.len())
            .field("kms_calls", &self.kms_calls())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalKek;
    use keyturn_format::{Algorithm, KeyId};

    #[test]
    fn one_call_per_dek() {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async {
                let (kek, _) = LocalKek::generate(KeyId::new("dev").unwrap()).unwrap();
                let kek: Arc<dyn KekProvider> = Arc::new(kek);
                let c1 = WrapContext::new("cat", KeyId::new("k1").unwrap()).unwrap();
                let c2 = WrapContext::new("cat", KeyId::new("k2").unwrap()).unwrap();
                let d1 = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
                let d2 = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
                let w1 = kek.wrap(&d1, &c1).await.unwrap();
                let w2 = kek.wrap(&d2, &c2).await.unwrap();
                let cache = DekCache::new(kek);
                for _ in 0..100 {
                    let a = cache.get(&w1, &c1).await.unwrap();
                    let b = cache.get(&w2, &c2).await.unwrap();
                    assert_eq!(a.expose_bytes(), d1.expose_bytes());
                    assert_eq!(b.expose_bytes(), d2.expose_bytes());
                }
                assert_eq!(cache.kms_calls(), 2);
                assert_eq!(cache.len(), 2);
                // A failure is reported each time and not cached.
                assert!(cache.get(&w1, &c2).await.is_err());
                assert!(cache.get(&w1, &c2).await.is_err());
                assert_eq!(cache.kms_calls(), 4);
                assert_eq!(cache.len(), 2);
                assert!(!format!("{cache:?}").contains(&hex::encode(d1.expose_bytes())));
                cache.clear();
                assert!(cache.is_empty());
            })
    }
}
