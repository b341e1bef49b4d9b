//! `keyturn-bench kek`: how long `keyturn kek rotate` takes next to a large
//! table, and proof that it touches no data row. See BENCHMARKS.md ("KEK
//! rotation").
//!
//! Per backend:
//! 1. a key catalog (its own name) with `--deks` DEKs imported under a local
//!    master key, and a table `keyturn_bench_kek` of `--rows` rows (id, c:
//!    a keyturn text ciphertext of a 60-byte value, rows spread over the
//!    DEKs), loaded with multi-row INSERTs;
//! 2. SHA-256 over every (id, value) in primary-key order;
//! 3. `--rounds` times: the real `keyturn kek rotate --to local` (a child
//!    process, wall time), alternating master key 1 → 2 and 2 → 1; and
//!    `keyturn keys list` once per round, the fixed cost of starting the
//!    binary, connecting and reading the catalog;
//! 4. the checksum again, which must be identical, and a `keys self-test`
//!    under the final master key (every DEK unwraps);
//! 5. the table and the catalog's rows are dropped (unless `--keep`).

use anyhow::{Context, Result, bail, ensure};
use aws_lc_rs::digest::{Context as Digest, SHA256};
use clap::{Parser, ValueEnum};
use keyturn_format::{Algorithm, Encoding, KeyId, KeySpec, v1};
use keyturn_test_support::{Pool, on_pool};
use rayon::prelude::*;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Instant;

const TABLE: &str = "keyturn_bench_kek";
const MK: [&str; 2] = ["KEYTURN_BENCH_KEK_MK1", "KEYTURN_BENCH_KEK_MK2"];
const DEKS_ENV: &str = "KEYTURN_BENCH_KEK_DEKS";
const CHUNK: u64 = 100_000;
const INSERT_ROWS: usize = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Mysql,
    All,
}

#[derive(Parser, Debug)]
#[command(
    name = "keyturn-bench kek",
    about = "Time keyturn kek rotate next to a large table and check that no data row changes"
)]
struct Args {
    /// Which database(s)
    #[arg(long, value_enum, default_value = "all")]
    backend: BackendArg,
    /// Rows in the table
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    rows: u64,
    /// DEKs in the catalog (rows are spread over them)
    #[arg(long, default_value_t = 10, value_name = "N")]
    deks: usize,
    /// kek rotate runs per backend (alternating master keys)
    #[arg(long, default_value_t = 3, value_name = "K")]
    rounds: usize,
    /// The keyturn binary [default: next to this one]
    #[arg(long, value_name = "PATH")]
    keyturn: Option<PathBuf>,
    /// Leave the table and the catalog rows in place
    #[arg(long)]
    keep: bool,
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

/// The benchmark's own connection to the database under test.
struct KekDb(Pool);

impl KekDb {
    async fn connect(url: &str) -> Result<KekDb> {
        Ok(KekDb(if url.starts_with("postgres") {
            Pool::Pg(PgPoolOptions::new().max_connections(2).connect(url).await?)
        } else if url.starts_with("mysql") {
            Pool::My(
                MySqlPoolOptions::new()
                    .max_connections(2)
                    .connect(url)
                    .await?,
            )
        } else {
            let o = SqliteConnectOptions::from_str(url)?.create_if_missing(true);
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(o)
                    .await?,
            )
        }))
    }

    fn ph(&self, n: usize) -> String {
        match &self.0 {
            Pool::Pg(_) => format!("${n}"),
            _ => "?".into(),
        }
    }

