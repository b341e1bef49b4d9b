//! Key ids: short human strings that name one key of a keyring.

use crate::error::FormatError;
use std::fmt;

/// Longest key id, in bytes. Keeps the header small and the SQL prefix short.
pub const MAX_KEY_ID_LEN: usize = 32;

/// A validated key id: 1 to 32 ASCII characters from `[A-Za-z0-9._-]`,
/// starting with a letter or digit.
///
/// The charset excludes `:` (the text encoding's separator) and everything a
/// shell, URL or SQL string literal would need to escape.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn new(s: &str) -> Result<KeyId, FormatError> {
        Self::validate(s.as_bytes())?;
        Ok(KeyId(s.to_owned()))
    }

    /// Checks raw bytes against the key id rules.
    pub(crate) fn validate(b: &[u8]) -> Result<(), FormatError> {
        if b.is_empty() {
            return Err(FormatError::InvalidKeyId("empty".into()));
        }
        if b.len() > MAX_KEY_ID_LEN {
            return Err(FormatError::InvalidKeyId(format!(
                "{} bytes long, the limit is {MAX_KEY_ID_LEN}",
                b.len()
            )));
        }
        if !b[0].is_ascii_alphanumeric() {
            return Err(FormatError::InvalidKeyId(
                "must start with a letter or digit".into(),
            ));
        }
        if let Some(pos) = b
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-'))
        {
            return Err(FormatError::InvalidKeyId(format!(
                "byte {pos} is not one of A-Z a-z 0-9 . _ -"
            )));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:?})", self.0)
    }
}

impl std::str::FromStr for KeyId {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyId::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_documented_examples() {
        for ok in ["k1", "2026-q4", "prod.v2", "a", "A_b-c.9", &"x".repeat(32)] {
            KeyId::new(ok).unwrap();
        }
    }

    #[test]
    fn rejects_bad_ids() {
        for bad in ["", "-k", ".k", "k:1", "k 1", "k%", "é", &"x".repeat(33)] {
            assert_eq!(
                KeyId::new(bad).unwrap_err().kind(),
                "invalid_key_id",
                "{bad:?}"
            );
        }
    }
}
