//! Key providers: where keyturn's data keys come from.
//!
//! Key material is read from an environment variable, a file or standard
//! input — never from a command-line argument, which any user of the machine
//! can read from the process list. Every source holds one or more key specs
//! (`<id>:<alg>:<base64>`, see keyturn-format), so old and new keys can be
//! provided together during the rotation window.
#![forbid(unsafe_code)]

use keyturn_format::{FormatError, KeyId, KeySpec, Keyring, SecretKey};
use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Environment variable read when no source is configured.
pub const DEFAULT_ENV: &str = "KEYTURN_KEYS";

mod config;
mod secret;

pub use config::KeysConfig;
pub use secret::SecretString;

/// Where a secret comes from: key specs, a KEK's master key, a Vault token.
/// One parser and one reader for all of them; never the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretSource {
    /// `env:NAME`: the environment variable NAME.
    Env(String),
    /// `file:PATH`: a file (for key specs: one or more, `#` comments
    /// allowed).
    File(PathBuf),
    /// `stdin`: standard input, read once.
    Stdin,
    /// The secret itself, from a program that embeds keyturn (its own
    /// secret manager): never parsed from a config file or an argument.
    Value(SecretString),
}

/// Where key specs come from.
pub type KeySource = SecretSource;

impl SecretSource {
    /// Parses `env:NAME`, `file:PATH` or `stdin`.
    pub fn parse(s: &str) -> Result<SecretSource, KeyError> {
        if s == "stdin" || s == "-" {
            return Ok(SecretSource::Stdin);
        }
        if let Some(name) = s.strip_prefix("env:") {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                // Not echoed: `env:` followed by a pasted key is no name.
                return Err(KeyError::BadSource(
                    "env:NAME: env var names are A-Z, 0-9 and _ (the value is not shown)".into(),
                ));
            }
            return Ok(SecretSource::Env(name.to_owned()));
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(KeyError::BadSource("\"file:\" needs a path".into()));
            }
            return Ok(SecretSource::File(PathBuf::from(path)));
        }
        // Never echo the value: a user may have pasted a key here by mistake.
        Err(KeyError::BadSource(
            "a secret source is env:NAME, file:PATH or stdin (key material itself is never accepted here)".into(),
        ))
    }

    /// A `file:` source's relative path taken against `base` (the config
    /// file's folder).
    pub fn relative_to(self, base: &Path) -> SecretSource {
        match self {
            SecretSource::File(p) if p.is_relative() => SecretSource::File(base.join(p)),
            other => other,
        }
    }

    /// The whole text of the source, zeroized on drop; `what` names the
    /// secret in warnings ("key file", "master key file", "token file").
    pub fn read_text(&self, what: &str) -> Result<Zeroizing<String>, KeyError> {
        match self {
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) => Ok(Zeroizing::new(v)),
                Err(std::env::VarError::NotPresent) => Err(KeyError::EnvMissing(name.clone())),
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(KeyError::EnvNotUnicode(name.clone()))
                }
            },
            SecretSource::File(path) => {
                let bytes =
                    Zeroizing::new(std::fs::read(path).map_err(|cause| KeyError::File {
                        path: path.clone(),
                        cause,
                    })?);
                warn_if_exposed(path, what);
                let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::File {
                    path: path.clone(),
                    cause: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
                })?;
                Ok(Zeroizing::new(text.to_owned()))
            }
            SecretSource::Stdin => {
                let mut s = Zeroizing::new(String::new());
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(KeyError::Stdin)?;
                Ok(s)
            }
            SecretSource::Value(v) => Ok(Zeroizing::new(v.expose().to_owned())),
        }
    }

    /// One secret (a master key, a token): the source's text with
    /// surrounding whitespace trimmed, not empty.
    pub fn read_secret(&self, what: &str) -> Result<SecretString, KeyError> {
        let text = self.read_text(what)?;
        let t = text.trim();
        if t.is_empty() {
            return Err(KeyError::Empty(self.to_string()));
        }
        Ok(SecretString::new(t.to_owned()))
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(n) => write!(f, "env:{n}"),
            SecretSource::File(p) => write!(f, "file:{}", p.display()),
            SecretSource::Stdin => f.write_str("stdin"),
            SecretSource::Value(_) => f.write_str("a value given by the program"),
        }
    }
}

