//! The wrapped-DEK blob stored in the key catalog.
//!
//! Stored form (docs/KMS.md): one JSON object,
//! `{"format":"keyturn-wrapped-dek","v":1,"provider":…,"kek":…,"kek_version":…,
//! "dek_alg":…,"binding":…,"ciphertext":<standard base64>}`.
//! [`WrappedDek::to_bytes`] is that JSON as UTF-8, for a BYTEA/BLOB column.

use crate::error::{KmsError, ProviderKind};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyturn_format::Algorithm;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Value of the `format` field.
const FORMAT_NAME: &str = "keyturn-wrapped-dek";
/// Version of the blob layout.
const FORMAT_VERSION: u32 = 1;
/// Largest accepted ciphertext (AWS KMS ciphertexts are a few hundred bytes).
const MAX_CIPHERTEXT: usize = 8192;
/// Largest accepted stored blob.
const MAX_BLOB: usize = 16384;

/// Which KEK: the provider, its key (name, ARN, mount/name) and, where known,
/// its version. Holds no secrets: safe to store, log and show.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KekRef {
    /// Which KMS provider holds the KEK.
    pub provider: ProviderKind,
    /// Local: the master key's name. AWS: the key ARN reported by KMS (or the
    /// configured id/alias in `describe`). Transit: `<mount>/<key name>`.
    pub key: String,
    /// Local: the master key's fingerprint. AWS: the key material id where
    /// KMS reports one. Transit: the key version (`"3"` for `vault:v3:`).
    pub version: Option<String>,
}

impl fmt::Display for KekRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} KEK {}", self.provider, self.key)?;
        match (&self.version, self.provider) {
            (Some(v), ProviderKind::Local) => write!(f, " (fingerprint {v})"),
            (Some(v), _) => write!(f, " (version {v})"),
            (None, _) => Ok(()),
        }
    }
}

/// How the [`crate::WrapContext`] is bound to the wrapped DEK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContextBinding {
    /// As associated data checked by the KEK's AEAD (local AAD, AWS
    /// encryption context, transit `associated_data`).
    #[default]
    Aad,
    /// Inside the encrypted payload (`context ‖ DEK`), checked by keyturn after
    /// decryption. Used by transit so that its server-side `rewrap`, which
    /// does not pass associated data, works.
    Embedded,
}

/// A DEK wrapped under a KEK: self-describing, holds no plaintext key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WrappedDek {
    kek: KekRef,
    dek_alg: Algorithm,
    binding: ContextBinding,
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    format: String,
    v: u32,
    provider: String,
    kek: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kek_version: Option<String>,
    dek_alg: String,
    binding: ContextBinding,
    ciphertext: String,
}

impl WrappedDek {
    pub(crate) fn new(
        kek: KekRef,
        dek_alg: Algorithm,
        binding: ContextBinding,
        ciphertext: Vec<u8>,
    ) -> WrappedDek {
        WrappedDek {
            kek,
            dek_alg,
            binding,
            ciphertext,
        }
    }

    /// The KEK that wrapped this DEK.
    pub fn kek(&self) -> &KekRef {
        &self.kek
    }

    /// The algorithm of the wrapped DEK (bound into the context as well).
    pub fn dek_algorithm(&self) -> Algorithm {
        self.dek_alg
    }

    /// How the wrap context is bound to this DEK (as associated data or embedded in the payload).
    pub fn binding(&self) -> ContextBinding {
        self.binding
    }

    /// The provider's ciphertext (opaque; not secret, but not useful to show).
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The stored JSON form.
    pub fn to_json(&self) -> String {
        let stored = Stored {
            format: FORMAT_NAME.to_owned(),
            v: FORMAT_VERSION,
            provider: self.kek.provider.as_str().to_owned(),
            kek: self.kek.key.clone(),
            kek_version: self.kek.version.clone(),
            dek_alg: self.dek_alg.name().to_owned(),
            binding: self.binding,
            ciphertext: STANDARD.encode(&self.ciphertext),
        };
        // A struct of strings always serializes.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// The stored JSON form as UTF-8 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_json().into_bytes()
    }

