//! `codec = "vault-transit"` with `kms = "NAME"`: `vault:vN:` values
//! rewrapped by Vault/OpenBao transit to the key's latest version
//! (`POST <mount>/rewrap/<key>` with `batch_input`), the key never leaving
//! the server and no plaintext coming back.
//!
//! - Key: `key = "NAME"` for the column, or `key_column` naming each row's key.
//! - Derived keys: the context per row from `context_column` (its text as
//!   bytes), or with `context = true` the text `table.column:pk` (a
//!   composite key's parts joined by `,`), both sent base64.
//! - Batches: `batch_items` values per request (halved while the server
//!   refuses a request as too large), `max_in_flight` requests at once.
//! - `verify --deep` rewraps each value and discards the result: the server
//!   proves it decrypts without returning its plaintext.

use super::{Finding, RemoteKeys, RemoteOutcome, RemoteRow, aux_value};
use crate::EngineError;
use crate::config::ColumnConfig;
use backon::Retryable;
use keyturn_codecs::vault::VaultTransitCodec;
use keyturn_db::ColumnRef;
use keyturn_format::{Codec, Inspection, KeyState};
use keyturn_kms::{ItemOutcome, KmsError, ServerConfig, TransitItem, TransitKek, TransitKeyInfo};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// Attempts of one rewrap request on a transient failure (unreachable, 5xx,
/// throttled): the first and up to four retries.
const ATTEMPTS: usize = 5;

/// The pauses between [`ATTEMPTS`] attempts of a rewrap request: 100 ms,
/// doubling, each lengthened by random jitter of up to its own length, so
/// pause `n` lies between half and all of `200 ms × 2ⁿ`: under 3 s in all
/// before the run stops (resumable) on a server that stays down. Short, as
/// the server answers a batch in milliseconds, and jittered, as
/// `max_in_flight` requests fail together when the server does.
fn rewrap_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_factor(2.0)
        .without_max_delay()
        .with_jitter()
        .with_max_times(ATTEMPTS - 1)
}

/// Whether a failed rewrap request of `size` items is sent again as it is:
/// a transient failure, unless the server refused it as too large and it
/// can still be split (a single item refused as too large is retried like
/// any other server error).
fn retry_rewrap(e: &KmsError, size: usize) -> bool {
    e.is_transient() && !(keyturn_kms::is_too_large(e) && size > 1)
}

pub(crate) fn validate(c: &ColumnConfig, ckey: &str) -> Result<(), EngineError> {
    let bad = |key: &str, why: &str| Err(EngineError::Config(format!("{ckey}.{key}: {why}")));
    match (&c.key, &c.key_column) {
        (None, None) => {
            return bad(
                "key",
                "name the transit key: key = \"NAME\" (or key_column = \"COLUMN\" for a key per row)",
            );
        }
        (Some(_), Some(_)) => return bad("key_column", "give key or key_column, not both"),
        _ => {}
    }
    if c.context && c.context_column.is_some() {
        return bad(
            "context_column",
            "give context_column or context = true, not both",
        );
    }
    for (k, set) in [
        ("encryption_context", c.encryption_context.is_some()),
        ("key_catalog", c.key_catalog.is_some()),
        ("kms_keys", c.kms_keys.is_some()),
        ("target_key_id", c.target_key_id.is_some()),
        ("options", c.options.as_ref().is_some_and(|o| !o.is_empty())),
    ] {
        if set {
            return bad(
                k,
                "vault-transit with kms takes key, key_column, context_column or context",
            );
        }
    }
    Ok(())
}

