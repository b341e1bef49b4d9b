//! Generates the format v1 test vectors in `testdata/v1/` (one JSON file per
//! case; layout documented in docs/FORMAT.md, "Test vectors").
//!
//! Regenerate after a deliberate change:
//!
//!     cargo test -p keyturn-format --test gen_vectors -- --ignored
//!
//! Output is deterministic: fixed keys, fixed nonces (through the test-only
//! `v1::seal_with_nonce`). `vectors_are_current` (not ignored) checks that
//! the files on disk are exactly what this generator writes.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use keyturn_format::{Algorithm, Encoding, KeyId, SecretKey, v1};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/v1")
}

#[derive(Clone, Copy)]
struct Key {
    id: &'static str,
    alg: Algorithm,
    /// The 32 key bytes are `first, first+1, …, first+31`.
    first: u8,
}

const K1: Key = Key {
    id: "k1",
    alg: Algorithm::Aes256Gcm,
    first: 0x00,
};
const K2: Key = Key {
    id: "k2",
    alg: Algorithm::Aes256Gcm,
    first: 0x20,
};
const X1: Key = Key {
    id: "x1",
    alg: Algorithm::XChaCha20Poly1305,
    first: 0x40,
};
/// Same material as k1, under an id that differs from "k1" in one bit.
const K1_UPPER: Key = Key {
    id: "K1",
    alg: Algorithm::Aes256Gcm,
    first: 0x00,
};
/// Same material as k1, under another id.
const K3_ALIAS: Key = Key {
    id: "k3",
    alg: Algorithm::Aes256Gcm,
    first: 0x00,
};
/// A 32-character id using every kind of allowed character.
const LONG: Key = Key {
    id: "Prod-2026.Q4_customer-pii.key-01",
    alg: Algorithm::XChaCha20Poly1305,
    first: 0x60,
};
/// x1's material, but declared as an AES key.
const X1_AS_AES: Key = Key {
    id: "x1",
    alg: Algorithm::Aes256Gcm,
    first: 0x40,
};

impl Key {
    fn bytes(self) -> [u8; 32] {
        std::array::from_fn(|i| self.first.wrapping_add(i as u8))
    }
    fn secret(self) -> SecretKey {
        SecretKey::from_bytes(self.alg, &self.bytes()).unwrap()
    }
    fn spec(self) -> String {
        format!(
            "{}:{}:{}",
            self.id,
            self.alg.name(),
            STANDARD.encode(self.bytes())
        )
    }
}

#[derive(Serialize, Clone)]
struct Repeat {
    byte_hex: String,
    count: usize,
}

#[derive(Serialize, Clone)]
struct Vector {
    description: String,
    keys: Vec<String>,
    primary: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    retired: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext_repeat: Option<Repeat>,
    context: Vec<String>,
    encoding: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ciphertext_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ciphertext: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_field: Option<&'static str>,
}

/// A value sealed with a fixed nonce, from which cases are derived.
#[derive(Clone)]
struct Sealed {
    keys: Vec<Key>,
    primary: Key,
    under: Key,
    plaintext: Vec<u8>,
    repeat: Option<Repeat>,
    context: Vec<Vec<u8>>,
    encoding: Encoding,
    nonce: Vec<u8>,
    stored: Vec<u8>,
}

const CTX: [&[u8]; 3] = [b"users", b"email", b"42"];

fn nonce_for(alg: Algorithm, seed: u8) -> Vec<u8> {
    (0..alg.nonce_len())
        .map(|i| seed.wrapping_mul(16).wrapping_add(i as u8))
        .collect()
}

fn seal(
    under: Key,
    keys: &[Key],
    plaintext: &[u8],
    context: &[&[u8]],
    encoding: Encoding,
    seed: u8,
) -> Sealed {
    let nonce = nonce_for(under.alg, seed);
    let stored = v1::seal_with_nonce(
        &under.secret(),
        &KeyId::new(under.id).unwrap(),
        plaintext,
        context,
        encoding,
        &nonce,
    )
    .unwrap();
    Sealed {
        keys: keys.to_vec(),
        primary: keys[0],
        under,
        plaintext: plaintext.to_vec(),
        repeat: None,
        context: context.iter().map(|p| p.to_vec()).collect(),
        encoding,
        nonce,
        stored,
    }
}

