//! Rails Active Record Encryption (7.0+), non-deterministic values.
//!
//! Stored: JSON `{"p": b64(ct), "h": {"iv": b64(12), "at": b64(tag 16),
//! "e"?: b64(encoding name), "i"?: b64(key reference), "c"?: true}}`,
//! AES-256-GCM with empty associated data under a PBKDF2-derived key. Every
//! header string is base64, as Rails' MessageSerializer writes it.
//!
//! Deterministic values (IV = HMAC-SHA256(key, text)[..12]) are recognised
//! after decryption and refused with [`FormatError::NotRotatable`]: giving
//! them a random IV would silently break the application's equality queries.
//! Envelope values (`k` header) are refused the same way.

use crate::util::{self, AES};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use keyturn_format::{
    Carry, Codec, Encoding, Field, FormatError, Inspection, KeyId, KeyIdLocation, Keyring, Opened,
    Reencryption, SecretKey, Shape, TAG_LEN,
};
use serde::Deserialize;
use sha2::Sha256;
use std::borrow::Cow;
use std::io::{Read, Write};
use zeroize::Zeroizing;

/// Rails compresses values longer than this many bytes.
pub const COMPRESSION_THRESHOLD: usize = 140;

/// Ruby encoding names a value's `e` header may carry through
/// [`Codec::reseal`] (packed in [`Carry::Bits`]). Re-encryption through
/// [`Codec::reencrypt`] keeps any `e` verbatim.
const ENCODINGS: &[&str] = &[
    "US-ASCII",
    "ASCII-8BIT",
    "ISO-8859-1",
    "ISO-8859-15",
    "UTF-16LE",
    "UTF-16BE",
    "UTF-32LE",
    "UTF-32BE",
    "Windows-1252",
    "Windows-1251",
    "Windows-31J",
    "Shift_JIS",
    "EUC-JP",
    "EUC-KR",
    "GB18030",
    "Big5",
    "UTF-8",
];
const HAD_REFERENCE: u64 = 1;
const UNKNOWN_ENCODING: u64 = 0xFF;

/// The Rails Active Record Encryption codec (non-deterministic values only).
#[derive(Debug, Clone, Copy)]
pub struct RailsCodec {
    store_key_references: Option<bool>,
}

impl RailsCodec {
    /// A codec that writes the `i` key reference on re-encryption always
    /// (`Some(true)`), never (`Some(false)`), or when the value being
    /// re-encrypted had one (`None`).
    pub fn new(store_key_references: Option<bool>) -> Self {
        RailsCodec {
            store_key_references,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message<'a> {
    #[serde(borrow)]
    p: Cow<'a, str>,
    #[serde(borrow)]
    h: Headers<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Headers<'a> {
    #[serde(borrow)]
    iv: Cow<'a, str>,
    #[serde(borrow)]
    at: Cow<'a, str>,
    #[serde(borrow, default)]
    i: Option<Cow<'a, str>>,
    #[serde(default)]
    c: Option<bool>,
    #[serde(borrow, default)]
    e: Option<Cow<'a, str>>,
    #[serde(default)]
    k: Option<serde::de::IgnoredAny>,
}

struct Parsed {
    ct: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    reference: Option<KeyId>,
    compressed: bool,
    /// The `e` header as stored (base64).
    encoding_b64: Option<String>,
}

struct Meta {
    deterministic: bool,
    encoding_b64: Option<String>,
    had_reference: bool,
}

fn parse(stored: &[u8]) -> Result<Parsed, FormatError> {
    if stored.is_empty() {
        return Err(FormatError::Empty);
    }
    util::check_stored_len(stored)?;
    let m: Message<'_> = serde_json::from_slice(stored).map_err(|_| {
        FormatError::BadTextEncoding(
            "a Rails message is JSON {\"p\": .., \"h\": {\"iv\", \"at\", ..}}",
        )
    })?;
    if m.h.k.is_some() {
        return Err(FormatError::NotRotatable(
            "Rails envelope encryption (\"k\" header): re-wrap the data key instead; not supported"
                .into(),
        ));
    }
    let iv = util::b64_std(m.h.iv.as_bytes(), "Rails iv header is not base64")?;
    if iv.len() != util::GCM_NONCE_LEN {
        return Err(FormatError::Truncated(Field::Nonce));
    }
    let tag = util::b64_std(m.h.at.as_bytes(), "Rails at header is not base64")?;
    if tag.len() != TAG_LEN {
        return Err(FormatError::Truncated(Field::Tag));
    }
    let ct = util::b64_std(m.p.as_bytes(), "Rails payload is not base64")?;
    let reference = match &m.h.i {
        None => None,
        Some(i) => {
            let raw = util::b64_std(i.as_bytes(), "Rails i header is not base64")?;
            Some(KeyId::new(util::utf8(
                &raw,
                "Rails key reference is not UTF-8",
            )?)?)
        }
    };
    if let Some(e) = &m.h.e {
        util::b64_std(e.as_bytes(), "Rails e header is not base64")?;
    }
    Ok(Parsed {
        ct,
        iv,
        tag,
        reference,
        compressed: m.h.c == Some(true),
        encoding_b64: m.h.e.map(Cow::into_owned),
    })
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// Whether `iv` is Rails' deterministic IV for `text` under `key`.
fn is_deterministic(key: &SecretKey, text: &[u8], iv: &[u8]) -> bool {
    let mut m = hmac(key.expose_bytes());
    m.update(text);
    let d = m.finalize().into_bytes();
    subtle::ConstantTimeEq::ct_eq(&d[..util::GCM_NONCE_LEN], iv).into()
}

fn inflate(data: &[u8]) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let mut out = Zeroizing::new(Vec::new());
    flate2::read::ZlibDecoder::new(data)
        .take(keyturn_format::MAX_PLAINTEXT_LEN as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| {
            FormatError::BadTextEncoding("Rails value flagged compressed is not zlib data")
        })?;
    if out.len() > keyturn_format::MAX_PLAINTEXT_LEN {
        return Err(FormatError::TooLong(out.len() as u64));
    }
    Ok(out)
}

