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
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", keyturn.display()))?;
        let (code, peak_rss, cpu) = wait_with_rusage(child.id())?;
        let wall = started.elapsed();
        // The child is reaped; std's handle has nothing left to do.
        drop(child);
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

/// Waits for our child `pid`; returns its exit code (128 + signal when
/// killed), peak RSS in bytes and CPU time (user + system).
///
/// Peak RSS is the `VmHWM` of /proc/PID/status, sampled every 5 ms until
/// the child exits. Not wait4's `ru_maxrss`: Linux carries the spawning
/// process's own high-water mark into the child across exec (std spawns
/// with vfork semantics, so the "old" address space at exec is ours), so
/// `ru_maxrss` reports max(this benchmark's RSS, keyturn's) — this process
/// holds tens of MB after generating a table. VmHWM belongs to the address
/// space keyturn's exec created and only ever grows; the last sample misses
/// at most the final 5 ms, when keyturn is printing its summary.
fn wait_with_rusage(pid: u32) -> Result<(i32, u64, Duration)> {
    let status_path = format!("/proc/{pid}/status");
    let pid = libc::pid_t::try_from(pid).context("child pid out of range")?;
    let mut hwm_kb: u64 = 0;
    let mut status: libc::c_int = 0;
    loop {
        // Read before reaping: until wait4 below reaps it, the pid is ours
        // and cannot be reused by another process.
        let text = std::fs::read_to_string(&status_path).unwrap_or_default();
        if let Some(kb) = text
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            hwm_kb = hwm_kb.max(kb);
        }
        // SAFETY: `rusage` is a plain C struct for which all-zero bytes is a
        // valid value; wait4 only writes through the two pointers, which
        // point at live locals of the right types. `pid` is our own child,
        // not yet reaped (std's Child is never waited on), so no other
        // process can be reaped by mistake.
        let (r, ru) = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            let r = libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru);
            (r, ru)
        };
        if r == pid {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                -1
            };
            let tv = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec.max(0) as u64)
                    + Duration::from_micros(t.tv_usec.max(0) as u64)
            };
            return Ok((code, hwm_kb * 1024, tv(ru.ru_utime) + tv(ru.ru_stime)));
        }
        if r == 0 {
            std::thread::sleep(POLL_EVERY);
            continue;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("waiting for keyturn");
        }
    }
}
