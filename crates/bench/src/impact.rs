//! `keyturn-bench app-impact`: what a rotation does to an application using
//! the same table at the same time.
//!
//! Per backend (PostgreSQL, then MariaDB):
//! 1. builds `keyturn_app` (N rows: id BIGINT primary key, c TEXT holding a
//!    keyturn v1 text ciphertext under k1): one `INSERT … SELECT …
//!    generate_series` on PostgreSQL, multi-row INSERTs on MariaDB;
//! 2. starts the application load: `--connections` connections, each its
//!    own task on a fixed schedule, together `--rate` operations a second,
//!    a mix of point reads by primary key and updates of the encrypted
//!    column (written under the key the rows are being rotated to, as an
//!    application that already has the new primary would); it runs for the
//!    whole benchmark and each operation is attributed to the window its
//!    intended send time falls in;
//! 3. measures once, with the load paused, the database's own
//!    one-statement in-place rewrite (WAL or redo bytes, table size);
//! 4. for each round: an idle window, a default `keyturn rotate` and a
//!    throttled one (`--max-rows-per-sec`, optionally with a smaller
//!    `--batch-size`), each rotation preceded by an idle window, the order
//!    of the two rotations alternating between rounds; before every window
//!    the load is paused while the server settles (VACUUM and CHECKPOINT on
//!    PostgreSQL, undo purge on MariaDB);
//! 5. prints latency percentiles per kind of window, the ratios against
//!    idle, rotation rates, log bytes and table sizes.
//!
//! Latency is measured against coordinated omission: when a connection is
//! still busy with an earlier operation at an operation's intended send
//! time, the operation's latency counts from that intended time (the wait
//! behind the slow one included). When the connection was free, latency
//! counts from the actual send, so the scheduler's own timer granularity
//! (tokio's timers fire on 1 ms ticks) is not charged to the database; how
//! late the timer fired is reported separately.

use crate::child;
use crate::db::{self, BenchDb, Kind};
use crate::{Keys, mb, median, say};
use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use sqlx::Connection as _;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TABLE: &str = "keyturn_app";
const KEYS_ENV: &str = "KEYTURN_BENCH_KEYS";
/// Ciphertexts per key the application picks its writes from.
const WRITE_VALUES: u64 = 256;
/// Load before the first measured window (connections warm, caches hot).
const WARM_UP: Duration = Duration::from_secs(5);
/// Load after a settle and before the window starts.
const RESUME_GAP: Duration = Duration::from_secs(2);
/// How long MariaDB's purge may take to catch up before a window.
const SETTLE_PATIENCE: Duration = Duration::from_secs(60);
/// Time for operations in flight to finish after pausing the load.
const PAUSE_DRAIN: Duration = Duration::from_millis(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Postgres,
    Mysql,
    All,
}

/// `keyturn-bench app-impact`.
#[derive(Parser, Debug)]
#[command(
    name = "keyturn-bench app-impact",
    about = "Application latency (p50/p99/p99.9) while idle, during a default rotate and during a throttled rotate, interleaved in one run"
)]
struct ImpactArgs {
    /// Which database(s)
    #[arg(long, value_enum, default_value = "all")]
    backend: BackendArg,
    /// Rows in the table
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    rows: u64,
    /// Application operations per second, all connections together
    #[arg(long, default_value_t = 2000, value_name = "OPS")]
    rate: u64,
    /// Application connections (each its own task at rate ÷ connections)
    #[arg(long, default_value_t = 8, value_name = "N")]
    connections: usize,
    /// Share of operations that update the encrypted column, percent; the
    /// rest are point reads
    #[arg(long, default_value_t = 20, value_name = "PCT")]
    update_percent: u64,
    /// Length of each idle window, seconds
    #[arg(long, default_value_t = 20, value_name = "S")]
    idle_secs: u64,
    /// Rounds of (idle, rotate, idle, rotate), default and throttled
    /// alternating which goes first
    #[arg(long, default_value_t = 2, value_name = "K")]
    rounds: usize,
    /// The throttled rotation's --max-rows-per-sec [default: the fraction
    /// below of the first default rotation's rows/s in this run]
    #[arg(long, value_name = "R")]
    throttled_rows_per_sec: Option<u64>,
    /// See --throttled-rows-per-sec
    #[arg(long, default_value_t = 0.4, value_name = "F")]
    throttle_fraction: f64,
    /// The throttled rotation's --batch-size [default: keyturn's own]
    #[arg(long, value_name = "N")]
    throttled_batch_size: Option<usize>,
    /// The keyturn binary [default: next to this one]
    #[arg(long, value_name = "PATH")]
    keyturn: Option<PathBuf>,
    /// Leave the table in place afterwards
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

// ------------------------------------------------------------ percentiles

/// Latency percentiles of a set of operations, exact (nearest rank over the
/// sorted samples: a few hundred thousand operations fit in memory, so no
/// histogram approximation is needed).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    /// Operations measured.
    pub count: usize,
    /// Median, microseconds.
    pub p50: u32,
    /// 99th percentile, microseconds.
    pub p99: u32,
    /// 99.9th percentile, microseconds.
    pub p999: u32,
    /// Largest, microseconds.
    pub max: u32,
}