fn deflate(data: &[u8]) -> Result<Vec<u8>, FormatError> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data)
        .and_then(|_| e.finish())
        .map_err(|_| FormatError::Crypto("zlib compression failed"))
}

fn encoding_bits(e: Option<&str>) -> u64 {
    let Some(b64) = e else { return 0 };
    let name = STANDARD.decode(b64).ok();
    let idx = name
        .as_deref()
        .and_then(|n| ENCODINGS.iter().position(|x| x.as_bytes() == n));
    match idx {
        Some(i) => (i as u64 + 1) << 8,
        None => UNKNOWN_ENCODING << 8,
    }
}

impl RailsCodec {
    fn open(&self, ring: &Keyring, stored: &[u8]) -> Result<(Opened, Meta), FormatError> {
        let p = parse(stored)?;
        let open_one = |id: &KeyId, key: &SecretKey| {
            let text = util::aead_open(id, key, &p.iv, &p.ct, &p.tag)?;
            let det = is_deterministic(key, &text, &p.iv);
            Ok((text, det))
        };
        let (key_id, (text, deterministic)) = match &p.reference {
            Some(r) => {
                let (id, key) = util::named(ring, r.as_str(), AES)?;
                let v = open_one(&id, key)?;
                (id, v)
            }
            None => util::try_each(ring, AES, open_one)?,
        };
        let plaintext = if p.compressed { inflate(&text)? } else { text };
        let meta = Meta {
            deterministic,
            had_reference: p.reference.is_some(),
            encoding_b64: p.encoding_b64,
        };
        let bits = u64::from(meta.had_reference) | encoding_bits(meta.encoding_b64.as_deref());
        Ok((
            Opened {
                plaintext,
                key_id,
                encoding: Encoding::Text,
                carry: Carry::Bits(bits),
            },
            meta,
        ))
    }

