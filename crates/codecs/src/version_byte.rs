//! One version byte selecting the key, then `nonce(12) ‖ ct ‖ tag(16)`,
//! AES-256-GCM, no associated data (a common Go / in-house layout). The
//! configured map turns the byte into a key id. Binary values.

use crate::util::{self, AES};
use keyturn_format::{
    Carry, Codec, Encoding, FormatError, Inspection, KeyId, KeyIdLocation, Keyring, Opened, Shape,
    TAG_LEN,
};

/// The version-byte codec: the first byte of a binary value selects the key, then AES-256-GCM.
#[derive(Debug, Clone)]
pub struct VersionByteCodec {
    ids: Vec<(u8, KeyId)>,
}

impl VersionByteCodec {
    /// A codec mapping each version byte to the key id it stands for.
    pub fn new(ids: Vec<(u8, KeyId)>) -> Self {
        VersionByteCodec { ids }
    }

    fn id_of(&self, b: u8) -> Option<&KeyId> {
        self.ids.iter().find(|(x, _)| *x == b).map(|(_, id)| id)
    }

    fn byte_of(&self, id: &KeyId) -> Result<u8, FormatError> {
        self.ids
            .iter()
            .find(|(_, i)| i == id)
            .map(|(b, _)| *b)
            .ok_or_else(|| {
                FormatError::Keyring(format!(
                    "key {:?} has no version byte in the codec config",
                    id.as_str()
                ))
            })
    }

    fn parse<'s>(&self, stored: &'s [u8]) -> Result<(&KeyId, &'s [u8]), FormatError> {
        let (&b, body) = stored.split_first().ok_or(FormatError::Empty)?;
        util::check_stored_len(stored)?;
        let id = self
            .id_of(b)
            .ok_or(FormatError::UnknownVersion(u32::from(b)))?;
        util::split_nonce_ct_tag(body, util::GCM_NONCE_LEN)?;
        Ok((id, body))
    }
}

impl Codec for VersionByteCodec {
    fn name(&self) -> &str {
        "version-byte"
    }

    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v> {
        match self.parse(stored) {
            Ok((id, _)) => Inspection::UnderKeyOwned(id.clone()),
            Err(FormatError::Empty) => Inspection::NotThisFormat,
            Err(e) => Inspection::Invalid(e),
        }
    }

    fn decrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        _context: &[&[u8]],
    ) -> Result<Opened, FormatError> {
        let (id, body) = self.parse(stored)?;
        let (key_id, key) = util::named(ring, id.as_str(), AES)?;
        let (nonce, ct, tag) = util::split_nonce_ct_tag(body, util::GCM_NONCE_LEN)?;
        let plaintext = util::aead_open(&key_id, key, nonce, ct, tag)?;
        Ok(Opened {
            plaintext,
            key_id,
            encoding: Encoding::Binary,
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
        let (id, key) = util::primary(ring, AES)?;
        let b = self.byte_of(id)?;
        let body = util::gcm_seal_concat(key, plaintext)?;
        let mut out = Vec::with_capacity(1 + body.len());
        out.push(b);
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn primary_prefix(&self, ring: &Keyring) -> Option<Vec<u8>> {
        self.byte_of(ring.primary_id()).ok().map(|b| vec![b])
    }

    fn shape(&self) -> Shape {
        // version ‖ nonce (12) ‖ ciphertext ‖ tag (16).
        Shape::Binary {
            min_len: 1 + util::GCM_NONCE_LEN + TAG_LEN,
        }
    }

    fn key_id_location(&self) -> KeyIdLocation {
        KeyIdLocation::BinaryByte {
            offset: 0,
            ids: self.ids.clone(),
        }
    }
}
