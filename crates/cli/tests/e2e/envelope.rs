//! Multi-column values end to end: a KMS-style envelope (ciphertext, IV,
//! key-id and wrapped-data-key columns of one row, `codec = "envelope"`)
//! encrypted, rotated by re-wrapping in one compare-and-swap per batch, and
//! verified, through the real `keyturn` binary against SQLite, PostgreSQL and
//! MariaDB (`sqlite::*`, `postgres::*`, `mariadb::*`; servers as in
//! `common`). Rows are seeded and checked with the test's own envelope code
//! (AES-256-GCM data and wrap), independent of keyturn's codec.
//!
//! Run one backend: `cargo test -p keyturn --test e2e envelope::postgres::`.

use crate::common::*;
use keyturn_db::PkValue;
use keyturn_format::{Algorithm, KeyId, Keyring, SecretKey};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

scenarios!(
    envelope_round_trip,
    envelope_bad_rows_and_null_cells,
    envelope_dry_run_writes_nothing,
    envelope_cas_miss_is_retried,
    envelope_concurrent_writer,
    envelope_kill_and_resume,
    envelope_schema_errors_reported_first,
);

// ---------------------------------------------------------------------------
// The envelope layout, in the test
// ---------------------------------------------------------------------------

/// Cell positions in the test table.
const CT: usize = 0;
const IV: usize = 1;
const KID: usize = 2;
const DEK: usize = 3;

const KEKS_ENV: &str = "KT_TEST_KEKS";

/// A key encryption key: id, material (registered as a secret).
#[derive(Clone)]
struct Kek {
    id: String,
    bytes: Vec<u8>,
}

