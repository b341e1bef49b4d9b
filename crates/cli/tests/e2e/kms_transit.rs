//! Vault/OpenBao transit columns rotated inside the server (`codec =
//! "vault-transit"`, `kms = "bao"`), end to end through the real binary on
//! SQLite, PostgreSQL and MariaDB against a real OpenBao dev server: values
//! are written by the server (`transit/encrypt`), rotated by keyturn with
//! `transit/rewrap` (the key never exportable, no plaintext in keyturn), and
//! read back by the server (`transit/decrypt`).
//!
//! Run one backend: `cargo test -p keyturn --test e2e kms_transit::postgres::`.

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyturn_db::PkValue;
use keyturn_test_support::kms::{self as kms, Bao};
use std::collections::BTreeMap;
use std::time::Duration;

scenarios!(
    transit_rotate_mixed_values_then_retire_old_versions,
    transit_derived_keys_with_row_contexts,
    transit_concurrent_writer_loses_nothing,
    transit_key_named_per_row,
    transit_kill_and_resume,
    transit_token_revoked_mid_run,
);

const TOKEN_ENV: &str = "KT_BAO_TOKEN";

async fn server(t: &TestDb, scenario: &str) -> Option<Bao> {
    let b = kms::bao(&format!("kms_transit::{}::{scenario}", t.kind.name())).await?;
    t.add_secret(&b.root_token);
    Some(b)
}

/// Sends `items` (each a `batch_input` entry without its context, and the
/// context) to `<mount>/<op>/<key>`, 100 per request; the results in order.
async fn batch(
    b: &Bao,
    op: &str,
    key: &str,
    items: impl Iterator<Item = (serde_json::Value, Option<Vec<u8>>)>,
) -> Vec<serde_json::Value> {
    let items: Vec<_> = items.collect();
    let mut out = Vec::new();
    for chunk in items.chunks(100) {
        let batch: Vec<serde_json::Value> = chunk
            .iter()
            .map(|(m, c)| {
                let mut m = m.clone();
                if let Some(c) = c {
                    m["context"] = STANDARD.encode(c).into();
                }
                m
            })
            .collect();
        let v = b
            .post(
                &format!("{}/{op}/{key}", b.mount),
                &b.root_token,
                serde_json::json!({ "batch_input": batch }),
            )
            .await
            .unwrap_or_else(|e| panic!("transit {op}: {e}"));
        out.extend(
            v["data"]["batch_results"]
                .as_array()
                .expect("results")
                .iter()
                .cloned(),
        );
    }
    out
}

