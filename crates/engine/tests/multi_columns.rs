//! Multi-column values through the engine, in process on SQLite: an
//! envelope (ciphertext, IV, key-id and wrapped-key columns) encrypted,
//! counted, rotated by re-wrapping in one compare-and-swap per batch, and
//! verified; an application update of one cell between keyturn's read and
//! write is never overwritten. (The same scenarios run against SQLite,
//! PostgreSQL and MariaDB through the binary in crates/cli/tests.)

use async_trait::async_trait;
use base64::Engine as _;
use keyturn_db::testing::{BeforeWrite, WithWriteHook};
use keyturn_db::{CasUpdate, ColumnRef, ConnectOptions, Database, DbError, Pk, PkValue};
use keyturn_engine::plan::Plan;
use keyturn_engine::{NoProgress, Operation, RunOptions, VerifyOptions};
use keyturn_ops::Config;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

fn kek(b: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([b; 32])
}

struct Env {
    _dir: tempfile::TempDir,
    db: Arc<dyn Database>,
    keys: std::path::PathBuf,
    db_path: std::path::PathBuf,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("app.db");
        let keys = dir.path().join("kek.keys");
        std::fs::write(&keys, format!("kek-1={}\nkek-2={}\n", kek(1), kek(2))).unwrap();
        let db = keyturn_db::connect(
            &format!("sqlite://{}", db_path.display()),
            &ConnectOptions {
                max_connections: 4,
                create_if_missing: true,
                lock_timeout: None,
            },
        )
        .await
        .unwrap();
        db.execute_script(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, ssn BLOB, ssn_iv BLOB, ssn_kek TEXT, ssn_dek BLOB, note TEXT)",
        )
        .await
        .unwrap();
        Env {
            _dir: dir,
            db,
            keys,
            db_path,
        }
    }

    fn config(&self, primary: &str, entry_extra: &str) -> Config {
        Config::parse(&format!(
            r#"
[database]
url = "sqlite://{db}"
[keyrings.kms]
sources = ["file:{keys}"]
primary = "{primary}"
[[target]]
table = "accounts"
primary_key = "id"
columns = [{{ name = "ssn", codec = "envelope", keyring = "kms", iv_column = "ssn_iv", key_id_column = "ssn_kek", wrapped_key_column = "ssn_dek"{entry_extra} }}]
"#,
            db = self.db_path.display(),
            keys = self.keys.display()
        ))
        .unwrap()
    }

    async fn plan(&self, db: &dyn Database, primary: &str) -> Plan {
        let cfg = self.config(primary, "");
        let rings = keyturn_ops::load_rings(&cfg, None, None, None).unwrap();
        keyturn_engine::plan::resolve(db, &cfg.targets, Some(&rings), None, None)
            .await
            .unwrap()
    }

    /// Every row's four cells, by id.
    async fn rows(&self) -> Vec<(i64, Option<Vec<u8>>)> {
        let plan = self.plan(self.db.as_ref(), "kek-2").await;
        let pks: Vec<Pk> = (1..=200).map(|i| vec![PkValue::Int(i)]).collect();
        let mut v: Vec<(i64, Option<Vec<u8>>)> = self
            .db
            .fetch_rows(&plan.columns[0].col, &pks)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                let id = if let PkValue::Int(i) = r.pk[0] { i } else { 0 };
                (id, Some(r.value))
            })
            .collect();
        // Rows that hold NULL are absent from fetch_rows: the tables hold
        // ids 1..=N, so every id below the highest one read is a row.
        let top = v.iter().map(|(id, _)| *id).max().unwrap_or(0);
        for i in 1..top {
            if !v.iter().any(|(id, _)| *id == i) {
                v.push((i, None));
            }
        }
        v.sort();
        v
    }
}

fn opts(batch: usize) -> RunOptions {
    RunOptions {
        batch_size: batch,
        workers: 2,
        max_rows_per_sec: None,
        dry_run: false,
        actor: "test".into(),
        skip_unknown_keys: false,
    }
}

