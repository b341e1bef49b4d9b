//! Codec configuration: which format a column holds and its parameters.

use crate::envelope::EnvelopeCodec;
use crate::multi::{MultiColumnCodec, SplitColumnsCodec};
use crate::{
    cloak::CloakCodec, fernet::FernetCodec, json_envelope::JsonEnvelopeCodec,
    laravel::LaravelCodec, lockbox::LockboxCodec, node::NodeGcmCodec, rails::RailsCodec,
    sodium::SodiumPrefixCodec, vault::VaultTransitCodec, version_byte::VersionByteCodec,
};
use keyturn_format::{Codec, Encoding, FormatError, KeyId, NativeCodec};
use serde::{Deserialize, Serialize};

/// One column's format and its parameters, as written in a config file:
/// `{"codec": "laravel", "cipher": "aes-256-gcm"}` in JSON, or
/// `codec = "lockbox"`, `table = "users"`, `column = "email_ciphertext"` in
/// TOML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "codec", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum CodecConfig {
    /// keyturn's own format v1.
    Native {
        /// Whether values are written as binary bytes or as text (default text).
        #[serde(default)]
        encoding: NativeEncoding,
    },
    /// Python `cryptography` Fernet tokens (text), keys as urlsafe base64.
    Fernet {},
    /// django-fernet-fields: Fernet tokens in a binary column, keys from
    /// `FERNET_KEYS` passed through HKDF-SHA256 unless `use_hkdf` is false.
    DjangoFernetFields {
        /// Whether keys from `FERNET_KEYS` are passed through HKDF-SHA256 as django-fernet-fields
        /// does (default true); false uses them as plain Fernet keys.
        #[serde(default = "yes")]
        use_hkdf: bool,
    },
    /// Laravel's Encrypter.
    Laravel {
        /// The cipher of the stored values (default AES-256-CBC, Laravel's default).
        #[serde(default)]
        cipher: LaravelCipher,
    },
    /// Rails Active Record Encryption, non-deterministic.
    Rails {
        /// `active_record.encryption.key_derivation_salt`.
        key_derivation_salt: String,
        /// The PBKDF2 digest used to derive the key (default SHA1).
        #[serde(default)]
        kdf: RailsKdf,
        /// Write the `i` key reference on re-encryption. Unset: write it
        /// when the value being re-encrypted had one.
        #[serde(default)]
        store_key_references: Option<bool>,
    },
    /// Lockbox per-field keys derived from a master key.
    Lockbox {
        /// The table whose column is encrypted; part of the field key derivation (HKDF salt).
        table: String,
        /// The ciphertext column, e.g. `email_ciphertext`.
        column: String,
    },
    /// Vault / OpenBao transit `vault:vN:` values, aes256-gcm96 keys held
    /// locally (exported), ids `v1`, `v2`, ...
    VaultTransit {},
    /// @47ng/cloak `v1.aesgcm256.<fingerprint>.<iv>.<ct>`.
    Cloak {},
    /// Node.js ad hoc `hex(iv):hex(tag):hex(ct)` AES-256-GCM.
    NodeGcm {
        /// The IV length in bytes: 12 (default) or 16.
        #[serde(default = "twelve")]
        iv_len: usize,
    },
    /// One version byte selecting the key, then `nonce(12) ‖ ct ‖ tag`
    /// AES-256-GCM. `versions` maps the byte (decimal or `0x..`) to a key id.
    VersionByte {
        /// Version byte (decimal or `0x..`) to key id.
        versions: std::collections::BTreeMap<String, String>,
    },
    /// `<key id>:` + base64(nonce(24) ‖ libsodium box).
    SodiumPrefix {
        /// Which libsodium construction seals the values (default `crypto_secretbox_easy`).
        #[serde(default)]
        algorithm: SodiumAlgorithm,
    },
    /// `{"key_id":..,"nonce":..,"ciphertext":..}` AES-256-GCM, keys
    /// `<key id>:<base64>`.
    JsonEnvelope {},
    /// Multi-column: a KMS-style envelope over four columns of a row
    /// (ciphertext, IV, key id, wrapped data key); see
    /// [`envelope`](crate::envelope). Built with [`build_multi`].
    Envelope {
        /// How each row's data key is wrapped (default AES-256-GCM).
        #[serde(default)]
        wrap: EnvelopeWrap,
        /// What rotation does to a row under an old key (default rewrap).
        #[serde(default)]
        rotation: EnvelopeRotation,
    },
    /// Multi-column: ciphertext, IV and key-id columns, AES-256-GCM; see
    /// [`SplitColumnsCodec`]. Built with
    /// [`build_multi`].
    SplitColumns {},
}

