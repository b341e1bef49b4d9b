//! Ciphertext format v1 (keyturn-format's `v1` module and its keyring).

use crate::check::assert_no_echo;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyturn_format::v1::{self, Parsed};
use keyturn_format::{
    Codec, Encoding, FormatError, Inspection, KeyId, KeySpec, KeyState, Keyring, NativeCodec,
    Reencrypted,
};
use std::sync::OnceLock;

/// The keys of the test vectors (testdata/v1), one per id: `k2` primary,
/// `k3` retired, the others decrypt-only.
const SPECS: &[&str] = &[
    "k2:aes256gcm:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",
    "k1:aes256gcm:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "K1:aes256gcm:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "k3:aes256gcm:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "x1:xchacha20poly1305:QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=",
    "Prod-2026.Q4_customer-pii.key-01:xchacha20poly1305:YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8=",
];

/// The contexts the vectors use.
const CONTEXTS: &[&[&[u8]]] = &[&[], &[b"users", b"email", b"42"]];

struct Rings {
    ring: Keyring,
    /// Same ids and states, other key material.
    wrong: Keyring,
}

fn rings() -> &'static Rings {
    static R: OnceLock<Rings> = OnceLock::new();
    R.get_or_init(|| {
        let build = |flip: u8| {
            let mut b = Keyring::builder();
            for s in SPECS {
                let spec = KeySpec::parse(s).expect("vector key spec");
                let state = match spec.id.as_str() {
                    "k2" => KeyState::Primary,
                    "k3" => KeyState::Retired,
                    _ => KeyState::DecryptOnly,
                };
                let bytes: Vec<u8> = spec.key.expose_bytes().iter().map(|b| b ^ flip).collect();
                let key = keyturn_format::SecretKey::from_bytes(spec.key.algorithm(), &bytes)
                    .expect("32-byte key");
                b = b.add(spec.id, key, state);
            }
            b.build().expect("vector ring")
        };
        Rings {
            ring: build(0),
            wrong: build(0xA5),
        }
    })
}

/// The binary encoding of a parsed value.
fn binary_of(p: &Parsed<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&v1::MAGIC);
    out.push(v1::VERSION);
    out.push(p.header.algorithm.byte());
    out.push(p.header.key_id.len() as u8);
    out.extend_from_slice(p.header.key_id.as_bytes());
    out.extend_from_slice(&body_of(p));
    out
}

/// `ciphertext length ‖ nonce ‖ ciphertext ‖ tag`.
fn body_of(p: &Parsed<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(p.plaintext_len() as u32).to_be_bytes());
    body.extend_from_slice(p.nonce());
    body.extend_from_slice(p.ciphertext());
    body.extend_from_slice(p.tag());
    body
}

/// The text encoding of a parsed value.
fn text_of(p: &Parsed<'_>) -> Vec<u8> {
    format!(
        "{}{}:{}:{}",
        v1::TEXT_MARKER,
        p.header.key_id,
        p.header.algorithm.text_token() as char,
        URL_SAFE_NO_PAD.encode(body_of(p))
    )
    .into_bytes()
}

fn same_value(a: &Parsed<'_>, b: &Parsed<'_>) -> bool {
    a.header.algorithm == b.header.algorithm
        && a.header.key_id == b.header.key_id
        && a.nonce() == b.nonce()
        && a.ciphertext() == b.ciphertext()
        && a.tag() == b.tag()
}

