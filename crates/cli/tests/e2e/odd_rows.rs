//! Odd rows, per codec and per database (issue #13, "Done when"): one table
//! per codec holds good values under an old key, values already under the
//! new key, values under a key the ring lacks, NULLs, and every odd shape a
//! real table collects (empty, wrong prefix, truncated, plaintext that looks
//! like `a:b`, JSON that is not an envelope, and on SQLite the wrong storage
//! class and non-UTF-8 text). Through the real binary:
//!
//! - `status` counts equal the truth before and after;
//! - `rotate` refuses before writing while well-formed unknown key ids are
//!   there, and `rotate --skip-unknown-keys` rotates every good value, exits
//!   3 and leaves every odd value byte for byte (and storage class) as it was;
//! - `bad-rows list` names every odd row exactly once; `verify --deep` names
//!   exactly them, and exits 0 once they are acknowledged;
//! - no odd value appears in any output, audit event or report.
//!
//! Run one backend: `cargo test -p keyturn --test e2e odd_rows::sqlite::`.

use crate::common::*;
use base64::Engine as _;
use keyturn_codecs::CodecConfig;
use keyturn_db::PkValue;
use keyturn_format::{Codec, Keyring};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

scenarios!(odd_rows_every_codec);

/// Good rows under the old key.
const OLD: std::ops::RangeInclusive<i64> = 1..=30;
/// Good rows already under the new key.
const NEW: std::ops::RangeInclusive<i64> = 31..=34;
/// Rows under a key the ring lacks.
const FOREIGN: std::ops::RangeInclusive<i64> = 35..=37;
/// NULLs.
const NULLS: std::ops::RangeInclusive<i64> = 38..=39;
/// Odd shapes start here.
const ODD_FROM: i64 = 40;

/// One codec's column: how it is configured, how its keys are written.
struct Case {
    /// Table and keyring name suffix.
    name: &'static str,
    /// The codec's config as JSON (`{"codec": …, params…}`); `None` for
    /// keyturn's own format, whose keys are the `[keys]` ring.
    config: Option<Value>,
    binary: bool,
    /// Whether the stored value names its key (SQL can count per key).
    names_key: bool,
    /// Key texts (old, new, foreign) in the framework's own form, and the
    /// ids they are loaded under (empty: derived from the key).
    keys: [(String, String); 3],
}

fn bytes32(tag: u8, n: u8) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = tag
            .wrapping_mul(31)
            .wrapping_add(n.wrapping_mul(97))
            .wrapping_add(i as u8 * 7);
    }
    b
}

fn std64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// keyturn's own format: its keys are the `[keys]` ring (see [`native_keys`]).
fn native_case(name: &'static str, binary: bool) -> Case {
    Case {
        name,
        config: None,
        binary,
        names_key: true,
        keys: Default::default(),
    }
}

