//! keyturn-codecs: every codec's decoder, `detect` and `parse_key`.

use crate::check::assert_no_echo;
use keyturn_codecs::{CodecConfig, build, build_multi, detect, load_ring, parse_key};
use keyturn_engine::multi::PackedCells;
use keyturn_format::{
    Codec, FormatError, Inspection, KeyId, KeyKind, Keyring, Reencryption, SecretKey,
};
use serde::Deserialize;
use std::sync::{Arc, OnceLock};

/// The parts of a vector file (testdata/codecs) a target needs.
#[derive(Deserialize)]
struct VectorFile {
    codec: CodecConfig,
    keys: Vec<VectorKey>,
    primary: String,
}

#[derive(Deserialize)]
struct VectorKey {
    id: String,
    text: String,
}

/// A codec with the keys of its vector file, and a ring with the same key
/// ids and states but other key material.
pub(crate) struct Setup {
    pub(crate) codec: Box<dyn Codec>,
    pub(crate) ring: Keyring,
    pub(crate) wrong: Keyring,
}

fn vector(json: &str) -> VectorFile {
    serde_json::from_str(json).expect("vector file")
}

fn other_material(ring: &Keyring) -> Keyring {
    let mut b = Keyring::builder();
    for (id, state, key) in ring.keys() {
        let bytes: Vec<u8> = key.expose_bytes().iter().map(|b| b ^ 0xA5).collect();
        let k = match key.kind() {
            KeyKind::Native(alg) => SecretKey::from_bytes(alg, &bytes),
            KeyKind::Codec(kind) => SecretKey::codec(kind, &bytes),
            other => panic!("a key kind the fuzz targets do not know: {other:?}"),
        }
        .expect("32-byte key");
        b = b.add(id.clone(), k, state);
    }
    b.build().expect("ring of other material")
}

fn setup(json: &str) -> Setup {
    let vf = vector(json);
    let keys: Vec<(&str, &str)> = vf
        .keys
        .iter()
        .map(|k| (k.id.as_str(), k.text.as_str()))
        .collect();
    let ring = load_ring(&vf.codec, &keys, Some(&vf.primary), &[]).expect("vector keys load");
    let codec: Box<dyn Codec> = if vf.codec.is_multi_column() {
        let inner = build_multi(&vf.codec).expect("multi-column codec");
        Box::new(PackedCells::new(Arc::from(inner)))
    } else {
        build(&vf.codec).expect("codec")
    };
    Setup {
        wrong: other_material(&ring),
        codec,
        ring,
    }
}

macro_rules! vectors {
    ($($path:literal),+ $(,)?) => {{
        static S: OnceLock<Vec<Setup>> = OnceLock::new();
        S.get_or_init(|| {
            vec![$(setup(include_str!(concat!("../../../testdata/codecs/", $path)))),+]
        })
        .as_slice()
    }};
}

pub(crate) fn split_columns() -> &'static [Setup] {
    vectors!("split-columns/aes-gcm.json")
}

/// The checks every codec's decoder goes through, with each setup.
pub(crate) fn check_codec(setups: &[Setup], data: &[u8]) {
    for s in setups {
        check_one(s, data);
    }
}

fn check_one(s: &Setup, data: &[u8]) {
    let name = s.codec.name();
    let ids: Vec<&str> = s.ring.keys().map(|(id, _, _)| id.as_str()).collect();
    let inspection = s.codec.inspect(data);
    let hint: Option<String> = match &inspection {
        Inspection::UnderKey(id) => {
            KeyId::new(id).expect("inspect names a valid key id");
            Some((*id).to_owned())
        }
        Inspection::UnderKeyOwned(id) => Some(id.as_str().to_owned()),
        Inspection::Invalid(e) => {
            assert_no_echo(name, &e.to_string(), data, &ids);
            None
        }
        _ => None,
    };
    let mut allowed = ids.clone();
    if let Some(h) = &hint {
        allowed.push(h);
    }
    let opened = match s.codec.decrypt(&s.ring, data, &[]) {
        Ok(o) => o,
        Err(e) => {
            assert_no_echo(name, &e.to_string(), data, &allowed);
            if let Err(w) = s.codec.decrypt(&s.wrong, data, &[]) {
                assert_no_echo(name, &w.to_string(), data, &allowed);
            }
            return;
        }
    };
    // A value that decrypts is one the census counts, under the key that
    // decrypted it when the value names one.
    assert!(
        !matches!(
            inspection,
            Inspection::NotThisFormat | Inspection::Invalid(_)
        ),
        "{name}: decrypts, but inspect says {inspection:?}"
    );
    if let Some(h) = &hint {
        assert_eq!(
            h,
            opened.key_id.as_str(),
            "{name}: inspect names another key"
        );
    }
    assert!(s.ring.contains(opened.key_id.as_str()));
    assert!(
        s.codec.decrypt(&s.wrong, data, &[]).is_err(),
        "{name}: decrypts under other key material"
    );
    // Sealed again under the primary, it decrypts to the same plaintext.
    match s.codec.reseal(&s.ring, &opened, &[]) {
        Ok(v) => {
            let back = s
                .codec
                .decrypt(&s.ring, &v, &[])
                .unwrap_or_else(|e| panic!("{name}: a resealed value does not decrypt: {e}"));
            assert_eq!(&back.plaintext[..], &opened.plaintext[..], "{name}: reseal");
            assert_eq!(&back.key_id, s.ring.primary_id(), "{name}: reseal key");
        }
        Err(FormatError::NotRotatable(_)) => {}
        Err(e) => panic!("{name}: a value that decrypts does not reseal: {e}"),
    }
    match s.codec.reencrypt(&s.ring, data, &[]) {
        Ok(Reencryption::AlreadyPrimary) => {
            assert_eq!(
                &opened.key_id,
                s.ring.primary_id(),
                "{name}: already primary?"
            );
        }
        Ok(Reencryption::Rotated(v)) => {
            let back = s
                .codec
                .decrypt(&s.ring, &v, &[])
                .unwrap_or_else(|e| panic!("{name}: a re-encrypted value does not decrypt: {e}"));
            assert_eq!(
                &back.plaintext[..],
                &opened.plaintext[..],
                "{name}: reencrypt"
            );
            assert_eq!(&back.key_id, s.ring.primary_id(), "{name}: reencrypt key");
        }
        Err(FormatError::NotRotatable(_)) => {}
        Err(e) => panic!("{name}: a value that decrypts does not re-encrypt: {e}"),
    }
}

