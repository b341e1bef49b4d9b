//! No Debug or Display output of providers, blobs, caches or errors contains
//! DEK bytes (hex or base64), master key material or tokens. Needs no server.

use keyturn_test_support::kms as common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use keyturn_kms::{
    Algorithm, AwsCredentials, AwsKmsConfig, AwsKmsKek, DekCache, KekProvider, KeyId, KmsError,
    LocalKek, MasterKeySource, SecretKey, SecretSource, SecretString, TransitConfig, TransitKek,
    WrapContext, WrappedDek,
};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "s.Zx9TopSecretTransitToken77";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// Every rendering of `bytes` someone might look for.
fn renderings(bytes: &[u8]) -> Vec<String> {
    vec![
        hex::encode(bytes),
        hex::encode_upper(bytes),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        format!("{bytes:?}"),
        // A prefix is already too much.
        hex::encode(&bytes[..8]),
        STANDARD.encode(&bytes[..9]),
    ]
}

fn assert_clean(what: &str, s: &str, secrets: &[String]) {
    for x in secrets {
        assert!(!s.contains(x.as_str()), "{what} leaks {x:?}: {s}");
    }
}

#[tokio::test]
async fn nothing_secret_in_debug_display_or_errors() {
    let dek = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
    let (local, master_spec) = LocalKek::generate(KeyId::new("dev").unwrap()).unwrap();
    let master_b64 = master_spec.expose().rsplit(':').next().unwrap().to_owned();
    let master = STANDARD.decode(&master_b64).unwrap();

    let mut secrets = renderings(dek.expose_bytes());
    secrets.extend(renderings(&master));
    secrets.push(TOKEN.to_owned());
    secrets.push(AWS_SECRET.to_owned());

    let c = WrapContext::new("cat", KeyId::new("k1").unwrap()).unwrap();
    let other = WrapContext::new("cat", KeyId::new("k2").unwrap()).unwrap();

    // Providers.
    let mut tc = TransitConfig::new(&format!("http://127.0.0.1:{}", common::free_port()), "app");
    tc.token = Some(SecretSource::Value(TOKEN.into()));
    tc.connect_timeout = Duration::from_secs(2);
    assert_clean("TransitConfig Debug", &format!("{tc:?}"), &secrets);
    let transit = TransitKek::new(tc).unwrap();

    let mut ac = AwsKmsConfig::new("alias/app");
    ac.endpoint_url = Some(format!("http://127.0.0.1:{}", common::free_port()));
    ac.region = Some("us-east-1".into());
    ac.max_attempts = 1;
    ac.credentials = AwsCredentials::Static {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: AWS_SECRET.into(),
        session_token: Some(TOKEN.into()),
    };
    assert_clean("AwsKmsConfig Debug", &format!("{ac:?}"), &secrets);
    let aws = AwsKmsKek::connect(ac).await.unwrap();

    let src = MasterKeySource::Value(master_spec.clone());
    assert_clean("MasterKeySource Debug", &format!("{src:?}"), &secrets);
    assert_clean("SecretString Debug", &format!("{master_spec:?}"), &secrets);
    assert_clean(
        "SecretString Debug",
        &format!("{:?}", SecretString::from(TOKEN)),
        &secrets,
    );

    let providers: Vec<Arc<dyn KekProvider>> =
        vec![Arc::new(local), Arc::new(transit), Arc::new(aws)];
    let mut errors: Vec<KmsError> = Vec::new();
    for p in &providers {
        assert_clean("provider Debug", &format!("{p:?}"), &secrets);
        assert_clean(
            "describe",
            &format!("{} {:?}", p.describe(), p.describe()),
            &secrets,
        );
        match p.wrap(&dek, &c).await {
            Ok(w) => {
                for s in [format!("{w:?}"), format!("{w}"), format!("{:#?}", w)] {
                    assert_clean("WrappedDek", &s, &secrets);
                }
                // The stored form holds only the ciphertext.
                assert_clean("WrappedDek JSON", &w.to_json(), &secrets);
                errors.push(p.unwrap(&w, &other).await.unwrap_err());
                let cache = DekCache::new(p.clone());
                cache.get(&w, &c).await.unwrap();
                assert_clean("DekCache Debug", &format!("{cache:?}"), &secrets);
            }
            Err(e) => errors.push(e), // unreachable servers
        }
    }
    // Malformed blobs and bad configuration.
    errors.push(
        WrappedDek::from_json(&format!(
            "{{\"x\":\"{}\"}}",
            STANDARD.encode(dek.expose_bytes())
        ))
        .unwrap_err(),
    );
    errors.push(LocalKek::from_text(&format!("k1:aes256gcm:{}x", master_b64)).unwrap_err());
    errors.push(LocalKek::from_text(&master_b64[..20]).unwrap_err());
    let mut bad = TransitConfig::new("http://127.0.0.1:1", "app");
    // A line break inside the token cannot go into a header.
    bad.token = Some(SecretSource::Value(format!("{TOKEN}\nx").into()));
    errors.push(TransitKek::new(bad).unwrap_err());

    assert!(errors.len() >= 7, "{errors:?}");
    for e in &errors {
        assert_clean("error Display", &e.to_string(), &secrets);
        assert_clean("error Debug", &format!("{e:?}"), &secrets);
    }
    // SecretKey's own Debug (keyturn-format) is redacted too.
    assert_clean("SecretKey Debug", &format!("{dek:?}"), &secrets);
}