/// The nearest-rank `q`-quantile (0 < q ≤ 1) of sorted samples: the
/// smallest value with at least `q` of the samples at or below it.
pub fn nearest_rank(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Percentiles {
    /// Percentiles of `samples` (sorted in place).
    pub fn of(samples: &mut [u32]) -> Percentiles {
        samples.sort_unstable();
        Percentiles {
            count: samples.len(),
            p50: nearest_rank(samples, 0.50),
            p99: nearest_rank(samples, 0.99),
            p999: nearest_rank(samples, 0.999),
            max: samples.last().copied().unwrap_or(0),
        }
    }
}

fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

// ------------------------------------------------------------ the load

/// One application operation.
#[derive(Clone, Copy, Debug)]
struct Op {
    /// Intended send time, microseconds since the load started.
    at_us: u64,
    /// Latency, microseconds (see the module documentation).
    lat_us: u32,
    /// How late the timer woke the connection for it, microseconds (0 when
    /// the connection was still busy: then latency counts from `at_us`).
    timer_late_us: u32,
    update: bool,
    ok: bool,
}

/// A connection of the application.
enum AppConn {
    Pg(sqlx::PgConnection),
    My(sqlx::MySqlConnection),
}

impl AppConn {
    async fn connect(kind: Kind, url: &str) -> Result<AppConn> {
        Ok(match kind {
            Kind::Postgres => AppConn::Pg(
                sqlx::PgConnection::connect_with(&sqlx::postgres::PgConnectOptions::from_str(url)?)
                    .await
                    .context("connecting the application")?,
            ),
            Kind::MySql => AppConn::My(
                sqlx::MySqlConnection::connect_with(&sqlx::mysql::MySqlConnectOptions::from_str(
                    url,
                )?)
                .await
                .context("connecting the application")?,
            ),
            Kind::Sqlite => bail!("app-impact runs on PostgreSQL and MariaDB"),
        })
    }

    async fn read(&mut self, id: i64) -> Result<(), sqlx::Error> {
        match self {
            AppConn::Pg(c) => sqlx::query("SELECT c FROM keyturn_app WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *c)
                .await
                .map(drop),
            AppConn::My(c) => sqlx::query("SELECT c FROM keyturn_app WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *c)
                .await
                .map(drop),
        }
    }

    async fn update(&mut self, id: i64, value: &str) -> Result<(), sqlx::Error> {
        match self {
            AppConn::Pg(c) => sqlx::query("UPDATE keyturn_app SET c = $1 WHERE id = $2")
                .bind(value)
                .bind(id)
                .execute(&mut *c)
                .await
                .map(drop),
            AppConn::My(c) => sqlx::query("UPDATE keyturn_app SET c = ? WHERE id = ?")
                .bind(value)
                .bind(id)
                .execute(&mut *c)
                .await
                .map(drop),
        }
    }
}

/// SplitMix64: the row ids and the read/update choice (no cryptographic
/// need; reproducible per connection).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// What the controller and the connections share.
struct Shared {
    stop: AtomicBool,
    paused: AtomicBool,
    /// Which key's values the application writes: 0 = k1, 1 = k2.
    key: AtomicUsize,
    /// Ciphertexts under k1 and under k2.
    values: [Vec<String>; 2],
}

struct LoadSpec {
    rows: u64,
    rate: u64,
    connections: usize,
    update_percent: u64,
}

/// The running application load.
struct Load {
    shared: Arc<Shared>,
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<Vec<Op>>>,
}

impl Load {
    async fn start(
        kind: Kind,
        url: &str,
        spec: &LoadSpec,
        values: [Vec<String>; 2],
    ) -> Result<Load> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            key: AtomicUsize::new(0),
            values,
        });
        let mut conns = Vec::new();
        for _ in 0..spec.connections {
            conns.push(AppConn::connect(kind, url).await?);
        }
        let started = Instant::now();
        let n = spec.connections as f64;
        let period = Duration::from_secs_f64(n / spec.rate as f64);
        let tasks = conns
            .into_iter()
            .enumerate()
            .map(|(w, conn)| {
                let offset = period.mul_f64(w as f64 / n);
                tokio::spawn(connection_loop(
                    conn,
                    Arc::clone(&shared),
                    started,
                    started + offset,
                    period,
                    spec.rows,
                    spec.update_percent,
                    0x6b65_7974_7572_6e00 ^ w as u64,
                ))
            })
            .collect();
        Ok(Load {
            shared,
            started,
            tasks,
        })
    }

    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    async fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
        tokio::time::sleep(PAUSE_DRAIN).await;
    }

    fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    fn write_key(&self, key: usize) {
        self.shared.key.store(key, Ordering::SeqCst);
    }

    async fn finish(self) -> Result<Vec<Op>> {
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.context("an application connection panicked")?);
        }
        Ok(all)
    }
}

