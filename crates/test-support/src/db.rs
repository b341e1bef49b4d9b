//! Helpers for the integration suite: one throw-away database per test (a
//! SQLite file, or a `CREATE DATABASE` on the PostgreSQL / MariaDB server),
//! test tables and data, keys, configs, and the real `keyturn` binary.
//!
//! Environment:
//! - `KEYTURN_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! - `KEYTURN_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`)
//! - `KEYTURN_REQUIRE_DBS=1`: an unreachable server fails the test instead of
//!   skipping it
//! - `KEYTURN_TEST_SEED=N`: replay the random choices of a failed run
//! - `KEYTURN_TEST_KEEP=1`: keep the test databases and files for inspection

use crate::Pool;
use crate::on_pool;
use keyturn_db::PkValue;
use keyturn_format::{KeySpec, Keyring, v1};
use sqlx::Row as _;
use sqlx::mysql::MySqlPoolOptions;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEYS_ENV: &str = "KT_TEST_KEYS";

static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Names the `keyturn` binary the scenarios run (a test binary of the
/// `keyturn` package passes `env!("CARGO_BIN_EXE_keyturn")`). The first
/// call wins.
pub fn use_binary(path: &str) {
    let _ = BINARY.set(PathBuf::from(path));
}

/// The `keyturn` binary given to [`use_binary`].
pub fn binary() -> &'static std::path::Path {
    BINARY
        .get()
        .expect("keyturn_test_support::use_binary was not called")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    MariaDb,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
            Kind::MariaDb => "mariadb",
        }
    }
}

/// Runs one scenario against one backend: creates the test database, runs
/// the scenario (a panic fails the test), drops the database.
pub fn run<F, Fut>(kind: Kind, scenario: &'static str, f: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let Some(t) = TestDb::create(kind, scenario).await else {
            return;
        };
        let started = Instant::now();
        let result = tokio::spawn(f(t.clone())).await;
        eprintln!(
            "[{} {scenario}] {:.1}s (seed {})",
            kind.name(),
            started.elapsed().as_secs_f64(),
            t.seed
        );
        t.finish().await;
        if let Err(e) = result {
            eprintln!(
                "[{} {scenario}] failed; replay with KEYTURN_TEST_SEED={}",
                kind.name(),
                t.seed
            );
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("scenario task failed: {e}");
        }
    });
}

// ---------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------

/// Binds one [`Val`] to a sqlx query.
#[macro_export]
macro_rules! bind_val {
    ($q:expr, $v:expr) => {
        match $v {
            $crate::Val::Int(i) => $q.bind(*i),
            $crate::Val::Text(s) => $q.bind(s.clone()),
            $crate::Val::Bytes(b) => $q.bind(b.clone()),
            $crate::Val::NullText => $q.bind(None::<String>),
            $crate::Val::NullBytes => $q.bind(None::<Vec<u8>>),
        }
    };
}

/// A value bound into test SQL.
#[derive(Clone, Debug)]
pub enum Val {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    NullText,
    NullBytes,
}

impl Val {
    fn pk(v: &PkValue) -> Val {
        match v {
            PkValue::Int(i) => Val::Int(*i),
            PkValue::Text(s) => Val::Text(s.clone()),
            PkValue::Bytes(b) => Val::Bytes(b.clone()),
        }
    }