/// Why keys could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A source string is not `env:NAME`, `file:PATH` or `stdin`; the message says what is wrong
    /// without echoing the value.
    #[error("bad key source: {0}")]
    BadSource(String),
    /// A `[keys]` / `[keyrings.NAME]` setting that is wrong (the message
    /// names it, never a value that may be key material).
    #[error("{0}")]
    Config(String),
    /// The named environment variable of an `env:` source is not set.
    #[error("environment variable {0} is not set (it should hold key specs <id>:<alg>:<base64>)")]
    EnvMissing(String),
    /// The named environment variable of an `env:` source holds bytes that are not UTF-8.
    #[error("environment variable {0} is not valid UTF-8")]
    EnvNotUnicode(String),
    /// A `file:` source could not be read, or its contents are not UTF-8 text.
    #[error("cannot read key file {path}: {cause}")]
    File {
        /// The file's path, as configured.
        path: PathBuf,
        /// The I/O error (`InvalidData` when the file is not UTF-8).
        cause: std::io::Error,
    },
    /// Reading the `stdin` source failed.
    #[error("cannot read keys from standard input: {0}")]
    Stdin(std::io::Error),
    /// A malformed key: `origin` names the source and the entry in it
    /// (`env:NAME`, `file:PATH`, `stdin`; line or position), never its text.
    #[error("{origin}: {cause}")]
    Spec {
        /// The source and the entry in it, e.g. `file:keys.txt, key #3`.
        origin: String,
        /// What is wrong with the spec (never its text).
        cause: FormatError,
    },
    /// A source (named in the string) holds no key specs.
    #[error("nothing found in {0}")]
    Empty(String),
    /// Two loaded keys share an id.
    #[error("key {id:?} is defined twice ({first} and {second})")]
    Duplicate {
        /// The duplicated key id.
        id: String,
        /// The source (and entry) where the id first appeared.
        first: String,
        /// The source where it appeared again.
        second: String,
    },
    /// The loaded keys do not make a valid keyring with the configured primary and retired ids (see
    /// [`FormatError::Keyring`] and [`FormatError::UnknownKey`]).
    #[error(transparent)]
    Keyring(FormatError),
}

/// Reads every spec from one source.
pub fn load_source(source: &KeySource) -> Result<Vec<KeySpec>, KeyError> {
    let text = read_source(source)?;
    let specs = KeySpec::parse_many(&text).map_err(|e| KeyError::Spec {
        origin: source.to_string(),
        cause: e,
    })?;
    if specs.is_empty() {
        return Err(KeyError::Empty(source.to_string()));
    }
    Ok(specs)
}

/// Which key encrypts and which refuse to decrypt.
#[derive(Clone, Debug, Default)]
pub struct RingPolicy {
    /// The key that encrypts. May be omitted when exactly one key is loaded.
    pub primary: Option<String>,
    /// Keys that refuse to decrypt.
    pub retired: Vec<String>,
    /// Let retired keys decrypt anyway (restoring an old backup).
    pub allow_retired: bool,
}

/// Loads every source and builds a keyring. A key id defined in two sources
/// is an error, so nobody wonders which one won.
pub fn load_keyring(sources: &[KeySource], policy: &RingPolicy) -> Result<Keyring, KeyError> {
    let mut keys: Vec<(KeyId, SecretKey, String)> = Vec::new();
    for source in sources {
        for spec in load_source(source)? {
            if let Some((_, _, first)) = keys.iter().find(|(id, _, _)| *id == spec.id) {
                return Err(KeyError::Duplicate {
                    id: spec.id.to_string(),
                    first: first.clone(),
                    second: source.to_string(),
                });
            }
            keys.push((spec.id, spec.key, source.to_string()));
        }
    }
    let ring = Keyring::from_keys(
        keys.into_iter().map(|(id, k, _)| (id, k)).collect(),
        policy.primary.as_deref(),
        &policy.retired,
    )
    .map_err(KeyError::Keyring)?;
    Ok(ring.allow_retired(policy.allow_retired))
}

