//! KMS-style envelope encryption over four columns of a row (the layout of
//! hand-rolled "KMS envelope" schemes: a data key per row, wrapped by a key
//! encryption key that a key-id column names).
//!
//! | role | column holds |
//! |---|---|
//! | ciphertext | `ct ‖ tag(16)`: AES-256-GCM of the plaintext under the row's data key, no associated data |
//! | IV | the 12-byte GCM nonce of that encryption |
//! | key id | the id of the keyring key (the KEK) that wrapped the data key, as text |
//! | wrapped key | the 32-byte data key wrapped under that KEK: `nonce(12) ‖ ct(32) ‖ tag(16)` with AES-256-GCM and no associated data (`wrap = "aes-gcm"`, 60 bytes), or RFC 3394 AES key wrap (`wrap = "aes-kw"`, 40 bytes) |
//!
//! Rotation (`rotation = "rewrap"`, the default) unwraps the data key with
//! the old KEK, checks that it opens the row's ciphertext (so a damaged or
//! mismatched row is reported, never re-wrapped), and wraps it under the
//! primary: only the key-id and wrapped-key columns change. That is safe
//! because the data key itself was never exposed (it only ever left the
//! process wrapped) and nothing new is encrypted under it, so its
//! (key, IV) pair is still used exactly once. What rewrapping does not do is
//! protect data against someone who already holds the old KEK *and* an old
//! copy of the wrapped key (a backup): after a KEK compromise use
//! `rotation = "reencrypt"`, which decrypts and encrypts each value again
//! under a fresh data key and IV (every column changes).
//!
//! A row whose ciphertext column is set and whose IV, key-id and
//! wrapped-key columns are all NULL is plaintext waiting for `encrypt`
//! (`NotThisFormat`); some but not all of them NULL is a damaged row
//! (`null_cell`).

use crate::config::{EnvelopeRotation, EnvelopeWrap};
use crate::multi::{Cells, MultiColumnCodec, Role, RowReencryption};
use crate::util::{self, AES};
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrap};
use keyturn_format::{
    Algorithm, Carry, Encoding, Field, FormatError, Inspection, KeyId, Keyring, Opened, SecretKey,
    TAG_LEN,
};
use zeroize::Zeroizing;

/// Length of a data key.
const DEK_LEN: usize = 32;

/// The roles of the envelope, key id first (the database layer packs the
/// cells in this order, so SQL can compare the key id as a prefix).
const ROLES: &[Role] = &[Role::KeyId, Role::WrappedKey, Role::Iv, Role::Ciphertext];

/// See the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvelopeCodec {
    wrap: EnvelopeWrap,
    rotation: EnvelopeRotation,
}

struct Parts<'c> {
    key_id: &'c str,
    wrapped: &'c [u8],
    iv: &'c [u8],
    body: &'c [u8],
}

impl EnvelopeWrap {
    /// Length of a wrapped data key.
    pub fn wrapped_len(self) -> usize {
        match self {
            EnvelopeWrap::AesGcm => util::GCM_NONCE_LEN + DEK_LEN + TAG_LEN,
            EnvelopeWrap::AesKw => DEK_LEN + 8,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            EnvelopeWrap::AesGcm => "60 (nonce, data key, tag: aes-gcm)",
            EnvelopeWrap::AesKw => "40 (AES key wrap of a 32-byte data key: aes-kw)",
        }
    }
}

impl EnvelopeCodec {
    /// An envelope codec wrapping data keys with `wrap` and rotating rows as `rotation` says.
    pub fn new(wrap: EnvelopeWrap, rotation: EnvelopeRotation) -> EnvelopeCodec {
        EnvelopeCodec { wrap, rotation }
    }

