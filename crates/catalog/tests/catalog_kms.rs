//! The catalog with remote KEKs: OpenBao transit and AWS KMS (moto), found
//! or launched by the test harness (keyturn-test-support) (skipped loudly without
//! them, unless `KEYTURN_REQUIRE_KMS=1`). Unreachable KMS needs no server.
//! Every failure must leave the catalog exactly as it was.

use keyturn_test_support::kms as common;

use keyturn_catalog::{Catalog, Policy};
use keyturn_db::{CatalogWrite, ConnectOptions, Database};
use keyturn_format::{Algorithm, SecretKey};
use keyturn_kms::{
    AwsCredentials, AwsKmsConfig, AwsKmsKek, DekCache, KekProvider, KeyId, LocalKek, SecretSource,
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
            lock_timeout: None,
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
    c.token = Some(SecretSource::Value(token.into()));
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

/// Counts the calls that would bring a DEK into this process (`unwrap`) or
/// send one to the KMS (`wrap`); forwards everything else.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn KekProvider>,
    unwraps: std::sync::atomic::AtomicUsize,
    wraps: std::sync::atomic::AtomicUsize,
}

impl Counting {
    fn new(inner: Arc<dyn KekProvider>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            unwraps: Default::default(),
            wraps: Default::default(),
        })
    }

    fn plaintext_calls(&self) -> usize {
        self.unwraps.load(std::sync::atomic::Ordering::SeqCst)
            + self.wraps.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl KekProvider for Counting {
    fn describe(&self) -> keyturn_kms::KekRef {
        self.inner.describe()
    }
    async fn wrap(
        &self,
        dek: &SecretKey,
        ctx: &keyturn_kms::WrapContext,
    ) -> Result<keyturn_kms::WrappedDek, keyturn_kms::KmsError> {
        self.wraps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.wrap(dek, ctx).await
    }
    async fn unwrap(
        &self,
        w: &keyturn_kms::WrappedDek,
        ctx: &keyturn_kms::WrapContext,
    ) -> Result<SecretKey, keyturn_kms::KmsError> {
        self.unwraps
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.unwrap(w, ctx).await
    }
    async fn rewrap(
        &self,
        w: &keyturn_kms::WrappedDek,
        ctx: &keyturn_kms::WrapContext,
    ) -> Result<keyturn_kms::WrappedDek, keyturn_kms::KmsError> {
        self.inner.rewrap(w, ctx).await
    }
    fn rewrap_domain(&self) -> Option<String> {
        self.inner.rewrap_domain()
    }
    fn rewraps_in_kms(&self, w: &keyturn_kms::WrappedDek) -> bool {
        self.inner.rewraps_in_kms(w)
    }
    fn check_owner(&self, w: &keyturn_kms::WrappedDek) -> Result<(), keyturn_kms::KmsError> {
        self.inner.check_owner(w)
    }
    async fn new_key_version(&self) -> Result<keyturn_kms::KekRef, keyturn_kms::KmsError> {
        self.inner.new_key_version().await
    }
}

fn fingerprints(r: &keyturn_format::Keyring) -> Vec<(String, String)> {
    r.keys()
        .map(|(i, _, k)| (i.to_string(), k.fingerprint()))
        .collect()
}

/// Same transit key: `kek rotate --new-version` creates version 2 and moves
/// every DEK to it with transit's rewrap, under a token that may rewrap but
/// not decrypt (so the DEKs cannot have left the server). Values encrypted
/// before still decrypt. Then: a revoked token, an unreachable server, a
/// blob the server rejects half-way, and aad-bound blobs (transit cannot
/// rewrap those: unwrapped and wrapped, and a swapped one is refused as
/// wrong_context) each write nothing.
#[tokio::test]
async fn transit_rewrap_inside_the_server() {
    let Some(b) = common::bao("transit_rewrap_inside_the_server").await else {
        return;
    };
    let key = b.create_key().await;
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir).await;
    let root = transit(&b.addr, &b.mount, &key, &b.root_token);
    let cat = catalog_with_keys(&db, root.as_ref(), 3).await;
    let ring = cat
        .load_keyring(&DekCache::new(root.clone()), false)
        .await
        .unwrap();
    let value = ring
        .encrypt(b"under v1", &[], keyturn_format::Encoding::Text)
        .unwrap();
    let rows = db.load_catalog("kms-test").await.unwrap();
    assert!(
        rows.iter().all(|r| r.kek.ends_with("(version 1)")),
        "{rows:?}"
    );

    let policy = format!(
        "path \"{m}/rewrap/{key}\" {{ capabilities = [\"update\"] }}\n\
         path \"{m}/keys/{key}/rotate\" {{ capabilities = [\"update\"] }}\n\
         path \"{m}/keys/{key}\" {{ capabilities = [\"read\"] }}",
        m = b.mount
    );
    let pname = format!("rewrap-only-{}", common::random_hex(4));
    b.post(
        &format!("sys/policies/acl/{pname}"),
        &b.root_token,
        serde_json::json!({ "policy": policy }),
    )
    .await
    .unwrap();
    let token = b.create_token(&[&pname], true).await;
    let rewrap_only = Counting::new(transit(&b.addr, &b.mount, &key, &token));
    // The token really cannot decrypt.
    let w = cat.list().await.unwrap()[0].wrapped().unwrap().unwrap();
    let ctx0 = keyturn_kms::WrapContext::new("kms-test", KeyId::new("k0").unwrap()).unwrap();
    let e = rewrap_only.unwrap(&w, &ctx0).await.unwrap_err();
    assert_eq!(e.kind(), "access_denied", "{e}");
    let unwraps_before = rewrap_only.plaintext_calls();

    let r = cat
        .rotate_kek_with(root.as_ref(), rewrap_only.as_ref(), true)
        .await
        .unwrap();
    assert_eq!((r.in_kms, r.unwrap_wrap), (3, 0), "{r:?}");
    assert_eq!(r.new_version.as_deref(), Some("2"));
    assert_eq!(rewrap_only.plaintext_calls(), unwraps_before);
    assert!(
        r.entries.iter().all(|e| e.kek.ends_with("(version 2)")),
        "{:?}",
        r.entries
    );
    let after = cat
        .load_keyring(&DekCache::new(root.clone()), false)
        .await
        .unwrap();
    assert_eq!(fingerprints(&after), fingerprints(&ring));
    assert_eq!(&after.decrypt(&value, &[]).unwrap()[..], b"under v1");
    // Version 1 can be retired in transit now: everything is on version 2.
    b.post(
        &format!("{}/keys/{key}/config", b.mount),
        &b.root_token,
        serde_json::json!({ "min_decryption_version": 2 }),
    )
    .await
    .unwrap();
    cat.load_keyring(&DekCache::new(root.clone()), false)
        .await
        .unwrap();

    // A revoked token: invalid_credentials, nothing written.
    let before = db.load_catalog("kms-test").await.unwrap();
    b.revoke_token(&token).await;
    let e = cat
        .rotate_kek_with(root.as_ref(), rewrap_only.as_ref(), false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "invalid_credentials", "{e}");
    assert!(!e.to_string().contains(&token), "{e}");
    assert_eq!(db.load_catalog("kms-test").await.unwrap(), before);

    // The same key at an address where nothing listens: unreachable.
    let dead_addr = format!("http://127.0.0.1:{}", common::free_port());
    let dead = transit(&dead_addr, &b.mount, &key, &b.root_token);
    let e = cat
        .rotate_kek_with(dead.as_ref(), dead.as_ref(), false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unreachable", "{e}");
    assert!(e.to_string().contains(&dead_addr), "{e}");
    assert_eq!(db.load_catalog("kms-test").await.unwrap(), before);

    // Half-way failure: the last blob's ciphertext is damaged; the first two
    // were rewrapped by the server, yet nothing is written.
    let mut bad = before[2].clone();
    let mut blob: serde_json::Value =
        serde_json::from_str(bad.wrapped_dek.as_deref().unwrap()).unwrap();
    blob["ciphertext"] = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        b"vault:v2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    .into();
    bad.wrapped_dek = Some(blob.to_string());
    bad.revision += 1;
    db.write_catalog(&[CatalogWrite {
        expected_revision: Some(before[2].revision),
        row: bad,
    }])
    .await
    .unwrap();
    let before = db.load_catalog("kms-test").await.unwrap();
    let e = cat
        .rotate_kek_with(root.as_ref(), root.as_ref(), false)
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), "wrong_context" | "backend"), "{e}");
    assert_eq!(db.load_catalog("kms-test").await.unwrap(), before);

    // The same failure after --new-version created version 3: still
    // nothing written, same kind, and the error says the version exists.
    let e = cat
        .rotate_kek_with(root.as_ref(), root.as_ref(), true)
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), "wrong_context" | "backend"), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("new KEK version") && msg.contains("rerun without --new-version"),
        "{msg}"
    );
    assert_eq!(db.load_catalog("kms-test").await.unwrap(), before);
}