/// Reads the raw text of one source (for key strings in other frameworks'
/// forms). Zeroized on drop.
pub fn read_source(source: &KeySource) -> Result<Zeroizing<String>, KeyError> {
    source.read_text("key file")
}

/// Files already warned about, so each is named once per process.
static WARNED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Why a secret file's permissions are too open, like ssh's check: `None`
/// when only its owner may read or write it (mode & 0o077 == 0). Always
/// `None` off unix.
pub fn exposure(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
        if mode & 0o077 == 0 {
            return None;
        }
        let how = if mode & 0o044 != 0 {
            "readable"
        } else {
            "accessible"
        };
        Some(format!("{how} by others (mode {mode:04o}); chmod 600 it"))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Logs a warning (once per file and process) when a file holding secrets
/// (`what`: "key file", "master key file", "token file") is open to group or
/// others. A warning only: the file was readable, and refusing it would
/// stop a rotation over a mode bit.
pub fn warn_if_exposed(path: &Path, what: &str) {
    let Some(why) = exposure(path) else { return };
    // A poisoned set only means another thread panicked mid-insert: the
    // set itself is still usable.
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if warned.insert(path.to_owned()) {
        tracing::warn!("{what} {} is {why}", path.display());
    }
}

/// Splits a source holding keys in another framework's own string form into
/// `(id, key text)` entries: one key per line, `id=key` or the key alone
/// (for formats that derive the id from the key, e.g. Rails key references
/// or cloak fingerprints); `#` starts a comment line. The part before the
/// first `=` counts as an id only if it is a valid key id, so base64 padding
/// in a bare key is never mistaken for a separator.
pub fn split_foreign_keys(text: &str) -> Vec<(String, Zeroizing<String>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('=') {
            Some((id, key)) if KeyId::new(id.trim()).is_ok() && !key.is_empty() => {
                (id.trim().to_owned(), Zeroizing::new(key.trim().to_owned()))
            }
            _ => (String::new(), Zeroizing::new(l.to_owned())),
        })
        .collect()
}

