//! Tracked application instances and interval refresh, against SQLite
//! always and PostgreSQL / MariaDB when reachable (`KEYTURN_TEST_POSTGRES_URL`,
//! `KEYTURN_TEST_MYSQL_URL`; skipped loudly unless `KEYTURN_REQUIRE_DBS=1`).

use keyturn_catalog::{AppKeyring, Catalog, Policy};
use keyturn_db::{ConnectOptions, Database};
use keyturn_format::{Algorithm, Encoding, KeyId, SecretKey};
use keyturn_kms::{KekProvider, LocalKek};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
            max_connections: 4,
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
            Err(e) => eprintln!("SKIPPED {name} instance tests: {e}"),
        }
    }
    out
}

async fn add(cat: &Catalog, kek: &dyn KekProvider, id: &str) -> SecretKey {
    let key = SecretKey::generate(Algorithm::Aes256Gcm).unwrap();
    cat.add(kek, &kid(id), &key).await.unwrap();
    key
}

async fn make_stale(db: &dyn Database, instance_id: &str) {
    db.execute_script(&format!(
        "UPDATE keyturn_instances SET last_seen = '2000-01-01T00:00:00Z' WHERE instance_id = '{instance_id}'"
    ))
    .await
    .unwrap();
}

/// pending key added → a tracked instance without it blocks promote (named)
/// → it refreshes → promote allowed; a stale instance is ignored and
/// listed as stale; --force overrides with a warning naming who lacks the
/// key; untrack and prune remove rows.
async fn promote_waits_for_instances(backend: &str, db: Arc<dyn Database>) {
    let name = unique("inst");
    let kek = local("mk");
    let cat = Catalog::open(db.clone(), &name, Policy::default())
        .await
        .unwrap();
    let k1 = add(&cat, kek.as_ref(), "k1").await;
    // Nobody tracked yet: promote warns that nothing was checked.
    let out = cat.promote("k1").await.unwrap();
    assert!(
        out.warnings[0].contains("every reader must have loaded it"),
        "{:?}",
        out.warnings
    );
    assert!(cat.instances().await.unwrap().is_empty());

    let web = AppKeyring::open(db.clone(), &name, kek.clone())
        .await
        .unwrap();
    let web_id = web.track_instance("web").await.unwrap();
    assert_eq!(web.instance_id().as_deref(), Some(web_id.as_str()));
    let list = cat.instances().await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let me = &list[0];
    assert!(me.live, "{me:?}");
    assert_eq!(
        (me.label.as_str(), me.pid, me.primary.as_str()),
        ("web", i64::from(std::process::id()), "k1")
    );
    assert_eq!(me.key_ids, vec!["k1"]);
    assert!(me.seconds_since_seen.abs() < 60, "{me:?}");
    assert_eq!(me.first_seen, me.last_seen);

    // k2 pending: web has not refreshed, so promote is refused, naming it.
    let k2 = add(&cat, kek.as_ref(), "k2").await;
    let before = db.load_catalog(&name).await.unwrap();
    let e = cat.promote("k2").await.unwrap_err();
    assert_eq!(e.kind(), "instances_missing_key", "{e}");
    let msg = e.to_string();
    for part in [
        "web (host ",
        &format!("pid {}", std::process::id()),
        "last seen",
        "holds k1)",
        "--force",
    ] {
        assert!(msg.contains(part), "{part:?} not in {msg}");
    }
    assert_eq!(db.load_catalog(&name).await.unwrap(), before);

    // web refreshes (heartbeat with k2): promote goes through.
    web.refresh().await.unwrap();
    let me = &cat.instances().await.unwrap()[0];
    assert_eq!(me.key_ids, vec!["k1", "k2"]);
    let out = cat.promote("k2").await.unwrap();
    assert!(
        out.warnings[0].contains("all 1 live tracked"),
        "{:?}",
        out.warnings
    );
    // The application's primary follows on its next refresh.
    assert_eq!(web.keyring().await.primary_id().as_str(), "k1");
    web.refresh().await.unwrap();
    assert_eq!(web.keyring().await.primary_id().as_str(), "k2");

    // A second instance that stops heartbeating: stale, ignored, listed.
    let batch = AppKeyring::open(db.clone(), &name, kek.clone())
        .await
        .unwrap();
    let batch_id = batch.track_instance("batch").await.unwrap();
    assert_ne!(batch_id, web_id);
    make_stale(db.as_ref(), &batch_id).await;
    let list = cat.instances().await.unwrap();
    let stale = list.iter().find(|i| i.label == "batch").unwrap();
    assert!(!stale.live, "{stale:?}");
    assert!(list.iter().find(|i| i.label == "web").unwrap().live);
    add(&cat, kek.as_ref(), "k3").await;
    let e = cat.promote("k3").await.unwrap_err();
    assert!(
        e.to_string().contains("web (") && !e.to_string().contains("batch"),
        "{e}"
    );
    web.refresh().await.unwrap();
    let out = cat.promote("k3").await.unwrap();
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("stale") && w.contains("batch (")),
        "{:?}",
        out.warnings
    );

    // --force: promoted although web lacks k4, and the warning names it.
    add(&cat, kek.as_ref(), "k4").await;
    let out = cat.promote_with("k4", true).await.unwrap();
    assert!(
        out.warnings[0].starts_with("--force") && out.warnings[0].contains("web ("),
        "{:?}",
        out.warnings
    );
    assert_eq!(
        cat.list()
            .await
            .unwrap()
            .iter()
            .find(|e| e.id == "k4")
            .unwrap()
            .state
            .name(),
        "primary"
    );

    // Nothing about the keys but ids and fingerprints in the rows.
    let json = serde_json::to_string(&cat.instances().await.unwrap()).unwrap();
    for k in [&k1, &k2] {
        assert!(!json.contains(&hex::encode(k.expose_bytes())), "{json}");
    }

    // Clean shutdown removes the row; prune removes the stale one.
    assert!(web.untrack().await.unwrap());
    assert!(!web.untrack().await.unwrap());
    let pruned = cat.prune_instances().await.unwrap();
    assert_eq!(
        pruned.iter().map(|i| i.label.as_str()).collect::<Vec<_>>(),
        vec!["batch"]
    );
    assert!(cat.instances().await.unwrap().is_empty());
    // Untracked: refresh sends no heartbeat.
    web.refresh().await.unwrap();
    assert!(cat.instances().await.unwrap().is_empty());
    eprintln!("instance tracking ok on {backend}");
}

