//! `codec = "aws-kms"` with `kms = "NAME"`: AWS KMS ciphertext blobs (raw
//! `Encrypt` output in a binary column, standard base64 in a text column)
//! re-encrypted by KMS `ReEncrypt` to the column's key, so neither the keys
//! nor the plaintext leave KMS.
//!
//! - Key: `key = "alias/new"` (a key id, key ARN, alias name or alias ARN),
//!   resolved to its ARN with `DescribeKey` when the plan is made; that ARN
//!   is the target the census and reports name.
//! - Encryption context: `encryption_context = { tenant = "tenant_id",
//!   app = "=billing" }`, each entry a column read as text per row, or a
//!   literal after `=`; the same context is passed as source and
//!   destination. A NULL context column makes the row a bad row.
//! - Calls: KMS has no batch call; `max_in_flight` calls at once and at
//!   most `max_requests_per_sec` a second (the `[kms.NAME]` section),
//!   throttling retried with backoff (keyturn-kms).
//! - A value KMS reports under the target already (`SourceKeyId`) is left
//!   as it is; `verify --deep` and `status --deep` learn each value's key
//!   from the same call's `SourceKeyId`, discarding the new blob.
//! - The value's own failures (damaged, not this KMS's, another encryption
//!   context) are bad rows; the server's (credentials, access, a disabled
//!   destination, unreachable, throttled past the retries) stop the run,
//!   resumable.

use super::{Finding, RemoteKeys, RemoteOutcome, RemoteRow, aux_value};
use crate::EngineError;
use crate::config::{ColumnConfig, EncodingConfig};
use keyturn_codecs::aws_kms::AwsKmsCodec;
use keyturn_db::{ColumnRef, ValueKind};
use keyturn_format::{Codec, Encoding, FormatError, KeyState};
use keyturn_kms::{AwsKmsKek, KmsError, ReEncrypted, ServerConfig};
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) fn validate(c: &ColumnConfig, ckey: &str) -> Result<(), EngineError> {
    let bad = |key: &str, why: &str| Err(EngineError::Config(format!("{ckey}.{key}: {why}")));
    match &c.key {
        None => {
            return bad(
                "key",
                "name the KMS key values are re-encrypted to: key = \"alias/NAME\" (or a key id or ARN)",
            );
        }
        Some(k) if k.trim().is_empty() => return bad("key", "the key is empty"),
        Some(_) => {}
    }
    for (k, set) in [
        ("key_column", c.key_column.is_some()),
        ("context_column", c.context_column.is_some()),
        ("context", c.context),
        ("key_catalog", c.key_catalog.is_some()),
        ("kms_keys", c.kms_keys.is_some()),
        ("target_key_id", c.target_key_id.is_some()),
        ("options", c.options.as_ref().is_some_and(|o| !o.is_empty())),
    ] {
        if set {
            return bad(
                k,
                "aws-kms with kms takes key, encryption_context and encoding (KMS finds each value's key in the value)",
            );
        }
    }
    if let Some(ec) = &c.encryption_context {
        for (name, v) in ec {
            if name.is_empty() {
                return bad("encryption_context", "a context key is empty");
            }
            if v.is_empty() {
                return bad(
                    "encryption_context",
                    "a context entry is empty: name a column, or give a literal after =",
                );
            }
        }
    }
    Ok(())
}

/// The column's encoding: `encoding` when set, else the column type's.
fn encoding_of(c: &ColumnConfig, col: &ColumnRef) -> Encoding {
    match (c.encoding, col.kind) {
        (Some(EncodingConfig::Text), _) | (None, ValueKind::Text) => Encoding::Text,
        (Some(EncodingConfig::Binary), _) | (None, ValueKind::Binary) => Encoding::Binary,
    }
}

/// The codec of an aws-kms column (no KMS asked).
pub(crate) fn codec(c: &ColumnConfig, col: &ColumnRef) -> AwsKmsCodec {
    AwsKmsCodec::new(encoding_of(c, col))
}

