//! Ciphertext format v1: parsing and sealing. See docs/FORMAT.md.
//!
//! Parsing is strict (parse, don't validate): every field is checked in
//! order, truncation names the field, and trailing bytes are an error.

use crate::algorithm::{Algorithm, TAG_LEN};
use crate::b64;
use crate::error::{Field, FormatError};
use crate::key_id::{KeyId, MAX_KEY_ID_LEN};
use crate::secret::SecretKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::borrow::Cow;
use zeroize::{Zeroize, Zeroizing};

/// First two bytes of the binary encoding. 0x8B can never start valid UTF-8,
/// so a binary ciphertext is never mistaken for text or plaintext.
pub const MAGIC: [u8; 2] = [0x8B, 0x4B];
/// The format version this module reads and writes.
pub const VERSION: u8 = 1;
/// Start of the text encoding: `kt1:<key id>:<alg>:<base64url body>`.
pub const TEXT_MARKER: &str = "kt1:";
/// Largest plaintext keyturn encrypts or accepts when decoding (64 MiB):
/// bounds the memory one value can make a decoder allocate.
pub const MAX_PLAINTEXT_LEN: usize = 64 << 20;
/// Longest header: magic, version, algorithm, key id length, key id, length.
pub const MAX_HEADER_LEN: usize = 5 + MAX_KEY_ID_LEN + 4;

/// How a ciphertext is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Raw bytes, for bytea / BLOB / VARBINARY columns.
    Binary,
    /// ASCII text, for TEXT / VARCHAR columns.
    Text,
}

impl Encoding {
    /// The encoding's name as shown in output (`binary` or `text`).
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Binary => "binary",
            Encoding::Text => "text",
        }
    }
}

/// What a header says, read without touching the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    /// Whether the value is binary or text.
    pub encoding: Encoding,
    /// The AEAD algorithm named by the header.
    pub algorithm: Algorithm,
    /// Validated key id (charset and length already checked).
    pub key_id: &'a str,
}

/// A fully parsed v1 ciphertext.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The header fields (encoding, algorithm, key id).
    pub header: HeaderRef<'a>,
    /// `ciphertext length ‖ nonce ‖ ciphertext ‖ tag`: borrowed from binary
    /// input, decoded from base64 for text input.
    body: Cow<'a, [u8]>,
    ct_len: usize,
}

impl<'a> Parsed<'a> {
    fn nonce_len(&self) -> usize {
        self.header.algorithm.nonce_len()
    }
    /// The nonce bytes (12 or 24, depending on the algorithm).
    pub fn nonce(&self) -> &[u8] {
        &self.body[4..4 + self.nonce_len()]
    }
    /// The encrypted bytes, without the tag; as long as the plaintext.
    pub fn ciphertext(&self) -> &[u8] {
        let s = 4 + self.nonce_len();
        &self.body[s..s + self.ct_len]
    }
    /// The 16-byte authentication tag.
    pub fn tag(&self) -> &[u8] {
        let s = 4 + self.nonce_len() + self.ct_len;
        &self.body[s..s + TAG_LEN]
    }
    /// The plaintext length in bytes, as the ciphertext length field says.
    pub fn plaintext_len(&self) -> usize {
        self.ct_len
    }
}

/// Builds the canonical header (the associated data's first part).
/// Returns the buffer and its used length.
fn header_bytes(alg: Algorithm, key_id: &[u8], ct_len: usize) -> ([u8; MAX_HEADER_LEN], usize) {
    let mut h = [0u8; MAX_HEADER_LEN];
    h[0..2].copy_from_slice(&MAGIC);
    h[2] = VERSION;
    h[3] = alg.byte();
    // Key ids are validated to at most 32 bytes, so the cast is lossless.
    h[4] = key_id.len() as u8;
    h[5..5 + key_id.len()].copy_from_slice(key_id);
    let n = 5 + key_id.len();
    // ct_len <= MAX_PLAINTEXT_LEN < 2^32, checked by callers.
    h[n..n + 4].copy_from_slice(&(ct_len as u32).to_be_bytes());
    (h, n + 4)
}

/// Associated data being built: the context parts are encoded once, behind
/// room for the longest header, and [`for_value`](Aad::for_value) writes a
/// value's header just in front of them. One buffer thus serves both the open
/// and the seal of a re-encryption, whose headers differ.
struct Aad<'b> {
    buf: &'b mut [u8],
}