/// One connection: every `period` from `first`, one operation, unless the
/// load is paused (then the tick is skipped and nothing is recorded).
#[allow(clippy::too_many_arguments)]
async fn connection_loop(
    mut conn: AppConn,
    shared: Arc<Shared>,
    started: Instant,
    first: Instant,
    period: Duration,
    rows: u64,
    update_percent: u64,
    seed: u64,
) -> Vec<Op> {
    let mut rng = Rng(seed);
    let mut ops = Vec::new();
    let mut next = first;
    let mut free_at = started;
    while !shared.stop.load(Ordering::SeqCst) {
        tokio::time::sleep_until(next.into()).await;
        let intended = next;
        next += period;
        let id = (1 + rng.next() % rows) as i64;
        let update = rng.next() % 100 < update_percent;
        let pick = (rng.next() % WRITE_VALUES) as usize;
        if shared.paused.load(Ordering::SeqCst) {
            continue;
        }
        let sent = Instant::now();
        let res = if update {
            let key = shared.key.load(Ordering::SeqCst).min(1);
            conn.update(id, &shared.values[key][pick]).await
        } else {
            conn.read(id).await
        };
        let done = Instant::now();
        // Busy at the intended time: the wait behind the earlier operation
        // is the system's; free: the timer's lateness is ours.
        let (from, timer_late) = if free_at > intended {
            (intended, Duration::ZERO)
        } else {
            (sent, sent - intended)
        };
        free_at = done;
        ops.push(Op {
            at_us: (intended - started).as_micros() as u64,
            lat_us: (done - from).as_micros().min(u128::from(u32::MAX)) as u32,
            timer_late_us: timer_late.as_micros().min(u128::from(u32::MAX)) as u32,
            update,
            ok: res.is_ok(),
        });
    }
    ops
}

// ------------------------------------------------------------ windows

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WindowKind {
    Idle,
    Default,
    Throttled,
}

impl WindowKind {
    fn label(self) -> &'static str {
        match self {
            WindowKind::Idle => "idle",
            WindowKind::Default => "default rotate",
            WindowKind::Throttled => "throttled rotate",
        }
    }
}