pub(crate) async fn open(
    server: &ServerConfig,
    c: &ColumnConfig,
    col: &ColumnRef,
) -> Result<(Arc<dyn Codec>, Arc<dyn RemoteKeys>), EngineError> {
    let key = c.key.as_deref().unwrap_or_default();
    let kek = server.aws(key).await?;
    let target = kek.describe_key(key).await?;
    let codec = codec(c, col);
    let remote = AwsValues {
        label: format!("AWS KMS key {target} at {}", kek.address()),
        target,
        kek,
        codec,
        cfg: c.clone(),
        in_flight: server.max_in_flight(),
    };
    Ok((Arc::new(codec), Arc::new(remote)))
}

/// See the [module docs](self).
struct AwsValues {
    label: String,
    /// The destination key's ARN.
    target: String,
    kek: AwsKmsKek,
    codec: AwsKmsCodec,
    cfg: ColumnConfig,
    in_flight: usize,
}

impl std::fmt::Debug for AwsValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsValues")
            .field("key", &self.label)
            .finish_non_exhaustive()
    }
}

/// A row ready for KMS: its blob and encryption context.
struct Pending {
    row: usize,
    blob: Vec<u8>,
    context: HashMap<String, String>,
}

/// Why a row was decided without KMS.
enum Skipped {
    /// Not a KMS blob (plaintext, garbage): the reason.
    NotThisFormat(String),
    /// A blob that cannot be sent (its context is incomplete): the reason.
    Bad(String),
}

impl AwsValues {
    fn context(&self, row: &RemoteRow<'_>) -> Result<HashMap<String, String>, String> {
        let mut out = HashMap::new();
        let Some(ec) = &self.cfg.encryption_context else {
            return Ok(out);
        };
        for (name, source) in ec {
            let v = match source.strip_prefix('=') {
                Some(literal) => literal.to_owned(),
                None => match aux_value(&self.cfg, row, source) {
                    Some(v) => v.to_owned(),
                    None => {
                        return Err(format!("the encryption context column {source} is NULL"));
                    }
                },
            };
            out.insert(name.clone(), v);
        }
        Ok(out)
    }

    /// Sorts rows into calls to make and rows decided here.
    fn prepare(&self, rows: &[RemoteRow<'_>]) -> (Vec<Pending>, Vec<(usize, Skipped)>) {
        let (mut send, mut skipped) = (Vec::new(), Vec::new());
        for (i, r) in rows.iter().enumerate() {
            let blob = match self.codec.blob(r.value) {
                Ok(b) => b,
                Err(
                    FormatError::Empty
                    | FormatError::BadTextEncoding(_)
                    | FormatError::Truncated(_),
                ) => {
                    skipped.push((
                        i,
                        Skipped::NotThisFormat(crate::scan::not_this_format("aws-kms")),
                    ));
                    continue;
                }
                Err(e) => {
                    skipped.push((i, Skipped::NotThisFormat(e.to_string())));
                    continue;
                }
            };
            match self.context(r) {
                Ok(context) => send.push(Pending {
                    row: i,
                    blob,
                    context,
                }),
                Err(why) => skipped.push((i, Skipped::Bad(why))),
            }
        }
        (send, skipped)
    }

    /// `ReEncrypt`s every pending row to the target, `in_flight` at once,
    /// in order. A per-value failure is that row's; any other stops here.
    async fn send(
        &self,
        pending: &[Pending],
    ) -> Result<Vec<(usize, Result<ReEncrypted, String>)>, EngineError> {
        use futures::StreamExt as _;
        let mut out = Vec::with_capacity(pending.len());
        // A loop, not a closure over the rows: the future must stay `Send`.
        let mut flying = futures::stream::FuturesOrdered::new();
        for p in pending {
            if flying.len() >= self.in_flight
                && let Some(done) = flying.next().await
            {
                out.push(settle(done)?);
            }
            flying.push_back(async move {
                let r = self
                    .kek
                    .re_encrypt_value(&p.blob, &self.target, &p.context, &p.context)
                    .await;
                (p.row, r)
            });
        }
        while let Some(done) = flying.next().await {
            out.push(settle(done)?);
        }
        Ok(out)
    }
}

/// A call's result for its row, or the server's error.
fn settle(
    (row, r): (usize, Result<ReEncrypted, KmsError>),
) -> Result<(usize, Result<ReEncrypted, String>), EngineError> {
    match r {
        Ok(r) => Ok((row, Ok(r))),
        Err(e) if e.is_per_value() => Ok((row, Err(e.to_string()))),
        Err(e) => Err(e.into()),
    }
}

/// Whether a key id is an AWS KMS key ARN (`arn:aws…:kms:…:key/…`).
fn is_key_arn(id: &str) -> bool {
    id.starts_with("arn:") && id.contains(":kms:") && id.contains(":key/")
}

#[async_trait::async_trait]
impl RemoteKeys for AwsValues {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn state(&self, key_id: &str) -> Option<KeyState> {
        if key_id == self.target {
            Some(KeyState::Primary)
        } else if is_key_arn(key_id) {
            // KMS decides whether it still decrypts.
            Some(KeyState::DecryptOnly)
        } else {
            None
        }
    }

