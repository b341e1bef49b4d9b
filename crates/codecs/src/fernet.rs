//! Fernet tokens (Python `cryptography`), also used by django-fernet-fields
//! (binary column of the same token bytes, keys derived with HKDF).
//!
//! Token: urlsafe base64 (padded) of `0x80 ‖ u64 BE timestamp ‖ IV(16) ‖
//! AES-128-CBC/PKCS7 ciphertext ‖ HMAC-SHA256(everything before)`. The HMAC
//! is checked (in constant time) before decrypting. Re-encryption keeps the
//! original timestamp, as `MultiFernet.rotate` does.

use crate::util::{self, FERNET};
use aes::Aes128;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use keyturn_format::{
    Carry, Codec, Encoding, Field, FormatError, Inspection, KeyId, KeyIdLocation, Keyring, Opened,
    SecretKey, Shape,
};
use sha2::Sha256;
use zeroize::Zeroizing;

const VERSION: u8 = 0x80;
const HEADER: usize = 1 + 8 + 16;
const MAC_LEN: usize = 32;
/// Shortest token: header, one cipher block, HMAC.
const MIN_TOKEN: usize = HEADER + 16 + MAC_LEN;

/// Fernet and django-fernet-fields (same tokens, different key strings).
#[derive(Debug, Clone, Copy)]
pub struct FernetCodec {
    name: &'static str,
}

impl FernetCodec {
    /// The codec for Python `cryptography` Fernet tokens stored as text.
    pub fn fernet() -> Self {
        FernetCodec { name: "fernet" }
    }
    /// The codec for django-fernet-fields: the same tokens in a binary column
    /// (keys passed through HKDF when parsed, unless `use_hkdf` is false).
    pub fn django() -> Self {
        FernetCodec {
            name: "django-fernet-fields",
        }
    }
}

/// A decoded token, before authentication.
struct Token {
    data: Vec<u8>,
}

impl Token {
    fn timestamp(&self) -> u64 {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&self.data[1..9]);
        u64::from_be_bytes(ts)
    }
}

/// Decodes and checks the structure of a token.
fn parse(stored: &[u8]) -> Result<Token, FormatError> {
    if stored.is_empty() {
        return Err(FormatError::Empty);
    }
    util::check_stored_len(stored)?;
    let data = util::b64_url(stored, "a Fernet token is padded urlsafe base64")?;
    match data.first() {
        None => return Err(FormatError::Truncated(Field::Version)),
        Some(&VERSION) => {}
        Some(&v) => return Err(FormatError::UnknownVersion(u32::from(v))),
    }
    if data.len() < 9 {
        return Err(FormatError::Truncated(Field::Version));
    }
    if data.len() < HEADER {
        return Err(FormatError::Truncated(Field::Nonce));
    }
    if data.len() < MIN_TOKEN - MAC_LEN {
        return Err(FormatError::Truncated(Field::Ciphertext));
    }
    if data.len() < MIN_TOKEN {
        return Err(FormatError::Truncated(Field::Tag));
    }
    if !(data.len() - HEADER - MAC_LEN).is_multiple_of(16) {
        return Err(FormatError::Truncated(Field::Ciphertext));
    }
    Ok(Token { data })
}

fn hmac(signing: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(signing).expect("HMAC takes keys of any length")
}

/// Verifies the HMAC and decrypts with one key.
fn open_with(
    id: &KeyId,
    key: &SecretKey,
    token: &Token,
) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let k = key.expose_bytes();
    let (signing, encryption) = k.split_at(16);
    let (signed, mac) = token.data.split_at(token.data.len() - MAC_LEN);
    let mut m = hmac(signing);
    m.update(signed);
    m.verify_slice(mac)
        .map_err(|_| FormatError::AuthenticationFailed(id.as_str().to_owned()))?;
    let iv = &signed[9..HEADER];
    let mut buf = Zeroizing::new(signed[HEADER..].to_vec());
    let dec = cbc::Decryptor::<Aes128>::new_from_slices(encryption, iv)
        .map_err(|_| FormatError::Crypto("AES-128-CBC key setup failed"))?;
    // The MAC was valid, so bad padding means the writer was broken (or the
    // key's halves were swapped), not an attacker.
    let n = dec
        .decrypt_padded_mut::<Pkcs7>(&mut buf)
        .map_err(|_| FormatError::Crypto("Fernet token has valid HMAC but bad padding"))?
        .len();
    buf.truncate(n);
    Ok(buf)
}