fn cases(t: &TestDb) -> Vec<Case> {
    let keys3 = |tag: u8, text: &dyn Fn(&[u8; 32]) -> String, ids: [&str; 3]| {
        let k: Vec<(String, String)> = (0..3u8)
            .map(|n| {
                let b = bytes32(tag, n);
                let s = text(&b);
                t.add_secret(&std64(&b));
                t.add_secret(&hex::encode(b));
                (ids[n as usize].to_owned(), s)
            })
            .collect();
        [k[0].clone(), k[1].clone(), k[2].clone()]
    };
    let url64 = |b: &[u8; 32]| base64::engine::general_purpose::URL_SAFE.encode(b);
    let ids = ["old", "new", "gone"];
    vec![
        native_case("native_text", false),
        native_case("native_bin", true),
        Case {
            name: "fernet",
            config: Some(json!({"codec": "fernet"})),
            binary: false,
            names_key: false,
            keys: keys3(1, &url64, ids),
        },
        Case {
            name: "laravel",
            config: Some(json!({"codec": "laravel"})),
            binary: false,
            names_key: false,
            keys: keys3(2, &|b| format!("base64:{}", std64(b)), ids),
        },
        Case {
            name: "rails",
            config: Some(json!({"codec": "rails", "key_derivation_salt": "salt-of-the-app"})),
            binary: false,
            names_key: false,
            keys: keys3(
                3,
                &|b| format!("rails-primary-{}", hex::encode(&b[..12])),
                ["", "", ""],
            ),
        },
        Case {
            name: "lockbox",
            config: Some(
                json!({"codec": "lockbox", "table": t.table_name("lockbox"), "column": "v"}),
            ),
            binary: false,
            names_key: false,
            keys: keys3(4, &|b| hex::encode(b), ids),
        },
        Case {
            name: "vault",
            config: Some(json!({"codec": "vault-transit"})),
            binary: false,
            names_key: true,
            keys: keys3(5, &|b| std64(b), ["v1", "v2", "v7"]),
        },
        Case {
            name: "cloak",
            config: Some(json!({"codec": "cloak"})),
            binary: false,
            names_key: true,
            keys: keys3(
                6,
                &|b| {
                    format!(
                        "k1.aesgcm256.{}",
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
                    )
                },
                ["", "", ""],
            ),
        },
        Case {
            name: "node",
            config: Some(json!({"codec": "node-gcm"})),
            binary: false,
            names_key: false,
            keys: keys3(7, &|b| hex::encode(b), ids),
        },
        Case {
            name: "vbyte",
            config: Some(
                json!({"codec": "version-byte", "versions": {"1": "vb1", "2": "vb2", "9": "vb9"}}),
            ),
            binary: true,
            names_key: true,
            keys: keys3(8, &|b| std64(b), ["vb1", "vb2", "vb9"]),
        },
        Case {
            name: "sodium",
            config: Some(json!({"codec": "sodium-prefix"})),
            binary: false,
            names_key: true,
            keys: keys3(9, &|b| std64(b), ["v1", "v2", "v9"]),
        },
        Case {
            name: "jsonenv",
            config: Some(json!({"codec": "json-envelope"})),
            binary: false,
            names_key: true,
            keys: keys3(10, &|b| std64(b), ["kek-v1", "kek-v2", "kek-v9"]),
        },
    ]
}

/// A case made concrete: its table, codec, rings and the key ids.
struct Col {
    case: Case,
    table: Table,
    codec: Box<dyn Codec>,
    /// Ring with every key (old, new, foreign), primary = the one named.
    ring_of: Box<dyn Fn(usize) -> Keyring + Send + Sync>,
    ids: [String; 3],
}

fn native_keys(t: &TestDb, name: &str) -> [Key; 3] {
    [
        t.key(&format!("{name}-old")),
        t.key(&format!("{name}-new")),
        t.key(&format!("{name}-gone")),
    ]
}

fn make(t: &TestDb, case: Case, native: &[Key; 3]) -> Col {
    let table_name = t.table_name(case.name);
    let table = Table::new(
        &table_name,
        &[("id", PkKind::Int)],
        &[(
            "v",
            if case.binary {
                ColKind::Binary
            } else {
                ColKind::Text
            },
            false,
        )],
    );
    match &case.config {
        None => {
            let encoding = if case.binary {
                keyturn_format::Encoding::Binary
            } else {
                keyturn_format::Encoding::Text
            };
            let ids = [0, 1, 2].map(|i| native[i].id.clone());
            let native = native.clone();
            Col {
                case,
                table,
                codec: Box::new(keyturn_format::NativeCodec { encoding }),
                ring_of: Box::new(move |p| {
                    ring(&[&native[0], &native[1], &native[2]], &native[p].id)
                }),
                ids,
            }
        }
        Some(cfg) => {
            let config: CodecConfig = serde_json::from_value(cfg.clone()).expect("codec config");
            let codec = keyturn_codecs::build(&config).expect("codec");
            let mut ids = [String::new(), String::new(), String::new()];
            for (i, (id, text)) in case.keys.iter().enumerate() {
                let (kid, _) = keyturn_codecs::parse_key(&config, id, text).expect("key");
                ids[i] = kid.to_string();
            }
            let keys: Vec<(String, String)> = case.keys.to_vec();
            let ids2 = ids.clone();
            Col {
                case,
                table,
                codec,
                ring_of: Box::new(move |p| {
                    let pairs: Vec<(&str, &str)> =
                        keys.iter().map(|(i, k)| (i.as_str(), k.as_str())).collect();
                    keyturn_codecs::load_ring(&config, &pairs, Some(&ids2[p]), &[]).expect("ring")
                }),
                ids,
            }
        }
    }
}

