//! Lockbox (Ruby) per-field keys, AES-256-GCM.
//!
//! Column `<attr>_ciphertext` = strict base64 of `nonce(12) ‖ ct ‖ tag(16)`,
//! no associated data. The field key is HKDF-SHA384(master key, salt =
//! table, info = 0xB4×32 ‖ column): it is derived once, when the key is
//! loaded with [`parse_key`](crate::parse_key) for the configured table and
//! column, so the ring of a Lockbox column holds field keys.

use crate::util::{self, AES};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyturn_format::{
    Carry, Codec, Encoding, FormatError, Inspection, KeyIdLocation, Keyring, Opened, Shape, TAG_LEN,
};

/// The Lockbox codec: base64 `nonce ‖ ct ‖ tag` under a field key derived for one table and column.
#[derive(Debug, Clone, Copy)]
pub struct LockboxCodec;

fn parse(stored: &[u8]) -> Result<Vec<u8>, FormatError> {
    if stored.is_empty() {
        return Err(FormatError::Empty);
    }
    util::check_stored_len(stored)?;
    let body = util::b64_std(stored, "a Lockbox value is strict base64")?;
    util::split_nonce_ct_tag(&body, util::GCM_NONCE_LEN)?;
    Ok(body)
}

impl Codec for LockboxCodec {
    fn name(&self) -> &str {
        "lockbox"
    }

    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v> {
        match parse(stored) {
            Ok(_) => Inspection::KeyUnknown,
            Err(FormatError::BadTextEncoding(_) | FormatError::Empty) => Inspection::NotThisFormat,
            Err(e) => Inspection::Invalid(e),
        }
    }

    fn decrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        _context: &[&[u8]],
    ) -> Result<Opened, FormatError> {
        let body = parse(stored)?;
        let (nonce, ct, tag) = util::split_nonce_ct_tag(&body, util::GCM_NONCE_LEN)?;
        let (key_id, plaintext) = util::try_each(ring, AES, |id, key| {
            util::aead_open(id, key, nonce, ct, tag)
        })?;
        Ok(Opened {
            plaintext,
            key_id,
            encoding: Encoding::Text,
            carry: Carry::None,
        })
    }

    fn reseal(
        &self,
        ring: &Keyring,
        opened: &Opened,
        context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        self.encrypt(ring, &opened.plaintext, context)
    }

    fn encrypt(
        &self,
        ring: &Keyring,
        plaintext: &[u8],
        _context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        let (_, key) = util::primary(ring, AES)?;
        Ok(STANDARD
            .encode(util::gcm_seal_concat(key, plaintext)?)
            .into_bytes())
    }

    fn primary_prefix(&self, _ring: &Keyring) -> Option<Vec<u8>> {
        None
    }

    fn shape(&self) -> Shape {
        // Strict base64 of nonce (12) ‖ ciphertext ‖ tag (16): 28 bytes at
        // least, 40 characters, a multiple of four.
        // The length is checked apart (see `Shape::TextMin`).
        Shape::TextMin {
            min_len: 40,
            patterns: vec![
                r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$"
                    .into(),
            ],
        }
    }

    fn key_id_location(&self) -> KeyIdLocation {
        KeyIdLocation::None
    }
}

const _: () = assert!(TAG_LEN == 16);
