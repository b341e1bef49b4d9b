//! KMS envelopes end to end (`codec = "envelope"`, `kms = "NAME"`): rows of
//! a `connections` table written by the real libraries as a Node/Python
//! application writes them (scripts/interop/kms_envelope.py: boto3
//! `GenerateDataKey` against moto, OpenBao transit `datakey/plaintext`,
//! cryptography's AESGCM), rotated by the `keyturn` binary (`rewrap`, then
//! `reencrypt`), and read back by the same libraries. Each scenario runs on
//! SQLite, PostgreSQL and MariaDB.
//!
//! The script runs under `.interop/venv/bin/python` when
//! scripts/interop/setup.sh made it, else `python3` (which .ci/install-kms.sh
//! gives boto3 and cryptography). Without it, or without moto / OpenBao,
//! the scenario is skipped, or fails under `KEYTURN_REQUIRE_KMS=1`.

use crate::common::kms::{bao, missing, moto_url};
use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

scenarios!(
    aws_binary_rewrap_then_reencrypt,
    aws_base64_rewrap_then_reencrypt,
    aws_concurrent_application_writes,
    transit_rewrap_then_reencrypt,
    local_envelope_refuses_kms_blobs,
);

// ---------------------------------------------------------------------------
// The application (Python, real libraries)
// ---------------------------------------------------------------------------

