//! AWS KMS ciphertext: the `CiphertextBlob` of a KMS `Encrypt` call, stored
//! as is in a binary column or as standard base64 (with padding) in a text
//! column.
//!
//! The key stays in KMS: keyturn rotates these values with `ReEncrypt` (a
//! column with `kms = "NAME"`, keyturn-engine's `remote::aws`), so this
//! codec only tells a plausible blob from plaintext and garbage, and refuses
//! to encrypt or decrypt. The blob's inner layout is KMS's own (and an
//! API-compatible test server's differs), so it is not parsed: a value is a
//! blob when it has the right length, [`MIN_BLOB_LEN`] to [`MAX_BLOB_LEN`]
//! bytes. Which key it is under is decided by KMS (`ReEncrypt` answers the
//! source key's ARN); SQL cannot tell.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyturn_format::{
    Codec, Encoding, FormatError, Inspection, KeyIdLocation, Keyring, Opened, Shape,
};

/// The shortest value taken for a KMS ciphertext blob, in bytes. AWS's
/// blobs of a one-byte plaintext are well above it; an API-compatible test
/// server's (a key id, a nonce and a tag around the ciphertext) are at
/// least 65 bytes.
pub const MIN_BLOB_LEN: usize = 64;

/// The longest KMS ciphertext blob, in bytes (KMS's own limit on
/// `CiphertextBlob`).
pub const MAX_BLOB_LEN: usize = 6144;

/// Why the codec refuses to encrypt or decrypt.
const KEYS_IN_KMS: &str = "the key of an aws-kms value never leaves AWS KMS: keyturn rotates it with KMS ReEncrypt (configure kms = \"NAME\" naming an aws-kms [kms.NAME] section and key = the destination key) and never decrypts it locally";

/// AWS KMS ciphertext blobs, binary or base64 text.
#[derive(Debug, Clone, Copy)]
pub struct AwsKmsCodec {
    /// [`Encoding::Binary`]: the raw blob; [`Encoding::Text`]: standard
    /// base64 of it.
    pub encoding: Encoding,
}

impl AwsKmsCodec {
    /// The codec for values stored with `encoding`.
    pub fn new(encoding: Encoding) -> AwsKmsCodec {
        AwsKmsCodec { encoding }
    }

    /// The blob of a stored value: the bytes themselves, or its base64
    /// decoded. `Err` as [`inspect`](Codec::inspect) explains it.
    pub fn blob(&self, stored: &[u8]) -> Result<Vec<u8>, FormatError> {
        if stored.is_empty() {
            return Err(FormatError::Empty);
        }
        let blob = match self.encoding {
            Encoding::Binary => {
                if stored.len() > MAX_BLOB_LEN {
                    return Err(FormatError::TooLong(stored.len() as u64));
                }
                stored.to_vec()
            }
            Encoding::Text => {
                // Standard base64 of at most MAX_BLOB_LEN bytes.
                if stored.len() > MAX_BLOB_LEN.div_ceil(3) * 4 {
                    return Err(FormatError::TooLong(stored.len() as u64));
                }
                STANDARD.decode(stored).map_err(|_| {
                    FormatError::BadTextEncoding("an aws-kms text value is standard base64")
                })?
            }
        };
        if blob.len() < MIN_BLOB_LEN {
            return Err(FormatError::Truncated(keyturn_format::Field::Ciphertext));
        }
        if blob.len() > MAX_BLOB_LEN {
            return Err(FormatError::TooLong(blob.len() as u64));
        }
        Ok(blob)
    }

    /// A blob as this column stores it.
    pub fn store(&self, blob: &[u8]) -> Vec<u8> {
        match self.encoding {
            Encoding::Binary => blob.to_vec(),
            Encoding::Text => STANDARD.encode(blob).into_bytes(),
        }
    }
}

impl Codec for AwsKmsCodec {
    fn name(&self) -> &str {
        "aws-kms"
    }

    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v> {
        match self.blob(stored) {
            Ok(_) => Inspection::KeyUnknown,
            // Too short to be a blob, or not base64: plaintext or garbage.
            Err(
                FormatError::Empty | FormatError::BadTextEncoding(_) | FormatError::Truncated(_),
            ) => Inspection::NotThisFormat,
            Err(e) => Inspection::Invalid(e),
        }
    }

    fn decrypt(
        &self,
        _ring: &Keyring,
        _stored: &[u8],
        _context: &[&[u8]],
    ) -> Result<Opened, FormatError> {
        Err(FormatError::NotRotatable(KEYS_IN_KMS.into()))
    }

    fn reseal(
        &self,
        _ring: &Keyring,
        _opened: &Opened,
        _context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        Err(FormatError::NotRotatable(KEYS_IN_KMS.into()))
    }

    fn encrypt(
        &self,
        _ring: &Keyring,
        _plaintext: &[u8],
        _context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        Err(FormatError::NotRotatable(KEYS_IN_KMS.into()))
    }

    fn primary_prefix(&self, _ring: &Keyring) -> Option<Vec<u8>> {
        None
    }