impl Aad<'_> {
    /// `header ‖ context` for a value with this algorithm, key id and
    /// ciphertext length (the header as in the binary encoding).
    fn for_value(&mut self, alg: Algorithm, key_id: &[u8], ct_len: usize) -> &[u8] {
        let start = MAX_HEADER_LEN - (9 + key_id.len());
        let h = &mut self.buf[start..MAX_HEADER_LEN];
        h[..2].copy_from_slice(&MAGIC);
        h[2] = VERSION;
        h[3] = alg.byte();
        // Key ids are validated to at most 32 bytes, so the cast is lossless.
        h[4] = key_id.len() as u8;
        h[5..5 + key_id.len()].copy_from_slice(key_id);
        // ct_len <= MAX_PLAINTEXT_LEN < 2^32, checked by callers.
        h[5 + key_id.len()..].copy_from_slice(&(ct_len as u32).to_be_bytes());
        &self.buf[start..]
    }
}

/// Calls `f` with the context encoded for the associated data: each part a
/// 4-byte big-endian length followed by its bytes. Small associated data
/// stays on the stack: this runs once per value.
fn with_context<R>(
    context: &[&[u8]],
    f: impl FnOnce(&mut Aad<'_>) -> Result<R, FormatError>,
) -> Result<R, FormatError> {
    let mut total = MAX_HEADER_LEN;
    for part in context {
        if u32::try_from(part.len()).is_err() {
            return Err(FormatError::Crypto(
                "a context part is longer than 4 GiB - 1 bytes",
            ));
        }
        total += 4 + part.len();
    }
    let mut stack = [0u8; 192];
    let mut heap;
    let buf: &mut [u8] = if total <= stack.len() {
        &mut stack[..total]
    } else {
        heap = vec![0u8; total];
        &mut heap[..]
    };
    let mut at = MAX_HEADER_LEN;
    for part in context {
        // Checked above: every part length fits in a u32.
        buf[at..at + 4].copy_from_slice(&(part.len() as u32).to_be_bytes());
        at += 4;
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    f(&mut Aad { buf })
}

/// Fills a nonce with fresh output of aws-lc's CSPRNG (seeded from the
/// operating system), never handed out before: see the keyturn-nonce crate
/// for the per-thread block and its fork safety.
///
/// Public only so that the benchmarks and the fork test can call it; not
/// part of the API.
#[doc(hidden)]
pub fn fill_nonce(nonce: &mut [u8]) -> Result<(), FormatError> {
    keyturn_nonce::fill(nonce)
        .map_err(|_| FormatError::Crypto("the system random generator failed"))
}

/// Reads the header of either encoding without decoding the payload.
pub fn peek(stored: &[u8]) -> Result<HeaderRef<'_>, FormatError> {
    match stored.first() {
        None => Err(FormatError::Empty),
        Some(&b) if b == MAGIC[0] => peek_binary(stored).map(|(h, _)| h),
        Some(b'k') => peek_text(stored).map(|(h, _)| h),
        Some(_) => Err(FormatError::UnknownFormat),
    }
}

/// Parses either encoding.
pub fn parse(stored: &[u8]) -> Result<Parsed<'_>, FormatError> {
    match stored.first() {
        None => Err(FormatError::Empty),
        Some(&b) if b == MAGIC[0] => parse_binary(stored),
        Some(b'k') => parse_text(stored),
        Some(_) => Err(FormatError::UnknownFormat),
    }
}

/// Returns the header and the offset of the body.
fn peek_binary(b: &[u8]) -> Result<(HeaderRef<'_>, usize), FormatError> {
    if b.is_empty() {
        return Err(FormatError::Empty);
    }
    if b[0] != MAGIC[0] {
        return Err(FormatError::UnknownFormat);
    }
    let at = |i: usize, field: Field| match b.get(i) {
        Some(&v) => Ok(v),
        None => Err(FormatError::Truncated(field)),
    };
    if at(1, Field::Magic)? != MAGIC[1] {
        return Err(FormatError::UnknownFormat);
    }
    let version = at(2, Field::Version)?;
    if version != VERSION {
        return Err(FormatError::UnknownVersion(u32::from(version)));
    }
    let algorithm = Algorithm::from_byte(at(3, Field::Algorithm)?)?;
    let id_len = usize::from(at(4, Field::KeyIdLength)?);
    if id_len == 0 || id_len > MAX_KEY_ID_LEN {
        return Err(FormatError::InvalidKeyId(format!(
            "key id length {id_len} is outside 1..={MAX_KEY_ID_LEN}"
        )));
    }
    let Some(id) = b.get(5..5 + id_len) else {
        return Err(FormatError::Truncated(Field::KeyId));
    };
    KeyId::validate(id)?;
    // validate() accepted only ASCII, so this cannot fail.
    let key_id =
        std::str::from_utf8(id).map_err(|_| FormatError::InvalidKeyId("not ASCII".into()))?;
    Ok((
        HeaderRef {
            encoding: Encoding::Binary,
            algorithm,
            key_id,
        },
        5 + id_len,
    ))
}

