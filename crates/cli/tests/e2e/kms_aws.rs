//! AWS KMS ciphertext columns (`codec = "aws-kms"`, `kms = "NAME"`) end to
//! end: raw `Encrypt` output in a binary column and its base64 in a text
//! column, rotated by KMS `ReEncrypt` to a new key through the real
//! `keyturn` binary against SQLite, PostgreSQL and MariaDB, with moto as
//! the KMS (`common::kms`). Values are seeded and checked with the AWS SDK
//! in the test (`Encrypt`, `Decrypt`), independent of keyturn.
//!
//! Run one backend: `cargo test -p keyturn --test e2e kms_aws::postgres::`.

use crate::common::*;
use aws_sdk_kms::primitives::Blob;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyturn_kms::{AwsCredentials, AwsKmsConfig, AwsKmsKek};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

scenarios!(
    aws_kms_rotate_binary_and_base64,
    aws_kms_server_errors_stop_and_resume
);

/// The column value as stored: a binary blob or its base64.
fn stored(text: bool, blob: &[u8]) -> Vec<u8> {
    if text {
        STANDARD.encode(blob).into_bytes()
    } else {
        blob.to_vec()
    }
}

fn blob_of(text: bool, v: &[u8]) -> Vec<u8> {
    if text {
        STANDARD.decode(v).expect("base64")
    } else {
        v.to_vec()
    }
}

/// The test's own KMS client and two keys: old and new (the new one also
/// under an alias).
struct Kms {
    url: String,
    admin: AwsKmsKek,
    old: String,
    new: String,
    alias: String,
}

async fn kms(url: &str) -> Kms {
    let mut c = AwsKmsConfig::new("unused");
    c.endpoint_url = Some(url.to_owned());
    c.region = Some("us-east-1".into());
    c.credentials = AwsCredentials::Static {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        session_token: None,
    };
    let admin = AwsKmsKek::connect(c).await.expect("KMS client");
    let mut arns = Vec::new();
    for what in ["old", "new"] {
        let out = admin
            .client()
            .create_key()
            .description(format!("keyturn e2e {what}"))
            .send()
            .await
            .expect("CreateKey");
        arns.push(out.key_metadata().unwrap().arn().unwrap().to_owned());
    }
    let alias = format!("alias/keyturn-e2e-{}", kms::random_hex(6));
    admin
        .client()
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&arns[1])
        .send()
        .await
        .expect("CreateAlias");
    Kms {
        url: url.to_owned(),
        admin,
        old: arns[0].clone(),
        new: arns[1].clone(),
        alias,
    }
}

impl Kms {
    async fn encrypt(&self, key: &str, plain: &[u8], ctx: &HashMap<String, String>) -> Vec<u8> {
        self.admin
            .client()
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(plain.to_vec()))
            .set_encryption_context((!ctx.is_empty()).then(|| ctx.clone()))
            .send()
            .await
            .expect("Encrypt")
            .ciphertext_blob()
            .unwrap()
            .as_ref()
            .to_vec()
    }

    /// (key ARN, plaintext) of a blob, or the error code.
    async fn decrypt(
        &self,
        blob: &[u8],
        ctx: &HashMap<String, String>,
    ) -> Result<(String, Vec<u8>), String> {
        use aws_sdk_kms::error::ProvideErrorMetadata as _;
        let out = self
            .admin
            .client()
            .decrypt()
            .ciphertext_blob(Blob::new(blob.to_vec()))
            .set_encryption_context((!ctx.is_empty()).then(|| ctx.clone()))
            .send()
            .await
            .map_err(|e| e.code().unwrap_or("error").to_owned())?;
        Ok((
            out.key_id().unwrap_or_default().to_owned(),
            out.plaintext().unwrap().as_ref().to_vec(),
        ))
    }

    async fn set_enabled(&self, key: &str, on: bool) {
        // By key id: moto's Enable/DisableKey do not take an ARN.
        let key = key.rsplit('/').next().unwrap_or(key);
        let c = self.admin.client();
        if on {
            c.enable_key().key_id(key).send().await.expect("EnableKey");
        } else {
            c.disable_key()
                .key_id(key)
                .send()
                .await
                .expect("DisableKey");
        }
    }
}

/// `id`, the encrypted `secret` (binary or text) and a `tenant` column
/// the encryption context is read from.
fn table(t: &TestDb, what: &str, text: bool) -> Table {
    Table::new(
        &t.table_name(what),
        &[("id", PkKind::Int)],
        &[
            (
                "secret",
                if text { ColKind::Text } else { ColKind::Binary },
                false,
            ),
            ("tenant", ColKind::Text, false),
        ],
    )
}

