//! A keyring: several versions of a key at once, exactly one of them primary.

use crate::error::FormatError;
use crate::key_id::KeyId;
use crate::secret::SecretKey;
use crate::v1::{self, Encoding};
use std::collections::HashMap;
use std::fmt;
use zeroize::Zeroizing;

/// What a key of the ring may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyState {
    /// Encrypts new values; decrypts.
    Primary,
    /// Decrypts only: a key being rolled out, or an old key during the
    /// rotation window.
    DecryptOnly,
    /// Refuses to decrypt unless the ring explicitly allows retired keys.
    Retired,
}

impl KeyState {
    /// The state's name as in configuration and output (`primary`, `decrypt-only`, `retired`).
    pub fn name(self) -> &'static str {
        match self {
            KeyState::Primary => "primary",
            KeyState::DecryptOnly => "decrypt-only",
            KeyState::Retired => "retired",
        }
    }
}

struct Entry {
    id: KeyId,
    state: KeyState,
    key: SecretKey,
}

/// Several keys by id; exactly one primary.
pub struct Keyring {
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    primary: usize,
    allow_retired: bool,
}

/// Collects keys, then checks the ring's invariants once in [`build`](Self::build).
#[derive(Default)]
pub struct KeyringBuilder {
    entries: Vec<Entry>,
    allow_retired: bool,
}

impl fmt::Debug for KeyringBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyringBuilder({} keys)", self.entries.len())
    }
}

impl KeyringBuilder {
    /// Adds a key with its id and state; checks happen in [`KeyringBuilder::build`].
    pub fn add(mut self, id: KeyId, key: SecretKey, state: KeyState) -> Self {
        self.entries.push(Entry { id, state, key });
        self
    }

    /// Lets retired keys decrypt (e.g. to restore an old backup).
    pub fn allow_retired(mut self, allow: bool) -> Self {
        self.allow_retired = allow;
        self
    }

