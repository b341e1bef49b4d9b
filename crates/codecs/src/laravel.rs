//! Laravel's Encrypter: base64 of JSON `{"iv","value","mac","tag"}`.
//!
//! AES-256-CBC: `mac` = lowercase hex HMAC-SHA256(key, iv_b64 ‖ value_b64)
//! over the base64 strings as stored, `tag` empty. AES-256-GCM: `mac` empty,
//! `tag` = base64 of the 16-byte tag, no associated data, 12-byte IV. The
//! plaintext (usually PHP `serialize()` output) is opaque bytes.

use crate::config::LaravelCipher;
use crate::util::{self, AES};
use aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use keyturn_format::{
    Carry, Codec, Encoding, Field, FormatError, Inspection, KeyId, KeyIdLocation, Keyring, Opened,
    SecretKey, Shape, TAG_LEN,
};
use serde::Deserialize;
use sha2::Sha256;
use std::borrow::Cow;
use zeroize::Zeroizing;

/// The Laravel Encrypter codec, for one cipher (AES-256-CBC with HMAC, or AES-256-GCM).
#[derive(Debug, Clone, Copy)]
pub struct LaravelCodec {
    cipher: LaravelCipher,
}

impl LaravelCodec {
    /// A codec for values written with `cipher`.
    pub fn new(cipher: LaravelCipher) -> Self {
        LaravelCodec { cipher }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload<'a> {
    #[serde(borrow)]
    iv: Cow<'a, str>,
    #[serde(borrow)]
    value: Cow<'a, str>,
    #[serde(borrow)]
    mac: Cow<'a, str>,
    /// Absent before Laravel 9.
    #[serde(borrow, default)]
    tag: Option<Cow<'a, str>>,
}

/// The decoded parts of a value.
struct Parsed {
    iv: Vec<u8>,
    ct: Vec<u8>,
    /// CBC: the MAC input (`iv_b64 ‖ value_b64`) and the MAC; GCM: the tag.
    mac_input: Vec<u8>,
    auth: Vec<u8>,
}

fn parse(stored: &[u8], cipher: LaravelCipher) -> Result<Parsed, FormatError> {
    if stored.is_empty() {
        return Err(FormatError::Empty);
    }
    util::check_stored_len(stored)?;
    let json = util::b64_std(stored, "a Laravel payload is standard base64 of JSON")?;
    let p: Payload<'_> = serde_json::from_slice(&json).map_err(|_| {
        FormatError::BadTextEncoding("a Laravel payload is JSON with iv, value, mac, tag")
    })?;
    let iv = util::b64_std(p.iv.as_bytes(), "Laravel iv is not standard base64")?;
    let ct = util::b64_std(p.value.as_bytes(), "Laravel value is not standard base64")?;
    let tag = p.tag.as_deref().unwrap_or("");
    match cipher {
        LaravelCipher::Aes256Cbc => {
            if !tag.is_empty() {
                return Err(FormatError::UnknownAlgorithm(
                    "AES-256-GCM value (it has a tag) for a codec configured for AES-256-CBC"
                        .into(),
                ));
            }
            if iv.len() != 16 {
                return Err(FormatError::Truncated(Field::Nonce));
            }
            if ct.is_empty() || ct.len() % 16 != 0 {
                return Err(FormatError::Truncated(Field::Ciphertext));
            }
            if p.mac.len() != 64 {
                return Err(FormatError::Truncated(Field::Tag));
            }
            let mac = hex::decode(p.mac.as_bytes())
                .map_err(|_| FormatError::BadTextEncoding("Laravel mac is not hex"))?;
            let mut mac_input = Vec::with_capacity(p.iv.len() + p.value.len());
            mac_input.extend_from_slice(p.iv.as_bytes());
            mac_input.extend_from_slice(p.value.as_bytes());
            Ok(Parsed {
                iv,
                ct,
                mac_input,
                auth: mac,
            })
        }
        LaravelCipher::Aes256Gcm => {
            if !p.mac.is_empty() {
                return Err(FormatError::UnknownAlgorithm(
                    "AES-256-CBC value (it has a mac) for a codec configured for AES-256-GCM"
                        .into(),
                ));
            }
            if iv.len() != util::GCM_NONCE_LEN {
                return Err(FormatError::Truncated(Field::Nonce));
            }
            let tag = util::b64_std(tag.as_bytes(), "Laravel tag is not standard base64")?;
            if tag.len() != TAG_LEN {
                return Err(FormatError::Truncated(Field::Tag));
            }
            Ok(Parsed {
                iv,
                ct,
                mac_input: Vec::new(),
                auth: tag,
            })
        }
    }
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

