//! Helpers shared by the codecs: randomness, key checks, trial decryption,
//! AES-GCM with 96-bit nonces through the keyring's prepared keys, and
//! strict base64.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use keyturn_format::{
    Algorithm, CodecKeyKind, FormatError, KeyId, KeyKind, Keyring, MAX_PLAINTEXT_LEN, SecretKey,
    TAG_LEN,
};
use zeroize::Zeroizing;

/// Length of a 96-bit GCM nonce.
pub(crate) const GCM_NONCE_LEN: usize = 12;

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn random(buf: &mut [u8]) -> Result<(), FormatError> {
    aws_lc_rs::rand::fill(buf)
        .map_err(|_| FormatError::Crypto("the system random generator failed"))
}

/// Rejects stored values too large to be a ciphertext of an acceptable
/// plaintext, before any allocation proportional to them.
pub(crate) fn check_stored_len(stored: &[u8]) -> Result<(), FormatError> {
    // Text encodings at most double the size (hex), plus headers.
    if stored.len() > 2 * MAX_PLAINTEXT_LEN + 4096 {
        return Err(FormatError::TooLong(stored.len() as u64));
    }
    Ok(())
}

pub(crate) fn check_plaintext_len(plaintext: &[u8]) -> Result<(), FormatError> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(FormatError::TooLong(plaintext.len() as u64));
    }
    Ok(())
}

/// Checks that `key` is of kind `want`.
pub(crate) fn expect_kind<'k>(
    id: &KeyId,
    key: &'k SecretKey,
    want: KeyKind,
) -> Result<&'k SecretKey, FormatError> {
    if key.kind() == want {
        Ok(key)
    } else {
        Err(FormatError::AlgorithmMismatch {
            key: id.as_str().to_owned(),
            have: key.kind().name(),
            want: want.name(),
        })
    }
}

pub(crate) const AES: KeyKind = KeyKind::Native(Algorithm::Aes256Gcm);
pub(crate) const XCHACHA: KeyKind = KeyKind::Native(Algorithm::XChaCha20Poly1305);
pub(crate) const FERNET: KeyKind = KeyKind::Codec(CodecKeyKind::Fernet);
pub(crate) const SECRETBOX: KeyKind = KeyKind::Codec(CodecKeyKind::XSalsa20Poly1305);

/// The ring's primary key, checked to be of kind `want`.
pub(crate) fn primary(ring: &Keyring, want: KeyKind) -> Result<(&KeyId, &SecretKey), FormatError> {
    let id = ring.primary_id();
    Ok((id, expect_kind(id, ring.primary_key(), want)?))
}

/// The key named `id`, for decryption, checked to be of kind `want`.
pub(crate) fn named<'r>(
    ring: &'r Keyring,
    id: &str,
    want: KeyKind,
) -> Result<(KeyId, &'r SecretKey), FormatError> {
    let key = ring.decryption_key(id)?;
    let id = KeyId::new(id)?;
    expect_kind(&id, key, want)?;
    Ok((id, key))
}

/// Trial decryption for formats without a key id: tries the primary key
/// first, then every other key that may decrypt, in load order. `open`
/// returns `AuthenticationFailed` when a key does not fit; any other error
/// stops the search (a damaged value or a misconfigured ring).
pub(crate) fn try_each<T>(
    ring: &Keyring,
    want: KeyKind,
    mut open: impl FnMut(&KeyId, &SecretKey) -> Result<T, FormatError>,
) -> Result<(KeyId, T), FormatError> {
    let primary = ring.primary_id();
    let order = std::iter::once(primary)
        .chain(ring.keys().map(|(id, _, _)| id).filter(|id| *id != primary));
    let mut tried: Vec<&str> = Vec::new();
    let mut retired: Vec<&str> = Vec::new();
    for id in order {
        let key = match ring.decryption_key(id.as_str()) {
            Ok(k) => k,
            Err(FormatError::KeyRetired(_)) => {
                retired.push(id.as_str());
                continue;
            }
            Err(e) => return Err(e),
        };
        expect_kind(id, key, want)?;
        match open(id, key) {
            Ok(v) => return Ok((id.clone(), v)),
            Err(FormatError::AuthenticationFailed(_)) => tried.push(id.as_str()),
            Err(e) => return Err(e),
        }
    }
    let mut who = format!("any of {}", tried.join(", "));
    if !retired.is_empty() {
        who.push_str(&format!(" (retired, not tried: {})", retired.join(", ")));
    }
    Err(FormatError::AuthenticationFailed(who))
}

