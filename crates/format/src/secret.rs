//! Secret key material and the AEAD operations that use it.
//!
//! [`SecretKey`] is a newtype with no derived `Debug`: its `Debug` prints the
//! algorithm and a length, never bytes. The raw bytes are zeroized on drop;
//! the AES key schedule lives inside aws-lc, which cleanses it when freed.
//!
//! Besides format-v1 keys ([`SecretKey::from_bytes`]), a key may hold
//! material for another framework's format that is not an AEAD key of
//! format v1 ([`SecretKey::codec`], e.g. a Fernet key): such keys sit in a
//! [`Keyring`](crate::Keyring) like any other, are zeroized and redacted the
//! same way, and refuse every format-v1 operation.

use crate::algorithm::{Algorithm, TAG_LEN};
use crate::error::FormatError;
use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use chacha20::cipher::consts::U10;
use chacha20::cipher::generic_array::GenericArray;
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

enum Prepared {
    Aes(LessSafeKey),
    XChaCha,
    /// Codec material: no v1 AEAD. The bytes live in `codec_bytes`.
    Codec(CodecKeyKind),
}

/// The kind of a key that is not a format-v1 AEAD key, but material for
/// another framework's format (see [`SecretKey::codec`]).
///
/// Raw AES-256 keys of other formats (Laravel, Vault transit, cloak, ...)
/// need no kind of their own: they are [`Algorithm::Aes256Gcm`] keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecKeyKind {
    /// A Fernet key: 16 bytes of HMAC-SHA256 key, then 16 bytes of AES-128 key.
    Fernet,
    /// A libsodium `crypto_secretbox` key (XSalsa20-Poly1305), 32 bytes.
    XSalsa20Poly1305,
}

impl CodecKeyKind {
    /// The kind's name as in key specs and messages (`fernet`, `xsalsa20poly1305`).
    pub const fn name(self) -> &'static str {
        match self {
            CodecKeyKind::Fernet => "fernet",
            CodecKeyKind::XSalsa20Poly1305 => "xsalsa20poly1305",
        }
    }

    /// The length of the key material, in bytes.
    pub const fn key_len(self) -> usize {
        32
    }
}

/// What a [`SecretKey`] is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// A format-v1 AEAD key (also used by codecs whose format is that AEAD).
    Native(Algorithm),
    /// Material for another framework's format.
    Codec(CodecKeyKind),
}

impl KeyKind {
    /// The kind's name as in key specs and messages: the algorithm name for native keys, the codec
    /// key kind's name otherwise.
    pub const fn name(self) -> &'static str {
        match self {
            KeyKind::Native(a) => a.name(),
            KeyKind::Codec(c) => c.name(),
        }
    }
}

/// A data key: 32 bytes of key material for one [`Algorithm`], or for a
/// [`CodecKeyKind`].
pub struct SecretKey {
    alg: Algorithm,
    bytes: Zeroizing<[u8; 32]>,
    prepared: Prepared,
}

impl SecretKey {
    /// Builds a key from raw bytes. The caller's buffer is left to the caller
    /// to zeroize; this copy is zeroized on drop.
    pub fn from_bytes(alg: Algorithm, bytes: &[u8]) -> Result<SecretKey, FormatError> {
        if bytes.len() != alg.key_len() {
            return Err(FormatError::InvalidKeySpec(format!(
                "{} keys are {} bytes, got {}",
                alg.name(),
                alg.key_len(),
                bytes.len()
            )));
        }
        let mut arr = Zeroizing::new([0u8; 32]);
        arr.copy_from_slice(bytes);
        let prepared = match alg {
            Algorithm::Aes256Gcm => {
                let unbound = UnboundKey::new(&aead::AES_256_GCM, &arr[..])
                    .map_err(|_| FormatError::Crypto("AES-256-GCM key setup failed"))?;
                Prepared::Aes(LessSafeKey::new(unbound))
            }
            Algorithm::XChaCha20Poly1305 => Prepared::XChaCha,
        };
        Ok(SecretKey {
            alg,
            bytes: arr,
            prepared,
        })
    }