/// Builds a token under `key` with `timestamp`.
pub(crate) fn seal(
    key: &SecretKey,
    timestamp: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>, FormatError> {
    util::check_plaintext_len(plaintext)?;
    let k = key.expose_bytes();
    let (signing, encryption) = k.split_at(16);
    let padded = (plaintext.len() / 16 + 1) * 16;
    let mut data = vec![0u8; HEADER + padded + MAC_LEN];
    data[0] = VERSION;
    data[1..9].copy_from_slice(&timestamp.to_be_bytes());
    util::random(&mut data[9..HEADER])?;
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&data[9..HEADER]);
    data[HEADER..HEADER + plaintext.len()].copy_from_slice(plaintext);
    let enc = cbc::Encryptor::<Aes128>::new_from_slices(encryption, &iv)
        .map_err(|_| FormatError::Crypto("AES-128-CBC key setup failed"))?;
    enc.encrypt_padded_mut::<Pkcs7>(&mut data[HEADER..HEADER + padded], plaintext.len())
        .map_err(|_| FormatError::Crypto("AES-128-CBC padding failed"))?;
    let mut m = hmac(signing);
    m.update(&data[..HEADER + padded]);
    let tag = m.finalize().into_bytes();
    data[HEADER + padded..].copy_from_slice(&tag);
    Ok(URL_SAFE.encode(&data).into_bytes())
}

impl Codec for FernetCodec {
    fn name(&self) -> &str {
        self.name
    }

    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v> {
        match parse(stored) {
            Ok(_) => Inspection::KeyUnknown,
            // A value that starts like a token, or decodes to something
            // token-sized, is a damaged token; anything else is plaintext or
            // another format.
            Err(e)
                if stored.starts_with(b"gAAAAA")
                    || URL_SAFE
                        .decode(stored)
                        .is_ok_and(|d| d.len() >= HEADER + MAC_LEN) =>
            {
                Inspection::Invalid(e)
            }
            Err(_) => Inspection::NotThisFormat,
        }
    }

    fn decrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        _context: &[&[u8]],
    ) -> Result<Opened, FormatError> {
        let token = parse(stored)?;
        let (key_id, plaintext) =
            util::try_each(ring, FERNET, |id, key| open_with(id, key, &token))?;
        Ok(Opened {
            plaintext,
            key_id,
            encoding: Encoding::Text,
            carry: Carry::Timestamp(token.timestamp()),
        })
    }

    fn reseal(
        &self,
        ring: &Keyring,
        opened: &Opened,
        _context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        let (_, key) = util::primary(ring, FERNET)?;
        let ts = match opened.carry {
            Carry::Timestamp(t) => t,
            _ => util::now_unix(),
        };
        seal(key, ts, &opened.plaintext)
    }

    fn encrypt(
        &self,
        ring: &Keyring,
        plaintext: &[u8],
        _context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        let (_, key) = util::primary(ring, FERNET)?;
        seal(key, util::now_unix(), plaintext)
    }

    fn primary_prefix(&self, _ring: &Keyring) -> Option<Vec<u8>> {
        None
    }

    fn shape(&self) -> Shape {
        // 0x80 and a timestamp below 2^36 encode as `gAAAAA`; a token is 73
        // bytes at least: 98 base64url characters before the padding.
        // `gAAAAA` and at least 92 more characters, the length checked apart
        // (see `Shape::TextMin`).
        Shape::TextMin {
            min_len: 6 + 92,
            patterns: vec![r"^gAAAAA[A-Za-z0-9_-]*={0,2}$".into()],
        }
    }

    fn key_id_location(&self) -> KeyIdLocation {
        KeyIdLocation::None
    }
}