/// cloak `v1.aesgcm256.<fingerprint>.<iv>.<ct>` values, with the vector
/// file's keys. Checks (every `codec_*` target): `inspect` names a valid key
/// id; a value that decrypts is not classified as foreign or damaged, is
/// under the key `inspect` names, does not decrypt under other key material,
/// reseals and re-encrypts to the same plaintext under the primary key;
/// errors do not echo the input.
pub fn codec_cloak(data: &[u8]) {
    check_codec(vectors!("cloak/aesgcm256.json"), data);
}

/// Fernet tokens, as `fernet` and as `django-fernet-fields` (HKDF keys).
pub fn codec_fernet(data: &[u8]) {
    check_codec(
        vectors!("fernet/fernet.json", "django-fernet-fields/hkdf.json"),
        data,
    );
}

/// `{"key_id":..,"nonce":..,"ciphertext":..}` values.
pub fn codec_json_envelope(data: &[u8]) {
    check_codec(vectors!("json-envelope/aes-gcm.json"), data);
}

/// Laravel Encrypter payloads, AES-256-CBC + HMAC and AES-256-GCM.
pub fn codec_laravel(data: &[u8]) {
    check_codec(
        vectors!("laravel/aes-256-cbc.json", "laravel/aes-256-gcm.json"),
        data,
    );
}

/// Lockbox values (field key derived for the vector's table and column).
pub fn codec_lockbox(data: &[u8]) {
    check_codec(vectors!("lockbox/aes-gcm.json"), data);
}

/// Node.js `hex(iv):hex(tag):hex(ct)` values, 12- and 16-byte IVs.
pub fn codec_node(data: &[u8]) {
    check_codec(vectors!("node-gcm/iv12.json", "node-gcm/iv16.json"), data);
}

/// Rails Active Record Encryption messages, SHA-1 and SHA-256 key
/// derivation (deterministic values may refuse to reseal: `NotRotatable`).
pub fn codec_rails(data: &[u8]) {
    check_codec(vectors!("rails/sha1.json", "rails/sha256.json"), data);
}

/// `<key id>:` + base64 values, XChaCha20-Poly1305 and XSalsa20-Poly1305.
pub fn codec_sodium(data: &[u8]) {
    check_codec(
        vectors!(
            "sodium-prefix/xchacha20poly1305.json",
            "sodium-prefix/xsalsa20poly1305.json"
        ),
        data,
    );
}

/// Vault / OpenBao transit `vault:vN:` values.
pub fn codec_vault(data: &[u8]) {
    check_codec(vectors!("vault-transit/aes256-gcm96.json"), data);
}

