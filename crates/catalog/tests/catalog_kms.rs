//! The catalog with remote KEKs: OpenBao transit and AWS KMS (moto), found
//! or launched by the kms crate's test harness (skipped loudly without
//! them, unless `KEYTURN_REQUIRE_KMS=1`). Unreachable KMS needs no server.
//! Every failure must leave the catalog exactly as it was.

#[path = "../../kms/tests/common/mod.rs"]
mod common;

use keyturn_catalog::{Catalog, Policy};
use keyturn_db::{CatalogWrite, ConnectOptions, Database};
use keyturn_format::{Algorithm, SecretKey};
use keyturn_kms::{
    AwsCredentials, AwsKmsConfig, AwsKmsKek, DekCache, KekProvider, KeyId, LocalKek, TokenSource,
    TransitConfig, TransitKek,
};
use std::sync::Arc;
use std::time::Duration;

async fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn Database> {
    keyturn_db::connect(
        &format!("sqlite://{}", dir.path().join("t.db").display()),
        &ConnectOptions {
            max_connections: 2,
            create_if_missing: true,
        },
    )
    .await
    .unwrap()
}

fn local() -> Arc<dyn KekProvider> {
    Arc::new(LocalKek::generate(KeyId::new("mk").unwrap()).unwrap().0)
}

async fn catalog_with_keys(db: &Arc<dyn Database>, kek: &dyn KekProvider, n: usize) -> Catalog {
    let cat = Catalog::open(db.clone(), "kms-test", Policy::default())
        .await
        .unwrap();
    for i in 0..n {
        cat.add(
            kek,
            &KeyId::new(&format!("k{i}")).unwrap(),
            &SecretKey::generate(Algorithm::Aes256Gcm).unwrap(),
        )
        .await
        .unwrap();
    }
    cat.promote("k0").await.unwrap();
    cat
}

fn transit(addr: &str, mount: &str, key: &str, token: &str) -> Arc<dyn KekProvider> {
    let mut c = TransitConfig::new(addr, key);
    if !mount.is_empty() {
        c.mount = mount.to_owned();
    }
    c.token = TokenSource::Value(token.into());
    c.connect_timeout = Duration::from_secs(2);
    Arc::new(TransitKek::new(c).unwrap())
}

#[tokio::test]
async fn unreachable_kms_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir).await;
    let old = local();
    let cat = catalog_with_keys(&db, old.as_ref(), 3).await;
    let before = db.load_catalog("kms-test").await.unwrap();
    let addr = format!("http://127.0.0.1:{}", common::free_port());
    let dead = transit(&addr, "", "k", "s.not-a-real-token");

    let e = cat
        .rotate_kek(old.as_ref(), dead.as_ref())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unreachable", "{e}");
    assert!(e.to_string().contains(&addr), "{e}");
    assert!(!e.to_string().contains("not-a-real-token"), "{e}");
    let e = cat
        .add(
            dead.as_ref(),
            &KeyId::new("k9").unwrap(),
            &SecretKey::generate(Algorithm::Aes256Gcm).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unreachable", "{e}");
    assert_eq!(db.load_catalog("kms-test").await.unwrap(), before);
}

#[tokio::test]
async fn transit_kek_rotation_and_wrong_context() {
    let Some(b) = common::bao("transit_kek_rotation_and_wrong_context").await else {
        return;
    };
    let key = b.create_key().await;
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir).await;
    let old = local();
    let cat = catalog_with_keys(&db, old.as_ref(), 3).await;
    let ring_before = cat
        .load_keyring(&DekCache::new(old.clone()), false)
        .await
        .unwrap();

    // A wrong transit key name: refused, nothing written.
    let before = db.load_catalog("kms-test").await.unwrap();
    let missing = transit(&b.addr, &b.mount, "no-such-key", &b.root_token);
    let e = cat
        .rotate_kek(old.as_ref(), missing.as_ref())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "key_not_found", "{e}");
    assert_eq!(db.load_catalog("kms-test").await.unwrap(), before);

    let new = transit(&b.addr, &b.mount, &key, &b.root_token);
    let out = cat.rotate_kek(old.as_ref(), new.as_ref()).await.unwrap();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|e| e.kek.starts_with("transit")), "{out:?}");
    let cache = DekCache::new(new.clone());
    let ring = cat.load_keyring(&cache, false).await.unwrap();
    assert_eq!(cache.kms_calls(), 3);
    let fp = |r: &keyturn_format::Keyring| {
        r.keys()
            .map(|(i, _, k)| (i.to_string(), k.fingerprint()))
            .collect::<Vec<_>>()
    };
    assert_eq!(fp(&ring), fp(&ring_before));

    // A wrapped DEK copied onto another key's row does not unwrap.
    let rows = db.load_catalog("kms-test").await.unwrap();
    let mut tampered = rows[1].clone();
    tampered.wrapped_dek = rows[2].wrapped_dek.clone();
    tampered.revision += 1;
    db.write_catalog(&[CatalogWrite {
        expected_revision: Some(rows[1].revision),
        row: tampered,
    }])
    .await
    .unwrap();
    let e = cat
        .load_keyring(&DekCache::new(new.clone()), false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "wrong_context", "{e}");
    // …and a KEK rotation of that catalog writes nothing.
    let before = db.load_catalog("kms-test").await.unwrap();
    let e = cat
        .rotate_kek(new.as_ref(), old.as_ref())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "wrong_context", "{e}");
    assert_eq!(db.load_catalog("kms-test").await.unwrap(), before);
}

#[tokio::test]
async fn aws_kms_catalog_round_trip() {
    let Some(url) = common::moto_url("aws_kms_catalog_round_trip") else {
        return;
    };
    let cfg = |key_id: &str| {
        let mut c = AwsKmsConfig::new(key_id);
        c.endpoint_url = Some(url.clone());
        c.region = Some("us-east-1".into());
        c.credentials = AwsCredentials::Static {
            access_key_id: "test".into(),
            secret_access_key: "test-secret".into(),
            session_token: None,
        };
        c.max_attempts = 1;
        c
    };
    let admin = AwsKmsKek::connect(cfg("unused")).await.unwrap();
    let out = admin.client().create_key().send().await.expect("CreateKey");
    let key_id = out.key_metadata().unwrap().key_id().to_owned();
    let kms: Arc<dyn KekProvider> = Arc::new(AwsKmsKek::connect(cfg(&key_id)).await.unwrap());

    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir).await;
    let cat = catalog_with_keys(&db, kms.as_ref(), 2).await;
    let cache = DekCache::new(kms.clone());
    let ring = cat.load_keyring(&cache, false).await.unwrap();
    assert_eq!(ring.primary_id().as_str(), "k0");
    assert_eq!(cache.kms_calls(), 2);
    assert!(cat.self_test(&cache).await.ok);
    // Back to a local KEK: one transaction, the same DEKs.
    let l = local();
    cat.rotate_kek(kms.as_ref(), l.as_ref()).await.unwrap();
    let ring2 = cat
        .load_keyring(&DekCache::new(l.clone()), false)
        .await
        .unwrap();
    assert_eq!(
        ring.primary_key().fingerprint(),
        ring2.primary_key().fingerprint()
    );
}
