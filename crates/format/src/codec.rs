//! The codec trait: how the rotation engine reads and writes one stored
//! value, whatever format it is in. keyturn's own format v1 is one codec
//! ([`NativeCodec`]); codecs for other frameworks' formats implement the same
//! trait, so the engine never needs to know which format a column holds.

use crate::error::FormatError;
use crate::key_id::KeyId;
use crate::keyring::{Keyring, Reencrypted};
use crate::v1::{self, Encoding};
use std::fmt;
use zeroize::Zeroizing;

/// What a codec can tell about a stored value from its bytes alone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inspection<'a> {
    /// A value of this codec whose header names its key.
    UnderKey(&'a str),
    /// A value of this codec whose key id is not a substring of the value
    /// (a version byte mapped to a key id, a base64-encoded key reference,
    /// a JSON string with escapes).
    UnderKeyOwned(KeyId),
    /// A value of this codec that carries no key hint: its key is found by
    /// trial decryption.
    KeyUnknown,
    /// Not a value of this codec: plaintext or some other format.
    NotThisFormat,
    /// This codec's marker, but damaged or of an unknown version.
    Invalid(FormatError),
}

/// Codec-specific state read from a value that must survive re-encryption
/// (e.g. a Fernet token's original timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Carry {
    /// No codec state to carry.
    #[default]
    None,
    /// Seconds since the Unix epoch.
    Timestamp(u64),
    /// Codec-defined state packed in 64 bits (flags, small enumerations),
    /// meaningful only to the codec that produced it.
    Bits(u64),
}

/// A decrypted value.
pub struct Opened {
    /// The decrypted bytes, zeroed when dropped.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The key that decrypted it.
    pub key_id: KeyId,
    /// Whether the value was stored as bytes or as text.
    pub encoding: Encoding,
    /// Codec state read from the value that the re-encrypted value must keep (see [`Carry`]).
    pub carry: Carry,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Opened {{ key_id: {}, {} plaintext bytes (redacted) }}",
            self.key_id,
            self.plaintext.len()
        )
    }
}

/// Where the key id sits inside stored values, so that a database can count
/// rows per key without decrypting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyIdLocation {
    /// The format carries no key id: rotation state is found by trial decryption.
    None,
    /// Text values `<prefix><key id><terminator>…`.
    TextDelimited {
        /// The literal text before the key id.
        prefix: &'static str,
        /// The byte that ends the key id.
        terminator: u8,
    },
    /// Binary values starting with `magic`, with a one-byte key id length at
    /// `len_offset` followed by the key id.
    BinaryLengthPrefixed {
        /// The bytes every value starts with.
        magic: &'static [u8],
        /// The offset of the one-byte key id length; the key id follows it.
        len_offset: usize,
    },
    /// Binary values whose byte at `offset` selects the key, per `ids`.
    BinaryByte {
        /// The offset of the byte that selects the key.
        offset: usize,
        /// Which byte value stands for which key id.
        ids: Vec<(u8, KeyId)>,
    },
    /// JSON text values with the key id at this path of object members
    /// (e.g. `["key_id"]`), as a JSON string.
    JsonPath(&'static [&'static str]),
    /// Like [`JsonPath`](Self::JsonPath), but the JSON string at the path is
    /// standard base64 of the key id (Rails' `h.i`).
    JsonPathBase64(&'static [&'static str]),
    /// A value spread over several columns of a row (a multi-column codec),
    /// which the database layer reads as one packed value of cells: the key
    /// id is the whole content of the cell at this index of the packing, so
    /// the database counts rows per key with `GROUP BY` on that column.
    Cell(usize),
}