/// One measured window of the run.
#[derive(Clone, Debug)]
struct Window {
    kind: WindowKind,
    round: usize,
    start_us: u64,
    end_us: u64,
    /// WAL (PostgreSQL) or redo (MariaDB) bytes written during the window.
    log_bytes: i64,
    rotation: Option<Rotation>,
}

impl Window {
    fn secs(&self) -> f64 {
        (self.end_us - self.start_us) as f64 / 1e6
    }
}

/// One `keyturn rotate` of the table.
#[derive(Clone, Debug)]
struct Rotation {
    /// Spawn to exit.
    wall: f64,
    /// keyturn's own rotating seconds.
    inside: f64,
    written: u64,
    max_rows_per_sec: Option<u64>,
    batch_size: Option<usize>,
    bytes_before: i64,
    bytes_after: i64,
    bytes_vacuumed: i64,
}

/// The in-place rewrite, measured with the load paused.
#[derive(Clone, Debug)]
struct InPlace {
    seconds: f64,
    log_bytes: i64,
    bytes_before: i64,
    bytes_after: i64,
    bytes_vacuumed: i64,
}

struct BackendReport {
    backend: &'static str,
    server: String,
    rows: u64,
    windows: Vec<Window>,
    ops: Vec<Op>,
    in_place: InPlace,
    throttle: u64,
}

impl BackendReport {
    fn ops_in(&self, kind: WindowKind, round: Option<usize>) -> impl Iterator<Item = &Op> {
        let spans: Vec<(u64, u64)> = self
            .windows
            .iter()
            .filter(|w| w.kind == kind && round.is_none_or(|r| w.round == r))
            .map(|w| (w.start_us, w.end_us))
            .collect();
        self.ops
            .iter()
            .filter(move |o| spans.iter().any(|(s, e)| o.at_us >= *s && o.at_us < *e))
    }

    fn pct(&self, kind: WindowKind, round: Option<usize>, filter: fn(&Op) -> bool) -> Percentiles {
        let mut v: Vec<u32> = self
            .ops_in(kind, round)
            .filter(|o| o.ok && filter(o))
            .map(|o| o.lat_us)
            .collect();
        Percentiles::of(&mut v)
    }

    fn errors(&self, kind: WindowKind) -> usize {
        self.ops_in(kind, None).filter(|o| !o.ok).count()
    }

    fn rotations(&self, kind: WindowKind) -> Vec<&Rotation> {
        self.windows
            .iter()
            .filter(|w| w.kind == kind)
            .filter_map(|w| w.rotation.as_ref())
            .collect()
    }

    /// Median rows/s of the rotations of one kind, by wall time.
    fn rate(&self, kind: WindowKind) -> f64 {
        median(
            &self
                .rotations(kind)
                .iter()
                .map(|r| self.rows as f64 / r.wall)
                .collect::<Vec<_>>(),
        )
    }

    /// The application's own log bytes per second while idle.
    fn idle_log_rate(&self) -> f64 {
        let idle: Vec<&Window> = self
            .windows
            .iter()
            .filter(|w| w.kind == WindowKind::Idle)
            .collect();
        let bytes: i64 = idle.iter().map(|w| w.log_bytes).sum();
        let secs: f64 = idle.iter().map(|w| w.secs()).sum();
        bytes as f64 / secs
    }
}

// ------------------------------------------------------------ the run

struct Ctx<'a> {
    args: &'a ImpactArgs,
    keys: &'a Keys,
    keyturn: &'a Path,
    scratch: &'a Path,
    started: Instant,
}

