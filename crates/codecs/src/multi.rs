//! Multi-column formats: a value spread over several columns of one row.
//!
//! The [`Codec`](keyturn_format::Codec) trait maps one stored value to one
//! stored value. Some schemes keep the parts of a value in separate
//! columns: Coder's dbcrypt (ciphertext + key-id column), KMS envelope
//! schemes (ciphertext, IV, key id, wrapped data key). For them this module
//! proposes [`MultiColumnCodec`], a sibling trait over a small row struct,
//! [`Cells`], and implements it for [`SplitColumnsCodec`] (ciphertext, IV and
//! key-id columns, AES-256-GCM); [`EnvelopeCodec`](crate::envelope::EnvelopeCodec)
//! adds the wrapped-data-key column. The engine reads and writes a row's
//! cells together (one compare-and-swap UPDATE over all of them); see the
//! crate docs for the design.

use crate::util::{self, AES};
use keyturn_format::{
    Carry, Encoding, Field, FormatError, Inspection, KeyId, Keyring, Opened, TAG_LEN,
};
use std::fmt;

/// What a column of a multi-column value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// The ciphertext (binary), with or without the tag per the codec.
    Ciphertext,
    /// The IV / nonce (binary).
    Iv,
    /// The key id (text).
    KeyId,
    /// A data key wrapped under the key named by the key-id column (binary).
    WrappedKey,
}

impl Role {
    /// The role's name in messages (`the IV column is NULL ...`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Ciphertext => "ciphertext",
            Role::Iv => "IV",
            Role::KeyId => "key id",
            Role::WrappedKey => "wrapped key",
        }
    }
}

/// The cells of one row that make up a value, by role. `None`: SQL NULL or
/// a column this codec does not use.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Cells {
    /// The ciphertext column's bytes.
    pub ciphertext: Option<Vec<u8>>,
    /// The IV / nonce column's bytes.
    pub iv: Option<Vec<u8>>,
    /// The key-id column's text.
    pub key_id: Option<String>,
    /// The wrapped data key column's bytes.
    pub wrapped_key: Option<Vec<u8>>,
}

impl Cells {
    /// The cell of `role`, as bytes (the key id as its UTF-8).
    pub fn cell(&self, role: Role) -> Option<&[u8]> {
        match role {
            Role::Ciphertext => self.ciphertext.as_deref(),
            Role::Iv => self.iv.as_deref(),
            Role::KeyId => self.key_id.as_deref().map(str::as_bytes),
            Role::WrappedKey => self.wrapped_key.as_deref(),
        }
    }

