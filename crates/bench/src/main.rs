//! `keyturn-bench`: keyturn `rotate` against real databases, side by side
//! with the database's own one-statement in-place rewrite (the floor) and the
//! per-row OFFSET loop runbooks use (the baseline). See BENCHMARKS.md.
//!
//! Per backend:
//! 1. builds `keyturn_bench` (N rows: id BIGINT primary key, c TEXT holding a
//!    keyturn v1 text ciphertext of a 60-byte value under k1) and warms it
//!    up with one unmeasured in-place rewrite there and back;
//! 2. for each round, alternating which goes first: `keyturn rotate` (the
//!    real release binary, as a child: wall time and peak RSS from wait4),
//!    k1→k2 then k2→k1 with the primary flipped; and the in-place rewrite
//!    there and back (two samples); the server settled (VACUUM, checkpoint,
//!    purge) before every measurement;
//! 3. builds `keyturn_bench_small` (`--baseline-rows` rows): `keyturn rotate`
//!    on it `--rounds` times (peak RSS at the small size) and the per-row
//!    baseline once;
//! 4. prints medians and ratios.
//!
//! `keyturn-bench kek` times `keyturn kek rotate` (src/kek.rs);
//! `keyturn-bench transit-rewrap` and `aws-reencrypt` time rotation inside
//! a KMS against the server's own limit (src/remote.rs); `keyturn-bench
//! app-impact` an application's latency during rotations (src/impact.rs).

mod child;
mod db;
mod impact;
mod kek;
mod remote;

use anyhow::{Context, Result, ensure};
use clap::{Parser, ValueEnum};
use db::{Baseline, BenchDb, Kind};
use keyturn_format::{Algorithm, KeyId, KeySpec, Keyring};
use std::path::{Path, PathBuf};
use std::time::Instant;

const TABLE: &str = "keyturn_bench";
const SMALL_TABLE: &str = "keyturn_bench_small";
const KEYS_ENV: &str = "KEYTURN_BENCH_KEYS";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Mysql,
    All,
}

#[derive(Parser, Debug)]
#[command(
    name = "keyturn-bench",
    about = "Benchmark keyturn rotate against the database's in-place rewrite and a per-row loop"
)]
struct Args {
    /// Which database(s)
    #[arg(long, value_enum, default_value = "all")]
    backend: BackendArg,
    /// Rows in the main table
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    rows: u64,
    /// Rows for the per-row baseline (quadratic: OFFSET rescans) and the
    /// small-table peak-RSS runs
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    baseline_rows: u64,
    /// Alternating repetitions of rotate and the in-place rewrite
    #[arg(long, default_value_t = 2, value_name = "K")]
    rounds: usize,
    /// Passed to keyturn rotate [default: keyturn's own]
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Passed to keyturn rotate [default: keyturn's own]
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// The keyturn binary [default: next to this one]
    #[arg(long, value_name = "PATH")]
    keyturn: Option<PathBuf>,
    /// Skip the per-row baseline
    #[arg(long)]
    no_baseline: bool,
    /// Leave the tables in place afterwards (the main one under k1 or k2,
    /// whichever the last rotation targeted)
    #[arg(long)]
    keep_tables: bool,
    #[arg(
        long,
        env = "KEYTURN_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test",
        hide_env_values = true
    )]
    postgres_url: String,
    #[arg(
        long,
        env = "KEYTURN_BENCH_MYSQL_URL",
        default_value = "mysql://root@127.0.0.1:3306/test",
        hide_env_values = true
    )]
    mysql_url: String,
}

/// Two keys, k1 and k2, as spec strings (the child reads them from an env
/// var) and as rings with either primary.
struct Keys {
    specs: String,
}

