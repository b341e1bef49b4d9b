//! `keyturn-bench transit-rewrap` and `keyturn-bench aws-reencrypt`:
//! rotation inside a KMS (server-side rewrap), keyturn against the server's
//! own limit, in one run, interleaved.
//!
//! transit-rewrap:
//! 1. an OpenBao dev server on loopback (the test harness's: `bao` from
//!    PATH on a free port with a random root token, or `KEYTURN_BAO_ADDR` +
//!    `KEYTURN_BAO_TOKEN`), a transit mount and an aes256-gcm96 key;
//! 2. N values encrypted by the server (`batch_input` of 100 items, 8
//!    requests in flight), stored as `vault:v1:` text in a table (SQLite in
//!    a scratch directory, or `--database-url`); then the key is rotated
//!    (v2);
//! 3. one unmeasured pass of the plain loop (warm-up), then rounds,
//!    rotating which goes first:
//!    (a) the plain loop: the same ciphertexts sent to `transit/rewrap` in
//!    `batch_input` requests of `batch_items` items, `workers ×
//!    max_in_flight` requests in flight (keyturn's most), nothing written:
//!    the server's own limit;
//!    (b) keyturn: the table reset to its `vault:v1:` values, then the
//!    rotation of a `kms = "bao"` column through keyturn-ops (what `keyturn
//!    rotate` runs), in this process; every row checked under v2 after;
//!    (c) the database side alone: keyturn's rotation of a table of as
//!    many keyturn v1 values of the same size under local keys (the same
//!    pipeline, reads and compare-and-swap writes, with in-process AES-GCM
//!    instead of the server).
//! 4. medians, rows/s, the ratio (b)/(a) and the median of the per-round
//!    ratios.
//!
//! aws-reencrypt: the same on moto with AWS KMS's `ReEncrypt` (one value per
//! call, `--in-flight` calls at once) for the plain loop. keyturn's side
//! needs the `aws-kms` codec with `kms = "NAME"`, which keyturn does not
//! have yet: only the server's limit is measured.

use crate::db::{BenchDb, Kind, plaintext};
use crate::{median, say};
use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Parser;
use futures::StreamExt as _;
use keyturn_engine::{NoProgress, Operation, RunOptions};
use keyturn_ops::{Config, RunAudit, Selection, Session};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const TABLE: &str = "keyturn_bench_transit";
const LOCAL_TABLE: &str = "keyturn_bench_local";
/// Items per encrypt request while filling the table.
const FILL_ITEMS: usize = 100;
/// Encrypt requests in flight while filling the table.
const FILL_IN_FLIGHT: usize = 8;

#[derive(Parser, Debug)]
#[command(
    name = "keyturn-bench transit-rewrap",
    about = "keyturn's rotation of a vault-transit column (kms = ...) against a plain transit/rewrap loop, on OpenBao"
)]
struct TransitArgs {
    /// Rows (values) in the table
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    rows: u64,
    /// Alternating repetitions of the plain loop and keyturn's rotation
    #[arg(long, default_value_t = 3, value_name = "K")]
    rounds: usize,
    /// The database [default: SQLite in a scratch directory]; a
    /// postgres:// or mysql:// URL
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// `batch_items` of the [kms] section (and the plain loop's request
    /// size) [default: keyturn's]
    #[arg(long, value_name = "N")]
    batch_items: Option<usize>,
    /// `max_in_flight` of the [kms] section [default: keyturn's]
    #[arg(long, value_name = "N")]
    max_in_flight: Option<usize>,
    /// `rotation.workers` [default: keyturn's for the database]
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// `rotation.batch_size` [default: keyturn's]
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
}

fn kind_of(url: &str) -> Result<Kind> {
    Ok(if url.starts_with("sqlite:") {
        Kind::Sqlite
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Kind::Postgres
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        Kind::MySql
    } else {
        bail!("--database-url: sqlite:, postgres:// or mysql://")
    })
}

/// Checks `v` can be inlined into a SQL string literal: a `vault:vN:` value
/// is ASCII letters, digits and `:+/=`.
fn check_inlinable(v: &str) -> Result<()> {
    ensure!(
        v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'+' | b'/' | b'=')),
        "unexpected character in a transit ciphertext"
    );
    Ok(())
}

/// The transit server and key.
struct Transit {
    http: reqwest::Client,
    addr: String,
    token: String,
    mount: String,
    key: String,
}