/// One `[[target]]` for an aws-kms column (`extra` goes inside the braces).
fn target(tb: &Table, key: &str, extra: &str) -> String {
    format!(
        "[[target]]\ntable = {}\nprimary_key = \"id\"\ncolumns = [{{ name = \"secret\", codec = \"aws-kms\", kms = \"aws\", key = {}{extra} }}]\n\n",
        toml_str(&tb.name),
        toml_str(key)
    )
}

/// A config with `[kms.aws]` at `endpoint` and the given targets; AWS
/// credentials from the environment, as an operator would set them.
fn cfg(endpoint: &str, targets: &str, batch_size: usize) -> Cfg {
    let mut c = Cfg::new(&[], &[], "unused");
    c.batch_size = batch_size;
    // Empty shared config and credentials files: nothing from this
    // machine's AWS setup.
    let nowhere = std::env::temp_dir().join("keyturn-e2e-empty-aws-config");
    std::fs::write(&nowhere, "").expect("empty AWS config file");
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        c.env.push((k.into(), v.into()));
    }
    for k in ["AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"] {
        c.env.push((k.into(), nowhere.display().to_string()));
    }
    c.extra_toml = format!(
        "[kms.aws]\nkind = \"aws-kms\"\nendpoint_url = {}\nregion = \"us-east-1\"\nmax_in_flight = 4\n\n{targets}",
        toml_str(endpoint)
    );
    c
}

fn col<'a>(j: &'a Value, table: &str) -> &'a Value {
    j["columns"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["table"] == table))
        .unwrap_or_else(|| panic!("no {table} in {j:#}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned number: {v}"))
}

fn id_of(pk: &Pk) -> i64 {
    match pk[0] {
        keyturn_db::PkValue::Int(i) => i,
        _ => unreachable!("integer keys only"),
    }
}

/// What a seeded row is.
#[derive(Clone, Debug, PartialEq)]
enum Seed {
    Null,
    /// Not a KMS blob: plaintext in the column.
    Garbage,
    /// Encrypted with another encryption context than the column gives.
    OtherContext,
    /// A blob with a flipped byte.
    Damaged,
    /// Under the new key already.
    New,
    /// Under the old key: to rotate.
    Old,
}

fn seed_of(id: i64) -> Seed {
    match id {
        _ if id % 10 == 0 => Seed::Null,
        7 | 23 => Seed::Garbage,
        13 => Seed::OtherContext,
        31 => Seed::Damaged,
        3 | 17 | 44 => Seed::New,
        _ => Seed::Old,
    }
}

/// The rows of a seeded table: the stored values, the plaintexts of the
/// good ones and the encryption context of each row.
struct Seeded {
    data: Data,
    plain: BTreeMap<i64, Vec<u8>>,
    contexts: BTreeMap<i64, HashMap<String, String>>,
}

/// Seeds `rows` rows of `tb`. With `with_context`, the column's context is
/// `{tenant: <tenant column>, app: "billing"}`; without, none.
async fn seed(
    t: &TestDb,
    k: &Kms,
    tb: &Table,
    text: bool,
    with_context: bool,
    rows: i64,
) -> Seeded {
    let mut s = Seeded {
        data: Data::new(),
        plain: BTreeMap::new(),
        contexts: BTreeMap::new(),
    };
    let mut rng = t.rng();
    for id in 1..=rows {
        let tenant = format!("t-{}", id % 4);
        let ctx: HashMap<String, String> = if with_context {
            [
                ("tenant".to_string(), tenant.clone()),
                ("app".to_string(), "billing".to_string()),
            ]
            .into()
        } else {
            HashMap::new()
        };
        let plain = format!("card-{id}-{:016x}", rng.u64(..)).into_bytes();
        let kind = if rows > 100 { Seed::Old } else { seed_of(id) };
        let value = match kind {
            Seed::Null => None,
            Seed::Garbage => {
                let p = format!("plaintext row {id} {:08x}", rng.u32(..));
                t.add_secret(&p);
                Some(p.into_bytes())
            }
            Seed::OtherContext => {
                let other: HashMap<String, String> =
                    [("tenant".to_string(), "someone-else".to_string())].into();
                Some(stored(text, &k.encrypt(&k.old, &plain, &other).await))
            }
            Seed::Damaged => {
                let mut b = k.encrypt(&k.old, &plain, &ctx).await;
                let last = b.len() - 1;
                b[last] ^= 0x20;
                Some(stored(text, &b))
            }
            Seed::New => Some(stored(text, &k.encrypt(&k.new, &plain, &ctx).await)),
            Seed::Old => Some(stored(text, &k.encrypt(&k.old, &plain, &ctx).await)),
        };
        if matches!(kind, Seed::New | Seed::Old) {
            s.plain.insert(id, plain.clone());
        }
        t.add_secret(&String::from_utf8_lossy(&plain));
        if let Some(v) = &value {
            t.add_secret(&STANDARD.encode(blob_of(text && kind != Seed::Garbage, v)));
        }
        s.data
            .insert(int_pk(id), vec![value, Some(tenant.into_bytes())]);
        s.contexts.insert(id, ctx);
    }
    t.insert(tb, &s.data).await;
    s
}