impl Keys {
    /// Key specs from `$KEYTURN_BENCH_KEYS` when set (to rerun keyturn by
    /// hand on tables kept with `--keep-tables`), else two new keys.
    fn generate() -> Result<Keys> {
        if let Ok(specs) = std::env::var(KEYS_ENV) {
            let keys = Keys { specs };
            keys.ring("k1")?;
            keys.ring("k2")?;
            return Ok(keys);
        }
        let k1 = KeySpec::generate(KeyId::new("k1")?, Algorithm::Aes256Gcm)?;
        let k2 = KeySpec::generate(KeyId::new("k2")?, Algorithm::Aes256Gcm)?;
        Ok(Keys {
            specs: format!("{} {}", &*k1.to_spec_string(), &*k2.to_spec_string()),
        })
    }

    fn ring(&self, primary: &str) -> Result<Keyring> {
        let keys = KeySpec::parse_many(&self.specs)?
            .into_iter()
            .map(|s| (s.id, s.key))
            .collect();
        Ok(Keyring::from_keys(keys, Some(primary), &[])?)
    }
}

fn other(key: &str) -> &'static str {
    if key == "k1" { "k2" } else { "k1" }
}

/// One `keyturn rotate`.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Spawn to exit, seconds.
    wall: f64,
    /// keyturn's own `seconds` (the rotation itself, after connecting and
    /// the preflight counts).
    inside: f64,
    /// Peak RSS, bytes.
    rss: u64,
    /// User + system CPU of the keyturn process, seconds.
    cpu: f64,
}

#[derive(Default)]
struct Report {
    backend: String,
    server: String,
    rows: u64,
    rotate: Vec<Sample>,
    /// The in-place rewrite, seconds.
    floor: Vec<f64>,
    small_rows: u64,
    small_rotate: Vec<Sample>,
    baseline: Option<Baseline>,
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn mb(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

impl Report {
    fn rotate_s(&self) -> f64 {
        median(&self.rotate.iter().map(|r| r.wall).collect::<Vec<_>>())
    }
    fn floor_s(&self) -> f64 {
        median(&self.floor)
    }
    fn rss(&self) -> f64 {
        median(&self.rotate.iter().map(|r| r.rss as f64).collect::<Vec<_>>())
    }
    fn small_rss(&self) -> f64 {
        median(
            &self
                .small_rotate
                .iter()
                .map(|r| r.rss as f64)
                .collect::<Vec<_>>(),
        )
    }
    fn small_rotate_s(&self) -> f64 {
        median(&self.small_rotate.iter().map(|r| r.wall).collect::<Vec<_>>())
    }
}

fn say(started: Instant, msg: &str) {
    eprintln!("[{:7.1}s] {msg}", started.elapsed().as_secs_f64());
}

pub(crate) fn config_text(url: &str, table: &str, primary: &str) -> String {
    format!(
        r#"[database]
url = "{url}"

[keys]
sources = ["env:{KEYS_ENV}"]
primary = "{primary}"

[[target]]
table = "{table}"
primary_key = "id"
columns = [{{ name = "c", encoding = "text" }}]
"#
    )
}

struct Ctx<'a> {
    args: &'a Args,
    keys: &'a Keys,
    keyturn: &'a Path,
    scratch: &'a Path,
    started: Instant,
}

impl Ctx<'_> {
    /// `keyturn rotate` on `table` towards `primary`; checks every row was
    /// rewritten.
    async fn rotate(
        &self,
        bdb: &BenchDb,
        url: &str,
        table: &str,
        rows: u64,
        primary: &str,
    ) -> Result<Sample> {
        let cfg = self.scratch.join(format!("{table}-{primary}.toml"));
        std::fs::write(&cfg, config_text(url, table, primary)).context("writing a config")?;
        let mut extra = Vec::new();
        if let Some(b) = self.args.batch_size {
            extra.extend(["--batch-size".to_string(), b.to_string()]);
        }
        if let Some(w) = self.args.workers {
            extra.extend(["--workers".to_string(), w.to_string()]);
        }
        let (keyturn, scratch, specs) = (
            self.keyturn.to_owned(),
            self.scratch.to_owned(),
            self.keys.specs.clone(),
        );
        let run = tokio::task::spawn_blocking(move || {
            child::run_rotate(&keyturn, &cfg, (KEYS_ENV, &specs), &extra, &scratch)
        })
        .await??;
        ensure!(
            run.written() == rows,
            "keyturn rotate wrote {} of {rows} rows: {}",
            run.written(),
            run.summary
        );
        let under = bdb.count_prefix(table, &format!("kt1:{primary}:")).await?;
        ensure!(
            under == rows,
            "after rotate, {under} of {rows} rows are under {primary}"
        );
        let sample = Sample {
            wall: run.wall.as_secs_f64(),
            inside: run.summary["seconds"].as_f64().unwrap_or(f64::NAN),
            rss: run.peak_rss,
            cpu: run.cpu.as_secs_f64(),
        };
        say(
            self.started,
            &format!(
                "  rotate {table} → {primary}: {:.2} s wall ({:.2} s rotating), keyturn CPU {:.2} s, peak RSS {:.1} MB",
                sample.wall,
                sample.inside,
                sample.cpu,
                mb(sample.rss as f64)
            ),
        );
        Ok(sample)
    }