    /// The parts of a row; see the module docs for `Empty`, `UnknownFormat`
    /// and `NullCell`.
    fn parts<'c>(&self, cells: &'c Cells) -> Result<Parts<'c>, FormatError> {
        let Some(body) = &cells.ciphertext else {
            return Err(FormatError::Empty);
        };
        let (key_id, wrapped, iv) = match (&cells.key_id, &cells.wrapped_key, &cells.iv) {
            (None, None, None) => return Err(FormatError::UnknownFormat),
            (None, _, _) => return Err(FormatError::NullCell(Role::KeyId.name())),
            (_, None, _) => return Err(FormatError::NullCell(Role::WrappedKey.name())),
            (_, _, None) => return Err(FormatError::NullCell(Role::Iv.name())),
            (Some(k), Some(w), Some(i)) => (k.as_str(), w.as_slice(), i.as_slice()),
        };
        KeyId::new(key_id)?;
        if wrapped.len() != self.wrap.wrapped_len() {
            return Err(FormatError::CellLength {
                cell: Role::WrappedKey.name(),
                len: wrapped.len(),
                want: self.wrap.expected(),
            });
        }
        if iv.len() != util::GCM_NONCE_LEN {
            return Err(FormatError::CellLength {
                cell: Role::Iv.name(),
                len: iv.len(),
                want: "12",
            });
        }
        if body.len() < TAG_LEN {
            return Err(FormatError::Truncated(Field::Tag));
        }
        util::check_stored_len(body)?;
        Ok(Parts {
            key_id,
            wrapped,
            iv,
            body,
        })
    }

    /// Unwraps the row's data key with the KEK its key-id column names.
    fn unwrap_dek(
        &self,
        ring: &Keyring,
        p: &Parts<'_>,
    ) -> Result<(KeyId, Zeroizing<[u8; DEK_LEN]>), FormatError> {
        let (id, kek) = util::named(ring, p.key_id, AES)?;
        let fail = || FormatError::AuthenticationFailed(format!("{id}, unwrapping the data key"));
        let mut dek = Zeroizing::new([0u8; DEK_LEN]);
        match self.wrap {
            EnvelopeWrap::AesGcm => {
                let (nonce, rest) = p.wrapped.split_at(util::GCM_NONCE_LEN);
                let (ct, tag) = rest.split_at(DEK_LEN);
                kek.open_into(id.as_str(), nonce, b"", ct, tag, &mut dek[..])
                    .map_err(|e| match e {
                        FormatError::AuthenticationFailed(_) => fail(),
                        other => other,
                    })?;
            }
            EnvelopeWrap::AesKw => {
                let k = AesKek::new(&AES_256, kek.expose_bytes())
                    .map_err(|_| FormatError::Crypto("AES key wrap key setup failed"))?;
                let out = k.unwrap(p.wrapped, &mut dek[..]).map_err(|_| fail())?;
                if out.len() != DEK_LEN {
                    return Err(fail());
                }
            }
        }
        Ok((id, dek))
    }

    /// Wraps a data key under `kek`.
    fn wrap_dek(&self, kek: &SecretKey, dek: &[u8; DEK_LEN]) -> Result<Vec<u8>, FormatError> {
        match self.wrap {
            EnvelopeWrap::AesGcm => util::gcm_seal_concat(kek, dek),
            EnvelopeWrap::AesKw => {
                let k = AesKek::new(&AES_256, kek.expose_bytes())
                    .map_err(|_| FormatError::Crypto("AES key wrap key setup failed"))?;
                let mut out = vec![0u8; DEK_LEN + 8];
                let n = k
                    .wrap(dek, &mut out)
                    .map_err(|_| FormatError::Crypto("AES key wrap failed"))?
                    .len();
                out.truncate(n);
                Ok(out)
            }
        }
    }

    /// Opens the row's ciphertext with its data key.
    fn open_data(
        dek: &[u8; DEK_LEN],
        kek_id: &KeyId,
        p: &Parts<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, FormatError> {
        let key = SecretKey::from_bytes(Algorithm::Aes256Gcm, dek)?;
        let (ct, tag) = p.body.split_at(p.body.len() - TAG_LEN);
        let mut out = Zeroizing::new(vec![0u8; ct.len()]);
        key.open_into(
            &format!("the data key wrapped under {kek_id}"),
            p.iv,
            b"",
            ct,
            tag,
            &mut out,
        )?;
        Ok(out)
    }
}