    fn primary_prefix(&self) -> Option<Vec<u8>> {
        None
    }

    async fn rotate(&self, rows: &[RemoteRow<'_>]) -> Result<Vec<RemoteOutcome>, EngineError> {
        let (pending, skipped) = self.prepare(rows);
        let mut out: Vec<RemoteOutcome> = vec![RemoteOutcome::Current; rows.len()];
        for (i, s) in skipped {
            out[i] = match s {
                Skipped::NotThisFormat(why) | Skipped::Bad(why) => RemoteOutcome::Bad(why),
            };
        }
        let mut answered = vec![false; rows.len()];
        for (i, r) in self.send(&pending).await? {
            answered[i] = true;
            out[i] = match r {
                Ok(r) if r.source_key_id == self.target => RemoteOutcome::Current,
                Ok(r) if r.key_id != self.target => RemoteOutcome::Bad(
                    "KMS re-encrypted the value under another key than the column's".into(),
                ),
                Ok(r) => RemoteOutcome::Write(self.codec.store(&r.ciphertext)),
                Err(why) => RemoteOutcome::Bad(why),
            };
        }
        for p in &pending {
            if !answered[p.row] {
                out[p.row] = RemoteOutcome::Bad("KMS gave no outcome for this value".into());
            }
        }
        Ok(out)
    }

    async fn check(&self, rows: &[RemoteRow<'_>]) -> Result<Vec<Finding>, EngineError> {
        let (pending, skipped) = self.prepare(rows);
        let mut out: Vec<Finding> =
            vec![Finding::Bad("KMS gave no outcome for this value".into()); rows.len()];
        for (i, s) in skipped {
            out[i] = match s {
                Skipped::NotThisFormat(why) => Finding::NotThisFormat(why),
                Skipped::Bad(why) => Finding::Bad(why),
            };
        }
        for (i, r) in self.send(&pending).await? {
            out[i] = match r {
                Ok(r) => Finding::Under(r.source_key_id),
                Err(why) => Finding::Bad(why),
            };
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(toml: &str) -> ColumnConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn settings_are_checked() {
        let ok = column(
            "name = \"card\"\ncodec = \"aws-kms\"\nkms = \"aws\"\nkey = \"alias/new\"\nencryption_context = { tenant = \"tenant_id\", app = \"=billing\" }",
        );
        validate(&ok, "t.card").unwrap();
        let e = validate(
            &column("name = \"card\"\ncodec = \"aws-kms\"\nkms = \"aws\""),
            "t.card",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("t.card.key"), "{e}");
        let e = validate(
            &column("name = \"card\"\ncodec = \"aws-kms\"\nkms = \"aws\"\nkey = \"alias/new\"\nkey_column = \"k\""),
            "t.card",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("key_column"), "{e}");
        let e = validate(
            &column("name = \"card\"\ncodec = \"aws-kms\"\nkms = \"aws\"\nkey = \"alias/new\"\nencryption_context = { tenant = \"\" }"),
            "t.card",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("encryption_context"), "{e}");
    }

    #[test]
    fn key_arns_are_told_from_other_ids() {
        assert!(is_key_arn(
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
        assert!(!is_key_arn("alias/new"));
        assert!(!is_key_arn("v3"));
    }
}
