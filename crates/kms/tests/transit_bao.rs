//! TransitKek against a real OpenBao dev server on 127.0.0.1.

use keyturn_test_support::kms as common;

use keyturn_kms::{
    Algorithm, ContextBinding, DekCache, KekProvider, KeyId, LocalKek, SecretKey, SecretSource,
    TransitConfig, TransitKek, WrapContext, WrappedDek, rewrap_all, rewrap_all_in_kms,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ctx(catalog: &str, key_id: &str) -> WrapContext {
    WrapContext::new(catalog, KeyId::new(key_id).unwrap()).unwrap()
}

fn provider(b: &common::Bao, key: &str, token: &str, binding: ContextBinding) -> TransitKek {
    let mut c = TransitConfig::new(&b.addr, key);
    c.mount = b.mount.clone();
    c.token = Some(SecretSource::Value(token.into()));
    c.binding = binding;
    TransitKek::new(c).unwrap()
}

macro_rules! need_bao {
    ($name:literal) => {
        match common::bao($name).await {
            Some(b) => b,
            None => return,
        }
    };
}

#[tokio::test]
async fn round_trip_both_bindings() {
    let b = need_bao!("transit round_trip_both_bindings");
    let key = b.create_key().await;
    for binding in [ContextBinding::Aad, ContextBinding::Embedded] {
        let p = provider(&b, &key, &b.root_token, binding);
        let r = p.resolve().await.unwrap();
        assert_eq!(r.version.as_deref(), Some("1"));
        assert_eq!(r.key, format!("{}/{key}", b.mount));

        let c = ctx("prod/app", "k1");
        let dek = SecretKey::generate(Algorithm::XChaCha20Poly1305).unwrap();
        let w = p.wrap(&dek, &c).await.unwrap();
        assert_eq!(w.binding(), binding);
        assert_eq!(w.kek().version.as_deref(), Some("1"));
        assert!(w.ciphertext().starts_with(b"vault:v1:"));
        // Through the stored form.
        let w = WrappedDek::from_json(&w.to_json()).unwrap();
        let back = p.unwrap(&w, &c).await.unwrap();
        assert_eq!(back.expose_bytes(), dek.expose_bytes());
        assert_eq!(back.algorithm(), Algorithm::XChaCha20Poly1305);
    }
}

#[tokio::test]
async fn wrong_context_fails_clearly() {
    let b = need_bao!("transit wrong_context_fails_clearly");
    let key = b.create_key().await;
    for binding in [ContextBinding::Aad, ContextBinding::Embedded] {
        let p = provider(&b, &key, &b.root_token, binding);
        let dek = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
        let w = p.wrap(&dek, &ctx("cat", "k1")).await.unwrap();
        for other in [ctx("cat", "k2"), ctx("other-cat", "k1")] {
            let e = p.unwrap(&w, &other).await.unwrap_err();
            assert_eq!(e.kind(), "wrong_context", "{binding:?}: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains(other.catalog()) && msg.contains(other.key_id().as_str()),
                "{msg}"
            );
        }
        // A blob edited to claim another DEK algorithm is refused too.
        let j = w.to_json().replace("aes256gcm", "xchacha20poly1305");
        let e = p
            .unwrap(&WrappedDek::from_json(&j).unwrap(), &ctx("cat", "k1"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "wrong_context", "{e}");
    }
}

#[tokio::test]
async fn rotate_transit_key_and_rewrap() {
    let b = need_bao!("transit rotate_transit_key_and_rewrap");
    for binding in [ContextBinding::Embedded, ContextBinding::Aad] {
        let key = b.create_key().await;
        let p = provider(&b, &key, &b.root_token, binding);
        let mut items = Vec::new();
        let mut deks = Vec::new();
        for i in 0..3 {
            let c = ctx("cat", &format!("k{i}"));
            let d = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
            items.push((p.wrap(&d, &c).await.unwrap(), c));
            deks.push(d);
        }
        b.rotate_key(&key).await;
        assert_eq!(p.resolve().await.unwrap().version.as_deref(), Some("2"));
        // Old blobs still unwrap after rotation.
        assert_eq!(
            p.unwrap(&items[0].0, &items[0].1)
                .await
                .unwrap()
                .expose_bytes(),
            deks[0].expose_bytes()
        );
        let out = rewrap_all_in_kms(&p, &items).await.unwrap();
        for ((w, (_, c)), d) in out.iter().zip(&items).zip(&deks) {
            assert_eq!(w.kek().version.as_deref(), Some("2"), "{binding:?}");
            assert!(w.ciphertext().starts_with(b"vault:v2:"));
            assert_eq!(w.binding(), binding);
            assert_eq!(
                p.unwrap(w, c).await.unwrap().expose_bytes(),
                d.expose_bytes()
            );
        }
        // In-KMS rewrap keeps the context bound: a swapped context fails.
        let e = p.unwrap(&out[0], &items[1].1).await.unwrap_err();
        assert_eq!(e.kind(), "wrong_context");
        // Retiring version 1 makes the old blobs unusable, clearly.
        b.post(
            &format!("{}/keys/{key}/config", b.mount),
            &b.root_token,
            serde_json::json!({"min_decryption_version": 2}),
        )
        .await
        .unwrap();
        let e = p.unwrap(&items[0].0, &items[0].1).await.unwrap_err();
        assert_eq!(e.kind(), "key_unusable", "{e}");
        assert!(e.to_string().contains("min_decryption_version"), "{e}");
        assert_eq!(
            p.unwrap(&out[0], &items[0].1).await.unwrap().expose_bytes(),
            deks[0].expose_bytes()
        );
    }
}

#[tokio::test]
async fn rewrap_to_another_key_and_from_local() {
    let b = need_bao!("transit rewrap_to_another_key_and_from_local");
    let (k1, k2) = (b.create_key().await, b.create_key().await);
    let p1 = provider(&b, &k1, &b.root_token, ContextBinding::Aad);
    let p2 = provider(&b, &k2, &b.root_token, ContextBinding::Embedded);
    let (local, _) = LocalKek::generate(KeyId::new("dev").unwrap()).unwrap();
    let c = ctx("cat", "k1");
    let dek = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
    let items = vec![(local.wrap(&dek, &c).await.unwrap(), c.clone())];
    // local -> transit key 1 -> transit key 2
    let on1 = rewrap_all(&local, &p1, &items).await.unwrap();
    let on2 = rewrap_all(&p1, &p2, &[(on1[0].clone(), c.clone())])
        .await
        .unwrap();
    assert_eq!(on2[0].kek().key, format!("{}/{k2}", b.mount));
    assert_eq!(
        p2.unwrap(&on2[0], &c).await.unwrap().expose_bytes(),
        dek.expose_bytes()
    );
    // Key 1 is not key 2: refused before any request.
    let e = p1.unwrap(&on2[0], &c).await.unwrap_err();
    assert_eq!(e.kind(), "wrong_kek", "{e}");
    // All-or-nothing: one blob of the wrong key fails the batch.
    let mixed = vec![(on1[0].clone(), c.clone()), (on2[0].clone(), c.clone())];
    assert_eq!(
        rewrap_all(&p1, &local, &mixed).await.unwrap_err().kind(),
        "wrong_kek"
    );
}

#[tokio::test]
async fn revoked_token_fails_clearly() {
    let b = need_bao!("transit revoked_token_fails_clearly");
    let key = b.create_key().await;
    let child = b.create_token(&["root"], false).await;
    let p = provider(&b, &key, &child, ContextBinding::Aad);
    let c = ctx("cat", "k1");
    let dek = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
    let w = p.wrap(&dek, &c).await.unwrap();
    b.revoke_token(&child).await;
    for e in [
        p.unwrap(&w, &c).await.unwrap_err(),
        p.wrap(&dek, &c).await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), "invalid_credentials", "{e}");
        let msg = format!("{e} {e:?}");
        assert!(msg.contains(&b.addr), "{msg}");
        assert!(
            !msg.contains(&child) && !msg.contains(&b.root_token),
            "{msg}"
        );
        assert!(!msg.contains(&hex::encode(dek.expose_bytes())), "{msg}");
    }
    assert!(!format!("{p:?}").contains(&child));
}

