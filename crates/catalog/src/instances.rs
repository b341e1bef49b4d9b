//! Tracked application instances (opt-in): which running processes hold
//! which keys of a catalog, judged live or stale by the database's clock
//! against [`Policy::instance_ttl`](crate::Policy::instance_ttl).

use crate::lifecycle::InstanceFacts;
use crate::{Catalog, CatalogError};
use aws_lc_rs::digest::{Context, SHA256};
use keyturn_db::{InstanceHeartbeat, InstanceRow};
use keyturn_format::Keyring;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest label an application may give itself (characters).
pub const MAX_LABEL_LEN: usize = 200;

/// One tracked application instance as `keyturn keys instances` shows it.
/// Holds key ids, never keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceStatus {
    /// The id the instance registered under: 16 hex digits, unique per handle.
    pub instance_id: String,
    /// The label the application gave itself.
    pub label: String,
    /// The host name it runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: i64,
    /// Key ids its keyring decrypts with.
    pub key_ids: Vec<String>,
    /// The key id it encrypts with.
    #[serde(rename = "current_key_id")]
    pub primary: String,
    /// 16 hex digits identifying the keyring's ids, states and keys; equal fingerprints mean equal
    /// keyrings. Reveals nothing about the keys.
    pub keyring_fingerprint: String,
    /// When it was first seen (RFC 3339 UTC).
    pub first_seen: String,
    /// Its last heartbeat (RFC 3339 UTC).
    pub last_seen: String,
    /// Seconds since the last heartbeat, by the database's clock.
    pub seconds_since_seen: i64,
    /// Heartbeat within the instance TTL.
    pub live: bool,
}

impl InstanceStatus {
    fn from_row(row: InstanceRow, now: OffsetDateTime, ttl: time::Duration) -> InstanceStatus {
        let age = OffsetDateTime::parse(&row.last_seen, &Rfc3339)
            .map(|t| (now - t).whole_seconds())
            // An unreadable time counts as never seen: stale.
            .unwrap_or(i64::MAX);
        let h = row.heartbeat;
        InstanceStatus {
            instance_id: h.instance_id,
            label: h.label,
            host: h.host,
            pid: h.pid,
            key_ids: h.key_ids,
            primary: h.primary_key_id,
            keyring_fingerprint: h.keyring_fingerprint,
            first_seen: row.first_seen,
            last_seen: row.last_seen,
            seconds_since_seen: age,
            live: age <= ttl.whole_seconds(),
        }
    }

    /// `web-1 (host app-3, pid 4242, last seen 2026-01-10T12:00:00Z, 12 s ago, holds k1, k2)`.
    pub fn describe(&self) -> String {
        let ago = if self.seconds_since_seen == i64::MAX {
            "time unreadable".to_owned()
        } else {
            format!("{} s ago", self.seconds_since_seen.max(0))
        };
        format!(
            "{} (host {}, pid {}, last seen {}, {ago}, holds {})",
            self.label,
            self.host,
            self.pid,
            self.last_seen,
            if self.key_ids.is_empty() {
                "no key".to_owned()
            } else {
                self.key_ids.join(", ")
            }
        )
    }

    pub(crate) fn facts(&self) -> InstanceFacts {
        InstanceFacts {
            description: self.describe(),
            live: self.live,
            holds: self.key_ids.clone(),
        }
    }
}

impl Catalog {
    /// Every tracked instance of this catalog, most recently seen first,
    /// each marked live or stale by the database's clock.
    pub async fn instances(&self) -> Result<Vec<InstanceStatus>, CatalogError> {
        let snap = self.db().load_instances(self.name()).await?;
        let now = OffsetDateTime::parse(&snap.now, &Rfc3339).map_err(|e| {
            CatalogError::Invalid(format!(
                "the database reported its time as {:?}, not RFC 3339 ({e})",
                snap.now
            ))
        })?;
        let ttl = self.policy().instance_ttl;
        Ok(snap
            .instances
            .into_iter()
            .map(|r| InstanceStatus::from_row(r, now, ttl))
            .collect())
    }

    /// Removes the stale instances' rows (they crashed or stopped without
    /// `untrack`); returns those removed. A row is removed only while it
    /// still holds the heartbeat read here: an instance that came back in
    /// between stays listed, so `promote` keeps seeing it.
    pub async fn prune_instances(&self) -> Result<Vec<InstanceStatus>, CatalogError> {
        let mut removed = Vec::new();
        for i in self.instances().await?.into_iter().filter(|i| !i.live) {
            if self
                .db()
                .remove_instance(self.name(), &i.instance_id, Some(&i.last_seen))
                .await?
            {
                removed.push(i);
            }
        }
        Ok(removed)
    }
}

/// The key ids a keyring decrypts with (not retired), sorted.
pub(crate) fn held_key_ids(ring: &Keyring) -> Vec<String> {
    let mut ids: Vec<String> = ring
        .keys()
        .filter(|(_, s, _)| *s != keyturn_format::KeyState::Retired)
        .map(|(id, _, _)| id.as_str().to_owned())
        .collect();
    ids.sort();
    ids
}

