//! Transit operations on data keys an application stored itself (the
//! `vault:vN:` ciphertext of `datakey/wrapped` in a table column): what
//! `keyturn rotate` uses for an `envelope` column with `kms = "NAME"` on a
//! vault-transit section.
//!
//! - [`TransitKek::rewrap_value`]: `rewrap` to the key's latest version;
//!   the data key never leaves the server.
//! - [`TransitKek::decrypt_value`]: `decrypt` (the data key comes back,
//!   zeroized on drop).
//! - [`TransitKek::encrypt_value`]: `encrypt` of a data key under this key.
//! - [`TransitKek::datakey_plaintext`]: `datakey/plaintext`: a new data key
//!   and its `vault:vN:` ciphertext.
//!
//! A value the server refuses (HTTP 400 other than a missing key: does not
//! decrypt, version below `min_decryption_version`, malformed) is
//! [`KmsError::Malformed`] with the server's message scrubbed: it concerns
//! that value alone. Anything else concerns the server or the token.

use crate::error::KmsError;
use crate::transit::TransitKek;
use crate::transit_values::scrub;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use zeroize::Zeroizing;

#[derive(Deserialize)]
struct Plain {
    plaintext: String,
}

#[derive(Deserialize)]
struct Cipher {
    ciphertext: String,
}

#[derive(Deserialize)]
struct Both {
    plaintext: String,
    ciphertext: String,
}

impl TransitKek {
    /// POSTs `body` to `<mount>/<op>/<key>`; a 400 about the value is
    /// [`KmsError::Malformed`].
    async fn value_call(
        &self,
        op: &str,
        body: serde_json::Value,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let resp = self
            .client
            .post(self.url(op))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let bytes = Zeroizing::new(
            resp.bytes()
                .await
                .map_err(|e| self.unreachable(&e))?
                .to_vec(),
        );
        if status.is_success() {
            return Ok(bytes);
        }
        let errors = serde_json::from_slice::<crate::transit::Errors>(&bytes)
            .map(|e| e.errors.join("; "))
            .unwrap_or_default();
        if status == reqwest::StatusCode::BAD_REQUEST && !errors.contains("key not found") {
            return Err(KmsError::Malformed(scrub(&errors)));
        }
        Err(self.classify(status, &errors, None).await)
    }

    fn with_context(
        mut m: serde_json::Map<String, serde_json::Value>,
        context: Option<&[u8]>,
    ) -> serde_json::Value {
        if let Some(c) = context {
            m.insert("context".into(), STANDARD.encode(c).into());
        }
        serde_json::Value::Object(m)
    }

    fn decode(&self, b64: &str, what: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        STANDARD
            .decode(b64)
            .map(Zeroizing::new)
            .map_err(|_| KmsError::Backend {
                provider: crate::ProviderKind::Transit,
                address: self.address().to_owned(),
                message: format!("{what}: the plaintext is not base64"),
            })
    }

    /// Rewraps one `vault:vN:` value to the key's latest version.
    pub async fn rewrap_value(
        &self,
        ciphertext: &str,
        context: Option<&[u8]>,
    ) -> Result<String, KmsError> {
        let mut m = serde_json::Map::new();
        m.insert("ciphertext".into(), ciphertext.into());
        let body = self
            .value_call("rewrap", Self::with_context(m, context))
            .await?;
        let c: Cipher = self.parse(&body, "a rewrap")?;
        Ok(c.ciphertext)
    }

    /// Decrypts one `vault:vN:` value: its plaintext, zeroized on drop.
    pub async fn decrypt_value(
        &self,
        ciphertext: &str,
        context: Option<&[u8]>,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let mut m = serde_json::Map::new();
        m.insert("ciphertext".into(), ciphertext.into());
        let body = self
            .value_call("decrypt", Self::with_context(m, context))
            .await?;
        let p: Zeroizing<String> =
            Zeroizing::new(self.parse::<Plain>(&body, "a decrypt")?.plaintext);
        self.decode(&p, "a decrypt")
    }

    /// Encrypts `plaintext` under the key's latest version: `vault:vN:…`.
    pub async fn encrypt_value(
        &self,
        plaintext: &[u8],
        context: Option<&[u8]>,
    ) -> Result<String, KmsError> {
        let mut m = serde_json::Map::new();
        let b64 = Zeroizing::new(STANDARD.encode(plaintext));
        m.insert("plaintext".into(), b64.as_str().into());
        let body = self
            .value_call("encrypt", Self::with_context(m, context))
            .await?;
        let c: Cipher = self.parse(&body, "an encrypt")?;
        Ok(c.ciphertext)
    }

    /// A new 256-bit data key (`datakey/plaintext`): the key, zeroized on
    /// drop, and its `vault:vN:` ciphertext under this key.
    pub async fn datakey_plaintext(
        &self,
        context: Option<&[u8]>,
    ) -> Result<(Zeroizing<Vec<u8>>, String), KmsError> {
        let m = serde_json::Map::new();
        let body = self
            .value_call("datakey/plaintext", Self::with_context(m, context))
            .await?;
        let both: Both = self.parse(&body, "a data key")?;
        let plain = Zeroizing::new(both.plaintext);
        let key = self.decode(&plain, "a data key")?;
        if key.len() != 32 {
            return Err(KmsError::Backend {
                provider: crate::ProviderKind::Transit,
                address: self.address().to_owned(),
                message: format!("a data key of {} bytes, not 32", key.len()),
            });
        }
        Ok((key, both.ciphertext))
    }
}

#[cfg(test)]
mod tests {
    use crate::{TransitConfig, TransitKek};
    use keyturn_test_support::kms::bao;

    /// A data key from `datakey/plaintext` decrypts to itself, rewraps to a
    /// new version after a rotation, moves to another key, and a damaged
    /// value is that value's problem (not transient).
    #[tokio::test]
    async fn transit_data_keys() {
        let Some(b) = bao("transit_data_keys").await else {
            return;
        };
        let (k1, k2) = (b.create_key().await, b.create_key().await);
        let kek = |name: &str| {
            let mut c = TransitConfig::new(&b.addr, name);
            c.mount = b.mount.clone();
            c.token = Some(crate::SecretSource::Value(crate::SecretString::new(
                b.root_token.clone(),
            )));
            TransitKek::new(c).unwrap()
        };
        let (t1, t2) = (kek(&k1), kek(&k2));
        let (dek, wrapped) = t1.datakey_plaintext(None).await.unwrap();
        assert!(wrapped.starts_with("vault:v1:"));
        assert_eq!(*t1.decrypt_value(&wrapped, None).await.unwrap(), *dek);
        b.rotate_key(&k1).await;
        let v2 = t1.rewrap_value(&wrapped, None).await.unwrap();
        assert!(v2.starts_with("vault:v2:"), "{v2}");
        let moved = t2.encrypt_value(&dek, None).await.unwrap();
        assert_eq!(*t2.decrypt_value(&moved, None).await.unwrap(), *dek);
        let damaged = format!("{}AAAA", &wrapped[..wrapped.len() - 4]);
        let e = t1.decrypt_value(&damaged, None).await.unwrap_err();
        assert!(matches!(e, crate::KmsError::Malformed(_)), "{e}");
        assert!(!e.to_string().contains(&damaged[9..]), "{e}");
    }
}