    fn shape(&self) -> Shape {
        match self.encoding {
            Encoding::Binary => Shape::Binary {
                min_len: MIN_BLOB_LEN,
            },
            // Base64 characters with at most two padding characters, 86 at
            // least (64 bytes); the length is checked apart (see
            // `Shape::TextMin`).
            Encoding::Text => Shape::TextMin {
                min_len: 86,
                patterns: vec!["^[A-Za-z0-9+/]+={0,2}$".to_owned()],
            },
        }
    }

    fn key_id_location(&self) -> KeyIdLocation {
        KeyIdLocation::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_format::{Algorithm, KeyId, SecretKey};
    use proptest::prelude::*;

    fn blob(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    const BIN: AwsKmsCodec = AwsKmsCodec {
        encoding: Encoding::Binary,
    };
    const TEXT: AwsKmsCodec = AwsKmsCodec {
        encoding: Encoding::Text,
    };

    #[test]
    fn blobs_in_the_window_are_recognized() {
        for n in [MIN_BLOB_LEN, 65, 184, MAX_BLOB_LEN] {
            let b = blob(n);
            assert_eq!(BIN.inspect(&b), Inspection::KeyUnknown, "{n}");
            let t = TEXT.store(&b);
            assert_eq!(TEXT.inspect(&t), Inspection::KeyUnknown, "{n}");
            assert_eq!(TEXT.blob(&t).unwrap(), b);
            assert_eq!(BIN.blob(&BIN.store(&b)).unwrap(), b);
        }
    }

    #[test]
    fn plaintext_and_garbage_are_not_blobs() {
        assert_eq!(BIN.inspect(b""), Inspection::NotThisFormat);
        assert_eq!(
            BIN.inspect(&blob(MIN_BLOB_LEN - 1)),
            Inspection::NotThisFormat
        );
        assert!(matches!(
            BIN.inspect(&blob(MAX_BLOB_LEN + 1)),
            Inspection::Invalid(FormatError::TooLong(_))
        ));
        for t in [
            &b""[..],
            b"hello world",
            b"4111 1111 1111 1111",
            // base64 of too few bytes
            b"aGVsbG8gd29ybGQ=",
            // URL-safe base64 is not standard base64
            "-_".repeat(60).as_bytes(),
            // unpadded
            &TEXT.store(&blob(100))[..134],
        ] {
            assert_eq!(TEXT.inspect(t), Inspection::NotThisFormat, "{t:?}");
        }
        assert!(matches!(
            TEXT.inspect(&TEXT.store(&blob(MAX_BLOB_LEN + 1))),
            Inspection::Invalid(FormatError::TooLong(_))
        ));
    }

    #[test]
    fn the_text_shape_agrees_with_inspect_on_length() {
        let Shape::TextMin { min_len, patterns } = TEXT.shape() else {
            panic!("text shape expected")
        };
        let re: Vec<regex::Regex> = patterns
            .iter()
            .map(|p| regex::Regex::new(p).unwrap())
            .collect();
        let matches = |v: &[u8]| {
            let s = std::str::from_utf8(v).unwrap();
            s.len() >= min_len && re.iter().all(|r| r.is_match(s))
        };
        for n in [MIN_BLOB_LEN - 1, MIN_BLOB_LEN, MIN_BLOB_LEN + 1, 200] {
            let v = TEXT.store(&blob(n));
            assert_eq!(matches(&v), n >= MIN_BLOB_LEN, "{n}");
            assert_eq!(
                TEXT.inspect(&v) == Inspection::KeyUnknown,
                n >= MIN_BLOB_LEN
            );
        }
        assert!(!matches(b"hello world"));
        assert_eq!(
            BIN.shape(),
            Shape::Binary {
                min_len: MIN_BLOB_LEN
            }
        );
        assert_eq!(BIN.key_id_location(), KeyIdLocation::None);
    }

    #[test]
    fn encrypting_and_decrypting_are_refused() {
        let ring = Keyring::from_keys(
            vec![(
                KeyId::new("k1").unwrap(),
                SecretKey::generate(Algorithm::Aes256Gcm).unwrap(),
            )],
            Some("k1"),
            &[],
        )
        .unwrap();
        let e = TEXT.encrypt(&ring, b"secret", &[]).unwrap_err();
        assert!(e.to_string().contains("ReEncrypt"), "{e}");
        let e = BIN.decrypt(&ring, &blob(100), &[]).unwrap_err();
        assert!(matches!(e, FormatError::NotRotatable(_)), "{e}");
        assert!(BIN.reencrypt(&ring, &blob(100), &[]).is_err());
        assert_eq!(BIN.primary_prefix(&ring), None);
    }

    proptest! {
        #[test]
        fn inspect_never_panics(v in proptest::collection::vec(any::<u8>(), 0..9000)) {
            let _ = BIN.inspect(&v);
            let _ = TEXT.inspect(&v);
        }

        #[test]
        fn stored_blobs_round_trip(v in proptest::collection::vec(any::<u8>(), MIN_BLOB_LEN..400)) {
            let t = TEXT.store(&v);
            prop_assert_eq!(TEXT.blob(&t).unwrap(), v.clone());
            prop_assert_eq!(TEXT.inspect(&t), Inspection::KeyUnknown);
            prop_assert_eq!(BIN.inspect(&v), Inspection::KeyUnknown);
        }
    }
}