impl Sealed {
    fn vector(&self, description: &str, stored: &[u8]) -> Vector {
        let text = self.encoding == Encoding::Text;
        Vector {
            description: description.to_owned(),
            keys: self.keys.iter().map(|k| k.spec()).collect(),
            primary: self.primary.id.to_owned(),
            retired: vec![],
            plaintext_hex: self.repeat.is_none().then(|| hex::encode(&self.plaintext)),
            plaintext_repeat: self.repeat.clone(),
            context: self.context.iter().map(hex::encode).collect(),
            encoding: self.encoding.name(),
            ciphertext_hex: (!text).then(|| hex::encode(stored)),
            ciphertext: text.then(|| String::from_utf8(stored.to_vec()).unwrap()),
            nonce_hex: None,
            expected: None,
            expected_error: None,
            expected_field: None,
        }
    }

    fn ok(&self, description: &str) -> Vector {
        Vector {
            nonce_hex: Some(hex::encode(&self.nonce)),
            expected: Some("ok"),
            ..self.vector(description, &self.stored)
        }
    }

    fn err(&self, description: &str, stored: &[u8], kind: &'static str) -> Vector {
        Vector {
            expected_error: Some(kind),
            ..self.vector(description, stored)
        }
    }

    fn truncated(&self, description: &str, stored: &[u8], field: &'static str) -> Vector {
        Vector {
            expected_field: Some(field),
            ..self.err(description, stored, "truncated")
        }
    }

    /// Offsets of a binary value's fields: (start of key id, start of the
    /// ciphertext length, start of the nonce, start of the ciphertext,
    /// start of the tag).
    fn offsets(&self) -> [usize; 5] {
        let id = 5;
        let len = id + self.under.id.len();
        let nonce = len + 4;
        let ct = nonce + self.under.alg.nonce_len();
        let tag = ct + self.plaintext.len();
        [id, len, nonce, ct, tag]
    }

    /// The binary body (length ‖ nonce ‖ ct ‖ tag) of a text value.
    fn text_body(&self) -> Vec<u8> {
        let s = std::str::from_utf8(&self.stored).unwrap();
        let at = s.rfind(':').unwrap() + 1;
        URL_SAFE_NO_PAD.decode(&s[at..]).unwrap()
    }

    fn text_prefix(&self) -> String {
        let s = std::str::from_utf8(&self.stored).unwrap();
        s[..s.rfind(':').unwrap() + 1].to_owned()
    }

    /// A text value with the same prefix and another (re-encoded) body.
    fn with_body(&self, body: &[u8]) -> Vec<u8> {
        format!("{}{}", self.text_prefix(), URL_SAFE_NO_PAD.encode(body)).into_bytes()
    }
}

fn flip(stored: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut v = stored.to_vec();
    v[at] ^= mask;
    v
}

