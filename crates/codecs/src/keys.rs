//! Each codec's key strings, parsed into keyring entries.
//!
//! Errors name the codec, the key id and what is wrong with the shape of the
//! key, never the key text or any part of it.

use crate::config::{CodecConfig, RailsKdf};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use hkdf::Hkdf;
use keyturn_format::{Algorithm, CodecKeyKind, FormatError, KeyId, SecretKey};
use sha1::{Digest, Sha1};
use sha2::{Sha256, Sha384};
use zeroize::Zeroizing;

/// Rails' PBKDF2 iteration count (ActiveSupport::KeyGenerator's default).
pub const RAILS_PBKDF2_ITERATIONS: u32 = 1 << 16;
/// django-fernet-fields' HKDF salt.
pub const DJANGO_HKDF_SALT: &[u8] = b"django-fernet-fields-hkdf-salt";
/// django-fernet-fields' HKDF info.
pub const DJANGO_HKDF_INFO: &[u8] = b"django-fernet-fields";

fn bad(codec: &str, id: &str, why: &str) -> FormatError {
    if id.is_empty() {
        FormatError::InvalidKeySpec(format!("{codec} key: {why}"))
    } else {
        FormatError::InvalidKeySpec(format!("{codec} key {id:?}: {why}"))
    }
}

/// The id a key gets: `given` when set, else `derived`; when both are set
/// they must agree (formats whose key hint is computed from the key).
fn settle_id(codec: &str, given: &str, derived: &str) -> Result<KeyId, FormatError> {
    if !given.is_empty() && given != derived {
        return Err(bad(
            codec,
            given,
            &format!(
                "values name this key {derived:?} (its key hint), so its key id must be {derived:?} or left empty"
            ),
        ));
    }
    KeyId::new(derived)
}

fn given_id(codec: &str, id: &str) -> Result<KeyId, FormatError> {
    if id.is_empty() {
        return Err(bad(codec, id, "a key id is required"));
    }
    KeyId::new(id).map_err(|e| bad(codec, id, &e.to_string()))
}

fn decode32(
    codec: &str,
    id: &str,
    text: &str,
    engine: &base64::engine::GeneralPurpose,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let bytes = Zeroizing::new(
        engine
            .decode(text.trim())
            .map_err(|_| bad(codec, id, &format!("key material is not valid {what}")))?,
    );
    if bytes.len() != 32 {
        return Err(bad(
            codec,
            id,
            &format!("key material decodes to {} bytes, expected 32", bytes.len()),
        ));
    }
    Ok(bytes)
}

fn decode_hex32(codec: &str, id: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let t = text.trim();
    if t.len() != 64 {
        return Err(bad(
            codec,
            id,
            &format!("expected 64 hex characters, got {}", t.len()),
        ));
    }
    Ok(Zeroizing::new(hex::decode(t).map_err(|_| {
        bad(codec, id, "key material is not valid hex")
    })?))
}

fn aes(bytes: &[u8]) -> Result<SecretKey, FormatError> {
    SecretKey::from_bytes(Algorithm::Aes256Gcm, bytes)
}

