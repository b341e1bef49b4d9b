//! The engine's integration suite: every scenario runs against SQLite,
//! PostgreSQL and MariaDB (`sqlite::*`, `postgres::*`, `mariadb::*`), through
//! the real `keyturn` binary, with values checked by decrypting them in the
//! test process. Each test gets its own database (see `common`).
//!
//! Run one backend: `cargo test -p keyturn --test e2e engine::postgres::`.

use crate::common::*;
use keyturn_db::PkValue;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

scenarios!(
    round_trip,
    composite_keys,
    context_binding,
    bad_rows,
    unknown_key_preflight_writes_nothing,
    dry_run_writes_nothing,
    crash_resume,
    sigint_resume,
    concurrent_writer,
    nulls_and_empty_tables,
    large_values,
    second_rotate_is_refused,
    schema_errors_reported_first,
    retired_keys,
    key_material_never_printed,
    non_utf8_text_column,
    unreachable_database,
    library_api,
    census_counts_only_well_formed_values,
    resume_sweeps_rows_before_the_checkpoint,
    primary_key_types,
    unsupported_primary_key_types_are_refused,
);

// ---------------------------------------------------------------------------
// Shared set-up
// ---------------------------------------------------------------------------

/// `id` key; `phone` text bound to its row, `nino` binary without context.
fn people(t: &TestDb, what: &str) -> Table {
    Table::new(
        &t.table_name(what),
        &[("id", PkKind::Int)],
        &[
            ("phone", ColKind::Text, true),
            ("nino", ColKind::Binary, false),
        ],
    )
}

/// Plaintext rows: non-ASCII text, arbitrary bytes (never starting like a
/// binary ciphertext), empty values, and NULLs.
fn people_rows(rng: &mut fastrand::Rng, ids: impl Iterator<Item = i64>) -> Data {
    ids.map(|id| {
        let phone = (!rng.u8(..).is_multiple_of(9))
            .then(|| format!("+44 7700 {:06} Zoë ☎ #{id}", rng.u32(..1_000_000)).into_bytes());
        let nino = (id % 11 != 0).then(|| {
            let mut b: Vec<u8> = (0..rng.usize(0..48)).map(|_| rng.u8(..)).collect();
            unlike_ciphertext(&mut b);
            b
        });
        (int_pk(id), vec![phone, nino])
    })
    .collect()
}

/// Changes the first byte of a random plaintext if it starts like a
/// ciphertext (0x8B for binary, `k` for text): `encrypt` rightly refuses to
/// encrypt what looks like a damaged ciphertext (even the one-byte "k").
fn unlike_ciphertext(b: &mut [u8]) {
    if let Some(f) = b.first_mut()
        && (*f == 0x8B || *f == b'k')
    {
        *f = 0;
    }
}

/// A `people` table with `n` plaintext rows, encrypted under k1 by
/// `keyturn encrypt`. Returns the plaintexts and keys k1, k2.
async fn encrypted_people(t: &TestDb, what: &str, n: i64) -> (Table, Data, Key, Key) {
    let tb = people(t, what);
    t.create_table(&tb, &[]).await;
    let plain = people_rows(&mut t.rng(), 1..=n);
    t.insert(&tb, &plain).await;
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    let out = t
        .keyturn(&Cfg::new(&[&tb], &[&k1], "k1"), &["--json", "encrypt"])
        .await
        .expect(0);
    let j = out.json();
    assert_eq!(j["outcome"], "ok", "{out}");
    assert_decrypts(&tb, &t.read(&tb).await, &plain, &ring(&[&k1], "k1"), "k1");
    (tb, plain, k1, k2)
}