fn parse_binary(b: &[u8]) -> Result<Parsed<'_>, FormatError> {
    let (header, body_at) = peek_binary(b)?;
    let ct_len = check_body(&b[body_at..], header.algorithm)?;
    Ok(Parsed {
        header,
        body: Cow::Borrowed(&b[body_at..]),
        ct_len,
    })
}

/// Checks `ciphertext length ‖ nonce ‖ ciphertext ‖ tag`, returning the
/// ciphertext length.
fn check_body(body: &[u8], alg: Algorithm) -> Result<usize, FormatError> {
    let Some(&len_bytes) = body.first_chunk::<4>() else {
        return Err(FormatError::Truncated(Field::CiphertextLength));
    };
    let ct_len = u32::from_be_bytes(len_bytes) as usize;
    if ct_len > MAX_PLAINTEXT_LEN {
        return Err(FormatError::TooLong(ct_len as u64));
    }
    let nonce_end = 4 + alg.nonce_len();
    if body.len() < nonce_end {
        return Err(FormatError::Truncated(Field::Nonce));
    }
    if body.len() < nonce_end + ct_len {
        return Err(FormatError::Truncated(Field::Ciphertext));
    }
    let end = nonce_end + ct_len + TAG_LEN;
    if body.len() < end {
        return Err(FormatError::Truncated(Field::Tag));
    }
    if body.len() > end {
        return Err(FormatError::TrailingBytes(body.len() - end));
    }
    Ok(ct_len)
}

/// Returns the header and the offset of the base64 body.
fn peek_text(s: &[u8]) -> Result<(HeaderRef<'_>, usize), FormatError> {
    if s.is_empty() {
        return Err(FormatError::Empty);
    }
    // "kt" then a decimal version then ':'.
    if s.len() < 2 || &s[..2] != b"kt" {
        return Err(if s == b"k" {
            FormatError::Truncated(Field::Magic)
        } else {
            FormatError::UnknownFormat
        });
    }
    let digits = s[2..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return Err(if s.len() == 2 {
            FormatError::Truncated(Field::Version)
        } else {
            FormatError::UnknownFormat
        });
    }
    let ver_end = 2 + digits;
    match s.get(ver_end) {
        None => return Err(FormatError::Truncated(Field::Version)),
        Some(b':') => {}
        Some(_) => return Err(FormatError::UnknownFormat),
    }
    if digits > 1 && s[2] == b'0' {
        // "kt01:" is no version keyturn writes (nor would "kt1:" read as 01).
        return Err(FormatError::UnknownFormat);
    }
    let version: u32 = std::str::from_utf8(&s[2..ver_end])
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or(FormatError::UnknownFormat)?;
    if version != u32::from(VERSION) {
        return Err(FormatError::UnknownVersion(version));
    }
    let rest = &s[ver_end + 1..];
    let id_end = rest.iter().position(|&c| c == b':').ok_or_else(|| {
        if rest.len() > MAX_KEY_ID_LEN {
            FormatError::InvalidKeyId(format!("longer than {MAX_KEY_ID_LEN} bytes"))
        } else {
            FormatError::Truncated(Field::KeyId)
        }
    })?;
    let id = &rest[..id_end];
    KeyId::validate(id)?;
    let key_id =
        std::str::from_utf8(id).map_err(|_| FormatError::InvalidKeyId("not ASCII".into()))?;
    let rest2 = &rest[id_end + 1..];
    let alg_end = rest2
        .iter()
        .position(|&c| c == b':')
        .ok_or(FormatError::Truncated(Field::Algorithm))?;
    let algorithm = Algorithm::from_text_token(&rest2[..alg_end])?;
    let body_at = ver_end + 1 + id_end + 1 + alg_end + 1;
    Ok((
        HeaderRef {
            encoding: Encoding::Text,
            algorithm,
            key_id,
        },
        body_at,
    ))
}

