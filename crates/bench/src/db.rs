//! What the benchmark itself does to the database: build the table, reset
//! the server between measurements, the one-statement in-place rewrite (the
//! floor) and the per-row OFFSET loop (the baseline).

use anyhow::{Context, Result, bail, ensure};
use keyturn_format::{Encoding, Keyring, Reencrypted};
use keyturn_test_support::{Pool, on_pool};
use rayon::prelude::*;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolCopyExt, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Row as _};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Plaintext length of every value.
pub const PLAINTEXT_LEN: usize = 60;
/// Rows generated, encrypted and inserted per step while building a table.
const LOAD_CHUNK: u64 = 50_000;
/// Rows per multi-row INSERT statement (MariaDB, SQLite).
const INSERT_ROWS: u64 = 5_000;
/// Page size of the per-row baseline.
pub const BASELINE_PAGE: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    MySql,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "SQLite",
            Kind::Postgres => "PostgreSQL",
            Kind::MySql => "MariaDB",
        }
    }
}

pub struct BenchDb {
    pub kind: Kind,
    pool: Pool,
}

/// What one per-row baseline run did.
#[derive(Clone, Debug)]
pub struct Baseline {
    pub rows: u64,
    pub seconds: f64,
    /// Rows per second in each tenth of the run, first to last: shows the
    /// OFFSET scan's quadratic cost.
    pub tenths: Vec<f64>,
    /// Seconds spent in the page SELECTs, per tenth: grows linearly with
    /// the offset, so the total is quadratic in the table size.
    pub select_s: Vec<f64>,
    /// Seconds spent in the row UPDATEs (commits included), per tenth.
    pub update_s: Vec<f64>,
}

impl Baseline {
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.seconds
    }
}

/// The plaintext of row `id`: 60 bytes, different per row.
pub fn plaintext(id: u64) -> [u8; PLAINTEXT_LEN] {
    let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    let s = format!("patient {id:012} note {h:016x} {:021}", h % 1_000_000_007);
    let mut out = [0u8; PLAINTEXT_LEN];
    out.copy_from_slice(&s.as_bytes()[..PLAINTEXT_LEN]);
    out
}

/// Ciphertexts of rows `from..to` under the ring's primary key, text
/// encoding, no associated data; encrypted in parallel.
fn encrypt_range(ring: &Keyring, from: u64, to: u64) -> Result<Vec<String>> {
    (from..to)
        .into_par_iter()
        .map(|id| {
            let ct = ring.encrypt(&plaintext(id), &[], Encoding::Text)?;
            let s = String::from_utf8(ct).context("text ciphertext is not UTF-8")?;
            // Inlined into SQL below: must be base64url and ':' only.
            ensure!(
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'-' || b == b'_'),
                "unexpected character in a text ciphertext"
            );
            Ok(s)
        })
        .collect()
}

/// Pre-encrypted values for an application's writes: `n` ciphertexts of
/// different plaintexts under the ring's primary key (text encoding, no
/// associated data), each checked to be safe to inline into SQL.
pub fn sample_values(ring: &Keyring, n: u64) -> Result<Vec<String>> {
    // Ids past any table's end: plaintexts the fill never used.
    encrypt_range(ring, 1 << 40, (1 << 40) + n)
}