pub(crate) async fn open(
    server: &ServerConfig,
    c: &ColumnConfig,
    col: &ColumnRef,
) -> Result<(Arc<dyn Codec>, Arc<dyn RemoteKeys>), EngineError> {
    let base = server.transit(c.key.as_deref().unwrap_or("keyturn-per-row"))?;
    let fixed = match &c.key {
        Some(_) => {
            let info = base.key_info().await?;
            check_type(&base, &info)?;
            if info.derived && !c.context && c.context_column.is_none() {
                return Err(EngineError::Config(format!(
                    "{}.{}: transit key {} is derived: each value needs its context; set context_column = \"COLUMN\" or context = true",
                    col.table,
                    col.column,
                    base.key_name()
                )));
            }
            Some(info)
        }
        None => None,
    };
    let fixed = match fixed {
        Some(info) => Some((Arc::new(server.transit(base.key_name())?), info)),
        None => None,
    };
    let remote = TransitValues {
        label: match &fixed {
            Some((_, i)) => format!(
                "transit key {} (mount {}) at {}: latest version v{}, min_decryption_version {}",
                base.key_name(),
                base.mount(),
                base.address(),
                i.latest_version,
                i.min_decryption_version
            ),
            None => format!(
                "transit keys named per row by {} (mount {}) at {}",
                c.key_column.as_deref().unwrap_or_default(),
                base.mount(),
                base.address()
            ),
        },
        target: match &fixed {
            Some((_, i)) => format!("v{}", i.latest_version),
            None => "latest".into(),
        },
        fixed,
        base,
        keys: Mutex::new(HashMap::new()),
        cfg: c.clone(),
        batch_items: AtomicUsize::new(server.batch_items()),
        in_flight: server.max_in_flight(),
    };
    Ok((Arc::new(VaultTransitCodec), Arc::new(remote)))
}

fn check_type(k: &TransitKek, info: &TransitKeyInfo) -> Result<(), EngineError> {
    if matches!(
        info.key_type.as_str(),
        "aes256-gcm96" | "aes128-gcm96" | "chacha20-poly1305" | "xchacha20-poly1305"
    ) {
        Ok(())
    } else {
        Err(EngineError::Config(format!(
            "transit key {}: its type {} does not encrypt; rewrap needs an encryption key (aes256-gcm96, chacha20-poly1305)",
            k.key_name(),
            keyturn_format::shown(&info.key_type)
        )))
    }
}

/// See the [module docs](self).
struct TransitValues {
    label: String,
    target: String,
    /// The column's key (`key = …`) and its versions; `None` with `key_column`.
    fixed: Option<(Arc<TransitKek>, TransitKeyInfo)>,
    base: TransitKek,
    /// Per-row keys met so far, with their versions.
    keys: Mutex<HashMap<String, (Arc<TransitKek>, TransitKeyInfo)>>,
    cfg: ColumnConfig,
    batch_items: AtomicUsize,
    in_flight: usize,
}

impl std::fmt::Debug for TransitValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitValues")
            .field("key", &self.label)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A row decided without asking the server.
#[derive(Clone)]
enum Decided {
    /// Already under the latest version.
    Current,
    /// Cannot be rewrapped: its version (when it has one) and why.
    Refused(Option<u64>, String),
}

/// A row ready for the server: the key it goes to, its ciphertext and context.
struct Pending {
    row: usize,
    key: Arc<TransitKek>,
    ciphertext: String,
    context: Option<Vec<u8>>,
}

fn version_of(value: &[u8]) -> Result<u64, String> {
    match VaultTransitCodec.inspect(value) {
        Inspection::UnderKey(v) => v[1..]
            .parse()
            .map_err(|_| "a Vault key version is v<N>, N >= 1".to_string()),
        Inspection::NotThisFormat => Err(crate::scan::not_this_format("vault-transit")),
        Inspection::Invalid(e) => Err(e.to_string()),
        _ => Err(crate::scan::not_this_format("vault-transit")),
    }
}