fn open_with(
    id: &KeyId,
    key: &SecretKey,
    p: &Parsed,
    cipher: LaravelCipher,
) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    match cipher {
        LaravelCipher::Aes256Cbc => {
            let mut m = hmac(key.expose_bytes());
            m.update(&p.mac_input);
            m.verify_slice(&p.auth)
                .map_err(|_| FormatError::AuthenticationFailed(id.as_str().to_owned()))?;
            let mut buf = Zeroizing::new(p.ct.clone());
            let dec = cbc::Decryptor::<Aes256>::new_from_slices(key.expose_bytes(), &p.iv)
                .map_err(|_| FormatError::Crypto("AES-256-CBC key setup failed"))?;
            let n = dec
                .decrypt_padded_mut::<Pkcs7>(&mut buf)
                .map_err(|_| FormatError::Crypto("Laravel value has a valid MAC but bad padding"))?
                .len();
            buf.truncate(n);
            Ok(buf)
        }
        LaravelCipher::Aes256Gcm => util::aead_open(id, key, &p.iv, &p.ct, &p.auth),
    }
}

fn seal(key: &SecretKey, plaintext: &[u8], cipher: LaravelCipher) -> Result<Vec<u8>, FormatError> {
    util::check_plaintext_len(plaintext)?;
    let (iv_b64, value_b64, mac, tag_b64) = match cipher {
        LaravelCipher::Aes256Cbc => {
            let mut iv = [0u8; 16];
            util::random(&mut iv)?;
            let padded = (plaintext.len() / 16 + 1) * 16;
            let mut buf = vec![0u8; padded];
            buf[..plaintext.len()].copy_from_slice(plaintext);
            let enc = cbc::Encryptor::<Aes256>::new_from_slices(key.expose_bytes(), &iv)
                .map_err(|_| FormatError::Crypto("AES-256-CBC key setup failed"))?;
            enc.encrypt_padded_mut::<Pkcs7>(&mut buf, plaintext.len())
                .map_err(|_| FormatError::Crypto("AES-256-CBC padding failed"))?;
            let iv_b64 = STANDARD.encode(iv);
            let value_b64 = STANDARD.encode(&buf);
            let mut m = hmac(key.expose_bytes());
            m.update(iv_b64.as_bytes());
            m.update(value_b64.as_bytes());
            let mac = hex::encode(m.finalize().into_bytes());
            (iv_b64, value_b64, mac, String::new())
        }
        LaravelCipher::Aes256Gcm => {
            let (nonce, ct, tag) = util::gcm_seal(key, plaintext)?;
            (
                STANDARD.encode(nonce),
                STANDARD.encode(&ct),
                String::new(),
                STANDARD.encode(tag),
            )
        }
    };
    // Base64 and hex need no JSON escaping; Laravel writes slashes unescaped.
    let json =
        format!(r#"{{"iv":"{iv_b64}","value":"{value_b64}","mac":"{mac}","tag":"{tag_b64}"}}"#);
    Ok(STANDARD.encode(json).into_bytes())
}

impl Codec for LaravelCodec {
    fn name(&self) -> &str {
        "laravel"
    }

    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v> {
        match parse(stored, self.cipher) {
            Ok(_) => Inspection::KeyUnknown,
            // `eyJpdiI6` is base64 of `{"iv":`.
            Err(e) if stored.starts_with(b"eyJ") => Inspection::Invalid(e),
            Err(_) => Inspection::NotThisFormat,
        }
    }

    fn decrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        _context: &[&[u8]],
    ) -> Result<Opened, FormatError> {
        let p = parse(stored, self.cipher)?;
        let (key_id, plaintext) =
            util::try_each(ring, AES, |id, key| open_with(id, key, &p, self.cipher))?;
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
        _context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        let (_, key) = util::primary(ring, AES)?;
        seal(key, &opened.plaintext, self.cipher)
    }

    fn encrypt(
        &self,
        ring: &Keyring,
        plaintext: &[u8],
        _context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        let (_, key) = util::primary(ring, AES)?;
        seal(key, plaintext, self.cipher)
    }

    fn primary_prefix(&self, _ring: &Keyring) -> Option<Vec<u8>> {
        None
    }

    fn shape(&self) -> Shape {
        // Standard base64 of JSON starting `{"iv":`.
        // `eyJpdiI6` and at least 40 more characters, the length checked
        // apart (see `Shape::TextMin`).
        Shape::TextMin {
            min_len: 8 + 40,
            patterns: vec![r"^eyJpdiI6[A-Za-z0-9+/]*={0,2}$".into()],
        }
    }

    fn key_id_location(&self) -> KeyIdLocation {
        KeyIdLocation::None
    }
}
