//! A string that holds a credential.

use std::fmt;
use zeroize::Zeroizing;

/// A token, secret access key or similar: zeroized on drop, redacted in
/// `Debug`, and without `Display`, so that it cannot end up in a message by
/// accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(s: String) -> SecretString {
        SecretString(Zeroizing::new(s))
    }

    /// The secret. Keep the borrow short and never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString::new(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString::new(s.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(redacted)")
    }
}

/// Reads a secret from a file: the whole file, surrounding whitespace trimmed.
/// Errors name the path, never the content.
pub(crate) fn read_secret_file(path: &std::path::Path) -> Result<SecretString, String> {
    let raw = Zeroizing::new(
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    );
    let s =
        std::str::from_utf8(&raw).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(SecretString::new(t.to_owned()))
}

/// Reads a secret from an environment variable, trimmed. `Ok(None)` when unset.
pub(crate) fn read_secret_env(var: &str) -> Result<Option<SecretString>, String> {
    match std::env::var(var) {
        Ok(v) => {
            let v = Zeroizing::new(v);
            let t = v.trim();
            if t.is_empty() {
                Err(format!("environment variable {var} is set but empty"))
            } else {
                Ok(Some(SecretString::new(t.to_owned())))
            }
        }
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("environment variable {var} is not valid UTF-8"))
        }
    }
}