impl TransitValues {
    /// The key and its versions for a row.
    async fn key_for(
        &self,
        row: &RemoteRow<'_>,
    ) -> Result<Result<(Arc<TransitKek>, TransitKeyInfo), String>, EngineError> {
        if let Some((k, info)) = &self.fixed {
            return Ok(Ok((k.clone(), info.clone())));
        }
        let col = self.cfg.key_column.as_deref().unwrap_or_default();
        let Some(name) = aux_value(&self.cfg, row, col) else {
            return Ok(Err(format!("the key column {col} is NULL")));
        };
        let mut keys = self.keys.lock().await;
        if let Some((k, i)) = keys.get(name) {
            return Ok(Ok((k.clone(), i.clone())));
        }
        let k = match self.base.for_key(name) {
            Ok(k) => k,
            Err(_) => {
                return Ok(Err(format!(
                    "the key column {col} does not hold a transit key name"
                )));
            }
        };
        let info = match k.key_info().await {
            Ok(i) => i,
            Err(KmsError::KeyNotFound { .. }) => {
                return Ok(Err(format!(
                    "the key column {col} names a transit key that does not exist"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let k = Arc::new(k);
        keys.insert(name.to_owned(), (k.clone(), info.clone()));
        Ok(Ok((k, info)))
    }

    fn context(&self, row: &RemoteRow<'_>, derived: bool) -> Result<Option<Vec<u8>>, String> {
        if let Some(col) = &self.cfg.context_column {
            return match aux_value(&self.cfg, row, col) {
                Some(v) => Ok(Some(v.as_bytes().to_vec())),
                None if derived => Err(format!("the context column {col} is NULL")),
                None => Ok(None),
            };
        }
        if self.cfg.context {
            return Ok(Some(row_context(row.context)));
        }
        Ok(None)
    }

    /// Sorts rows into ready-to-send items and rows decided without the
    /// server. `all`: send rows already at the latest version too (a check).
    async fn prepare(
        &self,
        rows: &[RemoteRow<'_>],
        all: bool,
        decided: &mut [Option<Decided>],
    ) -> Result<Vec<Pending>, EngineError> {
        let mut out = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let v = match version_of(r.value) {
                Ok(v) => v,
                Err(why) => {
                    decided[i] = Some(Decided::Refused(None, why));
                    continue;
                }
            };
            let (key, info) = match self.key_for(r).await? {
                Ok(k) => k,
                Err(why) => {
                    decided[i] = Some(Decided::Refused(Some(v), why));
                    continue;
                }
            };
            if v > info.latest_version {
                decided[i] = Some(Decided::Refused(
                    Some(v),
                    format!(
                        "key version v{v} is newer than the key's latest (v{})",
                        info.latest_version
                    ),
                ));
                continue;
            }
            if v < info.min_decryption_version {
                decided[i] = Some(Decided::Refused(
                    Some(v),
                    format!(
                        "key version v{v} is below the key's min_decryption_version ({}): the server no longer decrypts it",
                        info.min_decryption_version
                    ),
                ));
                continue;
            }
            if v == info.latest_version && !all {
                decided[i] = Some(Decided::Current);
                continue;
            }
            let context = match self.context(r, info.derived) {
                Ok(c) => c,
                Err(why) => {
                    decided[i] = Some(Decided::Refused(Some(v), why));
                    continue;
                }
            };
            let Ok(ct) = std::str::from_utf8(r.value) else {
                decided[i] = Some(Decided::Refused(
                    None,
                    crate::scan::not_this_format("vault-transit"),
                ));
                continue;
            };
            out.push(Pending {
                row: i,
                key,
                ciphertext: ct.to_owned(),
                context,
            });
        }
        Ok(out)
    }

    /// Sends the items, grouped by key, in batches; outcomes by row index.
    async fn send(&self, pending: &[Pending]) -> Result<Vec<(usize, ItemOutcome)>, EngineError> {
        let mut out = Vec::with_capacity(pending.len());
        let mut by_key: Vec<(String, Vec<&Pending>)> = Vec::new();
        for p in pending {
            match by_key.iter_mut().find(|(k, _)| k == p.key.key_name()) {
                Some((_, v)) => v.push(p),
                None => by_key.push((p.key.key_name().to_owned(), vec![p])),
            }
        }
        for (_, group) in by_key {
            use futures::StreamExt as _;
            let size = self.batch_items.load(Ordering::Relaxed).max(1);
            // At most `in_flight` requests at once, a new one as soon as any
            // answers (outcomes carry their row index, so the order of
            // answers does not matter; in order, one slow request held back
            // the requests behind it). A loop, not a closure over chunks:
            // the future must stay `Send`.
            let mut flying = futures::stream::FuturesUnordered::new();
            for chunk in group.chunks(size) {
                if flying.len() >= self.in_flight
                    && let Some(done) = flying.next().await
                {
                    out.extend(done?);
                }
                flying.push(self.send_chunk(chunk));
            }
            while let Some(done) = flying.next().await {
                out.extend(done?);
            }
        }
        Ok(out)
    }

    /// One request, split while the server finds it too large, retried on
    /// transient failures.
    async fn send_chunk(
        &self,
        chunk: &[&Pending],
    ) -> Result<Vec<(usize, ItemOutcome)>, EngineError> {
        let mut out = Vec::with_capacity(chunk.len());
        let mut rest: &[&Pending] = chunk;
        while !rest.is_empty() {
            let size = self
                .batch_items
                .load(Ordering::Relaxed)
                .min(rest.len())
                .max(1);
            let (now, later) = rest.split_at(size);
            let items: Vec<TransitItem<'_>> = now
                .iter()
                .map(|p| TransitItem {
                    ciphertext: &p.ciphertext,
                    context: p.context.as_deref(),
                })
                .collect();
            let sent = (|| now[0].key.rewrap_values(&items))
                .retry(rewrap_backoff())
                .when(|e: &KmsError| retry_rewrap(e, size))
                .notify(|e: &KmsError, pause: Duration| {
                    tracing::warn!("transit rewrap: {e}; retrying in {} ms", pause.as_millis());
                })
                .await;
            let got = match sent {
                Ok(r) => Some(r),
                Err(e) if keyturn_kms::is_too_large(&e) && size > 1 => {
                    self.batch_items.store((size / 2).max(1), Ordering::Relaxed);
                    tracing::info!(
                        "transit refused {size} items in one request; sending {} per request",
                        (size / 2).max(1)
                    );
                    None
                }
                Err(e) => return Err(e.into()),
            };
            match got {
                Some(r) => {
                    out.extend(now.iter().map(|p| p.row).zip(r));
                    rest = later;
                }
                // Split: the same items again, fewer per request.
                None => continue,
            }
        }
        Ok(out)
    }
}

/// `table.column:pk` (a composite key's parts joined by `,`) from the
/// engine's context parts (table, column, then each key part).
fn row_context(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    if let [table, column, pk @ ..] = parts {
        out.extend_from_slice(table);
        out.push(b'.');
        out.extend_from_slice(column);
        out.push(b':');
        for (i, p) in pk.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(p);
        }
    }
    out
}

#[async_trait::async_trait]
impl RemoteKeys for TransitValues {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn state(&self, key_id: &str) -> Option<KeyState> {
        let v: u64 = key_id.strip_prefix('v')?.parse().ok()?;
        let Some((_, info)) = &self.fixed else {
            // Per-row keys: SQL cannot tell; each row is decided with its key.
            return Some(KeyState::DecryptOnly);
        };
        if v == info.latest_version {
            Some(KeyState::Primary)
        } else if v > info.latest_version || v == 0 {
            None
        } else if v < info.min_decryption_version {
            Some(KeyState::Retired)
        } else {
            Some(KeyState::DecryptOnly)
        }
    }

    fn primary_prefix(&self) -> Option<Vec<u8>> {
        self.fixed
            .as_ref()
            .map(|(_, i)| format!("vault:v{}:", i.latest_version).into_bytes())
    }

    async fn rotate(&self, rows: &[RemoteRow<'_>]) -> Result<Vec<RemoteOutcome>, EngineError> {
        let mut decided = vec![None; rows.len()];
        let pending = self.prepare(rows, false, &mut decided).await?;
        let mut out: Vec<RemoteOutcome> = decided
            .into_iter()
            .map(|d| match d {
                Some(Decided::Current) => RemoteOutcome::Current,
                Some(Decided::Refused(_, why)) => RemoteOutcome::Bad(why),
                None => RemoteOutcome::Bad(String::new()),
            })
            .collect();
        for (i, o) in self.send(&pending).await? {
            out[i] = match o {
                ItemOutcome::Rewrapped(ct) => RemoteOutcome::Write(ct.into_bytes()),
                ItemOutcome::Refused(why) => RemoteOutcome::Bad(why),
                _ => RemoteOutcome::Bad("transit gave no outcome for this value".into()),
            };
        }
        Ok(out)
    }

    async fn retire_older(&self) -> Result<Option<String>, EngineError> {
        let Some((k, planned)) = &self.fixed else {
            return Err(EngineError::Usage(
                "keys named per row (key_column): raise each key's min_decryption_version in the server (`bao write <mount>/keys/<name>/config min_decryption_version=N`)".into(),
            ));
        };
        let now = k.key_info().await?;
        if now.latest_version != planned.latest_version {
            return Err(EngineError::Refused(format!(
                "transit key {} was rotated again (now v{}, the rows were checked against v{}): run `keyturn rotate` again first",
                k.key_name(),
                now.latest_version,
                planned.latest_version
            )));
        }
        if now.min_decryption_version >= now.latest_version {
            return Ok(Some(format!(
                "transit key {}: min_decryption_version is already {} (the latest version)",
                k.key_name(),
                now.min_decryption_version
            )));
        }
        k.set_min_decryption_version(now.latest_version).await?;
        Ok(Some(format!(
            "transit key {}: min_decryption_version raised from {} to {}; versions below v{} no longer decrypt",
            k.key_name(),
            now.min_decryption_version,
            now.latest_version,
            now.latest_version
        )))
    }

    async fn check(&self, rows: &[RemoteRow<'_>]) -> Result<Vec<Finding>, EngineError> {
        let mut decided = vec![None; rows.len()];
        let pending = self.prepare(rows, true, &mut decided).await?;
        let mut out: Vec<Finding> = decided
            .into_iter()
            .map(|d| match d {
                Some(Decided::Current) => Finding::Under(self.target.clone()),
                Some(Decided::Refused(Some(v), why)) => Finding::Unusable(format!("v{v}"), why),
                Some(Decided::Refused(None, why)) => Finding::NotThisFormat(why),
                None => Finding::Bad(String::new()),
            })
            .collect();
        for (i, o) in self.send(&pending).await? {
            let v = version_of(rows[i].value).unwrap_or_default();
            out[i] = match o {
                ItemOutcome::Rewrapped(_) => Finding::Under(format!("v{v}")),
                ItemOutcome::Refused(why) => Finding::Bad(why),
                _ => Finding::Bad("transit gave no outcome for this value".into()),
            };
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_context_joins_the_key_parts() {
        let parts = vec![
            b"users".to_vec(),
            b"ssn".to_vec(),
            b"7".to_vec(),
            b"eu".to_vec(),
        ];
        assert_eq!(row_context(&parts), b"users.ssn:7,eu");
    }

    #[test]
    fn versions_are_read_from_the_prefix() {
        assert_eq!(
            version_of(b"vault:v12:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap(),
            12
        );
        assert!(
            version_of(b"plain text")
                .unwrap_err()
                .contains("not a vault-transit")
        );
        assert!(version_of(b"vault:v0:AAAA").is_err());
    }

    fn backend(message: &str) -> KmsError {
        KmsError::Backend {
            provider: keyturn_kms::ProviderKind::Transit,
            address: "http://127.0.0.1:8200".into(),
            message: message.into(),
        }
    }

    #[test]
    fn transient_failures_are_retried_and_too_large_batches_split() {
        let down = KmsError::Unreachable {
            provider: keyturn_kms::ProviderKind::Transit,
            address: "http://127.0.0.1:8200".into(),
            reason: "connection refused".into(),
        };
        assert!(retry_rewrap(&down, 100));
        assert!(retry_rewrap(&backend("HTTP 503: sealed"), 100));
        assert!(retry_rewrap(
            &backend("HTTP 429: rate limit quota exceeded"),
            1
        ));
        // Too large: split at once, unless one item is all there is.
        let too_large = backend("HTTP 413: request body too large");
        assert!(!retry_rewrap(&too_large, 2));
        assert!(retry_rewrap(&too_large, 1));
        // The server's answer about the request or the key: not retried.
        let denied = KmsError::AccessDenied {
            provider: keyturn_kms::ProviderKind::Transit,
            kek: "app".into(),
            detail: "permission denied".into(),
        };
        assert!(!retry_rewrap(&denied, 100));
        assert!(!retry_rewrap(
            &KmsError::Malformed("not base64".into()),
            100
        ));
    }

    #[test]
    fn rewrap_backoff_is_bounded_and_jittered() {
        use backon::BackoffBuilder;
        let pauses: Vec<Duration> = rewrap_backoff().build().collect();
        assert_eq!(pauses.len(), ATTEMPTS - 1);
        let total: Duration = pauses.iter().sum();
        assert!(total <= Duration::from_millis(3_001), "{total:?}");
        assert!(pauses[0] >= Duration::from_millis(99), "{pauses:?}");
        assert_ne!(pauses, rewrap_backoff().build().collect::<Vec<_>>());
    }
}