/// What a well-formed value of a codec looks like, so that a database can
/// tell the codec's values from plaintext, garbage and other formats in SQL,
/// without decrypting: the census behind `status`, the preflight and plain
/// `verify` counts a value under a key id, or as "this format, key decided by
/// decryption", only when it has this shape. Every other non-NULL value is
/// *unrecognized*, and no part of it is ever read out as a key id.
///
/// A shape is a plausibility check (the separators, the id's charset and
/// length, a body of the right alphabet and minimum length), not a proof:
/// decryption has the last word, and a value that has the shape but does
/// not decrypt is a bad row.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Shape {
    /// ASCII text matching every one of these regular expressions. They use
    /// only the syntax PostgreSQL, MariaDB/MySQL and Rust's `regex` crate
    /// read alike: `^` and `$`, bracket classes of ASCII characters and
    /// ranges (no `\d`, `\s` or `\w` inside brackets), `{m,n}`, `*`, `+`,
    /// `?`, `(?:…)`, `|` and `\s` outside brackets; `.` never has to match a
    /// line break. Case-sensitive.
    Text(Vec<String>),
    /// ASCII text at least `min_len` characters long, matching every one of
    /// `patterns` (as [`Shape::Text`]). The length is checked first, with
    /// the database's `length()`: a format whose body has a minimum length
    /// writes it here and an open-ended `*` in its pattern, because
    /// PostgreSQL's regex engine pays for a long counted repeat (`{92,}`) on
    /// every row (2.3 s against 0.3 s per 200,000 values).
    TextMin {
        /// The least number of characters of a value.
        min_len: usize,
        /// Regular expressions the text must all match.
        patterns: Vec<String>,
    },
    /// A JSON object (text) whose members at each of `members` are JSON
    /// strings. A database that can test JSON validity without failing on
    /// invalid input (MariaDB/MySQL, SQLite) uses its JSON functions; the
    /// others match the text against `patterns` instead (as
    /// [`Shape::Text`]).
    Json {
        /// The member paths (from the top-level object) that must hold JSON strings.
        members: Vec<&'static [&'static str]>,
        /// Patterns to match the text against where the database's JSON functions cannot be used
        /// safely.
        patterns: Vec<String>,
    },
    /// Bytes, at least `min_len` of them; the [`KeyIdLocation`] checks the
    /// bytes that name the key.
    Binary {
        /// The minimum length of a value in bytes.
        min_len: usize,
    },
    /// A multi-column value ([`KeyIdLocation::Cell`]): the key-id cell holds
    /// a key id (checked against the key-id rules).
    Cells,
}

/// The regular expression of a key id (docs/FORMAT.md §2), for [`Shape`]s.
pub const KEY_ID_PATTERN: &str = "[A-Za-z0-9][A-Za-z0-9._-]{0,31}";

/// A value's key token as the database reads it, turned into a key id:
/// the rules of the [`KeyIdLocation`] that produced it. `None` when the token
/// is not a valid key id (the value is then unrecognized).
///
/// Tokens: the text between the delimiters for
/// [`KeyIdLocation::TextDelimited`], the JSON string for
/// [`KeyIdLocation::JsonPath`], its base64 for
/// [`KeyIdLocation::JsonPathBase64`], the key-id bytes in hex for
/// [`KeyIdLocation::BinaryLengthPrefixed`], the selecting byte in hex for
/// [`KeyIdLocation::BinaryByte`], the cell's text for [`KeyIdLocation::Cell`].
pub fn key_id_from_token(loc: &KeyIdLocation, token: &[u8]) -> Option<KeyId> {
    use base64::Engine as _;
    let hex = |t: &[u8]| -> Option<Vec<u8>> {
        if !t.len().is_multiple_of(2) {
            return None;
        }
        t.chunks(2)
            .map(|p| {
                let s = std::str::from_utf8(p).ok()?;
                u8::from_str_radix(s, 16).ok()
            })
            .collect()
    };
    let id_of = |b: &[u8]| KeyId::new(std::str::from_utf8(b).ok()?).ok();
    match loc {
        KeyIdLocation::None => None,
        KeyIdLocation::TextDelimited { .. }
        | KeyIdLocation::JsonPath(_)
        | KeyIdLocation::Cell(_) => id_of(token),
        KeyIdLocation::JsonPathBase64(_) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(token)
                .ok()?;
            id_of(&raw)
        }
        KeyIdLocation::BinaryLengthPrefixed { .. } => id_of(&hex(token)?),
        KeyIdLocation::BinaryByte { ids, .. } => {
            let b = hex(token)?;
            let [b] = b.as_slice() else { return None };
            ids.iter().find(|(v, _)| v == b).map(|(_, id)| id.clone())
        }
    }
}