fn kek(t: &TestDb, id: &str) -> Kek {
    let k = SecretKey::generate(Algorithm::Aes256Gcm).expect("key");
    let bytes = k.expose_bytes().to_vec();
    t.add_secret(&b64(&bytes));
    t.add_secret(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    Kek {
        id: id.to_owned(),
        bytes,
    }
}

fn aes(key: &[u8]) -> SecretKey {
    SecretKey::from_bytes(Algorithm::Aes256Gcm, key).expect("aes key")
}

fn random<const N: usize>(rng: &mut fastrand::Rng) -> [u8; N] {
    std::array::from_fn(|_| rng.u8(..))
}

/// `nonce(12) ‖ ct ‖ tag(16)` under `key`.
fn gcm(key: &[u8], data: &[u8], rng: &mut fastrand::Rng) -> (Vec<u8>, Vec<u8>) {
    let nonce: [u8; 12] = random(rng);
    let mut ct = data.to_vec();
    let tag = aes(key).seal_in_place(&nonce, b"", &mut ct).expect("seal");
    ct.extend_from_slice(&tag);
    (nonce.to_vec(), ct)
}

/// One row's cells: the value under data key `dek`, the key wrapped by `kek`.
fn seal(kek: &Kek, dek: &[u8; 32], plaintext: &[u8], rng: &mut fastrand::Rng) -> Cells4 {
    let (iv, ct) = gcm(dek, plaintext, rng);
    let (n, w) = gcm(&kek.bytes, dek, rng);
    vec![
        Some(ct),
        Some(iv),
        Some(kek.id.clone().into_bytes()),
        Some([n, w].concat()),
    ]
}

type Cells4 = Vec<Option<Vec<u8>>>;

fn open_gcm(key: &[u8], nonce: &[u8], body: &[u8], what: &str) -> Result<Vec<u8>, String> {
    if body.len() < 16 {
        return Err(format!("{what}: {} bytes", body.len()));
    }
    let (ct, tag) = body.split_at(body.len() - 16);
    let mut out = vec![0; ct.len()];
    aes(key)
        .open_into(what, nonce, b"", ct, tag, &mut out)
        .map_err(|e| format!("{what}: {e}"))?;
    Ok(out)
}

/// Opens a row: (key id, plaintext, data key).
fn open(keks: &[&Kek], row: &[Option<Vec<u8>>]) -> Result<(String, Vec<u8>, Vec<u8>), String> {
    let cell = |i: usize| row[i].as_deref().ok_or(format!("cell {i} is NULL"));
    let id = String::from_utf8(cell(KID)?.to_vec()).map_err(|e| e.to_string())?;
    let k = keks
        .iter()
        .find(|k| k.id == id)
        .ok_or(format!("unknown key {id}"))?;
    let w = cell(DEK)?;
    if w.len() != 60 {
        return Err(format!("wrapped key of {} bytes", w.len()));
    }
    let dek = open_gcm(&k.bytes, &w[..12], &w[12..], "wrapped key")?;
    let p = open_gcm(&dek, cell(IV)?, cell(CT)?, "ciphertext")?;
    Ok((id, p, dek))
}

fn accounts(t: &TestDb, what: &str) -> Table {
    Table::new(
        &t.table_name(what),
        &[("id", PkKind::Int)],
        &[
            ("ssn", ColKind::Binary, false),
            ("ssn_iv", ColKind::Binary, false),
            ("ssn_kek", ColKind::Text, false),
            ("ssn_dek", ColKind::Binary, false),
        ],
    )
}

/// The column entry of the envelope target (`extra` goes inside the braces).
fn entry(extra: &str) -> String {
    format!(
        r#"{{ name = "ssn", codec = "envelope", keyring = "kms", iv_column = "ssn_iv", key_id_column = "ssn_kek", wrapped_key_column = "ssn_dek"{extra} }}"#
    )
}

/// A config with the envelope target over `tb`, KEKs `keks` (primary
/// `primary`) from an environment variable.
fn cfg_with(tb: &Table, keks: &[&Kek], primary: &str, entries: &str) -> Cfg {
    let mut c = Cfg::new(&[], &[], "unused");
    let lines: Vec<String> = keks
        .iter()
        .map(|k| format!("{}={}", k.id, b64(&k.bytes)))
        .collect();
    c.env.push((KEKS_ENV.into(), lines.join("\n")));
    c.extra_toml = format!(
        "[keyrings.kms]\nsources = [\"env:{KEKS_ENV}\"]\nprimary = {}\n\n[[target]]\ntable = {}\nprimary_key = \"id\"\ncolumns = [{entries}]\n",
        toml_str(primary),
        toml_str(&tb.name)
    );
    c
}

fn cfg(tb: &Table, keks: &[&Kek], primary: &str) -> Cfg {
    cfg_with(tb, keks, primary, &entry(""))
}

/// The keyring the engine builds from those keys (library-API scenarios).
fn ring(keks: &[&Kek], primary: &str) -> Keyring {
    Keyring::from_keys(
        keks.iter()
            .map(|k| (KeyId::new(&k.id).unwrap(), aes(&k.bytes)))
            .collect(),
        Some(primary),
        &[],
    )
    .expect("keyring")
}

/// Every row's plaintext under one of `keks` (and under `want` when given);
/// all four cells NULL where `None` is expected.
fn assert_rows(
    stored: &Data,
    expected: &BTreeMap<Pk, Option<Vec<u8>>>,
    keks: &[&Kek],
    want: Option<&str>,
) {
    assert_eq!(stored.len(), expected.len(), "row count");
    let mut bad = Vec::new();
    for (pk, p) in expected {
        let row = &stored[pk];
        match p {
            None if row.iter().all(Option::is_none) => {}
            None => bad.push(format!("{pk:?}: NULL expected, cells {row:?}")),
            Some(p) => match open(keks, row) {
                Ok((id, got, _)) if got == *p && want.is_none_or(|w| w == id) => {}
                Ok((id, got, _)) => bad.push(format!(
                    "{pk:?}: under {id}, {} bytes (expected {} under {want:?})",
                    got.len(),
                    p.len()
                )),
                Err(e) => bad.push(format!("{pk:?}: {e}")),
            },
        }
    }
    assert!(
        bad.is_empty(),
        "{} rows wrong:\n  {}",
        bad.len(),
        bad[..bad.len().min(15)].join("\n  ")
    );
}

/// Sets several cells of one row in one statement, like an application.
async fn set_cells(t: &TestDb, tb: &Table, id: i64, cells: &[(usize, Option<Vec<u8>>)]) -> u64 {
    let ph = |n: usize| match t.kind {
        Kind::Postgres => format!("${n}"),
        _ => "?".into(),
    };
    let sets: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("{} = {}", tb.cols[*c].name, ph(i + 1)))
        .collect();
    let sql = format!(
        "UPDATE {} SET {} WHERE id = {}",
        tb.name,
        sets.join(", "),
        ph(cells.len() + 1)
    );
    let vals: Vec<Val> = cells
        .iter()
        .map(|(c, v)| match (tb.cols[*c].kind, v) {
            (ColKind::Text, Some(b)) => Val::Text(String::from_utf8(b.clone()).unwrap()),
            (ColKind::Binary, Some(b)) => Val::Bytes(b.clone()),
            (ColKind::Text, None) => Val::NullText,
            (ColKind::Binary, None) => Val::NullBytes,
        })
        .collect();
    on_pool!(&t.pool, p => {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
        for v in &vals {
            q = bind_val!(q, v);
        }
        q = q.bind(id);
        q.execute(p).await.unwrap_or_else(|e| panic!("{sql}: {e}")).rows_affected()
    })
}