#[derive(serde::Deserialize)]
struct BatchAnswer {
    data: BatchData,
}

#[derive(serde::Deserialize)]
struct BatchData {
    batch_results: Vec<BatchResult>,
}

#[derive(serde::Deserialize)]
struct BatchResult {
    #[serde(default)]
    ciphertext: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl Transit {
    /// One `batch_input` request to `<mount>/<op>/<key>`; the ciphertexts,
    /// in order. Any item's error fails the request (the benchmark's values
    /// are all good).
    async fn batch(&self, op: &str, items: Vec<serde_json::Value>) -> Result<Vec<String>> {
        let n = items.len();
        let resp = self
            .http
            .post(format!("{}/v1/{}/{op}/{}", self.addr, self.mount, self.key))
            .header("X-Vault-Token", &self.token)
            .json(&serde_json::json!({ "batch_input": items }))
            .send()
            .await
            .with_context(|| format!("transit {op}"))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("transit {op}"))?;
        ensure!(status.is_success(), "transit {op}: HTTP {status}");
        let a: BatchAnswer =
            serde_json::from_slice(&body).with_context(|| format!("transit {op}: the answer"))?;
        ensure!(
            a.data.batch_results.len() == n,
            "transit {op}: {} results for {n} items",
            a.data.batch_results.len()
        );
        a.data
            .batch_results
            .into_iter()
            .map(|r| match (r.ciphertext, r.error) {
                (_, Some(e)) if !e.is_empty() => bail!("transit {op}: an item failed"),
                (Some(c), _) => Ok(c),
                _ => bail!("transit {op}: an item without ciphertext"),
            })
            .collect()
    }

    /// `n` values (the bench's 60-byte plaintexts) encrypted by the server.
    async fn fill(&self, n: u64) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(n as usize);
        let mut flying = futures::stream::FuturesOrdered::new();
        let mut next = 1u64;
        loop {
            while flying.len() < FILL_IN_FLIGHT && next <= n {
                let to = (next + FILL_ITEMS as u64).min(n + 1);
                let items = (next..to)
                    .map(|id| serde_json::json!({ "plaintext": STANDARD.encode(plaintext(id)) }))
                    .collect();
                flying.push_back(self.batch("encrypt", items));
                next = to;
            }
            match flying.next().await {
                Some(done) => out.extend(done?),
                None => break,
            }
        }
        Ok(out)
    }

    /// The plain loop: every value rewrapped, `items` per request,
    /// `in_flight` requests at once; checks each answer is under `version`.
    /// Returns the wall time.
    async fn rewrap_all(
        &self,
        values: &[String],
        items: usize,
        in_flight: usize,
        version: u64,
    ) -> Result<Duration> {
        let prefix = format!("vault:v{version}:");
        let started = Instant::now();
        let mut flying = futures::stream::FuturesUnordered::new();
        let mut chunks = values.chunks(items);
        let mut done = 0usize;
        loop {
            while flying.len() < in_flight {
                let Some(chunk) = chunks.next() else { break };
                let batch = chunk
                    .iter()
                    .map(|c| serde_json::json!({ "ciphertext": c }))
                    .collect();
                flying.push(self.batch("rewrap", batch));
            }
            match flying.next().await {
                Some(r) => {
                    let r = r?;
                    ensure!(
                        r.iter().all(|c| c.starts_with(&prefix)),
                        "a rewrap answer is not under v{version}"
                    );
                    done += r.len();
                }
                None => break,
            }
        }
        let took = started.elapsed();
        ensure!(done == values.len(), "rewrapped {done} of {}", values.len());
        Ok(took)
    }
}

/// keyturn's side of one round.
#[derive(Clone, Copy, Debug)]
struct KeyturnSample {
    /// Session open (config, database, plan: one key read at the server)
    /// to the run's end.
    wall: f64,
    /// The run's own `seconds` (the rotation, after the census).
    inside: f64,
}

