//! Vault / OpenBao transit ciphertexts, `vault:v<N>:` + standard base64 of
//! `nonce(12) ‖ ct ‖ tag(16)`, for aes256-gcm96 keys whose versions are
//! held locally (exported from the server). Key ids are the versions (`v1`,
//! `v2`, ...), read from the prefix.

use crate::util::{self, AES};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyturn_format::{
    Carry, Codec, Encoding, Field, FormatError, Inspection, KeyIdLocation, Keyring, Opened, Shape,
};

/// The text every Vault transit value starts with, before its `v<N>:` key version.
pub const PREFIX: &str = "vault:";

/// The Vault / OpenBao transit codec, decrypting locally with exported aes256-gcm96 key versions.
#[derive(Debug, Clone, Copy)]
pub struct VaultTransitCodec;

/// Returns the version (`v3`) and the decoded body.
fn parse(stored: &[u8]) -> Result<(&str, Vec<u8>), FormatError> {
    if stored.is_empty() {
        return Err(FormatError::Empty);
    }
    let rest = stored
        .strip_prefix(PREFIX.as_bytes())
        .ok_or(FormatError::UnknownFormat)?;
    util::check_stored_len(stored)?;
    let end = rest
        .iter()
        .position(|&c| c == b':')
        .ok_or(FormatError::Truncated(Field::Version))?;
    let version = &rest[..end];
    let ok = version.len() >= 2
        && version.len() <= 11
        && version[0] == b'v'
        && version[1] != b'0'
        && version[1..].iter().all(u8::is_ascii_digit);
    if !ok {
        return Err(FormatError::BadTextEncoding(
            "a Vault key version is v<N>, N >= 1",
        ));
    }
    let version = util::utf8(version, "version")?;
    let body = util::b64_std(
        &rest[end + 1..],
        "a Vault ciphertext body is standard base64",
    )?;
    util::split_nonce_ct_tag(&body, util::GCM_NONCE_LEN)?;
    Ok((version, body))
}

impl Codec for VaultTransitCodec {
    fn name(&self) -> &str {
        "vault-transit"
    }

    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v> {
        match parse(stored) {
            Ok((v, _)) => Inspection::UnderKey(v),
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
        let (version, body) = parse(stored)?;
        let (key_id, key) = util::named(ring, version, AES)?;
        let (nonce, ct, tag) = util::split_nonce_ct_tag(&body, util::GCM_NONCE_LEN)?;
        let plaintext = util::aead_open(&key_id, key, nonce, ct, tag)?;
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
        let body = util::gcm_seal_concat(key, plaintext)?;
        let mut out = format!("{PREFIX}{}:", id.as_str());
        STANDARD.encode_string(&body, &mut out);
        Ok(out.into_bytes())
    }

    fn primary_prefix(&self, ring: &Keyring) -> Option<Vec<u8>> {
        Some(format!("{PREFIX}{}:", ring.primary_id().as_str()).into_bytes())
    }

    fn shape(&self) -> Shape {
        // nonce (12) ‖ tag (16) at least: 28 bytes, 38 base64 characters
        // before the padding.
        // (`vault:v1:`, 9 characters at least, then the body; the length is
        // checked apart: see `Shape::TextMin`).
        Shape::TextMin {
            min_len: 9 + 38,
            patterns: vec![r"^vault:v[1-9][0-9]{0,9}:[A-Za-z0-9+/]*={0,2}$".into()],
        }
    }

    fn key_id_location(&self) -> KeyIdLocation {
        KeyIdLocation::TextDelimited {
            prefix: PREFIX,
            terminator: b':',
        }
    }
}