const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
];
const TOKEN_ENV: &str = "KT_BAO_TOKEN";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The interpreter with boto3 and cryptography, or `None` (reported).
fn python(test: &str) -> Option<PathBuf> {
    let venv = root().join(".interop/venv/bin/python");
    let candidates = [venv, PathBuf::from("python3")];
    for p in candidates {
        let ok = std::process::Command::new(&p)
            .args(["-c", "import boto3, cryptography"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    missing(test, "python3 with boto3 and cryptography");
    None
}

/// Runs kms_envelope.py `args` with `input` on stdin; its JSON answer.
fn app(py: &PathBuf, args: &[&str], input: &Value, env: &[(String, String)]) -> Value {
    use std::io::Write as _;
    let mut c = std::process::Command::new(py);
    c.arg(root().join("scripts/interop/kms_envelope.py"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in AWS_ENV {
        c.env(k, v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("starting python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kms_envelope.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from kms_envelope.py")
}

// ---------------------------------------------------------------------------
// The tables
// ---------------------------------------------------------------------------

/// Cell positions in the test table.
const CT: usize = 0;
const IV: usize = 1;
const DEK: usize = 2;
const KID: usize = 3;

fn connections(t: &TestDb, text: bool) -> Table {
    let k = if text { ColKind::Text } else { ColKind::Binary };
    Table::new(
        &t.table_name("conn"),
        &[("id", PkKind::Int)],
        &[
            ("payload_ciphertext", k, false),
            ("payload_iv", k, false),
            ("data_key_ciphertext", k, false),
            ("encryption_key_id", ColKind::Text, false),
            ("tenant_id", ColKind::Text, false),
        ],
    )
}

/// The `encryption_keys` catalog with `(key_id, kms key)` rows.
async fn catalog(t: &TestDb, keys: &[(&str, &str)]) -> String {
    let name = t.table_name("keys");
    t.exec(&format!(
        "CREATE TABLE {name} (key_id VARCHAR(64) PRIMARY KEY, kms_key_arn TEXT, alias TEXT, status TEXT)"
    ))
    .await;
    add_catalog(t, &name, keys).await;
    name
}

async fn add_catalog(t: &TestDb, name: &str, keys: &[(&str, &str)]) {
    for (id, arn) in keys {
        t.exec(&format!(
            "INSERT INTO {name} (key_id, kms_key_arn, alias, status) VALUES ('{id}', '{arn}', 'alias/{id}', 'active')"
        ))
        .await;
    }
}

fn unb64(s: &str) -> Vec<u8> {
    STANDARD.decode(s).expect("base64")
}

/// A sealed row's cell as the column stores it: raw bytes in a binary
/// column, base64 in a text column; a transit data key as its text.
fn cell(tb: &Table, col: usize, b64: &str, transit: bool) -> Vec<u8> {
    if col == DEK && transit {
        return unb64(b64);
    }
    match tb.cols[col].kind {
        ColKind::Binary => unb64(b64),
        ColKind::Text => b64.as_bytes().to_vec(),
    }
}

/// A stored cell as base64 of its bytes (what the script reads).
fn to_b64(tb: &Table, col: usize, v: &[u8], transit: bool) -> String {
    if col == DEK && transit {
        return STANDARD.encode(v);
    }
    match tb.cols[col].kind {
        ColKind::Binary => STANDARD.encode(v),
        ColKind::Text => String::from_utf8(v.to_vec()).unwrap(),
    }
}

fn context_of(id: i64) -> Value {
    json!({"tenant": format!("t{}", id % 3), "app": "keyturn-e2e"})
}

/// The application: its interpreter, KMS and environment.
struct App<'a> {
    py: &'a PathBuf,
    kms: &'a Value,
    env: &'a [(String, String)],
}

/// Seals `plain` (id -> plaintext) under `kms_key`, key id `key_id`, with
/// the script; returns the stored rows (tenant `t{id % 3}`).
fn seal_rows(
    a: &App<'_>,
    tb: &Table,
    plain: &BTreeMap<i64, Vec<u8>>,
    key_id: &str,
    kms_key: &str,
    with_context: bool,
) -> Data {
    let (py, kms, env) = (a.py, a.kms, a.env);
    let transit = kms["kind"] == "transit";
    let rows: Vec<Value> = plain
        .iter()
        .map(|(id, p)| {
            let mut r = json!({"id": id, "key_id": key_id, "kms_key": kms_key, "plaintext_b64": STANDARD.encode(p)});
            if with_context {
                r["context"] = context_of(*id);
            }
            r
        })
        .collect();
    let sealed = app(py, &["seal"], &json!({"kms": kms, "rows": rows}), env);
    let mut data = Data::new();
    for r in sealed["rows"].as_array().unwrap() {
        let id = r["id"].as_i64().unwrap();
        let s = |k: &str| r[k].as_str().unwrap().to_owned();
        data.insert(
            int_pk(id),
            vec![
                Some(cell(tb, CT, &s("payload_ciphertext"), transit)),
                Some(cell(tb, IV, &s("payload_iv"), transit)),
                Some(cell(tb, DEK, &s("data_key_ciphertext"), transit)),
                Some(s("encryption_key_id").into_bytes()),
                Some(format!("t{}", id % 3).into_bytes()),
            ],
        );
    }
    data
}

/// What the application reads from each stored row: `Ok((key id,
/// plaintext))` or `Err(error name)`.
fn open_rows(
    a: &App<'_>,
    tb: &Table,
    stored: &Data,
    keys: &BTreeMap<&str, &str>,
    with_context: bool,
) -> BTreeMap<i64, Result<(String, Vec<u8>), String>> {
    let (py, kms, env) = (a.py, a.kms, a.env);
    let transit = kms["kind"] == "transit";
    let rows: Vec<Value> = stored
        .iter()
        .filter(|(_, c)| c[..4].iter().all(Option::is_some))
        .map(|(pk, c)| {
            let id = match pk[0] {
                keyturn_db::PkValue::Int(i) => i,
                _ => unreachable!(),
            };
            let b = |col: usize| to_b64(tb, col, c[col].as_deref().unwrap(), transit);
            let mut r = json!({
                "id": id,
                "payload_ciphertext": b(CT),
                "payload_iv": b(IV),
                "data_key_ciphertext": b(DEK),
                "encryption_key_id": String::from_utf8(c[KID].clone().unwrap()).unwrap(),
            });
            if with_context {
                r["context"] = context_of(id);
            }
            r
        })
        .collect();
    let opened = app(
        py,
        &["open"],
        &json!({"kms": kms, "keys": keys, "rows": rows}),
        env,
    );
    opened["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["id"].as_i64().unwrap();
            match r["error"].as_str() {
                Some(e) => (id, Err(e.to_owned())),
                None => (
                    id,
                    Ok((
                        r["key_id"].as_str().unwrap().to_owned(),
                        unb64(r["plaintext_b64"].as_str().unwrap()),
                    )),
                ),
            }
        })
        .collect()
}

/// Plaintexts of rows 1..=n, 1 to 80 bytes (registered as secrets: no
/// output of keyturn may show them).
fn plaintexts(t: &TestDb, n: i64) -> BTreeMap<i64, Vec<u8>> {
    let mut rng = t.rng();
    (1..=n)
        .map(|id| {
            let p: Vec<u8> = format!("postgres://app:{}@db-{id}/prod", rng.u64(..))
                .into_bytes()
                .into_iter()
                .take(rng.usize(16..=48))
                .collect();
            t.add_secret(&String::from_utf8_lossy(&p));
            (id, p)
        })
        .collect()
}

/// The column entry (`extra` inside the braces).
fn entry(extra: &str) -> String {
    format!(
        r#"{{ name = "payload_ciphertext", codec = "envelope", iv_column = "payload_iv", key_id_column = "encryption_key_id", wrapped_key_column = "data_key_ciphertext"{extra} }}"#
    )
}

fn config(tb: &Table, kms_section: &str, entry: &str, env: &[(String, String)]) -> Cfg {
    let mut c = Cfg::new(&[], &[], "unused");
    c.env.extend(env.iter().cloned());
    for (k, v) in AWS_ENV {
        c.env.push((k.into(), v.into()));
    }
    c.extra_toml = format!(
        "{kms_section}\n[[target]]\ntable = {}\nprimary_key = \"id\"\ncolumns = [{entry}]\n",
        toml_str(&tb.name)
    );
    c
}

fn column<'a>(j: &'a Value, table: &str) -> &'a Value {
    j["columns"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["table"] == table))
        .unwrap_or_else(|| panic!("no {table} in {j:#}"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn id_cell(d: &Data, id: i64, col: usize) -> Option<Vec<u8>> {
    d[&int_pk(id)][col].clone()
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

async fn aws_binary_rewrap_then_reencrypt(t: TestDb) {
    aws_rewrap_then_reencrypt(t, false).await
}

async fn aws_base64_rewrap_then_reencrypt(t: TestDb) {
    aws_rewrap_then_reencrypt(t, true).await
}

/// AWS KMS: 40 rows under catalog id 2025-01 with an encryption context
/// from the tenant column, plus odd rows: a damaged payload tag (row 5), an
/// unknown key id (41), all cells NULL (42), a NULL wrapped key (43).
///
/// `rotate` refuses the unknown id (preflight); with `--skip-unknown-keys`
/// a rewrap moves every row to 2025-03-kms by `ReEncrypt` (payload and IV
/// untouched, the damaged row too: a rewrap does not read the payload);
/// boto3 + AESGCM read them back. Then 2025-06 is added to the catalog and
/// a `reencrypt` gives every row a new data key and IV; the damaged row is
/// a bad row. A second rotation finds nothing to do.
async fn aws_rewrap_then_reencrypt(t: TestDb, text: bool) {
    let test = "kms_envelope::aws";
    let Some(url) = moto_url(test) else { return };
    let Some(py) = python(test) else { return };
    let kms = json!({"kind": "aws", "endpoint": url, "region": "us-east-1"});
    let keys = app(&py, &["aws-keys", "3", &url], &json!({}), &[]);
    let arn = |i: usize| keys["keys"][i].as_str().unwrap().to_owned();
    let (a, b, c) = (arn(0), arn(1), arn(2));
    let cat = catalog(&t, &[("2025-01", &a), ("2025-03-kms", &b)]).await;
    let tb = connections(&t, text);
    t.create_table(&tb, &[]).await;
    let plain = plaintexts(&t, 41);
    let mut data = seal_rows(
        &App {
            py: &py,
            kms: &kms,
            env: &[],
        },
        &tb,
        &plain,
        "2025-01",
        &a,
        true,
    );
    // Odd rows.
    let row = data.get_mut(&int_pk(5)).unwrap();
    let mut ct = match tb.cols[CT].kind {
        ColKind::Binary => row[CT].clone().unwrap(),
        ColKind::Text => unb64(std::str::from_utf8(row[CT].as_deref().unwrap()).unwrap()),
    };
    let last = ct.len() - 1;
    ct[last] ^= 1;
    row[CT] = Some(match tb.cols[CT].kind {
        ColKind::Binary => ct,
        ColKind::Text => STANDARD.encode(ct).into_bytes(),
    });
    data.get_mut(&int_pk(41)).unwrap()[KID] = Some(b"2024-99".to_vec());
    data.insert(
        int_pk(42),
        vec![None, None, None, None, Some(b"t0".to_vec())],
    );
    let mut half = data[&int_pk(1)].clone();
    half[DEK] = None;
    data.insert(int_pk(43), half);
    t.insert(&tb, &data).await;

    let section = format!(
        "[kms.aws]\nkind = \"aws-kms\"\nregion = \"us-east-1\"\nendpoint_url = {}\nmax_in_flight = 8\n",
        toml_str(&url)
    );
    let common = format!(
        r#", kms = "aws", key_catalog = {{ table = {}, id_column = "key_id", kms_key_column = "kms_key_arn" }}, encryption_context = {{ tenant = "tenant_id", app = "=keyturn-e2e" }}"#,
        toml_str(&cat)
    );
    let cfg1 = config(
        &tb,
        &section,
        &entry(&format!(
            r#"{common}, target_key_id = "2025-03-kms", options = {{ rotation = "rewrap" }}"#
        )),
        &[],
    );

    let st = t
        .keyturn(&cfg1, &["--json", "status"])
        .await
        .expect(0)
        .json();
    let col = column(&st, &tb.name);
    assert_eq!(n(&col["nulls"]), 1, "{st:#}");
    let refused = t.keyturn(&cfg1, &["rotate"]).await.expect(5);
    assert!(refused.stderr.contains("2024-99"), "{refused}");
    assert_eq!(t.read(&tb).await, data, "a refused run writes nothing");

    let j = t
        .keyturn(&cfg1, &["--json", "rotate", "--skip-unknown-keys"])
        .await
        .expect(3)
        .json();
    let col = column(&j, &tb.name);
    assert_eq!((n(&col["written"]), n(&col["failed"])), (40, 2), "{j:#}");
    let after = t.read(&tb).await;
    let ids: BTreeMap<&str, &str> = [
        ("2025-01", a.as_str()),
        ("2025-03-kms", b.as_str()),
        ("2025-06", c.as_str()),
    ]
    .into();
    let opened = open_rows(
        &App {
            py: &py,
            kms: &kms,
            env: &[],
        },
        &tb,
        &after,
        &ids,
        true,
    );
    for id in 1..=40 {
        assert_eq!(
            (id_cell(&after, id, CT), id_cell(&after, id, IV)),
            (id_cell(&data, id, CT), id_cell(&data, id, IV)),
            "row {id}: a rewrap leaves payload and IV"
        );
        assert_ne!(
            id_cell(&after, id, DEK),
            id_cell(&data, id, DEK),
            "row {id}"
        );
        match (id, &opened[&id]) {
            (5, Err(e)) => assert_eq!(e, "InvalidTag", "row 5"),
            (5, Ok(_)) => panic!("row 5's damaged tag opened"),
            (_, Ok((kid, p))) => {
                assert_eq!((kid.as_str(), p), ("2025-03-kms", &plain[&id]), "row {id}")
            }
            (_, Err(e)) => panic!("row {id}: {e}"),
        }
    }
    for id in [41, 42, 43] {
        assert_eq!(after[&int_pk(id)], data[&int_pk(id)], "row {id} untouched");
    }
    // verify --deep asks KMS about every wrapped key (ReEncrypt to its own
    // key, nothing decrypted here): the unknown id and the NULL cell fail.
    t.keyturn(&cfg1, &["verify", "--deep"]).await.expect(4);
    // The bad rows name their reason, never a value.
    let bad_rows = t
        .keyturn(&cfg1, &["--json", "bad-rows", "list"])
        .await
        .json();
    let text_of_bad = bad_rows.to_string();
    assert!(text_of_bad.contains("wrapped key"), "{bad_rows:#}");

    // Full rotation to a new catalog id.
    add_catalog(&t, &cat, &[("2025-06", &c)]).await;
    let cfg2 = config(
        &tb,
        &section,
        &entry(&format!(
            r#"{common}, target_key_id = "2025-06", options = {{ rotation = "reencrypt" }}"#
        )),
        &[],
    );
    let j = t
        .keyturn(&cfg2, &["--json", "rotate", "--skip-unknown-keys"])
        .await
        .expect(3)
        .json();
    let col = column(&j, &tb.name);
    assert_eq!((n(&col["written"]), n(&col["failed"])), (39, 3), "{j:#}");
    let full = t.read(&tb).await;
    let opened = open_rows(
        &App {
            py: &py,
            kms: &kms,
            env: &[],
        },
        &tb,
        &full,
        &ids,
        true,
    );
    for id in (1..=40).filter(|&i| i != 5) {
        assert_ne!(
            id_cell(&full, id, IV),
            id_cell(&after, id, IV),
            "row {id}: new IV"
        );
        match &opened[&id] {
            Ok((kid, p)) => assert_eq!((kid.as_str(), p), ("2025-06", &plain[&id]), "row {id}"),
            Err(e) => panic!("row {id}: {e}"),
        }
    }
    assert_eq!(
        full[&int_pk(5)],
        after[&int_pk(5)],
        "the damaged row is left"
    );
    // With reencrypt, verify --deep opens each payload: row 5 fails too.
    let deep = t.keyturn(&cfg2, &["verify", "--deep"]).await.expect(4);
    assert!(
        deep.stdout.contains("tag check failed") || deep.stderr.contains("tag check failed"),
        "{deep}"
    );
    let bad = t
        .keyturn(&cfg2, &["--json", "bad-rows", "list"])
        .await
        .json();
    assert!(bad.to_string().contains("tag check failed"), "{bad:#}");

    // Nothing left under an old id (bad rows aside): SQL skips the rest.
    let again = t
        .keyturn(&cfg2, &["--json", "rotate", "--skip-unknown-keys"])
        .await
        .json();
    assert_eq!(n(&column(&again, &tb.name)["written"]), 0, "{again:#}");
    t.finish().await;
}

/// Sets the four envelope cells of one row in one statement, like the
/// application.
async fn write_row(t: &TestDb, tb: &Table, id: i64, cells: &[Option<Vec<u8>>]) -> u64 {
    let ph = |n: usize| match t.kind {
        Kind::Postgres => format!("${n}"),
        _ => "?".into(),
    };
    let sets: Vec<String> = (0..4)
        .map(|c| format!("{} = {}", tb.cols[c].name, ph(c + 1)))
        .collect();
    let sql = format!(
        "UPDATE {} SET {} WHERE id = {}",
        tb.name,
        sets.join(", "),
        ph(5)
    );
    let vals: Vec<Val> = (0..4)
        .map(|c| match (tb.cols[c].kind, &cells[c]) {
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

/// The application re-seals half the rows (new data key, IV and payload,
/// one UPDATE each) while keyturn rewraps them, paced by
/// `max_requests_per_sec`: no row ends with a wrapped key of one write and
/// a payload of another (compare-and-swap over the four cells); every row
/// opens to its latest plaintext, and a second rotation moves what the
/// application wrote under the old id.
async fn aws_concurrent_application_writes(t: TestDb) {
    let test = "kms_envelope::concurrent";
    let Some(url) = moto_url(test) else { return };
    let Some(py) = python(test) else { return };
    let kms = json!({"kind": "aws", "endpoint": url, "region": "us-east-1"});
    let keys = app(&py, &["aws-keys", "2", &url], &json!({}), &[]);
    let (a, b) = (
        keys["keys"][0].as_str().unwrap().to_owned(),
        keys["keys"][1].as_str().unwrap().to_owned(),
    );
    let cat = catalog(&t, &[("2025-01", &a), ("2025-03-kms", &b)]).await;
    let tb = connections(&t, t.kind == Kind::MariaDb);
    t.create_table(&tb, &[]).await;
    let mut plain = plaintexts(&t, 60);
    let data = seal_rows(
        &App {
            py: &py,
            kms: &kms,
            env: &[],
        },
        &tb,
        &plain,
        "2025-01",
        &a,
        false,
    );
    t.insert(&tb, &data).await;
    // The application's next values, sealed before the run starts.
    let fresh: BTreeMap<i64, Vec<u8>> = plain
        .iter()
        .filter(|(id, _)| *id % 2 == 1)
        .map(|(id, p)| {
            let mut q = p.clone();
            q.reverse();
            t.add_secret(&String::from_utf8_lossy(&q));
            (*id, q)
        })
        .collect();
    let next = seal_rows(
        &App {
            py: &py,
            kms: &kms,
            env: &[],
        },
        &tb,
        &fresh,
        "2025-01",
        &a,
        false,
    );
    let section = format!(
        "[kms.aws]\nkind = \"aws-kms\"\nregion = \"us-east-1\"\nendpoint_url = {}\nmax_in_flight = 2\nmax_requests_per_sec = 40\n",
        toml_str(&url)
    );
    let mut cfg = config(
        &tb,
        &section,
        &entry(&format!(
            r#", kms = "aws", key_catalog = {{ table = {} }}, target_key_id = "2025-03-kms""#,
            toml_str(&cat)
        )),
        &[],
    );
    cfg.batch_size = 10;
    let run = t.spawn(&cfg, &["--json", "rotate"]);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for (pk, cells) in &next {
        let id = match pk[0] {
            keyturn_db::PkValue::Int(i) => i,
            _ => unreachable!(),
        };
        assert_eq!(write_row(&t, &tb, id, &cells[..4]).await, 1);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = run
        .wait(std::time::Duration::from_secs(120))
        .await
        .expect(0);
    assert_eq!(n(&column(&out.json(), &tb.name)["failed"]), 0, "{out}");
    plain.extend(fresh);
    let ids: BTreeMap<&str, &str> = [("2025-01", a.as_str()), ("2025-03-kms", b.as_str())].into();
    let check = |stored: &Data, all_moved: bool| {
        let opened = open_rows(
            &App {
                py: &py,
                kms: &kms,
                env: &[],
            },
            &tb,
            stored,
            &ids,
            false,
        );
        assert_eq!(opened.len(), 60);
        for (id, r) in &opened {
            match r {
                Ok((kid, p)) => {
                    assert_eq!(p, &plain[id], "row {id}: not its latest plaintext");
                    assert!(!all_moved || kid == "2025-03-kms", "row {id} under {kid}");
                }
                Err(e) => panic!("row {id}: {e} (cells of two writes mixed?)"),
            }
        }
    };
    check(&t.read(&tb).await, false);
    t.keyturn(&cfg, &["rotate"]).await.expect(0);
    check(&t.read(&tb).await, true);
    t.finish().await;
}

/// OpenBao transit data keys (`datakey/plaintext`, `vault:v1:` in the
/// wrapped-key column), ids in `kms_keys` (no catalog table). After the
/// transit key gets a new version, a rewrap to id t-1-v2 (the same transit
/// key) is transit's own `rewrap` (`vault:v2:`); then a reencrypt to t-2
/// (another transit key) gives each row a new data key and IV. A damaged
/// payload is rewrapped, and refused by the reencrypt.
async fn transit_rewrap_then_reencrypt(t: TestDb) {
    let test = "kms_envelope::transit";
    let Some(b) = bao(test).await else { return };
    let Some(py) = python(test) else { return };
    t.add_secret(&b.root_token);
    let env = vec![(TOKEN_ENV.to_owned(), b.root_token.clone())];
    let kms = json!({"kind": "transit", "addr": b.addr, "mount": b.mount, "token_env": TOKEN_ENV});
    let (k1, k2) = (b.create_key().await, b.create_key().await);
    let tb = connections(&t, t.kind == Kind::Postgres);
    t.create_table(&tb, &[]).await;
    let plain = plaintexts(&t, 30);
    let mut data = seal_rows(
        &App {
            py: &py,
            kms: &kms,
            env: &env,
        },
        &tb,
        &plain,
        "t-1",
        &k1,
        false,
    );
    let row = data.get_mut(&int_pk(7)).unwrap();
    let mut ct = match tb.cols[CT].kind {
        ColKind::Binary => row[CT].clone().unwrap(),
        ColKind::Text => unb64(std::str::from_utf8(row[CT].as_deref().unwrap()).unwrap()),
    };
    ct[0] ^= 1;
    row[CT] = Some(match tb.cols[CT].kind {
        ColKind::Binary => ct,
        ColKind::Text => STANDARD.encode(ct).into_bytes(),
    });
    t.insert(&tb, &data).await;
    b.rotate_key(&k1).await;

    let section = format!(
        "[kms.bao]\nkind = \"vault-transit\"\naddress = {}\nmount = {}\ntoken = \"env:{TOKEN_ENV}\"\nmax_in_flight = 4\n",
        toml_str(&b.addr),
        toml_str(&b.mount)
    );
    let ids_toml = format!(
        r#", kms = "bao", kms_keys = {{ "t-1" = {k1}, "t-1-v2" = {k1}, "t-2" = {k2} }}"#,
        k1 = toml_str(&k1),
        k2 = toml_str(&k2)
    );
    let ids: BTreeMap<&str, &str> = [
        ("t-1", k1.as_str()),
        ("t-1-v2", k1.as_str()),
        ("t-2", k2.as_str()),
    ]
    .into();

    let cfg1 = config(
        &tb,
        &section,
        &entry(&format!(r#"{ids_toml}, target_key_id = "t-1-v2""#)),
        &env,
    );
    let j = t
        .keyturn(&cfg1, &["--json", "rotate"])
        .await
        .expect(0)
        .json();
    assert_eq!(n(&column(&j, &tb.name)["written"]), 30, "{j:#}");
    let after = t.read(&tb).await;
    let opened = open_rows(
        &App {
            py: &py,
            kms: &kms,
            env: &env,
        },
        &tb,
        &after,
        &ids,
        false,
    );
    for id in 1..=30 {
        let w = id_cell(&after, id, DEK).unwrap();
        assert!(
            w.starts_with(b"vault:v2:"),
            "row {id}: transit rewrap to v2"
        );
        assert_eq!(id_cell(&after, id, CT), id_cell(&data, id, CT), "row {id}");
        match (id, &opened[&id]) {
            (7, r) => assert!(r.is_err(), "row 7's damaged payload opened"),
            (_, Ok((kid, p))) => assert_eq!((kid.as_str(), p), ("t-1-v2", &plain[&id])),
            (_, Err(e)) => panic!("row {id}: {e}"),
        }
    }

    let cfg2 = config(
        &tb,
        &section,
        &entry(&format!(
            r#"{ids_toml}, target_key_id = "t-2", options = {{ rotation = "reencrypt" }}"#
        )),
        &env,
    );
    let j = t
        .keyturn(&cfg2, &["--json", "rotate"])
        .await
        .expect(3)
        .json();
    let col = column(&j, &tb.name);
    assert_eq!((n(&col["written"]), n(&col["failed"])), (29, 1), "{j:#}");
    let full = t.read(&tb).await;
    let opened = open_rows(
        &App {
            py: &py,
            kms: &kms,
            env: &env,
        },
        &tb,
        &full,
        &ids,
        false,
    );
    for id in (1..=30).filter(|&i| i != 7) {
        assert_ne!(
            id_cell(&full, id, IV),
            id_cell(&after, id, IV),
            "row {id}: new IV"
        );
        match &opened[&id] {
            Ok((kid, p)) => assert_eq!((kid.as_str(), p), ("t-2", &plain[&id]), "row {id}"),
            Err(e) => panic!("row {id}: {e}"),
        }
    }
    assert_eq!(full[&int_pk(7)], after[&int_pk(7)]);
    t.finish().await;
}

/// `codec = "envelope"` without `kms` over rows whose data keys AWS KMS
/// made: one message for the column before any row is touched (not one bad
/// row per value), pointing at `kms = "NAME"`.
async fn local_envelope_refuses_kms_blobs(t: TestDb) {
    let test = "kms_envelope::local_refused";
    let Some(url) = moto_url(test) else { return };
    let Some(py) = python(test) else { return };
    let kms = json!({"kind": "aws", "endpoint": url, "region": "us-east-1"});
    let keys = app(&py, &["aws-keys", "1", &url], &json!({}), &[]);
    let a = keys["keys"][0].as_str().unwrap().to_owned();
    let tb = connections(&t, false);
    t.create_table(&tb, &[]).await;
    let plain = plaintexts(&t, 25);
    let data = seal_rows(
        &App {
            py: &py,
            kms: &kms,
            env: &[],
        },
        &tb,
        &plain,
        "2025-01",
        &a,
        false,
    );
    t.insert(&tb, &data).await;
    let key = keyturn_format::SecretKey::generate(keyturn_format::Algorithm::Aes256Gcm).unwrap();
    let spec = STANDARD.encode(key.expose_bytes());
    t.add_secret(&spec);
    let mut cfg = config(
        &tb,
        "[keyrings.local]\nsources = [\"env:KT_LOCAL_KEKS\"]\nprimary = \"2025-01\"\n",
        &entry(r#", keyring = "local""#),
        &[("KT_LOCAL_KEKS".into(), format!("2025-01={spec}"))],
    );
    cfg.batch_size = 10;
    let out = t.keyturn(&cfg, &["rotate"]).await.expect(1);
    assert!(
        out.stderr
            .contains("not a local aes-gcm/aes-kw wrap (60/40 bytes); a KMS-wrapped data key? configure kms = \"NAME\""),
        "{out}"
    );
    assert_eq!(out.stderr.matches("wrapped keys of").count(), 1, "{out}");
    assert_eq!(t.read(&tb).await, data, "nothing written");

    // The mirror: local 60-byte wraps (keyturn's own envelope codec) under
    // a column configured with kms.
    use keyturn_codecs::multi::MultiColumnCodec as _;
    let ring = keyturn_format::Keyring::from_keys(
        vec![(keyturn_format::KeyId::new("2025-01").unwrap(), key)],
        Some("2025-01"),
        &[],
    )
    .unwrap();
    let local = Table {
        name: t.table_name("local"),
        ..tb.clone()
    };
    t.create_table(&local, &[]).await;
    let mut rows = Data::new();
    for (id, p) in &plain {
        let c = keyturn_codecs::envelope::EnvelopeCodec::default()
            .encrypt_row(&ring, p, &[])
            .unwrap();
        rows.insert(
            int_pk(*id),
            vec![
                c.ciphertext,
                c.iv,
                c.wrapped_key,
                c.key_id.map(String::into_bytes),
                Some(b"t0".to_vec()),
            ],
        );
    }
    t.insert(&local, &rows).await;
    let section = format!(
        "[kms.aws]\nkind = \"aws-kms\"\nregion = \"us-east-1\"\nendpoint_url = {}\n",
        toml_str(&url)
    );
    let ids = format!(
        r#", kms = "aws", kms_keys = {{ "2025-01" = {a}, "2025-03" = {a} }}, target_key_id = "2025-03""#,
        a = toml_str(&a)
    );
    let cfg = config(&local, &section, &entry(&ids), &[]);
    let out = t.keyturn(&cfg, &["rotate"]).await.expect(1);
    assert!(
        out.stderr.contains(
            "are 60 bytes: a local aes-gcm/aes-kw wrap (60/40 bytes), not a KMS-wrapped data key"
        ),
        "{out}"
    );
    assert_eq!(t.read(&local).await, rows, "nothing written");
    t.finish().await;
}