/// How the envelope codec wraps each row's data key under the key named by
/// the key-id column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EnvelopeWrap {
    /// AES-256-GCM: `nonce(12) ‖ encrypted data key(32) ‖ tag(16)`, 60 bytes.
    #[default]
    AesGcm,
    /// AES key wrap (RFC 3394) with a 256-bit key: 40 bytes.
    AesKw,
}

/// What `rotate` does to an envelope row under an old key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EnvelopeRotation {
    /// Unwrap the data key with the old key and wrap it under the primary:
    /// only the key-id and wrapped-key columns change.
    #[default]
    Rewrap,
    /// Decrypt and encrypt again under a fresh data key and IV: every column
    /// changes (after an old key was compromised).
    Reencrypt,
}

fn yes() -> bool {
    true
}

fn twelve() -> usize {
    12
}

/// How the native codec stores values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum NativeEncoding {
    /// Raw bytes, for binary columns.
    Binary,
    /// ASCII text, for text columns (the default).
    #[default]
    Text,
}

/// The cipher of Laravel's Encrypter (its `cipher` config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LaravelCipher {
    /// AES-256-CBC with an HMAC-SHA256 `mac` (Laravel's default).
    #[default]
    #[serde(rename = "aes-256-cbc", alias = "AES-256-CBC")]
    Aes256Cbc,
    /// AES-256-GCM with a `tag`.
    #[serde(rename = "aes-256-gcm", alias = "AES-256-GCM")]
    Aes256Gcm,
}

/// The digest of Rails' PBKDF2 key derivation: SHA1 before the 7.1
/// defaults, SHA256 with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RailsKdf {
    /// PBKDF2-HMAC-SHA1, Rails' default before the 7.1 defaults.
    #[default]
    Sha1,
    /// PBKDF2-HMAC-SHA256, with the Rails 7.1 defaults.
    Sha256,
}

/// The libsodium construction used by the sodium-prefix codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SodiumAlgorithm {
    /// `crypto_secretbox_easy`: nonce(24) ‖ tag(16) ‖ ct.
    #[default]
    Xsalsa20poly1305,
    /// `crypto_aead_xchacha20poly1305_ietf_encrypt`, no AAD: nonce(24) ‖ ct ‖ tag(16).
    Xchacha20poly1305,
}

impl CodecConfig {
    /// The codec's name, as in configs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            CodecConfig::Native { .. } => "native",
            CodecConfig::Fernet {} => "fernet",
            CodecConfig::DjangoFernetFields { .. } => "django-fernet-fields",
            CodecConfig::Laravel { .. } => "laravel",
            CodecConfig::Rails { .. } => "rails",
            CodecConfig::Lockbox { .. } => "lockbox",
            CodecConfig::VaultTransit {} => "vault-transit",
            CodecConfig::Cloak {} => "cloak",
            CodecConfig::NodeGcm { .. } => "node-gcm",
            CodecConfig::VersionByte { .. } => "version-byte",
            CodecConfig::SodiumPrefix { .. } => "sodium-prefix",
            CodecConfig::JsonEnvelope {} => "json-envelope",
            CodecConfig::Envelope { .. } => "envelope",
            CodecConfig::SplitColumns {} => "split-columns",
        }
    }

    /// Whether the codec spreads a value over several columns of a row
    /// (built with [`build_multi`], not [`build`]).
    pub fn is_multi_column(&self) -> bool {
        matches!(
            self,
            CodecConfig::Envelope { .. } | CodecConfig::SplitColumns {}
        )
    }
}