    /// Builds a key holding another framework's key material (not a format-v1
    /// key). The caller's buffer is left to the caller to zeroize; this copy
    /// is zeroized on drop. Errors never include the bytes.
    pub fn codec(kind: CodecKeyKind, bytes: &[u8]) -> Result<SecretKey, FormatError> {
        if bytes.len() != kind.key_len() {
            return Err(FormatError::InvalidKeySpec(format!(
                "{} keys are {} bytes, got {}",
                kind.name(),
                kind.key_len(),
                bytes.len()
            )));
        }
        let mut arr = Zeroizing::new([0u8; 32]);
        arr.copy_from_slice(bytes);
        Ok(SecretKey {
            // Not used for codec keys: every v1 path checks `kind()` first.
            alg: Algorithm::Aes256Gcm,
            bytes: arr,
            prepared: Prepared::Codec(kind),
        })
    }

    /// What this key is for.
    pub fn kind(&self) -> KeyKind {
        match self.prepared {
            Prepared::Codec(k) => KeyKind::Codec(k),
            _ => KeyKind::Native(self.alg),
        }
    }

    /// The format-v1 algorithm, or `None` for a codec key.
    pub fn native_algorithm(&self) -> Option<Algorithm> {
        match self.prepared {
            Prepared::Codec(_) => None,
            _ => Some(self.alg),
        }
    }

    /// The codec kind, or `None` for a format-v1 key.
    pub fn codec_kind(&self) -> Option<CodecKeyKind> {
        match self.prepared {
            Prepared::Codec(k) => Some(k),
            _ => None,
        }
    }

