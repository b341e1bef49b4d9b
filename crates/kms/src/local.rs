//! A KEK held by this process: AES-256-GCM under a master key from an
//! environment variable, a file or the caller.

use crate::KekProvider;
use crate::blob::{ContextBinding, KekRef, WrappedDek};
use crate::context::WrapContext;
use crate::error::{KmsError, ProviderKind};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyturn_format::{Algorithm, KeyId, KeySpec, SecretKey};
use keyturn_keys::{SecretSource, SecretString};
use std::fmt;
use zeroize::Zeroizing;

const P: ProviderKind = ProviderKind::Local;
const TAG: usize = 16;
const DEK_LEN: usize = 32;

/// Where the master key comes from: `env:NAME`, `file:PATH` or the value
/// itself from a program ([`keyturn_keys::SecretSource`]). The text is
/// either a key spec `<name>:aes256gcm:<base64>` (the name becomes the KEK's
/// name) or the standard base64 of 32 bytes (name `local`).
pub type MasterKeySource = SecretSource;

/// AES-256-GCM under a local master key, for development and small
/// deployments. The master key's fingerprint is recorded as the KEK version,
/// so a DEK wrapped under another master key is reported as such.
pub struct LocalKek {
    name: KeyId,
    fingerprint: String,
    key: LessSafeKey,
}

impl LocalKek {
    /// The environment variable read by default.
    pub const DEFAULT_ENV: &'static str = "KEYTURN_MASTER_KEY";

    /// The default master key source: `env:KEYTURN_MASTER_KEY`.
    pub fn default_source() -> MasterKeySource {
        SecretSource::Env(Self::DEFAULT_ENV.to_owned())
    }

    /// Loads the master key from `source`.
    pub fn load(source: &MasterKeySource) -> Result<LocalKek, KmsError> {
        let text = source.read_secret("master key file").map_err(|e| match e {
            keyturn_keys::KeyError::EnvMissing(var) => KmsError::config(
                P,
                format!(
                    "environment variable {var} is not set; set it to a master key (`<name>:aes256gcm:<base64>` or the base64 of 32 random bytes)"
                ),
            ),
            other => KmsError::config(P, format!("master key: {other}")),
        })?;
        LocalKek::from_text(text.expose())
    }

    /// Parses a master key text: a key spec or plain base64 of 32 bytes.
    /// Errors never contain the text.
    pub fn from_text(text: &str) -> Result<LocalKek, KmsError> {
        let text = text.trim();
        if text.contains(':') {
            let spec = KeySpec::parse(text).map_err(|e| {
                KmsError::config(P, format!("master key is not a valid key spec: {e}"))
            })?;
            if spec.key.algorithm() != Algorithm::Aes256Gcm {
                return Err(KmsError::config(
                    P,
                    format!(
                        "master key {:?} is an {} spec; the local KEK is AES-256-GCM, use an aes256gcm spec",
                        spec.id.as_str(),
                        spec.key.algorithm().name()
                    ),
                ));
            }
            return LocalKek::from_bytes(spec.id, spec.key.expose_bytes());
        }
        let bytes = Zeroizing::new(STANDARD.decode(text).map_err(|_| {
            KmsError::config(
                P,
                "master key is neither a key spec (<name>:aes256gcm:<base64>) nor standard base64",
            )
        })?);
        // "local" is a valid key id.
        let name = KeyId::new("local").map_err(|e| KmsError::config(P, e.to_string()))?;
        LocalKek::from_bytes(name, &bytes)
    }

    /// A master key from raw bytes (32).
    pub fn from_bytes(name: KeyId, bytes: &[u8]) -> Result<LocalKek, KmsError> {
        if bytes.len() != 32 {
            return Err(KmsError::config(
                P,
                format!("master key must be 32 bytes, got {}", bytes.len()),
            ));
        }
        let fingerprint = SecretKey::from_bytes(Algorithm::Aes256Gcm, bytes)
            .map_err(|e| KmsError::config(P, e.to_string()))?
            .fingerprint();
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| KmsError::config(P, "AES-256-GCM key setup failed"))?;
        Ok(LocalKek {
            name,
            fingerprint,
            key: LessSafeKey::new(unbound),
        })
    }

    /// A new random master key and its spec text (to store in a secret
    /// manager or file; zeroized on drop, never log it).
    pub fn generate(name: KeyId) -> Result<(LocalKek, SecretString), KmsError> {
        let spec = KeySpec::generate(name, Algorithm::Aes256Gcm)
            .map_err(|e| KmsError::config(P, e.to_string()))?;
        let kek = LocalKek::from_bytes(spec.id.clone(), spec.key.expose_bytes())?;
        Ok((kek, SecretString::new(spec.to_spec_string().to_string())))
    }

    /// The master key's fingerprint (16 hex digits), as recorded in blobs.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn wrong_context(&self, ctx: &WrapContext) -> KmsError {
        KmsError::WrongContext {
            provider: P,
            kek: self.describe().to_string(),
            catalog: ctx.catalog().to_owned(),
            key_id: ctx.key_id().as_str().to_owned(),
        }
    }
}

impl fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKek")
            .field("name", &self.name.as_str())
            .field("fingerprint", &self.fingerprint)
            .field("key", &"redacted")
            .finish()
    }
}

#[async_trait::async_trait]
impl KekProvider for LocalKek {
    fn describe(&self) -> KekRef {
        KekRef {
            provider: P,
            key: self.name.as_str().to_owned(),
            version: Some(self.fingerprint.clone()),
        }
    }