/// Every good row decrypts under `key` to its plaintext; every other row
/// is byte-identical to `before`.
async fn assert_good_under(
    k: &Kms,
    tb: &Table,
    text: bool,
    seeded: &Seeded,
    after: &Data,
    key: &str,
) {
    assert_eq!(after.len(), seeded.data.len(), "{}: row count", tb.name);
    let mut wrong = Vec::new();
    for (pk, row) in after {
        let id = id_of(pk);
        let Some(plain) = seeded.plain.get(&id) else {
            if *row != seeded.data[pk] {
                wrong.push(format!("{id}: an odd or NULL row changed"));
            }
            continue;
        };
        let Some(v) = &row[0] else {
            wrong.push(format!("{id}: NULL"));
            continue;
        };
        match k.decrypt(&blob_of(text, v), &seeded.contexts[&id]).await {
            Ok((arn, p)) if arn == key && p == *plain => {}
            Ok((arn, p)) => wrong.push(format!(
                "{id}: under {arn}, plaintext {}",
                if p == *plain { "same" } else { "differs" }
            )),
            Err(code) => wrong.push(format!("{id}: Decrypt failed: {code}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{}: {} rows wrong:\n  {}",
        tb.name,
        wrong.len(),
        wrong.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// A binary column (context from the tenant column and a literal) and a
/// base64 text column (no context), with NULLs, plaintext, a blob of
/// another context, a damaged blob and values under the new key already:
/// `status` says KMS decides the keys, `status --deep` asks it, `rotate`
/// re-encrypts the good values inside KMS and names exactly the odd rows
/// (exit 3), `verify --deep` agrees, and a second `rotate` writes nothing.
async fn aws_kms_rotate_binary_and_base64(t: TestDb) {
    let Some(url) = kms::moto_url("kms_aws rotate") else {
        return;
    };
    let k = kms(&url).await;
    let bin = table(&t, "awsbin", false);
    let txt = table(&t, "awstxt", true);
    t.create_table(&bin, &[]).await;
    t.create_table(&txt, &[]).await;
    let sb = seed(&t, &k, &bin, false, true, 60).await;
    let st = seed(&t, &k, &txt, true, false, 60).await;
    let targets = target(
        &bin,
        &k.alias,
        ", encryption_context = { tenant = \"tenant\", app = \"=billing\" }",
    ) + &target(&txt, &k.alias, "");
    let c = cfg(&k.url, &targets, 16);
    let odd: Vec<i64> = vec![7, 13, 23, 31];
    let values = (1..=60).filter(|i| seed_of(*i) != Seed::Null).count() as u64;

    // status: the census cannot read a key; KMS decides.
    let out = t.keyturn(&c, &["--json", "status"]).await.expect(0);
    let j = out.json();
    for tb in [&bin, &txt] {
        let s = col(&j, &tb.name);
        assert_eq!(s["codec"], "aws-kms", "{j:#}");
        assert_eq!(s["current_key_id"], k.new.as_str(), "{j:#}");
        assert_eq!(u(&s["nulls"]), 6, "{j:#}");
        assert_eq!(u(&s["unrecognized"]), 2, "{j:#}");
        assert_eq!(u(&s["keyless"]), values - 2, "{j:#}");
        let note = s["note"].as_str().unwrap_or_default();
        assert!(note.contains("key decided by KMS"), "{note}");
        assert!(note.contains("status --deep"), "{note}");
    }
    let text = t.keyturn(&c, &["status"]).await.expect(0);
    assert!(text.stdout.contains("key decided by KMS"), "{text}");

    // status --deep: KMS names each value's key.
    let j = t
        .keyturn(&c, &["--json", "status", "--deep"])
        .await
        .expect(0)
        .json();
    for tb in [&bin, &txt] {
        let s = col(&j, &tb.name);
        let by: BTreeMap<String, (u64, String)> = s["by_key"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["key_id"].as_str().unwrap().to_owned(),
                    (u(&r["rows"]), r["state"].as_str().unwrap().to_owned()),
                )
            })
            .collect();
        let (new_rows, old_rows) = (3u64, values - 2 - 2 - 3);
        assert_eq!(
            by.get(&k.new),
            Some(&(new_rows, "current".to_owned())),
            "{j:#}"
        );
        assert_eq!(
            by.get(&k.old),
            Some(&(old_rows, "decrypt-only".to_owned())),
            "{j:#}"
        );
        assert_eq!(by.len(), 2, "{j:#}");
        assert_eq!(u(&s["undecryptable"]), 2, "{j:#}");
        assert_eq!(u(&s["unrecognized"]), 2, "{j:#}");
    }

    // rotate: exit 3, exactly the odd rows named, good rows under the new key.
    let before_bin = t.read(&bin).await;
    let out = t.keyturn(&c, &["--json", "rotate"]).await.expect(3);
    let j = out.json();
    let mut named: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for b in j["bad_rows"].as_array().expect("bad_rows") {
        named
            .entry(b["table"].as_str().unwrap().to_owned())
            .or_default()
            .insert(b["pk"].as_str().unwrap().parse().unwrap());
    }
    for tb in [&bin, &txt] {
        let got: Vec<i64> = named
            .remove(&tb.name)
            .unwrap_or_default()
            .into_iter()
            .collect();
        assert_eq!(got, odd, "{}: rows named by rotate\n{out}", tb.name);
    }
    assert!(named.is_empty(), "{named:?}");
    let after_bin = t.read(&bin).await;
    assert_good_under(&k, &bin, false, &sb, &after_bin, &k.new).await;
    assert_good_under(&k, &txt, true, &st, &t.read(&txt).await, &k.new).await;
    for id in [3, 17, 44] {
        assert_eq!(
            after_bin[&int_pk(id)],
            before_bin[&int_pk(id)],
            "{id}: a value under the new key already was rewritten"
        );
    }

    // verify --deep: KMS agrees; the odd rows fail.
    let out = t.keyturn(&c, &["--json", "verify", "--deep"]).await;
    assert_eq!(out.code, 4, "{out}");
    let j = out.json();
    for tb in [&bin, &txt] {
        let s = col(&j, &tb.name);
        assert_eq!(u(&s["under_current"]), values - 4, "{j:#}");
        assert_eq!(u(&s["failing"]), 4, "{j:#}");
    }

    // A second rotate finds nothing to write.
    let out = t.keyturn(&c, &["--json", "rotate"]).await.expect(3);
    let _ = out.json();
    assert_eq!(t.read(&bin).await, after_bin, "the second rotate wrote");
}

/// A disabled destination key stops `rotate` before it writes; credentials
/// KMS starts refusing mid-run stop it with one error (no bad rows), the
/// rows done stay done, and the next run resumes and finishes.
async fn aws_kms_server_errors_stop_and_resume(t: TestDb) {
    let Some(url) = kms::moto_url("kms_aws server errors") else {
        return;
    };
    let k = kms(&url).await;
    let tb = table(&t, "awsstop", true);
    t.create_table(&tb, &[]).await;
    let rows = 200;
    let seeded = seed(&t, &k, &tb, true, false, rows).await;
    let proxy = Proxy::start(&url);

    // A disabled destination: refused at the start, nothing written.
    k.set_enabled(&k.new, false).await;
    let c = cfg(&proxy.url, &target(&tb, &k.alias, ""), 20);
    let out = t.keyturn(&c, &["rotate"]).await;
    assert!(![0, 3].contains(&out.code), "{out}");
    assert!(out.stderr.contains("disabled"), "{out}");
    assert_eq!(t.read(&tb).await, seeded.data, "a refused run wrote");
    k.set_enabled(&k.new, true).await;

    // Credentials revoked after 50 ReEncrypt calls: the run stops.
    proxy.refuse_after(50);
    let out = t.keyturn(&c, &["--json", "rotate"]).await;
    assert!(![0, 3].contains(&out.code), "{out}");
    assert!(
        out.stderr.contains("rejected the credentials"),
        "the credential error is named\n{out}"
    );
    assert!(proxy.refused() >= 1, "{out}");
    assert!(
        proxy.refused() <= 12,
        "calls went on after the server refused the credentials ({})\n{out}",
        proxy.refused()
    );
    let after = t.read(&tb).await;
    let mut rotated = 0;
    for (pk, row) in &after {
        let id = id_of(pk);
        let (arn, p) = k
            .decrypt(&blob_of(true, row[0].as_deref().unwrap()), &HashMap::new())
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(p, seeded.plain[&id], "{id}");
        rotated += usize::from(arn == k.new);
    }
    assert!(
        rotated > 0 && rotated < rows as usize,
        "{rotated} rows rotated before the stop\n{out}"
    );
    eprintln!("the stopped run's stderr:\n{}", out.stderr);
    let bad = t
        .keyturn(&c, &["--json", "bad-rows", "list"])
        .await
        .expect(0);
    eprintln!("bad-rows list: {}", bad.stdout);
    let j = bad.json();
    let listed = j["bad_rows"]
        .as_array()
        .or_else(|| j.as_array())
        .unwrap_or_else(|| panic!("no bad rows list in {j:#}"));
    assert!(listed.is_empty(), "a server error made bad rows\n{bad}");

    // Credentials valid again: the next run resumes and finishes.
    proxy.accept_all();
    let out = t.keyturn(&c, &["rotate"]).await.expect(0);
    assert!(out.stderr.contains("resuming after primary key"), "{out}");
    assert_good_under(&k, &tb, true, &seeded, &t.read(&tb).await, &k.new).await;
    t.keyturn(&c, &["verify", "--deep"]).await.expect(0);
}

// ---------------------------------------------------------------------------
// A proxy in front of moto that can start refusing the credentials
// ---------------------------------------------------------------------------

/// Forwards HTTP/1.1 requests to moto; after `refuse_after` `ReEncrypt`
/// calls it answers them as AWS does for revoked credentials
/// (`UnrecognizedClientException`).
struct Proxy {
    url: String,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    limit: AtomicUsize,
    limited: AtomicBool,
    seen: AtomicUsize,
    refused: AtomicUsize,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().unwrap());
        let up = upstream.trim_start_matches("http://").to_owned();
        let state = Arc::new(ProxyState::default());
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (st, up) = (st.clone(), up.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &up, &st);
                });
            }
        });
        Proxy { url, state }
    }

    fn refuse_after(&self, n: usize) {
        self.state.seen.store(0, Ordering::SeqCst);
        self.state.limit.store(n, Ordering::SeqCst);
        self.state.limited.store(true, Ordering::SeqCst);
    }

    fn accept_all(&self) {
        self.state.limited.store(false, Ordering::SeqCst);
    }

    fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }
}

