//! AWS KMS operations on data keys an application stored itself (the
//! `GenerateDataKey` `CiphertextBlob` of a KMS envelope scheme, in a table
//! column): what `keyturn rotate` uses for an `envelope` column with
//! `kms = "NAME"`.
//!
//! - [`AwsKmsKek::re_encrypt_blob`]: `ReEncrypt` of a blob to another KMS
//!   key; the data key never leaves KMS.
//! - [`AwsKmsKek::decrypt_blob`]: `Decrypt` of a blob (the data key comes
//!   back, zeroized on drop).
//! - [`AwsKmsKek::generate_data_key`]: `GenerateDataKey` (AES-256): a new
//!   data key and its blob.
//!
//! Errors: a blob KMS cannot decrypt (damaged, another encryption context)
//! is [`KmsError::Malformed`], a blob under another KMS key than the one
//! named is [`KmsError::WrongKek`]: both concern that value alone. Anything
//! else concerns the server or the credentials.

use crate::aws::AwsKmsKek;
use crate::error::KmsError;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use std::collections::HashMap;
use zeroize::Zeroizing;

/// An AWS encryption context (`None`: none).
pub type EncryptionContext = Option<HashMap<String, String>>;

impl AwsKmsKek {
    /// `ReEncrypt` of `blob` from `source_key` (checked by KMS: a blob under
    /// another key is refused) to `destination_key`, with the same
    /// encryption context on both sides. Returns the new blob.
    pub async fn re_encrypt_blob(
        &self,
        blob: &[u8],
        source_key: &str,
        destination_key: &str,
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, KmsError> {
        let out = self
            .client()
            .re_encrypt()
            .ciphertext_blob(Blob::new(blob.to_vec()))
            .source_key_id(source_key)
            .set_source_encryption_context(context.clone())
            .destination_key_id(destination_key)
            .set_destination_encryption_context(context.clone())
            .send()
            .await
            .map_err(|e| self.err(e, source_key, None))?;
        Ok(out
            .ciphertext_blob()
            .ok_or_else(|| self.missing("CiphertextBlob"))?
            .as_ref()
            .to_vec())
    }

    /// `Decrypt` of `blob` under `key` (a blob under another key is
    /// refused): the plaintext, zeroized on drop.
    pub async fn decrypt_blob(
        &self,
        blob: &[u8],
        key: &str,
        context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let out = self
            .client()
            .decrypt()
            .key_id(key)
            .ciphertext_blob(Blob::new(blob.to_vec()))
            .set_encryption_context(context.clone())
            .send()
            .await
            .map_err(|e| self.err(e, key, None))?;
        Ok(Zeroizing::new(
            out.plaintext
                .ok_or_else(|| self.missing("Plaintext"))?
                .into_inner(),
        ))
    }

    /// `GenerateDataKey` (`AES_256`) under `key`: the data key (zeroized on
    /// drop) and its `CiphertextBlob`.
    pub async fn generate_data_key(
        &self,
        key: &str,
        context: &EncryptionContext,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), KmsError> {
        let out = self
            .client()
            .generate_data_key()
            .key_id(key)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(context.clone())
            .send()
            .await
            .map_err(|e| self.err(e, key, None))?;
        let blob = out
            .ciphertext_blob()
            .ok_or_else(|| self.missing("CiphertextBlob"))?
            .as_ref()
            .to_vec();
        let plain = Zeroizing::new(
            out.plaintext
                .ok_or_else(|| self.missing("Plaintext"))?
                .into_inner(),
        );
        if plain.len() != 32 {
            return Err(KmsError::Backend {
                provider: crate::ProviderKind::AwsKms,
                address: key.to_owned(),
                message: format!(
                    "GenerateDataKey returned {} bytes, not a 32-byte key",
                    plain.len()
                ),
            });
        }
        Ok((plain, blob))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AwsKmsConfig;
    use keyturn_test_support::kms::moto_url;

    async fn kek(url: &str) -> AwsKmsKek {
        let mut c = AwsKmsConfig::new("alias/unused");
        c.region = Some("us-east-1".into());
        c.endpoint_url = Some(url.into());
        c.credentials = crate::AwsCredentials::Static {
            access_key_id: "testing".into(),
            secret_access_key: crate::SecretString::new("testing".into()),
            session_token: None,
        };
        AwsKmsKek::connect(c).await.unwrap()
    }

    async fn new_key(k: &AwsKmsKek) -> String {
        k.client()
            .create_key()
            .send()
            .await
            .unwrap()
            .key_metadata()
            .unwrap()
            .arn()
            .unwrap()
            .to_owned()
    }

    /// A data key made under one key moves to another inside KMS, keeps
    /// decrypting to the same key, and refuses the wrong context or key.
    #[tokio::test]
    async fn data_keys_move_between_kms_keys() {
        let Some(url) = moto_url("data_keys_move_between_kms_keys") else {
            return;
        };
        let k = kek(&url).await;
        let (a, b) = (new_key(&k).await, new_key(&k).await);
        let ec: EncryptionContext = Some(HashMap::from([("tenant".into(), "7".into())]));
        let (dek, blob) = k.generate_data_key(&a, &ec).await.unwrap();
        assert_eq!(dek.len(), 32);
        let moved = k.re_encrypt_blob(&blob, &a, &b, &ec).await.unwrap();
        assert_ne!(moved, blob);
        assert_eq!(*k.decrypt_blob(&moved, &b, &ec).await.unwrap(), *dek);
        let other: EncryptionContext = Some(HashMap::from([("tenant".into(), "8".into())]));
        let e = k.decrypt_blob(&moved, &b, &other).await.unwrap_err();
        assert!(!e.is_transient(), "{e}");
        let mut damaged = blob.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        let e = k.re_encrypt_blob(&damaged, &a, &b, &ec).await.unwrap_err();
        assert!(!e.is_transient(), "{e}");
    }
}
