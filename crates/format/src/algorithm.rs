//! The AEAD algorithms of format v1.

use crate::error::FormatError;

/// An AEAD algorithm of format v1. The byte and the text token are part of the
/// format (see docs/FORMAT.md) and never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// AES-256-GCM, 96-bit random nonce. The default.
    Aes256Gcm,
    /// XChaCha20-Poly1305, 192-bit random nonce: for keys that encrypt very many values.
    XChaCha20Poly1305,
}

/// Every algorithm, in byte order.
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::Aes256Gcm, Algorithm::XChaCha20Poly1305];

impl Algorithm {
    /// The header byte.
    pub const fn byte(self) -> u8 {
        match self {
            Algorithm::Aes256Gcm => 0x01,
            Algorithm::XChaCha20Poly1305 => 0x02,
        }
    }

    /// Reads a binary header's algorithm byte; an unknown byte is
    /// [`FormatError::UnknownAlgorithm`].
    pub fn from_byte(b: u8) -> Result<Algorithm, FormatError> {
        match b {
            0x01 => Ok(Algorithm::Aes256Gcm),
            0x02 => Ok(Algorithm::XChaCha20Poly1305),
            // Not the byte itself: part of a stored value.
            _ => Err(FormatError::UnknownAlgorithm(
                "the byte is not 0x01 (aes256gcm) or 0x02 (xchacha20poly1305)".into(),
            )),
        }
    }

    /// The one-letter token of the text encoding.
    pub const fn text_token(self) -> u8 {
        match self {
            Algorithm::Aes256Gcm => b'a',
            Algorithm::XChaCha20Poly1305 => b'x',
        }
    }

    /// Reads a text header's algorithm token (`a` or `x`); anything else is
    /// [`FormatError::UnknownAlgorithm`].
    pub fn from_text_token(t: &[u8]) -> Result<Algorithm, FormatError> {
        match t {
            b"a" => Ok(Algorithm::Aes256Gcm),
            b"x" => Ok(Algorithm::XChaCha20Poly1305),
            // Never the token itself: it is a fragment of a stored value.
            other => Err(FormatError::UnknownAlgorithm(format!(
                "a text token of {} bytes, not a (aes256gcm) or x (xchacha20poly1305)",
                other.len()
            ))),
        }
    }

    /// The name used in key specs and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Aes256Gcm => "aes256gcm",
            Algorithm::XChaCha20Poly1305 => "xchacha20poly1305",
        }
    }

    /// Parses an algorithm name (case-insensitive, with the usual aliases such as `aes-256-gcm` or
    /// `xchacha`); an unknown name is [`FormatError::UnknownAlgorithm`], without echoing it.
    pub fn from_name(s: &str) -> Result<Algorithm, FormatError> {
        match s.to_ascii_lowercase().as_str() {
            "aes256gcm" | "aes-256-gcm" => Ok(Algorithm::Aes256Gcm),
            "xchacha20poly1305" | "xchacha20-poly1305" | "xchacha" => {
                Ok(Algorithm::XChaCha20Poly1305)
            }
            // Not echoed: a misplaced field of a key spec may be key material.
            _ => Err(FormatError::UnknownAlgorithm(
                "use aes256gcm or xchacha20poly1305".into(),
            )),
        }
    }

    /// The nonce length in bytes: 12 for AES-256-GCM, 24 for XChaCha20-Poly1305.
    pub const fn nonce_len(self) -> usize {
        match self {
            Algorithm::Aes256Gcm => 12,
            Algorithm::XChaCha20Poly1305 => 24,
        }
    }

    /// The key length in bytes (32 for both algorithms).
    pub const fn key_len(self) -> usize {
        32
    }
}

/// Length of the authentication tag of both algorithms.
pub const TAG_LEN: usize = 16;