fn cases() -> BTreeMap<String, Vector> {
    let mut out = BTreeMap::new();
    let mut add = |name: &str, v: Vector| {
        assert!(
            out.insert(format!("{name}.json"), v).is_none(),
            "duplicate {name}"
        );
    };
    use Encoding::{Binary, Text};

    // ---------------------------------------------------------------- valid
    let hello = b"hello, world";
    let aes_bin = seal(K1, &[K1], hello, &[], Binary, 1);
    add(
        "ok-aes256gcm-binary-no-context",
        aes_bin.ok("AES-256-GCM, binary encoding, no context."),
    );
    let aes_txt = seal(K1, &[K1], b"alice@example.com", &CTX, Text, 2);
    add(
        "ok-aes256gcm-text-context",
        aes_txt.ok(
            "AES-256-GCM, text encoding, context [users, email, 42] (table, column, primary key).",
        ),
    );
    let x_bin = seal(X1, &[X1], b"alice@example.com", &CTX, Binary, 3);
    add(
        "ok-xchacha20poly1305-binary-context",
        x_bin.ok("XChaCha20-Poly1305, binary encoding, context [users, email, 42]."),
    );
    let x_txt = seal(X1, &[X1], hello, &[], Text, 4);
    add(
        "ok-xchacha20poly1305-text-no-context",
        x_txt.ok("XChaCha20-Poly1305, text encoding, no context."),
    );
    add(
        "ok-aes256gcm-binary-empty-plaintext",
        seal(K1, &[K1], b"", &CTX, Binary, 5)
            .ok("Empty plaintext: the ciphertext length is 0 and only the tag follows the nonce."),
    );
    add(
        "ok-xchacha20poly1305-text-empty-plaintext",
        seal(X1, &[X1], b"", &[], Text, 6).ok("Empty plaintext, text encoding, no context."),
    );
    let mut big = seal(K1, &[K1], &vec![0x61u8; 1 << 20], &CTX, Text, 7);
    big.repeat = Some(Repeat {
        byte_hex: "61".into(),
        count: 1 << 20,
    });
    add(
        "ok-aes256gcm-text-1mib",
        big.ok("1 MiB plaintext (0x61 repeated), text encoding, context [users, email, 42]."),
    );
    add(
        "ok-xchacha20poly1305-binary-1mib",
        {
            let mut v = seal(X1, &[X1], &vec![0x00u8; 1 << 20], &[], Binary, 8);
            v.repeat = Some(Repeat {
                byte_hex: "00".into(),
                count: 1 << 20,
            });
            v
        }
        .ok("1 MiB plaintext (zero bytes), binary encoding, no context."),
    );
    add(
        "ok-xchacha20poly1305-binary-32-char-key-id",
        seal(LONG, &[LONG], hello, &[b"t"], Binary, 9)
            .ok("The longest key id (32 characters, using letters, digits, '.', '_' and '-')."),
    );
    add(
        "ok-aes256gcm-text-32-char-key-id",
        seal(
            Key {
                alg: Algorithm::Aes256Gcm,
                ..LONG
            },
            &[Key {
                alg: Algorithm::Aes256Gcm,
                ..LONG
            }],
            hello,
            &[],
            Text,
            10,
        )
        .ok("The longest key id in the text encoding."),
    );
    add(
        "ok-xchacha20poly1305-binary-odd-context",
        seal(
            X1,
            &[X1],
            &[0x00, 0xff, 0x80, 0x0a],
            &[b"", &[0x00, 0xff], b"a:b"],
            Binary,
            11,
        )
        .ok("Binary plaintext; context with an empty part, a non-UTF-8 part and a part containing ':'."),
    );
    {
        // A decrypt-only key (not the primary) decrypts.
        let mut v = seal(K1, &[K2, K1], hello, &CTX, Binary, 12);
        v.primary = K2;
        add(
            "ok-aes256gcm-binary-decrypt-only-key",
            v.ok("Value under k1 read with a ring whose primary is k2: decrypt-only keys decrypt."),
        );
    }

    // --------------------------------------------------- authentication
    let [id_at, len_at, nonce_at, ct_at, tag_at] = aes_bin.offsets();
    add(
        "err-aes256gcm-binary-tag-bit-flipped",
        aes_bin.err(
            "Lowest bit of the last tag byte flipped.",
            &flip(&aes_bin.stored, aes_bin.stored.len() - 1, 0x01),
            "authentication_failed",
        ),
    );
    add(
        "err-aes256gcm-binary-ciphertext-bit-flipped",
        aes_bin.err(
            "Highest bit of the first ciphertext byte flipped.",
            &flip(&aes_bin.stored, ct_at, 0x80),
            "authentication_failed",
        ),
    );
    add(
        "err-aes256gcm-binary-nonce-bit-flipped",
        aes_bin.err(
            "One bit of the nonce flipped.",
            &flip(&aes_bin.stored, nonce_at + 3, 0x10),
            "authentication_failed",
        ),
    );
    {
        let mut v = aes_bin.clone();
        v.keys = vec![K1, K1_UPPER];
        add(
            "err-aes256gcm-binary-header-bit-flipped",
            v.err(
                "Header bit flipped: key id 'k1' becomes 'K1' (0x6b ^ 0x20). The ring holds K1 with k1's key \
                 material, so this fails only because the header is authenticated.",
                &flip(&aes_bin.stored, id_at, 0x20),
                "authentication_failed",
            ),
        );
    }
    {
        let body = x_txt.text_body();
        let mut b = body.clone();
        let last = b.len() - 1;
        b[last] ^= 0x01;
        add(
            "err-xchacha20poly1305-text-tag-bit-flipped",
            x_txt.err(
                "Text encoding: lowest bit of the last tag byte flipped (body re-encoded).",
                &x_txt.with_body(&b),
                "authentication_failed",
            ),
        );
    }
    {
        let mut v = aes_txt.clone();
        v.keys = vec![K1, K3_ALIAS];
        let s = String::from_utf8(aes_txt.stored.clone()).unwrap();
        add(
            "err-aes256gcm-text-key-id-changed",
            v.err(
                "Key id changed from k1 to k3 in the text prefix. The ring holds k3 with k1's key material: \
                 the key id is bound into the associated data.",
                s.replacen("kt1:k1:", "kt1:k3:", 1).as_bytes(),
                "authentication_failed",
            ),
        );
    }
    {
        let mut v = aes_txt.clone();
        v.context = vec![b"users".to_vec(), b"email".to_vec(), b"43".to_vec()];
        add(
            "err-aes256gcm-text-wrong-context",
            v.err(
                "Sealed with context [users, email, 42], opened with [users, email, 43]: a value copied to another row.",
                &aes_txt.stored,
                "authentication_failed",
            ),
        );
    }
    {
        let mut v = x_bin.clone();
        v.context = vec![b"user".to_vec(), b"semail".to_vec(), b"42".to_vec()];
        add(
            "err-xchacha20poly1305-binary-context-parts-shifted",
            v.err(
                "Sealed with [users, email, 42], opened with [user, semail, 42]: same concatenated bytes, \
                 different parts. Parts are length-prefixed, so this fails.",
                &x_bin.stored,
                "authentication_failed",
            ),
        );
    }
    {
        let mut v = x_bin.clone();
        v.context = vec![];
        add(
            "err-xchacha20poly1305-binary-context-missing",
            v.err(
                "Sealed with a context, opened with none.",
                &x_bin.stored,
                "authentication_failed",
            ),
        );
    }
    {
        let mut v = aes_bin.clone();
        let other = Key { first: 0x80, ..K1 };
        v.keys = vec![other];
        v.primary = other;
        add(
            "err-aes256gcm-binary-wrong-key-material",
            v.err(
                "The ring's k1 has other key material than the one that sealed the value.",
                &aes_bin.stored,
                "authentication_failed",
            ),
        );
    }

    // ------------------------------------------------------ key lookup
    {
        let mut v = aes_bin.clone();
        v.keys = vec![K2];
        v.primary = K2;
        add(
            "err-aes256gcm-binary-unknown-key",
            v.err(
                "Value under k1; the ring holds only k2.",
                &aes_bin.stored,
                "unknown_key",
            ),
        );
        let mut t = x_txt.clone();
        t.keys = vec![K2];
        t.primary = K2;
        add(
            "err-xchacha20poly1305-text-unknown-key",
            t.err(
                "Text value under x1; the ring holds only k2.",
                &x_txt.stored,
                "unknown_key",
            ),
        );
    }
    {
        let mut v = aes_bin.clone();
        v.keys = vec![K2, K1];
        v.primary = K2;
        let mut vec = v.err(
            "Value under k1, which the ring lists as retired: refused before any decryption.",
            &aes_bin.stored,
            "key_retired",
        );
        vec.retired = vec!["k1".into()];
        add("err-aes256gcm-binary-key-retired", vec);
    }
    {
        let mut v = x_bin.clone();
        v.keys = vec![X1_AS_AES];
        v.primary = X1_AS_AES;
        add(
            "err-binary-algorithm-mismatch",
            v.err(
                "The value says XChaCha20-Poly1305, but the ring's x1 is an aes256gcm key.",
                &x_bin.stored,
                "algorithm_mismatch",
            ),
        );
    }

    // ------------------------------------------------- binary structure
    let s = &aes_bin.stored;
    add(
        "err-binary-empty",
        aes_bin.err("Empty input.", b"", "empty"),
    );
    add(
        "err-text-empty",
        aes_txt.err("Empty input (an empty string).", b"", "empty"),
    );
    for (name, end, field, what) in [
        ("magic", 1, "magic", "only the first magic byte"),
        ("version", 2, "version", "the magic, no version"),
        (
            "algorithm",
            3,
            "algorithm",
            "magic and version, no algorithm",
        ),
        ("key-id-length", 4, "key id length", "no key id length"),
        ("key-id", id_at + 1, "key id", "one byte of a 2-byte key id"),
        (
            "ciphertext-length",
            len_at + 2,
            "ciphertext length",
            "half of the ciphertext length",
        ),
        ("nonce", nonce_at + 5, "nonce", "5 of 12 nonce bytes"),
        (
            "ciphertext",
            ct_at + 3,
            "ciphertext",
            "3 of 12 ciphertext bytes",
        ),
        ("tag", tag_at + 15, "tag", "15 of 16 tag bytes"),
    ] {
        add(
            &format!("err-binary-truncated-{name}"),
            aes_bin.truncated(
                &format!("Binary value cut short: {what}."),
                &s[..end],
                field,
            ),
        );
    }
    {
        let mut v = s.clone();
        v.push(0x00);
        add(
            "err-binary-trailing-bytes",
            aes_bin.err("One zero byte after the tag.", &v, "trailing_bytes"),
        );
    }
    add(
        "err-binary-unknown-version",
        aes_bin.err(
            "Version byte 0x02: written by a newer keyturn.",
            &flip(s, 2, 0x03),
            "unknown_version",
        ),
    );
    add(
        "err-binary-unknown-algorithm",
        aes_bin.err(
            "Algorithm byte 0x03.",
            &flip(s, 3, 0x02),
            "unknown_algorithm",
        ),
    );
    add(
        "err-binary-unknown-format",
        aes_bin.err(
            "Second magic byte changed (0x4b to 0x4c): not a keyturn value.",
            &flip(s, 1, 0x07),
            "unknown_format",
        ),
    );
    {
        let mut v = s[..4].to_vec();
        v.push(33);
        v.extend_from_slice(&[b'k'; 33]);
        v.extend_from_slice(&s[len_at..]);
        add(
            "err-binary-key-id-too-long",
            aes_bin.err(
                "Key id length 33 (the limit is 32), followed by 33 bytes of id.",
                &v,
                "invalid_key_id",
            ),
        );
        let mut z = s[..4].to_vec();
        z.push(0);
        z.extend_from_slice(&s[len_at..]);
        add(
            "err-binary-key-id-empty",
            aes_bin.err("Key id length 0.", &z, "invalid_key_id"),
        );
        add(
            "err-binary-key-id-bad-character",
            aes_bin.err(
                "Key id 'k:' (':' is not allowed).",
                &{
                    let mut w = s.clone();
                    w[id_at + 1] = b':';
                    w
                },
                "invalid_key_id",
            ),
        );
    }
    {
        let mut v = s.clone();
        v[len_at..len_at + 4].copy_from_slice(&((64u32 << 20) + 1).to_be_bytes());
        add(
            "err-binary-too-long",
            aes_bin.err(
                "Ciphertext length field 64 MiB + 1: over the limit, refused before reading further.",
                &v,
                "too_long",
            ),
        );
    }
    {
        let mut v = s.clone();
        v[len_at + 3] += 1;
        add(
            "err-binary-length-field-too-big",
            aes_bin.truncated(
                "Ciphertext length field one more than the real length: the tag comes up one byte short.",
                &v,
                "tag",
            ),
        );
    }

    // --------------------------------------------------- text structure
    let t = &aes_txt;
    let ts = String::from_utf8(t.stored.clone()).unwrap();
    let body = t.text_body();
    let ct_len = t.plaintext.len();
    for (name, stored, field, what) in [
        ("magic", "k".to_owned(), "magic", "'k'"),
        ("version", "kt1".to_owned(), "version", "'kt1' without ':'"),
        (
            "key-id",
            "kt1:k1".to_owned(),
            "key id",
            "no ':' after the key id",
        ),
        (
            "algorithm",
            "kt1:k1:a".to_owned(),
            "algorithm",
            "no ':' after the algorithm",
        ),
        (
            "ciphertext-length",
            "kt1:k1:a:".to_owned(),
            "ciphertext length",
            "prefix only, empty body",
        ),
        (
            "nonce",
            String::from_utf8(t.with_body(&body[..4 + 6])).unwrap(),
            "nonce",
            "body holds the length and 6 nonce bytes",
        ),
        (
            "ciphertext",
            String::from_utf8(t.with_body(&body[..16 + ct_len / 2])).unwrap(),
            "ciphertext",
            "body cut in the middle of the ciphertext",
        ),
        (
            "tag",
            String::from_utf8(t.with_body(&body[..body.len() - 1])).unwrap(),
            "tag",
            "body one byte short",
        ),
    ] {
        add(
            &format!("err-text-truncated-{name}"),
            t.truncated(
                &format!(
                    "Text value cut short: {what} (bodies re-encoded as canonical base64url)."
                ),
                stored.as_bytes(),
                field,
            ),
        );
    }
    {
        let mut b = body.clone();
        b.push(0);
        add(
            "err-text-trailing-bytes",
            t.err(
                "Body with one zero byte after the tag (re-encoded).",
                &t.with_body(&b),
                "trailing_bytes",
            ),
        );
    }
    add(
        "err-text-unknown-version",
        t.err(
            "'kt2:' prefix: written by a newer keyturn.",
            ts.replacen("kt1:", "kt2:", 1).as_bytes(),
            "unknown_version",
        ),
    );
    add(
        "err-text-unknown-algorithm",
        t.err(
            "Algorithm token 'z'.",
            ts.replacen(":a:", ":z:", 1).as_bytes(),
            "unknown_algorithm",
        ),
    );
    add(
        "err-text-unknown-format",
        t.err(
            "A plaintext that happens to start with 'k'.",
            b"kitten",
            "unknown_format",
        ),
    );
    {
        let mut b = body.clone();
        b[..4].copy_from_slice(&((64u32 << 20) + 1).to_be_bytes());
        add(
            "err-text-too-long",
            t.err(
                "Text body whose ciphertext length field says 64 MiB + 1: over the limit, refused before reading further (§7 step 6).",
                &t.with_body(&b),
                "too_long",
            ),
        );
    }
    add(
        "err-text-key-id-too-long",
        t.err(
            "Key id of 33 characters.",
            ts.replacen("kt1:k1:", &format!("kt1:{}:", "k".repeat(33)), 1)
                .as_bytes(),
            "invalid_key_id",
        ),
    );
    add(
        "err-text-key-id-bad-character",
        t.err(
            "Key id '.k1' (must start with a letter or digit).",
            ts.replacen("kt1:k1:", "kt1:.k1:", 1).as_bytes(),
            "invalid_key_id",
        ),
    );
    {
        let b64 = &ts[t.text_prefix().len()..];
        assert_eq!(
            b64.len() % 4,
            2,
            "pick a body whose last group has 2 characters"
        );
        let prefix = t.text_prefix();
        add(
            "err-text-padding",
            t.err(
                "Body with '==' padding: the encoding is unpadded.",
                format!("{ts}==").as_bytes(),
                "bad_text_encoding",
            ),
        );
        let mut std_alphabet = b64.as_bytes().to_vec();
        std_alphabet[20] = b'+';
        add(
            "err-text-standard-alphabet",
            t.err(
                "A '+' (standard base64 alphabet; base64url uses '-') in the body.",
                format!("{prefix}{}", String::from_utf8(std_alphabet).unwrap()).as_bytes(),
                "bad_text_encoding",
            ),
        );
        // The last character of a 2-character group carries 4 unused bits.
        let mut chars: Vec<u8> = b64.bytes().collect();
        let last = chars.len() - 1;
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = ALPHABET.iter().position(|&c| c == chars[last]).unwrap();
        assert_eq!(idx & 0x0f, 0);
        chars[last] = ALPHABET[idx | 0x01];
        add(
            "err-text-non-canonical-trailing-bits",
            t.err(
                "Last base64 character changed so that its unused low bits are not zero: decodes to the \
                 same bytes in lenient decoders, rejected here.",
                format!("{prefix}{}", String::from_utf8(chars).unwrap()).as_bytes(),
                "bad_text_encoding",
            ),
        );
        add(
            "err-text-dangling-character",
            t.err(
                "Body length 1 mod 4: no whole byte in the last group.",
                format!("{ts}AAA").as_bytes(),
                "bad_text_encoding",
            ),
        );
        add(
            "err-text-trailing-newline",
            t.err(
                "Trailing newline (e.g. pasted from a shell).",
                format!("{ts}\n").as_bytes(),
                "bad_text_encoding",
            ),
        );
    }
    out
}

fn render(v: &Vector) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap();
    s.push('\n');
    s
}

#[test]
#[ignore = "writes testdata/v1; run explicitly to regenerate"]
fn write_vectors() {
    let dir = dir();
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            std::fs::remove_file(p).unwrap();
        }
    }
    for (name, v) in cases() {
        std::fs::write(dir.join(name), render(&v)).unwrap();
    }
}

#[test]
fn vectors_are_current() {
    let cases = cases();
    let dir = dir();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let expected: Vec<String> = cases.keys().cloned().collect();
    assert_eq!(
        on_disk, expected,
        "testdata/v1 differs from the generator: run `cargo test -p keyturn-format --test gen_vectors -- --ignored`"
    );
    for (name, v) in &cases {
        let disk = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(
            disk == render(v),
            "{name} differs from the generator's output: regenerate"
        );
    }
}