/// One HTTP message: head lines and body.
fn read_message(r: &mut impl BufRead) -> std::io::Result<Option<(Vec<String>, Vec<u8>)>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let len = head
        .iter()
        .find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

fn write_message(w: &mut impl Write, head: &[String], body: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::new();
    for h in head {
        let name = h.split(':').next().unwrap_or_default();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("connection") {
            continue;
        }
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

fn serve(conn: TcpStream, upstream: &str, st: &ProxyState) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    while let Some((head, body)) = read_message(&mut r)? {
        let re_encrypt = head.iter().any(|h| {
            h.to_ascii_lowercase().starts_with("x-amz-target:") && h.contains("ReEncrypt")
        });
        if re_encrypt
            && st.limited.load(Ordering::SeqCst)
            && st.seen.fetch_add(1, Ordering::SeqCst) >= st.limit.load(Ordering::SeqCst)
        {
            st.refused.fetch_add(1, Ordering::SeqCst);
            let body = br#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#;
            write_message(
                &mut w,
                &[
                    "HTTP/1.1 400 Bad Request".into(),
                    "Content-Type: application/x-amz-json-1.1".into(),
                    "x-amzn-ErrorType: UnrecognizedClientException".into(),
                ],
                body,
            )?;
            continue;
        }
        // One upstream connection per request: moto may close after each.
        let up = TcpStream::connect(upstream)?;
        let mut head_up = head.clone();
        head_up.push("Connection: close".into());
        write_message(&mut &up, &head_up, &body)?;
        let mut ur = BufReader::new(&up);
        let mut rhead = Vec::new();
        loop {
            let mut line = String::new();
            if ur.read_line(&mut line)? == 0 {
                break;
            }
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            rhead.push(line);
        }
        let len = rhead.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        });
        let mut rbody = Vec::new();
        match len {
            Some(n) => {
                rbody.resize(n, 0);
                ur.read_exact(&mut rbody)?;
            }
            None => {
                ur.read_to_end(&mut rbody)?;
            }
        }
        write_message(&mut w, &rhead, &rbody)?;
    }
    Ok(())
}