/// The config for every codec table: the `[keys]` ring holds the native
/// old and new keys; each codec has a `[keyrings.NAME]` file with its old and
/// new keys (never the foreign one).
fn config(t: &TestDb, cols: &[Col], native: &[Key; 3]) -> Cfg {
    let mut cfg = Cfg::new(&[], &[&native[0], &native[1]], &native[1].id);
    let mut extra = String::new();
    for c in cols {
        let column = match &c.case.config {
            None => "{ name = \"v\" }".to_owned(),
            Some(v) => {
                let obj = v.as_object().expect("object");
                let codec = obj["codec"].as_str().expect("codec");
                let opts: Vec<String> = obj
                    .iter()
                    .filter(|(k, _)| *k != "codec")
                    .map(|(k, v)| format!("{k} = {}", toml_value(v)))
                    .collect();
                let keys_file = t.dir().join(format!("{}.keys", c.case.name));
                let lines: Vec<String> = c.case.keys[..2]
                    .iter()
                    .map(|(id, text)| {
                        if id.is_empty() {
                            text.clone()
                        } else {
                            format!("{id}={text}")
                        }
                    })
                    .collect();
                std::fs::write(&keys_file, lines.join("\n") + "\n").expect("keys file");
                extra.push_str(&format!(
                    "[keyrings.{}]\nsources = [{}]\nprimary = {}\n\n",
                    c.case.name,
                    toml_str(&format!("file:{}", keys_file.display())),
                    toml_str(&c.ids[1])
                ));
                format!(
                    "{{ name = \"v\", codec = {}, keyring = {}{} }}",
                    toml_str(codec),
                    toml_str(c.case.name),
                    if opts.is_empty() {
                        String::new()
                    } else {
                        format!(", options = {{ {} }}", opts.join(", "))
                    }
                )
            }
        };
        extra.push_str(&format!(
            "[[target]]\ntable = {}\nprimary_key = \"id\"\ncolumns = [{column}]\n\n",
            toml_str(&c.table.name)
        ));
    }
    cfg.extra_toml = extra;
    cfg
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => toml_str(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{} = {}", toml_str(k), toml_value(v)))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
        other => panic!("no TOML for {other}"),
    }
}

/// An odd value: its bytes, and whether it goes in through raw SQL (wrong
/// storage class, non-UTF-8 text) rather than a bound parameter.
enum Odd {
    Bound(Vec<u8>),
    Sql(String),
}