    fn seal(
        &self,
        ring: &Keyring,
        plaintext: &[u8],
        encoding_b64: Option<&str>,
        had_reference: bool,
    ) -> Result<Vec<u8>, FormatError> {
        util::check_plaintext_len(plaintext)?;
        let (id, key) = util::primary(ring, AES)?;
        let compressed;
        let text: Cow<'_, [u8]> = if plaintext.len() > COMPRESSION_THRESHOLD {
            compressed = true;
            Cow::Owned(deflate(plaintext)?)
        } else {
            compressed = false;
            Cow::Borrowed(plaintext)
        };
        let (iv, ct, tag) = util::gcm_seal(key, &text)?;
        let mut out = String::with_capacity(64 + ct.len() * 4 / 3);
        out.push_str(r#"{"p":""#);
        STANDARD.encode_string(&ct, &mut out);
        out.push_str(r#"","h":{"iv":""#);
        STANDARD.encode_string(iv, &mut out);
        out.push_str(r#"","at":""#);
        STANDARD.encode_string(tag, &mut out);
        out.push('"');
        if let Some(e) = encoding_b64 {
            // Checked to be base64 when parsed: no JSON escaping needed.
            out.push_str(r#","e":""#);
            out.push_str(e);
            out.push('"');
        }
        if self.store_key_references.unwrap_or(had_reference) {
            out.push_str(r#","i":""#);
            STANDARD.encode_string(id.as_str(), &mut out);
            out.push('"');
        }
        if compressed {
            out.push_str(r#","c":true"#);
        }
        out.push_str("}}");
        Ok(out.into_bytes())
    }
}

fn deterministic_error() -> FormatError {
    FormatError::NotRotatable(
        "Rails deterministic encryption (the IV is derived from the plaintext): re-encrypting \
         with a random IV would break the application's equality queries; rotate deterministic \
         keys with Rails' own previous-scheme support"
            .into(),
    )
}

impl Codec for RailsCodec {
    fn name(&self) -> &str {
        "rails"
    }

    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v> {
        match parse(stored) {
            Ok(Parsed {
                reference: Some(r), ..
            }) => Inspection::UnderKeyOwned(r),
            Ok(_) => Inspection::KeyUnknown,
            Err(e) if stored.starts_with(b"{\"p\":") => Inspection::Invalid(e),
            Err(_) => Inspection::NotThisFormat,
        }
    }

    fn decrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        _context: &[&[u8]],
    ) -> Result<Opened, FormatError> {
        let (opened, meta) = self.open(ring, stored)?;
        if meta.deterministic {
            return Err(deterministic_error());
        }
        Ok(opened)
    }

    fn reseal(
        &self,
        ring: &Keyring,
        opened: &Opened,
        _context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        let bits = match opened.carry {
            Carry::Bits(b) => b,
            _ => 0,
        };
        let enc = (bits >> 8) & 0xFF;
        let e = match enc {
            0 => None,
            // Bits from this codec hold 1..=ENCODINGS.len() or UNKNOWN_ENCODING;
            // anything else did not come from a Rails value.
            i => match ENCODINGS.get(i as usize - 1) {
                Some(name) => Some(STANDARD.encode(name)),
                None => {
                    return Err(FormatError::NotRotatable(
                        "Rails value with an unusual encoding header: use reencrypt, which keeps it"
                            .into(),
                    ));
                }
            },
        };
        self.seal(
            ring,
            &opened.plaintext,
            e.as_deref(),
            bits & HAD_REFERENCE != 0,
        )
    }

    fn encrypt(
        &self,
        ring: &Keyring,
        plaintext: &[u8],
        _context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        self.seal(ring, plaintext, None, false)
    }

    fn reencrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        _context: &[&[u8]],
    ) -> Result<Reencryption, FormatError> {
        match self.inspect(stored) {
            Inspection::UnderKeyOwned(id) if id == *ring.primary_id() => {
                return Ok(Reencryption::AlreadyPrimary);
            }
            Inspection::Invalid(e) => return Err(e),
            Inspection::NotThisFormat => {
                return Err(if stored.is_empty() {
                    FormatError::Empty
                } else {
                    FormatError::UnknownFormat
                });
            }
            _ => {}
        }
        let (opened, meta) = self.open(ring, stored)?;
        if opened.key_id == *ring.primary_id() {
            return Ok(Reencryption::AlreadyPrimary);
        }
        if meta.deterministic {
            return Err(deterministic_error());
        }
        self.seal(
            ring,
            &opened.plaintext,
            meta.encoding_b64.as_deref(),
            meta.had_reference,
        )
        .map(Reencryption::Rotated)
    }

    fn primary_prefix(&self, _ring: &Keyring) -> Option<Vec<u8>> {
        None
    }

    fn shape(&self) -> Shape {
        Shape::Json {
            members: vec![&["p"], &["h", "iv"], &["h", "at"]],
            patterns: vec![
                r"^\s*\{".into(),
                r"\}\s*$".into(),
                r#""p"\s*:\s*"[A-Za-z0-9+/]*={0,2}""#.into(),
                r#""iv"\s*:\s*"[A-Za-z0-9+/]{16}""#.into(),
                r#""at"\s*:\s*"[A-Za-z0-9+/]{22}==""#.into(),
            ],
        }
    }

    fn key_id_location(&self) -> KeyIdLocation {
        KeyIdLocation::JsonPathBase64(&["h", "i"])
    }
}

/// Builds a deterministic Rails value (IV = HMAC-SHA256(key, text)[..12]),
/// for tests and vectors only: keyturn never writes these.
#[doc(hidden)]
pub fn deterministic_value_for_tests(
    key: &SecretKey,
    plaintext: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let mut m = hmac(key.expose_bytes());
    m.update(plaintext);
    let d = m.finalize().into_bytes();
    let iv = &d[..util::GCM_NONCE_LEN];
    let mut ct = plaintext.to_vec();
    let tag = key.seal_in_place(iv, b"", &mut ct)?;
    Ok(format!(
        r#"{{"p":"{}","h":{{"iv":"{}","at":"{}"}}}}"#,
        STANDARD.encode(&ct),
        STANDARD.encode(iv),
        STANDARD.encode(tag)
    )
    .into_bytes())
}