fn parse_text(s: &[u8]) -> Result<Parsed<'_>, FormatError> {
    let (header, body_at) = peek_text(s)?;
    let b64 = text_body(&s[body_at..], header.algorithm)?;
    let body = URL_SAFE_NO_PAD.decode(b64).map_err(|_| bad_base64())?;
    let ct_len = check_body(&body, header.algorithm)?;
    Ok(Parsed {
        header,
        body: Cow::Owned(body),
        ct_len,
    })
}

fn bad_base64() -> FormatError {
    FormatError::BadTextEncoding("the body is not canonical unpadded base64url")
}

/// Checks the base64 body of a text value before decoding it.
fn text_body(b64: &[u8], alg: Algorithm) -> Result<&[u8], FormatError> {
    if b64.is_empty() {
        return Err(FormatError::Truncated(Field::CiphertextLength));
    }
    // Bound the allocation before decoding: base64 expands by 4/3.
    let max_body = 4 + alg.nonce_len() + MAX_PLAINTEXT_LEN + TAG_LEN;
    if b64.len() / 4 * 3 > max_body + 3 {
        return Err(FormatError::TooLong(b64.len() as u64 / 4 * 3));
    }
    Ok(b64)
}

/// Text bodies up to this many characters are decoded on the stack by
/// [`with_parsed`] (they decode to at most 255 bytes: values of up to 200
/// or so plaintext bytes).
const STACK_TEXT_BODY: usize = 340;

