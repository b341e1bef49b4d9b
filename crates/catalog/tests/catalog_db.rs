//! The catalog against real databases: SQLite always, PostgreSQL and
//! MariaDB when reachable (`KEYTURN_TEST_POSTGRES_URL`,
//! `KEYTURN_TEST_MYSQL_URL`; skipped loudly unless `KEYTURN_REQUIRE_DBS=1`).

use base64::Engine as _;
use keyturn_catalog::{Catalog, LifecycleState, Policy};
use keyturn_db::{CatalogWrite, ConnectOptions, Database};
use keyturn_format::{Algorithm, Encoding, KeyId, SecretKey};
use keyturn_kms::{DekCache, KekProvider, LocalKek};
use std::sync::Arc;

fn kid(s: &str) -> KeyId {
    KeyId::new(s).unwrap()
}

fn local(name: &str) -> Arc<dyn KekProvider> {
    Arc::new(LocalKek::generate(kid(name)).unwrap().0)
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

async fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn Database> {
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    keyturn_db::connect(
        &url,
        &ConnectOptions {
            max_connections: 2,
            create_if_missing: true,
            lock_timeout: None,
        },
    )
    .await
    .unwrap()
}

/// The servers that are reachable, with a loud message for the others.
async fn servers() -> Vec<(&'static str, Arc<dyn Database>)> {
    let require = std::env::var("KEYTURN_REQUIRE_DBS").is_ok_and(|v| v == "1");
    let mut out = Vec::new();
    for (name, var, default) in [
        (
            "postgres",
            "KEYTURN_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        ),
        (
            "mysql",
            "KEYTURN_TEST_MYSQL_URL",
            "mysql://root@127.0.0.1:3306/test",
        ),
    ] {
        let url = std::env::var(var).unwrap_or_else(|_| default.to_owned());
        match keyturn_db::connect(&url, &ConnectOptions::default()).await {
            Ok(db) => out.push((name, db)),
            Err(e) if require => panic!("{name} required (KEYTURN_REQUIRE_DBS=1) but: {e}"),
            Err(e) => eprintln!("SKIPPED {name} catalog tests: {e}"),
        }
    }
    out
}

fn no_key_bytes(text: &str, keys: &[&SecretKey]) {
    for k in keys {
        let b = k.expose_bytes();
        for enc in [
            base64::engine::general_purpose::STANDARD.encode(b),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
            hex::encode(b),
        ] {
            assert!(!text.contains(&enc), "key material leaked into {text}");
        }
    }
}

/// add → promote → add → promote → retire → destroy, with every refusal on
/// the way, then rollback and the compromised flag.
async fn lifecycle(db: Arc<dyn Database>) {
    let name = unique("life");
    let kek = local("mk");
    let cat = Catalog::open(db.clone(), &name, Policy::default())
        .await
        .unwrap();
    let k1 = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
    let k2 = SecretKey::generate(Algorithm::XChaCha20Poly1305).unwrap();
    cat.add(kek.as_ref(), &kid("k1"), &k1).await.unwrap();
    let e = cat.add(kek.as_ref(), &kid("k1"), &k2).await.unwrap_err();
    assert_eq!(e.kind(), "already_exists");
    // No primary yet: no keyring.
    let cache = DekCache::new(kek.clone());
    let e = cat.load_keyring(&cache, false).await.unwrap_err();
    assert!(e.to_string().contains("no current key"), "{e}");

    let out = cat.promote("k1").await.unwrap();
    assert!(out.warnings[0].contains("every reader"));
    cat.add(kek.as_ref(), &kid("k2"), &k2).await.unwrap();
    let ring = cat.load_keyring(&cache, false).await.unwrap();
    assert_eq!(ring.primary_id().as_str(), "k1");
    let under_k1 = ring.encrypt(b"hello", &[], Encoding::Text).unwrap();

    let out = cat.promote("k2").await.unwrap();
    let states: Vec<_> = out
        .changed
        .iter()
        .map(|e| (e.id.as_str(), e.state))
        .collect();
    assert_eq!(
        states,
        vec![
            ("k1", LifecycleState::DecryptOnly),
            ("k2", LifecycleState::Primary)
        ]
    );
    let ring = cat.load_keyring(&cache, false).await.unwrap();
    assert_eq!(ring.primary_id().as_str(), "k2");
    // One KMS call per DEK, not per load.
    assert_eq!(cache.kms_calls(), 2);
    let under_k2 = ring.encrypt(b"world", &[], Encoding::Text).unwrap();

    // Rollback: promote k1 back; values under k2 stay readable.
    cat.promote("k1").await.unwrap();
    let ring = cat.load_keyring(&cache, false).await.unwrap();
    assert_eq!(ring.primary_id().as_str(), "k1");
    assert_eq!(&ring.decrypt(&under_k2, &[]).unwrap()[..], b"world");
    cat.promote("k2").await.unwrap();

    // Retire: primary, rows, safety period.
    assert_eq!(
        cat.retire("k2", &[], true).await.unwrap_err().kind(),
        "is_primary"
    );
    let rows = vec![("patients.phone".to_string(), 7)];
    let e = cat.retire("k1", &rows, false).await.unwrap_err();
    assert_eq!(e.kind(), "rows_remain");
    assert!(e.to_string().contains("patients.phone: 7"), "{e}");
    assert_eq!(
        cat.retire("k1", &[], false).await.unwrap_err().kind(),
        "safety_period"
    );
    // A catalog with no safety period / retention (same table, same rows).
    let quick = Catalog::open(
        db.clone(),
        &name,
        Policy {
            safety_period: time::Duration::ZERO,
            retention: time::Duration::days(30),
            ..Policy::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        quick.destroy("k1", true).await.unwrap_err().kind(),
        "not_retired"
    );
    quick.retire("k1", &[], false).await.unwrap();
    let ring = cat.load_keyring(&cache, false).await.unwrap();
    assert_eq!(
        ring.decrypt(&under_k1, &[]).unwrap_err().to_string(),
        keyturn_format::FormatError::KeyRetired("k1".into()).to_string()
    );
    // Restore, then retire again.
    quick.restore("k1", false).await.unwrap();
    assert_eq!(
        &cat.load_keyring(&cache, false)
            .await
            .unwrap()
            .decrypt(&under_k1, &[])
            .unwrap()[..],
        b"hello"
    );
    quick.retire("k1", &[], false).await.unwrap();
    assert_eq!(
        quick.destroy("k1", false).await.unwrap_err().kind(),
        "retention_period"
    );
    let out = quick.destroy("k1", true).await.unwrap();
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("never be decrypted"))
    );
    assert_eq!(
        quick.restore("k1", true).await.unwrap_err().kind(),
        "destroyed"
    );

    // Compromised: flagged, never promoted again.
    cat.add(
        kek.as_ref(),
        &kid("k3"),
        &SecretKey::generate(Algorithm::Aes256Gcm).unwrap(),
    )
    .await
    .unwrap();
    cat.mark_compromised("k3").await.unwrap();
    let e = cat.promote("k3").await.unwrap_err();
    assert_eq!(e.kind(), "compromised");
    let st = cat.self_test(&cache).await;
    assert!(st.ok, "{st:?}");
    cat.mark_compromised("k2").await.unwrap();
    let st = cat.self_test(&cache).await;
    assert!(!st.ok && st.problems[0].contains("compromised"), "{st:?}");

    // The listing: destroyed has no material; nothing leaks.
    let list = cat.list().await.unwrap();
    let k1e = list.iter().find(|e| e.id == "k1").unwrap();
    assert_eq!(k1e.state, LifecycleState::Destroyed);
    assert_eq!(k1e.kek, "destroyed");
    assert!(k1e.wrapped().unwrap().is_none());
    let json = serde_json::to_string(&list).unwrap();
    assert!(json.contains("\"compromised\":true"));
    no_key_bytes(&json, &[&k1, &k2]);
    no_key_bytes(&format!("{list:?}"), &[&k1, &k2]);
    // Stored rows hold no plaintext key either.
    let rows = db.load_catalog(&name).await.unwrap();
    no_key_bytes(&format!("{rows:?}"), &[&k1, &k2]);
}

/// KEK rotation rewraps every DEK in one transaction; failures write nothing.
async fn kek_rotation(db: Arc<dyn Database>) {
    let name = unique("kek");
    let old = local("old");
    let new = local("new");
    let cat = Catalog::open(db.clone(), &name, Policy::default())
        .await
        .unwrap();
    for id in ["a", "b", "c"] {
        cat.add(
            old.as_ref(),
            &kid(id),
            &SecretKey::generate(Algorithm::Aes256Gcm).unwrap(),
        )
        .await
        .unwrap();
    }
    cat.promote("b").await.unwrap();
    let before = db.load_catalog(&name).await.unwrap();

    // Wrong old KEK: refused, nothing written.
    let e = cat
        .rotate_kek(new.as_ref(), old.as_ref())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "wrong_kek", "{e}");
    assert_eq!(db.load_catalog(&name).await.unwrap(), before);

    let ring_before = cat
        .load_keyring(&DekCache::new(old.clone()), false)
        .await
        .unwrap();
    let out = cat.rotate_kek(old.as_ref(), new.as_ref()).await.unwrap();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|e| e.kek.contains("new")));
    let ring_after = cat
        .load_keyring(&DekCache::new(new.clone()), false)
        .await
        .unwrap();
    let fps = |r: &keyturn_format::Keyring| {
        r.keys()
            .map(|(id, s, k)| (id.to_string(), s, k.fingerprint()))
            .collect::<Vec<_>>()
    };
    assert_eq!(fps(&ring_before), fps(&ring_after));
    // The old KEK no longer unwraps anything.
    let e = cat
        .load_keyring(&DekCache::new(old.clone()), false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "wrong_kek");

    // A concurrent change (stale revision) rolls back the whole transaction.
    let rows = db.load_catalog(&name).await.unwrap();
    let mut w1 = rows[0].clone();
    w1.state = "retired".into();
    w1.revision += 1;
    let mut w2 = rows[1].clone();
    w2.revision += 1;
    let e = db
        .write_catalog(&[
            CatalogWrite {
                expected_revision: Some(rows[0].revision),
                row: w1,
            },
            CatalogWrite {
                expected_revision: Some(rows[1].revision - 1),
                row: w2,
            },
        ])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("changed while"), "{e}");
    assert_eq!(db.load_catalog(&name).await.unwrap(), rows);
}

