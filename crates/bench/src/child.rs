//! Runs the real `keyturn` binary as a child process and measures its wall
//! time and peak resident set size.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Exit code keyturn uses when another run holds the rotation lock.
const EXIT_LOCKED: i32 = 6;
/// How long to wait for someone else's rotation on the same database.
const LOCK_PATIENCE: Duration = Duration::from_secs(600);

/// One finished `keyturn rotate`.
#[derive(Clone, Debug)]
pub struct ChildRun {
    /// Spawn to exit, as the operator sees it (process start, connecting,
    /// preflight counts, the rotation, bookkeeping).
    pub wall: Duration,
    /// Peak resident set size of the child (VmHWM), in bytes.
    pub peak_rss: u64,
    /// User + system CPU time of the child.
    pub cpu: Duration,
    /// keyturn's own summary (`--json`).
    pub summary: serde_json::Value,
}

impl ChildRun {
    /// Values written, from the summary.
    pub fn written(&self) -> u64 {
        self.summary["columns"]
            .as_array()
            .map(|cols| cols.iter().filter_map(|c| c["written"].as_u64()).sum())
            .unwrap_or(0)
    }
}

/// The `keyturn` binary: `--keyturn PATH`, else next to this benchmark's own
/// executable (both live in target/release after
/// `cargo build --release -p keyturn -p keyturn-bench`).
pub fn locate_keyturn(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("--keyturn {}: no such file", p.display());
        }
        return Ok(p.to_owned());
    }
    let me = std::env::current_exe().context("locating the benchmark executable")?;
    let dir = me
        .parent()
        .context("the benchmark executable has no directory")?;
    let p = dir.join("keyturn");
    if !p.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p keyturn -p keyturn-bench`, or pass --keyturn PATH",
            p.display()
        );
    }
    if !dir.ends_with("release") {
        eprintln!(
            "warning: {} is not a release build; figures will not mean much",
            p.display()
        );
    }
    Ok(p)
}

/// Runs `keyturn --config CONFIG --json rotate [extra…]` with the key specs
/// in `keys_env` (name, value), waiting out another run's lock.
pub fn run_rotate(
    keyturn: &Path,
    config: &Path,
    keys_env: (&str, &str),
    extra: &[String],
    scratch: &Path,
) -> Result<ChildRun> {
    let waited = Instant::now();
    loop {
        let out_path = scratch.join("keyturn.stdout");
        let err_path = scratch.join("keyturn.stderr");
        // Files, not pipes: nobody reads a pipe while we sit in wait4.
        let stdout = std::fs::File::create(&out_path).context("creating a scratch file")?;
        let stderr = std::fs::File::create(&err_path).context("creating a scratch file")?;
        let mut cmd = Command::new(keyturn);
        cmd.arg("--config")
            .arg(config)
            .arg("--json")
            .arg("--actor")
            .arg("keyturn-bench")
            .arg("rotate")
            .args(extra)
            .env(keys_env.0, keys_env.1)
            .env_remove("KEYTURN_LOG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", keyturn.display()))?;
        let (code, peak_rss, cpu) = wait_with_rusage(&mut child)?;
        let wall = started.elapsed();
        let out = std::fs::read_to_string(&out_path).unwrap_or_default();
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        if code == EXIT_LOCKED && waited.elapsed() < LOCK_PATIENCE {
            eprintln!("  (another keyturn run holds the lock on this database; waiting)");
            std::thread::sleep(Duration::from_secs(5));
            continue;
        }
        if code != 0 {
            bail!(
                "keyturn rotate exited with {code}\nstdout: {}\nstderr: {}",
                out.trim(),
                err.trim()
            );
        }
        let summary: serde_json::Value = serde_json::from_str(&out)
            .with_context(|| format!("keyturn's --json summary did not parse: {out:?}"))?;
        return Ok(ChildRun {
            wall,
            peak_rss,
            cpu,
            summary,
        });
    }
}

/// How often the child's memory high-water mark is sampled.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// Clock ticks per second of the CPU times in /proc/PID/stat (Linux's
/// USER_HZ, 100 on every architecture keyturn is built for).
const USER_HZ: u64 = 100;

/// Waits for our child; returns its exit code (128 + signal when killed),
/// peak RSS in bytes and CPU time (user + system).
///
/// Peak RSS is the `VmHWM` of /proc/PID/status, sampled every 5 ms until
/// the child exits. Not wait4's `ru_maxrss`: Linux carries the spawning
/// process's own high-water mark into the child across exec (std spawns
/// with vfork semantics, so the "old" address space at exec is ours), so
/// `ru_maxrss` reports max(this benchmark's RSS, keyturn's) — this process
/// holds tens of MB after generating a table. VmHWM belongs to the address
/// space keyturn's exec created and only ever grows; the last sample misses
/// at most the final 5 ms, when keyturn is printing its summary.
///
/// CPU time is read from /proc/PID/stat once the child has exited and
/// before it is reaped (a zombie keeps its final `utime` and `stime`), so
/// no `unsafe` wait4 is needed.
fn wait_with_rusage(child: &mut std::process::Child) -> Result<(i32, u64, Duration)> {
    let pid = child.id();
    let status_path = format!("/proc/{pid}/status");
    let stat_path = format!("/proc/{pid}/stat");
    let mut hwm_kb: u64 = 0;
    loop {
        // Until the child is reaped below, the pid is ours and cannot be
        // reused by another process.
        let text = std::fs::read_to_string(&status_path).unwrap_or_default();
        if let Some(kb) = text
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            hwm_kb = hwm_kb.max(kb);
        }
        let stat = std::fs::read_to_string(&stat_path).unwrap_or_default();
        // After the command name in parentheses: state, then fields 4…;
        // utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        if fields.first().is_some_and(|st| *st == "Z" || *st == "X") || stat.is_empty() {
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            // fields[0] is field 3 (state): utime is fields[11], stime fields[12].
            let cpu = Duration::from_millis((ticks(11) + ticks(12)) * 1000 / USER_HZ);
            let status = child.wait().context("waiting for keyturn")?;
            let code = match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(c), _) => c,
                (None, Some(sig)) => 128 + sig,
                _ => -1,
            };
            return Ok((code, hwm_kb * 1024, cpu));
        }
        std::thread::sleep(POLL_EVERY);
    }
}
