//! KEK rotation on a table of a million encrypted rows changes no row.
//!
//! Builds a SQLite table of `KEYTURN_KEK_TEST_ROWS` rows (default 1,000,000;
//! each a keyturn text ciphertext of a 60-byte value, spread over 10 catalog
//! DEKs), takes a SHA-256 over every (id, value) in primary-key order, runs
//! the real `keyturn kek rotate` (local master key 1 → 2), takes the
//! checksum again (identical), then loads the keyring from the catalog with
//! the new master key only and decrypts every row (in parallel) back to its
//! expected plaintext.

use aws_lc_rs::digest::{Context as Sha256, SHA256};
use keyturn_catalog::Catalog;
use keyturn_format::{Algorithm, Encoding, KeyId, KeySpec, v1};
use keyturn_kms::{DekCache, KekProvider, LocalKek, MasterKeySource, SecretString};
use rayon::prelude::*;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

const MK1: &str = "mk1:aes256gcm:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const MK2: &str = "mk2:aes256gcm:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
const DEKS: usize = 10;
/// Rows per multi-row INSERT (2 parameters each).
const INSERT_ROWS: usize = 2_000;
/// Rows encrypted per step while loading.
const CHUNK: usize = 100_000;

fn plaintext(id: i64) -> Vec<u8> {
    // 60 bytes, different per row.
    format!("{id:012}-the quick brown fox jumps over the lazy dog..")
        .into_bytes()
        .into_iter()
        .chain(std::iter::repeat(b'.'))
        .take(60)
        .collect()
}