/// Parses one key string in the form the codec's own framework writes it,
/// returning the keyring entry.
///
/// | codec | `text` | id |
/// |---|---|---|
/// | fernet | urlsafe base64 of 32 bytes (`Fernet.generate_key()`) | required |
/// | django-fernet-fields | a `FERNET_KEYS` entry, any string (HKDF'd), or a Fernet key with `use_hkdf = false` | required |
/// | laravel | `base64:` + 32 bytes (`APP_KEY`) | required |
/// | rails | a `primary_key` string; derived with PBKDF2 | the key reference: empty or the 4 hex chars Rails writes in `i` |
/// | lockbox | 64 hex chars master key; the field key is derived for the table and column | required |
/// | vault-transit | base64 of 32 bytes (the exported version) | `v<N>` (`N` alone is accepted) |
/// | cloak | `k1.aesgcm256.<b64url>` | the fingerprint: empty or its 8 hex chars |
/// | node-gcm | 64 hex chars, or `base64:` + 32 bytes | required |
/// | version-byte, sodium-prefix, envelope, split-columns | standard base64 of 32 bytes, or `hex:` + 64 hex | required |
/// | json-envelope | `<key id>:<base64 32 bytes>` (e.g. `kek-v2:...`), or base64 alone with an id | from the string, or given |
/// | native | a keyturn key spec `<id>:<alg>:<base64>` | from the spec |
pub fn parse_key(
    config: &CodecConfig,
    id: &str,
    text: &str,
) -> Result<(KeyId, SecretKey), FormatError> {
    let codec = config.name();
    match config {
        CodecConfig::Native { .. } => {
            let spec = keyturn_format::KeySpec::parse(text.trim())?;
            if !id.is_empty() && id != spec.id.as_str() {
                return Err(bad(codec, id, "the key spec names another id"));
            }
            Ok((spec.id, spec.key))
        }
        CodecConfig::Fernet {}
        | CodecConfig::DjangoFernetFields {
            use_hkdf: false, ..
        } => {
            let id = given_id(codec, id)?;
            let bytes = decode32(codec, id.as_str(), text, &URL_SAFE, "urlsafe base64")?;
            Ok((id, SecretKey::codec(CodecKeyKind::Fernet, &bytes)?))
        }
        CodecConfig::DjangoFernetFields { use_hkdf: true } => {
            let id = given_id(codec, id)?;
            if text.is_empty() {
                return Err(bad(codec, id.as_str(), "empty key"));
            }
            let mut okm = Zeroizing::new([0u8; 32]);
            Hkdf::<Sha256>::new(Some(DJANGO_HKDF_SALT), text.as_bytes())
                .expand(DJANGO_HKDF_INFO, &mut okm[..])
                .map_err(|_| FormatError::Crypto("HKDF-SHA256 expand failed"))?;
            Ok((id, SecretKey::codec(CodecKeyKind::Fernet, &okm[..])?))
        }
        CodecConfig::Laravel { .. } => {
            let id = given_id(codec, id)?;
            let t = text.trim();
            let Some(b64) = t.strip_prefix("base64:") else {
                return Err(bad(
                    codec,
                    id.as_str(),
                    "expected base64:<32 bytes> (Laravel's APP_KEY form)",
                ));
            };
            let bytes = decode32(codec, id.as_str(), b64, &STANDARD, "standard base64")?;
            Ok((id, aes(&bytes)?))
        }
        CodecConfig::Rails {
            key_derivation_salt,
            kdf,
            ..
        } => {
            if text.is_empty() {
                return Err(bad(codec, id, "empty current key id"));
            }
            if key_derivation_salt.is_empty() {
                return Err(bad(codec, id, "the codec's key_derivation_salt is empty"));
            }
            let key = rails_derive(text.as_bytes(), key_derivation_salt.as_bytes(), *kdf);
            let reference = rails_key_reference(&key[..]);
            let id = settle_id(codec, id, &reference)?;
            Ok((id, aes(&key[..])?))
        }
        CodecConfig::Lockbox { table, column } => {
            let id = given_id(codec, id)?;
            let master = decode_hex32(codec, id.as_str(), text)?;
            let key = lockbox_field_key(&master, table, column);
            Ok((id, aes(&key[..])?))
        }
        CodecConfig::VaultTransit {} => {
            let id = if id.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty() {
                format!("v{id}")
            } else {
                id.to_owned()
            };
            let ok = id.strip_prefix('v').is_some_and(|n| {
                !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0')
            });
            if !ok {
                return Err(bad(
                    codec,
                    &id,
                    "Vault key ids are the key versions: v1, v2, ...",
                ));
            }
            let id = KeyId::new(&id)?;
            let bytes = decode32(codec, id.as_str(), text, &STANDARD, "standard base64")?;
            Ok((id, aes(&bytes)?))
        }
        CodecConfig::Cloak {} => {
            let t = text.trim();
            let Some(b64) = t.strip_prefix("k1.aesgcm256.") else {
                return Err(bad(codec, id, "expected k1.aesgcm256.<base64url 32 bytes>"));
            };
            let b64 = b64.strip_suffix('=').unwrap_or(b64);
            let bytes = decode32(codec, id, b64, &URL_SAFE_NO_PAD, "base64url")?;
            let fp = cloak_fingerprint(t);
            let id = settle_id(codec, id, &fp)?;
            Ok((id, aes(&bytes)?))
        }
        CodecConfig::NodeGcm { .. } => {
            let id = given_id(codec, id)?;
            let t = text.trim();
            let bytes = match t.strip_prefix("base64:") {
                Some(b) => decode32(codec, id.as_str(), b, &STANDARD, "standard base64")?,
                None => decode_hex32(codec, id.as_str(), t.strip_prefix("hex:").unwrap_or(t))?,
            };
            Ok((id, aes(&bytes)?))
        }
        CodecConfig::VersionByte { .. }
        | CodecConfig::SodiumPrefix { .. }
        | CodecConfig::Envelope { .. }
        | CodecConfig::SplitColumns {} => {
            let id = given_id(codec, id)?;
            let t = text.trim();
            let bytes = match t.strip_prefix("hex:") {
                Some(h) => decode_hex32(codec, id.as_str(), h)?,
                None => decode32(codec, id.as_str(), t, &STANDARD, "standard base64")?,
            };
            let key = match config {
                CodecConfig::SodiumPrefix {
                    algorithm: crate::config::SodiumAlgorithm::Xsalsa20poly1305,
                } => SecretKey::codec(CodecKeyKind::XSalsa20Poly1305, &bytes)?,
                CodecConfig::SodiumPrefix { .. } => {
                    SecretKey::from_bytes(Algorithm::XChaCha20Poly1305, &bytes)?
                }
                _ => aes(&bytes)?,
            };
            Ok((id, key))
        }
        CodecConfig::JsonEnvelope {} => {
            let t = text.trim();
            let (from_text, b64) = match t.rsplit_once(':') {
                Some((i, b)) => (i, b),
                None => ("", t),
            };
            let id = match (id, from_text) {
                ("", "") => return Err(bad(codec, id, "expected <key id>:<base64 32 bytes>")),
                (g, "") => given_id(codec, g)?,
                // Never echoed: what precedes the last ':' may be key
                // material (a trailing ':' leaves the whole key there).
                ("", f) => KeyId::new(f).map_err(|e| bad(codec, "", &e.to_string()))?,
                (g, f) if g == f => given_id(codec, g)?,
                (g, _) => return Err(bad(codec, g, "the key string names another id")),
            };
            let bytes = decode32(codec, id.as_str(), b64, &STANDARD, "standard base64")?;
            Ok((id, aes(&bytes)?))
        }
    }
}

