//! Codecs for other frameworks' ciphertext formats, so keyturn can rotate
//! them in place: each value is decrypted with whichever key of the ring
//! fits and written back **in the same format** under the primary key, so
//! the unchanged application reads it with its new key.
//!
//! Pure: no I/O, no async. Every codec implements
//! [`keyturn_format::Codec`]; [`build`] turns a [`CodecConfig`] into one,
//! [`parse_key`] turns the framework's own key strings into keyring entries,
//! and [`detect`] guesses which format a value is in (for mixed columns).
//!
//! | codec | layout | key hint | SQL skip |
//! |---|---|---|---|
//! | `fernet`, `django-fernet-fields` | Fernet token | none (trial) | no |
//! | `laravel` | base64(JSON iv/value/mac/tag), CBC+HMAC or GCM | none (trial) | no |
//! | `rails` | JSON p/h, AES-256-GCM, PBKDF2 key | `h.i` when stored | JSON path |
//! | `lockbox` | base64(nonce ‖ ct ‖ tag), HKDF field key | none (trial) | no |
//! | `vault-transit` | `vault:vN:` base64 | version | prefix |
//! | `cloak` | `v1.aesgcm256.<fp>.<iv>.<ct>` | fingerprint | prefix |
//! | `node-gcm` | `hex(iv):hex(tag):hex(ct)` | none (trial) | no |
//! | `version-byte` | byte ‖ nonce ‖ ct ‖ tag | version byte | prefix |
//! | `sodium-prefix` | `<id>:` base64(nonce ‖ box) | prefix | prefix |
//! | `aws-kms` (kms = ...) | AWS KMS `CiphertextBlob`, raw or base64 | none (KMS decides) | no |
//! | `json-envelope` | `{"key_id",..}` | `key_id` | prefix / JSON path |
//! | `envelope` (multi-column) | ciphertext, IV, key id, wrapped data key columns | key-id column | column |
//! | `split-columns` (multi-column) | ciphertext, IV, key id columns | key-id column | column |
//!
//! Formats without a key hint are decrypted by trying the primary key first,
//! then every other usable key: with a ring of two keys, at most two
//! decryptions per value, and a value that opens under the primary is
//! already rotated. The codecs ignore the engine's `context` (these formats
//! carry no associated data). See docs/CODECS.md for each framework.
//!
//! # Multi-column values
//!
//! [`Codec`](keyturn_format::Codec) maps one stored value to one stored
//! value. Schemes that spread a value over columns (ciphertext, IV, key id,
//! wrapped data key) need a sibling trait, [`multi::MultiColumnCodec`]:
//!
//! - The unit is a small row struct, [`multi::Cells`], with one optional
//!   cell per [`multi::Role`]; the job config maps roles to column names, and
//!   [`MultiColumnCodec::roles`](multi::MultiColumnCodec::roles) says which
//!   roles the codec reads and writes.
//! - `inspect_row` / `decrypt_row` / `reseal_row` / `encrypt_row` mirror the
//!   single-value trait, and `reencrypt_row` returns every new cell, which
//!   the engine writes in **one** UPDATE whose WHERE compares all old cells
//!   (compare-and-swap over the tuple), so a concurrent writer is never
//!   overwritten half-way.
//! - `key_id_role` names the column that holds the key id, so SQL can skip
//!   rows already under the primary and count rows per key without
//!   decrypting (`GROUP BY`).
//! - [`envelope::EnvelopeCodec`] (a per-row data key wrapped by the key the
//!   key-id column names) rotates by re-wrapping the data key (new
//!   `WrappedKey` and `KeyId` cells) without touching the ciphertext: the
//!   codec returns the unchanged cells along with the changed ones, and the
//!   database layer only writes the cells that differ.
//!
//! [`multi::SplitColumnsCodec`] implements it for ciphertext, IV and key-id
//! columns with AES-256-GCM. Multi-column codecs are configured like the
//! others ([`CodecConfig::Envelope`], [`CodecConfig::SplitColumns`]) and
//! built with [`build_multi`]; the engine wires them through
//! `keyturn_engine::multi`.
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]

pub mod aws_kms;
pub mod cloak;
pub mod config;
pub mod envelope;
pub mod fernet;
pub mod json_envelope;
pub mod keys;
pub mod laravel;
pub mod lockbox;
pub mod multi;
pub mod node;
pub mod rails;
pub mod sodium;
mod util;
pub mod vault;
pub mod version_byte;