impl Ctx<'_> {
    fn say(&self, msg: &str) {
        say(self.started, msg);
    }

    /// `keyturn rotate` towards `primary`, then checks every row is under it.
    async fn rotate(
        &self,
        bdb: &BenchDb,
        url: &str,
        primary: &str,
        max_rows_per_sec: Option<u64>,
        batch_size: Option<usize>,
    ) -> Result<(f64, f64, u64)> {
        let cfg = self.scratch.join(format!("app-{primary}.toml"));
        std::fs::write(&cfg, crate::config_text(url, TABLE, primary))
            .context("writing a config")?;
        let mut extra = Vec::new();
        if let Some(r) = max_rows_per_sec {
            extra.extend(["--max-rows-per-sec".to_string(), r.to_string()]);
        }
        if let Some(b) = batch_size {
            extra.extend(["--batch-size".to_string(), b.to_string()]);
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
        let under = bdb.count_prefix(TABLE, &format!("kt1:{primary}:")).await?;
        ensure!(
            under == self.args.rows,
            "after rotate, {under} of {} rows are under {primary}",
            self.args.rows
        );
        Ok((
            run.wall.as_secs_f64(),
            run.summary["seconds"].as_f64().unwrap_or(f64::NAN),
            run.written(),
        ))
    }

    async fn settle(&self, bdb: &BenchDb, load: &Load) -> Result<()> {
        load.pause().await;
        bdb.settle_purge(TABLE, SETTLE_PATIENCE).await?;
        load.resume();
        tokio::time::sleep(RESUME_GAP).await;
        Ok(())
    }

    async fn bench(&self, kind: Kind, url: &str) -> Result<BackendReport> {
        let args = self.args;
        let bdb = BenchDb::connect(kind, url).await?;
        let server = bdb.server_version().await.unwrap_or_default();
        self.say(&format!("{}: {server}", kind.name()));
        let (ring1, ring2) = (self.keys.ring("k1")?, self.keys.ring("k2")?);
        self.say(&format!("  building {TABLE} ({} rows)", args.rows));
        let t = Instant::now();
        match kind {
            Kind::Postgres => bdb.create_table_series(TABLE, args.rows, &ring1).await?,
            _ => bdb.create_table(TABLE, args.rows, &ring1).await?,
        }
        self.say(&format!(
            "  built in {:.1} s, {:.1} MB",
            t.elapsed().as_secs_f64(),
            mb(bdb.table_bytes(TABLE).await? as f64)
        ));
        let values = [
            db::sample_values(&ring1, WRITE_VALUES)?,
            db::sample_values(&ring2, WRITE_VALUES)?,
        ];
        let spec = LoadSpec {
            rows: args.rows,
            rate: args.rate,
            connections: args.connections,
            update_percent: args.update_percent,
        };
        let load = Load::start(kind, url, &spec, values).await?;
        self.say(&format!(
            "  application load: {} ops/s over {} connections, {} % updates",
            args.rate, args.connections, args.update_percent
        ));
        tokio::time::sleep(WARM_UP).await;

        // The in-place rewrite, with the application paused (its writes
        // would be rotated by a character too).
        load.pause().await;
        bdb.settle_purge(TABLE, SETTLE_PATIENCE).await?;
        let bytes_before = bdb.table_bytes(TABLE).await?;
        let log0 = bdb.log_position().await?;
        let took = bdb.rewrite_in_place(TABLE, args.rows, true).await?;
        let log1 = bdb.log_position().await?;
        let bytes_after = bdb.table_bytes(TABLE).await?;
        bdb.settle_purge(TABLE, SETTLE_PATIENCE).await?;
        let bytes_vacuumed = bdb.table_bytes(TABLE).await?;
        bdb.rewrite_in_place(TABLE, args.rows, false).await?;
        let in_place = InPlace {
            seconds: took.as_secs_f64(),
            log_bytes: log1 - log0,
            bytes_before,
            bytes_after,
            bytes_vacuumed,
        };
        self.say(&format!(
            "  in-place rewrite (load paused): {:.2} s, log {:.1} MB, table {:.1} → {:.1} MB, {:.1} MB after settling",
            in_place.seconds,
            mb(in_place.log_bytes as f64),
            mb(bytes_before as f64),
            mb(bytes_after as f64),
            mb(bytes_vacuumed as f64)
        ));
        load.resume();
        tokio::time::sleep(RESUME_GAP).await;

        let mut windows = Vec::new();
        let mut key = 0usize;
        let mut throttle = args.throttled_rows_per_sec;
        for round in 0..args.rounds {
            let order = if round % 2 == 0 {
                [WindowKind::Default, WindowKind::Throttled]
            } else {
                [WindowKind::Throttled, WindowKind::Default]
            };
            for rot_kind in order {
                // Idle.
                self.settle(&bdb, &load).await?;
                let log0 = bdb.log_position().await?;
                let start_us = load.now_us();
                tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
                let end_us = load.now_us();
                let log1 = bdb.log_position().await?;
                windows.push(Window {
                    kind: WindowKind::Idle,
                    round,
                    start_us,
                    end_us,
                    log_bytes: log1 - log0,
                    rotation: None,
                });
                // The rotation.
                self.settle(&bdb, &load).await?;
                let target = 1 - key;
                let (rate, batch) = match rot_kind {
                    WindowKind::Throttled => {
                        let Some(r) = throttle else {
                            bail!(
                                "no throttle rate: the first round runs the default rotation first"
                            )
                        };
                        (Some(r), args.throttled_batch_size)
                    }
                    _ => (None, None),
                };
                let bytes_before = bdb.table_bytes(TABLE).await?;
                let log0 = bdb.log_position().await?;
                load.write_key(target);
                let start_us = load.now_us();
                let primary = if target == 0 { "k1" } else { "k2" };
                let (wall, inside, written) = self.rotate(&bdb, url, primary, rate, batch).await?;
                let end_us = load.now_us();
                let log1 = bdb.log_position().await?;
                let bytes_after = bdb.table_bytes(TABLE).await?;
                key = target;
                load.pause().await;
                bdb.settle_purge(TABLE, SETTLE_PATIENCE).await?;
                let bytes_vacuumed = bdb.table_bytes(TABLE).await?;
                load.resume();
                if rot_kind == WindowKind::Default && throttle.is_none() {
                    let r = (args.rows as f64 / wall * args.throttle_fraction).round() as u64;
                    throttle = Some(r.max(1));
                }
                self.say(&format!(
                    "  round {round}: {} → {primary}: {wall:.2} s ({inside:.2} s rotating), {written} written by keyturn, {:.0} rows/s, log {:.1} MB, table {:.1} → {:.1} MB, {:.1} MB after settling",
                    rot_kind.label(),
                    args.rows as f64 / wall,
                    mb((log1 - log0) as f64),
                    mb(bytes_before as f64),
                    mb(bytes_after as f64),
                    mb(bytes_vacuumed as f64)
                ));
                windows.push(Window {
                    kind: rot_kind,
                    round,
                    start_us,
                    end_us,
                    log_bytes: log1 - log0,
                    rotation: Some(Rotation {
                        wall,
                        inside,
                        written,
                        max_rows_per_sec: rate,
                        batch_size: batch,
                        bytes_before,
                        bytes_after,
                        bytes_vacuumed,
                    }),
                });
            }
        }
        let ops = load.finish().await?;
        if !args.keep_tables {
            bdb.drop_table(TABLE).await?;
        }
        bdb.close().await;
        Ok(BackendReport {
            backend: kind.name(),
            server,
            rows: args.rows,
            windows,
            ops,
            in_place,
            throttle: throttle.unwrap_or(0),
        })
    }
}