    async fn wrap(&self, dek: &SecretKey, ctx: &WrapContext) -> Result<WrappedDek, KmsError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| KmsError::config(P, "the system random generator failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + DEK_LEN + TAG);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(dek.expose_bytes());
        let aad = ctx.aad(dek.algorithm());
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| {
                out.iter_mut().for_each(|b| *b = 0);
                KmsError::config(P, "AES-256-GCM seal failed")
            })?;
        out.extend_from_slice(tag.as_ref());
        Ok(WrappedDek::new(
            self.describe(),
            dek.algorithm(),
            ContextBinding::Aad,
            out,
        ))
    }

    fn check_owner(&self, wrapped: &WrappedDek) -> Result<(), KmsError> {
        let me = self.describe();
        wrapped.expect_provider(&me)?;
        if let Some(fp) = &wrapped.kek().version
            && *fp != self.fingerprint
        {
            return Err(KmsError::WrongKek {
                expected: me.to_string(),
                found: wrapped.kek().to_string(),
            });
        }
        Ok(())
    }

    async fn unwrap(&self, wrapped: &WrappedDek, ctx: &WrapContext) -> Result<SecretKey, KmsError> {
        self.check_owner(wrapped)?;
        if wrapped.binding() != ContextBinding::Aad {
            return Err(KmsError::Malformed(
                "local KEK blobs bind their context as AAD, this one says embedded".into(),
            ));
        }
        let ct = wrapped.ciphertext();
        if ct.len() != NONCE_LEN + DEK_LEN + TAG {
            return Err(KmsError::Malformed(format!(
                "local KEK ciphertext is {} bytes, expected {}",
                ct.len(),
                NONCE_LEN + DEK_LEN + TAG
            )));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&ct[..NONCE_LEN]);
        let mut buf = Zeroizing::new(ct[NONCE_LEN..].to_vec());
        let aad = ctx.aad(wrapped.dek_algorithm());
        let pt = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut buf[..],
            )
            .map_err(|_| self.wrong_context(ctx))?;
        SecretKey::from_bytes(wrapped.dek_algorithm(), pt)
            .map_err(|e| KmsError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(c: &str, k: &str) -> WrapContext {
        WrapContext::new(c, KeyId::new(k).unwrap()).unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn round_trip_and_context_binding() {
        block_on(async {
            let (kek, _spec) = LocalKek::generate(KeyId::new("dev").unwrap()).unwrap();
            let dek = SecretKey::generate(Algorithm::XChaCha20Poly1305).unwrap();
            let c = ctx("cat", "k1");
            let w = kek.wrap(&dek, &c).await.unwrap();
            assert_eq!(w.kek().key, "dev");
            assert_eq!(w.kek().version.as_deref(), Some(kek.fingerprint()));
            let back = kek.unwrap(&w, &c).await.unwrap();
            assert_eq!(back.expose_bytes(), dek.expose_bytes());
            assert_eq!(back.algorithm(), Algorithm::XChaCha20Poly1305);

            for other in [ctx("cat", "k2"), ctx("cat2", "k1")] {
                let e = kek.unwrap(&w, &other).await.unwrap_err();
                assert_eq!(e.kind(), "wrong_context", "{e}");
            }
            // The DEK algorithm is bound too.
            let mut j = w.to_json();
            j = j.replace("xchacha20poly1305", "aes256gcm");
            let e = kek
                .unwrap(&WrappedDek::from_json(&j).unwrap(), &c)
                .await
                .unwrap_err();
            assert_eq!(e.kind(), "wrong_context", "{e}");
        })
    }

    #[test]
    fn other_master_key_is_wrong_kek() {
        block_on(async {
            let (a, _) = LocalKek::generate(KeyId::new("dev").unwrap()).unwrap();
            let (b, _) = LocalKek::generate(KeyId::new("dev").unwrap()).unwrap();
            let dek = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
            let c = ctx("cat", "k1");
            let w = a.wrap(&dek, &c).await.unwrap();
            let e = b.unwrap(&w, &c).await.unwrap_err();
            assert_eq!(e.kind(), "wrong_kek", "{e}");
            assert!(e.to_string().contains(a.fingerprint()), "{e}");
        })
    }

    #[test]
    fn parses_spec_and_base64() {
        let (a, spec) = LocalKek::generate(KeyId::new("m1").unwrap()).unwrap();
        let b = LocalKek::from_text(spec.expose()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(b.describe().key, "m1");
        let b64 = spec.expose().rsplit(':').next().unwrap().to_owned();
        let c = LocalKek::load(&MasterKeySource::Value(format!("  {b64}\n").into())).unwrap();
        assert_eq!(c.fingerprint(), a.fingerprint());
        assert_eq!(c.describe().key, "local");

        let short = STANDARD.encode([7u8; 31]);
        let xspec = format!("x1:xchacha20poly1305:{}", STANDARD.encode([7u8; 32]));
        for bad in [
            short.as_str(),
            "not base64!",
            "k1:aes256gcm:",
            xspec.as_str(),
        ] {
            let e = LocalKek::from_text(bad).unwrap_err();
            assert_eq!(e.kind(), "config", "{bad}");
            assert!(!e.to_string().contains(&STANDARD.encode([7u8; 32])[..12]));
        }
        let e = LocalKek::load(&MasterKeySource::Env(
            "KEYTURN_TEST_SURELY_UNSET_VAR".into(),
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("KEYTURN_TEST_SURELY_UNSET_VAR"),
            "{e}"
        );
        let e = LocalKek::load(&MasterKeySource::File("/nonexistent/keyturn/master".into()))
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/keyturn/master"), "{e}");
    }
}