pub use config::{
    CodecConfig, EnvelopeRotation, EnvelopeWrap, LaravelCipher, NativeEncoding, RailsKdf,
    SodiumAlgorithm, build, build_multi,
};
pub use keys::parse_key;

use keyturn_format::{FormatError, KeyId, Keyring, SecretKey};

/// What a value looks like, from its bytes alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Detected {
    /// keyturn's own format v1.
    Native,
    /// A Fernet token (`gAAAAA...`).
    Fernet,
    /// A Laravel Encrypter payload (base64 JSON starting `{"iv":`).
    Laravel,
    /// A Rails Active Record Encryption JSON value (`{"p":...`).
    Rails,
    /// A Vault / OpenBao transit value (`vault:v<N>:...`).
    VaultTransit,
    /// An @47ng/cloak value (`v1.aesgcm256.`...).
    Cloak,
    /// A Node.js `hex(iv):hex(tag):hex(ct)` value.
    NodeGcm,
    /// A JSON envelope starting `{"key_id":`.
    JsonEnvelope,
    /// `<key id>:<base64>`: a sodium-prefix value, or text that happens to
    /// look like one.
    KeyPrefixedBase64,
    /// None of the above: plaintext, or a format without a recognisable
    /// marker (Lockbox base64, version-byte binary).
    Unrecognised,
}

/// Guesses a value's format from its markers (for mixed columns and for
/// `keyturn` to suggest a codec). Cheap: checks prefixes and decodes at most
/// the start of the value. A codec's own [`inspect`] is authoritative for
/// its format: it answers `NotThisFormat` for plaintext and other formats.
///
/// [`inspect`]: keyturn_format::Codec::inspect
pub fn detect(value: &[u8]) -> Detected {
    use keyturn_format::{Codec, Inspection};
    let native = keyturn_format::NativeCodec {
        encoding: keyturn_format::Encoding::Text,
    };
    match native.inspect(value) {
        Inspection::UnderKey(_) | Inspection::Invalid(_)
            if value.starts_with(b"kt") || value.first() == Some(&0x8B) =>
        {
            return Detected::Native;
        }
        _ => {}
    }
    if value.starts_with(b"gAAAAA") {
        Detected::Fernet
    } else if value.starts_with(b"eyJpdiI6") {
        Detected::Laravel
    } else if value.starts_with(b"{\"p\":") {
        Detected::Rails
    } else if value.starts_with(vault::PREFIX.as_bytes()) {
        Detected::VaultTransit
    } else if value.starts_with(cloak::PREFIX.as_bytes()) {
        Detected::Cloak
    } else if value.starts_with(b"{\"key_id\":") {
        Detected::JsonEnvelope
    } else if looks_like_node(value) {
        Detected::NodeGcm
    } else if looks_like_key_prefixed(value) {
        Detected::KeyPrefixedBase64
    } else {
        Detected::Unrecognised
    }
}

fn looks_like_node(v: &[u8]) -> bool {
    let parts: Vec<&[u8]> = v.split(|&c| c == b':').collect();
    parts.len() == 3
        && (parts[0].len() == 24 || parts[0].len() == 32)
        && parts[1].len() == 32
        && parts.iter().all(|p| {
            p.iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        })
}

fn looks_like_key_prefixed(v: &[u8]) -> bool {
    let Some(colon) = v.iter().position(|&c| c == b':') else {
        return false;
    };
    let body = &v[colon + 1..];
    std::str::from_utf8(&v[..colon]).is_ok_and(|id| KeyId::new(id).is_ok())
        && body.len() >= 56
        && body
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
}

/// Loads a ring from the codec's own key strings: `(id, text)` pairs (id
/// may be empty where the codec derives it), `primary` naming the key that
/// encrypts (by the id it gets).
pub fn load_ring(
    config: &CodecConfig,
    keys: &[(&str, &str)],
    primary: Option<&str>,
    retired: &[String],
) -> Result<Keyring, FormatError> {
    let parsed: Vec<(KeyId, SecretKey)> = keys
        .iter()
        .map(|(id, text)| parse_key(config, id, text))
        .collect::<Result<_, _>>()?;
    Keyring::from_keys(parsed, primary, retired)
}
