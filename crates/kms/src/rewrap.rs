//! Moving every DEK of a catalog to a new KEK, all-or-nothing.

use crate::KekProvider;
use crate::blob::WrappedDek;
use crate::context::WrapContext;
use crate::error::KmsError;

/// Rewraps every DEK from `old` to `new` (another key, another version, or
/// another provider altogether): unwraps each under `old` and wraps it under
/// `new`, in order. Returns the new blobs in the order of `items`, or the
/// first error and no output at all; the caller then writes all of them in
/// one transaction. No data row is touched: the DEKs themselves don't change.
///
/// The DEKs pass through this process (as they do in every run). Each DEK is
/// dropped, and zeroized, as soon as it has been wrapped again.
pub async fn rewrap_all(
    old: &dyn KekProvider,
    new: &dyn KekProvider,
    items: &[(WrappedDek, WrapContext)],
) -> Result<Vec<WrappedDek>, KmsError> {
    let mut out = Vec::with_capacity(items.len());
    for (wrapped, ctx) in items {
        let dek = old.unwrap(wrapped, ctx).await?;
        out.push(new.wrap(&dek, ctx).await?);
    }
    Ok(out)
}

/// Rewraps every DEK under `provider`'s current KEK using the KMS's own
/// re-encryption where it has one (AWS `ReEncrypt`, transit `rewrap` for
/// embedded-context blobs), so the DEKs need not leave the KMS. Same
/// all-or-nothing contract as [`rewrap_all`].
pub async fn rewrap_all_in_kms(
    provider: &dyn KekProvider,
    items: &[(WrappedDek, WrapContext)],
) -> Result<Vec<WrappedDek>, KmsError> {
    let mut out = Vec::with_capacity(items.len());
    for (wrapped, ctx) in items {
        out.push(provider.rewrap(wrapped, ctx).await?);
    }
    Ok(out)
}

/// How one DEK reached its new KEK in [`rotate_blobs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RewrapPath {
    /// The KMS re-encrypted it (AWS `ReEncrypt`, transit `rewrap`): the DEK
    /// never left the KMS.
    InKms,
    /// Unwrapped under the old KEK and wrapped under the new one in this
    /// process (another provider or KMS, a local KEK, or a transit blob bound
    /// as associated data, which transit's `rewrap` cannot carry).
    UnwrapWrap,
}

impl RewrapPath {
    /// The path's name in reports (`in-kms` or `unwrap-wrap`).
    pub fn name(self) -> &'static str {
        match self {
            RewrapPath::InKms => "in-kms",
            RewrapPath::UnwrapWrap => "unwrap-wrap",
        }
    }
}

/// Whether `old` and `new` are the same KMS (same provider kind and
/// [`rewrap domain`](KekProvider::rewrap_domain)), so that it can move the
/// DEKs itself.
pub fn same_kms(old: &dyn KekProvider, new: &dyn KekProvider) -> bool {
    old.describe().provider == new.describe().provider
        && old.rewrap_domain().is_some()
        && old.rewrap_domain() == new.rewrap_domain()
}

/// KEK rotation, all-or-nothing: moves every DEK from `old` to `new` inside
/// the KMS where it can ([`same_kms`] and [`KekProvider::rewraps_in_kms`]:
/// AWS `ReEncrypt` from the blob's key to `new`'s, transit `rewrap` to the
/// latest version of the same key), otherwise unwraps under `old` and wraps
/// under `new` here. Every blob is first checked to belong to `old`
/// (`wrong_kek` otherwise). Returns the new blobs in the order of `items`,
/// each with its path, or the first error and nothing; the caller writes
/// them in one transaction. The KMS operations are stateless: a failure
/// half-way leaves nothing to undo.
pub async fn rotate_blobs(
    old: &dyn KekProvider,
    new: &dyn KekProvider,
    items: &[(WrappedDek, WrapContext)],
) -> Result<Vec<(WrappedDek, RewrapPath)>, KmsError> {
    for (wrapped, _) in items {
        old.check_owner(wrapped)?;
    }
    let native = same_kms(old, new);
    let mut out = Vec::with_capacity(items.len());
    for (wrapped, ctx) in items {
        if native && new.rewraps_in_kms(wrapped) {
            out.push((new.rewrap(wrapped, ctx).await?, RewrapPath::InKms));
        } else {
            let dek = old.unwrap(wrapped, ctx).await?;
            out.push((new.wrap(&dek, ctx).await?, RewrapPath::UnwrapWrap));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalKek;
    use keyturn_format::{Algorithm, KeyId, SecretKey};

    #[test]
    fn all_or_nothing() {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async {
                let (old, _) = LocalKek::generate(KeyId::new("old").unwrap()).unwrap();
                let (new, _) = LocalKek::generate(KeyId::new("new").unwrap()).unwrap();
                let mut items = Vec::new();
                let mut deks = Vec::new();
                for i in 0..5 {
                    let c = WrapContext::new("cat", KeyId::new(&format!("k{i}")).unwrap()).unwrap();
                    let d = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
                    items.push((old.wrap(&d, &c).await.unwrap(), c));
                    deks.push(d);
                }
                let out = rewrap_all(&old, &new, &items).await.unwrap();
                assert_eq!(out.len(), 5);
                for ((w, c), d) in out.iter().zip(&items).map(|(w, (_, c))| (w, c)).zip(&deks) {
                    assert_eq!(w.kek().key, "new");
                    assert_eq!(
                        new.unwrap(w, c).await.unwrap().expose_bytes(),
                        d.expose_bytes()
                    );
                }
                // Same-provider rewrap (the default: unwrap then wrap).
                let again = rewrap_all_in_kms(&new, &items_of(&out, &items))
                    .await
                    .unwrap();
                assert_eq!(again.len(), 5);

                // One bad item (context of another key) fails the whole batch.
                let mut bad = items.clone();
                bad[3].1 = items[2].1.clone();
                let e = rewrap_all(&old, &new, &bad).await.unwrap_err();
                assert_eq!(e.kind(), "wrong_context");
                // Rewrapping blobs of a KEK that isn't `old` fails too.
                let e = rewrap_all(&new, &old, &items).await.unwrap_err();
                assert_eq!(e.kind(), "wrong_kek");

                // Local KEKs have no KMS: rotate_blobs unwraps and wraps.
                assert!(!same_kms(&old, &new) && !same_kms(&old, &old));
                let moved = rotate_blobs(&old, &new, &items).await.unwrap();
                assert!(moved.iter().all(|(_, p)| *p == RewrapPath::UnwrapWrap));
                for ((w, _), (_, c)) in moved.iter().zip(&items) {
                    new.unwrap(w, c).await.unwrap();
                }
                let e = rotate_blobs(&new, &old, &items).await.unwrap_err();
                assert_eq!(e.kind(), "wrong_kek");
            })
    }

    fn items_of(
        w: &[WrappedDek],
        items: &[(WrappedDek, WrapContext)],
    ) -> Vec<(WrappedDek, WrapContext)> {
        w.iter()
            .cloned()
            .zip(items.iter().map(|(_, c)| c.clone()))
            .collect()
    }
}
