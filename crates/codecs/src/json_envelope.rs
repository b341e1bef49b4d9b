//! JSON envelope naming its key: `{"key_id":"kek-v1","nonce":b64(12),
//! "ciphertext":b64(ct ‖ tag)}`, AES-256-GCM, no associated data, standard
//! base64. keyturn writes the members in that order, so values under the
//! primary key start with `{"key_id":"<primary>",`.

use crate::util::{self, AES};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyturn_format::{
    Carry, Codec, Encoding, Field, FormatError, Inspection, KEY_ID_PATTERN, KeyId, KeyIdLocation,
    Keyring, Opened, Shape, TAG_LEN,
};
use serde::Deserialize;
use std::borrow::Cow;

/// The JSON envelope codec: `{"key_id","nonce","ciphertext"}` text values, AES-256-GCM.
#[derive(Debug, Clone, Copy)]
pub struct JsonEnvelopeCodec;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    key_id: Cow<'a, str>,
    #[serde(borrow)]
    nonce: Cow<'a, str>,
    #[serde(borrow)]
    ciphertext: Cow<'a, str>,
}

struct Parsed<'a> {
    key_id: Cow<'a, str>,
    nonce: Vec<u8>,
    body: Vec<u8>,
}

fn parse(stored: &[u8]) -> Result<Parsed<'_>, FormatError> {
    if stored.is_empty() {
        return Err(FormatError::Empty);
    }
    util::check_stored_len(stored)?;
    if stored.first() != Some(&b'{') {
        return Err(FormatError::UnknownFormat);
    }
    let e: Envelope<'_> = serde_json::from_slice(stored).map_err(|_| {
        FormatError::BadTextEncoding("expected JSON {\"key_id\", \"nonce\", \"ciphertext\"}")
    })?;
    KeyId::new(&e.key_id)?;
    let nonce = util::b64_std(e.nonce.as_bytes(), "nonce is not standard base64")?;
    if nonce.len() != util::GCM_NONCE_LEN {
        return Err(FormatError::Truncated(Field::Nonce));
    }
    let body = util::b64_std(e.ciphertext.as_bytes(), "ciphertext is not standard base64")?;
    if body.len() < TAG_LEN {
        return Err(FormatError::Truncated(Field::Tag));
    }
    Ok(Parsed {
        key_id: e.key_id,
        nonce,
        body,
    })
}

impl Codec for JsonEnvelopeCodec {
    fn name(&self) -> &str {
        "json-envelope"
    }

    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v> {
        match parse(stored) {
            Ok(Parsed {
                key_id: Cow::Borrowed(id),
                ..
            }) => Inspection::UnderKey(id),
            Ok(Parsed {
                key_id: Cow::Owned(id),
                ..
            }) => match KeyId::new(&id) {
                Ok(k) => Inspection::UnderKeyOwned(k),
                Err(e) => Inspection::Invalid(e),
            },
            Err(FormatError::UnknownFormat | FormatError::Empty) => Inspection::NotThisFormat,
            // A JSON value of another shape is another format.
            Err(FormatError::BadTextEncoding(_)) if !stored.starts_with(b"{\"key_id\"") => {
                Inspection::NotThisFormat
            }
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
        let (key_id, key) = util::named(ring, &p.key_id, AES)?;
        let (ct, tag) = p.body.split_at(p.body.len() - TAG_LEN);
        let plaintext = util::aead_open(&key_id, key, &p.nonce, ct, tag)?;
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
        let (nonce, body) = sealed.split_at(util::GCM_NONCE_LEN);
        // Key ids are [A-Za-z0-9._-]: no JSON escaping needed.
        let mut out = format!(r#"{{"key_id":"{}","nonce":""#, id.as_str());
        STANDARD.encode_string(nonce, &mut out);
        out.push_str(r#"","ciphertext":""#);
        STANDARD.encode_string(body, &mut out);
        out.push_str("\"}");
        Ok(out.into_bytes())
    }

    fn primary_prefix(&self, ring: &Keyring) -> Option<Vec<u8>> {
        Some(format!(r#"{{"key_id":"{}","#, ring.primary_id().as_str()).into_bytes())
    }

    fn shape(&self) -> Shape {
        Shape::Json {
            members: vec![&["key_id"], &["nonce"], &["ciphertext"]],
            patterns: vec![
                r"^\s*\{".into(),
                r"\}\s*$".into(),
                format!(r#""key_id"\s*:\s*"{KEY_ID_PATTERN}""#),
                r#""nonce"\s*:\s*"[A-Za-z0-9+/]{16}""#.into(),
                r#""ciphertext"\s*:\s*"[A-Za-z0-9+/]{22,}={0,2}""#.into(),
            ],
        }
    }

    fn key_id_location(&self) -> KeyIdLocation {
        KeyIdLocation::JsonPath(&["key_id"])
    }
}