/// The outcome of re-encrypting one value.
#[derive(Debug)]
pub enum Reencryption {
    /// Already under the primary key: nothing to write.
    AlreadyPrimary,
    /// The new stored value, under the primary key.
    Rotated(Vec<u8>),
}

/// One stored-value format.
pub trait Codec: Send + Sync + fmt::Debug {
    /// Short name used in configs and reports.
    fn name(&self) -> &str;

    /// Classifies a value from its bytes alone, without decrypting.
    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v>;

    /// Decrypts a value with whichever key of the ring fits.
    fn decrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        context: &[&[u8]],
    ) -> Result<Opened, FormatError>;

    /// Encrypts a decrypted value again under the ring's primary key, keeping
    /// its encoding and carried state.
    fn reseal(
        &self,
        ring: &Keyring,
        opened: &Opened,
        context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError>;

    /// Encrypts a plaintext under the primary key (first migration of a
    /// plaintext column).
    fn encrypt(
        &self,
        ring: &Keyring,
        plaintext: &[u8],
        context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError>;

    /// The bytes every value under the primary key starts with, when the
    /// format has such a prefix: lets SQL skip rows already rotated.
    fn primary_prefix(&self, ring: &Keyring) -> Option<Vec<u8>>;

    /// Where the key id sits in stored values.
    fn key_id_location(&self) -> KeyIdLocation;

    /// What a well-formed value looks like, for the database's census
    /// ([`Shape`]): values without this shape are never counted under a key.
    fn shape(&self) -> Shape;

    /// Re-encrypts under the primary key, skipping values already there
    /// (from the header when the format has a key id, otherwise after the
    /// trial decryption).
    fn reencrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        context: &[&[u8]],
    ) -> Result<Reencryption, FormatError> {
        match self.inspect(stored) {
            Inspection::UnderKey(id) if id == ring.primary_id().as_str() => {
                return Ok(Reencryption::AlreadyPrimary);
            }
            Inspection::UnderKeyOwned(id) if id == *ring.primary_id() => {
                return Ok(Reencryption::AlreadyPrimary);
            }
            Inspection::Invalid(e) => return Err(e),
            Inspection::NotThisFormat => {
                return Err(if stored.is_empty() {
                    FormatError::Empty
                } else {
                    FormatError::UnknownFormat
                });
            }
            _ => {}
        }
        let opened = self.decrypt(ring, stored, context)?;
        if opened.key_id == *ring.primary_id() {
            return Ok(Reencryption::AlreadyPrimary);
        }
        self.reseal(ring, &opened, context)
            .map(Reencryption::Rotated)
    }
}

/// keyturn's own format v1, written in one encoding.
#[derive(Debug, Clone, Copy)]
pub struct NativeCodec {
    /// The encoding new values are written in (re-encrypted values keep theirs).
    pub encoding: Encoding,
}

impl Codec for NativeCodec {
    fn name(&self) -> &str {
        match self.encoding {
            Encoding::Binary => "keyturn-binary",
            Encoding::Text => "keyturn-text",
        }
    }

    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v> {
        match v1::peek(stored) {
            Ok(h) => Inspection::UnderKey(h.key_id),
            // A value that ends inside the marker ("k", "kt", "kt12") is
            // plaintext that merely starts like one, not a damaged ciphertext.
            Err(
                FormatError::UnknownFormat
                | FormatError::Empty
                | FormatError::Truncated(crate::Field::Magic | crate::Field::Version),
            ) => Inspection::NotThisFormat,
            Err(e) => Inspection::Invalid(e),
        }
    }

