//! Deterministic tests of the pipeline's compare-and-swap handling, on
//! SQLite: a `Database` wrapper plays the application, changing rows between
//! keyturn's read and its write. The application's value must always win.

use async_trait::async_trait;
use keyturn_db::testing::{BeforeWrite, WithWriteHook};
use keyturn_db::{CasUpdate, ColumnRef, ConnectOptions, Database, DbError, Pk, PkValue};
use keyturn_engine::{NoProgress, Operation, RunOptions};
use keyturn_format::{Algorithm, Encoding, KeyId, KeyState, Keyring, SecretKey};
use keyturn_ops::Config;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn key(b: u8) -> SecretKey {
    SecretKey::from_bytes(Algorithm::Aes256Gcm, &[b; 32]).unwrap()
}

fn ring(primary: &str) -> Keyring {
    let (s1, s2) = if primary == "k1" {
        (KeyState::Primary, KeyState::DecryptOnly)
    } else {
        (KeyState::DecryptOnly, KeyState::Primary)
    };
    Keyring::builder()
        .add(KeyId::new("k1").unwrap(), key(1), s1)
        .add(KeyId::new("k2").unwrap(), key(2), s2)
        .build()
        .unwrap()
}

/// What the "application" does just before keyturn's write of a batch.
type AppWrite = Box<
    dyn Fn(&dyn Database, &ColumnRef, &[CasUpdate]) -> Vec<(Pk, Option<Vec<u8>>)> + Send + Sync,
>;

/// The application, run before each batch write: changes the rows `app`
/// picks, before the first `rounds` writes.
struct App {
    rounds: AtomicUsize,
    app: AppWrite,
    log: Mutex<Vec<String>>,
}

#[async_trait]
impl BeforeWrite for App {
    async fn before_write(
        &self,
        db: &dyn Database,
        col: &ColumnRef,
        updates: &[CasUpdate],
    ) -> Result<(), DbError> {
        if self.rounds.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        let changes = (self.app)(db, col, updates);
        if !changes.is_empty() {
            self.rounds.fetch_sub(1, Ordering::SeqCst);
        }
        for (pk, value) in changes {
            let id = match &pk[0] {
                PkValue::Int(i) => *i,
                other => panic!("integer keys only: {other:?}"),
            };
            let sql = match &value {
                Some(v) => format!(
                    "UPDATE t SET c = '{}' WHERE id = {id}",
                    String::from_utf8(v.clone()).unwrap()
                ),
                None => format!("UPDATE t SET c = NULL WHERE id = {id}"),
            };
            db.execute_script(&sql).await?;
            self.log.lock().unwrap().push(format!("app wrote row {id}"));
        }
        Ok(())
    }
}

const CONFIG: &str = r#"
[database]
url = "sqlite://unused"
[keys]
sources = ["env:UNUSED"]
[[target]]
table = "t"
primary_key = "id"
columns = [{ name = "c", encoding = "text" }]
"#;

async fn setup(rows: i64) -> (tempfile::TempDir, Arc<dyn Database>, Keyring) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let db = keyturn_db::connect(
        &url,
        &ConnectOptions {
            max_connections: 4,
            create_if_missing: true,
        },
    )
    .await
    .unwrap();
    db.execute_script("CREATE TABLE t (id INTEGER PRIMARY KEY, c TEXT)")
        .await
        .unwrap();
    let k1 = ring("k1");
    for id in 1..=rows {
        let v = k1
            .encrypt(format!("value {id}").as_bytes(), &[], Encoding::Text)
            .unwrap();
        db.execute_script(&format!(
            "INSERT INTO t VALUES ({id}, '{}')",
            String::from_utf8(v).unwrap()
        ))
        .await
        .unwrap();
    }
    (dir, db, ring("k2"))
}