    /// Parses the stored form written by [`to_json`](Self::to_json).
    pub fn from_json(s: &str) -> Result<WrappedDek, KmsError> {
        if s.len() > MAX_BLOB {
            return Err(KmsError::Malformed(format!(
                "{} bytes, the limit is {MAX_BLOB}",
                s.len()
            )));
        }
        // serde_json errors name a position and expectation, not the input.
        let st: Stored = serde_json::from_str(s)
            .map_err(|e| KmsError::Malformed(format!("not a wrapped-DEK JSON object ({e})")))?;
        if st.format != FORMAT_NAME {
            return Err(KmsError::Malformed(format!(
                "format is {:?}, expected {FORMAT_NAME:?}",
                crate::error::clip(&st.format)
            )));
        }
        if st.v != FORMAT_VERSION {
            return Err(KmsError::Malformed(format!(
                "blob version {} is not supported by this keyturn (written by a newer one?)",
                st.v
            )));
        }
        let provider = ProviderKind::from_name(&st.provider).ok_or_else(|| {
            KmsError::Malformed(format!(
                "unknown provider {:?} (expected local, aws-kms or transit)",
                crate::error::clip(&st.provider)
            ))
        })?;
        if st.kek.is_empty() || st.kek.len() > 2048 {
            return Err(KmsError::Malformed(
                "kek must be 1 to 2048 bytes".to_owned(),
            ));
        }
        let dek_alg = Algorithm::from_name(&st.dek_alg)
            .map_err(|_| KmsError::Malformed("unknown dek_alg".to_owned()))?;
        let ciphertext = STANDARD
            .decode(st.ciphertext.as_bytes())
            .map_err(|_| KmsError::Malformed("ciphertext is not standard base64".to_owned()))?;
        if ciphertext.is_empty() || ciphertext.len() > MAX_CIPHERTEXT {
            return Err(KmsError::Malformed(format!(
                "ciphertext is {} bytes, expected 1 to {MAX_CIPHERTEXT}",
                ciphertext.len()
            )));
        }
        Ok(WrappedDek {
            kek: KekRef {
                provider,
                key: st.kek,
                version: st.kek_version,
            },
            dek_alg,
            binding: st.binding,
            ciphertext,
        })
    }

    /// Parses [`to_bytes`](Self::to_bytes) output.
    pub fn from_bytes(b: &[u8]) -> Result<WrappedDek, KmsError> {
        let s = std::str::from_utf8(b)
            .map_err(|_| KmsError::Malformed("stored bytes are not UTF-8 JSON".to_owned()))?;
        WrappedDek::from_json(s)
    }

    /// Checks that this blob was made by a provider of `kind`.
    pub(crate) fn expect_provider(&self, want: &KekRef) -> Result<(), KmsError> {
        if self.kek.provider != want.provider {
            return Err(KmsError::WrongKek {
                expected: want.to_string(),
                found: self.kek.to_string(),
            });
        }
        Ok(())
    }
}

impl fmt::Debug for WrappedDek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedDek")
            .field("kek", &self.kek)
            .field("dek_alg", &self.dek_alg.name())
            .field("binding", &self.binding)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

impl fmt::Display for WrappedDek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} DEK wrapped under {} ({} bytes)",
            self.dek_alg.name(),
            self.kek,
            self.ciphertext.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> WrappedDek {
        WrappedDek::new(
            KekRef {
                provider: ProviderKind::Transit,
                key: "transit/app".into(),
                version: Some("2".into()),
            },
            Algorithm::XChaCha20Poly1305,
            ContextBinding::Embedded,
            b"vault:v2:abcd".to_vec(),
        )
    }

    #[test]
    fn json_round_trip() {
        let w = sample();
        let j = w.to_json();
        assert!(
            j.starts_with(r#"{"format":"keyturn-wrapped-dek","v":1,"provider":"transit""#),
            "{j}"
        );
        assert_eq!(WrappedDek::from_json(&j).unwrap(), w);
        assert_eq!(WrappedDek::from_bytes(&w.to_bytes()).unwrap(), w);
        let mut local = w.clone();
        local.kek.version = None;
        assert!(!local.to_json().contains("kek_version"));
        assert_eq!(WrappedDek::from_json(&local.to_json()).unwrap(), local);
    }

    #[test]
    fn rejects_malformed() {
        let good = sample().to_json();
        let cases = [
            String::new(),
            "[]".to_owned(),
            "{}".to_owned(),
            good.replace("keyturn-wrapped-dek", "other"),
            good.replace("\"v\":1", "\"v\":2"),
            good.replace("\"transit\"", "\"gcp\""),
            good.replace("xchacha20poly1305", "rot13"),
            good.replace("embedded", "nope"),
            good.replace("\"ciphertext\":\"", "\"ciphertext\":\"!"),
            good.replace(
                "\"ciphertext\":\"dmF1bHQ6djI6YWJjZA==\"",
                "\"ciphertext\":\"\"",
            ),
            good.replace('}', ",\"extra\":1}"),
            good.replace("\"kek\":\"transit/app\"", "\"kek\":\"\""),
        ];
        for c in cases {
            let e = WrappedDek::from_json(&c).unwrap_err();
            assert_eq!(e.kind(), "malformed", "{c}: {e}");
        }
        assert_eq!(
            WrappedDek::from_bytes(&[0xff, 0xfe]).unwrap_err().kind(),
            "malformed"
        );
    }

    #[test]
    fn debug_and_display_hide_ciphertext() {
        let w = sample();
        for s in [format!("{w:?}"), w.to_string()] {
            assert!(!s.contains("dmF1bHQ6") && !s.contains("abcd"), "{s}");
            assert!(s.contains("transit/app"), "{s}");
        }
    }
}
