//! Transit operations on stored values (`vault:vN:…` in a table column),
//! done inside the server: the key never leaves it and no plaintext comes
//! back. What `keyturn rotate` uses for a column with `kms = "…"`.
//!
//! - [`TransitKek::key_info`]: `GET <mount>/keys/<name>`: latest version,
//!   `min_decryption_version`, whether the key is derived.
//! - [`TransitKek::rewrap_values`]: `POST <mount>/rewrap/<name>` with
//!   `batch_input`: each item's outcome on its own (a value that does not
//!   decrypt is that value's problem, a 403 or a sealed server is the run's).
//! - [`TransitKek::set_min_decryption_version`]: `POST <mount>/keys/<name>/config`.
//! - [`TransitKek::datakey`]: `POST <mount>/datakey/wrapped/<name>`.

use crate::error::{KmsError, clip};
use crate::transit::TransitKek;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// A transit key's versions and settings, as `GET <mount>/keys/<name>` says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransitKeyInfo {
    /// The version new encryptions and rewraps use.
    pub latest_version: u64,
    /// Versions below this one no longer decrypt (nor rewrap).
    pub min_decryption_version: u64,
    /// Whether the key derives a key per context (each value needs its context).
    pub derived: bool,
    /// The key type (`aes256-gcm96`, `chacha20-poly1305`, …).
    pub key_type: String,
}

/// One value for [`TransitKek::rewrap_values`].
#[derive(Clone, Copy, Debug)]
pub struct TransitItem<'a> {
    /// The stored ciphertext, `vault:vN:<base64>`.
    pub ciphertext: &'a str,
    /// The derivation context of a derived key (raw bytes; sent base64).
    pub context: Option<&'a [u8]>,
}

/// What the server did with one value of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ItemOutcome {
    /// The value under the latest version (`vault:vN:…`).
    Rewrapped(String),
    /// The server refused this value alone (does not decrypt, version
    /// below `min_decryption_version`, missing context…): its message,
    /// clipped, never the value.
    Refused(String),
}

#[derive(Deserialize)]
struct KeyConfig {
    latest_version: u64,
    #[serde(default)]
    min_decryption_version: u64,
    #[serde(default)]
    derived: bool,
    #[serde(rename = "type")]
    key_type: String,
}

#[derive(Deserialize)]
struct BatchData {
    #[serde(default)]
    batch_results: Vec<BatchResult>,
}

#[derive(Deserialize)]
struct BatchResult {
    #[serde(default)]
    ciphertext: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Wrapped {
    ciphertext: String,
}

/// The server refused the batch as too large ("too complex", "too many
/// items", a body limit): the caller splits it.
pub fn is_too_large(e: &KmsError) -> bool {
    let m = match e {
        KmsError::Backend { message, .. } => message,
        _ => return false,
    };
    let m = m.to_ascii_lowercase();
    m.contains("too complex")
        || m.contains("too many")
        || m.contains("too large")
        || m.contains("413")
        || m.contains("exceeds")
}

impl TransitKek {
    /// The key's versions and settings (`read` on `<mount>/keys/<name>`).
    pub async fn key_info(&self) -> Result<TransitKeyInfo, KmsError> {
        let body = self.call(self.client.get(self.keys_url("")), None).await?;
        let k: KeyConfig = self.parse(&body, "a key read")?;
        Ok(TransitKeyInfo {
            latest_version: k.latest_version,
            min_decryption_version: k.min_decryption_version.max(1),
            derived: k.derived,
            key_type: k.key_type,
        })
    }

    /// Raises (or sets) the key's `min_decryption_version`: versions below it
    /// stop decrypting. Needs `update` on `<mount>/keys/<name>/config`.
    pub async fn set_min_decryption_version(&self, version: u64) -> Result<(), KmsError> {
        let body = serde_json::json!({ "min_decryption_version": version });
        self.call(self.client.post(self.keys_url("/config")).json(&body), None)
            .await
            .map(drop)
    }