fn odd_values(t: &TestDb, c: &Col, sample: &[u8]) -> Vec<(&'static str, Odd)> {
    let mut out: Vec<(&'static str, Odd)> = Vec::new();
    out.push(("empty", Odd::Bound(Vec::new())));
    if c.case.binary {
        let mut wrong = sample.to_vec();
        wrong[0] = wrong[0].wrapping_add(0x41);
        out.push(("wrong prefix", Odd::Bound(wrong)));
        out.push(("truncated", Odd::Bound(sample[..10].to_vec())));
        out.push(("plaintext", Odd::Bound(b"SSN 078-05-1120".to_vec())));
        out.push((
            "random",
            Odd::Bound((0..40u8).map(|i| i.wrapping_mul(37) | 0x40).collect()),
        ));
        if t.kind == Kind::Sqlite {
            out.push((
                "text in a BLOB column",
                Odd::Sql("'SSN 078-05-1121'".into()),
            ));
        }
    } else {
        let mut wrong = b"#".to_vec();
        wrong.extend_from_slice(sample);
        out.push(("wrong prefix", Odd::Bound(wrong)));
        out.push(("truncated", Odd::Bound(sample[..12].to_vec())));
        out.push(("plaintext a:b", Odd::Bound(b"user:admin".to_vec())));
        out.push(("plaintext", Odd::Bound(b"SSN 078-05-1120".to_vec())));
        out.push((
            "JSON, not an envelope",
            Odd::Bound(br#"{"key_id":"kek-v1","note":"SSN 078-05-1122"}"#.to_vec()),
        ));
        if t.kind == Kind::Sqlite {
            out.push(("BLOB in a TEXT column", Odd::Sql("X'c0ffee00ff'".into())));
            out.push((
                "non-UTF-8 text",
                Odd::Sql("CAST(X'535341ff20303738' AS TEXT)".into()),
            ));
        }
    }
    out
}

fn plaintext(id: i64) -> Vec<u8> {
    format!("secret #{id} Zoë ☎").into_bytes()
}

fn id_pk(id: i64) -> Vec<PkValue> {
    vec![PkValue::Int(id)]
}

/// Every row's value as hex, with its storage class where the database has
/// one: what "byte for byte unchanged" is checked against.
async fn raw(t: &TestDb, tb: &Table) -> BTreeMap<i64, String> {
    let expr = match (t.kind, tb.cols[0].kind) {
        (Kind::Sqlite, _) => "COALESCE(typeof(v) || ':' || hex(v), 'NULL')",
        (Kind::Postgres, ColKind::Text) => "COALESCE(encode(convert_to(v, 'UTF8'), 'hex'), 'NULL')",
        (Kind::Postgres, ColKind::Binary) => "COALESCE(encode(v, 'hex'), 'NULL')",
        (Kind::MariaDb, _) => "COALESCE(HEX(v), 'NULL')",
    };
    let id = match t.kind {
        Kind::MariaDb => "CAST(id AS CHAR)",
        _ => "CAST(id AS TEXT)",
    };
    t.strings(&format!("SELECT {id}, {expr} FROM {}", tb.name))
        .await
        .into_iter()
        .map(|r| (r[0].parse().expect("id"), r[1].clone()))
        .collect()
}

fn column<'a>(j: &'a Value, table: &str) -> &'a Value {
    j["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .find(|c| c["table"] == table)
        .unwrap_or_else(|| panic!("no column of {table} in {j:#}"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn by_key(c: &Value) -> BTreeMap<String, u64> {
    c["by_key"]
        .as_array()
        .expect("by_key")
        .iter()
        .map(|k| {
            (
                k["key_id"].as_str().expect("key_id").to_owned(),
                n(&k["rows"]),
            )
        })
        .collect()
}

async fn odd_rows_every_codec(t: TestDb) {
    let native = native_keys(&t, "nat");
    let cols: Vec<Col> = cases(&t)
        .into_iter()
        .map(|c| make(&t, c, &native))
        .collect();

    // Seed: good, new, foreign, NULL, then the odd values.
    let mut odd_ids: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut odd_texts: Vec<Vec<u8>> = Vec::new();
    for c in &cols {
        t.create_table(&c.table, &[]).await;
        let mut data = Data::new();
        let rings = [(c.ring_of)(0), (c.ring_of)(1), (c.ring_of)(2)];
        for id in OLD.chain(NEW).chain(FOREIGN) {
            let which = if OLD.contains(&id) {
                0
            } else if NEW.contains(&id) {
                1
            } else {
                2
            };
            let v = c
                .codec
                .encrypt(&rings[which], &plaintext(id), &[])
                .expect("encrypt");
            if which == 2 {
                odd_texts.push(v.clone());
            }
            data.insert(id_pk(id), vec![Some(v)]);
        }
        for id in NULLS {
            data.insert(id_pk(id), vec![None]);
        }
        let sample = data[&id_pk(1)][0].clone().expect("sample");
        let mut sql_odd = Vec::new();
        let odd_set = odd_ids.entry(c.table.name.clone()).or_default();
        odd_set.extend(FOREIGN);
        for (id, (_, odd)) in (ODD_FROM..).zip(odd_values(&t, c, &sample)) {
            match odd {
                Odd::Bound(v) => {
                    odd_texts.push(v.clone());
                    data.insert(id_pk(id), vec![Some(v)]);
                }
                Odd::Sql(expr) => sql_odd.push((id, expr)),
            }
            odd_set.insert(id);
        }
        t.insert(&c.table, &data).await;
        for (id, expr) in sql_odd {
            t.exec(&format!(
                "INSERT INTO {} (id, v) VALUES ({id}, {expr})",
                c.table.name
            ))
            .await;
        }
    }
    let cfg = config(&t, &cols, &native);
    let mut outputs: Vec<String> = Vec::new();
    let before: Vec<BTreeMap<i64, String>> = {
        let mut v = Vec::new();
        for c in &cols {
            v.push(raw(&t, &c.table).await);
        }
        v
    };

    // status before: the truth, per codec.
    let st = t.keyturn(&cfg, &["--json", "status"]).await.expect(0);
    outputs.push(st.stdout.clone() + &st.stderr);
    let st = st.json();
    for c in &cols {
        let j = column(&st, &c.table.name);
        let odd = odd_ids[&c.table.name].len() as u64 - FOREIGN.count() as u64;
        let what = format!("{} before rotation: {j:#}", c.case.name);
        assert_eq!(n(&j["nulls"]), NULLS.count() as u64, "{what}");
        assert_eq!(n(&j["unrecognized"]), odd, "{what}");
        assert_eq!(
            n(&j["total"]),
            before[cols_index(&cols, c)].len() as u64,
            "{what}"
        );
        if c.case.names_key {
            let want: BTreeMap<String, u64> = [
                (c.ids[0].clone(), OLD.count() as u64),
                (c.ids[1].clone(), NEW.count() as u64),
                (c.ids[2].clone(), FOREIGN.count() as u64),
            ]
            .into();
            assert_eq!(by_key(j), want, "{what}");
            assert_eq!(n(&j["keyless"]), 0, "{what}");
            assert_eq!(n(&j["under_current"]), NEW.count() as u64, "{what}");
        } else {
            assert_eq!(
                n(&j["keyless"]),
                (OLD.count() + NEW.count() + FOREIGN.count()) as u64,
                "{what}"
            );
        }
    }
    // --deep decides the keyless ones by decryption.
    let deep = t
        .keyturn(&cfg, &["--json", "status", "--deep"])
        .await
        .expect(0);
    outputs.push(deep.stdout.clone() + &deep.stderr);
    let deep = deep.json();
    for c in cols.iter().filter(|c| !c.case.names_key) {
        let j = column(&deep, &c.table.name);
        let what = format!("{} --deep: {j:#}", c.case.name);
        assert_eq!(n(&j["under_current"]), NEW.count() as u64, "{what}");
        assert_eq!(n(&j["needs_rotation"]), OLD.count() as u64, "{what}");
        // Decryption tells the foreign-key values from the odd ones; a
        // damaged value of the format (a truncated token) may count as
        // undecryptable rather than unrecognized: both are named bad rows.
        let odd = odd_ids[&c.table.name].len() as u64;
        assert!(n(&j["undecryptable"]) >= FOREIGN.count() as u64, "{what}");
        assert_eq!(
            n(&j["undecryptable"]) + n(&j["unrecognized"]),
            odd,
            "{what}"
        );
        assert_eq!(n(&j["keyless"]), 0, "{what}");
    }

    // rotate: refused before the first write, naming the unknown ids.
    let out = t.keyturn(&cfg, &["--json", "rotate"]).await.expect(5);
    outputs.push(out.stdout.clone() + &out.stderr);
    let err = out.json()["error"].as_str().unwrap_or_default().to_owned();
    for c in cols.iter().filter(|c| c.case.names_key) {
        assert!(
            err.contains(&format!("\"{}\"", c.ids[2])),
            "{}: {out}",
            c.case.name
        );
    }
    assert!(err.contains("--skip-unknown-keys"), "{out}");
    for (i, c) in cols.iter().enumerate() {
        assert_eq!(
            raw(&t, &c.table).await,
            before[i],
            "{}: the preflight wrote",
            c.case.name
        );
    }

    // rotate --skip-unknown-keys: every good value rotated, exit 3.
    let out = t
        .keyturn(&cfg, &["--json", "rotate", "--skip-unknown-keys"])
        .await
        .expect(3);
    outputs.push(out.stdout.clone() + &out.stderr);
    let rotated = out.json();
    let mut named: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for b in rotated["bad_rows"].as_array().expect("bad_rows") {
        named
            .entry(b["table"].as_str().expect("table").to_owned())
            .or_default()
            .push(b["pk"].as_str().expect("pk").parse().expect("pk"));
    }
    for (i, c) in cols.iter().enumerate() {
        let after = raw(&t, &c.table).await;
        let odd = &odd_ids[&c.table.name];
        for id in odd.iter().chain(NULLS.clone().collect::<Vec<_>>().iter()) {
            assert_eq!(
                after[id], before[i][id],
                "{}: odd row {id} changed",
                c.case.name
            );
        }
        let mut got = named.remove(&c.table.name).unwrap_or_default();
        got.sort();
        assert_eq!(
            got,
            odd.iter().copied().collect::<Vec<_>>(),
            "{}: rows named by rotate\n{out}",
            c.case.name
        );
        // Good values: under the new key, the same plaintext, same format.
        let only_new = (c.ring_of)(1);
        for id in OLD.chain(NEW) {
            let v = before_value(&after, id, t.kind).expect("value");
            let v = v.as_slice();
            let opened = c
                .codec
                .decrypt(&only_new, v, &[])
                .unwrap_or_else(|e| panic!("{} row {id}: {e}", c.case.name));
            assert_eq!(opened.key_id.as_str(), c.ids[1], "{} row {id}", c.case.name);
            assert_eq!(
                &opened.plaintext[..],
                &plaintext(id)[..],
                "{} row {id}",
                c.case.name
            );
            if OLD.contains(&id) {
                assert_ne!(Some(v), before_value(&before[i], id, t.kind).as_deref());
            }
        }
    }
    assert!(named.is_empty(), "rows of other tables named: {named:?}");

    // bad-rows list: every odd row exactly once.
    let listed = t
        .keyturn(&cfg, &["--json", "bad-rows", "list"])
        .await
        .expect(0);
    outputs.push(listed.stdout.clone() + &listed.stderr);
    let listed = listed.json();
    let mut records: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in listed["bad_rows"].as_array().expect("bad_rows") {
        assert_eq!(r["column"], "v", "{r}");
        assert!(!r["reason"].as_str().unwrap_or_default().is_empty(), "{r}");
        records
            .entry(r["table"].as_str().expect("table").to_owned())
            .or_default()
            .push(r["pk"].as_str().expect("pk").parse().expect("pk"));
    }
    for (table, ids) in &mut records {
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            ids.len(),
            "{table}: a row named twice: {ids:?}"
        );
    }
    let want: BTreeMap<String, Vec<i64>> = odd_ids
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().copied().collect()))
        .collect();
    let mut got = records.clone();
    for v in got.values_mut() {
        v.sort();
    }
    assert_eq!(got, want, "bad-rows list");

    // status after: the truth again.
    let st = t.keyturn(&cfg, &["--json", "status"]).await.expect(0);
    outputs.push(st.stdout.clone() + &st.stderr);
    let st = st.json();
    for c in &cols {
        let j = column(&st, &c.table.name);
        let odd = odd_ids[&c.table.name].len() as u64 - FOREIGN.count() as u64;
        let what = format!("{} after rotation: {j:#}", c.case.name);
        assert_eq!(n(&j["unrecognized"]), odd, "{what}");
        if c.case.names_key {
            let want: BTreeMap<String, u64> = [
                (c.ids[1].clone(), (OLD.count() + NEW.count()) as u64),
                (c.ids[2].clone(), FOREIGN.count() as u64),
            ]
            .into();
            assert_eq!(by_key(j), want, "{what}");
            assert_eq!(
                n(&j["under_current"]),
                (OLD.count() + NEW.count()) as u64,
                "{what}"
            );
        }
    }

    // verify: the unacknowledged bad rows fail it (4); --deep names exactly
    // them; once acknowledged, both pass.
    let v = t.keyturn(&cfg, &["verify"]).await.expect(4);
    outputs.push(v.stdout.clone() + &v.stderr);
    let v = t
        .keyturn(&cfg, &["--json", "verify", "--deep"])
        .await
        .expect(4);
    outputs.push(v.stdout.clone() + &v.stderr);
    assert_eq!(failing(&v.json(), "first_failures"), want, "{v}");
    let ack = t
        .keyturn(
            &cfg,
            &[
                "--json",
                "bad-rows",
                "ack",
                "--all",
                "--reason",
                "legacy rows, kept",
            ],
        )
        .await
        .expect(0);
    outputs.push(ack.stdout.clone() + &ack.stderr);
    let v = t
        .keyturn(&cfg, &["--json", "verify", "--deep"])
        .await
        .expect(0);
    outputs.push(v.stdout.clone() + &v.stderr);
    let vj = v.json();
    assert_eq!(failing(&vj, "acknowledged"), want, "{v}");
    assert!(failing(&vj, "first_failures").is_empty(), "{v}");
    let v = t.keyturn(&cfg, &["verify"]).await.expect(0);
    outputs.push(v.stdout.clone() + &v.stderr);

    // No odd value in any output, audit event or report.
    for args in [
        &["--json", "report"][..],
        &["report"],
        &["audit", "export"],
        &["status"],
        &["bad-rows", "list"],
    ] {
        let out = t.keyturn(&cfg, args).await.expect(0);
        outputs.push(out.stdout.clone() + &out.stderr);
    }
    // due: the columns whose values name no key were rotated to their
    // primary by a completed run, so they are in time; the others are
    // overdue only for the key the ring lacks (its age is unknown).
    let due = t.keyturn(&cfg, &["--json", "due"]).await.expect(11);
    outputs.push(due.stdout.clone() + &due.stderr);
    let due = due.json();
    for c in &cols {
        let j = due["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .find(|j| j["table"] == c.table.name.as_str())
            .unwrap_or_else(|| panic!("{}: no due column", c.case.name));
        let overdue: Vec<&str> = j["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter(|k| k["status"] == "overdue")
            .map(|k| k["key_id"].as_str().expect("key_id"))
            .collect();
        if c.case.names_key {
            assert_eq!(overdue, vec![c.ids[2].as_str()], "{}: {j:#}", c.case.name);
        } else {
            assert_eq!(j["status"], "ok", "{}: {j:#}", c.case.name);
        }
    }
    let all = outputs.join("\n");
    for odd in &odd_texts {
        for fragment in fragments(odd) {
            assert!(
                !all.contains(&fragment),
                "an odd value ({fragment:?}) appears in the output"
            );
        }
    }
    for marker in ["078-05", "user:admin", "c0ffee", "C0FFEE"] {
        assert!(!all.contains(marker), "{marker:?} appears in the output");
    }
    t.assert_no_secrets("the outputs", &all);
}

fn cols_index(cols: &[Col], c: &Col) -> usize {
    cols.iter()
        .position(|x| std::ptr::eq(x, c))
        .expect("column")
}

/// The value stored before the rotation, where it can be compared as bytes.
fn before_value(before: &BTreeMap<i64, String>, id: i64, kind: Kind) -> Option<Vec<u8>> {
    let hex = before.get(&id)?;
    let hex = match kind {
        Kind::Sqlite => hex.split_once(':')?.1,
        _ => hex.as_str(),
    };
    hex::decode(hex.to_ascii_lowercase()).ok()
}

/// Distinctive pieces of an odd value: 16-character windows of its text
/// (stepping by 8), or the whole text when shorter; nothing for values that
/// are not text or are too short to be distinctive.
fn fragments(v: &[u8]) -> Vec<String> {
    let Ok(s) = std::str::from_utf8(v) else {
        return Vec::new();
    };
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 8 {
        return Vec::new();
    }
    if chars.len() <= 16 {
        return vec![s.to_owned()];
    }
    (0..=chars.len() - 16)
        .step_by(8)
        .map(|i| chars[i..i + 16].iter().collect())
        .filter(|f: &String| !f.starts_with("{\"key_id\":") && !f.starts_with("vault:v"))
        .collect()
}

/// `(table, pks)` listed under `key` ("first_failures", "acknowledged") of
/// a `verify --deep --json` document.
fn failing(v: &Value, key: &str) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for c in v["columns"].as_array().expect("columns") {
        for f in c[key].as_array().unwrap_or(&Vec::new()) {
            out.entry(c["table"].as_str().expect("table").to_owned())
                .or_default()
                .push(f["pk"].as_str().expect("pk").parse().expect("pk"));
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}
