//! What a wrapped DEK is bound to.

use crate::error::KmsError;
use keyturn_format::{Algorithm, KeyId};
use std::collections::HashMap;

/// Longest catalog name, in bytes.
pub const MAX_CATALOG_LEN: usize = 128;

/// Label that starts the associated data of every wrap, so that a KEK shared
/// with other software never confuses its ciphertexts with ours.
const AAD_LABEL: &[u8] = b"keyturn wrapped dek v1\0";

/// The context a DEK is wrapped under: the key catalog it belongs to and its
/// key id. Unwrapping requires the same context, so a wrapped DEK copied to
/// another catalog or to another key id's row fails to unwrap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WrapContext {
    catalog: String,
    key_id: KeyId,
}

impl WrapContext {
    /// `catalog` names the key catalog (for example `prod/app.keyturn_keys`):
    /// 1 to 128 visible ASCII characters, no spaces.
    pub fn new(catalog: &str, key_id: KeyId) -> Result<WrapContext, KmsError> {
        if catalog.is_empty() || catalog.len() > MAX_CATALOG_LEN {
            return Err(KmsError::InvalidContext(format!(
                "catalog name must be 1 to {MAX_CATALOG_LEN} bytes, got {}",
                catalog.len()
            )));
        }
        if let Some(pos) = catalog.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
            return Err(KmsError::InvalidContext(format!(
                "catalog name byte {pos} is not visible ASCII (no spaces or control characters)"
            )));
        }
        Ok(WrapContext {
            catalog: catalog.to_owned(),
            key_id,
        })
    }

    /// The key catalog the DEK belongs to.
    pub fn catalog(&self) -> &str {
        &self.catalog
    }

    /// The key id the DEK belongs to.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The associated data bound by the local and transit providers:
    /// label ‖ DEK algorithm byte ‖ u16-BE catalog length ‖ catalog ‖ u8 key
    /// id length ‖ key id.
    pub(crate) fn aad(&self, alg: Algorithm) -> Vec<u8> {
        let kid = self.key_id.as_str().as_bytes();
        let mut out = Vec::with_capacity(AAD_LABEL.len() + 4 + self.catalog.len() + kid.len());
        out.extend_from_slice(AAD_LABEL);
        out.push(alg.byte());
        // Both lengths are bounded by the constructors (128 and 32).
        out.extend_from_slice(&(self.catalog.len() as u16).to_be_bytes());
        out.extend_from_slice(self.catalog.as_bytes());
        out.push(kid.len() as u8);
        out.extend_from_slice(kid);
        out
    }

    /// The AWS KMS encryption context: `catalog`, `key_id` and `dek_alg`.
    pub(crate) fn aws_context(&self, alg: Algorithm) -> HashMap<String, String> {
        HashMap::from([
            ("catalog".to_owned(), self.catalog.clone()),
            ("key_id".to_owned(), self.key_id.as_str().to_owned()),
            ("dek_alg".to_owned(), alg.name().to_owned()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kid(s: &str) -> KeyId {
        KeyId::new(s).unwrap()
    }

    #[test]
    fn validates_catalog() {
        WrapContext::new("prod/app.keyturn_keys", kid("k1")).unwrap();
        WrapContext::new(&"c".repeat(128), kid("k1")).unwrap();
        for bad in ["", "a b", "a\nb", "é", &"c".repeat(129)] {
            let e = WrapContext::new(bad, kid("k1")).unwrap_err();
            assert_eq!(e.kind(), "invalid_context", "{bad:?}");
        }
    }

    #[test]
    fn aad_is_injective_over_fields() {
        let a = WrapContext::new("ab", kid("c")).unwrap();
        let b = WrapContext::new("a", kid("bc")).unwrap();
        assert_ne!(a.aad(Algorithm::Aes256Gcm), b.aad(Algorithm::Aes256Gcm));
        assert_ne!(
            a.aad(Algorithm::Aes256Gcm),
            a.aad(Algorithm::XChaCha20Poly1305)
        );
        assert!(a.aad(Algorithm::Aes256Gcm).starts_with(AAD_LABEL));
    }
}