fn bad(why: String) -> FormatError {
    FormatError::Keyring(format!("codec config: {why}"))
}

/// Parses a version byte written as decimal (`"1"`) or hex (`"0x01"`).
pub(crate) fn parse_version_byte(s: &str) -> Result<u8, FormatError> {
    let s = s.trim();
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u8::from_str_radix(h, 16),
        None => s.parse::<u8>(),
    };
    parsed.map_err(|_| {
        bad(format!(
            "version byte {s:?} is not 0..=255 (decimal or 0x..)"
        ))
    })
}

/// Builds the codec a config describes. Checks the parameters (IV length,
/// version map, table and column names) once, here.
pub fn build(config: &CodecConfig) -> Result<Box<dyn Codec>, FormatError> {
    Ok(match config {
        CodecConfig::Native { encoding } => Box::new(NativeCodec {
            encoding: match encoding {
                NativeEncoding::Binary => Encoding::Binary,
                NativeEncoding::Text => Encoding::Text,
            },
        }),
        CodecConfig::Fernet {} => Box::new(FernetCodec::fernet()),
        CodecConfig::DjangoFernetFields { .. } => Box::new(FernetCodec::django()),
        CodecConfig::Laravel { cipher } => Box::new(LaravelCodec::new(*cipher)),
        CodecConfig::Rails {
            store_key_references,
            ..
        } => Box::new(RailsCodec::new(*store_key_references)),
        CodecConfig::Lockbox { table, column } => {
            if table.is_empty() || column.is_empty() {
                return Err(bad("lockbox needs a table and a column".into()));
            }
            Box::new(LockboxCodec)
        }
        CodecConfig::VaultTransit {} => Box::new(VaultTransitCodec),
        CodecConfig::Cloak {} => Box::new(CloakCodec),
        CodecConfig::NodeGcm { iv_len } => Box::new(NodeGcmCodec::new(*iv_len)?),
        CodecConfig::VersionByte { versions } => {
            let mut ids = Vec::with_capacity(versions.len());
            for (byte, id) in versions {
                let b = parse_version_byte(byte)?;
                let id = KeyId::new(id).map_err(|e| bad(format!("version {b}: {e}")))?;
                if ids.iter().any(|(x, _)| *x == b) {
                    return Err(bad(format!("version byte {b} appears twice")));
                }
                if ids.iter().any(|(_, i)| *i == id) {
                    return Err(bad(format!(
                        "key id {:?} has two version bytes",
                        id.as_str()
                    )));
                }
                ids.push((b, id));
            }
            if ids.is_empty() {
                return Err(bad("version-byte needs at least one version".into()));
            }
            Box::new(VersionByteCodec::new(ids))
        }
        CodecConfig::SodiumPrefix { algorithm } => Box::new(SodiumPrefixCodec::new(*algorithm)),
        CodecConfig::JsonEnvelope {} => Box::new(JsonEnvelopeCodec),
        CodecConfig::Envelope { .. } | CodecConfig::SplitColumns {} => {
            return Err(bad(format!(
                "{} spans several columns of a row: build it with build_multi",
                config.name()
            )));
        }
    })
}

/// Builds the multi-column codec a config describes (see
/// [`CodecConfig::is_multi_column`]).
pub fn build_multi(config: &CodecConfig) -> Result<Box<dyn MultiColumnCodec>, FormatError> {
    Ok(match config {
        CodecConfig::Envelope { wrap, rotation } => Box::new(EnvelopeCodec::new(*wrap, *rotation)),
        CodecConfig::SplitColumns {} => Box::new(SplitColumnsCodec),
        other => {
            return Err(bad(format!(
                "{} stores a value in one column: build it with build",
                other.name()
            )));
        }
    })
}
