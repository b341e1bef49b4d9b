//! No error message and no `Debug` output may reveal key material: every
//! error we can provoke, formatted with `{}` and `{:?}`, and the `Debug` of
//! every type that holds a key, is searched for each key's bytes as lower-
//! and uppercase hex, standard and url-safe base64 (at every byte alignment),
//! and for any sizable window of those.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use keyturn_format::{
    Algorithm, Codec, Encoding, KeyId, KeySpec, KeyState, Keyring, NativeCodec, SecretKey, v1,
};

/// Fixed, irregular key material (SHA-256 of a label), so that its encodings
/// contain every kind of character.
fn material(label: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, label.as_bytes());
    d.as_ref().try_into().unwrap()
}

/// Every string that would betray `key`: full encodings and their windows.
fn needles(key: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let hex_lower = hex::encode(key);
    let hex_upper = hex_lower.to_uppercase();
    for h in [&hex_lower, &hex_upper] {
        out.push(h.clone());
        // Any 8 bytes of the key, as hex.
        for w in h.as_bytes().windows(16).step_by(2) {
            out.push(String::from_utf8(w.to_vec()).unwrap());
        }
    }
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        for shift in 0..3 {
            // The key at each alignment inside a longer base64 string.
            let mut shifted = vec![0xA5u8; shift];
            shifted.extend_from_slice(key);
            let enc = engine.encode(&shifted);
            let skip = if shift == 0 { 0 } else { 4 };
            let core = &enc[skip..enc.len() - 4];
            if shift == 0 {
                out.push(enc.clone());
            }
            for w in core.as_bytes().windows(12) {
                out.push(String::from_utf8(w.to_vec()).unwrap());
            }
        }
    }
    out
}

/// What a decryption case is called, the stored value, its context.
type Case<'a> = (String, Vec<u8>, Vec<&'a [u8]>);

struct Keys {
    specs: Vec<String>,
    raw: Vec<[u8; 32]>,
}

fn keys() -> Keys {
    let mut specs = Vec::new();
    let mut raw = Vec::new();
    for (id, alg) in [
        ("k1", "aes256gcm"),
        ("k2", "aes256gcm"),
        ("x1", "xchacha20poly1305"),
        ("old", "aes256gcm"),
        ("nope", "aes256gcm"),
    ] {
        let m = material(id);
        specs.push(format!("{id}:{alg}:{}", STANDARD.encode(m)));
        raw.push(m);
    }
    Keys { specs, raw }
}

fn assert_clean(keys: &Keys, what: &str, text: &str) {
    for (i, key) in keys.raw.iter().enumerate() {
        for n in needles(key) {
            assert!(
                !text.contains(&n),
                "{what} reveals key #{i} ({n:?} found in {text:?})"
            );
        }
        // The raw bytes, should anything print them as chars.
        for w in key.windows(6) {
            assert!(
                !text.as_bytes().windows(6).any(|t| t == w),
                "{what} holds 6 raw key bytes"
            );
        }
    }
}

