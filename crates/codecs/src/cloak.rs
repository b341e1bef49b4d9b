//! @47ng/cloak: `v1.aesgcm256.<fingerprint>.<b64url(iv 12)>.<b64url(ct ‖ tag)>`.
//!
//! The fingerprint (8 hex chars of SHA-256 over the key string) is the key
//! id: keys are loaded with ids equal to their fingerprints. Base64url as
//! cloak writes it under Node.js: the IV (12 bytes) has no padding, the
//! ciphertext keeps `=` padding; unpadded ciphertexts are accepted.

use crate::util::{self, AES};
use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use keyturn_format::{
    Carry, Codec, Encoding, Field, FormatError, Inspection, KeyIdLocation, Keyring, Opened, Shape,
    TAG_LEN,
};

/// The text every cloak value starts with, before the key fingerprint.
pub const PREFIX: &str = "v1.aesgcm256.";

/// The @47ng/cloak codec: text values `v1.aesgcm256.<fingerprint>.<iv>.<ct>`, keyed by fingerprint.
#[derive(Debug, Clone, Copy)]
pub struct CloakCodec;

struct Parsed<'a> {
    fingerprint: &'a str,
    iv: Vec<u8>,
    /// ct ‖ tag
    body: Vec<u8>,
}

fn parse(stored: &[u8]) -> Result<Parsed<'_>, FormatError> {
    if stored.is_empty() {
        return Err(FormatError::Empty);
    }
    let rest = stored
        .strip_prefix(PREFIX.as_bytes())
        .ok_or(FormatError::UnknownFormat)?;
    util::check_stored_len(stored)?;
    let mut parts = rest.split(|&c| c == b'.');
    let (Some(fp), Some(iv), Some(ct)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(FormatError::Truncated(Field::Ciphertext));
    };
    if parts.next().is_some() {
        return Err(FormatError::BadTextEncoding(
            "a cloak value has exactly five dot-separated parts",
        ));
    }
    if fp.len() != 8 || !fp.iter().all(u8::is_ascii_hexdigit) {
        return Err(FormatError::InvalidKeyId(
            "a cloak fingerprint is 8 hex characters".into(),
        ));
    }
    let iv = URL_SAFE_NO_PAD
        .decode(iv)
        .map_err(|_| FormatError::BadTextEncoding("cloak IV is not base64url"))?;
    if iv.len() != util::GCM_NONCE_LEN {
        return Err(FormatError::Truncated(Field::Nonce));
    }
    let body = if ct.ends_with(b"=") {
        URL_SAFE.decode(ct)
    } else {
        URL_SAFE_NO_PAD.decode(ct)
    }
    .map_err(|_| FormatError::BadTextEncoding("cloak ciphertext is not base64url"))?;
    if body.len() < TAG_LEN {
        return Err(FormatError::Truncated(Field::Tag));
    }
    Ok(Parsed {
        fingerprint: util::utf8(fp, "fingerprint")?,
        iv,
        body,
    })
}

impl Codec for CloakCodec {
    fn name(&self) -> &str {
        "cloak"
    }

    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v> {
        match parse(stored) {
            Ok(p) => Inspection::UnderKey(p.fingerprint),
            Err(FormatError::UnknownFormat | FormatError::Empty) => Inspection::NotThisFormat,
            Err(e) => Inspection::Invalid(e),
        }
    }

    fn decrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        _context: &[&[u8]],
    ) -> Result<Opened, FormatError> {
        let p = parse(stored)?;
        let (key_id, key) = util::named(ring, p.fingerprint, AES)?;
        let (ct, tag) = p.body.split_at(p.body.len() - TAG_LEN);
        let plaintext = util::aead_open(&key_id, key, &p.iv, ct, tag)?;
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
        let (id, key) = util::primary(ring, AES)?;
        let sealed = util::gcm_seal_concat(key, plaintext)?;
        let (iv, body) = sealed.split_at(util::GCM_NONCE_LEN);
        let mut out = format!("{PREFIX}{}.", id.as_str());
        URL_SAFE_NO_PAD.encode_string(iv, &mut out);
        out.push('.');
        URL_SAFE.encode_string(body, &mut out);
        Ok(out.into_bytes())
    }

    fn primary_prefix(&self, ring: &Keyring) -> Option<Vec<u8>> {
        Some(format!("{PREFIX}{}.", ring.primary_id().as_str()).into_bytes())
    }

    fn shape(&self) -> Shape {
        // IV: 12 bytes, 16 base64url characters; ciphertext ‖ tag: 16 bytes
        // at least, 22 characters and optional padding.
        // The fixed layout is 39 characters before the body; the length is
        // checked apart (see `Shape::TextMin`).
        Shape::TextMin {
            min_len: 39 + 22,
            patterns: vec![
                r"^v1\.aesgcm256\.[0-9A-Fa-f]{8}\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]*={0,2}$".into(),
            ],
        }
    }

    fn key_id_location(&self) -> KeyIdLocation {
        KeyIdLocation::TextDelimited {
            prefix: PREFIX,
            terminator: b'.',
        }
    }
}