/// Encrypts each plaintext (with its derivation context) under `key`.
async fn encrypt(b: &Bao, key: &str, items: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<String> {
    let items = items.iter().map(|(p, c)| {
        (
            serde_json::json!({ "plaintext": STANDARD.encode(p) }),
            c.clone(),
        )
    });
    batch(b, "encrypt", key, items)
        .await
        .iter()
        .map(|r| r["ciphertext"].as_str().expect("ciphertext").to_owned())
        .collect()
}

/// Decrypts each ciphertext (with its context) by the server.
async fn decrypt(
    b: &Bao,
    key: &str,
    items: &[(String, Option<Vec<u8>>)],
) -> Vec<Result<Vec<u8>, String>> {
    let items = items
        .iter()
        .map(|(ct, c)| (serde_json::json!({ "ciphertext": ct }), c.clone()));
    batch(b, "decrypt", key, items)
        .await
        .iter()
        .map(|r| match r["plaintext"].as_str() {
            Some(p) => Ok(STANDARD.decode(p).expect("base64 plaintext")),
            None => Err(r["error"].to_string()),
        })
        .collect()
}

async fn create_key(b: &Bao, derived: bool) -> String {
    let name = format!("k-{}", fastrand::u32(..));
    b.post(
        &format!("{}/keys/{name}", b.mount),
        &b.root_token,
        serde_json::json!({ "derived": derived }),
    )
    .await
    .expect("create key");
    name
}

async fn key_config(b: &Bao, key: &str) -> serde_json::Value {
    let r = reqwest::Client::new()
        .get(format!("{}/v1/{}/keys/{key}", b.addr, b.mount))
        .header("X-Vault-Token", &b.root_token)
        .send()
        .await
        .expect("read key");
    r.json::<serde_json::Value>().await.expect("key json")["data"].clone()
}

/// A config with the `[kms.bao]` section and one `[[target]]` of `columns`.
fn config(t: &TestDb, b: &Bao, token: &str, tb: &Table, columns: &str) -> Cfg {
    t.add_secret(token);
    let mut cfg = Cfg::new(&[], &[], "unused");
    cfg.sources = Some(Vec::new());
    cfg.primary = None;
    cfg.env.push((TOKEN_ENV.into(), token.into()));
    cfg.extra_toml = format!(
        "[kms.bao]\nkind = \"vault-transit\"\naddress = \"{}\"\nmount = \"{}\"\ntoken = \"env:{TOKEN_ENV}\"\nbatch_items = 50\n\n[[target]]\ntable = \"{}\"\nprimary_key = \"id\"\ncolumns = [{columns}]\n",
        b.addr, b.mount, tb.name
    );
    cfg
}

fn plain(i: i64) -> Vec<u8> {
    format!("ssn-{i:06}").into_bytes()
}

fn text(v: &Option<Vec<u8>>) -> String {
    String::from_utf8(v.clone().unwrap_or_default()).expect("utf-8")
}

/// Checks every output for plaintexts and tokens.
fn clean(t: &TestDb, o: &Out, plaintexts: &[Vec<u8>]) {
    let all = format!("{}{}", o.stdout, o.stderr);
    t.assert_no_secrets("keyturn output", &all);
    for p in plaintexts {
        let p = String::from_utf8_lossy(p);
        assert!(!all.contains(p.as_ref()), "plaintext {p} in output:\n{all}");
    }
}

async fn transit_rotate_mixed_values_then_retire_old_versions(t: TestDb) {
    let Some(b) = server(&t, "mixed").await else {
        return;
    };
    let key = create_key(&b, false).await;
    let tb = Table::new(
        &t.table_name("transit_mixed"),
        &[("id", PkKind::Int)],
        &[("ssn", ColKind::Text, false)],
    );
    t.create_table(&tb, &[]).await;
    // 150 rows under v1, the key rotated, 100 under v2, rotated again (v3 is
    // the target), 20 already under v3.
    let mut data = Data::new();
    let mut plains = BTreeMap::new();
    let mut next = 1i64;
    for (n, rotate_after) in [(150, true), (100, true), (20, false)] {
        let ids: Vec<i64> = (next..next + n).collect();
        next += n;
        let cts = encrypt(
            &b,
            &key,
            &ids.iter().map(|&i| (plain(i), None)).collect::<Vec<_>>(),
        )
        .await;
        for (i, ct) in ids.iter().zip(cts) {
            data.insert(int_pk(*i), vec![Some(ct.into_bytes())]);
            plains.insert(*i, plain(*i));
        }
        if rotate_after {
            b.rotate_key(&key).await;
        }
    }
    // Odd values: plaintext, a truncated token, a well-formed v1 value that
    // does not decrypt (garbage body), a NULL.
    let odd: Vec<(i64, Option<&str>)> = vec![
        (9001, Some("123-45-6789 plain")),
        (9002, Some("vault:v1:abc")),
        (
            9003,
            Some("vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ),
        (9004, None),
    ];
    for (i, v) in &odd {
        data.insert(int_pk(*i), vec![v.map(|s| s.as_bytes().to_vec())]);
    }
    t.insert(&tb, &data).await;
    let token = b.create_token(&["root"], false).await;
    let cfg = config(&t, &b, &token, &tb, &column(&key));
    let pl: Vec<Vec<u8>> = plains.values().cloned().collect();

    // status: counted per version in SQL, the latest version the target.
    let o = t.keyturn(&cfg, &["--json", "status"]).await.expect(0);
    clean(&t, &o, &pl);
    let s = o.json();
    let c = &s["columns"][0];
    assert_eq!(c["current_key_id"], "v3", "{s}");
    let by: BTreeMap<String, (u64, String)> = c["by_key"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key_id"].as_str().unwrap().to_owned(),
                (
                    k["rows"].as_u64().unwrap(),
                    k["state"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(by["v1"], (151, "decrypt-only".into()), "{s}");
    assert_eq!(by["v2"], (100, "decrypt-only".into()), "{s}");
    assert_eq!(by["v3"], (20, "current".into()), "{s}");
    assert_eq!(c["unrecognized"], 2, "{s}");
    assert_eq!(c["needs_rotation"], 251, "{s}");

    // rotate: every good value rewrapped, the three odd ones named once.
    let o = t.keyturn(&cfg, &["--json", "rotate"]).await.expect(3);
    clean(&t, &o, &pl);
    let r = o.json();
    assert_eq!(r["columns"][0]["written"], 250, "{r}");
    let bad: Vec<String> = r["bad_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["pk"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bad, ["9001", "9002", "9003"], "{r}");
    let after = t.read(&tb).await;
    let mut cts = Vec::new();
    for (i, p) in &plains {
        let v = text(&after[&int_pk(*i)][0]);
        assert!(v.starts_with("vault:v3:"), "row {i}: {v}");
        cts.push((v, None));
        let _ = p;
    }
    for (got, (i, want)) in decrypt(&b, &key, &cts).await.into_iter().zip(&plains) {
        assert_eq!(got.as_ref(), Ok(want), "row {i}");
    }
    for (i, v) in &odd {
        assert_eq!(
            after[&int_pk(*i)][0].as_deref(),
            v.map(str::as_bytes),
            "odd row {i} changed"
        );
    }
    // verify: the odd rows fail; --deep asks the server and agrees.
    let o = t
        .keyturn(&cfg, &["--json", "verify", "--deep"])
        .await
        .expect(4);
    clean(&t, &o, &pl);
    let v = o.json();
    assert_eq!(v["columns"][0]["under_current"], 270, "{v}");
    assert_eq!(v["columns"][0]["failing"], 3, "{v}");

    // Retiring v1 and v2 is refused while a row is still counted under v1.
    let o = t
        .keyturn(&cfg, &["kms", "retire-old-versions"])
        .await
        .expect(1);
    assert!(o.stderr.contains("1 under v1"), "{o}");
    assert_eq!(key_config(&b, &key).await["min_decryption_version"], 1);
    // The application deletes the damaged row; then v1 and v2 retire.
    t.exec(&format!("DELETE FROM {} WHERE id = 9003", tb.name))
        .await;
    let o = t
        .keyturn(&cfg, &["--json", "kms", "retire-old-versions"])
        .await
        .expect(0);
    let j = o.json();
    assert!(
        j["columns"][0]["outcome"]
            .as_str()
            .unwrap()
            .contains("raised from 1 to 3"),
        "{j}"
    );
    assert_eq!(key_config(&b, &key).await["min_decryption_version"], 3);
    let audit = t
        .keyturn(&cfg, &["--json", "audit", "list"])
        .await
        .expect(0);
    assert!(audit.stdout.contains("key.retire"), "{audit}");
    // status now shows v3 alone (and v1, v2 would be retired).
    let s = t
        .keyturn(&cfg, &["--json", "status"])
        .await
        .expect(0)
        .json();
    assert_eq!(s["columns"][0]["under_current"], 270, "{s}");
    assert_eq!(s["columns"][0]["needs_rotation"], 0, "{s}");
}

async fn transit_derived_keys_with_row_contexts(t: TestDb) {
    let Some(b) = server(&t, "derived").await else {
        return;
    };
    let key = create_key(&b, true).await;
    let tb = Table::new(
        &t.table_name("transit_derived"),
        &[("id", PkKind::Int)],
        &[
            ("ssn", ColKind::Text, false),
            ("user_ref", ColKind::Text, false),
            ("note", ColKind::Text, false),
        ],
    );
    t.create_table(&tb, &[]).await;
    let ids: Vec<i64> = (1..=120).collect();
    let user = |i: i64| format!("user-{i}").into_bytes();
    // ssn: context from the user_ref column; note: context = true, the text
    // `table.column:pk`.
    let row_ctx = |i: i64| format!("{}.note:{i}", tb.name).into_bytes();
    let ssn = encrypt(
        &b,
        &key,
        &ids.iter()
            .map(|&i| (plain(i), Some(user(i))))
            .collect::<Vec<_>>(),
    )
    .await;
    let note = encrypt(
        &b,
        &key,
        &ids.iter()
            .map(|&i| (format!("note {i}").into_bytes(), Some(row_ctx(i))))
            .collect::<Vec<_>>(),
    )
    .await;
    let mut data = Data::new();
    for (k, &i) in ids.iter().enumerate() {
        // Row 7's context column is NULL: it cannot be rewrapped.
        let u = (i != 7).then(|| user(i));
        data.insert(
            int_pk(i),
            vec![
                Some(ssn[k].clone().into_bytes()),
                u,
                Some(note[k].clone().into_bytes()),
            ],
        );
    }
    t.insert(&tb, &data).await;
    b.rotate_key(&key).await;
    let token = b.create_token(&["root"], false).await;
    let cfg = config(
        &t,
        &b,
        &token,
        &tb,
        &format!(
            "{{ name = \"ssn\", codec = \"vault-transit\", kms = \"bao\", key = \"{key}\", context_column = \"user_ref\" }}, {{ name = \"note\", codec = \"vault-transit\", kms = \"bao\", key = \"{key}\", context = true }}"
        ),
    );
    // A derived key without a context is refused before anything runs.
    let mut nocontext = cfg.clone();
    nocontext.extra_toml = nocontext
        .extra_toml
        .replace(", context_column = \"user_ref\"", "");
    let o = t.keyturn(&nocontext, &["rotate"]).await.expect(1);
    assert!(o.stderr.contains("is derived"), "{o}");

    let o = t.keyturn(&cfg, &["--json", "rotate"]).await.expect(3);
    let r = o.json();
    let bad = r["bad_rows"].as_array().unwrap();
    assert_eq!(bad.len(), 1, "{r}");
    assert_eq!(bad[0]["pk"], "7", "{r}");
    assert!(
        bad[0]["reason"]
            .as_str()
            .unwrap()
            .contains("user_ref is NULL"),
        "{r}"
    );
    let after = t.read(&tb).await;
    let mut s_items = Vec::new();
    let mut n_items = Vec::new();
    for &i in &ids {
        let row = &after[&int_pk(i)];
        let s = text(&row[0]);
        let n = text(&row[2]);
        assert!(n.starts_with("vault:v2:"), "note {i}: {n}");
        if i == 7 {
            assert!(s.starts_with("vault:v1:"), "row 7 untouched");
            continue;
        }
        assert!(s.starts_with("vault:v2:"), "ssn {i}: {s}");
        s_items.push((s, Some(user(i))));
        n_items.push((n, Some(row_ctx(i))));
    }
    for (k, got) in decrypt(&b, &key, &s_items).await.into_iter().enumerate() {
        let i = ids.iter().filter(|&&i| i != 7).nth(k).copied().unwrap();
        assert_eq!(got, Ok(plain(i)), "ssn {i}");
    }
    for got in decrypt(&b, &key, &n_items).await {
        assert!(got.is_ok(), "note: {got:?}");
    }
}

/// A table of `n` values encrypted by the server under a new key's v1,
/// the key rotated to v2, a token and the config of its column.
struct Seeded {
    key: String,
    tb: Table,
    token: String,
    cfg: Cfg,
    n: i64,
}

async fn seeded(t: &TestDb, b: &Bao, what: &str, n: i64) -> Seeded {
    let key = create_key(b, false).await;
    let tb = Table::new(
        &t.table_name(what),
        &[("id", PkKind::Int)],
        &[("ssn", ColKind::Text, false)],
    );
    t.create_table(&tb, &[]).await;
    let cts = encrypt(
        b,
        &key,
        &(1..=n).map(|i| (plain(i), None)).collect::<Vec<_>>(),
    )
    .await;
    let data: Data = (1..=n)
        .zip(cts)
        .map(|(i, c)| (int_pk(i), vec![Some(c.into_bytes())]))
        .collect();
    t.insert(&tb, &data).await;
    b.rotate_key(&key).await;
    let token = b.create_token(&["root"], false).await;
    let cfg = config(t, b, &token, &tb, &column(&key));
    Seeded {
        key,
        tb,
        token,
        cfg,
        n,
    }
}

/// The `[[target]]` column entry of a transit column under `key`.
fn column(key: &str) -> String {
    format!("{{ name = \"ssn\", codec = \"vault-transit\", kms = \"bao\", key = \"{key}\" }}")
}

async fn transit_concurrent_writer_loses_nothing(t: TestDb) {
    let Some(b) = server(&t, "writer").await else {
        return;
    };
    let Seeded {
        key,
        tb,
        token: _,
        cfg,
        n,
    } = seeded(&t, &b, "transit_writer", 2000).await;
    let mut expected: BTreeMap<i64, Vec<u8>> = (1..=n).map(|i| (i, plain(i))).collect();
    let p = t.spawn(&cfg, &["--json", "rotate", "--max-rows-per-sec", "4000"]);
    // The application writes new values (under the latest version, as
    // transit encrypts) while the rotation runs.
    let mut rng = t.rng();
    let mut writes = 0;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(400) || writes < 30 {
        let i = rng.i64(1..=n);
        let v = format!("new-{i}-{writes}").into_bytes();
        let ct = encrypt(&b, &key, &[(v.clone(), None)]).await.remove(0);
        t.set(&tb, &[PkValue::Int(i)], 0, Some(ct.as_bytes())).await;
        expected.insert(i, v);
        writes += 1;
        if writes > 200 {
            break;
        }
    }
    let o = p.wait(Duration::from_secs(240)).await.expect(0);
    let r = o.json();
    assert_eq!(r["outcome"], "ok", "{r}");
    let after = t.read(&tb).await;
    let items: Vec<(String, Option<Vec<u8>>)> = (1..=n)
        .map(|i| (text(&after[&int_pk(i)][0]), None))
        .collect();
    for (i, (ct, _)) in (1..=n).zip(&items) {
        assert!(ct.starts_with("vault:v2:"), "row {i}: {ct}");
    }
    for (i, got) in (1..=n).zip(decrypt(&b, &key, &items).await) {
        assert_eq!(got.as_ref(), Ok(&expected[&i]), "row {i}: a write was lost");
    }
}

async fn transit_kill_and_resume(t: TestDb) {
    let Some(b) = server(&t, "kill").await else {
        return;
    };
    let Seeded {
        key,
        tb,
        token: _,
        cfg,
        n,
    } = seeded(&t, &b, "transit_kill", 3000).await;
    let p = t.spawn(&cfg, &["rotate", "--max-rows-per-sec", "1000"]);
    let start = std::time::Instant::now();
    while t.meta_rows("keyturn_checkpoints", &tb.name).await == 0
        && start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.kill();
    let mid = t.read(&tb).await;
    let done = mid
        .values()
        .filter(|v| text(&v[0]).starts_with("vault:v2:"))
        .count();
    assert!(
        done > 0 && done < n as usize,
        "killed mid-run: {done} of {n}"
    );
    let o = t.keyturn(&cfg, &["--json", "rotate"]).await.expect(0);
    let r = o.json();
    assert!(r["columns"][0]["resumed_rows"].as_u64().unwrap() > 0, "{r}");
    let after = t.read(&tb).await;
    let items: Vec<(String, Option<Vec<u8>>)> = (1..=n)
        .map(|i| (text(&after[&int_pk(i)][0]), None))
        .collect();
    for (i, got) in (1..=n).zip(decrypt(&b, &key, &items).await) {
        assert!(
            items[(i - 1) as usize].0.starts_with("vault:v2:"),
            "row {i}"
        );
        assert_eq!(got, Ok(plain(i)), "row {i}");
    }
    let o = t.keyturn(&cfg, &["status"]).await.expect(0);
    assert!(
        o.stdout.contains("interrupted") || o.stdout.contains("v2"),
        "{o}"
    );
}

async fn transit_token_revoked_mid_run(t: TestDb) {
    let Some(b) = server(&t, "revoked").await else {
        return;
    };
    let Seeded {
        key,
        tb,
        token,
        cfg,
        n,
    } = seeded(&t, &b, "transit_revoked", 3000).await;
    let p = t.spawn(&cfg, &["--json", "rotate", "--max-rows-per-sec", "1000"]);
    let start = std::time::Instant::now();
    while t.meta_rows("keyturn_checkpoints", &tb.name).await == 0
        && start.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.revoke_token(&token).await;
    let o = p.wait(Duration::from_secs(120)).await.expect(1);
    clean(&t, &o, &[]);
    assert!(o.stderr.contains("rejected the credentials"), "{o}");
    // One error, not thousands of bad rows.
    assert_eq!(
        t.count(&format!(
            "SELECT COUNT(*) FROM keyturn_bad_rows WHERE table_name = '{}'",
            tb.name
        ))
        .await,
        0
    );
    let runs = t
        .keyturn(&cfg, &["--json", "audit", "list"])
        .await
        .expect(0);
    assert!(runs.stdout.contains("rotate.end"), "{runs}");
    assert!(runs.stdout.contains("failed"), "{runs}");
    // A new token: the next run resumes from the checkpoint and finishes.
    let token2 = b.create_token(&["root"], false).await;
    let cfg2 = config(&t, &b, &token2, &tb, &column(&key));
    let r = t
        .keyturn(&cfg2, &["--json", "rotate"])
        .await
        .expect(0)
        .json();
    assert!(r["columns"][0]["resumed_rows"].as_u64().unwrap() > 0, "{r}");
    let after = t.read(&tb).await;
    let items: Vec<(String, Option<Vec<u8>>)> = (1..=n)
        .map(|i| (text(&after[&int_pk(i)][0]), None))
        .collect();
    for (i, got) in (1..=n).zip(decrypt(&b, &key, &items).await) {
        assert_eq!(got, Ok(plain(i)), "row {i}");
    }
}

async fn transit_key_named_per_row(t: TestDb) {
    let Some(b) = server(&t, "per_row").await else {
        return;
    };
    let (ka, kb) = (create_key(&b, false).await, create_key(&b, false).await);
    let tb = Table::new(
        &t.table_name("transit_per_row"),
        &[("id", PkKind::Int)],
        &[
            ("ssn", ColKind::Text, false),
            ("tenant_key", ColKind::Text, false),
        ],
    );
    t.create_table(&tb, &[]).await;
    // Odd ids under key a, even under key b; a is rotated twice, b once.
    let ids: Vec<i64> = (1..=80).collect();
    let key_of = |i: i64| if i % 2 == 1 { ka.clone() } else { kb.clone() };
    let mut data = Data::new();
    for &i in &ids {
        let ct = encrypt(&b, &key_of(i), &[(plain(i), None)]).await.remove(0);
        data.insert(
            int_pk(i),
            vec![Some(ct.into_bytes()), Some(key_of(i).into_bytes())],
        );
    }
    // A row naming a key that does not exist, and one with no key name.
    data.insert(
        int_pk(900),
        vec![
            Some(data[&int_pk(1)][0].clone().unwrap()),
            Some(b"no-such-key".to_vec()),
        ],
    );
    data.insert(
        int_pk(901),
        vec![Some(data[&int_pk(2)][0].clone().unwrap()), None],
    );
    t.insert(&tb, &data).await;
    b.rotate_key(&ka).await;
    b.rotate_key(&ka).await;
    b.rotate_key(&kb).await;
    let token = b.create_token(&["root"], false).await;
    let cfg = config(
        &t,
        &b,
        &token,
        &tb,
        "{ name = \"ssn\", codec = \"vault-transit\", kms = \"bao\", key_column = \"tenant_key\" }",
    );
    let o = t.keyturn(&cfg, &["--json", "rotate"]).await.expect(3);
    let r = o.json();
    assert_eq!(r["columns"][0]["written"], 80, "{r}");
    let bad: Vec<String> = r["bad_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            format!(
                "{} {}",
                x["pk"].as_str().unwrap(),
                x["reason"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(bad.len(), 2, "{r}");
    assert!(
        bad[0].starts_with("900 ") && bad[0].contains("does not exist"),
        "{bad:?}"
    );
    assert!(
        bad[1].starts_with("901 ") && bad[1].contains("is NULL"),
        "{bad:?}"
    );
    let after = t.read(&tb).await;
    for &i in &ids {
        let v = text(&after[&int_pk(i)][0]);
        let want = if i % 2 == 1 { "vault:v3:" } else { "vault:v2:" };
        assert!(v.starts_with(want), "row {i}: {v}");
        let got = decrypt(&b, &key_of(i), &[(v, None)]).await.remove(0);
        assert_eq!(got, Ok(plain(i)), "row {i}");
    }
    // A second run finds every row at its key's latest version.
    let r = t
        .keyturn(&cfg, &["--json", "rotate"])
        .await
        .expect(3)
        .json();
    assert_eq!(r["columns"][0]["written"], 0, "{r}");
}