#[test]
fn errors_and_debug_output_never_reveal_key_material() {
    let keys = keys();
    let mut outputs: Vec<(String, String)> = Vec::new();
    fn record(outputs: &mut Vec<(String, String)>, what: &str, e: &keyturn_format::FormatError) {
        outputs.push((format!("{what} (Display)"), e.to_string()));
        outputs.push((format!("{what} (Debug)"), format!("{e:?}")));
        outputs.push((format!("{what} (alternate Debug)"), format!("{e:#?}")));
    }
    macro_rules! record_err {
        ($what:expr, $e:expr $(,)?) => {
            record(&mut outputs, $what, $e)
        };
    }

    // ---- key specs gone wrong, each built around real key material.
    for (i, spec) in keys.specs.iter().enumerate() {
        let (id, rest) = spec.split_once(':').unwrap();
        let (alg, b64) = rest.split_once(':').unwrap();
        let short = STANDARD.encode(&keys.raw[i][..31]);
        let long = STANDARD.encode([&keys.raw[i][..], &[0u8]].concat());
        let url = URL_SAFE_NO_PAD.encode(keys.raw[i]);
        let hexed = hex::encode(keys.raw[i]);
        for bad in [
            format!("{id}:{alg}:{short}"),
            format!("{id}:{alg}:{long}"),
            format!("{id}:{alg}:{b64}!"),
            format!("{id}:{alg}:{url}"),
            format!("{id}:{alg}:{hexed}"),
            format!("{id}:{alg}:{}", &b64[..b64.len() - 1]),
            format!("{id}:rot13:{b64}"),
            format!("{id}::{b64}"),
            format!("{id}:{b64}"),
            format!("{b64}:{alg}:{id}"),
            b64.to_string(),
            format!("{alg}:{b64}"),
            format!("bad id:{alg}:{b64}"),
            format!("{id}:{alg}: {b64} x"),
            format!("{}:{alg}:{b64}", "k".repeat(40)),
        ] {
            let e = KeySpec::parse(&bad).unwrap_err();
            record_err!(&format!("KeySpec::parse({i})"), &e);
            let many = format!("{}\n{bad}\n", keys.specs[0]);
            let e = KeySpec::parse_many(&many).unwrap_err();
            record_err!(&format!("KeySpec::parse_many({i})"), &e);
        }
        for len in [0, 16, 31, 33, 64] {
            let bytes: Vec<u8> = keys.raw[i].iter().cycle().take(len).copied().collect();
            for alg in [Algorithm::Aes256Gcm, Algorithm::XChaCha20Poly1305] {
                let e = SecretKey::from_bytes(alg, &bytes).unwrap_err();
                record_err!("SecretKey::from_bytes", &e);
            }
        }
    }

    // ---- a working ring, and its Debug.
    let parsed: Vec<KeySpec> = KeySpec::parse_many(&keys.specs[..4].join("\n")).unwrap();
    for s in &parsed {
        outputs.push(("KeySpec Debug".into(), format!("{s:?}")));
        outputs.push(("KeySpec alternate Debug".into(), format!("{s:#?}")));
        outputs.push(("SecretKey Debug".into(), format!("{:?}", s.key)));
        outputs.push(("SecretKey fingerprint".into(), s.key.fingerprint()));
        outputs.push(("KeyId Debug".into(), format!("{:?} {}", s.id, s.id)));
    }
    let ring = Keyring::from_keys(
        parsed.into_iter().map(|s| (s.id, s.key)).collect(),
        Some("k2"),
        &["old".to_owned()],
    )
    .unwrap();
    outputs.push(("Keyring Debug".into(), format!("{ring:?}")));
    outputs.push(("Keyring alternate Debug".into(), format!("{ring:#?}")));
    let builder = Keyring::builder().add(
        KeyId::new("k1").unwrap(),
        KeySpec::parse(&keys.specs[0]).unwrap().key,
        KeyState::Primary,
    );
    outputs.push(("KeyringBuilder Debug".into(), format!("{builder:?}")));

    // ---- ring and keyring errors.
    let dup = Keyring::builder()
        .add(
            KeyId::new("k1").unwrap(),
            KeySpec::parse(&keys.specs[0]).unwrap().key,
            KeyState::Primary,
        )
        .add(
            KeyId::new("k1").unwrap(),
            KeySpec::parse(&keys.specs[1]).unwrap().key,
            KeyState::Primary,
        )
        .build()
        .unwrap_err();
    record_err!("duplicate id", &dup);
    let two = Keyring::builder()
        .add(
            KeyId::new("a").unwrap(),
            KeySpec::parse(&keys.specs[0]).unwrap().key,
            KeyState::Primary,
        )
        .add(
            KeyId::new("b").unwrap(),
            KeySpec::parse(&keys.specs[1]).unwrap().key,
            KeyState::Primary,
        )
        .build()
        .unwrap_err();
    record_err!("two primaries", &two);
    let none = Keyring::builder()
        .add(
            KeyId::new("a").unwrap(),
            KeySpec::parse(&keys.specs[0]).unwrap().key,
            KeyState::DecryptOnly,
        )
        .build()
        .unwrap_err();
    record_err!("no primary", &none);
    record_err!("empty ring", &Keyring::builder().build().unwrap_err());
    let one = |i: usize| {
        let s = KeySpec::parse(&keys.specs[i]).unwrap();
        vec![(s.id, s.key)]
    };
    record_err!(
        "from_keys unknown primary",
        &Keyring::from_keys(one(0), Some("zz"), &[]).unwrap_err(),
    );
    record_err!(
        "from_keys unknown retired",
        &Keyring::from_keys(one(0), None, &["zz".into()]).unwrap_err(),
    );
    record_err!(
        "from_keys primary retired",
        &Keyring::from_keys(one(0), Some("k1"), &["k1".into()]).unwrap_err(),
    );
    // A whole spec, or its key material alone, configured as a key id.
    for (i, spec) in keys.specs.iter().enumerate() {
        let b64 = spec.rsplit(':').next().unwrap();
        let hexed = hex::encode(keys.raw[i]);
        for pasted in [
            spec.as_str(),
            b64,
            &hexed,
            &hexed[..32],
            &URL_SAFE_NO_PAD.encode(keys.raw[i]),
        ] {
            record_err!(
                "from_keys spec as primary",
                &Keyring::from_keys(one(0), Some(pasted), &[]).unwrap_err(),
            );
            record_err!(
                "from_keys spec as retired",
                &Keyring::from_keys(one(0), None, &[pasted.to_owned()]).unwrap_err(),
            );
            outputs.push(("shown".into(), keyturn_format::shown(pasted)));
        }
    }

    // ---- decryption failures of every kind.
    let ctx: [&[u8]; 2] = [b"t", b"c"];
    let nope = KeySpec::parse(&keys.specs[4]).unwrap();
    let old = KeySpec::parse(&keys.specs[3]).unwrap();
    let k1 = KeySpec::parse(&keys.specs[0]).unwrap();
    for enc in [Encoding::Binary, Encoding::Text] {
        let good = ring.encrypt(b"secret plaintext", &ctx, enc).unwrap();
        let codec = NativeCodec { encoding: enc };
        let opened = codec.decrypt(&ring, &good, &ctx).unwrap();
        outputs.push(("Opened Debug".into(), format!("{opened:?}")));
        outputs.push(("Opened alternate Debug".into(), format!("{opened:#?}")));
        let mut cases: Vec<Case> = vec![
            ("wrong context".into(), good.clone(), vec![b"t", b"d"]),
            (
                "unknown key".into(),
                v1::seal(&nope.key, &nope.id, b"x", &ctx, enc).unwrap(),
                ctx.to_vec(),
            ),
            (
                "retired key".into(),
                v1::seal(&old.key, &old.id, b"x", &ctx, enc).unwrap(),
                ctx.to_vec(),
            ),
            (
                // x1 in the ring is XChaCha; this value claims AES under x1.
                "algorithm mismatch".into(),
                v1::seal(
                    &SecretKey::from_bytes(Algorithm::Aes256Gcm, &keys.raw[2]).unwrap(),
                    &KeyId::new("x1").unwrap(),
                    b"x",
                    &ctx,
                    enc,
                )
                .unwrap(),
                ctx.to_vec(),
            ),
            (
                // k1's id, other key material.
                "wrong key material".into(),
                v1::seal(&nope.key, &k1.id, b"x", &ctx, enc).unwrap(),
                ctx.to_vec(),
            ),
        ];
        for cut in 0..good.len() {
            cases.push((
                format!("truncated at {cut}"),
                good[..cut].to_vec(),
                ctx.to_vec(),
            ));
        }
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        cases.push(("flipped".into(), flipped, ctx.to_vec()));
        cases.push(("trailing".into(), [&good[..], b"=="].concat(), ctx.to_vec()));
        for (what, value, context) in &cases {
            let e = ring.decrypt(value, context).unwrap_err();
            record_err!(&format!("decrypt {what} ({})", enc.name()), &e);
            if let Err(e) = ring.reencrypt(value, context) {
                record_err!(&format!("reencrypt {what}"), &e);
            }
            if let Err(e) = codec.reencrypt(&ring, value, context) {
                record_err!(&format!("codec reencrypt {what}"), &e);
            }
            outputs.push((
                format!("inspect {what}"),
                format!("{:?}", codec.inspect(value)),
            ));
            if let Ok(p) = v1::parse(value) {
                outputs.push((format!("Parsed Debug {what}"), format!("{p:?}")));
            }
        }
    }

    assert!(
        outputs.len() > 300,
        "only {} outputs checked",
        outputs.len()
    );
    for (what, text) in &outputs {
        assert_clean(&keys, what, text);
        assert!(
            !text.contains("secret plaintext"),
            "{what} reveals a plaintext: {text}"
        );
    }
}

/// The check itself finds what it looks for.
#[test]
fn the_needles_find_key_material() {
    let keys = keys();
    let k = &keys.raw[0];
    for leak in [
        format!("oops {}", hex::encode(k)),
        format!("oops {}", hex::encode_upper(&k[3..12])),
        format!("oops {}", STANDARD.encode(k)),
        format!("oops {}", URL_SAFE_NO_PAD.encode(&k[5..20])),
        format!("oops {}", &keys.specs[0][10..30]),
        format!("oops {:?}", STANDARD.encode([&[1u8][..], &k[..]].concat())),
    ] {
        let caught = std::panic::catch_unwind(|| assert_clean(&keys, "leak", &leak));
        assert!(caught.is_err(), "not caught: {leak}");
    }
}
