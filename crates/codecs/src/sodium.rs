//! Text version prefix + libsodium: `<key id>:` + standard base64 of
//! `nonce(24) ‖ box`, the prefix (e.g. `v1`, `v2`) naming the key.
//!
//! - `crypto_secretbox_easy` (XSalsa20-Poly1305): box = tag(16) ‖ ct.
//! - `crypto_aead_xchacha20poly1305_ietf_encrypt`, no AAD: box = ct ‖ tag(16).

use crate::config::SodiumAlgorithm;
use crate::util::{self, SECRETBOX, XCHACHA};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use keyturn_format::{
    Carry, Codec, Encoding, FormatError, Inspection, KEY_ID_PATTERN, KeyId, KeyIdLocation, KeyKind,
    Keyring, Opened, SecretKey, Shape, TAG_LEN,
};
use zeroize::Zeroizing;

const NONCE_LEN: usize = 24;

/// The `<key id>:` + base64 libsodium codec, for one of the two box layouts.
#[derive(Debug, Clone, Copy)]
pub struct SodiumPrefixCodec {
    algorithm: SodiumAlgorithm,
}

impl SodiumPrefixCodec {
    /// A codec for values sealed with `algorithm`.
    pub fn new(algorithm: SodiumAlgorithm) -> Self {
        SodiumPrefixCodec { algorithm }
    }

    fn kind(&self) -> KeyKind {
        match self.algorithm {
            SodiumAlgorithm::Xsalsa20poly1305 => SECRETBOX,
            SodiumAlgorithm::Xchacha20poly1305 => XCHACHA,
        }
    }

    fn open(
        &self,
        id: &KeyId,
        key: &SecretKey,
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, FormatError> {
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        match self.algorithm {
            SodiumAlgorithm::Xsalsa20poly1305 => {
                let (tag, ct) = sealed.split_at(TAG_LEN);
                let cipher = XSalsa20Poly1305::new_from_slice(key.expose_bytes())
                    .map_err(|_| FormatError::Crypto("XSalsa20-Poly1305 key setup failed"))?;
                let mut out = Zeroizing::new(ct.to_vec());
                // Lengths fixed by the split above (24-byte nonce, 16-byte tag).
                cipher
                    .decrypt_in_place_detached(
                        crypto_secretbox::Nonce::from_slice(nonce),
                        b"",
                        &mut out,
                        crypto_secretbox::Tag::from_slice(tag),
                    )
                    .map_err(|_| FormatError::AuthenticationFailed(id.as_str().to_owned()))?;
                Ok(out)
            }
            SodiumAlgorithm::Xchacha20poly1305 => {
                let (ct, tag) = sealed.split_at(sealed.len() - TAG_LEN);
                util::aead_open(id, key, nonce, ct, tag)
            }
        }
    }
}

/// Returns the key id and the decoded body (`nonce ‖ box`).
fn parse(stored: &[u8]) -> Result<(&str, Vec<u8>), FormatError> {
    if stored.is_empty() {
        return Err(FormatError::Empty);
    }
    util::check_stored_len(stored)?;
    let colon = stored
        .iter()
        .position(|&c| c == b':')
        .ok_or(FormatError::UnknownFormat)?;
    let id = std::str::from_utf8(&stored[..colon]).map_err(|_| FormatError::UnknownFormat)?;
    KeyId::new(id).map_err(|_| FormatError::UnknownFormat)?;
    let body = util::b64_std(
        &stored[colon + 1..],
        "the body after the key prefix is not standard base64",
    )?;
    if body.len() < NONCE_LEN {
        return Err(FormatError::Truncated(keyturn_format::Field::Nonce));
    }
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(FormatError::Truncated(keyturn_format::Field::Tag));
    }
    Ok((id, body))
}

impl Codec for SodiumPrefixCodec {
    fn name(&self) -> &str {
        "sodium-prefix"
    }

    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v> {
        match parse(stored) {
            Ok((id, _)) => Inspection::UnderKey(id),
            Err(e @ FormatError::Truncated(_)) => Inspection::Invalid(e),
            Err(_) => Inspection::NotThisFormat,
        }
    }

    fn decrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        _context: &[&[u8]],
    ) -> Result<Opened, FormatError> {
        let (id, body) = parse(stored)?;
        let (key_id, key) = util::named(ring, id, self.kind())?;
        let plaintext = self.open(&key_id, key, &body)?;
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
        let (id, key) = util::primary(ring, self.kind())?;
        let mut body = vec![0u8; NONCE_LEN + TAG_LEN + plaintext.len()];
        let (nonce, sealed) = body.split_at_mut(NONCE_LEN);
        util::random(nonce)?;
        match self.algorithm {
            SodiumAlgorithm::Xsalsa20poly1305 => {
                let (tag_out, ct) = sealed.split_at_mut(TAG_LEN);
                ct.copy_from_slice(plaintext);
                let cipher = XSalsa20Poly1305::new_from_slice(key.expose_bytes())
                    .map_err(|_| FormatError::Crypto("XSalsa20-Poly1305 key setup failed"))?;
                let tag = cipher
                    .encrypt_in_place_detached(crypto_secretbox::Nonce::from_slice(nonce), b"", ct)
                    .map_err(|_| FormatError::Crypto("XSalsa20-Poly1305 seal failed"))?;
                tag_out.copy_from_slice(&tag);
            }
            SodiumAlgorithm::Xchacha20poly1305 => {
                let (ct, tag_out) = sealed.split_at_mut(plaintext.len());
                ct.copy_from_slice(plaintext);
                let tag = key.seal_in_place(nonce, b"", ct)?;
                tag_out.copy_from_slice(&tag);
            }
        }
        let mut out = format!("{}:", id.as_str());
        STANDARD.encode_string(&body, &mut out);
        Ok(out.into_bytes())
    }

    fn primary_prefix(&self, ring: &Keyring) -> Option<Vec<u8>> {
        Some(format!("{}:", ring.primary_id().as_str()).into_bytes())
    }

    fn shape(&self) -> Shape {
        // nonce (24) ‖ box (16 at least): 40 bytes, 54 base64 characters
        // before the padding.
        // An id of one character at least, `:`, the body; the length is
        // checked apart (see `Shape::TextMin`).
        Shape::TextMin {
            min_len: 1 + 1 + 54,
            patterns: vec![format!("^{KEY_ID_PATTERN}:[A-Za-z0-9+/]*={{0,2}}$")],
        }
    }

    fn key_id_location(&self) -> KeyIdLocation {
        KeyIdLocation::TextDelimited {
            prefix: "",
            terminator: b':',
        }
    }
}