async fn rotate(db: Arc<dyn Database>, r: Arc<Keyring>) -> keyturn_engine::RunSummary {
    let cfg = Config::parse(CONFIG).unwrap();
    let rings = keyturn_engine::plan::Rings {
        default: Some(r),
        named: Default::default(),
        servers: Default::default(),
    };
    let plan = keyturn_engine::plan::resolve(db.as_ref(), &cfg.targets, Some(&rings), None, None)
        .await
        .unwrap();
    keyturn_engine::run::run(
        db,
        &plan,
        Operation::Rotate,
        RunOptions {
            batch_size: 10,
            workers: 1,
            max_rows_per_sec: None,
            dry_run: false,
            actor: "test".into(),
            skip_unknown_keys: false,
        },
        Arc::new(NoProgress),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap()
}

async fn values(db: &dyn Database) -> Vec<(i64, Option<Vec<u8>>)> {
    let cfg = Config::parse(CONFIG).unwrap();
    let rings = keyturn_engine::plan::Rings {
        default: Some(Arc::new(ring("k2"))),
        named: Default::default(),
        servers: Default::default(),
    };
    let plan = keyturn_engine::plan::resolve(db, &cfg.targets, Some(&rings), None, None)
        .await
        .unwrap();
    let pks: Vec<Pk> = (1..=40).map(|i| vec![PkValue::Int(i)]).collect();
    let mut v: Vec<(i64, Option<Vec<u8>>)> = db
        .fetch_rows(&plan.columns[0].col, &pks)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let id = if let PkValue::Int(i) = r.pk[0] { i } else { 0 };
            (id, Some(r.value))
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn application_writes_between_read_and_write_are_never_overwritten() {
    let (_dir, inner, k2) = setup(40).await;
    let k2 = Arc::new(k2);
    let app_ring = Arc::new(ring("k1"));
    let ar = app_ring.clone();
    // Before the first two batch writes, the application rewrites the first
    // row of the batch under the OLD key (an instance not yet rolled out),
    // the second under the NEW key, and sets the third to NULL.
    let meddler = Arc::new(WithWriteHook::new(
        inner.clone(),
        App {
            rounds: AtomicUsize::new(2),
            app: Box::new(move |_, _, updates| {
                if updates.len() < 3 {
                    return Vec::new();
                }
                let id = |u: &CasUpdate| if let PkValue::Int(i) = u.pk[0] { i } else { 0 };
                vec![
                    (
                        updates[0].pk.clone(),
                        Some(
                            ar.encrypt(
                                format!("app {}", id(&updates[0])).as_bytes(),
                                &[],
                                Encoding::Text,
                            )
                            .unwrap(),
                        ),
                    ),
                    (
                        updates[1].pk.clone(),
                        Some(
                            ring("k2")
                                .encrypt(
                                    format!("app {}", id(&updates[1])).as_bytes(),
                                    &[],
                                    Encoding::Text,
                                )
                                .unwrap(),
                        ),
                    ),
                    (updates[2].pk.clone(), None),
                ]
            }),
            log: Mutex::new(Vec::new()),
        },
    ));
    let summary = rotate(meddler.clone(), k2.clone()).await;
    let c = &summary.columns[0];
    assert_eq!(c.failed, 0, "{summary:?}");
    // Per meddled batch: the row rewritten under k1 and the one under k2 are
    // re-read and retried; the k2 one and the NULLed one end up skipped.
    assert_eq!((c.retried, c.skipped, c.written), (4, 4, 36), "{summary:?}");
    let app_rows = [1i64, 2, 11, 12];
    for (id, v) in values(inner.as_ref()).await {
        match id {
            3 | 13 => assert!(v.is_none(), "row {id}: the application's NULL must stay"),
            _ => {
                let v = v.unwrap();
                assert!(v.starts_with(b"kt1:k2:"), "row {id} not rotated");
                let plain = k2.decrypt(&v, &[]).unwrap();
                let want = if app_rows.contains(&id) {
                    format!("app {id}")
                } else {
                    format!("value {id}")
                };
                assert_eq!(String::from_utf8(plain.to_vec()).unwrap(), want, "row {id}");
            }
        }
    }
    assert_eq!(meddler.hook().log.lock().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_that_keeps_changing_is_reported_not_overwritten() {
    let (_dir, inner, k2) = setup(5).await;
    let k2 = Arc::new(k2);
    let counter = Arc::new(AtomicUsize::new(0));
    let cnt = counter.clone();
    // The application rewrites row 1 under the old key before every write.
    let meddler = Arc::new(WithWriteHook::new(
        inner.clone(),
        App {
            rounds: AtomicUsize::new(usize::MAX),
            app: Box::new(move |_, _, updates| {
                let n = cnt.fetch_add(1, Ordering::SeqCst);
                updates
                    .iter()
                    .filter(|u| u.pk[0] == PkValue::Int(1))
                    .map(|u| {
                        (
                            u.pk.clone(),
                            Some(
                                ring("k1")
                                    .encrypt(format!("busy {n}").as_bytes(), &[], Encoding::Text)
                                    .unwrap(),
                            ),
                        )
                    })
                    .collect()
            }),
            log: Mutex::new(Vec::new()),
        },
    ));
    let summary = rotate(meddler, k2.clone()).await;
    assert_eq!(summary.columns[0].failed, 1, "{summary:?}");
    assert_eq!(summary.bad_rows[0].pk, "1");
    assert!(
        summary.bad_rows[0]
            .reason
            .contains("changed by the application"),
        "{:?}",
        summary.bad_rows[0]
    );
    let vals = values(inner.as_ref()).await;
    // Row 1 holds the application's last value, still under k1, decryptable.
    let last = format!("busy {}", counter.load(Ordering::SeqCst) - 1);
    let v1 = vals[0].1.as_ref().unwrap();
    assert_eq!(
        String::from_utf8(ring("k1").decrypt(v1, &[]).unwrap().to_vec()).unwrap(),
        last
    );
    for (id, v) in &vals[1..] {
        assert!(v.as_ref().unwrap().starts_with(b"kt1:k2:"), "row {id}");
    }
}