#[tokio::test]
async fn sqlite_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    lifecycle(sqlite(&dir).await).await;
}

#[tokio::test]
async fn sqlite_kek_rotation() {
    let dir = tempfile::tempdir().unwrap();
    kek_rotation(sqlite(&dir).await).await;
}

#[tokio::test]
async fn servers_lifecycle_and_kek_rotation() {
    for (name, db) in servers().await {
        eprintln!("catalog tests on {name}");
        lifecycle(db.clone()).await;
        kek_rotation(db.clone()).await;
        db.close().await;
    }
}

#[tokio::test]
async fn app_keyring_refreshes_and_self_tests() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir).await;
    let kek = local("mk");
    let cat = Catalog::open(db.clone(), "app", Policy::default())
        .await
        .unwrap();
    cat.add(
        kek.as_ref(),
        &kid("k1"),
        &SecretKey::generate(Algorithm::Aes256Gcm).unwrap(),
    )
    .await
    .unwrap();
    cat.promote("k1").await.unwrap();
    let app = keyturn_catalog::AppKeyring::open(db.clone(), "app", kek.clone())
        .await
        .unwrap();
    assert_eq!(app.keyring().await.primary_id().as_str(), "k1");
    cat.add(
        kek.as_ref(),
        &kid("k2"),
        &SecretKey::generate(Algorithm::Aes256Gcm).unwrap(),
    )
    .await
    .unwrap();
    cat.promote("k2").await.unwrap();
    assert_eq!(app.keyring().await.primary_id().as_str(), "k1");
    app.refresh().await.unwrap();
    assert_eq!(app.keyring().await.primary_id().as_str(), "k2");
    assert_eq!(app.kms_calls(), 2);
    let st = app.self_test().await;
    assert!(st.ok && st.primary == "k2" && st.keys_loaded == 2, "{st:?}");

    // Another master key: a clear error, and the handle keeps its ring.
    let wrong = keyturn_catalog::AppKeyring::open(db.clone(), "app", local("mk"))
        .await
        .unwrap_err();
    assert_eq!(wrong.kind(), "wrong_kek", "{wrong}");
}