    async fn exec(&self, sql: &str) -> Result<()> {
        on_pool!(&self.0, p => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(p).await
                .with_context(|| format!("running {sql}"))?;
        });
        Ok(())
    }

    async fn insert(&self, rows: &[(i64, String)]) -> Result<()> {
        let mut values = Vec::with_capacity(INSERT_ROWS);
        on_pool!(&self.0, p => {
            let mut tx = p.begin().await?;
            for batch in rows.chunks(INSERT_ROWS) {
                values.clear();
                for i in 0..batch.len() {
                    values.push(format!("({}, {})", self.ph(2 * i + 1), self.ph(2 * i + 2)));
                }
                let sql = format!("INSERT INTO {TABLE} (id, c) VALUES {}", values.join(", "));
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (id, v) in batch {
                    q = q.bind(*id).bind(v.as_str());
                }
                q.execute(&mut *tx).await.context("inserting rows")?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// SHA-256 over every `id ‖ 0 ‖ value ‖ \n`, in primary-key order.
    async fn checksum(&self) -> Result<(String, u64)> {
        let mut h = Digest::new(&SHA256);
        let mut n = 0u64;
        let mut last = 0i64;
        let sql = format!(
            "SELECT id, c FROM {TABLE} WHERE id > {} ORDER BY id LIMIT {CHUNK}",
            self.ph(1)
        );
        loop {
            let page: Vec<(i64, String)> = on_pool!(&self.0, p => {
                sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(last).fetch_all(p).await?
            });
            let Some((l, _)) = page.last() else {
                break;
            };
            last = *l;
            n += page.len() as u64;
            for (id, v) in &page {
                h.update(&id.to_le_bytes());
                h.update(&[0]);
                h.update(v.as_bytes());
                h.update(b"\n");
            }
        }
        Ok((hex::encode(h.finish().as_ref()), n))
    }

    async fn close(&self) {
        on_pool!(&self.0, p => p.close().await)
    }
}

fn plaintext(id: u64) -> Vec<u8> {
    let mut v = format!("{id:012}-").into_bytes();
    v.resize(60, b'x');
    v
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn locate_keyturn(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let me = std::env::current_exe().context("locating this binary")?;
    let p = me.with_file_name(format!("keyturn{}", std::env::consts::EXE_SUFFIX));
    ensure!(
        p.is_file(),
        "no keyturn binary next to keyturn-bench ({}): cargo build --release -p keyturn, or pass --keyturn",
        p.display()
    );
    Ok(p)
}

struct Setup<'a> {
    keyturn: &'a Path,
    dir: &'a Path,
    url: String,
    catalog: String,
    /// Master key specs 1 and 2, and the DEK specs (env only).
    env: Vec<(String, String)>,
}

impl Setup<'_> {
    /// A config whose catalog KEK is master key `mk` (0 or 1).
    fn config(&self, mk: usize) -> Result<PathBuf> {
        let path = self.dir.join(format!("kek-{mk}.toml"));
        std::fs::write(
            &path,
            format!(
                "[database]\nurl = {}\n\n[catalog]\nname = {}\nkek = \"local\"\nmaster_key = \"env:{}\"\n\n\
                 [[target]]\ntable = \"{TABLE}\"\nprimary_key = \"id\"\ncolumns = [{{ name = \"c\", encoding = \"text\" }}]\n",
                serde_json::to_string(&self.url)?,
                serde_json::to_string(&self.catalog)?,
                MK[mk]
            ),
        )?;
        Ok(path)
    }

    /// Runs keyturn; returns (wall seconds, stdout).
    fn run(&self, mk: usize, args: &[&str]) -> Result<(f64, String)> {
        let cfg = self.config(mk)?;
        let t = Instant::now();
        let out = Command::new(self.keyturn)
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("KEYTURN_CONFIG")
            .output()
            .with_context(|| format!("running {}", self.keyturn.display()))?;
        let wall = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "keyturn {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((wall, String::from_utf8_lossy(&out.stdout).into_owned()))
    }
}

struct Row {
    backend: &'static str,
    rows: u64,
    deks: usize,
    load_s: f64,
    rotate: Vec<f64>,
    list: Vec<f64>,
    before: String,
    after: String,
}

async fn one(
    args: &Args,
    keyturn: &Path,
    backend: &'static str,
    url: String,
    dir: &Path,
) -> Result<Row> {
    let started = Instant::now();
    let say = |m: &str| eprintln!("[{:7.1}s] {backend}: {m}", started.elapsed().as_secs_f64());
    let pool = KekDb::connect(&url)
        .await
        .with_context(|| format!("connecting to {backend}"))?;
    let catalog = format!("bench-kek-{}", std::process::id());
    let mk: Vec<String> = ["mk1", "mk2"]
        .iter()
        .map(|n| {
            KeySpec::generate(KeyId::new(n)?, Algorithm::Aes256Gcm)
                .map(|s| s.to_spec_string().to_string())
        })
        .collect::<Result<_, _>>()?;
    let deks: Vec<KeySpec> = (0..args.deks)
        .map(|i| KeySpec::generate(KeyId::new(&format!("d{i}"))?, Algorithm::Aes256Gcm))
        .collect::<Result<_, _>>()?;
    let dek_specs: Vec<String> = deks
        .iter()
        .map(|s| s.to_spec_string().to_string())
        .collect();
    let setup = Setup {
        keyturn,
        dir,
        url: url.clone(),
        catalog: catalog.clone(),
        env: vec![
            (MK[0].into(), mk[0].clone()),
            (MK[1].into(), mk[1].clone()),
            (DEKS_ENV.into(), dek_specs.join("\n")),
        ],
    };

    pool.exec(&format!("DROP TABLE IF EXISTS {TABLE}")).await?;
    let id_type = if matches!(pool.0, Pool::Sqlite(_)) {
        "INTEGER"
    } else {
        "BIGINT"
    };
    pool.exec(&format!(
        "CREATE TABLE {TABLE} (id {id_type} PRIMARY KEY, c TEXT NOT NULL)"
    ))
    .await?;
    setup.run(0, &["keys", "add", "--import", &format!("env:{DEKS_ENV}")])?;
    setup.run(0, &["keys", "promote", "d0"])?;
    say(&format!("catalog {catalog:?} with {} DEKs", args.deks));

    let t = Instant::now();
    let mut next = 1u64;
    while next <= args.rows {
        let end = (next + CHUNK - 1).min(args.rows);
        let values: Vec<(i64, String)> = (next..=end)
            .into_par_iter()
            .map(|id| {
                let s = &deks[(id as usize) % deks.len()];
                v1::seal(&s.key, &s.id, &plaintext(id), &[], Encoding::Text)
                    .map(|ct| (id as i64, String::from_utf8_lossy(&ct).into_owned()))
            })
            .collect::<Result<_, _>>()?;
        pool.insert(&values).await?;
        next = end + 1;
    }
    let load_s = t.elapsed().as_secs_f64();
    say(&format!("{} rows loaded in {load_s:.1} s", args.rows));
    let (before, n) = pool.checksum().await?;
    ensure!(
        n == args.rows,
        "{n} rows in the table, expected {}",
        args.rows
    );
    say(&format!("checksum {before}"));

    let mut rotate = Vec::new();
    let mut list = Vec::new();
    let mut current = 0;
    for round in 0..args.rounds {
        let to = 1 - current;
        let (s, out) = setup.run(
            current,
            &[
                "--json",
                "kek",
                "rotate",
                "--to",
                "local",
                "--master-key",
                &format!("env:{}", MK[to]),
            ],
        )?;
        let j: serde_json::Value = serde_json::from_str(out.trim())?;
        ensure!(
            j["rewrapped"] == args.deks,
            "kek rotate rewrapped {} DEKs, expected {}",
            j["rewrapped"],
            args.deks
        );
        current = to;
        rotate.push(s);
        let (l, _) = setup.run(current, &["keys", "list"])?;
        list.push(l);
        say(&format!(
            "round {}: kek rotate {s:.3} s (keys list {l:.3} s)",
            round + 1
        ));
    }
    let (after, n) = pool.checksum().await?;
    ensure!(n == args.rows, "{n} rows after, expected {}", args.rows);
    setup.run(current, &["keys", "self-test"])?;
    say(&format!(
        "checksum after {after} ({})",
        if after == before {
            "unchanged"
        } else {
            "CHANGED"
        }
    ));
    if !args.keep {
        pool.exec(&format!("DROP TABLE IF EXISTS {TABLE}")).await?;
        pool.exec(&format!(
            "DELETE FROM keyturn_keys_catalog WHERE catalog_name = '{catalog}'"
        ))
        .await?;
    }
    pool.close().await;
    Ok(Row {
        backend,
        rows: args.rows,
        deks: args.deks,
        load_s,
        rotate,
        list,
        before,
        after,
    })
}

/// Entry point: `keyturn-bench kek [options]` (`argv` without the program
/// name's `kek`).
pub fn main(argv: impl IntoIterator<Item = std::ffi::OsString>) -> Result<()> {
    let args = Args::parse_from(argv);
    ensure!(
        args.deks >= 1 && args.rounds >= 1,
        "--deks and --rounds must be at least 1"
    );
    let keyturn = locate_keyturn(args.keyturn.as_deref())?;
    let tmp = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut backends: Vec<(&'static str, String)> = Vec::new();
    let all = args.backend == BackendArg::All;
    if all || args.backend == BackendArg::Postgres {
        backends.push(("PostgreSQL", args.postgres_url.clone()));
    }
    if all || args.backend == BackendArg::Sqlite {
        backends.push((
            "SQLite",
            format!("sqlite://{}", tmp.path().join("kek.db").display()),
        ));
    }
    if all || args.backend == BackendArg::Mysql {
        backends.push(("MariaDB", args.mysql_url.clone()));
    }
    let mut rows = Vec::new();
    for (name, url) in backends {
        rows.push(rt.block_on(one(&args, &keyturn, name, url, tmp.path()))?);
    }
    println!(
        "\n| backend | rows | DEKs | load s | kek rotate s (median of {}) | min–max s | keys list s (fixed cost) | data checksum |",
        args.rounds
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    let mut changed = false;
    for r in &rows {
        let same = r.before == r.after;
        changed |= !same;
        let min = r.rotate.iter().copied().fold(f64::INFINITY, f64::min);
        let max = r.rotate.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {} | {} | {:.1} | {:.3} | {:.3}–{:.3} | {:.3} | {} ({}…) |",
            r.backend,
            r.rows,
            r.deks,
            r.load_s,
            median(&r.rotate),
            min,
            max,
            median(&r.list),
            if same { "identical" } else { "CHANGED" },
            &r.after[..16]
        );
    }
    ensure!(!changed, "a data row changed during kek rotate");
    Ok(())
}