/// AWS KMS ciphertext blobs (`aws-kms`), raw and standard base64, keyless
/// and never decrypted locally. Checks: `inspect` never panics; a text
/// value is recognised exactly when its base64 decodes to a value the
/// binary codec recognises, and re-encodes to the same text; local
/// encrypt and decrypt always refuse, without echoing the input.
pub fn codec_aws_kms(data: &[u8]) {
    use keyturn_codecs::aws_kms::AwsKmsCodec;
    use keyturn_format::Encoding;
    let bin = AwsKmsCodec::new(Encoding::Binary);
    let text = AwsKmsCodec::new(Encoding::Text);
    let b = bin.inspect(data);
    assert!(
        matches!(
            b,
            Inspection::KeyUnknown | Inspection::NotThisFormat | Inspection::Invalid(_)
        ),
        "binary: {b:?}"
    );
    if let Inspection::KeyUnknown = text.inspect(data) {
        let blob = text.blob(data).expect("a recognised value decodes");
        assert_eq!(bin.inspect(&blob), Inspection::KeyUnknown);
        assert_eq!(text.store(&blob), data, "standard base64 is canonical");
    }
    let ring = Keyring::from_keys(
        vec![(
            KeyId::new("k1").expect("key id"),
            SecretKey::from_bytes(keyturn_format::Algorithm::Aes256Gcm, &[7; 32]).expect("key"),
        )],
        Some("k1"),
        &[],
    )
    .expect("ring");
    for c in [&bin, &text] {
        let e = c
            .decrypt(&ring, data, &[])
            .expect_err("aws-kms never decrypts locally");
        assert_no_echo("aws-kms decrypt", &e.to_string(), data, &[]);
        let e = c
            .encrypt(&ring, data, &[])
            .expect_err("aws-kms never encrypts locally");
        assert_no_echo("aws-kms encrypt", &e.to_string(), data, &[]);
    }
}

/// One version byte, then `nonce ‖ ct ‖ tag`.
pub fn codec_version_byte(data: &[u8]) {
    check_codec(vectors!("version-byte/aes-gcm.json"), data);
}

/// The multi-column envelope (key id, wrapped data key, IV, ciphertext
/// cells), AES-GCM and AES key wrap, read as the engine reads it: one packed
/// value per row (`keyturn_engine::multi::PackedCells`).
pub fn codec_envelope(data: &[u8]) {
    check_codec(
        vectors!("envelope/aes-gcm.json", "envelope/aes-kw.json"),
        data,
    );
}

/// `keyturn_codecs::detect`. Checks: never panics; a value that parses as
/// format v1 is always detected as `Native`.
pub fn codec_detect(data: &[u8]) {
    let d = detect(data);
    if keyturn_format::v1::parse(data).is_ok() {
        assert_eq!(d, keyturn_codecs::Detected::Native);
    }
}

/// Codec configs `codec_parse_key` picks from by its first byte. Rails is
/// left out: each of its keys costs 65,536 PBKDF2 rounds.
fn key_configs() -> &'static [CodecConfig] {
    static C: OnceLock<Vec<CodecConfig>> = OnceLock::new();
    C.get_or_init(|| {
        [
            r#"{"codec":"native"}"#,
            r#"{"codec":"fernet"}"#,
            r#"{"codec":"django-fernet-fields"}"#,
            r#"{"codec":"django-fernet-fields","use_hkdf":false}"#,
            r#"{"codec":"laravel"}"#,
            r#"{"codec":"lockbox","table":"users","column":"email_ciphertext"}"#,
            r#"{"codec":"vault-transit"}"#,
            r#"{"codec":"cloak"}"#,
            r#"{"codec":"node-gcm"}"#,
            r#"{"codec":"version-byte","versions":{"1":"k1"}}"#,
            r#"{"codec":"sodium-prefix"}"#,
            r#"{"codec":"sodium-prefix","algorithm":"xsalsa20poly1305"}"#,
            r#"{"codec":"json-envelope"}"#,
            r#"{"codec":"envelope"}"#,
            r#"{"codec":"split-columns"}"#,
        ]
        .iter()
        .map(|j| serde_json::from_str(j).expect("codec config"))
        .collect()
    })
}

/// `keyturn_codecs::parse_key`: the first byte picks a codec, the rest is
/// `<id>\n<key text>` (no newline: an empty id). Checks: a parsed key is
/// under the given id (Vault's `N` read as `vN`) and parses again to the
/// same key; errors never echo the key text (the id may be shown, and a
/// key spec's own id).
pub fn codec_parse_key(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let configs = key_configs();
    let config = &configs[usize::from(pick) % configs.len()];
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let (id, text) = rest.split_once('\n').unwrap_or(("", rest));
    match parse_key(config, id, text) {
        Ok((got, key)) => {
            if !id.is_empty() {
                assert!(
                    got.as_str() == id || got.as_str() == format!("v{id}"),
                    "parse_key: id {id:?} became {got}"
                );
            }
            let (again, key2) = parse_key(config, id, text).expect("parses twice");
            assert_eq!(again, got);
            assert_eq!(key.expose_bytes(), key2.expose_bytes());
            assert_eq!(key.kind(), key2.kind());
        }
        Err(e) => {
            let mut allowed = vec![id];
            // A key spec's errors name its id (keyturn-format's KeySpec).
            if let Some((spec_id, _)) = text.trim().split_once(':')
                && KeyId::new(spec_id).is_ok()
            {
                allowed.push(spec_id);
            }
            assert_no_echo("parse_key", &e.to_string(), text.as_bytes(), &allowed);
        }
    }
}