/// Builds a keyring from sources holding keys in another framework's form;
/// `parse` turns one `(id, key text)` into a key (and must never echo the
/// text in its errors).
pub fn load_foreign_keyring(
    sources: &[KeySource],
    policy: &RingPolicy,
    parse: impl Fn(&str, &str) -> Result<(KeyId, SecretKey), FormatError>,
) -> Result<Keyring, KeyError> {
    let mut keys: Vec<(KeyId, SecretKey, String)> = Vec::new();
    for source in sources {
        let text = read_source(source)?;
        let entries = split_foreign_keys(&text);
        if entries.is_empty() {
            return Err(KeyError::Empty(source.to_string()));
        }
        for (i, (id, key)) in entries.iter().enumerate() {
            let (id, key) = parse(id, key).map_err(|source_err| KeyError::Spec {
                origin: format!("{source}, key #{}", i + 1),
                cause: source_err,
            })?;
            if let Some((_, _, first)) = keys.iter().find(|(k, _, _)| *k == id) {
                return Err(KeyError::Duplicate {
                    id: id.to_string(),
                    first: first.clone(),
                    second: source.to_string(),
                });
            }
            keys.push((id, key, source.to_string()));
        }
    }
    let ring = Keyring::from_keys(
        keys.into_iter().map(|(id, k, _)| (id, k)).collect(),
        policy.primary.as_deref(),
        &policy.retired,
    )
    .map_err(KeyError::Keyring)?;
    Ok(ring.allow_retired(policy.allow_retired))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_format::Algorithm;
    use std::io::Write;

    #[test]
    fn splits_foreign_key_lines() {
        let e = split_foreign_keys(
            "# laravel\nold=base64:AAAA\n\nnew = base64:BBBB\nq0cXZq-Wv7pj8sLXS9N4DhfOQ1H_4jVXk4GMI84kvgE=\n",
        );
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].0.as_str(), e[0].1.as_str()), ("old", "base64:AAAA"));
        assert_eq!((e[1].0.as_str(), e[1].1.as_str()), ("new", "base64:BBBB"));
        // A bare Fernet key: the text before its '=' padding is no key id.
        assert_eq!(e[2].0, "");
        assert!(e[2].1.ends_with('='));
    }

    #[test]
    fn parses_sources() {
        assert_eq!(
            KeySource::parse("env:KEYS_V2").unwrap(),
            KeySource::Env("KEYS_V2".into())
        );
        assert_eq!(
            KeySource::parse("file:/x/y").unwrap(),
            KeySource::File("/x/y".into())
        );
        assert_eq!(KeySource::parse("stdin").unwrap(), KeySource::Stdin);
        let e = KeySource::parse("k1:aes256gcm:c2VjcmV0")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn loads_file_and_env_into_one_ring() {
        let a = KeySpec::generate(KeyId::new("k1").unwrap(), Algorithm::Aes256Gcm).unwrap();
        let b = KeySpec::generate(KeyId::new("k2").unwrap(), Algorithm::Aes256Gcm).unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "# old key\n{}", &*a.to_spec_string()).unwrap();
        let mut g = tempfile::NamedTempFile::new().unwrap();
        writeln!(g, "{}", &*b.to_spec_string()).unwrap();
        let ring = load_keyring(
            &[
                KeySource::File(f.path().to_owned()),
                KeySource::File(g.path().to_owned()),
            ],
            &RingPolicy {
                primary: Some("k2".into()),
                retired: vec![],
                allow_retired: false,
            },
        )
        .unwrap();
        assert_eq!(ring.primary_id().as_str(), "k2");
        assert!(ring.contains("k1"));
        let e = load_keyring(
            &[
                KeySource::File(f.path().to_owned()),
                KeySource::File(g.path().to_owned()),
            ],
            &RingPolicy::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("none named primary"), "{e}");
    }

    #[test]
    fn duplicate_ids_across_sources_are_rejected() {
        let a = KeySpec::generate(KeyId::new("k1").unwrap(), Algorithm::Aes256Gcm).unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "{}", &*a.to_spec_string()).unwrap();
        let src = KeySource::File(f.path().to_owned());
        let e = load_keyring(&[src.clone(), src], &RingPolicy::default()).unwrap_err();
        assert!(e.to_string().contains("defined twice"), "{e}");
    }

    #[test]
    fn malformed_specs_name_their_source_never_the_text() {
        let good = KeySpec::generate(KeyId::new("k1").unwrap(), Algorithm::Aes256Gcm).unwrap();
        let material = "q0cXZq+Wv7pj8sLXS9N4DhfOQ1H/4jVXk4GMI84kvg==";
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "# keys\n{}\nk2:aes256gcm:{material}",
            &*good.to_spec_string()
        )
        .unwrap();
        let e = load_source(&KeySource::File(f.path().to_owned()))
            .unwrap_err()
            .to_string();
        let origin = format!("file:{}", f.path().display());
        assert!(e.starts_with(&origin), "{e}");
        assert!(e.contains("line 3, key spec #2"), "{e}");
        assert!(!e.contains(&material[..12]), "{e}");
        // The message says each thing once.
        assert_eq!(e.matches("key spec").count(), 2, "{e}");
        let e = KeySource::parse(&format!("env:k2:aes256gcm:{material}"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains(&material[..12]), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn open_key_files_are_flagged() {
        use std::os::unix::fs::PermissionsExt;
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(exposure(f.path()), None);
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            exposure(f.path()).as_deref(),
            Some("readable by others (mode 0644); chmod 600 it")
        );
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(exposure(f.path()).unwrap().starts_with("accessible"));
    }

    #[test]
    fn missing_file_and_env_are_clear() {
        let e = load_source(&KeySource::File("/nonexistent/keys".into())).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/keys"));
        let e = load_source(&KeySource::Env("KEYTURN_SURELY_UNSET_VAR".into())).unwrap_err();
        assert!(
            e.to_string()
                .contains("KEYTURN_SURELY_UNSET_VAR is not set")
        );
    }
}