fn keyturn(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keyturn"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("KT_MK", MK1)
        .env("KT_MK2", MK2)
        .env("NO_COLOR", "1")
        .env_remove("KEYTURN_CONFIG")
        .env_remove("KEYTURN_KEYS")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn pool(path: &Path) -> SqlitePool {
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap()
}

/// Reads every row in primary-key order, a page at a time.
async fn pages(p: &SqlitePool, mut each: impl FnMut(&[(i64, String)])) -> u64 {
    let mut last = 0i64;
    let mut n = 0u64;
    loop {
        let page: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, secret FROM t WHERE id > ? ORDER BY id LIMIT 100000")
                .bind(last)
                .fetch_all(p)
                .await
                .unwrap();
        let Some((l, _)) = page.last() else {
            return n;
        };
        last = *l;
        n += page.len() as u64;
        each(&page);
    }
}

/// Adds `id ‖ 0 ‖ value ‖ \n` of each row to the checksum.
fn hash_page(h: &mut Sha256, page: &[(i64, String)]) {
    for (id, v) in page {
        h.update(&id.to_le_bytes());
        h.update(&[0]);
        h.update(v.as_bytes());
        h.update(b"\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kek_rotation_on_a_million_rows_changes_no_row() {
    let rows: i64 = std::env::var("KEYTURN_KEK_TEST_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = dir.join("t.db");
    let cfg = dir.join("k.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[database]
url = "sqlite://{}"

[catalog]
kek = "local"
master_key = "env:KT_MK"

[[target]]
table = "t"
primary_key = "id"
columns = [{{ name = "secret", encoding = "text" }}]
"#,
            db.display()
        ),
    )
    .unwrap();

    // Ten DEKs, imported into the catalog from key specs (so this process
    // can encrypt under each of them).
    let specs: Vec<KeySpec> = (0..DEKS)
        .map(|i| KeySpec::generate(KeyId::new(&format!("d{i}")).unwrap(), Algorithm::Aes256Gcm))
        .collect::<Result<_, _>>()
        .unwrap();
    let spec_text: String = specs
        .iter()
        .map(|s| s.to_spec_string().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let p = pool(&db).await;
    sqlx::raw_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, secret TEXT NOT NULL)")
        .execute(&p)
        .await
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keyturn"))
        .arg("--config")
        .arg(&cfg)
        .args(["keys", "add", "--import", "env:KT_DEKS"])
        .env("KT_MK", MK1)
        .env("KT_DEKS", &spec_text)
        .env_remove("KEYTURN_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _, err) = keyturn(&cfg, &["keys", "promote", "d0"]);
    assert_eq!(code, 0, "{err}");

    // Load: encrypt in parallel, insert with multi-row INSERTs, one
    // transaction per chunk.
    let started = Instant::now();
    let mut next = 1i64;
    while next <= rows {
        let end = (next + CHUNK as i64 - 1).min(rows);
        let values: Vec<(i64, String)> = (next..=end)
            .into_par_iter()
            .map(|id| {
                let s = &specs[(id as usize) % DEKS];
                let ct = v1::seal(&s.key, &s.id, &plaintext(id), &[], Encoding::Text).unwrap();
                (id, String::from_utf8(ct).unwrap())
            })
            .collect();
        let mut tx = p.begin().await.unwrap();
        for batch in values.chunks(INSERT_ROWS) {
            let sql = format!(
                "INSERT INTO t (id, secret) VALUES {}",
                vec!["(?, ?)"; batch.len()].join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, v) in batch {
                q = q.bind(*id).bind(v.as_str());
            }
            q.execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        next = end + 1;
    }
    let load_s = started.elapsed().as_secs_f64();

    // SHA-256 over every (id, value) in primary-key order, as stored.
    let t = Instant::now();
    let mut h = Sha256::new(&SHA256);
    let n = pages(&p, |page| hash_page(&mut h, page)).await;
    let before = hex::encode(h.finish().as_ref());
    let checksum_s = t.elapsed().as_secs_f64();
    assert_eq!(n, rows as u64);
    p.close().await;

    // The KEK rotation itself, through the real binary.
    let t = Instant::now();
    let (code, out, err) = keyturn(
        &cfg,
        &[
            "--json",
            "kek",
            "rotate",
            "--to",
            "local",
            "--master-key",
            "env:KT_MK2",
        ],
    );
    let rotate_s = t.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["rewrapped"], DEKS, "{r}");

    let p = pool(&db).await;
    // Every row decrypts with the catalog's keyring, loaded with the new
    // master key alone (the old one no longer unwraps the DEKs).
    let t = Instant::now();
    let db_handle = keyturn_db::connect(
        &format!("sqlite://{}", db.display()),
        &keyturn_db::ConnectOptions::default(),
    )
    .await
    .unwrap();
    let cat = Catalog::open(db_handle.clone(), "default", Default::default())
        .await
        .unwrap();
    let mk2: Arc<dyn KekProvider> =
        Arc::new(LocalKek::load(&MasterKeySource::Value(SecretString::from(MK2))).unwrap());
    let mk1: Arc<dyn KekProvider> =
        Arc::new(LocalKek::load(&MasterKeySource::Value(SecretString::from(MK1))).unwrap());
    assert_eq!(
        cat.load_keyring(&DekCache::new(mk1), false)
            .await
            .unwrap_err()
            .kind(),
        "wrong_kek"
    );
    let ring = cat.load_keyring(&DekCache::new(mk2), false).await.unwrap();
    db_handle.close().await;
    // One pass: the checksum again, and every row decrypted (in parallel)
    // to its expected plaintext.
    let mut h = Sha256::new(&SHA256);
    let checked = pages(&p, |page| {
        hash_page(&mut h, page);
        page.par_iter().for_each(|(id, v)| {
            let pt = ring
                .decrypt(v.as_bytes(), &[])
                .unwrap_or_else(|e| panic!("row {id} does not decrypt: {e}"));
            assert_eq!(&pt[..], &plaintext(*id)[..], "row {id}");
        });
    })
    .await;
    assert_eq!(checked, rows as u64);
    let after = hex::encode(h.finish().as_ref());
    assert_eq!(before, after, "a data row changed during kek rotate");
    p.close().await;
    eprintln!(
        "{rows} rows: load {load_s:.1} s, checksum {checksum_s:.1} s, kek rotate {rotate_s:.2} s, checksum + decrypt all {:.1} s; checksum {before} unchanged",
        t.elapsed().as_secs_f64()
    );
}