/// The parts of an AEAD output: nonce, ciphertext, tag.
pub(crate) type Sealed = ([u8; GCM_NONCE_LEN], Vec<u8>, [u8; TAG_LEN]);
/// Borrowed `(nonce, ct, tag)`.
pub(crate) type Parts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// AES-256-GCM with a fresh random 96-bit nonce and no associated data.
pub(crate) fn gcm_seal(key: &SecretKey, plaintext: &[u8]) -> Result<Sealed, FormatError> {
    check_plaintext_len(plaintext)?;
    let mut nonce = [0u8; GCM_NONCE_LEN];
    random(&mut nonce)?;
    let mut ct = plaintext.to_vec();
    let tag = key.seal_in_place(&nonce, b"", &mut ct)?;
    Ok((nonce, ct, tag))
}

/// Seals into `nonce ‖ ct ‖ tag`, the most common layout.
pub(crate) fn gcm_seal_concat(key: &SecretKey, plaintext: &[u8]) -> Result<Vec<u8>, FormatError> {
    check_plaintext_len(plaintext)?;
    let mut out = vec![0u8; GCM_NONCE_LEN + plaintext.len() + TAG_LEN];
    let (nonce, rest) = out.split_at_mut(GCM_NONCE_LEN);
    random(nonce)?;
    let (ct, tag_out) = rest.split_at_mut(plaintext.len());
    ct.copy_from_slice(plaintext);
    let tag = key.seal_in_place(nonce, b"", ct)?;
    tag_out.copy_from_slice(&tag);
    Ok(out)
}

/// Opens AES-256-GCM (or XChaCha20-Poly1305, by the key's algorithm) with
/// no associated data.
pub(crate) fn aead_open(
    id: &KeyId,
    key: &SecretKey,
    nonce: &[u8],
    ct: &[u8],
    tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let mut out = Zeroizing::new(vec![0u8; ct.len()]);
    key.open_into(id.as_str(), nonce, b"", ct, tag, &mut out)?;
    Ok(out)
}

/// Splits `nonce ‖ ct ‖ tag`.
pub(crate) fn split_nonce_ct_tag(body: &[u8], nonce_len: usize) -> Result<Parts<'_>, FormatError> {
    use keyturn_format::Field;
    if body.len() < nonce_len {
        return Err(FormatError::Truncated(Field::Nonce));
    }
    if body.len() < nonce_len + TAG_LEN {
        return Err(FormatError::Truncated(Field::Tag));
    }
    let (nonce, rest) = body.split_at(nonce_len);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    Ok((nonce, ct, tag))
}

/// Strict standard base64 with padding (what PHP, Ruby's strict_encode64,
/// Go's StdEncoding and Vault write).
pub(crate) fn b64_std(s: &[u8], what: &'static str) -> Result<Vec<u8>, FormatError> {
    STANDARD
        .decode(s)
        .map_err(|_| FormatError::BadTextEncoding(what))
}

/// Strict URL-safe base64 with padding (Python's urlsafe_b64encode).
pub(crate) fn b64_url(s: &[u8], what: &'static str) -> Result<Vec<u8>, FormatError> {
    URL_SAFE
        .decode(s)
        .map_err(|_| FormatError::BadTextEncoding(what))
}

/// A byte slice as UTF-8, or a bad-encoding error naming `what`.
pub(crate) fn utf8<'s>(s: &'s [u8], what: &'static str) -> Result<&'s str, FormatError> {
    std::str::from_utf8(s).map_err(|_| FormatError::BadTextEncoding(what))
}

/// Current Unix time in seconds (Fernet timestamps of new values).
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