/// Blobs bound as transit associated data: transit's rewrap cannot carry
/// the context, so they are unwrapped (the server checks the context) and
/// wrapped again with it embedded; a blob copied onto another key's row is
/// refused as wrong_context and nothing is written.
#[tokio::test]
async fn transit_aad_blobs_fall_back_and_check_the_context() {
    let Some(b) = common::bao("transit_aad_blobs_fall_back_and_check_the_context").await else {
        return;
    };
    let key = b.create_key().await;
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir).await;
    let mut c = TransitConfig::new(&b.addr, &key);
    c.mount = b.mount.clone();
    c.token = Some(SecretSource::Value(b.root_token.as_str().into()));
    c.binding = keyturn_kms::ContextBinding::Aad;
    let aad: Arc<dyn KekProvider> = Arc::new(TransitKek::new(c).unwrap());
    let embedded = transit(&b.addr, &b.mount, &key, &b.root_token);
    let cat = catalog_with_keys(&db, aad.as_ref(), 3).await;
    let ring = cat
        .load_keyring(&DekCache::new(aad.clone()), false)
        .await
        .unwrap();

    // Swap two rows' blobs: the unwrap under the old KEK refuses it.
    let rows = db.load_catalog("kms-test").await.unwrap();
    let mut swapped = rows[1].clone();
    swapped.wrapped_dek = rows[2].wrapped_dek.clone();
    swapped.revision += 1;
    db.write_catalog(&[CatalogWrite {
        expected_revision: Some(rows[1].revision),
        row: swapped,
    }])
    .await
    .unwrap();
    let before = db.load_catalog("kms-test").await.unwrap();
    let e = cat
        .rotate_kek_with(aad.as_ref(), embedded.as_ref(), false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "wrong_context", "{e}");
    assert!(e.to_string().contains("k1"), "{e}");
    assert_eq!(db.load_catalog("kms-test").await.unwrap(), before);
    // Put it back, then rotate: all three through keyturn, with a warning.
    let mut fixed = before[1].clone();
    fixed.wrapped_dek = rows[1].wrapped_dek.clone();
    fixed.revision += 1;
    db.write_catalog(&[CatalogWrite {
        expected_revision: Some(before[1].revision),
        row: fixed,
    }])
    .await
    .unwrap();
    let r = cat
        .rotate_kek_with(aad.as_ref(), embedded.as_ref(), false)
        .await
        .unwrap();
    assert_eq!((r.in_kms, r.unwrap_wrap), (0, 3), "{r:?}");
    assert!(
        r.warnings[0].contains("associated data"),
        "{:?}",
        r.warnings
    );
    // Now embedded: the next rotation stays inside transit.
    b.rotate_key(&key).await;
    let r = cat
        .rotate_kek_with(embedded.as_ref(), embedded.as_ref(), false)
        .await
        .unwrap();
    assert_eq!((r.in_kms, r.unwrap_wrap), (3, 0), "{r:?}");
    assert!(r.entries.iter().all(|e| e.kek.ends_with("(version 2)")));
    let after = cat
        .load_keyring(&DekCache::new(embedded.clone()), false)
        .await
        .unwrap();
    assert_eq!(fingerprints(&after), fingerprints(&ring));
}