    /// Rewraps `items` to the key's latest version in one `batch_input`
    /// request. The outcomes are in the order of `items`. An error is the
    /// request's (server, token, key): no item was rewrapped.
    ///
    /// Vault answers 400 when some items fail, with the per-item results in
    /// the body; those are read, not treated as the batch's failure.
    pub async fn rewrap_values(
        &self,
        items: &[TransitItem<'_>],
    ) -> Result<Vec<ItemOutcome>, KmsError> {
        let batch: Vec<serde_json::Value> = items
            .iter()
            .map(|i| {
                let mut m = serde_json::Map::new();
                m.insert("ciphertext".into(), i.ciphertext.into());
                if let Some(c) = i.context {
                    m.insert("context".into(), STANDARD.encode(c).into());
                }
                serde_json::Value::Object(m)
            })
            .collect();
        let req = self
            .client
            .post(self.url("rewrap"))
            .json(&serde_json::json!({ "batch_input": batch }));
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        // Per-item results come with a 2xx, or a 400 when some item failed.
        if (status.is_success() || status == reqwest::StatusCode::BAD_REQUEST)
            && let Ok(data) = self.parse::<BatchData>(&body, "a batch rewrap")
            && data.batch_results.len() == items.len()
        {
            return Ok(data
                .batch_results
                .into_iter()
                .map(|r| match (r.ciphertext, r.error) {
                    (_, Some(e)) if !e.is_empty() => ItemOutcome::Refused(scrub(&e)),
                    (Some(c), _) if crate::transit::ciphertext_version(&c).is_some() => {
                        ItemOutcome::Rewrapped(c)
                    }
                    _ => ItemOutcome::Refused(
                        "the server returned no vault:vN: ciphertext for this value".into(),
                    ),
                })
                .collect());
        }
        let errors = serde_json::from_slice::<crate::transit::Errors>(&body)
            .map(|e| e.errors.join("; "))
            .unwrap_or_default();
        if status.is_success() {
            return Err(KmsError::Backend {
                provider: crate::ProviderKind::Transit,
                address: self.address().to_owned(),
                message: format!(
                    "a batch rewrap of {} values answered without {} results",
                    items.len(),
                    items.len()
                ),
            });
        }
        Err(self.classify(status, &errors, None).await)
    }

    /// A new data key wrapped by this key (`datakey/wrapped`): its
    /// `vault:vN:` ciphertext. The plaintext data key is not requested.
    pub async fn datakey_wrapped(&self, context: Option<&[u8]>) -> Result<String, KmsError> {
        let mut m = serde_json::Map::new();
        if let Some(c) = context {
            m.insert("context".into(), STANDARD.encode(c).into());
        }
        let body = self
            .call(
                self.client
                    .post(format!(
                        "{}/v1/{}/datakey/wrapped/{}",
                        self.address(),
                        self.mount(),
                        self.key_name()
                    ))
                    .json(&serde_json::Value::Object(m)),
                None,
            )
            .await?;
        let w: Wrapped = self.parse(&body, "a wrapped data key")?;
        Ok(w.ciphertext)
    }
}

/// A server message about one value, made safe to store: clipped, and
/// without anything that looks like a ciphertext echoed back.
fn scrub(message: &str) -> String {
    let words: Vec<&str> = message
        .split_whitespace()
        .map(|w| {
            if w.contains("vault:") || w.len() > 40 {
                "…"
            } else {
                w
            }
        })
        .collect();
    format!("transit refused the value: {}", clip(&words.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_errors_are_scrubbed() {
        let m = scrub("invalid ciphertext: vault:v1:c2VjcmV0c2VjcmV0c2VjcmV0 could not be decoded");
        assert!(!m.contains("c2Vj"), "{m}");
        assert!(m.starts_with("transit refused the value: invalid ciphertext:"));
    }

    #[test]
    fn too_large_is_recognized() {
        let e = KmsError::Backend {
            provider: crate::ProviderKind::Transit,
            address: "http://127.0.0.1:8200".into(),
            message: "HTTP 400: request too complex".into(),
        };
        assert!(is_too_large(&e));
        assert!(!is_too_large(&KmsError::Malformed("x".into())));
    }
}