async fn run(
    db: Arc<dyn Database>,
    plan: &Plan,
    op: Operation,
    o: RunOptions,
) -> keyturn_engine::RunSummary {
    keyturn_engine::run::run(
        db,
        plan,
        op,
        o,
        Arc::new(NoProgress),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn envelope_rows_are_encrypted_rewrapped_and_verified() {
    let env = Env::new().await;
    // Plaintext in the ciphertext column (the other columns NULL), and rows
    // without a value.
    for id in 1..=120 {
        let v = if id % 10 == 0 {
            "NULL".to_string()
        } else {
            format!("X'{}'", hex(format!("ssn {id:04}").as_bytes()))
        };
        env.db
            .execute_script(&format!(
                "INSERT INTO accounts (id, ssn, note) VALUES ({id}, {v}, 'n{id}')"
            ))
            .await
            .unwrap();
    }
    let p1 = env.plan(env.db.as_ref(), "kek-1").await;
    assert_eq!(
        p1.columns[0]
            .col
            .cells
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["ssn_kek", "ssn_dek", "ssn_iv", "ssn"]
    );
    let s = run(env.db.clone(), &p1, Operation::Encrypt, opts(16)).await;
    assert_eq!(
        (s.columns[0].written, s.columns[0].failed),
        (108, 0),
        "{s:?}"
    );
    let st = keyturn_engine::status::status(env.db.as_ref(), &p1, &Default::default())
        .await
        .unwrap();
    let c = &st.columns[0];
    assert_eq!((c.total, c.nulls, c.under_current), (120, 12, 108), "{c:?}");
    assert_eq!(c.by_key[0].key_id, "kek-1");
    assert_eq!(c.codec, "envelope");
    let before = env.rows().await;

    // Rotate to kek-2: a dry run writes nothing, then the real run re-wraps.
    let p2 = env.plan(env.db.as_ref(), "kek-2").await;
    let dry = RunOptions {
        dry_run: true,
        ..opts(16)
    };
    let s = run(env.db.clone(), &p2, Operation::Rotate, dry).await;
    assert_eq!(s.columns[0].written, 108);
    assert_eq!(env.rows().await, before);
    let v = keyturn_engine::verify::verify(
        env.db.as_ref(),
        &p2,
        &VerifyOptions {
            deep: false,
            batch_size: 50,
            ..Default::default()
        },
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(!v.ok);
    assert_eq!(v.columns[0].failing, 108);
    assert!(
        v.columns[0].first_failures[0]
            .reason
            .contains("under key \"kek-1\""),
        "{v:?}"
    );

    let s = run(env.db.clone(), &p2, Operation::Rotate, opts(16)).await;
    assert_eq!(
        (s.columns[0].written, s.columns[0].failed),
        (108, 0),
        "{s:?}"
    );
    let after = env.rows().await;
    let codec = keyturn_engine::multi::PackedCells::new(Arc::new(
        keyturn_codecs::envelope::EnvelopeCodec::default(),
    ));
    let ring2 = p2.columns[0].ring().unwrap();
    for ((id, b), (_, a)) in before.iter().zip(&after) {
        match (b, a) {
            (None, None) => assert_eq!(id % 10, 0),
            (Some(b), Some(a)) => {
                let (b, a) = (codec.unpack(b).unwrap(), codec.unpack(a).unwrap());
                // Re-wrapped: same ciphertext and IV, new key id and wrapped key.
                assert_eq!((&b.ciphertext, &b.iv), (&a.ciphertext, &a.iv), "row {id}");
                assert_eq!(a.key_id.as_deref(), Some("kek-2"));
                assert_ne!(a.wrapped_key, b.wrapped_key);
                let o = keyturn_codecs::multi::MultiColumnCodec::decrypt_row(
                    codec.inner().as_ref(),
                    ring2,
                    &a,
                    &[],
                )
                .unwrap();
                assert_eq!(o.plaintext.as_slice(), format!("ssn {id:04}").as_bytes());
            }
            _ => panic!("row {id} changed NULL-ness"),
        }
    }
    // Rows under the primary are filtered out in SQL: nothing left to read.
    let skip = p2.columns[0]
        .codec
        .primary_prefix(p2.columns[0].ring().unwrap())
        .map(|prefix| keyturn_db::Skip {
            prefix,
            census: p2.columns[0].census(),
        });
    assert_eq!(
        env.db
            .count_without_prefix(&p2.columns[0].col, skip.as_ref())
            .await
            .unwrap(),
        0
    );
    let s = run(env.db.clone(), &p2, Operation::Rotate, opts(16)).await;
    assert_eq!(
        (s.columns[0].written, s.columns[0].skipped),
        (0, 0),
        "{s:?}"
    );
    for deep in [false, true] {
        let v = keyturn_engine::verify::verify(
            env.db.as_ref(),
            &p2,
            &VerifyOptions {
                deep,
                batch_size: 50,
                ..Default::default()
            },
            &NoProgress,
        )
        .await
        .unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.columns[0].checked, 108);
    }
    // The column outside the value is untouched.
    let n = env
        .db
        .fetch_rows(
            &ColumnRef {
                cells: Vec::new(),
                aux: Vec::new(),
                column: "note".into(),
                kind: keyturn_db::ValueKind::Text,
                ..p2.columns[0].col.clone()
            },
            &[vec![PkValue::Int(7)]],
        )
        .await
        .unwrap();
    assert_eq!(n[0].value.as_slice(), &b"n7"[..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_and_mistyped_role_columns_are_reported_before_anything_runs() {
    let env = Env::new().await;
    env.db
        .execute_script("ALTER TABLE accounts ADD COLUMN ssn_iv_text TEXT")
        .await
        .unwrap();
    let cfg = env.config("kek-2", "").to_owned();
    let mut bad = cfg.clone();
    bad.targets[0].columns[0].wrapped_key_column = Some("ssn_wrapped".into());
    bad.targets[0].columns[0].iv_column = Some("ssn_iv_text".into());
    let rings = keyturn_ops::load_rings(&bad, None, None, None).unwrap();
    let e = keyturn_engine::plan::resolve(env.db.as_ref(), &bad.targets, Some(&rings), None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("column ssn_wrapped (wrapped key column of accounts.ssn) does not exist"),
        "{e}"
    );
    assert!(
        e.contains("accounts.ssn_iv_text: codec envelope stores raw bytes in the IV column"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// An application writing between keyturn's read and write
// ---------------------------------------------------------------------------

type AppWrite = Box<dyn Fn(&[CasUpdate]) -> Vec<String> + Send + Sync>;

/// Runs the application's SQL just before the first `rounds` batch writes.
struct App {
    rounds: AtomicUsize,
    app: AppWrite,
}

#[async_trait]
impl BeforeWrite for App {
    async fn before_write(
        &self,
        db: &dyn Database,
        _col: &ColumnRef,
        updates: &[CasUpdate],
    ) -> Result<(), DbError> {
        if self.rounds.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        let sql = (self.app)(updates);
        if !sql.is_empty() {
            self.rounds.fetch_sub(1, Ordering::SeqCst);
        }
        for s in sql {
            db.execute_script(&s).await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cell_changed_between_read_and_write_is_never_overwritten() {
    let env = Env::new().await;
    for id in 1..=30 {
        env.db
            .execute_script(&format!(
                "INSERT INTO accounts (id, ssn) VALUES ({id}, X'{}')",
                hex(format!("ssn {id}").as_bytes())
            ))
            .await
            .unwrap();
    }
    let p1 = env.plan(env.db.as_ref(), "kek-1").await;
    run(env.db.clone(), &p1, Operation::Encrypt, opts(10)).await;
    let codec = keyturn_engine::multi::PackedCells::new(Arc::new(
        keyturn_codecs::envelope::EnvelopeCodec::default(),
    ));
    // What the application writes: row 2 re-encrypted (new value, all four
    // cells) under the OLD key; row 3's wrapped key alone replaced by the
    // wrapping of another data key (a cell-level change that must still
    // miss the compare-and-swap); row 4 cleared (all four cells NULL).
    let r1 = p1.columns[0].ring().unwrap().clone();
    let fresh = codec
        .unpack(
            &keyturn_format::Codec::encrypt(
                &codec,
                &r1,
                &keyturn_db::cells::pack([None, None, None, Some(&b"app value"[..])]),
                &[],
            )
            .unwrap(),
        )
        .unwrap();
    let other = codec
        .unpack(
            &keyturn_format::Codec::encrypt(
                &codec,
                &r1,
                &keyturn_db::cells::pack([None, None, None, Some(&b"x"[..])]),
                &[],
            )
            .unwrap(),
        )
        .unwrap();
    let set = |id: i64, c: &keyturn_codecs::multi::Cells| {
        format!(
            "UPDATE accounts SET ssn = X'{}', ssn_iv = X'{}', ssn_kek = '{}', ssn_dek = X'{}' WHERE id = {id}",
            hex(c.ciphertext.as_ref().unwrap()),
            hex(c.iv.as_ref().unwrap()),
            c.key_id.as_ref().unwrap(),
            hex(c.wrapped_key.as_ref().unwrap())
        )
    };
    let app_sql = vec![
        set(2, &fresh),
        format!(
            "UPDATE accounts SET ssn_dek = X'{}' WHERE id = 3",
            hex(other.wrapped_key.as_ref().unwrap())
        ),
        "UPDATE accounts SET ssn = NULL, ssn_iv = NULL, ssn_kek = NULL, ssn_dek = NULL WHERE id = 4"
            .to_string(),
    ];
    let meddler = Arc::new(WithWriteHook::new(
        env.db.clone(),
        App {
            rounds: AtomicUsize::new(1),
            app: Box::new(move |updates| {
                if updates.iter().any(|u| u.pk[0] == PkValue::Int(2)) {
                    app_sql.clone()
                } else {
                    Vec::new()
                }
            }),
        },
    ));
    let p2 = env.plan(meddler.as_ref(), "kek-2").await;
    let s = run(meddler.clone(), &p2, Operation::Rotate, opts(10)).await;
    let c = &s.columns[0];
    // Row 2: re-read and rotated from the application's value. Row 3: its
    // wrapped key no longer opens its ciphertext: reported, left alone.
    // Row 4: NULL now, skipped.
    assert_eq!(
        (c.written, c.retried, c.skipped, c.failed),
        (28, 2, 1, 1),
        "{s:?}"
    );
    assert_eq!(s.bad_rows[0].pk, "3");
    assert_eq!(s.bad_rows[0].table, "accounts");
    assert_eq!(s.bad_rows[0].column, "ssn");
    assert!(
        s.bad_rows[0].reason.contains("decryption failed"),
        "{:?}",
        s.bad_rows[0]
    );
    let rows = env.rows().await;
    let ring2 = p2.columns[0].ring().unwrap();
    let open = |v: &Option<Vec<u8>>| {
        keyturn_format::Codec::decrypt(&codec, ring2, v.as_ref().unwrap(), &[])
            .map(|o| o.plaintext.to_vec())
    };
    assert_eq!(open(&rows[1].1).unwrap(), b"app value");
    assert_eq!(
        codec
            .unpack(rows[1].1.as_ref().unwrap())
            .unwrap()
            .key_id
            .as_deref(),
        Some("kek-2")
    );
    // Row 3 keeps exactly what the application wrote.
    let r3 = codec.unpack(rows[2].1.as_ref().unwrap()).unwrap();
    assert_eq!(r3.wrapped_key, other.wrapped_key);
    assert_eq!(r3.key_id.as_deref(), Some("kek-1"));
    assert!(rows[3].1.is_none());
    for (id, v) in rows.iter().filter(|(id, _)| ![2, 3, 4].contains(id)) {
        assert_eq!(open(v).unwrap(), format!("ssn {id}").as_bytes());
    }
}
