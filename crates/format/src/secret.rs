//! Secret key material and the AEAD operations that use it.
//!
//! [`SecretKey`] is a newtype with no derived `Debug`: its `Debug` prints the
//! algorithm and a length, never bytes. The raw bytes are zeroized on drop;
//! the AES key schedule lives inside aws-lc, which cleanses it when freed.

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
}

/// A data key: 32 bytes of key material for one [`Algorithm`].
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

    /// A fresh key from the operating system's CSPRNG.
    pub fn generate(alg: Algorithm) -> Result<SecretKey, FormatError> {
        let mut buf = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut buf[..])
            .map_err(|_| FormatError::Crypto("the system random generator failed"))?;
        SecretKey::from_bytes(alg, &buf[..])
    }

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
        ctx.update(&[self.alg.byte()]);
        ctx.update(&self.bytes[..]);
        let d = ctx.finish();
        d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Encrypts `in_out` in place and returns the tag.
    pub(crate) fn seal_in_place(
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
    /// `out` holds no plaintext.
    pub(crate) fn open_into(
        &self,
        key_id: &str,
        nonce: &[u8],
        aad: &[u8],
        ct: &[u8],
        tag: &[u8],
        out: &mut [u8],
    ) -> Result<(), FormatError> {
        let fail = || FormatError::AuthenticationFailed(key_id.to_owned());
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
        }
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}, 32 bytes, redacted)", self.alg.name())
    }
}