    /// A fresh key from the operating system's CSPRNG.
    pub fn generate(alg: Algorithm) -> Result<SecretKey, FormatError> {
        let mut buf = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut buf[..])
            .map_err(|_| FormatError::Crypto("the system random generator failed"))?;
        SecretKey::from_bytes(alg, &buf[..])
    }

    /// The format-v1 algorithm of the key.
    ///
    /// A codec key ([`SecretKey::codec`]) has none: it reports
    /// [`Algorithm::Aes256Gcm`] here only to keep this signature, and every
    /// AEAD operation refuses it. Use [`SecretKey::kind`] or
    /// [`SecretKey::native_algorithm`] where codec keys can occur.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The raw key bytes, for serializing into a key spec or wrapping under a
    /// KEK. Keep the borrow short and never log it.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.bytes[..]
    }

    /// A fingerprint that identifies the key without revealing it: the first
    /// 8 bytes of SHA-256 over a domain-separation label and the key, hex.
    pub fn fingerprint(&self) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(b"keyturn key fingerprint v1\0");
        match self.prepared {
            Prepared::Codec(k) => {
                ctx.update(b"codec:");
                ctx.update(k.name().as_bytes());
                ctx.update(b"\0");
            }
            _ => ctx.update(&[self.alg.byte()]),
        }
        ctx.update(&self.bytes[..]);
        let d = ctx.finish();
        d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Encrypts `in_out` in place with the key's AEAD and returns the tag.
    ///
    /// Low-level: `nonce` must never repeat under this key (use a fresh random
    /// nonce of [`Algorithm::nonce_len`] bytes). Used by format v1 and by
    /// codecs whose format is plain AES-256-GCM or XChaCha20-Poly1305. Codec
    /// keys refuse it.
    pub fn seal_in_place(
        &self,
        nonce: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], FormatError> {
        match &self.prepared {
            Prepared::Aes(key) => {
                let nonce = Nonce::try_assume_unique_for_key(nonce)
                    .map_err(|_| FormatError::Crypto("bad AES-GCM nonce length"))?;
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
                    .map_err(|_| FormatError::Crypto("AES-256-GCM seal failed"))?;
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                Ok(out)
            }
            Prepared::XChaCha => {
                if nonce.len() != self.alg.nonce_len() {
                    return Err(FormatError::Crypto("bad XChaCha20 nonce length"));
                }
                let (key, nonce) = self.xchacha_subkey(nonce)?;
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
                    .map_err(|_| FormatError::Crypto("XChaCha20-Poly1305 seal failed"))?;
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                Ok(out)
            }
            Prepared::Codec(k) => Err(FormatError::AlgorithmMismatch {
                key: String::new(),
                have: k.name(),
                want: self.alg.name(),
            }),
        }
    }

    /// XChaCha20-Poly1305 as specified in draft-irtf-cfrg-xchacha-03 §2.3:
    /// HChaCha20 of the key and the nonce's first 16 bytes gives a subkey for
    /// ChaCha20-Poly1305 (RFC 8439, aws-lc's implementation) with the nonce
    /// `0x00000000 ‖ last 8 nonce bytes`. `nonce` is 24 bytes (checked by
    /// the callers).
    fn xchacha_subkey(&self, nonce: &[u8]) -> Result<(LessSafeKey, Nonce), FormatError> {
        let mut sub = chacha20::hchacha::<U10>(
            GenericArray::from_slice(&self.bytes[..]),
            GenericArray::from_slice(&nonce[..16]),
        );
        let unbound = UnboundKey::new(&aead::CHACHA20_POLY1305, sub.as_slice());
        sub.as_mut_slice().zeroize();
        let key = LessSafeKey::new(
            unbound.map_err(|_| FormatError::Crypto("ChaCha20-Poly1305 key setup failed"))?,
        );
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&nonce[16..24]);
        Ok((key, Nonce::assume_unique_for_key(n)))
    }

    /// Checks `tag` and decrypts `ct` into `out` (same length). On failure
    /// `out` holds no plaintext. `key_id` names the key in the error.
    /// Codec keys refuse it.
    pub fn open_into(
        &self,
        key_id: &str,
        nonce: &[u8],
        aad: &[u8],
        ct: &[u8],
        tag: &[u8],
        out: &mut [u8],
    ) -> Result<(), FormatError> {
        let fail = || FormatError::AuthenticationFailed(key_id.to_owned());
        if let Prepared::Codec(k) = self.prepared {
            return Err(FormatError::AlgorithmMismatch {
                key: key_id.to_owned(),
                have: k.name(),
                want: self.alg.name(),
            });
        }
        if nonce.len() != self.alg.nonce_len() || tag.len() != TAG_LEN || ct.len() != out.len() {
            return Err(FormatError::Crypto(
                "AEAD input lengths do not match the algorithm",
            ));
        }
        match &self.prepared {
            Prepared::Aes(key) => {
                let nonce = Nonce::try_assume_unique_for_key(nonce)
                    .map_err(|_| FormatError::Crypto("bad AES-GCM nonce length"))?;
                key.open_separate_gather(nonce, Aad::from(aad), ct, tag, out)
                    .map_err(|_| {
                        out.zeroize();
                        fail()
                    })
            }
            Prepared::XChaCha => {
                let (key, nonce) = self.xchacha_subkey(nonce)?;
                key.open_separate_gather(nonce, Aad::from(aad), ct, tag, out)
                    .map_err(|_| {
                        out.zeroize();
                        fail()
                    })
            }
            Prepared::Codec(k) => Err(FormatError::AlgorithmMismatch {
                key: key_id.to_owned(),
                have: k.name(),
                want: self.alg.name(),
            }),
        }
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}, 32 bytes, redacted)", self.kind().name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// draft-irtf-cfrg-xchacha-03 §2.2.1, the vector docs/FORMAT.md §1 quotes.
    #[test]
    fn hchacha20_vector() {
        let key: Vec<u8> = (0u8..32).collect();
        let nonce = [
            0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x4a, 0x00, 0x00, 0x00, 0x00, 0x31, 0x41,
            0x59, 0x27,
        ];
        let sub = chacha20::hchacha::<U10>(
            GenericArray::from_slice(&key),
            GenericArray::from_slice(&nonce),
        );
        let hex: String = sub.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"
        );
    }

    #[test]
    fn codec_keys_are_redacted_and_refuse_v1() {
        let k = SecretKey::codec(CodecKeyKind::Fernet, &[0x42; 32]).unwrap();
        assert_eq!(k.kind(), KeyKind::Codec(CodecKeyKind::Fernet));
        assert_eq!(k.native_algorithm(), None);
        let dbg = format!("{k:?}");
        assert_eq!(dbg, "SecretKey(fernet, 32 bytes, redacted)");
        let mut buf = [0u8; 4];
        assert_eq!(
            k.seal_in_place(&[0; 12], b"", &mut buf).unwrap_err().kind(),
            "algorithm_mismatch"
        );
        let mut out = [0u8; 4];
        assert_eq!(
            k.open_into("f", &[0; 12], b"", &[0; 4], &[0; 16], &mut out)
                .unwrap_err()
                .kind(),
            "algorithm_mismatch"
        );
        let e = SecretKey::codec(CodecKeyKind::Fernet, &[0x42; 31]).unwrap_err();
        assert!(e.to_string().contains("31"));
        // A codec key and a native key with the same bytes differ.
        let n = SecretKey::from_bytes(Algorithm::Aes256Gcm, &[0x42; 32]).unwrap();
        assert_ne!(n.fingerprint(), k.fingerprint());
    }
}
