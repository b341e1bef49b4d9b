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
    /// Checks `s` against the key-id rules; a violation is [`FormatError::InvalidKeyId`], saying
    /// which rule without echoing `s`.
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

    /// The key id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a value from a config file or a command line may appear in a
/// message: only if it has the shape of a key id (1 to 32 characters from
/// `[A-Za-z0-9._-]`, starting with a letter or digit) and does not look like
/// key material (20 characters or more, all hex digits or mixing upper
/// case, lower case and digits, as random keys and tokens do). A key spec,
/// a base64 key or a password pasted into the wrong field is never shown.
pub fn is_showable(value: &str) -> bool {
    if KeyId::validate(value.as_bytes()).is_err() {
        return false;
    }
    if value.len() < 20 {
        return true;
    }
    let b = value.as_bytes();
    let all_hex = b.iter().all(u8::is_ascii_hexdigit);
    let mixed = b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_lowercase)
        && b.iter().any(u8::is_ascii_digit);
    !(all_hex || mixed)
}

/// A value for a message: `"value"` when [`is_showable`], otherwise
/// `(value not shown)`.
pub fn shown(value: &str) -> String {
    if is_showable(value) {
        format!("{value:?}")
    } else {
        "(value not shown)".to_owned()
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

/// A deserializer's message without the values it quotes: serde's
/// `invalid type: string "…", expected …` loses the value, and any other
/// quoted (`` `…` `` or `"…"`) text that is not a plain name (field names,
/// enum variants, punctuation the parser expected) is replaced by
/// `(value not shown)`. Several lines become one.
pub fn scrub_message(msg: &str) -> String {
    let msg = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg.as_str();
    for lead in ["invalid type: ", "invalid value: "] {
        if let Some(after) = rest.strip_prefix(lead) {
            // `string "…"`, `integer `5``, `map`: keep the kind only.
            let end = after.find(", expected").unwrap_or(after.len());
            let kind = after[..end]
                .split(['"', '`'])
                .next()
                .unwrap_or_default()
                .trim();
            out.push_str(lead);
            out.push_str(kind);
            if after[..end].contains(['"', '`']) {
                out.push_str(" (value not shown)");
            }
            rest = &after[end..];
            break;
        }
    }
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[open] as char;
        out.push_str(&rest[..open]);
        let body = &rest[open + 1..];
        // The closing quote; `\"` inside a Debug-quoted string is escaped.
        let mut close = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                '\\' if quote == '"' => escaped = !escaped,
                c if c == quote && !escaped => {
                    close = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(close) = close else {
            // Unbalanced: whatever follows may be a value.
            out.push_str("(value not shown)");
            return out;
        };
        let inner = &body[..close];
        if is_showable(inner) || inner.chars().count() <= 3 {
            out.push(quote);
            out.push_str(inner);
            out.push(quote);
        } else {
            out.push_str("(value not shown)");
        }
        rest = &body[close + 1..];
    }
    out.push_str(rest);
    out
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
    fn only_plain_names_are_shown() {
        for ok in [
            "k1",
            "laravel",
            "aes-256-gcm",
            "2026-q4-prod-primary",
            "kek-v1",
        ] {
            assert_eq!(shown(ok), format!("{ok:?}"));
        }
        for hidden in [
            "k1:aes256gcm:q0cXZq+Wv7pj8sLXS9N4DhfOQ1H/4jVXk4GMI84kvgE=",
            "q0cXZq-Wv7pj8sLXS9N4DhfOQ1H_4jVXk4GMI84kvgE",
            "base64:q0cXZq",
            "3f9a0c1d2e4b5a6978877665",
            "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY",
            "p@ss/w#rd",
            "",
            "has space",
        ] {
            assert_eq!(shown(hidden), "(value not shown)", "{hidden}");
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