fn check(data: &[u8]) {
    let peeked = v1::peek(data);
    let parsed = v1::parse(data);
    let key_id = peeked.as_ref().map(|h| h.key_id.to_owned()).ok();
    let allowed: Vec<&str> = key_id.iter().map(String::as_str).collect();
    match &parsed {
        Ok(p) => {
            // peek reads the same header parse does.
            assert_eq!(
                peeked.as_ref().ok(),
                Some(&p.header),
                "peek and parse disagree"
            );
            KeyId::new(p.header.key_id).expect("a parsed key id is valid");
            // Both encodings are canonical: the value re-encodes to its bytes.
            let again = match p.header.encoding {
                Encoding::Binary => binary_of(p),
                Encoding::Text => text_of(p),
            };
            assert_eq!(again, data, "re-encoding differs from the input");
            // The same value in the other encoding parses to the same fields.
            let other = match p.header.encoding {
                Encoding::Binary => text_of(p),
                Encoding::Text => binary_of(p),
            };
            let q = v1::parse(&other).expect("the other encoding parses");
            assert!(same_value(p, &q), "the other encoding differs");
            assert_ne!(q.header.encoding, p.header.encoding);
        }
        Err(e) => {
            // parse is peek followed by the body checks.
            if let Err(pe) = &peeked {
                assert_eq!(pe, e, "peek and parse fail differently");
            }
            assert_no_echo("v1::parse", &e.to_string(), data, &allowed);
        }
    }
    // The census' view: a value whose header reads is counted under its key.
    let native = NativeCodec {
        encoding: Encoding::Text,
    };
    match (native.inspect(data), &peeked) {
        (Inspection::UnderKey(id), Ok(h)) => assert_eq!(id, h.key_id),
        (Inspection::UnderKey(_), Err(e)) => panic!("inspect reads a key id, peek fails: {e}"),
        (_, Ok(_)) => panic!("peek reads a header, inspect does not"),
        (Inspection::Invalid(e), Err(pe)) => assert_eq!(&e, pe),
        _ => {}
    }
    let r = rings();
    for context in CONTEXTS {
        decrypt(r, data, context, &parsed, &allowed);
    }
}

fn decrypt(
    r: &Rings,
    data: &[u8],
    context: &[&[u8]],
    parsed: &Result<Parsed<'_>, FormatError>,
    allowed: &[&str],
) {
    let opened = r.ring.decrypt(data, context);
    let reenc = r.ring.reencrypt(data, context);
    let under_primary = parsed
        .as_ref()
        .is_ok_and(|p| p.header.key_id == r.ring.primary_id().as_str());
    match (&opened, &reenc) {
        (Ok(pt), Ok(Reencrypted::Rotated(new))) => {
            assert!(!under_primary);
            let back = r
                .ring
                .decrypt(new, context)
                .expect("a re-encrypted value decrypts");
            assert_eq!(&back[..], &pt[..], "re-encryption changed the plaintext");
            let h = v1::peek(new).expect("a re-encrypted value parses");
            assert_eq!(h.key_id, r.ring.primary_id().as_str());
            assert_eq!(
                Some(h.encoding),
                parsed.as_ref().ok().map(|p| p.header.encoding)
            );
        }
        (Ok(_), Ok(Reencrypted::AlreadyPrimary)) => assert!(under_primary),
        (_, Ok(Reencrypted::AlreadyPrimary)) if under_primary => {}
        (Err(a), Err(b)) => {
            // The stack-buffer parse of the re-encryption path and the heap
            // parse of decrypt fail the same way.
            assert_eq!(a, b, "decrypt and reencrypt fail differently");
        }
        (a, b) => panic!(
            "decrypt and reencrypt disagree: {:?} / {:?}",
            a.as_ref().map(|p| p.len()),
            b.as_ref().map(|_| ())
        ),
    }
    match &opened {
        Ok(pt) => {
            // Sealing the plaintext again round-trips, in both encodings.
            for enc in [Encoding::Binary, Encoding::Text] {
                let v = r.ring.encrypt(pt, context, enc).expect("encrypt");
                let back = r.ring.decrypt(&v, context).expect("decrypt own value");
                assert_eq!(&back[..], &pt[..]);
            }
            let wrong = r.wrong.decrypt(data, context);
            assert!(wrong.is_err(), "a ring with other key material decrypts");
        }
        Err(e) => assert_no_echo("Keyring::decrypt", &e.to_string(), data, allowed),
    }
}

/// Parses (and with the test-vector keys, decrypts and re-encrypts) a value
/// in the v1 text encoding: same checks as [`v1_binary`], seeded with text
/// values.
pub fn v1_text(data: &[u8]) {
    check(data);
}

/// Parses (and with the test-vector keys, decrypts and re-encrypts) a value
/// in the v1 binary encoding. Checks: `peek` and `parse` agree; a value that
/// parses re-encodes to the same bytes and, in the other encoding, to the
/// same fields; the census' `inspect` agrees with `peek`; `decrypt` and the
/// re-encryption path (stack-buffer parse) agree; a value that decrypts
/// re-encrypts under the primary key to the same plaintext and does not
/// decrypt under other key material; errors do not echo the input.
pub fn v1_binary(data: &[u8]) {
    check(data);
}
