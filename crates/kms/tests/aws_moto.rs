//! AwsKmsKek against a real moto server on 127.0.0.1.

use keyturn_test_support::kms as common;

use keyturn_kms::{
    Algorithm, AwsCredentials, AwsKmsConfig, AwsKmsKek, DekCache, KekProvider, KeyId, SecretKey,
    WrapContext, WrappedDek, rewrap_all, rewrap_all_in_kms,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "test-secret-access-key-4f1c";

fn ctx(catalog: &str, key_id: &str) -> WrapContext {
    WrapContext::new(catalog, KeyId::new(key_id).unwrap()).unwrap()
}

fn config(endpoint: &str, key_id: &str) -> AwsKmsConfig {
    let mut c = AwsKmsConfig::new(key_id);
    c.endpoint_url = Some(endpoint.to_owned());
    c.region = Some("us-east-1".into());
    c.credentials = AwsCredentials::Static {
        access_key_id: "test".into(),
        secret_access_key: SECRET.into(),
        session_token: None,
    };
    c.connect_timeout = Duration::from_secs(2);
    c.operation_timeout = Duration::from_secs(10);
    c.max_attempts = 1;
    c
}

async fn provider(endpoint: &str, key_id: &str) -> AwsKmsKek {
    AwsKmsKek::connect(config(endpoint, key_id)).await.unwrap()
}

/// Creates a symmetric KMS key through the SDK; returns (key id, ARN).
async fn create_key(endpoint: &str) -> (String, String) {
    let admin = provider(endpoint, "unused").await;
    let out = admin
        .client()
        .create_key()
        .description("keyturn test KEK")
        .send()
        .await
        .expect("CreateKey");
    let md = out.key_metadata().unwrap();
    (md.key_id().to_owned(), md.arn().unwrap().to_owned())
}

macro_rules! need_moto {
    ($name:literal) => {
        match common::moto_url($name) {
            Some(u) => u,
            None => return,
        }
    };
}

#[tokio::test]
async fn round_trip() {
    let url = need_moto!("aws round_trip");
    let (id, arn) = create_key(&url).await;
    let p = provider(&url, &id).await;
    assert_eq!(p.resolve().await.unwrap().key, arn);
    let c = ctx("prod/app", "k1");
    for alg in [Algorithm::Aes256Gcm, Algorithm::XChaCha20Poly1305] {
        let dek = SecretKey::generate(alg).unwrap();
        let w = p.wrap(&dek, &c).await.unwrap();
        assert_eq!(w.kek().key, arn, "blobs record the ARN KMS reports");
        let w = WrappedDek::from_bytes(&w.to_bytes()).unwrap();
        let back = p.unwrap(&w, &c).await.unwrap();
        assert_eq!(back.expose_bytes(), dek.expose_bytes());
        assert_eq!(back.algorithm(), alg);
    }
}

#[tokio::test]
async fn wrong_encryption_context_fails_clearly() {
    let url = need_moto!("aws wrong_encryption_context_fails_clearly");
    let (id, _) = create_key(&url).await;
    let p = provider(&url, &id).await;
    let dek = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
    let w = p.wrap(&dek, &ctx("cat", "k1")).await.unwrap();
    for other in [ctx("cat", "k2"), ctx("cat2", "k1")] {
        let e = p.unwrap(&w, &other).await.unwrap_err();
        assert_eq!(e.kind(), "wrong_context", "{e}");
        assert!(e.to_string().contains("wrong encryption context"), "{e}");
    }
    let j = w.to_json().replace("aes256gcm", "xchacha20poly1305");
    let e = p
        .unwrap(&WrappedDek::from_json(&j).unwrap(), &ctx("cat", "k1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "wrong_context", "{e}");
}

#[tokio::test]
async fn wrong_kms_key_fails_clearly() {
    let url = need_moto!("aws wrong_kms_key_fails_clearly");
    let (a, arn_a) = create_key(&url).await;
    let (b, arn_b) = create_key(&url).await;
    let pa = provider(&url, &a).await;
    let pb = provider(&url, &b).await;
    let c = ctx("cat", "k1");
    let dek = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
    let w = pa.wrap(&dek, &c).await.unwrap();
    // Configured for key B: refused before calling KMS, naming both keys.
    let e = pb.unwrap(&w, &c).await.unwrap_err();
    assert_eq!(e.kind(), "wrong_kek", "{e}");
    assert!(
        e.to_string().contains(&arn_a) && e.to_string().contains(&b),
        "{e}"
    );
    // A blob whose recorded key was edited: KMS itself refuses.
    let forged = WrappedDek::from_json(&w.to_json().replace(&arn_a, &arn_b)).unwrap();
    let e = pb.unwrap(&forged, &c).await.unwrap_err();
    assert!(matches!(e.kind(), "access_denied" | "wrong_kek"), "{e}");
    // A key that does not exist.
    let missing = provider(&url, "00000000-0000-0000-0000-000000000000").await;
    let e = missing.wrap(&dek, &c).await.unwrap_err();
    assert_eq!(e.kind(), "key_not_found", "{e}");
    assert!(
        e.to_string()
            .contains("00000000-0000-0000-0000-000000000000"),
        "{e}"
    );
}

#[tokio::test]
async fn kek_rotation_to_new_key() {
    let url = need_moto!("aws kek_rotation_to_new_key");
    let (old_id, _) = create_key(&url).await;
    let (new_id, new_arn) = create_key(&url).await;
    let old = provider(&url, &old_id).await;
    let new = provider(&url, &new_id).await;
    let mut items = Vec::new();
    let mut deks = Vec::new();
    for i in 0..3 {
        let c = ctx("cat", &format!("k{i}"));
        let d = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
        items.push((old.wrap(&d, &c).await.unwrap(), c));
        deks.push(d);
    }
    // Through this process (unwrap under old, wrap under new)...
    let out = rewrap_all(&old, &new, &items).await.unwrap();
    // ...and inside KMS (ReEncrypt to the configured key).
    let out2 = rewrap_all_in_kms(&new, &items).await.unwrap();
    for (set, name) in [(&out, "rewrap_all"), (&out2, "rewrap_all_in_kms")] {
        for ((w, (_, c)), d) in set.iter().zip(&items).zip(&deks) {
            assert_eq!(w.kek().key, new_arn, "{name}");
            assert_eq!(
                new.unwrap(w, c).await.unwrap().expose_bytes(),
                d.expose_bytes()
            );
        }
    }
    // All-or-nothing: a bad item fails the batch.
    let mut bad = items.clone();
    bad[2].1 = ctx("cat", "k0");
    assert_eq!(
        rewrap_all_in_kms(&new, &bad).await.unwrap_err().kind(),
        "wrong_context"
    );
    assert_eq!(
        rewrap_all(&old, &new, &bad).await.unwrap_err().kind(),
        "wrong_context"
    );
}

#[tokio::test]
async fn alias_moves_to_new_key() {
    let url = need_moto!("aws alias_moves_to_new_key");
    let (a, arn_a) = create_key(&url).await;
    let (b, arn_b) = create_key(&url).await;
    let alias = format!("alias/keyturn-{}", common::random_hex(4));
    let p = provider(&url, &alias).await;
    p.client()
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&a)
        .send()
        .await
        .unwrap();
    let c = ctx("cat", "k1");
    let dek = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
    let w = p.wrap(&dek, &c).await.unwrap();
    assert_eq!(w.kek().key, arn_a);
    p.client()
        .update_alias()
        .alias_name(&alias)
        .target_key_id(&b)
        .send()
        .await
        .unwrap();
    // The blob names key A's ARN, so it still unwraps through the alias provider.
    assert_eq!(
        p.unwrap(&w, &c).await.unwrap().expose_bytes(),
        dek.expose_bytes()
    );
    let moved = p.rewrap(&w, &c).await.unwrap();
    assert_eq!(moved.kek().key, arn_b);
    assert_eq!(
        p.unwrap(&moved, &c).await.unwrap().expose_bytes(),
        dek.expose_bytes()
    );
    assert_eq!(p.resolve().await.unwrap().key, arn_b);
}

#[tokio::test]
async fn dek_cache_makes_one_call_per_dek() {
    let url = need_moto!("aws dek_cache_makes_one_call_per_dek");
    let (id, _) = create_key(&url).await;
    let p: Arc<dyn KekProvider> = Arc::new(provider(&url, &id).await);
    let c = ctx("cat", "k1");
    let dek = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
    let w = p.wrap(&dek, &c).await.unwrap();
    let cache = DekCache::new(p);
    for _ in 0..50 {
        assert_eq!(
            cache.get(&w, &c).await.unwrap().expose_bytes(),
            dek.expose_bytes()
        );
    }
    assert_eq!(cache.kms_calls(), 1);
}

#[tokio::test]
async fn unreachable_fails_fast() {
    // Needs no server: a closed port on 127.0.0.1.
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let p = provider(&url, "alias/whatever").await;
    let dek = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
    let t = Instant::now();
    let e = p.wrap(&dek, &ctx("cat", "k1")).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(e.kind(), "unreachable", "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(!msg.contains(SECRET), "{msg}");
    eprintln!("unreachable error reads: {msg}");
}

/// The standard credential chain, exercised in a child process so that the
/// environment can be set without touching this process's: with
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_REGION` it works against
/// moto; with no credentials anywhere it fails as a configuration error.
#[tokio::test]
async fn default_credential_chain() {
    const CHILD: &str = "KEYTURN_TEST_CHAIN_CHILD";
    if let Ok(mode) = std::env::var(CHILD) {
        let url = std::env::var("KEYTURN_MOTO_URL").unwrap();
        let mut c = AwsKmsConfig::new("unused");
        c.endpoint_url = Some(url.clone());
        c.max_attempts = 1;
        let p = AwsKmsKek::connect(c).await.unwrap();
        let created = p.client().create_key().send().await;
        if mode == "with-env" {
            let id = created.unwrap().key_metadata().unwrap().key_id().to_owned();
            let mut c = AwsKmsConfig::new(&id);
            c.endpoint_url = Some(url);
            let p = AwsKmsKek::connect(c).await.unwrap();
            let cx = ctx("cat", "k1");
            let dek = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
            let w = p.wrap(&dek, &cx).await.unwrap();
            assert_eq!(
                p.unwrap(&w, &cx).await.unwrap().expose_bytes(),
                dek.expose_bytes()
            );
        } else {
            assert!(created.is_err());
            let e = p
                .wrap(
                    &SecretKey::generate(Algorithm::Aes256Gcm).unwrap(),
                    &ctx("cat", "k1"),
                )
                .await
                .unwrap_err();
            assert_eq!(e.kind(), "config", "{e}");
            assert!(e.to_string().contains("credentials"), "{e}");
            eprintln!("no-credentials error reads: {e}");
        }
        return;
    }
    let url = need_moto!("aws default_credential_chain");
    let nowhere = std::env::temp_dir().join("keyturn-no-such-aws-file");
    for mode in ["with-env", "without-credentials"] {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "default_credential_chain",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, mode)
        .env("KEYTURN_MOTO_URL", &url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", &nowhere)
        .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI");
        if mode == "with-env" {
            cmd.env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test");
        } else {
            cmd.env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{mode}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `ReEncrypt` of raw `Encrypt` output: the source key's and the
/// destination's ARNs come back, the plaintext stays in KMS; a damaged
/// blob or another encryption context is the value's error, not the
/// server's; `describe_key` resolves an alias and refuses a disabled key.
#[tokio::test]
async fn re_encrypt_values_between_keys() {
    use std::collections::HashMap;
    let url = need_moto!("aws re_encrypt_values_between_keys");
    let (a, arn_a) = create_key(&url).await;
    let (b, arn_b) = create_key(&url).await;
    let p = provider(&url, &a).await;
    let alias = format!("alias/keyturn-{}", common::random_hex(6));
    p.client()
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&b)
        .send()
        .await
        .expect("CreateAlias");
    assert_eq!(p.describe_key(&alias).await.unwrap(), arn_b);
    assert_eq!(p.describe_key(&a).await.unwrap(), arn_a);

    let ctx: HashMap<String, String> = [("tenant".to_string(), "t-7".to_string())].into();
    let none = HashMap::new();
    let enc = |ctx: &HashMap<String, String>| {
        let ctx = (!ctx.is_empty()).then(|| ctx.clone());
        let c = p.client().clone();
        let a = a.clone();
        async move {
            c.encrypt()
                .key_id(a)
                .plaintext(aws_sdk_kms::primitives::Blob::new(b"card 4111".to_vec()))
                .set_encryption_context(ctx)
                .send()
                .await
                .unwrap()
                .ciphertext_blob()
                .unwrap()
                .as_ref()
                .to_vec()
        }
    };
    let blob = enc(&ctx).await;
    let r = p.re_encrypt_value(&blob, &arn_b, &ctx, &ctx).await.unwrap();
    assert_eq!(
        (r.source_key_id.as_str(), r.key_id.as_str()),
        (arn_a.as_str(), arn_b.as_str())
    );
    assert!(!format!("{r:?}").contains("card"), "{r:?}");
    let back = p
        .client()
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(r.ciphertext.clone()))
        .set_encryption_context(Some(ctx.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(back.key_id(), Some(arn_b.as_str()));
    assert_eq!(back.plaintext().unwrap().as_ref(), b"card 4111");

    // Another context, a damaged blob: the value's problem.
    let e = p
        .re_encrypt_value(&blob, &arn_b, &none, &none)
        .await
        .unwrap_err();
    assert!(e.is_per_value(), "{e}");
    let mut damaged = blob.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    let e = p
        .re_encrypt_value(&damaged, &arn_b, &ctx, &ctx)
        .await
        .unwrap_err();
    assert!(e.is_per_value(), "{e}");
    // A destination that does not exist: the server's.
    let e = p
        .re_encrypt_value(&blob, "alias/keyturn-no-such-key", &ctx, &ctx)
        .await
        .unwrap_err();
    assert!(!e.is_per_value(), "{e}");
    assert_eq!(e.kind(), "key_not_found", "{e}");

    p.client().disable_key().key_id(&b).send().await.unwrap();
    let e = p.describe_key(&alias).await.unwrap_err();
    assert_eq!(e.kind(), "key_unusable", "{e}");
}

/// `max_requests_per_sec` spaces the calls; `max_in_flight` is honoured.
#[tokio::test]
async fn re_encrypt_calls_are_paced() {
    use std::collections::HashMap;
    let url = need_moto!("aws re_encrypt_calls_are_paced");
    let (a, _) = create_key(&url).await;
    let mut c = config(&url, &a);
    c.max_requests_per_sec = Some(20);
    c.max_in_flight = Some(2);
    let p = Arc::new(AwsKmsKek::connect(c).await.unwrap());
    let blob = p
        .client()
        .encrypt()
        .key_id(&a)
        .plaintext(aws_sdk_kms::primitives::Blob::new(vec![7u8; 16]))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .as_ref()
        .to_vec();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..11 {
        let (p, blob, a) = (p.clone(), blob.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            p.re_encrypt_value(&blob, &a, &HashMap::new(), &HashMap::new())
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // 11 calls at 20 a second: the last starts 500 ms after the first.
    assert!(
        start.elapsed() >= Duration::from_millis(480),
        "{:?}",
        start.elapsed()
    );
}