    async fn bench(&self, kind: Kind, url: &str) -> Result<Report> {
        let args = self.args;
        let bdb = BenchDb::connect(kind, url).await?;
        let mut rep = Report {
            backend: kind.name().into(),
            server: bdb.server_version().await.unwrap_or_default(),
            rows: args.rows,
            small_rows: args.baseline_rows,
            ..Default::default()
        };
        say(self.started, &format!("{}: {}", kind.name(), rep.server));
        let ring_k1 = self.keys.ring("k1")?;

        // 1. The main table, warmed up: the first rewrite of a freshly
        //    loaded, tightly packed table costs more than any later one.
        say(
            self.started,
            &format!("  building {TABLE} ({} rows)", args.rows),
        );
        bdb.create_table(TABLE, args.rows, &ring_k1).await?;
        say(
            self.started,
            "  warm-up: in-place rewrite there and back (not measured)",
        );
        for forward in [true, false] {
            bdb.settle(TABLE).await?;
            bdb.rewrite_in_place(TABLE, args.rows, forward).await?;
        }

        // 2. Rounds, alternating which goes first.
        let mut key = "k1";
        for round in 0..args.rounds {
            let rotate_first = round % 2 == 0;
            for step in 0..2 {
                if (step == 0) == rotate_first {
                    key = other(key);
                    bdb.settle(TABLE).await?;
                    let r = self.rotate(&bdb, url, TABLE, args.rows, key).await?;
                    rep.rotate.push(r);
                } else {
                    for forward in [true, false] {
                        bdb.settle(TABLE).await?;
                        let t = bdb.rewrite_in_place(TABLE, args.rows, forward).await?;
                        say(
                            self.started,
                            &format!("  in-place rewrite {TABLE}: {:.2} s", t.as_secs_f64()),
                        );
                        rep.floor.push(t.as_secs_f64());
                    }
                }
            }
        }
        if !args.keep_tables {
            bdb.drop_table(TABLE).await?;
        }

        // 3. The small table: peak RSS at the small size, then the per-row
        //    baseline.
        say(
            self.started,
            &format!("  building {SMALL_TABLE} ({} rows)", args.baseline_rows),
        );
        bdb.create_table(SMALL_TABLE, args.baseline_rows, &ring_k1)
            .await?;
        let mut key = "k1";
        for _ in 0..args.rounds.max(1) {
            key = other(key);
            bdb.settle(SMALL_TABLE).await?;
            let r = self
                .rotate(&bdb, url, SMALL_TABLE, args.baseline_rows, key)
                .await?;
            rep.small_rotate.push(r);
        }
        if !args.no_baseline {
            let target = other(key);
            say(
                self.started,
                &format!(
                    "  per-row baseline on {SMALL_TABLE} → {target} (OFFSET pages of {}, one UPDATE per row)",
                    db::BASELINE_PAGE
                ),
            );
            bdb.settle(SMALL_TABLE).await?;
            let b = bdb
                .per_row_baseline(SMALL_TABLE, &self.keys.ring(target)?)
                .await?;
            let under = bdb
                .count_prefix(SMALL_TABLE, &format!("kt1:{target}:"))
                .await?;
            ensure!(
                under == args.baseline_rows,
                "baseline left {under} of {} rows under {target}",
                args.baseline_rows
            );
            say(
                self.started,
                &format!(
                    "  baseline: {} rows in {:.1} s = {:.0} rows/s (first tenth {:.0} rows/s, last tenth {:.0} rows/s)",
                    b.rows,
                    b.seconds,
                    b.rows_per_sec(),
                    b.tenths.first().copied().unwrap_or(f64::NAN),
                    b.tenths.last().copied().unwrap_or(f64::NAN)
                ),
            );
            rep.baseline = Some(b);
        }
        if !args.keep_tables {
            bdb.drop_table(SMALL_TABLE).await?;
        }
        bdb.close().await;
        Ok(rep)
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn print_report(args: &Args, reports: &[Report]) {
    println!();
    println!(
        "keyturn-bench: {} rows (baseline and small-table RSS at {} rows), {} rounds, batch size {}, workers {}, {} CPUs",
        args.rows,
        args.baseline_rows,
        args.rounds,
        args.batch_size
            .map_or("keyturn default".into(), |b| b.to_string()),
        args.workers
            .map_or("keyturn default".into(), |w| w.to_string()),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "| backend | rows | rotate s (median) | in-place s (median) | rotate ÷ in-place | rotate rows/s | per-row rows/s @{} | rotate ÷ per-row | peak RSS @{} | peak RSS @{} | RSS {} ÷ {} |",
        args.baseline_rows, args.baseline_rows, args.rows, args.rows, args.baseline_rows
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in reports {
        let rate = r.rows as f64 / r.rotate_s();
        let base = r.baseline.as_ref().map(Baseline::rows_per_sec);
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2}× | {:.0} | {} | {} | {:.1} MB | {:.1} MB | {:.2} |",
            r.backend,
            r.rows,
            r.rotate_s(),
            r.floor_s(),
            r.rotate_s() / r.floor_s(),
            rate,
            base.map_or("-".into(), |b| format!("{b:.0}")),
            base.map_or("-".into(), |b| format!("{:.0}×", rate / b)),
            mb(r.small_rss()),
            mb(r.rss()),
            r.rss() / r.small_rss(),
        );
    }
    println!();
    for r in reports {
        println!("{} ({})", r.backend, r.server);
        let samples = |label: &str, rows: u64, v: &[Sample]| {
            let col = |f: &dyn Fn(&Sample) -> f64| {
                v.iter()
                    .map(|x| format!("{:.2}", f(x)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "  {label} @{rows}: wall s [{}] (median {:.2}, {:.0} rows/s); rotating s [{}]; keyturn CPU s [{}]; peak RSS MB [{}]",
                col(&|x| x.wall),
                median(&v.iter().map(|x| x.wall).collect::<Vec<_>>()),
                rows as f64 / median(&v.iter().map(|x| x.wall).collect::<Vec<_>>()),
                col(&|x| x.inside),
                col(&|x| x.cpu),
                col(&|x| mb(x.rss as f64)),
            );
        };
        samples("rotate", r.rows, &r.rotate);
        println!(
            "  in-place rewrite @{}: s [{}] (median {:.2})",
            r.rows,
            r.floor
                .iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            r.floor_s()
        );
        samples("rotate", r.small_rows, &r.small_rotate);
        if let Some(b) = &r.baseline {
            let tenths = |v: &[f64], prec: usize| {
                v.iter()
                    .map(|x| format!("{x:.prec$}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "  per-row baseline @{}: {:.1} s, {:.0} rows/s",
                b.rows,
                b.seconds,
                b.rows_per_sec(),
            );
            println!(
                "    per tenth of the run: rows/s [{}]; s in OFFSET SELECTs [{}]; s in UPDATEs [{}]",
                tenths(&b.tenths, 0),
                tenths(&b.select_s, 2),
                tenths(&b.update_s, 2)
            );
            println!(
                "  rotate ÷ per-row at the same size ({} rows): {:.0}×",
                r.small_rows,
                (r.small_rows as f64 / r.small_rotate_s()) / b.rows_per_sec()
            );
        }
        let ratio = r.rotate_s() / r.floor_s();
        let rss_ok = r.rss() <= 100e6 && r.small_rss() <= 100e6;
        let flat = (r.rss() / r.small_rss() - 1.0).abs() <= 0.10;
        match r.backend.as_str() {
            "PostgreSQL" => {
                println!(
                    "  targets: rotate ≤ 1.5× in-place: {} ({ratio:.2}×)",
                    verdict(ratio <= 1.5)
                );
                if let Some(b) = &r.baseline {
                    let x = (r.rows as f64 / r.rotate_s()) / b.rows_per_sec();
                    println!(
                        "           ≥ 50× per-row rows/s: {} ({x:.0}×)",
                        verdict(x >= 50.0)
                    );
                }
                println!(
                    "           peak RSS ≤ 100 MB: {}; same ±10% at {} and {} rows: {} ({:.2})",
                    verdict(rss_ok),
                    r.small_rows,
                    r.rows,
                    verdict(flat),
                    r.rss() / r.small_rss()
                );
            }
            "SQLite" => println!(
                "  targets: rotate ≤ 3× in-place: {} ({ratio:.2}×)",
                verdict(ratio <= 3.0)
            ),
            _ => {}
        }
    }
}

async fn real_main(args: Args) -> Result<()> {
    let started = Instant::now();
    let keyturn = child::locate_keyturn(args.keyturn.as_deref())?;
    ensure!(
        args.rows > 0 && args.baseline_rows > 0,
        "row counts must be positive"
    );
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let scratch = tempfile::Builder::new()
        .prefix("keyturn-bench-")
        .tempdir()
        .context("creating a scratch directory")?;
    let keys = Keys::generate()?;
    let ctx = Ctx {
        args: &args,
        keys: &keys,
        keyturn: &keyturn,
        scratch: scratch.path(),
        started,
    };
    let sqlite_url = format!("sqlite://{}", scratch.path().join("bench.db").display());
    let backends: Vec<(Kind, &str)> = match args.backend {
        BackendArg::Postgres => vec![(Kind::Postgres, args.postgres_url.as_str())],
        BackendArg::Sqlite => vec![(Kind::Sqlite, sqlite_url.as_str())],
        BackendArg::Mysql => vec![(Kind::MySql, args.mysql_url.as_str())],
        BackendArg::All => vec![
            (Kind::Postgres, args.postgres_url.as_str()),
            (Kind::Sqlite, sqlite_url.as_str()),
            (Kind::MySql, args.mysql_url.as_str()),
        ],
    };
    let mut reports = Vec::new();
    for (kind, url) in backends {
        reports.push(
            ctx.bench(kind, url)
                .await
                .with_context(|| format!("benchmarking {}", kind.name()))?,
        );
    }
    print_report(&args, &reports);
    Ok(())
}

fn main() -> Result<()> {
    match std::env::args_os()
        .nth(1)
        .as_deref()
        .and_then(|a| a.to_str())
    {
        Some("kek") => return kek::main(std::env::args_os().skip(1)),
        Some("transit-rewrap") => return remote::transit(std::env::args_os().skip(1)),
        Some("aws-reencrypt") => return remote::aws(std::env::args_os().skip(1)),
        Some("app-impact") => return impact::main(std::env::args_os().skip(1)),
        _ => {}
    }
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(real_main(args))
}