impl BenchDb {
    pub async fn connect(kind: Kind, url: &str) -> Result<BenchDb> {
        let pool = match kind {
            Kind::Postgres => Pool::Pg(
                PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(PgConnectOptions::from_str(url)?)
                    .await
                    .with_context(|| format!("connecting to {url}"))?,
            ),
            Kind::MySql => Pool::My(
                MySqlPoolOptions::new()
                    .max_connections(2)
                    .connect_with(MySqlConnectOptions::from_str(url)?)
                    .await
                    .with_context(|| format!("connecting to {url}"))?,
            ),
            Kind::Sqlite => Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(
                        SqliteConnectOptions::from_str(url)?
                            .create_if_missing(true)
                            // WAL, as a live database serving an application
                            // alongside a rotation would be; keyturn keeps
                            // whatever mode the file has.
                            .journal_mode(SqliteJournalMode::Wal)
                            .busy_timeout(Duration::from_secs(60)),
                    )
                    .await
                    .with_context(|| format!("opening {url}"))?,
            ),
        };
        Ok(BenchDb { kind, pool })
    }

    pub async fn close(&self) {
        on_pool!(&self.pool, p => p.close().await)
    }

    /// One statement through the simple (text) protocol; rows affected.
    async fn exec(&self, sql: &str) -> Result<u64> {
        on_pool!(&self.pool, p => sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .with_context(|| format!("running {sql:?}"))
    }

    async fn scalar(&self, sql: &str) -> Result<i64> {
        on_pool!(&self.pool, p => sqlx::query(AssertSqlSafe(sql.to_owned()))
            .fetch_one(p)
            .await
            .and_then(|r| r.try_get::<i64, _>(0)))
        .with_context(|| format!("running {sql:?}"))
    }

    pub async fn server_version(&self) -> Result<String> {
        let sql = match self.kind {
            Kind::Postgres => "SELECT version()",
            Kind::MySql => "SELECT CONCAT('MariaDB/MySQL ', VERSION())",
            Kind::Sqlite => "SELECT 'SQLite ' || sqlite_version()",
        };
        on_pool!(&self.pool, p => sqlx::query(sql)
            .fetch_one(p)
            .await
            .and_then(|r| r.try_get::<String, _>(0)))
        .context("reading the server version")
    }

    /// Rows whose value starts with `prefix` (an ASCII prefix without `%`
    /// or `_`).
    pub async fn count_prefix(&self, table: &str, prefix: &str) -> Result<u64> {
        let n = self
            .scalar(&format!(
                "SELECT COUNT(*) FROM {table} WHERE c LIKE '{prefix}%'"
            ))
            .await?;
        Ok(n as u64)
    }

    /// Drops and creates `table` with `rows` rows encrypted under the ring's
    /// primary key, and forgets any keyturn checkpoint left for it.
    pub async fn create_table(&self, table: &str, rows: u64, ring: &Keyring) -> Result<()> {
        self.create_empty(table).await?;
        let mut from = 1;
        while from <= rows {
            let to = (from + LOAD_CHUNK).min(rows + 1);
            let values = encrypt_range(ring, from, to)?;
            self.insert(table, from, &values).await?;
            from = to;
        }
        self.analyze_and_count(table, rows).await
    }

    /// Drops and creates `table` holding `values` (ids 1..=N), which must
    /// be safe to inline in a SQL string literal (the caller checks), and
    /// forgets any keyturn checkpoint left for it.
    pub async fn create_values_table(&self, table: &str, values: &[String]) -> Result<()> {
        self.create_empty(table).await?;
        let mut first = 1u64;
        for chunk in values.chunks(LOAD_CHUNK as usize) {
            self.insert(table, first, chunk).await?;
            first += chunk.len() as u64;
        }
        self.analyze_and_count(table, values.len() as u64).await
    }

    async fn create_empty(&self, table: &str) -> Result<()> {
        self.exec(&format!("DROP TABLE IF EXISTS {table}")).await?;
        // A checkpoint from an interrupted earlier benchmark would make
        // keyturn resume half-way; the table may not exist yet.
        let _ = self
            .exec(&format!(
                "DELETE FROM keyturn_checkpoints WHERE table_name = '{table}'"
            ))
            .await;
        let ddl = match self.kind {
            Kind::Postgres => format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, c TEXT)"),
            Kind::MySql => {
                format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, c TEXT) ENGINE=InnoDB")
            }
            // The rowid alias: SQLite's own way to spell a BIGINT key.
            Kind::Sqlite => format!("CREATE TABLE {table} (id INTEGER PRIMARY KEY, c TEXT)"),
        };
        self.exec(&ddl).await?;
        Ok(())
    }

    async fn analyze_and_count(&self, table: &str, rows: u64) -> Result<()> {
        match self.kind {
            Kind::Postgres => {
                self.exec(&format!("VACUUM ANALYZE {table}")).await?;
            }
            Kind::MySql => {
                self.exec(&format!("ANALYZE TABLE {table}")).await?;
            }
            Kind::Sqlite => {
                self.exec("ANALYZE").await?;
            }
        }
        let n = self
            .scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .await?;
        ensure!(n as u64 == rows, "{table} holds {n} rows, expected {rows}");
        Ok(())
    }

    /// PostgreSQL: drops and creates `table` with `rows` rows filled by one
    /// `INSERT … SELECT … FROM generate_series`, each row one of 64
    /// ciphertexts under the ring's primary key (no associated data, so a
    /// value is valid in any row); forgets any keyturn checkpoint for it.
    pub async fn create_table_series(&self, table: &str, rows: u64, ring: &Keyring) -> Result<()> {
        ensure!(
            self.kind == Kind::Postgres,
            "generate_series fill: PostgreSQL only"
        );
        self.exec(&format!("DROP TABLE IF EXISTS {table}")).await?;
        let _ = self
            .exec(&format!(
                "DELETE FROM keyturn_checkpoints WHERE table_name = '{table}'"
            ))
            .await;
        self.exec(&format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, c TEXT)"
        ))
        .await?;
        let values = encrypt_range(ring, 1, 65)?;
        let array = values
            .iter()
            .map(|v| format!("'{v}'"))
            .collect::<Vec<_>>()
            .join(", ");
        self.exec(&format!(
            "INSERT INTO {table} (id, c) SELECT g, (ARRAY[{array}])[1 + g % 64] \
             FROM generate_series(1, {rows}) AS g"
        ))
        .await?;
        self.exec(&format!("VACUUM ANALYZE {table}")).await?;
        let n = self
            .scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .await?;
        ensure!(n as u64 == rows, "{table} holds {n} rows, expected {rows}");
        Ok(())
    }

    /// PostgreSQL: the current WAL insert position, in bytes.
    pub async fn wal_lsn(&self) -> Result<i64> {
        self.scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
            .await
    }

    /// MariaDB: bytes written to the InnoDB redo log since the server started.
    pub async fn redo_bytes(&self) -> Result<i64> {
        self.scalar(
            "SELECT CAST(VARIABLE_VALUE AS SIGNED) FROM information_schema.GLOBAL_STATUS \
             WHERE VARIABLE_NAME = 'INNODB_OS_LOG_WRITTEN'",
        )
        .await
    }

    /// The WAL (PostgreSQL) or redo log (MariaDB) position, in bytes.
    pub async fn log_position(&self) -> Result<i64> {
        match self.kind {
            Kind::Postgres => self.wal_lsn().await,
            Kind::MySql => self.redo_bytes().await,
            Kind::Sqlite => bail!("no server log on SQLite"),
        }
    }

    /// The table's size with its indexes (and TOAST), in bytes: PostgreSQL's
    /// `pg_total_relation_size`; InnoDB's data and index length after
    /// refreshing its statistics.
    pub async fn table_bytes(&self, table: &str) -> Result<i64> {
        match self.kind {
            Kind::Postgres => {
                self.scalar(&format!("SELECT pg_total_relation_size('{table}')"))
                    .await
            }
            Kind::MySql => {
                self.exec(&format!("ANALYZE TABLE {table}")).await?;
                self.scalar(&format!(
                    "SELECT CAST(data_length + index_length AS SIGNED) FROM information_schema.TABLES \
                     WHERE table_schema = DATABASE() AND table_name = '{table}'"
                ))
                .await
            }
            Kind::Sqlite => bail!("table size: not measured on SQLite"),
        }
    }

    async fn insert(&self, table: &str, first_id: u64, values: &[String]) -> Result<()> {
        match &self.pool {
            Pool::Pg(p) => {
                let mut buf = Vec::with_capacity(values.len() * 160);
                for (i, v) in values.iter().enumerate() {
                    buf.extend_from_slice(format!("{}\t{v}\n", first_id + i as u64).as_bytes());
                }
                let stmt = format!("COPY {table} (id, c) FROM STDIN");
                let mut copy = p.copy_in_raw(&stmt).await.context("starting COPY")?;
                copy.send(buf).await.context("sending COPY data")?;
                copy.finish().await.context("finishing COPY")?;
            }
            _ => {
                let mut stmts = vec!["BEGIN".to_string()];
                for (c, chunk) in values.chunks(INSERT_ROWS as usize).enumerate() {
                    let base = first_id + c as u64 * INSERT_ROWS;
                    let rows: Vec<String> = chunk
                        .iter()
                        .enumerate()
                        .map(|(i, v)| format!("({}, '{v}')", base + i as u64))
                        .collect();
                    stmts.push(format!(
                        "INSERT INTO {table} (id, c) VALUES {}",
                        rows.join(", ")
                    ));
                }
                stmts.push("COMMIT".into());
                // One connection for the whole transaction.
                on_pool!(&self.pool, p => {
                    let mut conn = p.acquire().await.context("acquiring a connection")?;
                    for s in &stmts {
                        sqlx::raw_sql(AssertSqlSafe(s.clone()))
                            .execute(&mut *conn)
                            .await
                            .context("inserting rows")?;
                    }
                });
            }
        }
        Ok(())
    }

    pub async fn drop_table(&self, table: &str) -> Result<()> {
        self.exec(&format!("DROP TABLE IF EXISTS {table}")).await?;
        Ok(())
    }

    /// Puts the server in the same state before every measurement: dead
    /// tuples vacuumed and a fresh checkpoint (PostgreSQL), file vacuumed and
    /// WAL emptied (SQLite), undo purged and dirty pages flushed (MariaDB,
    /// which has no VACUUM: waits for its background threads instead).
    pub async fn settle(&self, table: &str) -> Result<()> {
        match self.kind {
            Kind::Postgres => {
                self.exec(&format!("VACUUM ANALYZE {table}")).await?;
                self.exec("CHECKPOINT").await?;
            }
            Kind::Sqlite => {
                self.exec("VACUUM").await?;
                self.exec("PRAGMA wal_checkpoint(TRUNCATE)").await?;
            }
            Kind::MySql => {
                let started = Instant::now();
                loop {
                    let (history, dirty) = self.innodb_backlog().await?;
                    if history < 1_000 && dirty < 1_000 {
                        break;
                    }
                    if started.elapsed() > Duration::from_secs(180) {
                        eprintln!(
                            "  (MariaDB still busy after 180 s: history list {history}, dirty pages {dirty}; measuring anyway)"
                        );
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Ok(())
    }

    /// Like [`settle`](Self::settle), but on MariaDB waits only for the undo
    /// history to be purged (at most `patience`), not for dirty pages to be
    /// flushed: an application load writing between measurements keeps
    /// dirtying pages, and page flushing is part of what it measures.
    pub async fn settle_purge(&self, table: &str, patience: Duration) -> Result<()> {
        if self.kind != Kind::MySql {
            return self.settle(table).await;
        }
        let started = Instant::now();
        loop {
            let (history, _) = self.innodb_backlog().await?;
            if history < 1_000 {
                return Ok(());
            }
            if started.elapsed() > patience {
                eprintln!(
                    "  (MariaDB history list still {history} after {} s; measuring anyway)",
                    patience.as_secs()
                );
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// InnoDB's undo history length and dirty buffer-pool pages.
    async fn innodb_backlog(&self) -> Result<(i64, i64)> {
        let Pool::My(p) = &self.pool else {
            bail!("not MariaDB")
        };
        let rows = sqlx::query(
            "SELECT CAST(NAME AS CHAR), CAST(COUNT AS SIGNED) FROM information_schema.INNODB_METRICS \
             WHERE NAME IN ('trx_rseg_history_len', 'buffer_pool_pages_dirty')",
        )
        .fetch_all(p)
        .await
        .context("reading InnoDB metrics")?;
        let (mut history, mut dirty) = (0, 0);
        for r in rows {
            let name: String = r.try_get(0)?;
            let n: i64 = r.try_get(1)?;
            match name.as_str() {
                "trx_rseg_history_len" => history = n,
                _ => dirty = n,
            }
        }
        Ok((history, dirty))
    }

    /// The floor: the database rewriting every value of the column in place
    /// with one statement. Each value becomes a different value of the same
    /// length (the string rotated by one character; `forward = false`
    /// rotates it back), so no engine can skip a row as unchanged — MariaDB
    /// skips `SET c = c` — and every row costs what a rotation's write
    /// costs: a new version of a same-sized row. Returns the statement's
    /// time.
    pub async fn rewrite_in_place(
        &self,
        table: &str,
        rows: u64,
        forward: bool,
    ) -> Result<Duration> {
        let expr = match (self.kind, forward) {
            (Kind::Postgres | Kind::Sqlite, true) => "substr(c, 2) || substr(c, 1, 1)",
            (Kind::Postgres, false) => "right(c, 1) || left(c, -1)",
            (Kind::Sqlite, false) => "substr(c, -1) || substr(c, 1, length(c) - 1)",
            (Kind::MySql, true) => "CONCAT(SUBSTRING(c, 2), LEFT(c, 1))",
            (Kind::MySql, false) => "CONCAT(RIGHT(c, 1), LEFT(c, CHAR_LENGTH(c) - 1))",
        };
        let sql = format!("UPDATE {table} SET c = {expr}");
        let started = Instant::now();
        let n = self.exec(&sql).await?;
        let took = started.elapsed();
        ensure!(n == rows, "{sql}: {n} rows affected, expected {rows}");
        // Every value really changed: none starts with the marker after the
        // forward rewrite, all do again after the way back.
        let marked = self.count_prefix(table, "kt1:").await?;
        let expected = if forward { 0 } else { rows };
        ensure!(
            marked == expected,
            "{sql}: {marked} values start with kt1: afterwards, expected {expected}"
        );
        Ok(took)
    }

    /// The runbook loop: `ORDER BY id LIMIT 100 OFFSET n` pages, each value
    /// decrypted and re-encrypted under the ring's primary key, one
    /// autocommitted `UPDATE … WHERE id = ?` per row, all on one connection.
    pub async fn per_row_baseline(&self, table: &str, ring: &Keyring) -> Result<Baseline> {
        let (select, update) = match self.kind {
            Kind::Postgres => (
                format!("SELECT id, c FROM {table} ORDER BY id LIMIT {BASELINE_PAGE} OFFSET $1"),
                format!("UPDATE {table} SET c = $1 WHERE id = $2"),
            ),
            _ => (
                format!("SELECT id, c FROM {table} ORDER BY id LIMIT {BASELINE_PAGE} OFFSET ?"),
                format!("UPDATE {table} SET c = ? WHERE id = ?"),
            ),
        };
        let total = self
            .scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .await? as u64;
        let tenth = (total / 10).max(1);
        let started = Instant::now();
        let mut marks = Vec::new();
        let mut done: u64 = 0;
        let (mut select_s, mut update_s) = (Vec::new(), Vec::new());
        let (mut sel, mut upd) = (0.0, 0.0);
        on_pool!(&self.pool, p => {
            let mut conn = p.acquire().await.context("acquiring a connection")?;
            let mut offset: i64 = 0;
            loop {
                let t = Instant::now();
                let page: Vec<(i64, String)> = sqlx::query_as(AssertSqlSafe(select.clone()))
                    .bind(offset)
                    .fetch_all(&mut *conn)
                    .await
                    .context("reading a page")?;
                sel += t.elapsed().as_secs_f64();
                if page.is_empty() {
                    break;
                }
                for (id, c) in &page {
                    let new = match ring.reencrypt(c.as_bytes(), &[])? {
                        Reencrypted::Rotated(v) => String::from_utf8(v)?,
                        Reencrypted::AlreadyPrimary => continue,
                    };
                    let t = Instant::now();
                    sqlx::query(AssertSqlSafe(update.clone()))
                        .bind(new)
                        .bind(*id)
                        .execute(&mut *conn)
                        .await
                        .context("updating a row")?;
                    upd += t.elapsed().as_secs_f64();
                    done += 1;
                    if done.is_multiple_of(tenth) {
                        marks.push(started.elapsed().as_secs_f64());
                        select_s.push(std::mem::take(&mut sel));
                        update_s.push(std::mem::take(&mut upd));
                    }
                }
                offset += page.len() as i64;
            }
        });
        let seconds = started.elapsed().as_secs_f64();
        let mut tenths = Vec::new();
        let mut prev = 0.0;
        for m in marks.iter().take(10) {
            tenths.push(tenth as f64 / (m - prev));
            prev = *m;
        }
        select_s.truncate(10);
        update_s.truncate(10);
        Ok(Baseline {
            rows: done,
            seconds,
            tenths,
            select_s,
            update_s,
        })
    }
}