    /// Builds the keyring: fails with [`FormatError::Keyring`] if no key was
    /// added, an id appears twice, or there is no primary key or more than one.
    pub fn build(self) -> Result<Keyring, FormatError> {
        let mut index = HashMap::new();
        let mut primary = None;
        for (i, e) in self.entries.iter().enumerate() {
            if index.insert(e.id.as_str().to_owned(), i).is_some() {
                return Err(FormatError::Keyring(format!(
                    "key id {:?} appears twice",
                    e.id.as_str()
                )));
            }
            if e.state == KeyState::Primary {
                if let Some(p) = primary {
                    let first: &Entry = &self.entries[p];
                    return Err(FormatError::Keyring(format!(
                        "two current keys ({:?} and {:?}) named primary; exactly one key encrypts",
                        first.id.as_str(),
                        e.id.as_str()
                    )));
                }
                primary = Some(i);
            }
        }
        let primary = match primary {
            Some(p) => p,
            None if self.entries.is_empty() => {
                return Err(FormatError::Keyring("no keys loaded".into()));
            }
            None => {
                return Err(FormatError::Keyring(format!(
                    "no current key among {}; name the one that encrypts (primary = …)",
                    self.entries
                        .iter()
                        .map(|e| format!("{:?}", e.id.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        Ok(Keyring {
            entries: self.entries,
            index,
            primary,
            allow_retired: self.allow_retired,
        })
    }
}

/// The outcome of [`Keyring::reencrypt`].
#[derive(Debug)]
pub enum Reencrypted {
    /// Already under the primary key: nothing to do (not decrypted).
    AlreadyPrimary,
    /// The value re-encrypted under the primary key.
    Rotated(Vec<u8>),
}

impl Keyring {
    /// Starts an empty keyring; add keys, then call [`KeyringBuilder::build`].
    pub fn builder() -> KeyringBuilder {
        KeyringBuilder::default()
    }

    /// Builds a ring from keys whose states are decided by `primary`: that id
    /// becomes primary, every other key decrypt-only, ids in `retired` retired.
    /// With a single key and no `primary`, that key is primary.
    pub fn from_keys(
        keys: Vec<(KeyId, SecretKey)>,
        primary: Option<&str>,
        retired: &[String],
    ) -> Result<Keyring, FormatError> {
        // A configured id is echoed only if it has a key id's shape: a key
        // spec pasted as `primary` must not end up in a message.
        let unknown = |what: &str, id: &str| {
            if crate::key_id::is_showable(id) {
                FormatError::UnknownKey(id.to_owned())
            } else {
                FormatError::Keyring(format!(
                    "the {what} key id is not a valid key id (1-32 characters A-Za-z0-9._-) or looks like key material; its value is not shown"
                ))
            }
        };
        let primary_id = match primary {
            Some(p) => {
                if !keys.iter().any(|(id, _)| id.as_str() == p) {
                    return Err(unknown("primary", p));
                }
                p.to_owned()
            }
            None if keys.len() == 1 => keys[0].0.as_str().to_owned(),
            None => {
                return Err(FormatError::Keyring(format!(
                    "{} keys loaded and none named primary; name the one that encrypts",
                    keys.len()
                )));
            }
        };
        if let Some(r) = retired
            .iter()
            .find(|r| !keys.iter().any(|(id, _)| id.as_str() == r.as_str()))
        {
            return Err(unknown("retired", r));
        }
        if retired.contains(&primary_id) {
            return Err(FormatError::Keyring(format!(
                "key {primary_id:?} cannot be both primary and retired"
            )));
        }
        let mut b = Keyring::builder();
        for (id, key) in keys {
            let state = if id.as_str() == primary_id {
                KeyState::Primary
            } else if retired.iter().any(|r| r == id.as_str()) {
                KeyState::Retired
            } else {
                KeyState::DecryptOnly
            };
            b = b.add(id, key, state);
        }
        b.build()
    }

    /// Lets retired keys decrypt (or not), e.g. to restore an old backup.
    pub fn allow_retired(mut self, allow: bool) -> Keyring {
        self.allow_retired = allow;
        self
    }

    /// The id of the primary key, the one that encrypts.
    pub fn primary_id(&self) -> &KeyId {
        &self.entries[self.primary].id
    }

    /// The primary key's material, the one that encrypts.
    pub fn primary_key(&self) -> &SecretKey {
        &self.entries[self.primary].key
    }

    /// Ids and states of every key, in load order.
    pub fn keys(&self) -> impl Iterator<Item = (&KeyId, KeyState, &SecretKey)> {
        self.entries.iter().map(|e| (&e.id, e.state, &e.key))
    }

    /// The state of the key with this id, or `None` if no loaded key has it.
    pub fn state(&self, id: &str) -> Option<KeyState> {
        self.entry(id).map(|e| e.state)
    }

    /// Whether a key with this id is loaded (whatever its state).
    pub fn contains(&self, id: &str) -> bool {
        self.entry(id).is_some()
    }

    fn entry(&self, id: &str) -> Option<&Entry> {
        // A ring rarely holds more than a handful of keys: comparing a few
        // short ids beats hashing one.
        if self.entries.len() <= 8 {
            self.entries.iter().find(|e| e.id.as_str() == id)
        } else {
            self.index.get(id).map(|&i| &self.entries[i])
        }
    }

    /// The key that may decrypt values under `id`.
    pub fn decryption_key(&self, id: &str) -> Result<&SecretKey, FormatError> {
        let e = self
            .entry(id)
            .ok_or_else(|| FormatError::UnknownKey(id.to_owned()))?;
        if e.state == KeyState::Retired && !self.allow_retired {
            return Err(FormatError::KeyRetired(id.to_owned()));
        }
        Ok(&e.key)
    }

    /// Encrypts under the primary key.
    pub fn encrypt(
        &self,
        plaintext: &[u8],
        context: &[&[u8]],
        encoding: Encoding,
    ) -> Result<Vec<u8>, FormatError> {
        let e = &self.entries[self.primary];
        v1::seal(&e.key, &e.id, plaintext, context, encoding)
    }

    /// Decrypts a value of either encoding with whichever key its header names.
    pub fn decrypt(
        &self,
        stored: &[u8],
        context: &[&[u8]],
    ) -> Result<Zeroizing<Vec<u8>>, FormatError> {
        let parsed = v1::parse(stored)?;
        let key = self.decryption_key(parsed.header.key_id)?;
        v1::open(key, &parsed, context)
    }

    /// Whether a value is under a key other than the primary, answered from
    /// the header alone (nothing is decrypted). Errors for values that are not
    /// v1 ciphertexts.
    pub fn needs_rotation(&self, stored: &[u8]) -> Result<bool, FormatError> {
        let h = v1::peek(stored)?;
        Ok(h.key_id != self.primary_id().as_str())
    }

    /// Re-encrypts a value under the primary key, in the same encoding.
    pub fn reencrypt(&self, stored: &[u8], context: &[&[u8]]) -> Result<Reencrypted, FormatError> {
        v1::with_parsed(stored, |parsed| {
            let primary = &self.entries[self.primary];
            if parsed.header.key_id == primary.id.as_str() {
                return Ok(Reencrypted::AlreadyPrimary);
            }
            let key = self.decryption_key(parsed.header.key_id)?;
            // Decrypts straight into the new value's buffer: no separate
            // plaintext allocation.
            v1::reseal(key, parsed, context, &primary.key, &primary.id).map(Reencrypted::Rotated)
        })
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_list();
        for e in &self.entries {
            l.entry(&format_args!(
                "{} ({}, {}, fingerprint {})",
                e.id,
                e.key.kind().name(),
                e.state.name(),
                e.key.fingerprint()
            ));
        }
        l.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Algorithm;

    fn k(b: u8) -> SecretKey {
        SecretKey::from_bytes(Algorithm::Aes256Gcm, &[b; 32]).unwrap()
    }

    fn ring() -> Keyring {
        Keyring::builder()
            .add(KeyId::new("k1").unwrap(), k(1), KeyState::DecryptOnly)
            .add(KeyId::new("k2").unwrap(), k(2), KeyState::Primary)
            .add(KeyId::new("k0").unwrap(), k(0), KeyState::Retired)
            .build()
            .unwrap()
    }

    #[test]
    fn exactly_one_primary() {
        let two = Keyring::builder()
            .add(KeyId::new("a").unwrap(), k(1), KeyState::Primary)
            .add(KeyId::new("b").unwrap(), k(2), KeyState::Primary)
            .build();
        assert!(two.unwrap_err().to_string().contains("two current keys"));
        let none = Keyring::builder()
            .add(KeyId::new("a").unwrap(), k(1), KeyState::DecryptOnly)
            .build();
        assert!(none.unwrap_err().to_string().contains("no current key"));
        let dup = Keyring::builder()
            .add(KeyId::new("a").unwrap(), k(1), KeyState::Primary)
            .add(KeyId::new("a").unwrap(), k(2), KeyState::DecryptOnly)
            .build();
        assert!(dup.unwrap_err().to_string().contains("appears twice"));
    }

    #[test]
    fn rotation_window() {
        let r = ring();
        let old = v1::seal(&k(1), &KeyId::new("k1").unwrap(), b"v", &[], Encoding::Text).unwrap();
        assert!(r.needs_rotation(&old).unwrap());
        let Reencrypted::Rotated(new) = r.reencrypt(&old, &[]).unwrap() else {
            panic!("expected rotation")
        };
        assert!(!r.needs_rotation(&new).unwrap());
        assert!(new.starts_with(b"kt1:k2:a:"));
        assert!(matches!(
            r.reencrypt(&new, &[]).unwrap(),
            Reencrypted::AlreadyPrimary
        ));
        assert_eq!(&r.decrypt(&new, &[]).unwrap()[..], b"v");
    }

    #[test]
    fn retired_and_unknown_keys_name_the_id() {
        let r = ring();
        let retired = v1::seal(
            &k(0),
            &KeyId::new("k0").unwrap(),
            b"v",
            &[],
            Encoding::Binary,
        )
        .unwrap();
        assert_eq!(
            r.decrypt(&retired, &[]).unwrap_err(),
            FormatError::KeyRetired("k0".into())
        );
        let unknown = v1::seal(
            &k(9),
            &KeyId::new("k9").unwrap(),
            b"v",
            &[],
            Encoding::Binary,
        )
        .unwrap();
        let e = r.decrypt(&unknown, &[]).unwrap_err();
        assert!(e.to_string().contains("\"k9\""), "{e}");
        let allowed = Keyring::builder()
            .add(KeyId::new("k0").unwrap(), k(0), KeyState::Retired)
            .add(KeyId::new("k2").unwrap(), k(2), KeyState::Primary)
            .allow_retired(true)
            .build()
            .unwrap();
        assert_eq!(&allowed.decrypt(&retired, &[]).unwrap()[..], b"v");
    }

    #[test]
    fn from_keys_picks_primary() {
        let r = Keyring::from_keys(
            vec![
                (KeyId::new("a").unwrap(), k(1)),
                (KeyId::new("b").unwrap(), k(2)),
            ],
            Some("b"),
            &["a".into()],
        )
        .unwrap();
        assert_eq!(r.primary_id().as_str(), "b");
        assert_eq!(r.state("a"), Some(KeyState::Retired));
        assert!(Keyring::from_keys(vec![(KeyId::new("a").unwrap(), k(1))], None, &[]).is_ok());
        assert!(
            Keyring::from_keys(vec![(KeyId::new("a").unwrap(), k(1))], Some("zz"), &[]).is_err()
        );
    }

    #[test]
    fn a_spec_named_as_primary_is_not_echoed() {
        let spec = "k1:aes256gcm:q0cXZq+Wv7pj8sLXS9N4DhfOQ1H/4jVXk4GMI84kvgE=";
        let e = Keyring::from_keys(vec![(KeyId::new("a").unwrap(), k(1))], Some(spec), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not shown") && !e.contains("q0cX"), "{e}");
        let e = Keyring::from_keys(
            vec![(KeyId::new("a").unwrap(), k(1))],
            None,
            &[spec.to_owned()],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("retired") && !e.contains("q0cX"), "{e}");
        let e = Keyring::from_keys(vec![(KeyId::new("a").unwrap(), k(1))], Some("k9"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"k9\" is not in the keyring"), "{e}");
    }
}