/// Like [`parse`] followed by `f`, with the same outcomes, but a short text
/// body is decoded into a stack buffer instead of a heap allocation. Used on
/// the re-encryption path, which runs once per row.
pub(crate) fn with_parsed<R>(
    stored: &[u8],
    f: impl FnOnce(&Parsed<'_>) -> Result<R, FormatError>,
) -> Result<R, FormatError> {
    if stored.first() == Some(&b'k') {
        let (header, body_at) = peek_text(stored)?;
        let b64 = text_body(&stored[body_at..], header.algorithm)?;
        if b64.len() <= STACK_TEXT_BODY {
            let mut buf = [0u8; STACK_TEXT_BODY / 4 * 3 + 1];
            let n = URL_SAFE_NO_PAD
                .decode_slice(b64, &mut buf)
                .map_err(|_| bad_base64())?;
            let body = &buf[..n];
            let ct_len = check_body(body, header.algorithm)?;
            return f(&Parsed {
                header,
                body: Cow::Borrowed(body),
                ct_len,
            });
        }
    }
    f(&parse(stored)?)
}

/// Encrypts `plaintext` under `key` (named `key_id`) with a fresh random
/// nonce, binding `context` as associated data.
pub fn seal(
    key: &SecretKey,
    key_id: &KeyId,
    plaintext: &[u8],
    context: &[&[u8]],
    encoding: Encoding,
) -> Result<Vec<u8>, FormatError> {
    seal_impl(key, key_id, plaintext, context, encoding, None)
}

/// **Test only: never use this to encrypt real data.** Like [`seal`], but
/// with a caller-chosen nonce instead of a fresh random one, so that test
/// vectors can be generated and checked byte for byte. Reusing a nonce under
/// the same key destroys the confidentiality and integrity of both values
/// (and, for AES-GCM, lets an attacker forge tags). Hidden from the docs and
/// exempt from semver.
#[doc(hidden)]
pub fn seal_with_nonce(
    key: &SecretKey,
    key_id: &KeyId,
    plaintext: &[u8],
    context: &[&[u8]],
    encoding: Encoding,
    nonce: &[u8],
) -> Result<Vec<u8>, FormatError> {
    if nonce.len() != key.algorithm().nonce_len() {
        return Err(FormatError::Crypto(
            "the nonce length does not match the key's algorithm",
        ));
    }
    seal_impl(key, key_id, plaintext, context, encoding, Some(nonce))
}

fn seal_impl(
    key: &SecretKey,
    key_id: &KeyId,
    plaintext: &[u8],
    context: &[&[u8]],
    encoding: Encoding,
    fixed_nonce: Option<&[u8]>,
) -> Result<Vec<u8>, FormatError> {
    with_context(context, |aad| {
        seal_with(
            key,
            key_id,
            plaintext.len(),
            aad,
            encoding,
            fixed_nonce,
            |slot, _| {
                slot.copy_from_slice(plaintext);
                Ok(())
            },
        )
    })
}

/// Writes a complete value under `key` (named `key_id`) for a plaintext of
/// `pt_len` bytes that `write_plaintext` puts into its slot of the output
/// buffer (it may use `aad` meanwhile), where it is then encrypted in place
/// with `aad` (the context already encoded) as associated data. One allocation for binary
/// output; for text output the binary body is built in the same allocation,
/// behind the room for its base64 form, and cut off after encoding.
/// On any error the buffer is zeroized before it is freed.
fn seal_with(
    key: &SecretKey,
    key_id: &KeyId,
    pt_len: usize,
    aad: &mut Aad<'_>,
    encoding: Encoding,
    fixed_nonce: Option<&[u8]>,
    write_plaintext: impl FnOnce(&mut [u8], &mut Aad<'_>) -> Result<(), FormatError>,
) -> Result<Vec<u8>, FormatError> {
    if pt_len > MAX_PLAINTEXT_LEN {
        return Err(FormatError::TooLong(pt_len as u64));
    }
    let Some(alg) = key.native_algorithm() else {
        return Err(FormatError::AlgorithmMismatch {
            key: key_id.as_str().to_owned(),
            have: key.kind().name(),
            want: "a keyturn format v1 algorithm",
        });
    };
    let id = key_id.as_str().as_bytes();
    let (header, hlen) = header_bytes(alg, id, pt_len);
    let nlen = alg.nonce_len();
    let body_len = 4 + nlen + pt_len + TAG_LEN;
    // Binary: header ‖ nonce ‖ ct ‖ tag, where the header ends with the
    // ciphertext length. Text: `kt1:<id>:<alg>:` ‖ base64url(body), where
    // body = ciphertext length ‖ nonce ‖ ct ‖ tag.
    let text_prefix_len = TEXT_MARKER.len() + id.len() + 3;
    let (mut buf, body_at) = match encoding {
        Encoding::Binary => {
            let mut buf = vec![0u8; hlen + body_len - 4];
            buf[..hlen - 4].copy_from_slice(&header[..hlen - 4]);
            (buf, hlen - 4)
        }
        Encoding::Text => {
            let text_len = text_prefix_len + b64::encoded_len(body_len);
            let mut buf = vec![0u8; text_len + body_len];
            let p = &mut buf[..text_prefix_len];
            p[..TEXT_MARKER.len()].copy_from_slice(TEXT_MARKER.as_bytes());
            p[TEXT_MARKER.len()..TEXT_MARKER.len() + id.len()].copy_from_slice(id);
            p[text_prefix_len - 3] = b':';
            p[text_prefix_len - 2] = alg.text_token();
            p[text_prefix_len - 1] = b':';
            (buf, text_len)
        }
    };
    let body = &mut buf[body_at..];
    body[..4].copy_from_slice(&header[hlen - 4..hlen]);
    let (head, rest) = body.split_at_mut(4 + nlen);
    let nonce = &mut head[4..];
    match fixed_nonce {
        Some(n) => nonce.copy_from_slice(n),
        None => fill_nonce(nonce)?,
    }
    let (slot, tag_out) = rest.split_at_mut(pt_len);
    let sealed = write_plaintext(slot, aad)
        .and_then(|()| key.seal_in_place(nonce, aad.for_value(alg, id, pt_len), slot));
    match sealed {
        Ok(tag) => tag_out.copy_from_slice(&tag),
        Err(e) => {
            buf.zeroize();
            return Err(e);
        }
    }
    if encoding == Encoding::Text {
        let (text, body) = buf.split_at_mut(body_at);
        b64::encode_into(body, &mut text[text_prefix_len..]);
        buf.truncate(body_at);
        if body_len > 4096 {
            // Give back the room the binary body took.
            buf.shrink_to_fit();
        }
    }
    Ok(buf)
}

/// Checks the key's algorithm against the header and decrypts into `out`
/// (`parsed.plaintext_len()` bytes). On failure `out` holds no plaintext.
fn open_into(
    key: &SecretKey,
    parsed: &Parsed<'_>,
    aad: &mut Aad<'_>,
    out: &mut [u8],
) -> Result<(), FormatError> {
    let h = &parsed.header;
    if key.native_algorithm() != Some(h.algorithm) {
        return Err(FormatError::AlgorithmMismatch {
            key: h.key_id.to_owned(),
            have: key.kind().name(),
            want: h.algorithm.name(),
        });
    }
    let aad = aad.for_value(h.algorithm, h.key_id.as_bytes(), parsed.ct_len);
    key.open_into(
        h.key_id,
        parsed.nonce(),
        aad,
        parsed.ciphertext(),
        parsed.tag(),
        out,
    )
}

/// Decrypts a parsed ciphertext with `key`. The caller has matched the key
/// to `parsed.header.key_id`.
pub fn open(
    key: &SecretKey,
    parsed: &Parsed<'_>,
    context: &[&[u8]],
) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let mut out = Zeroizing::new(vec![0u8; parsed.ct_len]);
    with_context(context, |aad| open_into(key, parsed, aad, &mut out))?;
    Ok(out)
}

/// Re-encryption of one value: decrypts `parsed` with `old_key` straight into
/// the plaintext slot of the new value, then encrypts it there in place under
/// `new_key` (named `new_id`) with a fresh nonce, in the same encoding and
/// with the same context. The plaintext never exists outside that buffer,
/// which is zeroized if anything fails.
pub(crate) fn reseal(
    old_key: &SecretKey,
    parsed: &Parsed<'_>,
    context: &[&[u8]],
    new_key: &SecretKey,
    new_id: &KeyId,
) -> Result<Vec<u8>, FormatError> {
    with_context(context, |aad| {
        seal_with(
            new_key,
            new_id,
            parsed.ct_len,
            aad,
            parsed.header.encoding,
            None,
            |slot, aad| open_into(old_key, parsed, aad, slot),
        )
    })
}

/// The bytes every value under `key_id` (with algorithm `alg`) starts with,
/// in the given encoding. Lets a database tell, by prefix comparison alone,
/// whether a value is already under a key.
pub fn key_prefix(alg: Algorithm, key_id: &KeyId, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Binary => {
            let (h, hlen) = header_bytes(alg, key_id.as_str().as_bytes(), 0);
            h[..hlen - 4].to_vec()
        }
        Encoding::Text => format!(
            "{TEXT_MARKER}{}:{}:",
            key_id.as_str(),
            alg.text_token() as char
        )
        .into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (KeyId, SecretKey) {
        (
            KeyId::new("k1").unwrap(),
            SecretKey::from_bytes(Algorithm::Aes256Gcm, &[7u8; 32]).unwrap(),
        )
    }

    #[test]
    fn binary_and_text_round_trip() {
        let (id, k) = key();
        for enc in [Encoding::Binary, Encoding::Text] {
            let ct = seal(&k, &id, b"hello", &[b"t", b"c"], enc).unwrap();
            let p = parse(&ct).unwrap();
            assert_eq!(p.header.encoding, enc);
            assert_eq!(p.header.key_id, "k1");
            assert_eq!(&open(&k, &p, &[b"t", b"c"]).unwrap()[..], b"hello");
            assert_eq!(
                open(&k, &p, &[b"t", b"d"]).unwrap_err().kind(),
                "authentication_failed"
            );
            assert!(ct.starts_with(&key_prefix(Algorithm::Aes256Gcm, &id, enc)));
        }
    }

    #[test]
    fn context_parts_are_length_delimited() {
        // ["ab","c"] and ["a","bc"] must be different associated data.
        let (id, k) = key();
        let ct = seal(&k, &id, b"x", &[b"ab", b"c"], Encoding::Binary).unwrap();
        let p = parse(&ct).unwrap();
        assert!(open(&k, &p, &[b"a", b"bc"]).is_err());
    }

    #[test]
    fn large_context_uses_heap_path() {
        let (id, k) = key();
        let big = vec![b'z'; 1000];
        let ct = seal(&k, &id, b"x", &[&big], Encoding::Text).unwrap();
        assert_eq!(&open(&k, &parse(&ct).unwrap(), &[&big]).unwrap()[..], b"x");
    }

    #[test]
    fn text_version_errors() {
        assert_eq!(
            peek(b"kt2:k1:a:AAAA").unwrap_err(),
            FormatError::UnknownVersion(2)
        );
        assert_eq!(
            peek(b"kt10:k1:a:AAAA").unwrap_err(),
            FormatError::UnknownVersion(10)
        );
        assert_eq!(peek(b"ktx").unwrap_err(), FormatError::UnknownFormat);
        assert_eq!(
            peek(b"kt01:k1:a:AAAA").unwrap_err(),
            FormatError::UnknownFormat
        );
        assert_eq!(
            peek(b"kt0:k1:a:AAAA").unwrap_err(),
            FormatError::UnknownVersion(0)
        );
        assert_eq!(
            peek(b"kt99999999999:k1:a:AAAA").unwrap_err(),
            FormatError::UnknownFormat
        );
        assert_eq!(peek(b"hello").unwrap_err(), FormatError::UnknownFormat);
    }
}