fn transit_config(
    url: &str,
    addr: &str,
    token_file: &Path,
    mount: &str,
    key: &str,
    args: &TransitArgs,
) -> String {
    let mut kms = String::new();
    if let Some(b) = args.batch_items {
        kms.push_str(&format!("batch_items = {b}\n"));
    }
    if let Some(m) = args.max_in_flight {
        kms.push_str(&format!("max_in_flight = {m}\n"));
    }
    let mut rotation = String::new();
    if let Some(w) = args.workers {
        rotation.push_str(&format!("workers = {w}\n"));
    }
    if let Some(b) = args.batch_size {
        rotation.push_str(&format!("batch_size = {b}\n"));
    }
    format!(
        r#"[database]
url = "{url}"

[rotation]
{rotation}
[kms.bao]
kind = "vault-transit"
address = "{addr}"
mount = "{mount}"
token = "file:{}"
{kms}
[[target]]
table = "{TABLE}"
primary_key = "id"
columns = [{{ name = "c", codec = "vault-transit", kms = "bao", key = "{key}" }}]
"#,
        token_file.display()
    )
}

/// The same database and rotation settings, a column of keyturn v1 values
/// under local keys (`keys_file`: k1 and k2, primary k2).
fn local_config(url: &str, keys_file: &Path, args: &TransitArgs) -> String {
    let mut rotation = String::new();
    if let Some(w) = args.workers {
        rotation.push_str(&format!("workers = {w}\n"));
    }
    if let Some(b) = args.batch_size {
        rotation.push_str(&format!("batch_size = {b}\n"));
    }
    format!(
        r#"[database]
url = "{url}"

[keys]
sources = ["file:{}"]
primary = "k2"

[rotation]
{rotation}
[[target]]
table = "{LOCAL_TABLE}"
primary_key = "id"
columns = [{{ name = "c", encoding = "text" }}]
"#,
        keys_file.display()
    )
}

/// The rotation `keyturn rotate` runs, in this process: session, run, close.
async fn keyturn_rotate(cfg_path: &Path, rows: u64) -> Result<KeyturnSample> {
    let started = Instant::now();
    let cfg = Config::load(cfg_path)?;
    let opts = RunOptions {
        batch_size: cfg.rotation.batch_size,
        workers: cfg.rotation.workers_for(&cfg.database.url),
        max_rows_per_sec: cfg.rotation.max_rows_per_sec,
        dry_run: false,
        actor: "keyturn-bench".into(),
        skip_unknown_keys: false,
    };
    let connections = u32::try_from(opts.workers).unwrap_or(1) + 2;
    let mut session = Session::open(cfg, &Selection::default(), connections).await?;
    let run = keyturn_ops::run::run(
        &mut session,
        Operation::Rotate,
        opts,
        &RunAudit::default(),
        Arc::new(NoProgress),
        Arc::new(AtomicBool::new(false)),
    )
    .await;
    session.close().await;
    let run = run?;
    let wall = started.elapsed().as_secs_f64();
    ensure!(
        run.summary.written() == rows && run.summary.failed() == 0,
        "keyturn rotated {} of {rows} rows ({} bad)",
        run.summary.written(),
        run.summary.failed()
    );
    Ok(KeyturnSample {
        wall,
        inside: run.summary.seconds,
    })
}