    fn decrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        context: &[&[u8]],
    ) -> Result<Opened, FormatError> {
        let parsed = v1::parse(stored)?;
        let key = ring.decryption_key(parsed.header.key_id)?;
        let plaintext = v1::open(key, &parsed, context)?;
        Ok(Opened {
            plaintext,
            key_id: KeyId::new(parsed.header.key_id)?,
            encoding: parsed.header.encoding,
            carry: Carry::None,
        })
    }

    fn reseal(
        &self,
        ring: &Keyring,
        opened: &Opened,
        context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        ring.encrypt(&opened.plaintext, context, opened.encoding)
    }

    fn encrypt(
        &self,
        ring: &Keyring,
        plaintext: &[u8],
        context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        ring.encrypt(plaintext, context, self.encoding)
    }

    fn primary_prefix(&self, ring: &Keyring) -> Option<Vec<u8>> {
        Some(v1::key_prefix(
            ring.primary_key().native_algorithm()?,
            ring.primary_id(),
            self.encoding,
        ))
    }

    /// Same outcome as the trait's default, without the intermediate
    /// [`Opened`]: the value is decrypted straight into the new one.
    fn reencrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        context: &[&[u8]],
    ) -> Result<Reencryption, FormatError> {
        match self.inspect(stored) {
            Inspection::UnderKey(id) if id == ring.primary_id().as_str() => {
                Ok(Reencryption::AlreadyPrimary)
            }
            Inspection::Invalid(e) => Err(e),
            Inspection::NotThisFormat => Err(if stored.is_empty() {
                FormatError::Empty
            } else {
                FormatError::UnknownFormat
            }),
            _ => match ring.reencrypt(stored, context)? {
                Reencrypted::AlreadyPrimary => Ok(Reencryption::AlreadyPrimary),
                Reencrypted::Rotated(v) => Ok(Reencryption::Rotated(v)),
            },
        }
    }

    fn shape(&self) -> Shape {
        match self.encoding {
            // Header (9 + L), a 12-byte nonce at least, the tag.
            Encoding::Binary => Shape::Binary {
                min_len: 9 + 1 + 12 + crate::TAG_LEN,
            },
            // The body is at least 4 + 12 + 16 bytes: 43 base64url
            // characters, after the marker, a key id of one character at
            // least and `:a:`; the length is checked apart (see
            // `Shape::TextMin`).
            Encoding::Text => Shape::TextMin {
                min_len: v1::TEXT_MARKER.len() + 1 + 3 + 43,
                patterns: vec![format!(
                    "^{}{KEY_ID_PATTERN}:[ax]:[A-Za-z0-9_-]+$",
                    v1::TEXT_MARKER
                )],
            },
        }
    }

    fn key_id_location(&self) -> KeyIdLocation {
        match self.encoding {
            Encoding::Binary => KeyIdLocation::BinaryLengthPrefixed {
                magic: &v1::MAGIC,
                len_offset: 4,
            },
            Encoding::Text => KeyIdLocation::TextDelimited {
                prefix: v1::TEXT_MARKER,
                terminator: b':',
            },
        }
    }
}

#[cfg(test)]
mod inspect_tests {
    use super::*;

    #[test]
    fn short_marker_lookalikes_are_plaintext() {
        let c = NativeCodec {
            encoding: Encoding::Text,
        };
        for v in [&b"k"[..], b"kt", b"kt12", b"kiwi", b"ktm:x"] {
            assert_eq!(c.inspect(v), Inspection::NotThisFormat, "{v:?}");
        }
        assert!(matches!(
            c.inspect(b"kt2:k1:a:AAAA"),
            Inspection::Invalid(FormatError::UnknownVersion(2))
        ));
    }
}