    /// Sets the cell of `role`; a key id must be UTF-8.
    pub fn set_cell(&mut self, role: Role, value: Option<Vec<u8>>) -> Result<(), FormatError> {
        match role {
            Role::Ciphertext => self.ciphertext = value,
            Role::Iv => self.iv = value,
            Role::WrappedKey => self.wrapped_key = value,
            Role::KeyId => {
                self.key_id = value
                    .map(String::from_utf8)
                    .transpose()
                    .map_err(|_| FormatError::BadTextEncoding("the key id column is not UTF-8"))?
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Cells {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cells")
            .field("ciphertext", &self.ciphertext.as_ref().map(Vec::len))
            .field("iv", &self.iv.as_ref().map(Vec::len))
            .field("key_id", &self.key_id)
            .field("wrapped_key", &self.wrapped_key.as_ref().map(Vec::len))
            .finish()
    }
}

/// The outcome of re-encrypting one row's value.
#[derive(Debug)]
pub enum RowReencryption {
    /// The row is already under the primary key: nothing to write.
    AlreadyPrimary,
    /// The new cells, every role of [`MultiColumnCodec::roles`] set: write
    /// them all in one compare-and-swap UPDATE.
    Rotated(Cells),
}

/// A value stored across several columns of a row. The engine reads the
/// columns named by [`roles`](Self::roles) (mapped to column names by the
/// job's config), calls [`reencrypt_row`](Self::reencrypt_row), and writes
/// every returned cell back in one UPDATE whose WHERE clause compares all
/// the old cells (compare-and-swap over the tuple).
pub trait MultiColumnCodec: Send + Sync + fmt::Debug {
    /// The codec's name, as in configs and reports.
    fn name(&self) -> &str;

    /// The roles this codec reads and writes.
    fn roles(&self) -> &'static [Role];

    /// Classifies a row's cells without decrypting.
    fn inspect_row<'c>(&self, cells: &'c Cells) -> Inspection<'c>;

    /// Decrypts a row's value. `context` is the row's AAD context, for codecs
    /// that bind one (the built-in multi-column codecs do not).
    fn decrypt_row(
        &self,
        ring: &Keyring,
        cells: &Cells,
        context: &[&[u8]],
    ) -> Result<Opened, FormatError>;

    /// Encrypts an opened value again under the ring's primary key and
    /// returns every cell to write.
    fn reseal_row(
        &self,
        ring: &Keyring,
        opened: &Opened,
        context: &[&[u8]],
    ) -> Result<Cells, FormatError>;

    /// Encrypts `plaintext` under the ring's primary key and returns every cell to write.
    fn encrypt_row(
        &self,
        ring: &Keyring,
        plaintext: &[u8],
        context: &[&[u8]],
    ) -> Result<Cells, FormatError>;

    /// The role whose cell equals the key id, when there is one: lets SQL
    /// skip rows under the primary (`WHERE key_id_col <> $primary`) and
    /// count rows per key (`GROUP BY key_id_col`).
    fn key_id_role(&self) -> Option<Role>;

    /// Re-encrypts a row under the ring's primary key, or says it already is under it; malformed
    /// cells give [`FormatError::Empty`], [`FormatError::UnknownFormat`] or the codec's inspection
    /// error.
    fn reencrypt_row(
        &self,
        ring: &Keyring,
        cells: &Cells,
        context: &[&[u8]],
    ) -> Result<RowReencryption, FormatError> {
        match self.inspect_row(cells) {
            Inspection::UnderKey(id) if id == ring.primary_id().as_str() => {
                return Ok(RowReencryption::AlreadyPrimary);
            }
            Inspection::Invalid(e) => return Err(e),
            Inspection::NotThisFormat => {
                return Err(if cells.ciphertext.is_none() {
                    FormatError::Empty
                } else {
                    FormatError::UnknownFormat
                });
            }
            _ => {}
        }
        let opened = self.decrypt_row(ring, cells, context)?;
        if opened.key_id == *ring.primary_id() {
            return Ok(RowReencryption::AlreadyPrimary);
        }
        self.reseal_row(ring, &opened, context)
            .map(RowReencryption::Rotated)
    }
}

/// Ciphertext column (`ct ‖ tag`, binary), IV column (12 bytes, binary) and
/// key-id column (text), AES-256-GCM, no associated data.
#[derive(Debug, Clone, Copy, Default)]
pub struct SplitColumnsCodec;

const ROLES: &[Role] = &[Role::Ciphertext, Role::Iv, Role::KeyId];

impl SplitColumnsCodec {
    /// The parts of a row. `Empty`: no ciphertext (NULL); `UnknownFormat`:
    /// a ciphertext column with the other columns all NULL (plaintext, for
    /// `encrypt`); `NullCell`: some but not all of the other columns NULL.
    fn parts<'c>(&self, cells: &'c Cells) -> Result<(&'c str, &'c [u8], &'c [u8]), FormatError> {
        let Some(ct) = &cells.ciphertext else {
            return Err(FormatError::Empty);
        };
        let (iv, id) = match (&cells.iv, &cells.key_id) {
            (None, None) => return Err(FormatError::UnknownFormat),
            (None, Some(_)) => return Err(FormatError::NullCell(Role::Iv.name())),
            (Some(_), None) => return Err(FormatError::NullCell(Role::KeyId.name())),
            (Some(iv), Some(id)) => (iv, id),
        };
        KeyId::new(id)?;
        if iv.len() != util::GCM_NONCE_LEN {
            return Err(FormatError::CellLength {
                cell: Role::Iv.name(),
                len: iv.len(),
                want: "12",
            });
        }
        if ct.len() < TAG_LEN {
            return Err(FormatError::Truncated(Field::Tag));
        }
        util::check_stored_len(ct)?;
        Ok((id, iv, ct))
    }
}

impl MultiColumnCodec for SplitColumnsCodec {
    fn name(&self) -> &str {
        "split-columns"
    }

    fn roles(&self) -> &'static [Role] {
        ROLES
    }

    fn inspect_row<'c>(&self, cells: &'c Cells) -> Inspection<'c> {
        match self.parts(cells) {
            Ok((id, _, _)) => Inspection::UnderKey(id),
            Err(FormatError::Empty | FormatError::UnknownFormat) => Inspection::NotThisFormat,
            Err(e) => Inspection::Invalid(e),
        }
    }

    fn decrypt_row(
        &self,
        ring: &Keyring,
        cells: &Cells,
        _context: &[&[u8]],
    ) -> Result<Opened, FormatError> {
        let (id, iv, body) = self.parts(cells)?;
        let (key_id, key) = util::named(ring, id, AES)?;
        let (ct, tag) = body.split_at(body.len() - TAG_LEN);
        let plaintext = util::aead_open(&key_id, key, iv, ct, tag)?;
        Ok(Opened {
            plaintext,
            key_id,
            encoding: Encoding::Binary,
            carry: Carry::None,
        })
    }

    fn reseal_row(
        &self,
        ring: &Keyring,
        opened: &Opened,
        context: &[&[u8]],
    ) -> Result<Cells, FormatError> {
        self.encrypt_row(ring, &opened.plaintext, context)
    }

    fn encrypt_row(
        &self,
        ring: &Keyring,
        plaintext: &[u8],
        _context: &[&[u8]],
    ) -> Result<Cells, FormatError> {
        let (id, key) = util::primary(ring, AES)?;
        let mut sealed = util::gcm_seal_concat(key, plaintext)?;
        let ct = sealed.split_off(util::GCM_NONCE_LEN);
        Ok(Cells {
            ciphertext: Some(ct),
            iv: Some(sealed),
            key_id: Some(id.as_str().to_owned()),
            wrapped_key: None,
        })
    }

    fn key_id_role(&self) -> Option<Role> {
        Some(Role::KeyId)
    }
}