async fn transit_main(args: TransitArgs) -> Result<()> {
    let started = Instant::now();
    ensure!(
        args.rows > 0 && args.rounds > 0,
        "--rows and --rounds: at least 1"
    );
    let scratch = tempfile::Builder::new()
        .prefix("keyturn-bench-transit-")
        .tempdir()
        .context("creating a scratch directory")?;
    let url = match &args.database_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", scratch.path().join("bench.db").display()),
    };
    let kind = kind_of(&url)?;

    let Some(bao) = keyturn_test_support::kms::bao("keyturn-bench transit-rewrap").await else {
        bail!("no OpenBao: put bao on PATH, or set KEYTURN_BAO_ADDR and KEYTURN_BAO_TOKEN");
    };
    let key = bao.create_key().await;
    let version = bao_version().unwrap_or_else(|| "bao".into());
    say(
        started,
        &format!("{version} at {} (loopback, dev mode)", bao.addr),
    );
    let transit = Transit {
        // As keyturn's transit client: one pooled client, no HTTP/2.
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("an HTTP client")?,
        addr: bao.addr.clone(),
        token: bao.root_token.clone(),
        mount: bao.mount.clone(),
        key: key.clone(),
    };
    let token_file = scratch.path().join("bao-token");
    write_private(&token_file, &bao.root_token)?;

    say(
        started,
        &format!("encrypting {} values in the server (v1)", args.rows),
    );
    let t = Instant::now();
    let values = transit.fill(args.rows).await?;
    say(started, &format!("  {:.1} s", t.elapsed().as_secs_f64()));
    for v in &values {
        check_inlinable(v)?;
    }
    let bdb = BenchDb::connect(kind, &url).await?;
    let server = bdb.server_version().await.unwrap_or_default();
    say(started, &format!("{}: {server}", kind.name()));
    bdb.create_values_table(TABLE, &values).await?;
    bao.rotate_key(&key).await;
    say(started, "transit key rotated: v2 is the latest");

    let keys = crate::Keys::generate()?;
    let ring_k1 = keys.ring("k1")?;
    let keys_file = scratch.path().join("keys.txt");
    write_private(&keys_file, &keys.specs.replace(' ', "\n"))?;
    let local_path = scratch.path().join("local.toml");
    std::fs::write(&local_path, local_config(&url, &keys_file, &args))
        .context("writing the config")?;

    let cfg_path: PathBuf = scratch.path().join("keyturn.toml");
    std::fs::write(
        &cfg_path,
        transit_config(&url, &bao.addr, &token_file, &bao.mount, &key, &args),
    )
    .context("writing the config")?;
    let cfg = Config::load(&cfg_path)?;
    let workers = cfg.rotation.workers_for(&cfg.database.url);
    let server_cfg = cfg
        .kms
        .get("bao")
        .context("the config's [kms.bao] section")?;
    let (items, per_worker) = (server_cfg.batch_items(), server_cfg.max_in_flight());
    let in_flight = workers * per_worker;
    say(
        started,
        &format!(
            "keyturn: batch_size {}, workers {workers}, batch_items {items}, max_in_flight {per_worker}; plain loop: {items} items per request, {in_flight} requests in flight",
            cfg.rotation.batch_size
        ),
    );

    let t = transit.rewrap_all(&values, items, in_flight, 2).await?;
    say(
        started,
        &format!(
            "  warm-up: plain rewrap loop {:.2} s (not counted)",
            t.as_secs_f64()
        ),
    );
    let (mut plain, mut ours, mut local) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        for step in 0..3 {
            // Each measurement goes first in every third round.
            let which = (step + round) % 3;
            if which == 2 {
                bdb.create_table(LOCAL_TABLE, args.rows, &ring_k1).await?;
                bdb.settle(LOCAL_TABLE).await?;
                let s = keyturn_rotate(&local_path, args.rows).await?;
                let under = bdb.count_prefix(LOCAL_TABLE, "kt1:k2:").await?;
                ensure!(
                    under == args.rows,
                    "after keyturn's local rotation {under} of {} rows are under k2",
                    args.rows
                );
                say(
                    started,
                    &format!(
                        "  round {}: keyturn rotate, local keys (database side) {:.2} s wall ({:.2} s rotating)",
                        round + 1,
                        s.wall,
                        s.inside
                    ),
                );
                local.push(s);
            } else if which == 0 {
                let t = transit.rewrap_all(&values, items, in_flight, 2).await?;
                say(
                    started,
                    &format!(
                        "  round {}: plain rewrap loop {:.2} s ({:.0} values/s)",
                        round + 1,
                        t.as_secs_f64(),
                        args.rows as f64 / t.as_secs_f64()
                    ),
                );
                plain.push(t.as_secs_f64());
            } else {
                bdb.create_values_table(TABLE, &values).await?;
                bdb.settle(TABLE).await?;
                let s = keyturn_rotate(&cfg_path, args.rows).await?;
                let under = bdb.count_prefix(TABLE, "vault:v2:").await?;
                ensure!(
                    under == args.rows,
                    "after keyturn's rotation {under} of {} rows are under v2",
                    args.rows
                );
                say(
                    started,
                    &format!(
                        "  round {}: keyturn rotate {:.2} s wall ({:.2} s rotating; {:.0} rows/s)",
                        round + 1,
                        s.wall,
                        s.inside,
                        args.rows as f64 / s.wall
                    ),
                );
                ours.push(s);
            }
        }
    }
    if args.database_url.is_some() {
        bdb.drop_table(TABLE).await?;
        bdb.drop_table(LOCAL_TABLE).await?;
    }
    bdb.close().await;

    let plain_s = median(&plain);
    let wall_s = median(&ours.iter().map(|s| s.wall).collect::<Vec<_>>());
    let inside_s = median(&ours.iter().map(|s| s.inside).collect::<Vec<_>>());
    let local_s = median(&local.iter().map(|s| s.wall).collect::<Vec<_>>());
    let local_inside = median(&local.iter().map(|s| s.inside).collect::<Vec<_>>());
    let paired: Vec<f64> = plain.iter().zip(&ours).map(|(p, o)| p / o.wall).collect();
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!();
    println!(
        "keyturn-bench transit-rewrap: {} rows, {} rounds, {} ({server}), {version}, {} CPUs",
        args.rows,
        args.rounds,
        kind.name(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "keyturn: batch_size {}, workers {workers}, batch_items {items}, max_in_flight {per_worker}; plain loop: {items} items per request, {in_flight} in flight",
        cfg.rotation.batch_size
    );
    println!();
    println!("| | s (median) | rows/s | ÷ plain loop |\n|---|---:|---:|---:|");
    let rate = |s: f64| args.rows as f64 / s;
    println!(
        "| plain transit/rewrap loop (server's limit) | {plain_s:.2} | {:.0} | 1.00 |",
        rate(plain_s)
    );
    println!(
        "| keyturn rotate, whole (open, census, rotation, close) | {wall_s:.2} | {:.0} | **{:.2}** |",
        rate(wall_s),
        plain_s / wall_s
    );
    println!(
        "| keyturn rotate, the rotation (run's `seconds`) | {inside_s:.2} | {:.0} | {:.2} |",
        rate(inside_s),
        plain_s / inside_s
    );
    println!(
        "| keyturn rotate, local keys: the database side alone, whole | {local_s:.2} | {:.0} | - |",
        rate(local_s)
    );
    println!(
        "| keyturn rotate, local keys, the rotation | {local_inside:.2} | {:.0} | - |",
        rate(local_inside)
    );
    println!();
    println!("plain loop s [{}]", list(&plain));
    println!(
        "keyturn wall s [{}]; rotating s [{}]",
        list(&ours.iter().map(|s| s.wall).collect::<Vec<_>>()),
        list(&ours.iter().map(|s| s.inside).collect::<Vec<_>>())
    );
    println!(
        "local keys wall s [{}]; rotating s [{}]",
        list(&local.iter().map(|s| s.wall).collect::<Vec<_>>()),
        list(&local.iter().map(|s| s.inside).collect::<Vec<_>>())
    );
    println!(
        "keyturn ÷ plain loop per round [{}], median {:.2}",
        list(&paired),
        median(&paired)
    );
    println!(
        "target ≥ 80 % of the plain loop's rows/s: {} ({:.0} % of the medians, {:.0} % median per round)",
        if plain_s / wall_s >= 0.8 {
            "met"
        } else {
            "MISSED"
        },
        100.0 * plain_s / wall_s,
        100.0 * median(&paired)
    );
    Ok(())
}

