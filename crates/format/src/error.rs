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
    /// The magic bytes that mark a keyturn value.
    Magic,
    /// The format version byte.
    Version,
    /// The algorithm byte (binary) or token (text).
    Algorithm,
    /// The one-byte length of the key id.
    KeyIdLength,
    /// The key id itself.
    KeyId,
    /// The four-byte ciphertext length that starts the body.
    CiphertextLength,
    /// The nonce (12 or 24 bytes).
    Nonce,
    /// The ciphertext, shorter than its length field says.
    Ciphertext,
    /// The 16-byte authentication tag at the end.
    Tag,
}

impl Field {
    /// The field's name as used in error messages (e.g. `"key id length"`).
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
    /// The value is empty (zero bytes or an empty string): there is nothing to decode.
    #[error("empty value: no ciphertext to decode")]
    Empty,
    /// The value does not carry the keyturn marker, or the codec does not recognise its format.
    #[error("not a keyturn ciphertext (unknown format)")]
    UnknownFormat,
    /// The value's format version (the number carried) is not one this build can read.
    #[error(
        "ciphertext format version {0} is not supported by this keyturn (written by a newer keyturn?)"
    )]
    UnknownVersion(u32),
    /// An algorithm byte, token or name is not one keyturn knows; the string says what was expected
    /// (a rejected name is not echoed, as it may be key material).
    #[error("unknown algorithm: {0}")]
    UnknownAlgorithm(String),
    /// The value ended inside the given header or body field.
    #[error("ciphertext truncated in the {0} field")]
    Truncated(Field),
    /// The value continues past its authentication tag by this many bytes.
    #[error("{0} unexpected bytes after the authentication tag")]
    TrailingBytes(usize),
    /// A key id breaks the key-id rules (length, characters); the string says which rule.
    #[error("invalid key id: {0}")]
    InvalidKeyId(String),
    /// A text value is not in the codec's text encoding (e.g. not canonical unpadded base64url);
    /// the string says what was wrong.
    #[error("bad text encoding: {0}")]
    BadTextEncoding(&'static str),
    /// The plaintext or ciphertext length (in bytes) is above [`crate::MAX_PLAINTEXT_LEN`].
    #[error("ciphertext length {0} exceeds the limit of {max} bytes", max = crate::MAX_PLAINTEXT_LEN)]
    TooLong(u64),
    /// The value names a key id (the string) that no loaded key has.
    #[error("key {0:?} is not in the keyring")]
    UnknownKey(String),
    /// The value's key (the string) is retired and the keyring was not told to allow retired keys.
    #[error(
        "key {0:?} is retired and refuses to decrypt (allow retired keys explicitly to read it)"
    )]
    KeyRetired(String),
    /// The AEAD tag did not verify under the named key: the wrong key, the wrong AAD context, or a
    /// modified value.
    #[error(
        "decryption failed under key {0:?}: wrong key material, wrong context (value copied from another row or column?) or tampered ciphertext"
    )]
    AuthenticationFailed(String),
    /// The key's kind does not fit the value or the operation, e.g. a codec-specific key used for a
    /// v1 value.
    #[error("key {key:?} is a {have} key, but the value says {want}")]
    AlgorithmMismatch {
        /// The key id involved (empty where the key is not known by id at that point).
        key: String,
        /// The algorithm or kind of the key that was found.
        have: &'static str,
        /// The algorithm or kind the value or operation needs.
        want: &'static str,
    },
    /// A key spec could not be parsed or its key material is unusable; the string says where and
    /// why, without the key bytes.
    #[error("invalid key spec: {0}")]
    InvalidKeySpec(String),
    /// The keyring cannot be built or used as configured (no keys, duplicate ids, no primary key,
    /// ...); the string says why.
    #[error("keyring: {0}")]
    Keyring(String),
    /// The cryptographic library failed (key setup, random generator, sealing); the string names
    /// the step.
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
        /// The column that holds the bad value.
        cell: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The expected length, as text (a number, possibly with an explanation).
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
