//! Errors of the format layer.
//!
//! Every variant names what was wrong and, where it helps, which key id was
//! involved. None of them carries key material or plaintext: they are safe to
//! log and to show to an operator.

use std::fmt;

/// The field of a v1 ciphertext at which input ended too early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    Magic,
    Version,
    Algorithm,
    KeyIdLength,
    KeyId,
    CiphertextLength,
    Nonce,
    Ciphertext,
    Tag,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Magic => "magic",
            Field::Version => "version",
            Field::Algorithm => "algorithm",
            Field::KeyIdLength => "key id length",
            Field::KeyId => "key id",
            Field::CiphertextLength => "ciphertext length",
            Field::Nonce => "nonce",
            Field::Ciphertext => "ciphertext",
            Field::Tag => "tag",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a value could not be decoded, decrypted or encrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("empty value: no ciphertext to decode")]
    Empty,
    #[error("not a keyturn ciphertext (unknown format)")]
    UnknownFormat,
    #[error(
        "ciphertext format version {0} is not supported by this keyturn (written by a newer keyturn?)"
    )]
    UnknownVersion(u32),
    #[error("unknown algorithm: {0}")]
    UnknownAlgorithm(String),
    #[error("ciphertext truncated in the {0} field")]
    Truncated(Field),
    #[error("{0} unexpected bytes after the authentication tag")]
    TrailingBytes(usize),
    #[error("invalid key id: {0}")]
    InvalidKeyId(String),
    #[error("bad text encoding: {0}")]
    BadTextEncoding(&'static str),
    #[error("ciphertext length {0} exceeds the limit of {max} bytes", max = crate::MAX_PLAINTEXT_LEN)]
    TooLong(u64),
    #[error("key {0:?} is not in the keyring")]
    UnknownKey(String),
    #[error(
        "key {0:?} is retired and refuses to decrypt (allow retired keys explicitly to read it)"
    )]
    KeyRetired(String),
    #[error(
        "decryption failed under key {0:?}: wrong key material, wrong context (value copied from another row or column?) or tampered ciphertext"
    )]
    AuthenticationFailed(String),
    #[error("key {key:?} is a {have} key, but the value says {want}")]
    AlgorithmMismatch {
        key: String,
        have: &'static str,
        want: &'static str,
    },
    #[error("invalid key spec: {0}")]
    InvalidKeySpec(String),
    #[error("keyring: {0}")]
    Keyring(String),
    #[error("{0}")]
    Crypto(&'static str),
    /// A value that decodes (and may decrypt) but must not be re-encrypted,
    /// e.g. a Rails deterministic value: the reason says why.
    #[error("value not rotatable: {0}")]
    NotRotatable(String),
    /// A value spread over several columns (ciphertext, IV, key id, wrapped
    /// data key) with one of them NULL while the others are set.
    #[error("the {0} column is NULL while the value's other columns are set")]
    NullCell(&'static str),
    /// One column of a multi-column value holds a value of the wrong length.
    #[error("the {cell} column holds {len} bytes, expected {want}")]
    CellLength {
        cell: &'static str,
        len: usize,
        want: &'static str,
    },
}

impl FormatError {
    /// A stable, machine-readable name of the error kind (used by the test
    /// vectors, JSON output and reports).
    pub fn kind(&self) -> &'static str {
        match self {
            FormatError::Empty => "empty",
            FormatError::UnknownFormat => "unknown_format",
            FormatError::UnknownVersion(_) => "unknown_version",
            FormatError::UnknownAlgorithm(_) => "unknown_algorithm",
            FormatError::Truncated(_) => "truncated",
            FormatError::TrailingBytes(_) => "trailing_bytes",
            FormatError::InvalidKeyId(_) => "invalid_key_id",
            FormatError::BadTextEncoding(_) => "bad_text_encoding",
            FormatError::TooLong(_) => "too_long",
            FormatError::UnknownKey(_) => "unknown_key",
            FormatError::KeyRetired(_) => "key_retired",
            FormatError::AuthenticationFailed(_) => "authentication_failed",
            FormatError::AlgorithmMismatch { .. } => "algorithm_mismatch",
            FormatError::InvalidKeySpec(_) => "invalid_key_spec",
            FormatError::Keyring(_) => "keyring",
            FormatError::Crypto(_) => "crypto",
            FormatError::NotRotatable(_) => "not_rotatable",
            FormatError::NullCell(_) => "null_cell",
            FormatError::CellLength { .. } => "cell_length",
        }
    }
}