// ------------------------------------------------------------ the report

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn print_report(args: &ImpactArgs, reports: &[BackendReport]) {
    println!();
    println!(
        "keyturn-bench app-impact: {} rows, {} ops/s over {} connections ({} % updates), {} rounds, idle windows {} s, {} CPUs",
        args.rows,
        args.rate,
        args.connections,
        args.update_percent,
        args.rounds,
        args.idle_secs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for r in reports {
        let idle = r.pct(WindowKind::Idle, None, |_| true);
        println!();
        println!("{} ({})", r.backend, r.server);
        println!(
            "throttled rotation: --max-rows-per-sec {}{}",
            r.throttle,
            args.throttled_batch_size
                .map_or(String::new(), |b| format!(" --batch-size {b}"))
        );
        println!();
        println!(
            "| window | ops | errors | p50 ms | p99 ms | p99.9 ms | max ms | p99 ÷ idle | p99.9 ÷ idle | reads p99 ms | updates p99 ms | rotation rows/s (median) |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for kind in [WindowKind::Idle, WindowKind::Default, WindowKind::Throttled] {
            let p = r.pct(kind, None, |_| true);
            let reads = r.pct(kind, None, |o| !o.update);
            let updates = r.pct(kind, None, |o| o.update);
            let rate = if kind == WindowKind::Idle {
                "-".to_string()
            } else {
                format!("{:.0}", r.rate(kind))
            };
            println!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2}× | {:.2}× | {:.2} | {:.2} | {rate} |",
                kind.label(),
                p.count,
                r.errors(kind),
                ms(p.p50),
                ms(p.p99),
                ms(p.p999),
                ms(p.max),
                f64::from(p.p99) / f64::from(idle.p99),
                f64::from(p.p999) / f64::from(idle.p999),
                ms(reads.p99),
                ms(updates.p99),
            );
        }
        println!();
        println!("per window (in run order):");
        for w in &r.windows {
            let p = r.pct(w.kind, Some(w.round), |_| true);
            let same: Vec<&Window> = r
                .windows
                .iter()
                .filter(|x| x.kind == w.kind && x.round == w.round)
                .collect();
            // Idle windows: two per round; show each on its own.
            let p = if same.len() > 1 {
                let mut v: Vec<u32> = r
                    .ops
                    .iter()
                    .filter(|o| o.ok && o.at_us >= w.start_us && o.at_us < w.end_us)
                    .map(|o| o.lat_us)
                    .collect();
                Percentiles::of(&mut v)
            } else {
                p
            };
            let mut line = format!(
                "  round {} {:<16} {:6.1} s  ops {:6}  p50 {:6.2} ms  p99 {:7.2} ms  p99.9 {:7.2} ms  log {:7.1} MB",
                w.round,
                w.kind.label(),
                w.secs(),
                p.count,
                ms(p.p50),
                ms(p.p99),
                ms(p.p999),
                mb(w.log_bytes as f64)
            );
            if let Some(rot) = &w.rotation {
                line += &format!(
                    "  {:.0} rows/s ({:.2} s wall, {:.2} s rotating, {} written by keyturn{}{})",
                    r.rows as f64 / rot.wall,
                    rot.wall,
                    rot.inside,
                    rot.written,
                    rot.max_rows_per_sec
                        .map_or(String::new(), |x| format!(", --max-rows-per-sec {x}")),
                    rot.batch_size
                        .map_or(String::new(), |x| format!(", --batch-size {x}")),
                );
            }
            println!("{line}");
        }
        let late: Vec<u32> = r
            .ops
            .iter()
            .filter(|o| o.timer_late_us > 0)
            .map(|o| o.timer_late_us)
            .collect();
        let mut late = late;
        let lp = Percentiles::of(&mut late);
        println!(
            "  scheduler: timer lateness p50 {:.2} ms, p99 {:.2} ms (not counted in latency when the connection was free)",
            ms(lp.p50),
            ms(lp.p99)
        );
        println!();
        let log_name = if r.backend == "PostgreSQL" {
            "WAL"
        } else {
            "redo log"
        };
        let idle_rate = r.idle_log_rate();
        let per_m = |bytes: f64| mb(bytes * 1e6 / r.rows as f64);
        println!(
            "| {log_name} per 1M rows | MB | ÷ in-place | table MB before | after | after settling |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        let ip = &r.in_place;
        println!(
            "| in-place rewrite (one UPDATE, load paused) | {:.1} | 1.00× | {:.1} | {:.1} | {:.1} |",
            per_m(ip.log_bytes as f64),
            mb(ip.bytes_before as f64),
            mb(ip.bytes_after as f64),
            mb(ip.bytes_vacuumed as f64)
        );
        for kind in [WindowKind::Default, WindowKind::Throttled] {
            for w in r.windows.iter().filter(|w| w.kind == kind) {
                let Some(rot) = &w.rotation else { continue };
                println!(
                    "| {} round {} ({:.0} s, the application's writes included) | {:.1} | {:.2}× | {:.1} | {:.1} | {:.1} |",
                    kind.label(),
                    w.round,
                    w.secs(),
                    per_m(w.log_bytes as f64),
                    w.log_bytes as f64 / ip.log_bytes as f64,
                    mb(rot.bytes_before as f64),
                    mb(rot.bytes_after as f64),
                    mb(rot.bytes_vacuumed as f64)
                );
            }
        }
        println!(
            "  the application alone wrote {:.2} MB/s of {log_name} while idle (right after a checkpoint: full-page images; not additive to a rotation's, which touches the same pages)",
            mb(idle_rate)
        );
        let d99 = f64::from(r.pct(WindowKind::Default, None, |_| true).p99) / f64::from(idle.p99);
        let t99 = f64::from(r.pct(WindowKind::Throttled, None, |_| true).p99) / f64::from(idle.p99);
        let share = r.rate(WindowKind::Throttled) / r.rate(WindowKind::Default);
        println!();
        println!(
            "targets: throttled p99 ≤ 1.2× idle: {} ({t99:.2}×); throttled rate ≥ 30 % of default: {} ({:.0} %); default p99 ratio (reported): {d99:.2}×",
            verdict(t99 <= 1.2),
            verdict(share >= 0.30),
            share * 100.0
        );
    }
}