fn id_of(pk: &Pk) -> i64 {
    match pk[0] {
        PkValue::Int(i) => i,
        _ => unreachable!(),
    }
}

fn col<'a>(j: &'a Value, table: &str) -> &'a Value {
    j["columns"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["table"] == table && c["column"] == "ssn")
        })
        .unwrap_or_else(|| panic!("no {table}.ssn in {j:#}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned number: {v}"))
}

/// Rows under `kek`, every 9th without a value (all cells NULL); returns
/// the stored rows and the plaintexts.
fn sealed_rows(
    rng: &mut fastrand::Rng,
    kek: &Kek,
    ids: impl Iterator<Item = i64>,
) -> (Data, BTreeMap<Pk, Option<Vec<u8>>>) {
    let (mut data, mut plain) = (Data::new(), BTreeMap::new());
    for id in ids {
        let p = (id % 9 != 0).then(|| {
            (0..rng.usize(0..64))
                .map(|_| rng.u8(..))
                .collect::<Vec<u8>>()
        });
        let cells = match &p {
            Some(p) => seal(kek, &random(rng), p, rng),
            None => vec![None; 4],
        };
        data.insert(int_pk(id), cells);
        plain.insert(int_pk(id), p);
    }
    (data, plain)
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// Plaintext in the ciphertext column → `encrypt` (kek-1) → `status`,
/// `verify` → `rotate` (kek-2): only the key-id and wrapped-key columns
/// change, values read with kek-2 alone → `verify`, `verify --deep`, and a
/// second `rotate` that has nothing to read. The README's three commands.
async fn envelope_round_trip(t: TestDb) {
    let tb = accounts(&t, "env");
    t.create_table(&tb, &["note VARCHAR(20)"]).await;
    let mut rng = t.rng();
    let mut plain = BTreeMap::new();
    let mut data = Data::new();
    for id in 1..=240 {
        let p = (id % 9 != 0).then(|| {
            let mut v: Vec<u8> = (0..rng.usize(0..80)).map(|_| rng.u8(..)).collect();
            if id == 1 {
                v.clear();
            }
            v
        });
        data.insert(int_pk(id), vec![p.clone(), None, None, None]);
        plain.insert(int_pk(id), p);
    }
    t.insert(&tb, &data).await;
    let n = plain.values().flatten().count() as u64;
    let (k1, k2) = (kek(&t, "kek-1"), kek(&t, "kek-2"));
    let cfg1 = cfg(&tb, &[&k1], "kek-1");

    let st = t
        .keyturn(&cfg1, &["--json", "status"])
        .await
        .expect(0)
        .json();
    let c = col(&st, &tb.name);
    assert_eq!(c["codec"], "envelope", "{st:#}");
    assert_eq!((u(&c["unrecognized"]), u(&c["nulls"])), (n, 240 - n));
    t.keyturn(&cfg1, &["verify"]).await.expect(4);

    let j = t
        .keyturn(&cfg1, &["--json", "encrypt"])
        .await
        .expect(0)
        .json();
    assert_eq!(u(&col(&j, &tb.name)["written"]), n, "{j:#}");
    let before = t.read(&tb).await;
    assert_rows(&before, &plain, &[&k1], Some("kek-1"));
    let st = t
        .keyturn(&cfg1, &["--json", "status"])
        .await
        .expect(0)
        .json();
    let c = col(&st, &tb.name);
    assert_eq!(c["by_key"][0]["key_id"], "kek-1", "{st:#}");
    assert_eq!(u(&c["by_key"][0]["rows"]), n);
    assert_eq!(u(&c["under_current"]), n);
    t.keyturn(&cfg1, &["verify"]).await.expect(0);

    // The README's three commands, with kek-2 promoted.
    let cfg2 = cfg(&tb, &[&k1, &k2], "kek-2");
    let out = t.keyturn(&cfg2, &["status"]).await.expect(0);
    assert!(out.stdout.contains("kek-1"), "{out}");
    let j = t
        .keyturn(&cfg2, &["--json", "rotate"])
        .await
        .expect(0)
        .json();
    let c = col(&j, &tb.name);
    assert_eq!((u(&c["written"]), u(&c["failed"])), (n, 0), "{j:#}");
    let after = t.read(&tb).await;
    assert_rows(&after, &plain, &[&k2], Some("kek-2"));
    for (pk, b) in &before {
        let a = &after[pk];
        assert_eq!((&a[CT], &a[IV]), (&b[CT], &b[IV]), "{pk:?}: data rewritten");
        if b[CT].is_some() {
            assert_ne!(a[DEK], b[DEK], "{pk:?}: not re-wrapped");
            // The same data key, wrapped under the new key.
            assert_eq!(
                open(&[&k1], b).unwrap().2,
                open(&[&k2], a).unwrap().2,
                "{pk:?}"
            );
        }
    }
    t.keyturn(&cfg2, &["verify"]).await.expect(0);
    let v = t
        .keyturn(&cfg2, &["--json", "verify", "--deep"])
        .await
        .expect(0)
        .json();
    assert_eq!(u(&col(&v, &tb.name)["checked"]), n, "{v:#}");
    let st = t
        .keyturn(&cfg2, &["--json", "status"])
        .await
        .expect(0)
        .json();
    let c = col(&st, &tb.name);
    assert_eq!((u(&c["under_current"]), u(&c["needs_rotation"])), (n, 0));
    // Everything is under kek-2: the SQL filter leaves nothing to read.
    let j = t
        .keyturn(&cfg2, &["--json", "rotate"])
        .await
        .expect(0)
        .json();
    let c = col(&j, &tb.name);
    assert_eq!((u(&c["written"]), u(&c["skipped"])), (0, 0), "{j:#}");
    assert_eq!(t.read(&tb).await, after);
    assert_eq!(
        t.count(&format!(
            "SELECT COUNT(*) FROM {} WHERE note IS NOT NULL",
            tb.name
        ))
        .await,
        0
    );
}

/// Damaged rows (a corrupt wrapped key, NULL cells beside set ones, a wrong
/// IV length, a tampered ciphertext) are reported with table, column, pk and
/// reason, left as they are, and the rest is rotated; exit 3, then verify
/// exits 4. Rows whose ciphertext column is NULL have no value: untouched.
async fn envelope_bad_rows_and_null_cells(t: TestDb) {
    let tb = accounts(&t, "bad");
    t.create_table(&tb, &[]).await;
    let mut rng = t.rng();
    let (k1, k2) = (kek(&t, "kek-1"), kek(&t, "kek-2"));
    let (mut data, mut plain) = sealed_rows(&mut rng, &k1, 1..=80);
    for id in 5..=11 {
        let p: Vec<u8> = format!("value {id}").into_bytes();
        data.insert(int_pk(id), seal(&k1, &random(&mut rng), &p, &mut rng));
        plain.insert(int_pk(id), Some(p));
    }
    let mut damage = |id: i64, f: &dyn Fn(&mut Cells4)| {
        f(data.get_mut(&int_pk(id)).unwrap());
    };
    damage(5, &|r| r[DEK].as_mut().unwrap()[30] ^= 0x40);
    damage(6, &|r| r[DEK] = None);
    damage(7, &|r| r[IV].as_mut().unwrap().extend([0; 4]));
    damage(8, &|r| r[KID] = None);
    damage(9, &|r| *r = vec![None; 4]);
    damage(10, &|r| r[CT] = None);
    damage(11, &|r| r[CT].as_mut().unwrap()[0] ^= 1);
    t.insert(&tb, &data).await;
    let cfg2 = cfg(&tb, &[&k1, &k2], "kek-2");
    let st = t
        .keyturn(&cfg2, &["--json", "status"])
        .await
        .expect(0)
        .json();
    let c = col(&st, &tb.name);
    // Row 8 has no key id; rows 9 and 10 no value.
    assert_eq!(u(&c["unrecognized"]), 1, "{st:#}");
    let nulls = plain.values().filter(|p| p.is_none()).count() as u64 + 2;
    assert_eq!(u(&c["nulls"]), nulls, "{st:#}");

    let j = t
        .keyturn(&cfg2, &["--json", "rotate"])
        .await
        .expect(3)
        .json();
    assert_eq!(u(&col(&j, &tb.name)["failed"]), 5, "{j:#}");
    let mut reported: Vec<(String, String, String)> = j["bad_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert_eq!(b["table"], tb.name.as_str());
            (
                b["column"].as_str().unwrap().to_owned(),
                b["pk"].as_str().unwrap().to_owned(),
                b["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    reported.sort_by_key(|r| r.1.parse::<i64>().unwrap());
    let want = [
        ("5", "unwrapping the data key"),
        ("6", "the wrapped key column is NULL"),
        ("7", "the IV column holds 16 bytes"),
        ("8", "the key id column is NULL"),
        ("11", "the data key wrapped under kek-1"),
    ];
    assert_eq!(reported.len(), want.len(), "{reported:?}");
    for ((column, pk, reason), (wpk, wreason)) in reported.iter().zip(want) {
        assert_eq!((column.as_str(), pk.as_str()), ("ssn", wpk));
        assert!(reason.contains(wreason), "row {pk}: {reason}");
    }
    assert_eq!(t.meta_rows("keyturn_bad_rows", &tb.name).await, 5);
    let after = t.read(&tb).await;
    for id in 5..=11 {
        assert_eq!(after[&int_pk(id)], data[&int_pk(id)], "row {id} changed");
    }
    let mut rest_plain = plain.clone();
    let mut rest = after.clone();
    for id in 5..=11 {
        rest_plain.remove(&int_pk(id));
        rest.remove(&int_pk(id));
    }
    assert_rows(&rest, &rest_plain, &[&k2], Some("kek-2"));
    t.keyturn(&cfg2, &["verify"]).await.expect(4);
    t.keyturn(&cfg2, &["verify", "--deep"]).await.expect(4);
    // Human output lists them, and a rerun reports them again.
    let out = t.keyturn(&cfg2, &["rotate"]).await.expect(3);
    assert!(out.stdout.contains("could not be processed"), "{out}");
}

/// `rotate --dry-run` and `encrypt --dry-run` read, decrypt and count, and
/// write nothing: no cell, no bookkeeping table.
async fn envelope_dry_run_writes_nothing(t: TestDb) {
    let tb = accounts(&t, "dry");
    t.create_table(&tb, &[]).await;
    let mut rng = t.rng();
    let (k1, k2) = (kek(&t, "kek-1"), kek(&t, "kek-2"));
    let (data, plain) = sealed_rows(&mut rng, &k1, 1..=150);
    t.insert(&tb, &data).await;
    let n = plain.values().flatten().count() as u64;
    let cfg2 = cfg(&tb, &[&k1, &k2], "kek-2");
    let j = t
        .keyturn(
            &cfg2,
            &["--json", "rotate", "--dry-run", "--batch-size", "7"],
        )
        .await
        .expect(0)
        .json();
    assert_eq!(j["dry_run"], true);
    assert_eq!(u(&col(&j, &tb.name)["written"]), n, "{j:#}");
    assert_eq!(t.read(&tb).await, data);
    assert_eq!(t.keyturn_tables().await, Vec::<&str>::new());

    let plain_tb = accounts(&t, "dryplain");
    t.create_table(&plain_tb, &[]).await;
    let pdata: Data = (1..=40)
        .map(|i| (int_pk(i), vec![Some(vec![i as u8; 5]), None, None, None]))
        .collect();
    t.insert(&plain_tb, &pdata).await;
    let j = t
        .keyturn(
            &cfg(&plain_tb, &[&k1], "kek-1"),
            &["--json", "encrypt", "--dry-run"],
        )
        .await
        .expect(0)
        .json();
    assert_eq!(u(&col(&j, &plain_tb.name)["written"]), 40, "{j:#}");
    assert_eq!(t.read(&plain_tb).await, pdata);
    assert_eq!(t.keyturn_tables().await, Vec::<&str>::new());
}

/// The application changes cells of rows between keyturn's read and its
/// compare-and-swap write (a database wrapper runs its updates just before
/// the first batch write, through the library API): the whole value of one
/// row, only the ciphertext and IV of another (same data key), and all four
/// cells of a third to NULL. The write misses those rows; they are re-read
/// and retried, and the application's values survive, under kek-2.
async fn envelope_cas_miss_is_retried(t: TestDb) {
    use keyturn_engine::{NoProgress, Operation, RunOptions, VerifyOptions};
    use std::sync::atomic::AtomicBool;
    let tb = accounts(&t, "cas");
    t.create_table(&tb, &[]).await;
    let mut rng = t.rng();
    let (k1, k2) = (kek(&t, "kek-1"), kek(&t, "kek-2"));
    let mut data = Data::new();
    let mut plain = BTreeMap::new();
    for id in 1..=30 {
        let p = format!("ssn {id}").into_bytes();
        data.insert(int_pk(id), seal(&k1, &random(&mut rng), &p, &mut rng));
        plain.insert(int_pk(id), Some(p));
    }
    t.insert(&tb, &data).await;
    // Row 2: a new value under a new data key (kek-1). Row 3: a new value
    // under its existing data key, new IV: two cells change. Row 4: cleared.
    let row2 = seal(&k1, &random(&mut rng), b"app value 2", &mut rng);
    let dek3 = open(&[&k1], &data[&int_pk(3)]).unwrap().2;
    let (iv3, ct3) = gcm(&dek3, b"app value 3", &mut rng);
    let app: meddler::AppWrites = vec![
        (2, row2.iter().cloned().enumerate().collect()),
        (3, vec![(CT, Some(ct3)), (IV, Some(iv3))]),
        (4, (0..4).map(|c| (c, None)).collect()),
    ];
    plain.insert(int_pk(2), Some(b"app value 2".to_vec()));
    plain.insert(int_pk(3), Some(b"app value 3".to_vec()));
    plain.insert(int_pk(4), None);

    let text = format!(
        "[database]\nurl = {}\n\n[keyrings.kms]\nsources = [\"env:{KEKS_ENV}\"]\nprimary = \"kek-2\"\n\n[[target]]\ntable = {}\nprimary_key = \"id\"\ncolumns = [{}]\n",
        toml_str(&t.url),
        toml_str(&tb.name),
        entry("")
    );
    let cfg = keyturn_ops::Config::parse(&text).expect("config");
    let inner = keyturn_db::connect(&t.url, &keyturn_db::ConnectOptions::default())
        .await
        .expect("connect");
    let db: Arc<dyn keyturn_db::Database> = Arc::new(keyturn_db::testing::WithWriteHook::new(
        inner.clone(),
        meddler::App {
            t: t.clone(),
            tb: tb.clone(),
            app: std::sync::Mutex::new(Some(app)),
        },
    ));
    let rings = keyturn_engine::plan::Rings {
        default: None,
        named: [("kms".to_string(), Arc::new(ring(&[&k1, &k2], "kek-2")))].into(),
        servers: Default::default(),
    };
    let plan = keyturn_engine::plan::resolve(db.as_ref(), &cfg.targets, Some(&rings), None, None)
        .await
        .expect("plan");
    let s = keyturn_engine::run::run(
        db.clone(),
        &plan,
        Operation::Rotate,
        RunOptions {
            batch_size: 10,
            workers: 1,
            max_rows_per_sec: None,
            dry_run: false,
            actor: "itest".into(),
            skip_unknown_keys: false,
        },
        Arc::new(NoProgress),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("rotate");
    let c = &s.columns[0];
    assert_eq!(
        (c.written, c.retried, c.skipped, c.failed),
        (29, 2, 1, 0),
        "{s:?}"
    );
    assert_rows(&t.read(&tb).await, &plain, &[&k2], Some("kek-2"));
    let v = keyturn_engine::verify::verify(
        db.as_ref(),
        &plan,
        &VerifyOptions {
            deep: true,
            batch_size: 7,
            ..Default::default()
        },
        &NoProgress,
    )
    .await
    .expect("verify");
    assert!(v.ok, "{v:?}");
    inner.close().await;
}

mod meddler {
    use super::*;
    use async_trait::async_trait;
    use keyturn_db::testing::BeforeWrite;
    use keyturn_db::{CasUpdate, ColumnRef, Database, DbError};

    /// Per row id, the cells the application sets.
    pub type AppWrites = Vec<(i64, Vec<(usize, Option<Vec<u8>>)>)>;

    /// Runs the application's updates once, just before the first batch
    /// write that covers their rows.
    pub struct App {
        pub t: TestDb,
        pub tb: Table,
        pub app: std::sync::Mutex<Option<AppWrites>>,
    }

    #[async_trait]
    impl BeforeWrite for App {
        async fn before_write(
            &self,
            _db: &dyn Database,
            _col: &ColumnRef,
            updates: &[CasUpdate],
        ) -> Result<(), DbError> {
            let due = {
                let mut app = self.app.lock().unwrap();
                let covers = app.as_ref().is_some_and(|a| {
                    a.iter()
                        .all(|(id, _)| updates.iter().any(|u| id_of(&u.pk) == *id))
                });
                if covers { app.take() } else { None }
            };
            for (id, cells) in due.unwrap_or_default() {
                assert_eq!(set_cells(&self.t, &self.tb, id, &cells).await, 1);
            }
            Ok(())
        }
    }
}

/// The application keeps writing while `rotate` runs (throttled, small
/// batches): whole new values under kek-1 or kek-2, a value re-encrypted
/// under its own data key (ciphertext and IV only), the data key re-wrapped
/// by the application itself (key id and wrapped key only), and cleared
/// rows. No application write is lost or mixed with keyturn's: every row
/// opens to the application's last value; a second rotate finishes.
async fn envelope_concurrent_writer(t: TestDb) {
    let n = 1500;
    let tb = accounts(&t, "writer");
    t.create_table(&tb, &[]).await;
    let mut rng = t.rng();
    let (k1, k2) = (kek(&t, "kek-1"), kek(&t, "kek-2"));
    let mut data = Data::new();
    let mut expected: BTreeMap<Pk, Option<Vec<u8>>> = BTreeMap::new();
    // The data key of each row (re-wrapping never changes it).
    let mut deks: HashMap<i64, [u8; 32]> = HashMap::new();
    for id in 1..=n {
        let p = format!("original {id} {}", rng.u64(..)).into_bytes();
        let dek = random(&mut rng);
        data.insert(int_pk(id), seal(&k1, &dek, &p, &mut rng));
        deks.insert(id, dek);
        expected.insert(int_pk(id), Some(p));
    }
    t.insert(&tb, &data).await;
    let cfg2 = cfg(&tb, &[&k1, &k2], "kek-2");
    let mut p = t.spawn(
        &cfg2,
        &[
            "--json",
            "rotate",
            "--batch-size",
            "50",
            "--max-rows-per-sec",
            "600",
        ],
    );
    let mut writes = 0u64;
    let started = std::time::Instant::now();
    while !p.finished() {
        // Half of the writes near where the throttled reader should be, to
        // meet rows between keyturn's read and write; the rest anywhere.
        let id = if rng.bool() {
            let at = (started.elapsed().as_secs_f64() * 600.0) as i64;
            rng.i64((at - 100).clamp(1, n)..=(at + 50).clamp(1, n))
        } else {
            rng.i64(1..=n)
        };
        let pk = int_pk(id);
        let value = format!("written {writes} to {id}").into_bytes();
        let k = if rng.bool() { &k1 } else { &k2 };
        match (rng.u8(..4), expected[&pk].is_some()) {
            (0, _) | (_, false) => {
                let dek = random(&mut rng);
                let cells = seal(k, &dek, &value, &mut rng);
                set_cells(
                    &t,
                    &tb,
                    id,
                    &cells.into_iter().enumerate().collect::<Vec<_>>(),
                )
                .await;
                deks.insert(id, dek);
                expected.insert(pk, Some(value));
            }
            (1, true) => {
                let (iv, ct) = gcm(&deks[&id], &value, &mut rng);
                set_cells(&t, &tb, id, &[(CT, Some(ct)), (IV, Some(iv))]).await;
                expected.insert(pk, Some(value));
            }
            (2, true) => {
                let (nonce, w) = gcm(&k.bytes, &deks[&id], &mut rng);
                set_cells(
                    &t,
                    &tb,
                    id,
                    &[
                        (KID, Some(k.id.clone().into_bytes())),
                        (DEK, Some([nonce, w].concat())),
                    ],
                )
                .await;
            }
            _ => {
                set_cells(&t, &tb, id, &(0..4).map(|c| (c, None)).collect::<Vec<_>>()).await;
                expected.insert(pk, None);
            }
        }
        writes += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let out = p.wait(Duration::from_secs(10)).await;
    assert!(out.code == 0 || out.code == 3, "{out}");
    let j = out.json();
    for b in j["bad_rows"].as_array().unwrap() {
        assert!(
            b["reason"]
                .as_str()
                .unwrap()
                .contains("changed by the application"),
            "{out}"
        );
    }
    let c = col(&j, &tb.name);
    eprintln!(
        "envelope_concurrent_writer: {writes} writes; rotate wrote {}, skipped {}, retried {}, failed {}",
        c["written"], c["skipped"], c["retried"], c["failed"]
    );
    assert!(writes >= 25, "the writer only managed {writes} writes");
    assert_rows(&t.read(&tb).await, &expected, &[&k1, &k2], None);

    t.keyturn(&cfg2, &["rotate"]).await.expect(0);
    assert_rows(&t.read(&tb).await, &expected, &[&k2], Some("kek-2"));
    t.keyturn(&cfg2, &["verify", "--deep"]).await.expect(0);
}

/// SIGKILL in the middle of a rotation, after a checkpoint: every row is
/// intact (under kek-1 or kek-2), and the rerun resumes from the checkpoint
/// and finishes.
async fn envelope_kill_and_resume(t: TestDb) {
    let tb = accounts(&t, "kill");
    t.create_table(&tb, &[]).await;
    let mut rng = t.rng();
    let (k1, k2) = (kek(&t, "kek-1"), kek(&t, "kek-2"));
    let (data, plain) = sealed_rows(&mut rng, &k1, 1..=4000);
    t.insert(&tb, &data).await;
    let cfg2 = cfg(&tb, &[&k1, &k2], "kek-2");
    let mut p = t.spawn(&cfg2, &["rotate", "--max-rows-per-sec", "1000"]);
    let start = std::time::Instant::now();
    while t.meta_rows("keyturn_checkpoints", &tb.name).await == 0
        && !p.finished()
        && start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !p.finished(),
        "the rotation ended before it could be killed"
    );
    let out = p.kill();
    assert_eq!(out.code, -9, "{out}");
    assert_rows(&t.read(&tb).await, &plain, &[&k1, &k2], None);
    let out = t.keyturn(&cfg2, &["rotate"]).await.expect(0);
    assert!(out.stderr.contains("resuming after primary key"), "{out}");
    assert_rows(&t.read(&tb).await, &plain, &[&k2], Some("kek-2"));
    assert_eq!(t.meta_rows("keyturn_checkpoints", &tb.name).await, 0);
    t.keyturn(&cfg2, &["verify", "--deep"]).await.expect(0);
}

/// Config mistakes name the exact key; columns missing from the table or of
/// the wrong type are all reported before anything runs.
async fn envelope_schema_errors_reported_first(t: TestDb) {
    let tb = accounts(&t, "schema");
    t.create_table(&tb, &["ssn_iv_text TEXT"]).await;
    let mut rng = t.rng();
    let (k1, k2) = (kek(&t, "kek-1"), kek(&t, "kek-2"));
    let (data, _) = sealed_rows(&mut rng, &k1, 1..=20);
    t.insert(&tb, &data).await;

    let e = entry("").replace(r#", wrapped_key_column = "ssn_dek""#, "");
    let out = t
        .keyturn(&cfg_with(&tb, &[&k1, &k2], "kek-2", &e), &["rotate"])
        .await
        .expect(1);
    assert!(
        out.stderr
            .contains("target[0].columns[0].wrapped_key_column: codec \"envelope\" needs"),
        "{out}"
    );
    let e = entry("")
        .replace("ssn_dek", "ssn_wrapped")
        .replace(r#"iv_column = "ssn_iv""#, r#"iv_column = "ssn_iv_text""#);
    for args in [
        &["rotate"][..],
        &["rotate", "--dry-run"],
        &["status"],
        &["verify"],
    ] {
        let out = t
            .keyturn(&cfg_with(&tb, &[&k1, &k2], "kek-2", &e), args)
            .await
            .expect(1);
        for needle in [
            "column ssn_wrapped (wrapped key column of",
            "stores raw bytes in the IV column",
        ] {
            assert!(out.stderr.contains(needle), "no {needle:?}\n{out}");
        }
    }
    assert_eq!(t.read(&tb).await, data);
    assert_eq!(t.keyturn_tables().await, Vec::<&str>::new());
}

fn b64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}