/// Rails' key derivation: PBKDF2-HMAC(password, salt, 65536, 32 bytes).
pub fn rails_derive(password: &[u8], salt: &[u8], kdf: RailsKdf) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    match kdf {
        RailsKdf::Sha1 => {
            pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, RAILS_PBKDF2_ITERATIONS, &mut out[..])
        }
        RailsKdf::Sha256 => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, RAILS_PBKDF2_ITERATIONS, &mut out[..])
        }
    }
    out
}

/// Rails' key reference (`i`): the first 4 hex chars of SHA1(derived key).
pub fn rails_key_reference(derived: &[u8]) -> String {
    hex::encode(&Sha1::digest(derived)[..2])
}

/// Lockbox's field key: HKDF-SHA384(master, salt = table, info = 0xB4×32 ‖
/// column, 32 bytes).
pub fn lockbox_field_key(master: &[u8], table: &str, column: &str) -> Zeroizing<[u8; 32]> {
    let mut info = Vec::with_capacity(32 + column.len());
    info.extend_from_slice(&[0xB4; 32]);
    info.extend_from_slice(column.as_bytes());
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA384's 255 × 48 byte limit.
    let _ = Hkdf::<Sha384>::new(Some(table.as_bytes()), master).expand(&info, &mut okm[..]);
    okm
}

/// cloak's fingerprint: the first 8 hex chars of SHA-256 of the key string.
pub fn cloak_fingerprint(key_text: &str) -> String {
    hex::encode(&Sha256::digest(key_text.as_bytes())[..4])
}