/// Writes a secret file readable by its owner only (keyturn warns about
/// others, as ssh does).
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", path.display()))
}

/// `bao version`'s first line, when `bao` is on PATH.
fn bao_version() -> Option<String> {
    let out = std::process::Command::new(keyturn_test_support::kms::which("bao")?)
        .arg("version")
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    Some(s.lines().next()?.trim().to_owned())
}

#[derive(Parser, Debug)]
#[command(
    name = "keyturn-bench aws-reencrypt",
    about = "AWS KMS ReEncrypt on moto: the plain loop of calls in flight (the server's limit)"
)]
struct AwsArgs {
    /// Values (ciphertexts) re-encrypted per round
    #[arg(long, default_value_t = 2_000, value_name = "N")]
    rows: u64,
    /// Repetitions
    #[arg(long, default_value_t = 3, value_name = "K")]
    rounds: usize,
    /// Calls in flight [default: keyturn's max_in_flight for aws-kms]
    #[arg(long, value_name = "N")]
    in_flight: Option<usize>,
}

async fn aws_main(args: AwsArgs) -> Result<()> {
    use aws_sdk_kms::primitives::Blob;
    let started = Instant::now();
    ensure!(
        args.rows > 0 && args.rounds > 0,
        "--rows and --rounds: at least 1"
    );
    let Some(url) = keyturn_test_support::kms::moto_url("keyturn-bench aws-reencrypt") else {
        bail!("no moto: put moto_server on PATH, or set KEYTURN_MOTO_URL");
    };
    say(started, &format!("moto at {url} (loopback)"));
    let mut cfg = keyturn_kms::AwsKmsConfig::new("bench");
    cfg.region = Some("us-east-1".into());
    cfg.endpoint_url = Some(url.clone());
    cfg.credentials = keyturn_kms::AwsCredentials::Static {
        access_key_id: "testing".into(),
        secret_access_key: keyturn_kms::SecretString::new("testing".into()),
        session_token: None,
    };
    let kek = keyturn_kms::AwsKmsKek::connect(cfg).await?;
    let client = kek.client().clone();
    let mut arns = Vec::new();
    for _ in 0..2 {
        let k = client
            .create_key()
            .send()
            .await
            .context("CreateKey on moto")?;
        arns.push(
            k.key_metadata()
                .and_then(|m| m.arn())
                .context("CreateKey: no ARN")?
                .to_owned(),
        );
    }
    let (old, new) = (arns[0].clone(), arns[1].clone());
    let in_flight = args
        .in_flight
        .unwrap_or(keyturn_kms::DEFAULT_AWS_IN_FLIGHT)
        .max(1);

    say(
        started,
        &format!("encrypting {} values under the first key", args.rows),
    );
    let mut blobs: Vec<Vec<u8>> = Vec::with_capacity(args.rows as usize);
    {
        let mut flying = futures::stream::FuturesOrdered::new();
        let mut next = 1u64;
        loop {
            while flying.len() < in_flight && next <= args.rows {
                let (c, old) = (client.clone(), old.clone());
                let id = next;
                flying.push_back(async move {
                    c.encrypt()
                        .key_id(old)
                        .plaintext(Blob::new(plaintext(id).to_vec()))
                        .send()
                        .await
                });
                next += 1;
            }
            match flying.next().await {
                Some(r) => blobs.push(
                    r.context("Encrypt on moto")?
                        .ciphertext_blob()
                        .context("Encrypt: no ciphertext")?
                        .as_ref()
                        .to_vec(),
                ),
                None => break,
            }
        }
    }

    let mut times = Vec::new();
    for round in 0..args.rounds {
        let t = Instant::now();
        let mut flying = futures::stream::FuturesUnordered::new();
        let mut it = blobs.iter();
        let mut done = 0u64;
        loop {
            while flying.len() < in_flight {
                let Some(b) = it.next() else { break };
                let (c, new) = (client.clone(), new.clone());
                let blob = Blob::new(b.clone());
                flying.push(async move {
                    c.re_encrypt()
                        .ciphertext_blob(blob)
                        .destination_key_id(new)
                        .send()
                        .await
                });
            }
            match flying.next().await {
                Some(r) => {
                    let r = r.context("ReEncrypt on moto")?;
                    ensure!(
                        r.key_id() == Some(new.as_str()),
                        "ReEncrypt answered under another key"
                    );
                    done += 1;
                }
                None => break,
            }
        }
        ensure!(done == args.rows, "re-encrypted {done} of {}", args.rows);
        let s = t.elapsed().as_secs_f64();
        say(
            started,
            &format!(
                "  round {}: plain ReEncrypt loop {s:.2} s ({:.0} values/s)",
                round + 1,
                args.rows as f64 / s
            ),
        );
        times.push(s);
    }
    let m = median(&times);
    println!();
    println!(
        "keyturn-bench aws-reencrypt: {} values, {} rounds, moto, {in_flight} ReEncrypt calls in flight, {} CPUs",
        args.rows,
        args.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "plain ReEncrypt loop: median {m:.2} s, {:.0} values/s; s [{}]",
        args.rows as f64 / m,
        times
            .iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "keyturn's side (an aws-kms column with kms = ...) is not measured: the aws-kms codec is not in this build"
    );
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    // As the keyturn binary runs: a multi-threaded runtime.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `keyturn-bench transit-rewrap ...`.
pub fn transit(args: impl Iterator<Item = std::ffi::OsString>) -> Result<()> {
    let args = TransitArgs::parse_from(args);
    runtime()?.block_on(transit_main(args))
}

/// `keyturn-bench aws-reencrypt ...`.
pub fn aws(args: impl Iterator<Item = std::ffi::OsString>) -> Result<()> {
    let args = AwsArgs::parse_from(args);
    runtime()?.block_on(aws_main(args))
}