    fn value(kind: ColKind, v: Option<&[u8]>) -> Val {
        match (kind, v) {
            (ColKind::Text, Some(b)) => {
                Val::Text(String::from_utf8(b.to_vec()).expect("text values are UTF-8"))
            }
            (ColKind::Binary, Some(b)) => Val::Bytes(b.to_vec()),
            (ColKind::Text, None) => Val::NullText,
            (ColKind::Binary, None) => Val::NullBytes,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PkKind {
    Int,
    Text,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColKind {
    Text,
    Binary,
}

#[derive(Clone, Debug)]
pub struct Col {
    pub name: String,
    pub kind: ColKind,
    /// `context = true` in the config.
    pub context: bool,
}

/// A test table: its key columns and its encrypted columns.
#[derive(Clone, Debug)]
pub struct Table {
    pub name: String,
    pub pk: Vec<(String, PkKind)>,
    pub cols: Vec<Col>,
}

impl Table {
    pub fn new(name: &str, pk: &[(&str, PkKind)], cols: &[(&str, ColKind, bool)]) -> Table {
        Table {
            name: name.to_owned(),
            pk: pk.iter().map(|(n, k)| ((*n).to_owned(), *k)).collect(),
            cols: cols
                .iter()
                .map(|(n, k, c)| Col {
                    name: (*n).to_owned(),
                    kind: *k,
                    context: *c,
                })
                .collect(),
        }
    }

    pub fn col(&self, name: &str) -> usize {
        self.cols
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("no column {name} in {}", self.name))
    }

    /// The associated data the engine binds for `col` of row `pk`.
    pub fn context(&self, col: usize, pk: &[PkValue]) -> Vec<Vec<u8>> {
        if !self.cols[col].context {
            return Vec::new();
        }
        let mut parts = vec![
            self.name.as_bytes().to_vec(),
            self.cols[col].name.as_bytes().to_vec(),
        ];
        parts.extend(pk.iter().map(|v| v.to_string().into_bytes()));
        parts
    }

    /// The table's `[[target]]` section of a config.
    pub fn target_toml(&self) -> String {
        let pk: Vec<String> = self.pk.iter().map(|(n, _)| toml_str(n)).collect();
        let cols: Vec<String> = self
            .cols
            .iter()
            .map(|c| {
                format!(
                    "{{ name = {}, context = {} }}",
                    toml_str(&c.name),
                    c.context
                )
            })
            .collect();
        format!(
            "[[target]]\ntable = {}\nprimary_key = [{}]\ncolumns = [{}]\n",
            toml_str(&self.name),
            pk.join(", "),
            cols.join(", ")
        )
    }
}

/// One row's primary key.
pub type Pk = Vec<PkValue>;
/// Rows by primary key; per row one value per encrypted column (`None` =
/// NULL). Plaintexts or stored (raw) values, depending on the context.
pub type Data = BTreeMap<Pk, Vec<Option<Vec<u8>>>>;

pub fn int_pk(i: i64) -> Pk {
    vec![PkValue::Int(i)]
}

/// Removes the password from a URL for messages.
fn redact(url: &str) -> String {
    keyturn_db::redact_url(url)
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, db: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = main.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match main[scheme_end..].find('/') {
        Some(i) => &main[..scheme_end + i],
        None => main,
    };
    format!("{base}/{db}{query}")
}

pub fn env_url(kind: Kind) -> String {
    let (var, default) = match kind {
        Kind::Postgres => (
            "KEYTURN_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        ),
        Kind::MariaDb => ("KEYTURN_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
        Kind::Sqlite => return String::new(),
    };
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn flag(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Backends found unreachable, and why: later tests skip without waiting.
static UNREACHABLE: Mutex<Vec<(Kind, String)>> = Mutex::new(Vec::new());

fn new_seed() -> u64 {
    if let Some(s) = std::env::var("KEYTURN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
        ^ (COUNTER.fetch_add(1, Ordering::SeqCst) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// One test's database, files and keys. Cheap to clone.
#[derive(Clone)]
pub struct TestDb {
    pub kind: Kind,
    pub scenario: String,
    /// The URL keyturn is given.
    pub url: String,
    pub pool: Pool,
    pub seed: u64,
    /// Unique suffix for names in this test.
    pub tag: String,
    dir: Arc<tempfile::TempDir>,
    /// Key material (base64 and hex) that must never appear in any output.
    secrets: Arc<Mutex<Vec<String>>>,
    /// Server URL and database name to drop at the end.
    drop: Option<(String, String)>,
    files: Arc<AtomicUsize>,
}

impl std::fmt::Debug for TestDb {
    /// The backend, scenario and URL; never the key material it tracks.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TestDb({} {} {})",
            self.kind.name(),
            self.scenario,
            keyturn_db::redact_url(&self.url)
        )
    }
}

impl TestDb {
    /// Creates the test database, or returns `None` (test skipped) when the
    /// server is unreachable and `KEYTURN_REQUIRE_DBS` is not set.
    pub async fn create(kind: Kind, scenario: &str) -> Option<TestDb> {
        let seed = new_seed();
        let tag = format!("{:06x}", seed & 0xff_ffff);
        let short: String = scenario.chars().take(36).collect();
        let db_name = format!("kt_{short}_{tag}");
        let dir = Arc::new(
            tempfile::Builder::new()
                .prefix(&format!("keyturn-itest-{short}-"))
                .tempdir()
                .expect("temp dir"),
        );
        let (url, pool, drop) = match kind {
            Kind::Sqlite => {
                let path = dir.path().join("test.db");
                let url = format!("sqlite://{}", path.display());
                let opts = SqliteConnectOptions::from_str(&url)
                    .expect("sqlite url")
                    .create_if_missing(true)
                    .busy_timeout(Duration::from_secs(30));
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(opts)
                    .await
                    .expect("creating the SQLite test database");
                (url, Pool::Sqlite(pool), None)
            }
            Kind::Postgres | Kind::MariaDb => {
                let server = env_url(kind);
                let url = with_database(&server, &db_name);
                let known = UNREACHABLE
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map(|(_, why)| why.clone());
                let created = match known {
                    Some(why) => Err(CreateError::Unreachable(why)),
                    None => create_db(kind, &server, &db_name).await,
                };
                match created {
                    Ok(()) => {}
                    Err(CreateError::Failed(e)) => panic!("{e}"),
                    Err(CreateError::Unreachable(e)) => {
                        UNREACHABLE.lock().unwrap().push((kind, e.clone()));
                        let msg = format!(
                            "SKIPPED: {} not reachable at {} ({e})",
                            kind.name(),
                            redact(&server)
                        );
                        if flag("KEYTURN_REQUIRE_DBS") {
                            panic!("{msg}, and KEYTURN_REQUIRE_DBS=1");
                        }
                        // Straight to stderr: the test harness captures
                        // eprintln! of passing tests.
                        use std::io::Write as _;
                        let _ = writeln!(std::io::stderr(), "\n!!!!!!!!!! {msg} !!!!!!!!!!");
                        return None;
                    }
                }
                let pool = match kind {
                    Kind::Postgres => Pool::Pg(
                        PgPoolOptions::new()
                            .max_connections(4)
                            .connect(&url)
                            .await
                            .expect("connecting to the test database"),
                    ),
                    _ => Pool::My(
                        MySqlPoolOptions::new()
                            .max_connections(4)
                            .connect(&url)
                            .await
                            .expect("connecting to the test database"),
                    ),
                };
                (url, pool, Some((server, db_name)))
            }
        };
        Some(TestDb {
            kind,
            scenario: scenario.to_owned(),
            url,
            pool,
            seed,
            tag,
            dir,
            secrets: Arc::new(Mutex::new(Vec::new())),
            drop,
            files: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Another empty database of the same kind on the same server (for
    /// tests that need two). Call [`TestDb::finish`] on it.
    pub async fn sibling(&self, name: &str) -> TestDb {
        let mut t = TestDb::create(self.kind, &format!("{}_{name}", self.scenario))
            .await
            .expect("the server was reachable a moment ago");
        t.secrets = self.secrets.clone();
        t
    }

    /// Closes the pool and drops the test database (unless KEYTURN_TEST_KEEP=1).
    pub async fn finish(&self) {
        on_pool!(&self.pool, p => p.close().await);
        if flag("KEYTURN_TEST_KEEP") {
            let keep = self.dir.path().to_owned();
            std::mem::forget(self.dir.clone());
            eprintln!("kept: {} and {}", redact(&self.url), keep.display());
            return;
        }
        if let Some((server, db)) = &self.drop {
            let r = match self.kind {
                Kind::Postgres => drop_pg(server, db).await,
                _ => drop_my(server, db).await,
            };
            if let Err(e) = r {
                eprintln!("warning: could not drop test database {db}: {e}");
            }
        }
    }

    /// The test's folder, where its configs are written.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn rng(&self) -> fastrand::Rng {
        fastrand::Rng::with_seed(self.seed)
    }

    /// A table name unique to this test: `kt_<what>_<tag>`.
    pub fn table_name(&self, what: &str) -> String {
        format!("kt_{what}_{}", self.tag)
    }

    fn ph(&self, n: usize) -> String {
        match self.kind {
            Kind::Postgres => format!("${n}"),
            _ => "?".into(),
        }
    }

    pub fn pk_type(&self, k: PkKind) -> &'static str {
        match (self.kind, k) {
            (Kind::Sqlite, PkKind::Int) => "INTEGER",
            (_, PkKind::Int) => "BIGINT",
            (_, PkKind::Text) => "VARCHAR(64)",
        }
    }

    pub fn col_type(&self, k: ColKind) -> &'static str {
        match (self.kind, k) {
            (Kind::MariaDb, ColKind::Text) => "LONGTEXT",
            (Kind::MariaDb, ColKind::Binary) => "LONGBLOB",
            (Kind::Postgres, ColKind::Binary) => "BYTEA",
            (Kind::Sqlite, ColKind::Binary) => "BLOB",
            (_, ColKind::Text) => "TEXT",
        }
    }

    /// Runs statements (no results).
    pub async fn exec(&self, sql: &str) {
        on_pool!(&self.pool, p => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(p)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    }

    /// `CREATE TABLE` for a test table (plus any extra column definitions).
    pub async fn create_table(&self, t: &Table, extra: &[&str]) {
        let mut defs: Vec<String> =
            t.pk.iter()
                .map(|(n, k)| format!("{n} {} NOT NULL", self.pk_type(*k)))
                .collect();
        defs.extend(
            t.cols
                .iter()
                .map(|c| format!("{} {}", c.name, self.col_type(c.kind))),
        );
        defs.extend(extra.iter().map(|s| (*s).to_owned()));
        let pk: Vec<&str> = t.pk.iter().map(|(n, _)| n.as_str()).collect();
        defs.push(format!("PRIMARY KEY ({})", pk.join(", ")));
        let suffix = if self.kind == Kind::MariaDb {
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        } else {
            ""
        };
        self.exec(&format!(
            "CREATE TABLE {} ({}){suffix}",
            t.name,
            defs.join(", ")
        ))
        .await;
    }

    /// A table `name` with an integer key `id` and one text column
    /// `column`, holding the plaintext `value-1` … `value-n` (the suites'
    /// starting point for a run to encrypt).
    pub async fn plaintext_table(&self, name: &str, column: &str, n: i64) -> Table {
        let tb = Table::new(
            name,
            &[("id", PkKind::Int)],
            &[(column, ColKind::Text, false)],
        );
        self.create_table(&tb, &[]).await;
        let data: Data = (1..=n)
            .map(|i| (int_pk(i), vec![Some(format!("value-{i}").into_bytes())]))
            .collect();
        self.insert(&tb, &data).await;
        tb
    }

    /// Inserts rows (plaintext or ciphertext, as given).
    pub async fn insert(&self, t: &Table, data: &Data) {
        let ncols = t.pk.len() + t.cols.len();
        let names: Vec<&str> =
            t.pk.iter()
                .map(|(n, _)| n.as_str())
                .chain(t.cols.iter().map(|c| c.name.as_str()))
                .collect();
        let rows: Vec<Vec<Val>> = data
            .iter()
            .map(|(pk, vals)| {
                pk.iter()
                    .map(Val::pk)
                    .chain(
                        t.cols
                            .iter()
                            .zip(vals)
                            .map(|(c, v)| Val::value(c.kind, v.as_deref())),
                    )
                    .collect()
            })
            .collect();
        let sizes: Vec<usize> = data
            .values()
            .map(|v| v.iter().flatten().map(Vec::len).sum())
            .collect();
        // Chunks stay under every backend's parameter and packet limits.
        let mut start = 0;
        while start < rows.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < rows.len() && (end - start + 1) * ncols <= 900 && bytes < (4 << 20) {
                bytes += sizes[end];
                end += 1;
            }
            let chunk = &rows[start..end];
            let mut n = 0;
            let tuples: Vec<String> = chunk
                .iter()
                .map(|_| {
                    let phs: Vec<String> = (0..ncols)
                        .map(|_| {
                            n += 1;
                            self.ph(n)
                        })
                        .collect();
                    format!("({})", phs.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {}",
                t.name,
                names.join(", "),
                tuples.join(", ")
            );
            on_pool!(&self.pool, p => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for row in chunk {
                    for v in row {
                        q = bind_val!(q, v);
                    }
                }
                q.execute(p).await.unwrap_or_else(|e| panic!("inserting into {}: {e}", t.name));
            });
            start = end;
        }
    }

    /// Every row's stored values, in primary-key order.
    pub async fn read(&self, t: &Table) -> Data {
        let names: Vec<&str> =
            t.pk.iter()
                .map(|(n, _)| n.as_str())
                .chain(t.cols.iter().map(|c| c.name.as_str()))
                .collect();
        let pk: Vec<&str> = t.pk.iter().map(|(n, _)| n.as_str()).collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            names.join(", "),
            t.name,
            pk.join(", ")
        );
        let mut out = Data::new();
        on_pool!(&self.pool, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_all(p)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            for r in rows {
                let mut key = Vec::new();
                for (i, (_, k)) in t.pk.iter().enumerate() {
                    key.push(match k {
                        PkKind::Int => PkValue::Int(r.try_get::<i64, _>(i).expect("int key")),
                        PkKind::Text => PkValue::Text(r.try_get::<String, _>(i).expect("text key")),
                    });
                }
                let mut vals = Vec::new();
                for (j, c) in t.cols.iter().enumerate() {
                    let i = t.pk.len() + j;
                    vals.push(match c.kind {
                        ColKind::Text => r
                            .try_get::<Option<String>, _>(i)
                            .expect("text value")
                            .map(String::into_bytes),
                        ColKind::Binary => r.try_get::<Option<Vec<u8>>, _>(i).expect("binary value"),
                    });
                }
                out.insert(key, vals);
            }
        });
        out
    }

    /// Sets one value of one row (`None` = NULL), like an application would.
    pub async fn set(&self, t: &Table, pk: &[PkValue], col: usize, v: Option<&[u8]>) -> u64 {
        let c = &t.cols[col];
        let conds: Vec<String> =
            t.pk.iter()
                .enumerate()
                .map(|(i, (n, _))| format!("{n} = {}", self.ph(i + 2)))
                .collect();
        let sql = format!(
            "UPDATE {} SET {} = {} WHERE {}",
            t.name,
            c.name,
            self.ph(1),
            conds.join(" AND ")
        );
        let val = Val::value(c.kind, v);
        on_pool!(&self.pool, p => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            q = bind_val!(q, &val);
            for k in pk {
                q = bind_val!(q, &Val::pk(k));
            }
            q.execute(p).await.unwrap_or_else(|e| panic!("{sql}: {e}")).rows_affected()
        })
    }

    /// The first column of the first row, as an integer (counts).
    pub async fn count(&self, sql: &str) -> i64 {
        on_pool!(&self.pool, p => {
            let r = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(p)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            r.try_get::<i64, _>(0).unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }

    /// Rows of text columns.
    pub async fn strings(&self, sql: &str) -> Vec<Vec<String>> {
        on_pool!(&self.pool, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_all(p)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.try_get::<String, _>(i).unwrap_or_else(|e| panic!("{sql}: {e}")))
                        .collect()
                })
                .collect()
        })
    }

    pub async fn table_exists(&self, name: &str) -> bool {
        let sql = match self.kind {
            Kind::Sqlite => {
                format!(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{name}'"
                )
            }
            Kind::Postgres => format!(
                "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = '{name}'"
            ),
            Kind::MariaDb => format!(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{name}'"
            ),
        };
        self.count(&sql).await > 0
    }

    /// keyturn's bookkeeping tables that exist in this database.
    pub async fn keyturn_tables(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for t in [
            "keyturn_checkpoints",
            "keyturn_runs",
            "keyturn_bad_rows",
            "keyturn_lock",
        ] {
            if self.table_exists(t).await {
                out.push(t);
            }
        }
        out
    }

    /// Rows in a bookkeeping table about test table `table` (0 if the
    /// bookkeeping table does not exist).
    pub async fn meta_rows(&self, meta: &str, table: &str) -> i64 {
        if !self.table_exists(meta).await {
            return 0;
        }
        self.count(&format!(
            "SELECT COUNT(*) FROM {meta} WHERE table_name = '{table}'"
        ))
        .await
    }

    // -----------------------------------------------------------------------
    // Keys
    // -----------------------------------------------------------------------

    /// A new random key; its material is registered as a secret that no
    /// output may contain.
    pub fn key(&self, id: &str) -> Key {
        let spec = KeySpec::generate(
            keyturn_format::KeyId::new(id).expect("key id"),
            keyturn_format::Algorithm::Aes256Gcm,
        )
        .expect("key generation");
        let text = spec.to_spec_string().to_string();
        let b64 = text.rsplit(':').next().expect("spec").to_owned();
        let hex: String = spec
            .key
            .expose_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.add_secret(&b64);
        self.add_secret(&hex);
        Key {
            id: id.to_owned(),
            spec: text,
        }
    }

    pub fn add_secret(&self, s: &str) {
        self.secrets.lock().unwrap().push(s.to_owned());
    }

    /// Fails if any 12-character window of any secret appears in `text`.
    pub fn assert_no_secrets(&self, what: &str, text: &str) {
        for s in self.secrets.lock().unwrap().iter() {
            let b = s.as_bytes();
            for w in b.windows(12.min(b.len())) {
                let w = std::str::from_utf8(w).unwrap_or_default();
                assert!(
                    !text.contains(w),
                    "key material ({w:?}…) appears in {what}:\n{text}"
                );
            }
        }
    }

    // -----------------------------------------------------------------------
    // The keyturn binary
    // -----------------------------------------------------------------------

    fn write_config(&self, cfg: &Cfg) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.path().join(format!("keyturn-{n}.toml"));
        let sources: Vec<String> = match &cfg.sources {
            Some(list) => list.iter().map(|s| toml_str(s)).collect(),
            None => vec![toml_str(&format!("env:{KEYS_ENV}"))],
        };
        let mut s = format!(
            "[database]\nurl = {}\n\n[keys]\nsources = [{}]\n",
            toml_str(cfg.url.as_deref().unwrap_or(&self.url)),
            sources.join(", ")
        );
        if let Some(p) = &cfg.primary {
            s.push_str(&format!("primary = {}\n", toml_str(p)));
        }
        let retired: Vec<String> = cfg.retired.iter().map(|r| toml_str(r)).collect();
        s.push_str(&format!(
            "retired = [{}]\nallow_retired = {}\n\n[rotation]\nbatch_size = {}\nworkers = {}\n\n",
            retired.join(", "),
            cfg.allow_retired,
            cfg.batch_size,
            cfg.workers
        ));
        if !cfg.rotation_toml.is_empty() {
            // Into the [rotation] section just written, before its blank line.
            s.truncate(s.trim_end().len());
            s.push('\n');
            s.push_str(cfg.rotation_toml.trim_end());
            s.push_str("\n\n");
        }
        for t in &cfg.tables {
            s.push_str(&t.target_toml());
            s.push('\n');
        }
        s.push_str(&cfg.extra_toml);
        std::fs::write(&path, s).expect("writing the config");
        path
    }

    fn command(&self, cfg: &Cfg, args: &[&str]) -> Command {
        let path = self.write_config(cfg);
        let mut c = Command::new(binary());
        c.arg("--config")
            .arg(path)
            .args(args)
            .env(KEYS_ENV, cfg.keys_env())
            .env("NO_COLOR", "1")
            .env_remove("KEYTURN_LOG")
            .env_remove("KEYTURN_CONFIG")
            .env_remove("KEYTURN_KEYS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &cfg.env {
            c.env(k, v);
        }
        c
    }

    /// Runs `keyturn --config <cfg> <args>` to completion (5 minutes at most).
    pub async fn keyturn(&self, cfg: &Cfg, args: &[&str]) -> Out {
        self.spawn(cfg, args).wait(Duration::from_secs(300)).await
    }

    /// Runs `keyturn <args> 2>&1 | <reader>` through bash: keyturn's stdout
    /// and stderr are one real pipe, whose read end closes when `reader`
    /// exits (`head -n 1`: after the first line; `true`: at once). The exit
    /// code is keyturn's; stdout is what `reader` let through.
    pub async fn keyturn_into_pipe(&self, cfg: &Cfg, args: &[&str], reader: &str) -> Out {
        let inner = self.command(cfg, args);
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(format!(
                "\"$0\" \"$@\" 2>&1 | {reader}; exit ${{PIPESTATUS[0]}}"
            ))
            .arg(inner.get_program())
            .args(inner.get_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        self.spawn_command(c, &format!("keyturn {} | {reader}", args.join(" ")))
            .wait(Duration::from_secs(300))
            .await
    }

    /// Starts `keyturn` in the background.
    pub fn spawn(&self, cfg: &Cfg, args: &[&str]) -> Proc {
        let cmd = self.command(cfg, args);
        self.spawn_command(cmd, &format!("keyturn {}", args.join(" ")))
    }

    fn spawn_command(&self, mut cmd: Command, label: &str) -> Proc {
        let mut child = cmd.spawn().expect("starting keyturn");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let t_out = pump(child.stdout.take().expect("stdout"), stdout.clone());
        let t_err = pump(child.stderr.take().expect("stderr"), stderr.clone());
        Proc {
            t: self.clone(),
            label: label.to_owned(),
            child,
            stdout,
            stderr,
            pumps: vec![t_out, t_err],
        }
    }
}

fn pump(r: impl Read + Send + 'static, buf: Arc<Mutex<String>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        while let Ok(n) = r.read_until(b'\n', &mut line) {
            if n == 0 {
                break;
            }
            buf.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    })
}

/// A running `keyturn` process.
pub struct Proc {
    t: TestDb,
    label: String,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    pumps: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proc({}, pid {})", self.label, self.child.id())
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn finished(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `pattern`; fails if the process ends first.
    pub async fn wait_stderr(&mut self, pattern: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.stderr.lock().unwrap().contains(pattern) {
                return;
            }
            if self.finished() || start.elapsed() > timeout {
                let label = self.label.clone();
                let out = self.kill_in_place();
                panic!("{label}: no {pattern:?} on stderr\n{out}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends SIGINT (what Ctrl-C sends).
    pub fn sigint(&self) {
        let ok = Command::new("kill")
            .arg("-INT")
            .arg(self.pid().to_string())
            .status()
            .expect("running kill")
            .success();
        assert!(ok, "kill -INT {} failed", self.pid());
    }

    /// SIGSTOP: the process freezes (its connections stay open, silent).
    pub fn sigstop(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: a stopped process goes on.
    pub fn sigcont(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(sig)
            .arg(self.pid().to_string())
            .status()
            .expect("running kill")
            .success();
        assert!(ok, "kill {sig} {} failed", self.pid());
    }

    /// SIGKILL (`Child::kill`), then reaps the process so its pid is gone.
    pub fn kill(mut self) -> Out {
        self.kill_in_place()
    }

    fn kill_in_place(&mut self) -> Out {
        let _ = self.child.kill();
        let status = self.child.wait().expect("reaping keyturn");
        self.collect(status)
    }

    /// Waits for the process to exit; kills it and fails after `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> Out {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return self.collect(status);
            }
            if start.elapsed() > timeout {
                let label = self.label.clone();
                let out = self.kill();
                panic!("{label} did not finish within {timeout:?}\n{out}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn collect(&mut self, status: std::process::ExitStatus) -> Out {
        for p in self.pumps.drain(..) {
            let _ = p.join();
        }
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| -status.signal().unwrap_or(0));
        let out = Out {
            label: self.label.clone(),
            code,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        };
        self.t
            .assert_no_secrets(&format!("stdout of {}", out.label), &out.stdout);
        self.t
            .assert_no_secrets(&format!("stderr of {}", out.label), &out.stderr);
        out
    }
}

/// What a finished `keyturn` printed and how it exited (`-N`: killed by
/// signal N).
#[derive(Clone, Debug)]
pub struct Out {
    pub label: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = |s: &str| -> String {
            if s.len() > 6000 {
                let end = (0..=6000)
                    .rev()
                    .find(|&i| s.is_char_boundary(i))
                    .unwrap_or(0);
                format!("{}… ({} bytes)", &s[..end], s.len())
            } else {
                s.to_owned()
            }
        };
        write!(
            f,
            "--- {} exited {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.label,
            self.code,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}

impl Out {
    /// Fails unless the exit code is `code`.
    pub fn expect(self, code: i32) -> Out {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{self}"))
    }
}

/// A data key: id and spec (`id:alg:base64`).
#[derive(Clone)]
pub struct Key {
    pub id: String,
    pub spec: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

/// A keyring in the test process (for seeding and checking values).
pub fn ring(keys: &[&Key], primary: &str) -> Keyring {
    let pairs = keys
        .iter()
        .map(|k| {
            let s = KeySpec::parse(&k.spec).expect("spec");
            (s.id, s.key)
        })
        .collect();
    Keyring::from_keys(pairs, Some(primary), &[]).expect("keyring")
}

/// What one `keyturn` run is configured with.
#[derive(Clone, Debug)]
pub struct Cfg {
    pub keys: Vec<Key>,
    pub primary: Option<String>,
    pub retired: Vec<String>,
    pub allow_retired: bool,
    pub batch_size: usize,
    pub workers: usize,
    pub tables: Vec<Table>,
    /// Another database URL than the test's.
    pub url: Option<String>,
    /// Raw text for the key env var instead of `keys` (bad-key tests).
    pub keys_text: Option<String>,
    /// Extra environment variables for the process.
    pub env: Vec<(String, String)>,
    /// `[keys] sources` as written, instead of the test's env var.
    pub sources: Option<Vec<String>>,
    /// Appended to the config as written (sections the `Table`s cannot
    /// express: keyrings, multi-column targets).
    pub extra_toml: String,
    /// Lines added to the `[rotation]` section (`max_replica_lag = "1s"`).
    pub rotation_toml: String,
}

impl Cfg {
    pub fn new(tables: &[&Table], keys: &[&Key], primary: &str) -> Cfg {
        Cfg {
            keys: keys.iter().map(|k| (*k).clone()).collect(),
            primary: Some(primary.to_owned()),
            retired: Vec::new(),
            allow_retired: false,
            batch_size: 200,
            workers: 2,
            tables: tables.iter().map(|t| (*t).clone()).collect(),
            url: None,
            keys_text: None,
            env: Vec::new(),
            sources: None,
            extra_toml: String::new(),
            rotation_toml: String::new(),
        }
    }

    fn keys_env(&self) -> String {
        if let Some(t) = &self.keys_text {
            return t.clone();
        }
        self.keys
            .iter()
            .map(|k| k.spec.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// Checks every row of `stored` against the plaintexts in `expected`: same
/// rows, NULL where NULL, and otherwise a ciphertext in the column's
/// encoding, under key `key_id`, that decrypts (with the row's context) to
/// the expected plaintext.
pub fn assert_decrypts(t: &Table, stored: &Data, expected: &Data, ring: &Keyring, key_id: &str) {
    assert_eq!(
        stored.len(),
        expected.len(),
        "{}: {} rows stored, {} expected",
        t.name,
        stored.len(),
        expected.len()
    );
    let mut failures = Vec::new();
    for (pk, want) in expected {
        let Some(got) = stored.get(pk) else {
            failures.push(format!("row {pk:?} is missing"));
            continue;
        };
        for (i, c) in t.cols.iter().enumerate() {
            let why = match (&want[i], &got[i]) {
                (None, None) => None,
                (None, Some(v)) => Some(format!("NULL expected, {} bytes stored", v.len())),
                (Some(_), None) => Some("value expected, NULL stored".to_string()),
                (Some(p), Some(v)) => check_value(t, i, pk, v, p, ring, key_id).err(),
            };
            if let Some(why) = why {
                failures.push(format!("{}.{} row {pk:?}: {why}", t.name, c.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} values wrong, first ones:\n  {}",
        failures.len(),
        failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// One stored value against its expected plaintext.
pub fn check_value(
    t: &Table,
    col: usize,
    pk: &[PkValue],
    stored: &[u8],
    plaintext: &[u8],
    ring: &Keyring,
    key_id: &str,
) -> Result<(), String> {
    let h = v1::peek(stored).map_err(|e| format!("not a ciphertext: {e}"))?;
    let enc = match t.cols[col].kind {
        ColKind::Text => v1::Encoding::Text,
        ColKind::Binary => v1::Encoding::Binary,
    };
    if h.encoding != enc {
        return Err(format!("{:?} encoding in a {enc:?} column", h.encoding));
    }
    if h.key_id != key_id {
        return Err(format!("under key {:?}, expected {key_id:?}", h.key_id));
    }
    let parts = t.context(col, pk);
    let ctx: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let p = ring
        .decrypt(stored, &ctx)
        .map_err(|e| format!("does not decrypt: {e}"))?;
    if p.as_slice() != plaintext {
        return Err(format!(
            "decrypts to {} bytes that differ from the {} expected",
            p.len(),
            plaintext.len()
        ));
    }
    Ok(())
}

/// Encrypts plaintext rows in the test process (values under `ring`'s
/// primary key, with each row's context).
pub fn encrypt_rows(t: &Table, plain: &Data, ring: &Keyring) -> Data {
    plain
        .iter()
        .map(|(pk, vals)| {
            let enc = vals
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_ref().map(|p| encrypt_one(t, i, pk, p, ring)))
                .collect();
            (pk.clone(), enc)
        })
        .collect()
}

pub fn encrypt_one(t: &Table, col: usize, pk: &[PkValue], plain: &[u8], ring: &Keyring) -> Vec<u8> {
    let parts = t.context(col, pk);
    let ctx: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let enc = match t.cols[col].kind {
        ColKind::Text => v1::Encoding::Text,
        ColKind::Binary => v1::Encoding::Binary,
    };
    ring.encrypt(plain, &ctx, enc).expect("encrypting")
}

/// Number of non-NULL values per column.
pub fn non_null(data: &Data, col: usize) -> u64 {
    data.values().filter(|v| v[col].is_some()).count() as u64
}

// ---------------------------------------------------------------------------
// Server databases
// ---------------------------------------------------------------------------

/// Why a test database could not be created.
enum CreateError {
    /// The server cannot be reached: the test is skipped (or fails with
    /// KEYTURN_REQUIRE_DBS=1).
    Unreachable(String),
    /// Reached, but CREATE DATABASE failed: always a failure.
    Failed(String),
}

/// `CREATE DATABASE` through one plain connection (which, unlike a pool,
/// fails at once when the server is down).
async fn create_db(kind: Kind, server: &str, db: &str) -> Result<(), CreateError> {
    use sqlx::Connection as _;
    let timeout = Duration::from_secs(5);
    let unreachable = |e: String| CreateError::Unreachable(e);
    let failed = |e: sqlx::Error| {
        CreateError::Failed(format!(
            "CREATE DATABASE {db}: {e} (the suite needs a user that may create databases)"
        ))
    };
    let sql = match kind {
        Kind::Postgres => format!("CREATE DATABASE {db}"),
        _ => format!("CREATE DATABASE {db} CHARACTER SET utf8mb4"),
    };
    match kind {
        Kind::Postgres => {
            let mut c = tokio::time::timeout(timeout, sqlx::PgConnection::connect(server))
                .await
                .map_err(|_| unreachable("timed out".into()))?
                .map_err(|e| unreachable(e.to_string()))?;
            let r = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await;
            let _ = c.close().await;
            r.map(|_| ()).map_err(failed)
        }
        _ => {
            let mut c = tokio::time::timeout(timeout, sqlx::MySqlConnection::connect(server))
                .await
                .map_err(|_| unreachable("timed out".into()))?
                .map_err(|e| unreachable(e.to_string()))?;
            let r = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await;
            let _ = c.close().await;
            r.map(|_| ()).map_err(failed)
        }
    }
}

async fn drop_pg(server: &str, db: &str) -> Result<(), String> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let r = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(&pool)
    .await;
    pool.close().await;
    r.map(|_| ()).map_err(|e| e.to_string())
}

async fn drop_my(server: &str, db: &str) -> Result<(), String> {
    let pool = MySqlPoolOptions::new()
        .max_connections(1)
        .connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let r = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
        .execute(&pool)
        .await;
    pool.close().await;
    r.map(|_| ()).map_err(|e| e.to_string())
}