#[tokio::test]
async fn sqlite_promote_waits_for_instances() {
    let dir = tempfile::tempdir().unwrap();
    promote_waits_for_instances("sqlite", sqlite(&dir).await).await;
}

#[tokio::test]
async fn servers_promote_waits_for_instances() {
    for (name, db) in servers().await {
        promote_waits_for_instances(name, db.clone()).await;
        db.close().await;
    }
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A promoted key reaches a long-running process through the background
/// refresh, without any call to `refresh`; errors keep the old keyring and
/// are reported; dropping the handle stops it.
async fn interval_refresh(db: Arc<dyn Database>) {
    let name = unique("refresh");
    let kek = local("mk");
    let cat = Catalog::open(db.clone(), &name, Policy::default())
        .await
        .unwrap();
    add(&cat, kek.as_ref(), "k1").await;
    cat.promote("k1").await.unwrap();
    let app = Arc::new(
        AppKeyring::open(db.clone(), &name, kek.clone())
            .await
            .unwrap(),
    );
    app.track_instance("long-running").await.unwrap();
    let every = Duration::from_millis(100);
    let handle = app.spawn_refresh(every).unwrap();
    assert!(handle.is_running());
    let under_k1 = app
        .keyring()
        .await
        .encrypt(b"before", &[], Encoding::Text)
        .unwrap();

    // The pending key reaches the instance's heartbeat by itself, so the
    // promote that follows is allowed.
    add(&cat, kek.as_ref(), "k2").await;
    wait_for("heartbeat with k2", Duration::from_secs(10), || async {
        cat.instances().await.unwrap()[0]
            .key_ids
            .contains(&"k2".to_string())
    })
    .await;
    let promoted = Instant::now();
    cat.promote("k2").await.unwrap();
    wait_for("primary k2 in the app", Duration::from_secs(10), || async {
        app.keyring().await.primary_id().as_str() == "k2"
    })
    .await;
    eprintln!(
        "primary reached the app {:?} after promote (interval {every:?})",
        promoted.elapsed()
    );
    assert!(app.last_refresh_error().is_none());

    // A key wrapped under another KEK: refreshes fail with a clear error,
    // the previous keyring stays in use.
    add(&cat, local("other").as_ref(), "k3").await;
    wait_for("refresh error", Duration::from_secs(10), || async {
        app.last_refresh_error().is_some()
    })
    .await;
    let err = app.last_refresh_error().unwrap();
    assert_eq!(err.kind, "wrong_kek", "{err:?}");
    assert!(err.message.contains("KEK"), "{err:?}");
    let ring = app.keyring().await;
    assert_eq!(ring.primary_id().as_str(), "k2");
    assert_eq!(&ring.decrypt(&under_k1, &[]).unwrap()[..], b"before");
    // The instance keeps its heartbeat (with the keys it does hold).
    let seen = cat.instances().await.unwrap()[0].clone();
    assert!(seen.live && !seen.key_ids.contains(&"k3".to_string()));

    // Stopped: no more refreshes.
    handle.stop();
    let errors_at = app.last_refresh_error().unwrap().at;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.last_refresh_error().unwrap().at, errors_at);

    // Dropping the last Arc ends a task whose handle is still alive.
    let weak = Arc::downgrade(&app);
    let handle = app.spawn_refresh(every).unwrap();
    drop(app);
    wait_for("task ends", Duration::from_secs(10), || async {
        !handle.is_running()
    })
    .await;
    assert!(weak.upgrade().is_none());
}

#[tokio::test]
async fn sqlite_interval_refresh() {
    let dir = tempfile::tempdir().unwrap();
    interval_refresh(sqlite(&dir).await).await;
}

#[tokio::test]
async fn servers_interval_refresh() {
    for (_, db) in servers().await {
        interval_refresh(db.clone()).await;
        db.close().await;
    }
}

#[test]
fn spawn_refresh_needs_a_runtime_and_a_sane_interval() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kek = local("mk");
    let app = rt.block_on(async {
        let db = sqlite(&dir).await;
        let cat = Catalog::open(db.clone(), "c", Policy::default())
            .await
            .unwrap();
        add(&cat, kek.as_ref(), "k1").await;
        cat.promote("k1").await.unwrap();
        let app = Arc::new(AppKeyring::open(db, "c", kek.clone()).await.unwrap());
        let e = app.spawn_refresh(Duration::from_millis(1)).unwrap_err();
        assert!(e.to_string().contains("at least 10 ms"), "{e}");
        let e = app.track_instance("").await.unwrap_err();
        assert_eq!(e.kind(), "config", "{e}");
        app
    });
    let e = app.spawn_refresh(Duration::from_secs(1)).unwrap_err();
    assert!(e.to_string().contains("Tokio runtime"), "{e}");
}