/// `keyturn-bench app-impact …` (`argv` starts at `app-impact`).
pub fn main(argv: impl Iterator<Item = OsString>) -> Result<()> {
    let args = ImpactArgs::parse_from(argv);
    ensure!(args.rows > 0, "--rows must be positive");
    ensure!(
        args.rate > 0 && args.connections > 0,
        "--rate and --connections must be positive"
    );
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!(
        args.update_percent <= 100,
        "--update-percent is at most 100"
    );
    ensure!(
        args.throttle_fraction > 0.0 && args.throttle_fraction <= 1.0,
        "--throttle-fraction is in (0, 1]"
    );
    // The load's connections and the controller on their own threads: the
    // child keyturn and the servers share the machine's cores with them.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let started = Instant::now();
        let keyturn = child::locate_keyturn(args.keyturn.as_deref())?;
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
        let backends: Vec<(Kind, &str)> = match args.backend {
            BackendArg::Postgres => vec![(Kind::Postgres, args.postgres_url.as_str())],
            BackendArg::Mysql => vec![(Kind::MySql, args.mysql_url.as_str())],
            BackendArg::All => vec![
                (Kind::Postgres, args.postgres_url.as_str()),
                (Kind::MySql, args.mysql_url.as_str()),
            ],
        };
        let mut reports = Vec::new();
        for (kind, url) in backends {
            reports.push(
                ctx.bench(kind, url)
                    .await
                    .with_context(|| format!("app-impact on {}", kind.name()))?,
            );
        }
        print_report(&args, &reports);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=1000 µs: the q-quantile is the value at rank ceil(q·n).
        let mut v: Vec<u32> = (1..=1000).rev().collect();
        let p = Percentiles::of(&mut v);
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50, 500);
        assert_eq!(p.p99, 990);
        assert_eq!(p.p999, 999);
        assert_eq!(p.max, 1000);
    }

    #[test]
    fn nearest_rank_small_and_empty() {
        assert_eq!(nearest_rank(&[], 0.99), 0);
        assert_eq!(nearest_rank(&[7], 0.5), 7);
        assert_eq!(nearest_rank(&[7], 0.999), 7);
        // Ten samples: p99 and p99.9 are the largest, p50 the fifth.
        let v: Vec<u32> = (10..20).collect();
        assert_eq!(nearest_rank(&v, 0.5), 14);
        assert_eq!(nearest_rank(&v, 0.99), 19);
        assert_eq!(nearest_rank(&v, 0.999), 19);
    }

    #[test]
    fn one_slow_operation_shows_in_the_tail_only() {
        // 999 fast operations and one stall: p50 and p99 stay fast, p99.9
        // and max see the stall.
        let mut v = vec![300u32; 999];
        v.push(250_000);
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p99, p.p999, p.max), (300, 300, 300, 250_000));
        v.push(250_000);
        let p = Percentiles::of(&mut v);
        assert_eq!(p.p999, 250_000);
    }
}