#[tokio::test]
async fn valid_token_without_policy_is_access_denied() {
    let b = need_bao!("transit valid_token_without_policy_is_access_denied");
    let key = b.create_key().await;
    let weak = b.create_token(&["default"], true).await;
    let p = provider(&b, &key, &weak, ContextBinding::Aad);
    let dek = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
    let e = p.wrap(&dek, &ctx("cat", "k1")).await.unwrap_err();
    assert_eq!(e.kind(), "access_denied", "{e}");
    assert!(e.to_string().contains(&key), "{e}");
}

#[tokio::test]
async fn missing_key_and_mount() {
    let b = need_bao!("transit missing_key_and_mount");
    let p = provider(&b, "no-such-key", &b.root_token, ContextBinding::Aad);
    let dek = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
    let e = p.wrap(&dek, &ctx("cat", "k1")).await.unwrap_err();
    assert_eq!(e.kind(), "key_not_found", "{e}");
    assert!(e.to_string().contains("no-such-key"), "{e}");
    // Transit's encrypt would have created the key ("upsert"): it must not.
    assert_eq!(p.resolve().await.unwrap_err().kind(), "key_not_found");
    let mut c = TransitConfig::new(&b.addr, "k");
    c.mount = "no-such-mount".into();
    c.token = Some(SecretSource::Value(b.root_token.as_str().into()));
    let e = TransitKek::new(c)
        .unwrap()
        .wrap(&dek, &ctx("cat", "k1"))
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), "key_not_found" | "backend"), "{e}");
}

#[tokio::test]
async fn dek_cache_makes_one_call_per_dek() {
    let b = need_bao!("transit dek_cache_makes_one_call_per_dek");
    let key = b.create_key().await;
    let p: Arc<dyn KekProvider> = Arc::new(provider(&b, &key, &b.root_token, ContextBinding::Aad));
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
    let port = common::free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let mut c = TransitConfig::new(&addr, "k");
    c.token = Some(SecretSource::Value("s.not-a-real-token".into()));
    c.connect_timeout = Duration::from_secs(2);
    let p = TransitKek::new(c).unwrap();
    let t = Instant::now();
    let e = p
        .wrap(
            &SecretKey::generate(Algorithm::Aes256Gcm).unwrap(),
            &ctx("cat", "k1"),
        )
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(e.kind(), "unreachable", "{e}");
    assert!(e.is_transient());
    let msg = e.to_string();
    assert!(msg.contains(&addr), "{msg}");
    assert!(!msg.contains("not-a-real-token"), "{msg}");
    eprintln!("unreachable error reads: {msg}");
}