/// AWS KMS (moto): key A to key B in the same region is a `ReEncrypt` per
/// DEK (no Decrypt/Encrypt through keyturn); a blob copied onto another
/// key's row is refused by KMS (wrong_context) and an unreachable endpoint
/// fails fast, both writing nothing; a local KEK to AWS unwraps and wraps.
#[tokio::test]
async fn aws_reencrypt_inside_kms() {
    let Some(url) = common::moto_url("aws_reencrypt_inside_kms") else {
        return;
    };
    let cfg = |key_id: &str, endpoint: &str| {
        let mut c = AwsKmsConfig::new(key_id);
        c.endpoint_url = Some(endpoint.to_owned());
        c.region = Some("us-east-1".into());
        c.credentials = AwsCredentials::Static {
            access_key_id: "test".into(),
            secret_access_key: "test-secret".into(),
            session_token: None,
        };
        c.max_attempts = 1;
        c.connect_timeout = Duration::from_secs(2);
        c
    };
    let admin = AwsKmsKek::connect(cfg("unused", &url)).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let out = admin.client().create_key().send().await.expect("CreateKey");
        ids.push(out.key_metadata().unwrap().arn().unwrap().to_owned());
    }
    let a: Arc<dyn KekProvider> = Arc::new(AwsKmsKek::connect(cfg(&ids[0], &url)).await.unwrap());
    let b_inner: Arc<dyn KekProvider> =
        Arc::new(AwsKmsKek::connect(cfg(&ids[1], &url)).await.unwrap());
    let b = Counting::new(b_inner.clone());

    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir).await;
    let cat = catalog_with_keys(&db, a.as_ref(), 3).await;
    let ring = cat
        .load_keyring(&DekCache::new(a.clone()), false)
        .await
        .unwrap();

    // Swapped blobs: ReEncrypt checks the source encryption context.
    let rows = db.load_catalog("kms-test").await.unwrap();
    let mut swapped = rows[2].clone();
    swapped.wrapped_dek = rows[0].wrapped_dek.clone();
    swapped.revision += 1;
    db.write_catalog(&[CatalogWrite {
        expected_revision: Some(rows[2].revision),
        row: swapped,
    }])
    .await
    .unwrap();
    let before = db.load_catalog("kms-test").await.unwrap();
    let e = cat
        .rotate_kek_with(a.as_ref(), b.as_ref(), false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "wrong_context", "{e}");
    assert!(e.to_string().contains("k2"), "{e}");
    assert_eq!(db.load_catalog("kms-test").await.unwrap(), before);
    let mut fixed = before[2].clone();
    fixed.wrapped_dek = rows[2].wrapped_dek.clone();
    fixed.revision += 1;
    db.write_catalog(&[CatalogWrite {
        expected_revision: Some(before[2].revision),
        row: fixed,
    }])
    .await
    .unwrap();

    // Unreachable endpoint (same "KMS" for both ends): nothing written.
    let before = db.load_catalog("kms-test").await.unwrap();
    let dead_url = format!("http://127.0.0.1:{}", common::free_port());
    let dead_a: Arc<dyn KekProvider> =
        Arc::new(AwsKmsKek::connect(cfg(&ids[0], &dead_url)).await.unwrap());
    let dead_b: Arc<dyn KekProvider> =
        Arc::new(AwsKmsKek::connect(cfg(&ids[1], &dead_url)).await.unwrap());
    let e = cat
        .rotate_kek_with(dead_a.as_ref(), dead_b.as_ref(), false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unreachable", "{e}");
    assert_eq!(db.load_catalog("kms-test").await.unwrap(), before);

    // A to B: ReEncrypt, no DEK through keyturn.
    let r = cat
        .rotate_kek_with(a.as_ref(), b.as_ref(), false)
        .await
        .unwrap();
    assert_eq!((r.in_kms, r.unwrap_wrap), (3, 0), "{r:?}");
    assert_eq!(b.plaintext_calls(), 0);
    assert!(r.entries.iter().all(|e| e.kek.contains(&ids[1])), "{r:?}");
    let after = cat
        .load_keyring(&DekCache::new(b_inner.clone()), false)
        .await
        .unwrap();
    assert_eq!(fingerprints(&after), fingerprints(&ring));
    // Key A no longer unwraps them.
    let e = cat
        .load_keyring(&DekCache::new(a.clone()), false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "wrong_kek", "{e}");
    // --new-version is transit's; AWS says what to do instead.
    let e = cat
        .rotate_kek_with(b_inner.as_ref(), a.as_ref(), true)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "config", "{e}");
    assert!(e.to_string().contains("rotates key material itself"), "{e}");

    // Local to AWS: another provider, unwrap + wrap (and checked).
    let l = local();
    let cat2 = Catalog::open(db.clone(), "kms-test-2", Policy::default())
        .await
        .unwrap();
    cat2.add(
        l.as_ref(),
        &KeyId::new("k0").unwrap(),
        &SecretKey::generate(Algorithm::Aes256Gcm).unwrap(),
    )
    .await
    .unwrap();
    let r = cat2
        .rotate_kek_with(l.as_ref(), a.as_ref(), false)
        .await
        .unwrap();
    assert_eq!((r.in_kms, r.unwrap_wrap), (0, 1), "{r:?}");
}