impl MultiColumnCodec for EnvelopeCodec {
    fn name(&self) -> &str {
        "envelope"
    }

    fn roles(&self) -> &'static [Role] {
        ROLES
    }

    fn inspect_row<'c>(&self, cells: &'c Cells) -> Inspection<'c> {
        match self.parts(cells) {
            Ok(p) => Inspection::UnderKey(p.key_id),
            Err(FormatError::Empty | FormatError::UnknownFormat) => Inspection::NotThisFormat,
            Err(e) => Inspection::Invalid(e),
        }
    }

    fn decrypt_row(
        &self,
        ring: &Keyring,
        cells: &Cells,
        _context: &[&[u8]],
    ) -> Result<Opened, FormatError> {
        let p = self.parts(cells)?;
        let (key_id, dek) = self.unwrap_dek(ring, &p)?;
        let plaintext = Self::open_data(&dek, &key_id, &p)?;
        Ok(Opened {
            plaintext,
            key_id,
            encoding: Encoding::Binary,
            carry: Carry::None,
        })
    }

    fn reseal_row(
        &self,
        ring: &Keyring,
        opened: &Opened,
        context: &[&[u8]],
    ) -> Result<Cells, FormatError> {
        self.encrypt_row(ring, &opened.plaintext, context)
    }

    fn encrypt_row(
        &self,
        ring: &Keyring,
        plaintext: &[u8],
        _context: &[&[u8]],
    ) -> Result<Cells, FormatError> {
        let (id, kek) = util::primary(ring, AES)?;
        let mut dek = Zeroizing::new([0u8; DEK_LEN]);
        util::random(&mut dek[..])?;
        let key = SecretKey::from_bytes(Algorithm::Aes256Gcm, &dek[..])?;
        // A fresh data key per value: the random IV is its only nonce.
        let mut sealed = util::gcm_seal_concat(&key, plaintext)?;
        let body = sealed.split_off(util::GCM_NONCE_LEN);
        Ok(Cells {
            ciphertext: Some(body),
            iv: Some(sealed),
            key_id: Some(id.as_str().to_owned()),
            wrapped_key: Some(self.wrap_dek(kek, &dek)?),
        })
    }

    fn key_id_role(&self) -> Option<Role> {
        Some(Role::KeyId)
    }

    /// Re-wraps the data key (or, with `rotation = "reencrypt"`, encrypts
    /// the value again under a fresh data key); see the module docs.
    fn reencrypt_row(
        &self,
        ring: &Keyring,
        cells: &Cells,
        context: &[&[u8]],
    ) -> Result<RowReencryption, FormatError> {
        let p = self.parts(cells)?;
        if p.key_id == ring.primary_id().as_str() {
            return Ok(RowReencryption::AlreadyPrimary);
        }
        let (key_id, dek) = self.unwrap_dek(ring, &p)?;
        // Authenticate the data under the data key before re-wrapping it: a
        // damaged row, or a wrapped key moved from another row, is reported
        // instead of being given a fresh wrapping.
        let plaintext = Self::open_data(&dek, &key_id, &p)?;
        match self.rotation {
            EnvelopeRotation::Reencrypt => self
                .encrypt_row(ring, &plaintext, context)
                .map(RowReencryption::Rotated),
            EnvelopeRotation::Rewrap => {
                drop(plaintext);
                let (primary, kek) = util::primary(ring, AES)?;
                Ok(RowReencryption::Rotated(Cells {
                    ciphertext: Some(p.body.to_vec()),
                    iv: Some(p.iv.to_vec()),
                    key_id: Some(primary.as_str().to_owned()),
                    wrapped_key: Some(self.wrap_dek(kek, &dek)?),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(primary: &str) -> Keyring {
        let k = |b| SecretKey::from_bytes(Algorithm::Aes256Gcm, &[b; 32]).unwrap();
        Keyring::from_keys(
            vec![
                (KeyId::new("kek-1").unwrap(), k(1)),
                (KeyId::new("kek-2").unwrap(), k(2)),
            ],
            Some(primary),
            &[],
        )
        .unwrap()
    }

    #[test]
    fn rewrap_keeps_ciphertext_and_iv() {
        for wrap in [EnvelopeWrap::AesGcm, EnvelopeWrap::AesKw] {
            let c = EnvelopeCodec::new(wrap, EnvelopeRotation::Rewrap);
            let old = c.encrypt_row(&ring("kek-1"), b"secret", &[]).unwrap();
            assert_eq!(old.wrapped_key.as_ref().unwrap().len(), wrap.wrapped_len());
            let RowReencryption::Rotated(new) = c.reencrypt_row(&ring("kek-2"), &old, &[]).unwrap()
            else {
                panic!("not rotated")
            };
            assert_eq!(new.ciphertext, old.ciphertext);
            assert_eq!(new.iv, old.iv);
            assert_eq!(new.key_id.as_deref(), Some("kek-2"));
            assert_ne!(new.wrapped_key, old.wrapped_key);
            let o = c.decrypt_row(&ring("kek-2"), &new, &[]).unwrap();
            assert_eq!(&o.plaintext[..], b"secret");
            assert!(matches!(
                c.reencrypt_row(&ring("kek-2"), &new, &[]).unwrap(),
                RowReencryption::AlreadyPrimary
            ));
        }
    }

    #[test]
    fn reencrypt_changes_every_cell() {
        let c = EnvelopeCodec::new(EnvelopeWrap::AesGcm, EnvelopeRotation::Reencrypt);
        let old = c.encrypt_row(&ring("kek-1"), b"secret", &[]).unwrap();
        let RowReencryption::Rotated(new) = c.reencrypt_row(&ring("kek-2"), &old, &[]).unwrap()
        else {
            panic!("not rotated")
        };
        assert_ne!(new.ciphertext, old.ciphertext);
        assert_ne!(new.iv, old.iv);
        let o = c.decrypt_row(&ring("kek-2"), &new, &[]).unwrap();
        assert_eq!(&o.plaintext[..], b"secret");
    }

    #[test]
    fn damaged_rows_are_refused_with_the_column_named() {
        let c = EnvelopeCodec::default();
        let good = c.encrypt_row(&ring("kek-1"), b"secret", &[]).unwrap();
        let r2 = ring("kek-2");
        let err = |cells: &Cells| c.reencrypt_row(&r2, cells, &[]).unwrap_err();

        let mut bad = good.clone();
        bad.wrapped_key.as_mut().unwrap()[20] ^= 1;
        let e = err(&bad);
        assert_eq!(e.kind(), "authentication_failed");
        assert!(e.to_string().contains("unwrapping the data key"), "{e}");

        let mut bad = good.clone();
        bad.ciphertext.as_mut().unwrap()[0] ^= 1;
        let e = err(&bad);
        assert_eq!(e.kind(), "authentication_failed");
        assert!(
            e.to_string().contains("data key wrapped under kek-1"),
            "{e}"
        );

        let mut bad = good.clone();
        bad.wrapped_key = None;
        assert_eq!(
            err(&bad).to_string(),
            "the wrapped key column is NULL while the value's other columns are set"
        );
        let mut bad = good.clone();
        bad.iv = Some(vec![0; 16]);
        assert_eq!(err(&bad).kind(), "cell_length");
        let mut bad = good.clone();
        bad.key_id = Some("kek-9".into());
        assert_eq!(err(&bad).kind(), "unknown_key");

        let plain = Cells {
            ciphertext: Some(b"plaintext".to_vec()),
            ..Cells::default()
        };
        assert_eq!(c.inspect_row(&plain), Inspection::NotThisFormat);
        assert_eq!(err(&plain).kind(), "unknown_format");
    }
}