/// 16 hex digits of SHA-256 over the keyring's ids, states and key
/// fingerprints: equal keyrings, equal fingerprints; reveals nothing about
/// the keys (their fingerprints already don't).
pub(crate) fn keyring_fingerprint(ring: &Keyring) -> String {
    let mut entries: Vec<String> = ring
        .keys()
        .map(|(id, s, k)| format!("{}:{}:{}", id.as_str(), s.name(), k.fingerprint()))
        .collect();
    entries.sort();
    let mut h = Context::new(&SHA256);
    h.update(b"keyturn keyring fingerprint v1\0");
    for e in &entries {
        h.update(e.as_bytes());
        h.update(b"\n");
    }
    hex::encode(&h.finish().as_ref()[..8])
}

/// A new instance id: 16 hex digits, unique per handle (host, process,
/// time, counter). Not a secret.
pub(crate) fn new_instance_id(host: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Context::new(&SHA256);
    h.update(host.as_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&nanos.to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hex::encode(&h.finish().as_ref()[..8])
}

/// The host name for instance rows.
pub(crate) use keyturn_db::host_name;

/// Checks an application's label: 1 to [`MAX_LABEL_LEN`] characters, no
/// control characters.
pub(crate) fn check_label(label: &str) -> Result<(), CatalogError> {
    let n = label.chars().count();
    if n == 0 || n > MAX_LABEL_LEN || label.chars().any(char::is_control) {
        return Err(CatalogError::Config(format!(
            "instance label must be 1 to {MAX_LABEL_LEN} characters without control characters (got {n} characters)"
        )));
    }
    Ok(())
}

/// The heartbeat of an instance holding `ring`.
pub(crate) fn heartbeat(
    catalog: &str,
    instance_id: &str,
    label: &str,
    host: &str,
    ring: &Keyring,
) -> InstanceHeartbeat {
    InstanceHeartbeat {
        catalog: catalog.to_owned(),
        instance_id: instance_id.to_owned(),
        host: host.to_owned(),
        pid: i64::from(std::process::id()),
        label: label.to_owned(),
        key_ids: held_key_ids(ring),
        primary_key_id: ring.primary_id().as_str().to_owned(),
        keyring_fingerprint: keyring_fingerprint(ring),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_format::{Algorithm, KeyId, KeyState, SecretKey};

    fn row(last_seen: &str, keys: &[&str]) -> InstanceRow {
        InstanceRow {
            heartbeat: InstanceHeartbeat {
                catalog: "c".into(),
                instance_id: "i1".into(),
                host: "h".into(),
                pid: 7,
                label: "web".into(),
                key_ids: keys.iter().map(|k| (*k).to_owned()).collect(),
                primary_key_id: "k1".into(),
                keyring_fingerprint: "00".into(),
            },
            first_seen: "2026-01-10T11:00:00Z".into(),
            last_seen: last_seen.into(),
        }
    }

    #[test]
    fn live_and_stale_by_the_database_clock() {
        let now = time::macros::datetime!(2026-01-10 12:00 UTC);
        let ttl = time::Duration::seconds(300);
        let s = InstanceStatus::from_row(row("2026-01-10T11:55:00Z", &["k1"]), now, ttl);
        assert!(s.live);
        assert_eq!(s.seconds_since_seen, 300);
        let s = InstanceStatus::from_row(row("2026-01-10T11:54:59Z", &["k1"]), now, ttl);
        assert!(!s.live);
        let d = s.describe();
        assert!(
            d.contains("web (host h, pid 7") && d.contains("301 s ago") && d.contains("holds k1")
        );
        let s = InstanceStatus::from_row(row("garbage", &[]), now, ttl);
        assert!(!s.live && s.describe().contains("holds no key"));
        assert!(check_label("web-1").is_ok());
        assert!(check_label("").is_err());
        assert!(check_label("a\nb").is_err());
        assert_ne!(new_instance_id("h"), new_instance_id("h"));
    }

    fn copy(k: &SecretKey) -> SecretKey {
        SecretKey::from_bytes(k.algorithm(), k.expose_bytes()).unwrap()
    }

    #[test]
    fn fingerprints_follow_the_keyring() {
        let k1 = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
        let k2 = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
        let ring = |p: KeyState, o: KeyState| {
            Keyring::builder()
                .add(KeyId::new("k1").unwrap(), copy(&k1), p)
                .add(KeyId::new("k2").unwrap(), copy(&k2), o)
                .build()
                .unwrap()
        };
        let a = ring(KeyState::Primary, KeyState::DecryptOnly);
        let b = ring(KeyState::Primary, KeyState::Retired);
        assert_eq!(held_key_ids(&a), vec!["k1", "k2"]);
        assert_eq!(held_key_ids(&b), vec!["k1"]);
        assert_ne!(keyring_fingerprint(&a), keyring_fingerprint(&b));
        assert_eq!(keyring_fingerprint(&a), keyring_fingerprint(&a));
        let hb = heartbeat("c", "i", "web", "h", &a);
        let text = format!("{hb:?}{}", serde_json::to_string(&hb).unwrap());
        for k in [&k1, &k2] {
            assert!(!text.contains(&hex::encode(k.expose_bytes())));
        }
    }
}
