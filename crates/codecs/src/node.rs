//! Node.js ad hoc AES-256-GCM: `hex(iv):hex(tag):hex(ct)`, lowercase hex,
//! no associated data. The IV is 12 bytes, or 16 (a non-96-bit GCM nonce,
//! which Node accepts: GHASH-derived counter block, handled here by
//! RustCrypto's `aes-gcm` with a 16-byte nonce size).

use crate::util::{self, AES};
use aes::Aes256;
use aes_gcm::aead::consts::U16;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{AesGcm, Nonce, Tag};
use keyturn_format::{
    Carry, Codec, Encoding, Field, FormatError, Inspection, KeyId, KeyIdLocation, Keyring, Opened,
    SecretKey, Shape, TAG_LEN,
};
use zeroize::Zeroizing;

type Aes256Gcm16 = AesGcm<Aes256, U16>;

/// The Node.js `hex(iv):hex(tag):hex(ct)` AES-256-GCM codec, with a fixed IV length.
#[derive(Debug, Clone, Copy)]
pub struct NodeGcmCodec {
    iv_len: usize,
}

impl NodeGcmCodec {
    /// A codec for IVs of `iv_len` bytes; only 12 and 16 are accepted, anything else is
    /// [`FormatError::Keyring`].
    pub fn new(iv_len: usize) -> Result<Self, FormatError> {
        if iv_len != 12 && iv_len != 16 {
            return Err(FormatError::Keyring(format!(
                "codec config: node-gcm iv_len is 12 or 16, got {iv_len}"
            )));
        }
        Ok(NodeGcmCodec { iv_len })
    }
}

struct Parsed {
    iv: Vec<u8>,
    tag: Vec<u8>,
    ct: Vec<u8>,
}

fn lower_hex(s: &[u8], what: &'static str) -> Result<Vec<u8>, FormatError> {
    if s.iter().any(u8::is_ascii_uppercase) {
        return Err(FormatError::BadTextEncoding(what));
    }
    hex::decode(s).map_err(|_| FormatError::BadTextEncoding(what))
}

fn parse(stored: &[u8], iv_len: usize) -> Result<Parsed, FormatError> {
    if stored.is_empty() {
        return Err(FormatError::Empty);
    }
    util::check_stored_len(stored)?;
    let mut parts = stored.split(|&c| c == b':');
    let (Some(iv), Some(tag), Some(ct)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(FormatError::UnknownFormat);
    };
    if parts.next().is_some() {
        return Err(FormatError::UnknownFormat);
    }
    let iv = lower_hex(iv, "the IV is not lowercase hex")?;
    let tag = lower_hex(tag, "the tag is not lowercase hex")?;
    let ct = lower_hex(ct, "the ciphertext is not lowercase hex")?;
    if iv.len() != iv_len {
        return Err(FormatError::Truncated(Field::Nonce));
    }
    if tag.len() != TAG_LEN {
        return Err(FormatError::Truncated(Field::Tag));
    }
    Ok(Parsed { iv, tag, ct })
}

fn open_with(id: &KeyId, key: &SecretKey, p: &Parsed) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    if p.iv.len() == util::GCM_NONCE_LEN {
        return util::aead_open(id, key, &p.iv, &p.ct, &p.tag);
    }
    let cipher = Aes256Gcm16::new_from_slice(key.expose_bytes())
        .map_err(|_| FormatError::Crypto("AES-256-GCM key setup failed"))?;
    let mut out = Zeroizing::new(p.ct.clone());
    // Lengths were checked by parse (16-byte IV, 16-byte tag).
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(&p.iv),
            b"",
            &mut out,
            Tag::from_slice(&p.tag),
        )
        .map_err(|_| FormatError::AuthenticationFailed(id.as_str().to_owned()))?;
    Ok(out)
}

impl Codec for NodeGcmCodec {
    fn name(&self) -> &str {
        "node-gcm"
    }

    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v> {
        match parse(stored, self.iv_len) {
            Ok(_) => Inspection::KeyUnknown,
            Err(
                FormatError::UnknownFormat | FormatError::Empty | FormatError::BadTextEncoding(_),
            ) => Inspection::NotThisFormat,
            Err(e) => Inspection::Invalid(e),
        }
    }

    fn decrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        _context: &[&[u8]],
    ) -> Result<Opened, FormatError> {
        let p = parse(stored, self.iv_len)?;
        let (key_id, plaintext) = util::try_each(ring, AES, |id, key| open_with(id, key, &p))?;
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
        util::check_plaintext_len(plaintext)?;
        let (_, key) = util::primary(ring, AES)?;
        let (iv, ct, tag): (Vec<u8>, Vec<u8>, Vec<u8>) = if self.iv_len == util::GCM_NONCE_LEN {
            let (n, ct, tag) = util::gcm_seal(key, plaintext)?;
            (n.to_vec(), ct, tag.to_vec())
        } else {
            let mut iv = [0u8; 16];
            util::random(&mut iv)?;
            let cipher = Aes256Gcm16::new_from_slice(key.expose_bytes())
                .map_err(|_| FormatError::Crypto("AES-256-GCM key setup failed"))?;
            let mut ct = plaintext.to_vec();
            let tag = cipher
                .encrypt_in_place_detached(Nonce::from_slice(&iv), b"", &mut ct)
                .map_err(|_| FormatError::Crypto("AES-256-GCM seal failed"))?;
            (iv.to_vec(), ct, tag.to_vec())
        };
        Ok(format!(
            "{}:{}:{}",
            hex::encode(iv),
            hex::encode(tag),
            hex::encode(ct)
        )
        .into_bytes())
    }

    fn primary_prefix(&self, _ring: &Keyring) -> Option<Vec<u8>> {
        None
    }

    fn shape(&self) -> Shape {
        Shape::Text(vec![format!(
            "^[0-9a-f]{{{}}}:[0-9a-f]{{32}}:[0-9a-f]*$",
            self.iv_len * 2
        )])
    }

    fn key_id_location(&self) -> KeyIdLocation {
        KeyIdLocation::None
    }
}