/// The summary/report entry for one column.
fn col<'a>(j: &'a Value, table: &str, column: &str) -> &'a Value {
    j["columns"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["table"] == table && c["column"] == column)
        })
        .unwrap_or_else(|| panic!("no {table}.{column} in {j:#}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned number: {v}"))
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Every stored value decrypts (with its context) to the expected plaintext
/// under one of the ring's keys; NULL where NULL is expected.
fn assert_decrypts_any_key(
    tb: &Table,
    stored: &Data,
    expected: &Data,
    ring: &keyturn_format::Keyring,
) {
    let mut bad = Vec::new();
    for (pk, want) in expected {
        let got = &stored[pk];
        for i in 0..tb.cols.len() {
            let r = match (&want[i], &got[i]) {
                (None, None) => Ok(()),
                (Some(p), Some(v)) => check_value(tb, i, pk, v, p, ring, "k2")
                    .or_else(|_| check_value(tb, i, pk, v, p, ring, "k1")),
                (w, g) => Err(format!(
                    "expected {:?} bytes, stored {:?}",
                    w.as_ref().map(Vec::len),
                    g.as_ref().map(Vec::len)
                )),
            };
            if let Err(e) = r {
                bad.push(format!("{}.{} {pk:?}: {e}", tb.name, tb.cols[i].name));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} values wrong:\n  {}",
        bad.len(),
        bad[..bad.len().min(15)].join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// Plaintext → encrypt (k1) → rotate (k2) → verify, with NULLs, `status`,
/// `verify` exit codes 4 then 0, idempotent reruns and JSON everywhere.
async fn round_trip(t: TestDb) {
    let tb = people(&t, "people");
    t.create_table(&tb, &[]).await;
    let plain = people_rows(&mut t.rng(), 1..=300);
    t.insert(&tb, &plain).await;
    let (phones, ninos) = (non_null(&plain, 0), non_null(&plain, 1));
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    let cfg1 = Cfg::new(&[&tb], &[&k1], "k1");

    let st = t
        .keyturn(&cfg1, &["--json", "status"])
        .await
        .expect(0)
        .json();
    assert_eq!(u(&col(&st, &tb.name, "phone")["unrecognized"]), phones);
    assert_eq!(u(&col(&st, &tb.name, "phone")["nulls"]), 300 - phones);
    // Plaintext is not under the primary: verify fails.
    t.keyturn(&cfg1, &["verify"]).await.expect(4);

    let j = t
        .keyturn(&cfg1, &["--json", "encrypt"])
        .await
        .expect(0)
        .json();
    assert_eq!(j["operation"], "encrypt");
    assert_eq!(u(&col(&j, &tb.name, "phone")["written"]), phones);
    assert_eq!(u(&col(&j, &tb.name, "nino")["written"]), ninos);
    let r1 = ring(&[&k1], "k1");
    assert_decrypts(&tb, &t.read(&tb).await, &plain, &r1, "k1");
    // Encrypting again finds nothing to do.
    let j = t
        .keyturn(&cfg1, &["--json", "encrypt"])
        .await
        .expect(0)
        .json();
    assert_eq!(u(&col(&j, &tb.name, "phone")["written"]), 0);
    assert_eq!(u(&col(&j, &tb.name, "phone")["skipped"]), phones);
    t.keyturn(&cfg1, &["verify", "--deep"]).await.expect(0);

    // k2 joins as primary: everything needs rotation.
    let cfg2 = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let st = t
        .keyturn(&cfg2, &["--json", "status"])
        .await
        .expect(0)
        .json();
    let c = col(&st, &tb.name, "phone");
    assert_eq!(u(&c["needs_rotation"]), phones, "{st:#}");
    assert_eq!(c["by_key"][0]["key_id"], "k1");
    assert_eq!(c["by_key"][0]["state"], "decrypt-only");
    let v = t
        .keyturn(&cfg2, &["--json", "verify"])
        .await
        .expect(4)
        .json();
    assert_eq!(v["ok"], false);
    assert_eq!(u(&col(&v, &tb.name, "nino")["failing"]), ninos);
    assert!(
        !col(&v, &tb.name, "nino")["first_failures"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let j = t
        .keyturn(
            &cfg2,
            &["--json", "rotate", "--table", &tb.name, "--column", "phone"],
        )
        .await
        .expect(0)
        .json();
    assert_eq!(j["columns"].as_array().unwrap().len(), 1, "{j:#}");
    assert_eq!(u(&col(&j, &tb.name, "phone")["written"]), phones);
    let st = t
        .keyturn(&cfg2, &["--json", "status"])
        .await
        .expect(0)
        .json();
    assert_eq!(u(&col(&st, &tb.name, "phone")["needs_rotation"]), 0);
    assert_eq!(u(&col(&st, &tb.name, "nino")["needs_rotation"]), ninos);
    let j = t
        .keyturn(&cfg2, &["--json", "rotate"])
        .await
        .expect(0)
        .json();
    assert_eq!(j["outcome"], "ok");
    assert_eq!(j["current_key_id"], "k2");
    assert_eq!(u(&col(&j, &tb.name, "phone")["written"]), 0);
    assert_eq!(u(&col(&j, &tb.name, "nino")["written"]), ninos);
    assert_eq!(u(&col(&j, &tb.name, "nino")["failed"]), 0);
    let r2 = ring(&[&k1, &k2], "k2");
    assert_decrypts(&tb, &t.read(&tb).await, &plain, &r2, "k2");

    let v = t
        .keyturn(&cfg2, &["--json", "verify"])
        .await
        .expect(0)
        .json();
    assert_eq!(v["ok"], true);
    let v = t
        .keyturn(&cfg2, &["--json", "verify", "--deep"])
        .await
        .expect(0)
        .json();
    assert_eq!(u(&col(&v, &tb.name, "phone")["checked"]), phones);
    assert_eq!(u(&col(&v, &tb.name, "phone")["under_current"]), phones);
    // Human-readable output too.
    let out = t.keyturn(&cfg2, &["verify", "--deep"]).await.expect(0);
    assert!(out.stdout.contains("OK"), "{out}");
    let out = t.keyturn(&cfg2, &["status"]).await.expect(0);
    assert!(out.stdout.contains(&tb.name), "{out}");

    // Rotating again: nothing to do.
    let j = t
        .keyturn(&cfg2, &["--json", "rotate"])
        .await
        .expect(0)
        .json();
    assert_eq!(
        j["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| u(&c["written"]))
            .sum::<u64>(),
        0
    );
    let st = t
        .keyturn(&cfg2, &["--json", "status"])
        .await
        .expect(0)
        .json();
    let c = col(&st, &tb.name, "nino");
    assert_eq!(
        (u(&c["needs_rotation"]), u(&c["under_current"])),
        (0, ninos)
    );
    assert_eq!(u(&c["nulls"]), 300 - ninos);

    // The bookkeeping: no checkpoint left, one record per run.
    assert_eq!(t.meta_rows("keyturn_checkpoints", &tb.name).await, 0);
    let runs = t
        .strings("SELECT operation, outcome FROM keyturn_runs ORDER BY started_at")
        .await;
    assert_eq!(runs.len(), 5, "{runs:?}");
    assert!(runs.iter().all(|r| r[1] == "ok"), "{runs:?}");
    assert_decrypts(&tb, &t.read(&tb).await, &plain, &r2, "k2");
}

/// Composite primary key (text, integer) with awkward values, both columns
/// bound to the full key, small batches across key boundaries.
async fn composite_keys(t: TestDb) {
    let tb = Table::new(
        &t.table_name("composite"),
        &[("region", PkKind::Text), ("id", PkKind::Int)],
        &[
            ("note", ColKind::Text, true),
            ("doc", ColKind::Binary, true),
        ],
    );
    if t.kind == Kind::MariaDb {
        // A case-sensitive key ("eu" and "EU" are different rows).
        t.exec(&format!(
            "CREATE TABLE {} (region VARCHAR(64) COLLATE utf8mb4_bin NOT NULL, id BIGINT NOT NULL, note LONGTEXT, doc LONGBLOB, PRIMARY KEY (region, id)) DEFAULT CHARSET=utf8mb4",
            tb.name
        ))
        .await;
    } else {
        t.create_table(&tb, &[]).await;
    }
    let mut rng = t.rng();
    let mut plain = Data::new();
    for region in ["eu", "EU", "us-east", "o'hare", "Zürich", "a b", "EU-2"] {
        for id in [-7i64, 0, 1, 2, 3, 41, 42, 9_000_000_000]
            .into_iter()
            .chain(100..130)
        {
            let pk = vec![PkValue::Text(region.into()), PkValue::Int(id)];
            let note = format!("{region}/{id} {}", rng.u64(..)).into_bytes();
            let mut doc: Vec<u8> = (0..rng.usize(1..64)).map(|_| rng.u8(..0x80)).collect();
            unlike_ciphertext(&mut doc);
            plain.insert(pk, vec![Some(note), Some(doc)]);
        }
    }
    t.insert(&tb, &plain).await;
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    let mut cfg = Cfg::new(&[&tb], &[&k1], "k1");
    cfg.batch_size = 7;
    t.keyturn(&cfg, &["encrypt"]).await.expect(0);
    assert_decrypts(&tb, &t.read(&tb).await, &plain, &ring(&[&k1], "k1"), "k1");

    let mut cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    cfg.batch_size = 7;
    let j = t
        .keyturn(&cfg, &["--json", "rotate", "--workers", "3"])
        .await
        .expect(0)
        .json();
    assert_eq!(u(&col(&j, &tb.name, "note")["written"]), plain.len() as u64);
    assert_eq!(u(&col(&j, &tb.name, "doc")["written"]), plain.len() as u64);
    assert_decrypts(
        &tb,
        &t.read(&tb).await,
        &plain,
        &ring(&[&k1, &k2], "k2"),
        "k2",
    );
    t.keyturn(&cfg, &["verify", "--deep"]).await.expect(0);

    // The context includes the whole key: a value moved to the same id in
    // another region does not decrypt.
    let stored = t.read(&tb).await;
    let from = vec![PkValue::Text("eu".into()), PkValue::Int(42)];
    let to = vec![PkValue::Text("us-east".into()), PkValue::Int(42)];
    t.set(&tb, &to, 0, stored[&from][0].as_deref()).await;
    let v = t
        .keyturn(&cfg, &["--json", "verify", "--deep"])
        .await
        .expect(4)
        .json();
    let c = col(&v, &tb.name, "note");
    assert_eq!(u(&c["failing"]), 1, "{v:#}");
    assert_eq!(c["first_failures"][0]["pk"], "(\"us-east\", 42)");
}

/// A ciphertext copied to another row is reported as bad, left untouched,
/// and recorded; `verify --deep` catches a copy made under the primary.
async fn context_binding(t: TestDb) {
    let (tb, plain, k1, k2) = encrypted_people(&t, "ctx", 60).await;
    let phone = tb.col("phone");
    let ids: Vec<i64> = plain
        .iter()
        .filter(|(_, v)| v[phone].is_some())
        .map(|(pk, _)| match pk[0] {
            PkValue::Int(i) => i,
            _ => unreachable!(),
        })
        .collect();
    let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
    let stored = t.read(&tb).await;
    let copied = stored[&int_pk(a)][phone].clone().unwrap();
    assert_eq!(t.set(&tb, &int_pk(b), phone, Some(&copied)).await, 1);

    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let out = t.keyturn(&cfg, &["--json", "rotate"]).await.expect(3);
    let j = out.json();
    assert_eq!(j["outcome"], "completed_with_errors");
    assert_eq!(u(&col(&j, &tb.name, "phone")["failed"]), 1);
    let bad = j["bad_rows"].as_array().unwrap();
    assert_eq!(bad.len(), 1, "{j:#}");
    assert_eq!(bad[0]["pk"], b.to_string());
    assert_eq!(bad[0]["column"], "phone");
    // Untouched, recorded, and everything else rotated.
    let after = t.read(&tb).await;
    assert_eq!(after[&int_pk(b)][phone].as_deref(), Some(copied.as_slice()));
    let recorded = t
        .strings(&format!(
            "SELECT pk, column_name, reason FROM keyturn_bad_rows WHERE table_name = '{}'",
            tb.name
        ))
        .await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0][0], b.to_string());
    let r2 = ring(&[&k1, &k2], "k2");
    let mut expected = plain.clone();
    expected.remove(&int_pk(b));
    let mut rest = after.clone();
    rest.remove(&int_pk(b));
    assert_decrypts(&tb, &rest, &expected, &r2, "k2");
    let v = t
        .keyturn(&cfg, &["--json", "verify"])
        .await
        .expect(4)
        .json();
    assert_eq!(
        col(&v, &tb.name, "phone")["first_failures"][0]["pk"],
        b.to_string()
    );

    // Repair row b the way the application would, then copy a value that
    // is already under k2: only a deep verify can tell.
    let fixed = encrypt_one(
        &tb,
        phone,
        &int_pk(b),
        plain[&int_pk(b)][phone].as_ref().unwrap(),
        &r2,
    );
    t.set(&tb, &int_pk(b), phone, Some(&fixed)).await;
    t.keyturn(&cfg, &["verify", "--deep"]).await.expect(0);
    let copied = after[&int_pk(c)][phone].clone().unwrap();
    t.set(&tb, &int_pk(d), phone, Some(&copied)).await;
    t.keyturn(&cfg, &["verify"]).await.expect(0);
    let v = t
        .keyturn(&cfg, &["--json", "verify", "--deep"])
        .await
        .expect(4)
        .json();
    let cv = col(&v, &tb.name, "phone");
    assert_eq!(u(&cv["failing"]), 1, "{v:#}");
    assert_eq!(cv["first_failures"][0]["pk"], d.to_string());
}

/// Plaintext, damaged and truncated values: reported with reasons, left as
/// they are, recorded in keyturn_bad_rows; every other row is rotated.
async fn bad_rows(t: TestDb) {
    let (tb, plain, k1, k2) = encrypted_people(&t, "bad", 120).await;
    let (phone, nino) = (tb.col("phone"), tb.col("nino"));
    let stored = t.read(&tb).await;
    let with = |c: usize| -> Vec<i64> {
        stored
            .iter()
            .filter(|(_, v)| v[c].as_ref().is_some_and(|x| x.len() > 40))
            .map(|(pk, _)| match pk[0] {
                PkValue::Int(i) => i,
                _ => unreachable!(),
            })
            .collect()
    };
    let (p, n) = (with(phone), with(nino));
    let mut tampered: HashMap<(i64, usize), Vec<u8>> = HashMap::new();
    // Plaintext in an encrypted column.
    tampered.insert((p[0], phone), b"07700 900123".to_vec());
    // One character of the body changed: fails authentication.
    let mut v = stored[&int_pk(p[1])][phone].clone().unwrap();
    let i = v.len() - 5;
    v[i] = if v[i] == b'A' { b'B' } else { b'A' };
    tampered.insert((p[1], phone), v);
    // Truncated binary ciphertext.
    let v = stored[&int_pk(n[0])][nino].clone().unwrap();
    tampered.insert((n[0], nino), v[..v.len() - 3].to_vec());
    // Last tag byte flipped.
    let mut v = stored[&int_pk(n[1])][nino].clone().unwrap();
    *v.last_mut().unwrap() ^= 1;
    tampered.insert((n[1], nino), v);
    for ((id, c), v) in &tampered {
        t.set(&tb, &int_pk(*id), *c, Some(v)).await;
    }

    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let j = t
        .keyturn(&cfg, &["--json", "rotate"])
        .await
        .expect(3)
        .json();
    assert_eq!(u(&col(&j, &tb.name, "phone")["failed"]), 2, "{j:#}");
    assert_eq!(u(&col(&j, &tb.name, "nino")["failed"]), 2, "{j:#}");
    let mut reported: Vec<(String, String)> = j["bad_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["column"].as_str().unwrap().to_owned(),
                b["pk"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    reported.sort();
    let mut expected: Vec<(String, String)> = tampered
        .keys()
        .map(|(id, c)| (tb.cols[*c].name.clone(), id.to_string()))
        .collect();
    expected.sort();
    assert_eq!(reported, expected);
    for b in j["bad_rows"].as_array().unwrap() {
        assert!(!b["reason"].as_str().unwrap().is_empty());
    }
    // Human output lists them too, and exits 3 again: they are still there,
    // one record per row, seen twice.
    let out = t.keyturn(&cfg, &["rotate"]).await.expect(3);
    assert!(out.stdout.contains("could not be processed"), "{out}");
    assert_eq!(t.meta_rows("keyturn_bad_rows", &tb.name).await, 4);
    let listed = t
        .keyturn(&cfg, &["--json", "bad-rows", "list"])
        .await
        .expect(0)
        .json();
    let records = listed["bad_rows"].as_array().unwrap();
    let mut named: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            assert_eq!(r["times_seen"], 2, "{r}");
            assert_eq!(r["acknowledged"], false, "{r}");
            (
                r["column"].as_str().unwrap().to_owned(),
                r["pk"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    named.sort();
    assert_eq!(named, expected);

    let after = t.read(&tb).await;
    let mut want = plain.clone();
    let mut got = after.clone();
    for ((id, c), v) in &tampered {
        assert_eq!(
            after[&int_pk(*id)][*c].as_deref(),
            Some(v.as_slice()),
            "row {id} was changed"
        );
        want.get_mut(&int_pk(*id)).unwrap()[*c] = None;
        got.get_mut(&int_pk(*id)).unwrap()[*c] = None;
    }
    assert_decrypts(&tb, &got, &want, &ring(&[&k1, &k2], "k2"), "k2");
    let st = t
        .keyturn(&cfg, &["--json", "status"])
        .await
        .expect(0)
        .json();
    assert_eq!(u(&col(&st, &tb.name, "phone")["unrecognized"]), 1, "{st:#}");
    // verify --deep names exactly the bad rows.
    let v = t
        .keyturn(&cfg, &["--json", "verify", "--deep"])
        .await
        .expect(4)
        .json();
    let failing = |v: &Value, key: &str| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = v["columns"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| {
                let column = c["column"].as_str().unwrap().to_owned();
                c[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |f| (column.clone(), f["pk"].as_str().unwrap().to_owned()))
            })
            .collect();
        out.sort();
        out
    };
    assert_eq!(failing(&v, "first_failures"), expected, "{v:#}");
    // Acknowledged as they are, they are listed, not failing: exit 0.
    t.keyturn(&cfg, &["bad-rows", "ack", "--all"])
        .await
        .expect(2);
    let acked = t
        .keyturn(
            &cfg,
            &[
                "--json",
                "bad-rows",
                "ack",
                "--all",
                "--reason",
                "legacy garbage, kept",
            ],
        )
        .await
        .expect(0)
        .json();
    assert_eq!(acked["acknowledged"], 4, "{acked:#}");
    let v = t
        .keyturn(&cfg, &["--json", "verify", "--deep"])
        .await
        .expect(0)
        .json();
    assert_eq!(failing(&v, "acknowledged"), expected, "{v:#}");
    assert!(failing(&v, "first_failures").is_empty(), "{v:#}");
    // Plain verify agrees.
    t.keyturn(&cfg, &["verify"]).await.expect(0);
    let events = t
        .keyturn(&cfg, &["--json", "audit", "list", "--action", "bad_rows"])
        .await
        .expect(0)
        .json();
    assert!(
        events.to_string().contains("legacy garbage, kept"),
        "{events:#}"
    );
    // A value that changes after its acknowledgement is no longer
    // acknowledged.
    let (id, c) = (p[0], phone);
    t.set(&tb, &int_pk(id), c, Some(b"07700 900999")).await;
    let v = t
        .keyturn(&cfg, &["--json", "verify", "--deep"])
        .await
        .expect(4)
        .json();
    assert_eq!(
        failing(&v, "first_failures"),
        vec![("phone".to_string(), id.to_string())],
        "{v:#}"
    );
    // A row the application mends is cleared by the next rotation.
    let fixed = encrypt_one(
        &tb,
        phone,
        &int_pk(id),
        b"07700 900999",
        &ring(&[&k2], "k2"),
    );
    t.set(&tb, &int_pk(id), c, Some(&fixed)).await;
    t.keyturn(&cfg, &["rotate"]).await.expect(3);
    assert_eq!(t.meta_rows("keyturn_bad_rows", &tb.name).await, 3);
    // No odd value reaches any output, record or report.
    let report = t
        .keyturn(&cfg, &["--json", "report"])
        .await
        .expect(0)
        .stdout;
    let trail = t.keyturn(&cfg, &["audit", "export"]).await.expect(0).stdout;
    for text in [report, trail, listed.to_string()] {
        assert!(!text.contains("07700 900"), "plaintext leaked");
    }
}

/// Values under a key the keyring lacks: rotate stops before writing any
/// value, naming the key, and records itself as failed (it took the lock
/// and recorded itself as running before counting, so that a kill during
/// the count leaves a trace); a dry run stops the same and writes nothing.
async fn unknown_key_preflight_writes_nothing(t: TestDb) {
    let tb = people(&t, "preflight");
    t.create_table(&tb, &[]).await;
    let plain = people_rows(&mut t.rng(), 1..=150);
    let (k0, k1, k2) = (t.key("k0"), t.key("k1"), t.key("k2"));
    let (r0, r1) = (ring(&[&k0], "k0"), ring(&[&k1], "k1"));
    // Every 3rd row under k0, the rest under k1.
    let mut stored = Data::new();
    for (pk, vals) in &plain {
        let one: Data = [(pk.clone(), vals.clone())].into();
        let r = if matches!(pk[0], PkValue::Int(i) if i % 3 == 0) {
            &r0
        } else {
            &r1
        };
        stored.extend(encrypt_rows(&tb, &one, r));
    }
    t.insert(&tb, &stored).await;

    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let out = t.keyturn(&cfg, &["rotate"]).await.expect(5);
    assert!(
        out.stderr.contains("\"k0\"") && out.stderr.contains("nothing was written"),
        "{out}"
    );
    let out = t.keyturn(&cfg, &["--json", "rotate"]).await.expect(5);
    assert!(
        out.json()["error"].as_str().unwrap().contains("k0"),
        "{out}"
    );
    assert_eq!(t.read(&tb).await, stored, "preflight changed data");
    assert_eq!(t.meta_rows("keyturn_checkpoints", &tb.name).await, 0);
    assert_eq!(t.meta_rows("keyturn_bad_rows", &tb.name).await, 0);
    assert_eq!(
        t.strings("SELECT outcome FROM keyturn_runs").await,
        vec![vec!["failed".to_string()]; 2]
    );
    assert_eq!(t.count("SELECT count(*) FROM keyturn_lock").await, 0);
    let dry = t.sibling("dry").await;
    dry.create_table(&tb, &[]).await;
    dry.insert(&tb, &stored).await;
    let mut dry_cfg = cfg.clone();
    dry_cfg.url = Some(dry.url.clone());
    let out = dry.keyturn(&dry_cfg, &["rotate", "--dry-run"]).await;
    let tables = dry.keyturn_tables().await;
    dry.finish().await;
    assert_eq!(out.code, 5, "{out}");
    assert_eq!(
        tables,
        Vec::<&str>::new(),
        "a dry run wrote keyturn's tables"
    );

    // With k0 supplied it runs.
    let cfg = Cfg::new(&[&tb], &[&k0, &k1, &k2], "k2");
    t.keyturn(&cfg, &["rotate"]).await.expect(0);
    assert_decrypts(
        &tb,
        &t.read(&tb).await,
        &plain,
        &ring(&[&k0, &k1, &k2], "k2"),
        "k2",
    );
}

/// `--dry-run` reads, decrypts and reports, and writes nothing: no values,
/// no bookkeeping tables, no checkpoints, runs or bad rows.
async fn dry_run_writes_nothing(t: TestDb) {
    let tb = people(&t, "dry");
    t.create_table(&tb, &[]).await;
    let plain = people_rows(&mut t.rng(), 1..=250);
    t.insert(&tb, &plain).await;
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    let cfg1 = Cfg::new(&[&tb], &[&k1], "k1");
    let j = t
        .keyturn(&cfg1, &["--json", "encrypt", "--dry-run"])
        .await
        .expect(0)
        .json();
    assert_eq!(j["dry_run"], true);
    assert_eq!(
        u(&col(&j, &tb.name, "phone")["written"]),
        non_null(&plain, 0)
    );
    assert_eq!(t.read(&tb).await, plain);
    assert_eq!(t.keyturn_tables().await, Vec::<&str>::new());

    t.keyturn(&cfg1, &["encrypt"]).await.expect(0);
    let before = t.read(&tb).await;
    let runs = t.count("SELECT COUNT(*) FROM keyturn_runs").await;
    let cfg2 = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let out = t
        .keyturn(&cfg2, &["rotate", "--dry-run", "--batch-size", "17"])
        .await
        .expect(0);
    assert!(out.stdout.contains("dry run"), "{out}");
    let j = t
        .keyturn(&cfg2, &["--json", "rotate", "--dry-run"])
        .await
        .expect(0)
        .json();
    assert_eq!(
        u(&col(&j, &tb.name, "nino")["written"]),
        non_null(&plain, 1)
    );
    // A bad row is reported, but not recorded.
    let stored = t.read(&tb).await;
    let victim = stored
        .iter()
        .find(|(_, v)| v[0].is_some())
        .unwrap()
        .0
        .clone();
    t.set(&tb, &victim, 0, Some(b"not a ciphertext")).await;
    let before_bad = t.read(&tb).await;
    let j = t
        .keyturn(&cfg2, &["--json", "rotate", "--dry-run"])
        .await
        .expect(3)
        .json();
    assert_eq!(u(&col(&j, &tb.name, "phone")["failed"]), 1);
    assert_eq!(t.read(&tb).await, before_bad);
    assert_eq!(t.count("SELECT COUNT(*) FROM keyturn_runs").await, runs);
    assert_eq!(t.count("SELECT COUNT(*) FROM keyturn_bad_rows").await, 0);
    assert_eq!(t.count("SELECT COUNT(*) FROM keyturn_checkpoints").await, 0);
    // Put it back: the real rotation then does everything the dry run said.
    t.set(&tb, &victim, 0, before[&victim][0].as_deref()).await;
    let real = t
        .keyturn(&cfg2, &["--json", "rotate"])
        .await
        .expect(0)
        .json();
    assert_eq!(
        u(&col(&real, &tb.name, "phone")["written"]),
        non_null(&plain, 0)
    );
    assert_decrypts(
        &tb,
        &t.read(&tb).await,
        &plain,
        &ring(&[&k1, &k2], "k2"),
        "k2",
    );
}

/// SIGKILL at random points during encrypt and rotate, rerun each time:
/// no value is ever lost or damaged, checkpoints are resumed, and the lock of
/// a killed run never blocks the next one.
async fn crash_resume(t: TestDb) {
    let n = 5000;
    let tb = Table::new(
        &t.table_name("crash"),
        &[("id", PkKind::Int)],
        &[
            ("secret", ColKind::Text, true),
            ("payload", ColKind::Binary, true),
        ],
    );
    t.create_table(&tb, &[]).await;
    let plain = people_rows(&mut t.rng(), 1..=n);
    t.insert(&tb, &plain).await;
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    let mut rng = t.rng();

    let cfg1 = Cfg::new(&[&tb], &[&k1], "k1");
    for _ in 0..2 {
        let mut p = t.spawn(&cfg1, &["encrypt", "--max-rows-per-sec", "5000"]);
        sleep_ms(rng.u64(300..1500)).await;
        if p.finished() {
            break;
        }
        p.kill();
    }
    t.keyturn(&cfg1, &["encrypt"]).await.expect(0);
    let r1 = ring(&[&k1], "k1");
    assert_decrypts(&tb, &t.read(&tb).await, &plain, &r1, "k1");

    let cfg2 = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let r2 = ring(&[&k1, &k2], "k2");
    let (mut kills, mut checkpoints) = (0, 0);
    for i in 0..5 {
        let mut p = t.spawn(&cfg2, &["rotate", "--max-rows-per-sec", "1000"]);
        match i {
            // While starting up (connecting, preflight, lock) or just after.
            0 => sleep_ms(rng.u64(0..400)).await,
            // Soon after a checkpoint was saved (every second), so that the
            // next run resumes from it.
            1 => {
                let start = std::time::Instant::now();
                while t.meta_rows("keyturn_checkpoints", &tb.name).await == 0
                    && !p.finished()
                    && start.elapsed() < Duration::from_secs(30)
                {
                    sleep_ms(20).await;
                }
                sleep_ms(rng.u64(0..300)).await;
            }
            // Anywhere in the middle of the work.
            _ => {
                p.wait_stderr("values to process", Duration::from_secs(30))
                    .await;
                sleep_ms(rng.u64(50..1500)).await;
            }
        }
        if p.finished() {
            p.wait(Duration::from_secs(10)).await.expect(0);
            break;
        }
        let out = p.kill();
        assert_eq!(out.code, -9, "{out}");
        kills += 1;
        if t.meta_rows("keyturn_checkpoints", &tb.name).await > 0 {
            checkpoints += 1;
        }
        // Whatever the moment of the kill, every value is intact.
        assert_decrypts_any_key(&tb, &t.read(&tb).await, &plain, &r2);
    }
    assert!(kills >= 4, "only {kills} runs were killed mid-way");
    assert!(checkpoints >= 1, "no killed run left a checkpoint");
    let out = t.keyturn(&cfg2, &["rotate"]).await.expect(0);
    assert!(out.stderr.contains("values to process"), "{out}");
    assert_decrypts(&tb, &t.read(&tb).await, &plain, &r2, "k2");
    assert_eq!(t.meta_rows("keyturn_checkpoints", &tb.name).await, 0);
    t.keyturn(&cfg2, &["verify", "--deep"]).await.expect(0);
    eprintln!("crash_resume: {kills} kills, {checkpoints} left a checkpoint");
}

/// Ctrl-C: exit 130 with the checkpoint saved and the run recorded as
/// interrupted; the rerun resumes from it and finishes.
async fn sigint_resume(t: TestDb) {
    let (tb, plain, k1, k2) = encrypted_people(&t, "sigint", 3000).await;
    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let mut p = t.spawn(&cfg, &["rotate", "--max-rows-per-sec", "1500"]);
    p.wait_stderr("values to process", Duration::from_secs(60))
        .await;
    sleep_ms(t.rng().u64(300..1200)).await;
    p.sigint();
    let out = p.wait(Duration::from_secs(60)).await.expect(130);
    assert!(out.stdout.contains("interrupted"), "{out}");
    let cps = t
        .strings(&format!(
            "SELECT column_name, target_key, last_pk FROM keyturn_checkpoints WHERE table_name = '{}'",
            tb.name
        ))
        .await;
    assert_eq!(cps.len(), 1, "{cps:?}\n{out}");
    assert_eq!((cps[0][0].as_str(), cps[0][1].as_str()), ("phone", "k2"));
    let outcomes = t
        .strings("SELECT outcome FROM keyturn_runs WHERE operation = 'rotate'")
        .await;
    assert_eq!(outcomes, vec![vec!["interrupted".to_string()]]);
    let st = t
        .keyturn(&cfg, &["--json", "status"])
        .await
        .expect(0)
        .json();
    assert!(
        u(&col(&st, &tb.name, "phone")["needs_rotation"]) > 0,
        "{st:#}"
    );

    let out = t.keyturn(&cfg, &["rotate"]).await.expect(0);
    assert!(out.stderr.contains("resuming after primary key"), "{out}");
    assert_decrypts(
        &tb,
        &t.read(&tb).await,
        &plain,
        &ring(&[&k1, &k2], "k2"),
        "k2",
    );
    assert_eq!(t.meta_rows("keyturn_checkpoints", &tb.name).await, 0);
}

/// An application writes random rows (under k1 or k2, sometimes NULL) while
/// the rotation runs: afterwards every row holds the writer's last value,
/// and one more rotate puts everything under k2.
async fn concurrent_writer(t: TestDb) {
    let n = 2000;
    let tb = Table::new(
        &t.table_name("writer"),
        &[("id", PkKind::Int)],
        &[("secret", ColKind::Text, true)],
    );
    t.create_table(&tb, &[]).await;
    let mut rng = t.rng();
    let mut expected: Data = (1..=n)
        .map(|id| {
            (
                int_pk(id),
                vec![Some(format!("original {id} {}", rng.u64(..)).into_bytes())],
            )
        })
        .collect();
    t.insert(&tb, &expected).await;
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    t.keyturn(&Cfg::new(&[&tb], &[&k1], "k1"), &["encrypt"])
        .await
        .expect(0);
    let (r1, r2) = (ring(&[&k1], "k1"), ring(&[&k1, &k2], "k2"));

    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let mut p = t.spawn(
        &cfg,
        &[
            "--json",
            "rotate",
            "--batch-size",
            "50",
            "--max-rows-per-sec",
            "500",
        ],
    );
    let mut writes = 0u64;
    while !p.finished() {
        let id = rng.i64(1..=n);
        let pk = int_pk(id);
        let value = if rng.u8(..) < 12 {
            None
        } else {
            Some(format!("written {writes} to {id}").into_bytes())
        };
        let stored = value.as_ref().map(|v| {
            let r = if rng.bool() { &r1 } else { &r2 };
            encrypt_one(&tb, 0, &pk, v, r)
        });
        t.set(&tb, &pk, 0, stored.as_deref()).await;
        expected.insert(pk, vec![value]);
        writes += 1;
        sleep_ms(1).await;
    }
    let out = p.wait(Duration::from_secs(10)).await;
    let j = out.json();
    // A row changed during each of its compare-and-swap rounds is reported
    // (exit 3), never overwritten.
    assert!(out.code == 0 || out.code == 3, "{out}");
    for b in j["bad_rows"].as_array().unwrap() {
        assert!(
            b["reason"]
                .as_str()
                .unwrap()
                .contains("changed by the application"),
            "{out}"
        );
    }
    let c = col(&j, &tb.name, "secret");
    eprintln!(
        "concurrent_writer: {writes} writes; rotate wrote {}, skipped {}, retried {}, failed {}",
        c["written"], c["skipped"], c["retried"], c["failed"]
    );
    // SQLite commits are slow (a sync each): fewer writes, same contention.
    assert!(writes >= 25, "the writer only managed {writes} writes");
    assert_decrypts_any_key(&tb, &t.read(&tb).await, &expected, &r2);

    t.keyturn(&cfg, &["rotate"]).await.expect(0);
    assert_decrypts(&tb, &t.read(&tb).await, &expected, &r2, "k2");
    t.keyturn(&cfg, &["verify", "--deep"]).await.expect(0);
}

/// Empty tables and all-NULL columns: every command succeeds with nothing
/// to do, NULLs stay NULL.
async fn nulls_and_empty_tables(t: TestDb) {
    let empty = people(&t, "empty");
    let nulls = people(&t, "nulls");
    t.create_table(&empty, &[]).await;
    t.create_table(&nulls, &[]).await;
    let all_null: Data = (1..=30).map(|i| (int_pk(i), vec![None, None])).collect();
    t.insert(&nulls, &all_null).await;
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    let cfg1 = Cfg::new(&[&empty, &nulls], &[&k1], "k1");
    let cfg2 = Cfg::new(&[&empty, &nulls], &[&k1, &k2], "k2");
    for (cfg, args) in [
        (&cfg1, &["--json", "encrypt"][..]),
        (&cfg2, &["--json", "rotate"][..]),
        (&cfg2, &["--json", "rotate", "--dry-run"][..]),
    ] {
        let j = t.keyturn(cfg, args).await.expect(0).json();
        assert_eq!(j["columns"].as_array().unwrap().len(), 4, "{j:#}");
        for c in j["columns"].as_array().unwrap() {
            assert_eq!((u(&c["written"]), u(&c["failed"])), (0, 0), "{j:#}");
        }
    }
    let st = t
        .keyturn(&cfg2, &["--json", "status"])
        .await
        .expect(0)
        .json();
    assert_eq!(u(&col(&st, &nulls.name, "phone")["nulls"]), 30);
    assert_eq!(u(&col(&st, &empty.name, "nino")["total"]), 0);
    let v = t
        .keyturn(&cfg2, &["--json", "verify", "--deep"])
        .await
        .expect(0)
        .json();
    assert_eq!(u(&col(&v, &nulls.name, "nino")["checked"]), 0);
    t.keyturn(&cfg2, &["verify"]).await.expect(0);
    assert_eq!(t.read(&nulls).await, all_null);
    assert!(t.read(&empty).await.is_empty());
}

/// Values from 0 bytes up to 1 MiB in text and binary columns.
async fn large_values(t: TestDb) {
    let tb = Table::new(
        &t.table_name("large"),
        &[("id", PkKind::Int)],
        &[
            ("body", ColKind::Text, true),
            ("data", ColKind::Binary, true),
        ],
    );
    t.create_table(&tb, &[]).await;
    let mut rng = t.rng();
    let sizes = [
        0usize,
        1,
        100,
        65_535,
        65_537,
        300_000,
        (1 << 20) - 1,
        1 << 20,
        1 << 20,
        1 << 20,
        1 << 20,
        1 << 20,
        1 << 20,
    ];
    let plain: Data = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let mut text = String::with_capacity(size);
            if size >= 2 {
                text.push('é');
            } else if size == 1 {
                text.push('x');
            }
            while text.len() < size {
                // Some multi-byte characters (2 bytes), all the way through.
                if size - text.len() >= 2 && rng.u8(..) < 8 {
                    text.push('ü');
                } else {
                    text.push(rng.alphanumeric());
                }
            }
            let mut bin: Vec<u8> = (0..size).map(|_| rng.u8(..)).collect();
            unlike_ciphertext(&mut bin);
            (
                int_pk(i as i64 + 1),
                vec![Some(text.into_bytes()), Some(bin)],
            )
        })
        .collect();
    t.insert(&tb, &plain).await;
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    let mut cfg = Cfg::new(&[&tb], &[&k1], "k1");
    cfg.batch_size = 5000;
    t.keyturn(&cfg, &["encrypt"]).await.expect(0);
    assert_decrypts(&tb, &t.read(&tb).await, &plain, &ring(&[&k1], "k1"), "k1");
    let mut cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    cfg.batch_size = 5000;
    let j = t
        .keyturn(&cfg, &["--json", "rotate"])
        .await
        .expect(0)
        .json();
    assert_eq!(u(&col(&j, &tb.name, "body")["written"]), sizes.len() as u64);
    assert_decrypts(
        &tb,
        &t.read(&tb).await,
        &plain,
        &ring(&[&k1, &k2], "k2"),
        "k2",
    );
    t.keyturn(&cfg, &["verify", "--deep"]).await.expect(0);
}

/// While one rotate runs, a second rotate (or encrypt) is refused with exit
/// 6 naming the holder; reading commands still work; another database on
/// the same server is not blocked. A lock taken through the library is
/// honoured the same way.
async fn second_rotate_is_refused(t: TestDb) {
    let (tb, plain, k1, k2) = encrypted_people(&t, "lock", 1500).await;
    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    let mut first = t.spawn(
        &cfg,
        &["rotate", "--batch-size", "50", "--max-rows-per-sec", "300"],
    );
    first
        .wait_stderr("values to process", Duration::from_secs(60))
        .await;
    let holder = format!("pid {} (rotate)", first.pid());

    let out = t.keyturn(&cfg, &["rotate"]).await.expect(6);
    assert!(
        out.stderr.contains("holds the rotation lock") && out.stderr.contains(&holder),
        "{out}"
    );
    let out = t.keyturn(&cfg, &["--json", "encrypt"]).await.expect(6);
    assert!(
        out.json()["error"].as_str().unwrap().contains(&holder),
        "{out}"
    );
    t.keyturn(&cfg, &["status"]).await.expect(0);
    t.keyturn(&cfg, &["verify"]).await.expect(4);

    if t.kind != Kind::Sqlite {
        let other = t.sibling("other").await;
        let tb2 = people(&other, "other");
        other.create_table(&tb2, &[]).await;
        let plain2 = people_rows(&mut other.rng(), 1..=50);
        other.insert(&tb2, &plain2).await;
        let mut cfg2 = Cfg::new(&[&tb2], &[&k1], "k1");
        cfg2.url = Some(other.url.clone());
        let out = other.keyturn(&cfg2, &["encrypt"]).await;
        other.finish().await;
        assert_eq!(
            out.code, 0,
            "a run in another database on the same server was blocked\n{out}"
        );
    }

    assert!(!first.finished(), "the first rotate ended too early");
    first.sigint();
    first.wait(Duration::from_secs(60)).await.expect(130);

    // A lock held through the library API.
    let db = keyturn_db::connect(&t.url, &keyturn_db::ConnectOptions::default())
        .await
        .expect("connect");
    let guard = match db
        .try_lock(&keyturn_db::LockHolder {
            description: "itest-holder@elsewhere pid 1 (rotate)".into(),
            host: "itest-elsewhere".into(),
            pid: 1,
            token: "itest-elsewhere-1".into(),
        })
        .await
        .expect("try_lock")
    {
        keyturn_db::LockOutcome::Acquired(g) => g,
        keyturn_db::LockOutcome::Held { holder, .. } => panic!("lock still held by {holder}"),
    };
    let out = t.keyturn(&cfg, &["rotate"]).await.expect(6);
    assert!(out.stderr.contains("itest-holder@elsewhere"), "{out}");
    guard.release().await.expect("release");
    db.close().await;

    t.keyturn(&cfg, &["rotate"]).await.expect(0);
    assert_decrypts(
        &tb,
        &t.read(&tb).await,
        &plain,
        &ring(&[&k1, &k2], "k2"),
        "k2",
    );
}

/// Missing tables, missing columns and unusable column types are all
/// reported, together, before anything runs.
async fn schema_errors_reported_first(t: TestDb) {
    let tb = people(&t, "schema");
    t.create_table(&tb, &[]).await;
    let plain = people_rows(&mut t.rng(), 1..=20);
    t.insert(&tb, &plain).await;
    let typed = Table::new(
        &t.table_name("typed"),
        &[("id", PkKind::Int)],
        &[("amount", ColKind::Text, true)],
    );
    t.exec(&format!(
        "CREATE TABLE {} (id INTEGER PRIMARY KEY, amount INTEGER)",
        typed.name
    ))
    .await;
    let mut with_missing_col = tb.clone();
    with_missing_col.cols.push(Col {
        name: "nope".into(),
        kind: ColKind::Text,
        context: false,
    });
    let missing = people(&t, "missing");
    let k1 = t.key("k1");
    let cfg = Cfg::new(&[&with_missing_col, &missing, &typed], &[&k1], "k1");
    for args in [
        &["encrypt"][..],
        &["rotate"],
        &["rotate", "--dry-run"],
        &["status"],
        &["verify"],
    ] {
        let out = t.keyturn(&cfg, args).await.expect(1);
        for needle in [
            format!("table {} does not exist", missing.name),
            "column nope does not exist".to_string(),
            "cannot hold ciphertext".to_string(),
        ] {
            assert!(out.stderr.contains(&needle), "no {needle:?}\n{out}");
        }
    }
    let out = t.keyturn(&cfg, &["--json", "rotate"]).await.expect(1);
    assert!(
        out.json()["error"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{out}"
    );
    let out = t
        .keyturn(&cfg, &["rotate", "--table", "kt_unknown"])
        .await
        .expect(2);
    assert!(out.stderr.contains("not a configured table"), "{out}");
    assert_eq!(t.read(&tb).await, plain);
    assert_eq!(t.keyturn_tables().await, Vec::<&str>::new());
}

/// Retired keys refuse to decrypt: rotate stops in preflight (exit 5)
/// unless retired keys are allowed; after the rotation they are not needed.
async fn retired_keys(t: TestDb) {
    let (tb, plain, k1, k2) = encrypted_people(&t, "retired", 200).await;
    let before = t.read(&tb).await;
    let mut cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    cfg.retired = vec!["k1".into()];
    let out = t.keyturn(&cfg, &["rotate"]).await.expect(5);
    assert!(out.stderr.contains("retired"), "{out}");
    assert_eq!(t.read(&tb).await, before);
    let st = t
        .keyturn(&cfg, &["--json", "status"])
        .await
        .expect(0)
        .json();
    assert_eq!(col(&st, &tb.name, "phone")["by_key"][0]["state"], "retired");
    let v = t
        .keyturn(&cfg, &["--json", "verify", "--deep"])
        .await
        .expect(4)
        .json();
    assert!(
        col(&v, &tb.name, "phone")["first_failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("retired"),
        "{v:#}"
    );

    cfg.allow_retired = true;
    t.keyturn(&cfg, &["rotate"]).await.expect(0);
    assert_decrypts(
        &tb,
        &t.read(&tb).await,
        &plain,
        &ring(&[&k1, &k2], "k2"),
        "k2",
    );
    cfg.allow_retired = false;
    t.keyturn(&cfg, &["verify", "--deep"]).await.expect(0);
    // k1 can go entirely.
    let only_k2 = Cfg::new(&[&tb], &[&k2], "k2");
    t.keyturn(&only_k2, &["verify", "--deep"]).await.expect(0);
}

/// No key material in any output: every run of the suite is checked for
/// it; here also bad key specs (whose material must not be echoed) and a
/// run with trace logging.
async fn key_material_never_printed(t: TestDb) {
    let tb = people(&t, "secrets");
    t.create_table(&tb, &[]).await;
    let plain = people_rows(&mut t.rng(), 1..=40);
    t.insert(&tb, &plain).await;
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    let mut rng = t.rng();
    let b64 = |bytes: &[u8]| {
        use base64_lite::encode;
        encode(bytes)
    };
    let short = b64(&(0..31).map(|_| rng.u8(..)).collect::<Vec<_>>());
    let good = b64(&(0..32).map(|_| rng.u8(..)).collect::<Vec<_>>());
    t.add_secret(&short);
    t.add_secret(&good);
    let bad_specs = [
        format!("k1:aes256gcm:{short}"),
        format!("k1:rot13:{good}"),
        format!("k1:aes256gcm:{good}!"),
        format!("k 1:aes256gcm:{good}"),
        format!("{}\nk1:aes256gcm:{good}", k1.spec),
        format!("{}\n{}", k1.spec, k2.spec), // two keys, none primary
    ];
    for (i, spec) in bad_specs.iter().enumerate() {
        let mut cfg = Cfg::new(&[&tb], &[], "k1");
        cfg.keys_text = Some(spec.clone());
        if i == bad_specs.len() - 1 {
            cfg.primary = None;
        }
        for args in [&["status"][..], &["--json", "rotate"]] {
            let out = t.keyturn(&cfg, args).await.expect(1);
            assert!(out.stderr.contains("error"), "{out}");
        }
    }
    // Primary names a key that is not loaded.
    let cfg = Cfg::new(&[&tb], &[&k1], "k9");
    t.keyturn(&cfg, &["encrypt"]).await.expect(1);

    // Every other way a secret reaches a message (issue #13, section 8),
    // each run as a plain and as a --json command.
    let both = |args: &[&str]| -> Vec<Vec<String>> {
        let plain: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut json = vec!["--json".to_string()];
        json.extend(plain.clone());
        vec![plain, json]
    };
    let failing = |cfg: Cfg, why: String| {
        let t = t.clone();
        async move {
            for args in both(&["status"]).into_iter().chain(both(&["verify"])) {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = t.keyturn(&cfg, &args).await.expect(1);
                assert!(out.stderr.contains(&why), "expected {why:?}\n{out}");
                if args[0] == "--json" {
                    assert!(out.json()["error"].is_string(), "{out}");
                }
            }
        }
    };
    // A password in a URL's query string, on servers that refuse the
    // connection (port 1); sslpassword is a parameter the PostgreSQL driver
    // does not read (and would log with its value).
    let pw = format!("QueryPw{}", t.tag);
    t.add_secret(&pw);
    for url in [
        format!("postgres://app@127.0.0.1:1/x?user=app&password={pw}&sslmode=disable"),
        format!("postgres://127.0.0.1:1/x?sslpassword={pw}&PassWord={pw}"),
        format!("mysql://app@127.0.0.1:1/x?password={pw}&pwd={pw}"),
        format!("postgres://app:{pw}@127.0.0.1:1/x?secret={pw}&token={pw}&key={pw}"),
    ] {
        let mut cfg = Cfg::new(&[&tb], &[&k1], "k1");
        cfg.url = Some(url);
        failing(cfg, "cannot connect".into()).await;
    }
    // A key spec pasted under a misspelt field, in [[target]] and in
    // [catalog]: the error gives line and column, never the source line.
    let spec_secret = |id: &str| {
        let k = t.key(id);
        k.spec
    };
    for (extra, why) in [
        (
            format!("colums = [{}]\n", toml_str(&spec_secret("pasted"))),
            ", column 1: unknown field `colums`",
        ),
        (
            format!(
                "\n[catalog]\nkek = \"local\"\nmaster_kee = {}\n",
                toml_str(&spec_secret("pasted2"))
            ),
            ", column 1: unknown field `master_kee`",
        ),
        (
            format!("\n[catalog]\nkek = {}\n", toml_str(&spec_secret("pasted3"))),
            "unknown variant (value not shown), expected one of `local`",
        ),
        (
            format!(
                "\n[keyrings.x]\nallow_retired = {}\n",
                toml_str(&spec_secret("pasted4"))
            ),
            "invalid type: string (value not shown), expected a boolean",
        ),
    ] {
        let mut cfg = Cfg::new(&[&tb], &[&k1], "k1");
        cfg.extra_toml = extra;
        failing(cfg, why.into()).await;
    }
    // A whole key spec as `primary`, then as `retired`.
    let mut cfg = Cfg::new(&[&tb], &[&k1], "k1");
    cfg.primary = Some(k2.spec.clone());
    failing(cfg, "keys.primary is not a valid key id".into()).await;
    let mut cfg = Cfg::new(&[&tb], &[&k1], "k1");
    cfg.retired = vec![k2.spec.clone()];
    failing(cfg, "keys.retired[0] is not a valid key id".into()).await;
    // Malformed specs name their source and place, in env and file sources.
    let mut cfg = Cfg::new(&[&tb], &[], "k1");
    cfg.keys_text = Some(format!("{}\n# old\nk2:aes256gcm:{short}", k1.spec));
    failing(
        cfg,
        format!("env:{KEYS_ENV}: invalid key spec: line 3, key spec #2"),
    )
    .await;
    let file = t.dir().join("bad.keys");
    std::fs::write(&file, format!("k2:aes256gcm:{good}!\n")).unwrap();
    let mut cfg = Cfg::new(&[&tb], &[&k1], "k1");
    cfg.sources = Some(vec![
        format!("env:{KEYS_ENV}"),
        format!("file:{}", file.display()),
    ]);
    failing(
        cfg,
        format!(
            "file:{}: invalid key spec: line 1, key spec #1",
            file.display()
        ),
    )
    .await;

    // A full cycle with every log line enabled.
    let mut cfg = Cfg::new(&[&tb], &[&k1], "k1");
    cfg.env = vec![("KEYTURN_LOG".into(), "trace".into())];
    t.keyturn(&cfg, &["encrypt"]).await.expect(0);
    let mut cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    cfg.env = vec![("KEYTURN_LOG".into(), "trace".into())];
    let out = t.keyturn(&cfg, &["rotate"]).await.expect(0);
    assert!(out.stderr.len() > 100, "expected trace output\n{out}");
    t.keyturn(&cfg, &["--json", "verify", "--deep"])
        .await
        .expect(0);
    assert_decrypts(
        &tb,
        &t.read(&tb).await,
        &plain,
        &ring(&[&k1, &k2], "k2"),
        "k2",
    );
}

/// Non-ASCII plaintext in a text column whose charset is not UTF-8 (MariaDB:
/// latin1 with a case-insensitive collation; the other backends store
/// UTF-8): encrypted and rotated exactly.
async fn non_utf8_text_column(t: TestDb) {
    let tb = Table::new(
        &t.table_name("latin1"),
        &[("id", PkKind::Int)],
        &[("name", ColKind::Text, true)],
    );
    if t.kind == Kind::MariaDb {
        t.exec(&format!(
            "CREATE TABLE {} (id BIGINT NOT NULL PRIMARY KEY, name LONGTEXT CHARACTER SET latin1 COLLATE latin1_swedish_ci) DEFAULT CHARSET=latin1",
            tb.name
        ))
        .await;
    } else {
        t.create_table(&tb, &[]).await;
    }
    let names = [
        "Zoë Müller",
        "ZOË MÜLLER",
        "café crème",
        "Åsa Öberg",
        "niño",
        "plain ascii",
    ];
    let plain: Data = (1..=120)
        .map(|id| {
            let v = format!("{} #{id}", names[id as usize % names.len()]);
            (int_pk(id), vec![Some(v.into_bytes())])
        })
        .collect();
    t.insert(&tb, &plain).await;
    assert_eq!(
        t.read(&tb).await,
        plain,
        "the test data does not round-trip"
    );
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    let j = t
        .keyturn(&Cfg::new(&[&tb], &[&k1], "k1"), &["--json", "encrypt"])
        .await
        .expect(0)
        .json();
    assert_eq!(u(&col(&j, &tb.name, "name")["written"]), 120, "{j:#}");
    assert_decrypts(&tb, &t.read(&tb).await, &plain, &ring(&[&k1], "k1"), "k1");
    let cfg = Cfg::new(&[&tb], &[&k1, &k2], "k2");
    t.keyturn(&cfg, &["rotate"]).await.expect(0);
    assert_decrypts(
        &tb,
        &t.read(&tb).await,
        &plain,
        &ring(&[&k1, &k2], "k2"),
        "k2",
    );
    t.keyturn(&cfg, &["verify", "--deep"]).await.expect(0);
}

/// A database that cannot be reached or does not exist: a prompt error
/// (exit 1) with the real cause, stated once, and no password.
async fn unreachable_database(t: TestDb) {
    let tb = people(&t, "nowhere");
    let k1 = t.key("k1");
    t.add_secret("pw-not-a-key");
    let urls = match t.kind {
        Kind::Sqlite => vec![(
            format!(
                "sqlite://{}/no/such/dir/x.db",
                std::env::temp_dir().display()
            ),
            "unable to open",
        )],
        Kind::Postgres => vec![
            (
                "postgres://postgres:pw-not-a-key@127.0.0.1:1/x".to_string(),
                "refused",
            ),
            (
                with_database(&env_url(t.kind), "kt_no_such_db"),
                "kt_no_such_db",
            ),
        ],
        Kind::MariaDb => vec![
            (
                "mysql://root:pw-not-a-key@127.0.0.1:1/x".to_string(),
                "refused",
            ),
            (
                with_database(&env_url(t.kind), "kt_no_such_db"),
                "kt_no_such_db",
            ),
        ],
    };
    for (url, cause) in urls {
        let mut cfg = Cfg::new(&[&tb], &[&k1], "k1");
        cfg.url = Some(url);
        let started = std::time::Instant::now();
        for args in [&["status"][..], &["rotate"], &["--json", "verify"]] {
            let out = t.keyturn(&cfg, args).await.expect(1);
            let line = out
                .stderr
                .lines()
                .find(|l| l.starts_with("error: "))
                .unwrap_or_else(|| panic!("{out}"));
            assert!(
                line.contains("cannot connect") && line.contains(cause),
                "{out}"
            );
            // Each cause once.
            let parts: Vec<&str> = line.split(": ").filter(|p| p.len() > 12).collect();
            for p in &parts {
                assert_eq!(line.matches(p).count(), 1, "{p:?} repeated in {line}");
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "connection errors took {:?}",
            started.elapsed()
        );
    }
}

/// Stops a run (like Ctrl-C) once `after` values were processed.
struct StopAfter {
    after: u64,
    seen: std::sync::atomic::AtomicU64,
    started: std::sync::atomic::AtomicU64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl keyturn_engine::ProgressSink for StopAfter {
    fn column_started(&self, _: &str, _: &str, _: u64, _: u64) {
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn advanced(&self, _: &str, _: &str, n: u64) {
        let seen = self.seen.fetch_add(n, std::sync::atomic::Ordering::SeqCst) + n;
        if seen >= self.after {
            self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// The library API as an embedding application would use it: config,
/// plan, status, a rotation stopped through its stop flag, the resumed
/// rerun, and a deep verify.
async fn library_api(t: TestDb) {
    use keyturn_engine::{Operation, RunOptions, VerifyOptions};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    let (tb, plain, k1, k2) = encrypted_people(&t, "lib", 1200).await;
    let text = format!(
        "[database]\nurl = {}\n\n{}",
        toml_str(&t.url),
        tb.target_toml()
    );
    let cfg = keyturn_ops::Config::parse(&text).expect("config");
    let db = keyturn_db::connect(&t.url, &keyturn_db::ConnectOptions::default())
        .await
        .expect("connect");
    let ring = Arc::new(ring(&[&k1, &k2], "k2"));
    let rings = keyturn_engine::plan::Rings {
        default: Some(ring.clone()),
        named: Default::default(),
        servers: Default::default(),
    };
    let plan = keyturn_engine::plan::resolve(db.as_ref(), &cfg.targets, Some(&rings), None, None)
        .await
        .expect("plan");
    assert_eq!(plan.columns.len(), 2);
    let st = keyturn_engine::status::status(db.as_ref(), &plan, &Default::default())
        .await
        .expect("status");
    assert!(!st.fully_rotated());

    let opts = RunOptions {
        batch_size: 100,
        workers: 2,
        max_rows_per_sec: None,
        dry_run: false,
        actor: "itest".into(),
        skip_unknown_keys: false,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sink = Arc::new(StopAfter {
        after: 300,
        seen: AtomicU64::new(0),
        started: AtomicU64::new(0),
        stop: stop.clone(),
    });
    let first = keyturn_engine::run::run(
        db.clone(),
        &plan,
        Operation::Rotate,
        opts.clone(),
        sink.clone(),
        stop,
    )
    .await
    .expect("first run");
    assert!(
        first.interrupted && first.outcome == keyturn_engine::RunOutcome::Interrupted,
        "{first:?}"
    );
    assert_eq!(first.columns.len(), 1, "{first:?}");
    let cp = db
        .load_checkpoint("rotate", &tb.name, "phone")
        .await
        .expect("load_checkpoint")
        .expect("a checkpoint after the interruption");
    assert_eq!(cp.target_key, "k2");

    let second = keyturn_engine::run::run(
        db.clone(),
        &plan,
        Operation::Rotate,
        opts,
        Arc::new(keyturn_engine::NoProgress),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("second run");
    assert_eq!(second.outcome, keyturn_engine::RunOutcome::Ok, "{second:?}");
    assert!(second.columns[0].resumed_rows > 0, "{second:?}");
    assert_eq!(
        first.written() + second.written(),
        non_null(&plain, 0) + non_null(&plain, 1)
    );
    assert!(
        db.load_checkpoint("rotate", &tb.name, "phone")
            .await
            .expect("load")
            .is_none()
    );

    let report = keyturn_engine::verify::verify(
        db.as_ref(),
        &plan,
        &VerifyOptions {
            deep: true,
            batch_size: 333,
            ..Default::default()
        },
        &keyturn_engine::NoProgress,
    )
    .await
    .expect("verify");
    assert!(report.ok, "{report:?}");
    assert!(
        keyturn_engine::status::status(db.as_ref(), &plan, &Default::default())
            .await
            .expect("status")
            .fully_rotated()
    );
    db.close().await;
    assert_decrypts(&tb, &t.read(&tb).await, &plain, &ring, "k2");
}

/// The census counts a value under a key only when the whole value has the
/// format's shape: NULLs, plaintext, a marker without a body, a truncated
/// value under the primary's prefix and an invalid key id are never counted
/// under a key, and the preflight names an id outside the ring with its
/// first rows.
async fn census_counts_only_well_formed_values(t: TestDb) {
    let (tb, plain, k1, k2) = encrypted_people(&t, "census", 240).await;
    let k3 = t.key("k3");
    // Rows 241..=300 under k2, 301..=330 under k3; plaintext rows from
    // people_rows already hold NULLs.
    let more_k2 = people_rows(&mut t.rng(), 241..=300);
    t.insert(&tb, &encrypt_rows(&tb, &more_k2, &ring(&[&k2], "k2")))
        .await;
    let more_k3 = people_rows(&mut t.rng(), 301..=330);
    t.insert(&tb, &encrypt_rows(&tb, &more_k3, &ring(&[&k3], "k3")))
        .await;
    // Values that are not well-formed keyturn values.
    t.exec(&format!(
        "INSERT INTO {} (id, phone) VALUES (331, 'not-a-ciphertext'), (332, 'kt1'), \
         (333, 'kt1:k2:a:AAAA'), (334, 'kt1:bad id:a:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'), \
         (335, 'SSN 078-05-1120')",
        tb.name
    ))
    .await;
    let cfg = keyturn_ops::Config::parse(&format!(
        "[database]\nurl = {}\n\n{}",
        toml_str(&t.url),
        tb.target_toml()
    ))
    .expect("config");
    let db = keyturn_db::connect(&t.url, &keyturn_db::ConnectOptions::default())
        .await
        .expect("connect");
    let plan = keyturn_engine::plan::resolve(db.as_ref(), &cfg.targets, None, None, None)
        .await
        .expect("plan");
    let data = t.read(&tb).await;
    let c = &plan.columns[0];
    let counts = db
        .count_keys(&c.col, &c.census())
        .await
        .expect("count_keys");
    // The truth, from the values themselves.
    let mut truth: BTreeMap<String, u64> = BTreeMap::new();
    let (mut nulls, mut other) = (0u64, 0u64);
    for row in data.values() {
        match row[0].as_deref() {
            None => nulls += 1,
            Some(v) => match keyturn_format::v1::parse(v) {
                Ok(p) => *truth.entry(p.header.key_id.to_string()).or_default() += 1,
                Err(_) => other += 1,
            },
        }
    }
    let counted: BTreeMap<String, u64> = counts
        .by_key
        .iter()
        .map(|k| (k.key_id.clone(), k.rows))
        .collect();
    assert_eq!(counted, truth, "{counts:?}");
    assert_eq!(
        (counts.nulls, counts.unrecognized, counts.keyless),
        (nulls, other, 0)
    );
    assert_eq!(other, 5);
    assert_eq!(counts.total, data.len() as u64);
    // Through the engine: the preflight names k3 and its first rows, and
    // writes nothing; no odd value reaches the output.
    let before = t.read(&tb).await;
    let out = t
        .keyturn(&Cfg::new(&[&tb], &[&k1, &k2], "k2"), &["--json", "rotate"])
        .await
        .expect(5);
    let err = out.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        err.contains("\"k3\"") && err.contains("rows: 301, 302,"),
        "{out}"
    );
    assert!(err.contains("--skip-unknown-keys"), "{out}");
    for odd in ["not-a-ciphertext", "SSN", "bad id", "078-05"] {
        assert!(
            !out.stdout.contains(odd) && !out.stderr.contains(odd),
            "{odd}: {out}"
        );
    }
    assert_eq!(t.read(&tb).await, before, "preflight changed data");
    assert_eq!(
        non_null(&plain, 0) + non_null(&more_k2, 0) + non_null(&more_k3, 0) + 5,
        plan_non_null_phone(&before)
    );
    db.close().await;
}

fn plan_non_null_phone(d: &Data) -> u64 {
    non_null(d, 0)
}

/// A rotation stops half-way; meanwhile the application (still on the old
/// key) rewrites rows *before* the checkpoint. The resumed run finishes
/// from the checkpoint, then sweeps the column from the start and rotates
/// those rows too: afterwards nothing is left under k1, and a bad row met
/// by both passes is reported once.
async fn resume_sweeps_rows_before_the_checkpoint(t: TestDb) {
    use keyturn_engine::{Operation, RunOptions};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    let (tb, plain, k1, k2) = encrypted_people(&t, "sweep", 1000).await;
    let phone = tb.col("phone");
    // A corrupt value late in the table: bad in the first run's second
    // half and again in the sweep.
    let bad_pk = int_pk(990);
    t.set(&tb, &bad_pk, phone, Some(b"kt1:k1:a:AAAA")).await;
    let cfg = keyturn_ops::Config::parse(&format!(
        "[database]\nurl = {}\n\n{}",
        toml_str(&t.url),
        tb.target_toml()
    ))
    .expect("config");
    let db = keyturn_db::connect(&t.url, &keyturn_db::ConnectOptions::default())
        .await
        .expect("connect");
    let both = Arc::new(ring(&[&k1, &k2], "k2"));
    let rings = keyturn_engine::plan::Rings {
        default: Some(both.clone()),
        named: Default::default(),
        servers: Default::default(),
    };
    let plan =
        keyturn_engine::plan::resolve(db.as_ref(), &cfg.targets, Some(&rings), None, Some("phone"))
            .await
            .expect("plan");
    let opts = RunOptions {
        batch_size: 50,
        workers: 1,
        max_rows_per_sec: None,
        dry_run: false,
        actor: "itest".into(),
        skip_unknown_keys: false,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sink = Arc::new(StopAfter {
        after: 300,
        seen: AtomicU64::new(0),
        started: AtomicU64::new(0),
        stop: stop.clone(),
    });
    let first = keyturn_engine::run::run(
        db.clone(),
        &plan,
        Operation::Rotate,
        opts.clone(),
        sink,
        stop,
    )
    .await
    .expect("first run");
    assert!(first.interrupted, "{first:?}");
    let cp = db
        .load_checkpoint("rotate", &tb.name, "phone")
        .await
        .expect("load")
        .expect("a checkpoint");
    let PkValue::Int(last) = serde_json::from_str::<Vec<PkValue>>(&cp.last_pk).expect("pk")[0]
    else {
        panic!("integer key expected: {}", cp.last_pk)
    };
    assert!(last > 10 && last < 980, "checkpoint at {last}");

    // The application, not yet on k2, writes rows 1..=5 under k1.
    let old_ring = ring(&[&k1], "k1");
    let mut rewritten = Vec::new();
    for id in 1..=5 {
        let pk = int_pk(id);
        let v = format!("rewritten #{id}").into_bytes();
        let enc = encrypt_one(&tb, phone, &pk, &v, &old_ring);
        assert_eq!(t.set(&tb, &pk, phone, Some(&enc)).await, 1);
        rewritten.push((pk, v));
    }

    let second = keyturn_engine::run::run(
        db.clone(),
        &plan,
        Operation::Rotate,
        opts,
        Arc::new(keyturn_engine::NoProgress),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("second run");
    assert_eq!(
        second.outcome,
        keyturn_engine::RunOutcome::CompletedWithErrors,
        "{second:?}"
    );
    assert_eq!(second.columns[0].failed, 1, "{second:?}");
    assert_eq!(second.bad_rows.len(), 1, "{second:?}");
    assert_eq!(second.bad_rows[0].pk, "990");
    let under_k1 = t
        .count(&format!(
            "SELECT COUNT(*) FROM {} WHERE phone LIKE 'kt1:k1:%'",
            tb.name
        ))
        .await;
    assert_eq!(under_k1, 1, "only the corrupt row may stay under k1");
    // Every other value decrypts under k2 to what was last written.
    let stored = t.read(&tb).await;
    let mut expected = plain.clone();
    for (pk, v) in &rewritten {
        expected.get_mut(pk).expect("row")[phone] = Some(v.clone());
    }
    expected.remove(&bad_pk);
    let mut stored_ok = stored.clone();
    stored_ok.remove(&bad_pk);
    let only_phone = |d: &Data| -> Data {
        d.iter()
            .map(|(k, v)| (k.clone(), vec![v[phone].clone(), None]))
            .collect()
    };
    assert_decrypts(
        &tb,
        &only_phone(&stored_ok),
        &only_phone(&expected),
        &both,
        "k2",
    );
    db.close().await;
}

/// Standard base64 (with padding), for building key specs by hand.
mod base64_lite {
    pub fn encode(b: &[u8]) -> String {
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
}

// ---------------------------------------------------------------------------
// Primary-key types
// ---------------------------------------------------------------------------

/// One key type under test: its SQL type per database, literals for its
/// values, and the text form bound as associated data (docs/FORMAT.md §9).
struct KeyType {
    name: &'static str,
    sql: &'static str,
    /// (SQL literal, context text) per row, in the order the table sorts
    /// them or any order: keyturn sorts.
    values: Vec<(String, String)>,
}

fn key_types(kind: Kind) -> Vec<KeyType> {
    let hex = |b: &[u8]| -> String { b.iter().map(|x| format!("{x:02x}")).collect() };
    let bytes_lit = |b: &[u8]| match kind {
        Kind::Postgres => format!("'\\x{}'::bytea", hex(b)),
        _ => format!("X'{}'", hex(b)),
    };
    // Bytes that are not UTF-8, sort differently as text, include NUL.
    let blobs: Vec<Vec<u8>> = vec![
        b"ab".to_vec(),
        vec![0xff, 0x00],
        vec![0x00],
        vec![0x80, 0x41],
        b"a".to_vec(),
        vec![0xfe; 9],
        b"\x27quote".to_vec(),
    ];
    let mut blob_values: Vec<(String, String)> =
        blobs.iter().map(|b| (bytes_lit(b), hex(b))).collect();
    for i in 0..40u8 {
        let b = vec![i, 0xc3, 0x28, i.wrapping_mul(7)];
        blob_values.push((bytes_lit(&b), hex(&b)));
    }
    let uuids: Vec<String> = (0..47u32)
        .map(|i| {
            format!(
                "{:08x}-1d2c-4e5f-8a9b-{:012x}",
                i.wrapping_mul(2_654_435_761),
                u64::from(i) * 977
            )
        })
        .collect();
    let numerics: Vec<(String, String)> = (0..47i32)
        .map(|i| {
            let cents = (i64::from(i) - 20) * 1234 + 5;
            let v = format!(
                "{}{}.{:02}",
                if cents < 0 { "-" } else { "" },
                cents.abs() / 100,
                cents.abs() % 100
            );
            // SQLite keeps NUMERIC values as REAL or INTEGER: its text form
            // drops trailing zeros of the fraction.
            let text = match kind {
                Kind::Sqlite => {
                    let f: f64 = v.parse().expect("number");
                    if f.fract() == 0.0 {
                        format!("{f:.1}")
                    } else {
                        format!("{f}")
                    }
                }
                _ => v.clone(),
            };
            (v, text)
        })
        .collect();
    let texts: Vec<(String, String)> = (0..47)
        .map(|i| {
            let v = match i % 4 {
                0 => format!("user-{i:03}"),
                1 => format!("Ü-{i} é"),
                2 => format!("a b'c {i}"),
                _ => format!("{i}"),
            };
            (format!("'{}'", v.replace('\'', "''")), v)
        })
        .collect();
    let (text_t, blob_t, uuid_t, num_t) = match kind {
        Kind::Postgres => ("VARCHAR(64)", "BYTEA", "UUID", "NUMERIC(12,2)"),
        Kind::MariaDb => ("VARCHAR(64)", "VARBINARY(32)", "UUID", "DECIMAL(12,2)"),
        Kind::Sqlite => ("TEXT", "BLOB", "UUID", "NUMERIC"),
    };
    vec![
        KeyType {
            name: "text",
            sql: text_t,
            values: texts,
        },
        KeyType {
            name: "blob",
            sql: blob_t,
            values: blob_values,
        },
        KeyType {
            name: "uuid",
            sql: uuid_t,
            values: uuids
                .iter()
                .map(|u| (format!("'{u}'"), u.clone()))
                .collect(),
        },
        KeyType {
            name: "numeric",
            sql: num_t,
            values: numerics,
        },
    ]
}

/// Text, binary, uuid and numeric keys, alone and as a composite key:
/// rotate (in several batches), verify --deep, and an interrupted rotation
/// that resumes, with each value bound to its key's text form as
/// associated data.
async fn primary_key_types(t: TestDb) {
    let (k1, k2) = (t.key("k1"), t.key("k2"));
    let r1 = ring(&[&k1], "k1");
    let types = key_types(t.kind);
    let col_t = t.col_type(ColKind::Text);
    let mut tables = Vec::new();
    // One table per type, and one with a composite key of all four.
    for (i, kt) in types.iter().enumerate() {
        let name = t.table_name(&format!("pk_{}", kt.name));
        t.exec(&format!(
            "CREATE TABLE {name} (k {} NOT NULL, secret {col_t}, PRIMARY KEY (k))",
            kt.sql
        ))
        .await;
        for (j, (lit, text)) in kt.values.iter().enumerate() {
            let ctx: [&[u8]; 3] = [name.as_bytes(), b"secret", text.as_bytes()];
            let v = r1
                .encrypt(
                    format!("value {i}/{j}").as_bytes(),
                    &ctx,
                    keyturn_format::Encoding::Text,
                )
                .expect("encrypt");
            t.exec(&format!(
                "INSERT INTO {name} (k, secret) VALUES ({lit}, '{}')",
                String::from_utf8(v).expect("ascii")
            ))
            .await;
        }
        tables.push(Table::new(
            &name,
            &[("k", PkKind::Text)],
            &[("secret", ColKind::Text, true)],
        ));
    }
    let name = t.table_name("pk_all");
    t.exec(&format!(
        "CREATE TABLE {name} (a {}, b {}, c {}, d {}, secret {col_t}, PRIMARY KEY (a, b, c, d))",
        types[0].sql, types[1].sql, types[2].sql, types[3].sql
    ))
    .await;
    for j in 0..40 {
        // Few distinct values in the leading columns: pagination must
        // compare every key column.
        let (a, b, c, d) = (
            &types[0].values[j % 3],
            &types[1].values[j % 5],
            &types[2].values[j % 7],
            &types[3].values[j],
        );
        let ctx: [&[u8]; 6] = [
            name.as_bytes(),
            b"secret",
            a.1.as_bytes(),
            b.1.as_bytes(),
            c.1.as_bytes(),
            d.1.as_bytes(),
        ];
        let v = r1
            .encrypt(
                format!("composite {j}").as_bytes(),
                &ctx,
                keyturn_format::Encoding::Text,
            )
            .expect("encrypt");
        t.exec(&format!(
            "INSERT INTO {name} (a, b, c, d, secret) VALUES ({}, {}, {}, {}, '{}')",
            a.0,
            b.0,
            c.0,
            d.0,
            String::from_utf8(v).expect("ascii")
        ))
        .await;
    }
    tables.push(Table::new(
        &name,
        &[
            ("a", PkKind::Text),
            ("b", PkKind::Text),
            ("c", PkKind::Text),
            ("d", PkKind::Text),
        ],
        &[("secret", ColKind::Text, true)],
    ));
    let refs: Vec<&Table> = tables.iter().collect();
    let mut cfg = Cfg::new(&refs, &[&k1, &k2], "k2");
    cfg.batch_size = 4;
    // Interrupted half-way, then resumed.
    let mut p = t.spawn(&cfg, &["rotate", "--max-rows-per-sec", "40"]);
    sleep_ms(1500).await;
    if !p.finished() {
        p.sigint();
    }
    let out = p.wait(Duration::from_secs(60)).await;
    assert!(out.code == 130 || out.code == 0, "{out}");
    let out = t.keyturn(&cfg, &["--json", "rotate"]).await.expect(0);
    let j = out.json();
    for c in j["columns"].as_array().unwrap() {
        assert_eq!(c["failed"], 0, "{j:#}");
    }
    // Everything is under k2 and decrypts with its key as context.
    let v = t
        .keyturn(&cfg, &["--json", "verify", "--deep"])
        .await
        .expect(0)
        .json();
    let checked: u64 = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["checked"].as_u64().unwrap())
        .sum();
    let expected: usize = types.iter().map(|k| k.values.len()).sum::<usize>() + 40;
    assert_eq!(checked, expected as u64, "{v:#}");
    t.keyturn(&cfg, &["verify"]).await.expect(0);
    let st = t
        .keyturn(&cfg, &["--json", "status"])
        .await
        .expect(0)
        .json();
    for c in st["columns"].as_array().unwrap() {
        assert_eq!(c["needs_rotation"], 0, "{st:#}");
        assert_eq!(c["unrecognized"], 0, "{st:#}");
    }
    // A one-row binary key and a binary key that is not UTF-8 (verify
    // --deep once looped forever on the first and failed on the second).
    for (what, lit) in [("one", "X'6162'"), ("bin", "X'ff00'")] {
        let name = t.table_name(&format!("pk_{what}"));
        let blob = match t.kind {
            Kind::Postgres => "BYTEA",
            Kind::MariaDb => "VARBINARY(8)",
            Kind::Sqlite => "BLOB",
        };
        let lit = match t.kind {
            Kind::Postgres => format!("'\\x{}'::bytea", &lit[2..lit.len() - 1]),
            _ => lit.to_string(),
        };
        t.exec(&format!(
            "CREATE TABLE {name} (k {blob} NOT NULL PRIMARY KEY, secret {col_t})"
        ))
        .await;
        let hex = lit.trim_start_matches("'\\x").trim_start_matches("X'");
        let hex: String = hex.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        let v = r1
            .encrypt(
                b"x",
                &[name.as_bytes(), b"secret", hex.to_lowercase().as_bytes()],
                keyturn_format::Encoding::Text,
            )
            .expect("encrypt");
        t.exec(&format!(
            "INSERT INTO {name} VALUES ({lit}, '{}')",
            String::from_utf8(v).expect("ascii")
        ))
        .await;
        let tb = Table::new(
            &name,
            &[("k", PkKind::Text)],
            &[("secret", ColKind::Text, true)],
        );
        let c1 = Cfg::new(&[&tb], &[&k1, &k2], "k1");
        let p = t.spawn(&c1, &["verify", "--deep"]);
        p.wait(Duration::from_secs(30)).await.expect(0);
        let c2 = Cfg::new(&[&tb], &[&k1, &k2], "k2");
        t.keyturn(&c2, &["rotate"]).await.expect(0);
        t.keyturn(&c2, &["verify", "--deep"]).await.expect(0);
    }
}

/// A key type keyturn cannot paginate exactly is refused by the plan,
/// before any run, naming the table and column.
async fn unsupported_primary_key_types_are_refused(t: TestDb) {
    let k1 = t.key("k1");
    let name = t.table_name("pk_ts");
    let ty = match t.kind {
        Kind::Postgres => "TIMESTAMP",
        Kind::MariaDb => "DATETIME",
        Kind::Sqlite => "REAL",
    };
    let val = match t.kind {
        Kind::Sqlite => "1.5",
        _ => "'2024-01-02 03:04:05'",
    };
    t.exec(&format!(
        "CREATE TABLE {name} (k {ty} NOT NULL PRIMARY KEY, secret {})",
        t.col_type(ColKind::Text)
    ))
    .await;
    t.exec(&format!("INSERT INTO {name} VALUES ({val}, 'plain')"))
        .await;
    let tb = Table::new(
        &name,
        &[("k", PkKind::Text)],
        &[("secret", ColKind::Text, true)],
    );
    let cfg = Cfg::new(&[&tb], &[&k1], "k1");
    for args in [&["encrypt"][..], &["rotate"], &["verify"], &["status"]] {
        let out = t.keyturn(&cfg, args).await.expect(1);
        assert!(
            out.stderr
                .contains(&format!("{name}: primary key column k"))
                && out.stderr.contains("not supported"),
            "{args:?}: {out}"
        );
    }
    assert_eq!(
        t.strings(&format!("SELECT secret FROM {name}")).await,
        vec![vec!["plain".to_string()]]
    );
}
