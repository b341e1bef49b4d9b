//! Everything the CLI prints: progress (bars on a TTY, periodic log lines
//! otherwise), tables, JSON and errors. Respects NO_COLOR.

/// `println!` for results on stdout, without its panic when the reader has
/// gone away (`keyturn status --json | head`): the rest of the output is
/// dropped and the command's exit code still tells its outcome.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` for messages, progress and errors on stderr, without its
/// panic when stderr is a closed pipe (`keyturn rotate 2>&1 | head -1`): the
/// message is dropped and the work goes on.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!($($arg)*))
    };
}

pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n"))
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        errln!("error: writing to standard output: {e}");
    }
}

/// Writes one line to stderr; any error (a closed pipe, a full disk) drops
/// it: there is nowhere left to report it.
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keyturn_engine::ProgressSink;
use keyturn_engine::run::{OpenRun, RunSummary};
use keyturn_engine::status::StatusReport;
use keyturn_engine::verify::VerifyReport;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Colors unless NO_COLOR is set (any value) or stderr is not a terminal.
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

fn stderr_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// How often plain (non-TTY) progress lines are printed.
const LOG_EVERY: Duration = Duration::from_secs(5);

struct Plain {
    label: String,
    todo: u64,
    done: u64,
    started: Instant,
    last: Instant,
}

pub struct Progress {
    op: String,
    quiet: bool,
    tty: bool,
    bar: Mutex<Option<ProgressBar>>,
    plain: Mutex<Option<Plain>>,
}

impl Progress {
    pub fn new(op: &str, json: bool) -> Progress {
        Progress {
            op: op.to_owned(),
            quiet: json,
            tty: stderr_tty(),
            bar: Mutex::new(None),
            plain: Mutex::new(None),
        }
    }

    pub fn finish(&self) {
        if let Ok(mut b) = self.bar.lock()
            && let Some(bar) = b.take()
        {
            bar.finish();
        }
    }

    fn style() -> ProgressStyle {
        let template = if color_enabled() {
            "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} rows  {per_sec}  ETA {eta}"
        } else {
            "{prefix} [{bar:30}] {pos}/{len} rows  {per_sec}  ETA {eta}"
        };
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }
}

fn rate(done: u64, since: Instant) -> f64 {
    let s = since.elapsed().as_secs_f64();
    if s > 0.0 { done as f64 / s } else { 0.0 }
}

impl ProgressSink for Progress {
    fn column_started(&self, table: &str, column: &str, todo: u64, resumed_from: u64) {
        if self.quiet {
            return;
        }
        let label = format!("{} {table}.{column}", self.op);
        if self.tty {
            let bar = ProgressBar::with_draw_target(Some(todo), ProgressDrawTarget::stderr());
            bar.set_style(Progress::style());
            bar.set_prefix(label);
            if let Ok(mut b) = self.bar.lock()
                && let Some(old) = b.replace(bar)
            {
                old.finish();
            }
        } else {
            let resumed = if resumed_from > 0 {
                format!(" (resuming; {resumed_from} rows done earlier)")
            } else {
                String::new()
            };
            errln!("{label}: {todo} values to process{resumed}");
            if let Ok(mut p) = self.plain.lock() {
                *p = Some(Plain {
                    label,
                    todo,
                    done: 0,
                    started: Instant::now(),
                    last: Instant::now(),
                });
            }
        }
    }

    fn advanced(&self, _table: &str, _column: &str, processed: u64) {
        if self.quiet {
            return;
        }
        if self.tty {
            if let Ok(b) = self.bar.lock()
                && let Some(bar) = b.as_ref()
            {
                bar.inc(processed);
            }
        } else if let Ok(mut p) = self.plain.lock()
            && let Some(p) = p.as_mut()
        {
            p.done += processed;
            if p.last.elapsed() >= LOG_EVERY {
                p.last = Instant::now();
                let r = rate(p.done, p.started);
                let eta = if r > 0.0 {
                    (p.todo.saturating_sub(p.done)) as f64 / r
                } else {
                    0.0
                };
                errln!(
                    "{}: {}/{} rows ({:.0} rows/s, ETA {:.0}s)",
                    p.label,
                    p.done,
                    p.todo,
                    r,
                    eta
                );
            }
        }
    }

    fn column_finished(&self, _table: &str, _column: &str) {
        if self.quiet {
            return;
        }
        if self.tty {
            if let Ok(mut b) = self.bar.lock()
                && let Some(bar) = b.take()
            {
                bar.finish();
            }
        } else if let Ok(mut p) = self.plain.lock()
            && let Some(p) = p.take()
        {
            errln!(
                "{}: done, {} rows in {:.1}s ({:.0} rows/s)",
                p.label,
                p.done,
                p.started.elapsed().as_secs_f64(),
                rate(p.done, p.started)
            );
        }
    }

    /// With `--json`, stdout holds the one result document; a pause and
    /// its end are events on stderr, one JSON object per line.
    fn paused(&self, why: Option<&str>) {
        if self.quiet {
            let ev = match why {
                Some(w) => {
                    serde_json::json!({"event": "paused", "operation": self.op, "reason": w})
                }
                None => serde_json::json!({"event": "resumed", "operation": self.op}),
            };
            errln!("{ev}");
            return;
        }
        match why {
            Some(w) => self.note(&format!("paused: {w}")),
            None => self.note("resumed"),
        }
    }

    fn note(&self, message: &str) {
        if self.quiet {
            return;
        }
        if let Ok(b) = self.bar.lock()
            && let Some(bar) = b.as_ref()
        {
            bar.println(message);
            return;
        }
        errln!("{message}");
    }
}

pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn bar(fraction: f64, width: usize) -> String {
    let full = ((fraction.clamp(0.0, 1.0)) * width as f64).round() as usize;
    format!("{}{}", "█".repeat(full), "░".repeat(width - full))
}

/// `status`: the report, and the runs `keyturn_runs` still says are
/// running (in JSON as `runs`, each with its `state`).
pub fn print_status(r: &StatusReport, runs: &[OpenRun], json: bool) -> anyhow::Result<()> {
    if json {
        let mut v = serde_json::to_value(r)?;
        if let Some(m) = v.as_object_mut() {
            m.insert("runs".into(), serde_json::to_value(runs)?);
        }
        return print_json(&v);
    }
    let tty = std::io::stdout().is_terminal();
    outln!(
        "keyturn status{} ({}; current key {:?})",
        if r.deep { " --deep" } else { "" },
        r.backend,
        r.current_key_id
    );
    for c in &r.columns {
        let values = c.total - c.nulls;
        let mut extra = String::new();
        if c.keyless > 0 {
            extra.push_str(&format!(
                ", {} key decided by {}",
                c.keyless,
                keyless_by(&c.codec)
            ));
        }
        if c.undecryptable > 0 {
            extra.push_str(&format!(", {} undecryptable", c.undecryptable));
        }
        if c.unrecognized > 0 {
            extra.push_str(&format!(", {} unrecognized", c.unrecognized));
        }
        outln!("");
        outln!(
            "{}.{}  [{}]  {} rows, {} NULL, {} under the current key, {} to rotate{extra}",
            c.table,
            c.column,
            c.codec,
            c.total,
            c.nulls,
            c.under_current,
            c.needs_rotation,
        );
        let mut lines: Vec<(String, u64)> = c
            .by_key
            .iter()
            .map(|k| (format!("{} ({})", k.key_id, k.state), k.rows))
            .collect();
        if c.keyless > 0 {
            lines.push((
                format!("{} (key by {})", c.codec, keyless_by(&c.codec)),
                c.keyless,
            ));
        }
        if c.undecryptable > 0 {
            lines.push(("undecryptable".into(), c.undecryptable));
        }
        if c.unrecognized > 0 {
            lines.push(("unrecognized / plaintext".into(), c.unrecognized));
        }
        for (label, n) in lines {
            let pct = if values > 0 {
                n as f64 / values as f64
            } else {
                0.0
            };
            if tty {
                outln!(
                    "  {label:<28} {n:>12}  {}  {:>5.1}%",
                    bar(pct, 24),
                    pct * 100.0
                );
            } else {
                outln!("  {label:<28} {n:>12}  {:>5.1}%", pct * 100.0);
            }
        }
        if let Some(note) = &c.note {
            outln!("  note: {note}");
        }
    }
    for w in &r.warnings {
        outln!("\nwarning: {w}");
    }
    for run in runs {
        if run.state == "running" {
            outln!(
                "\n{} run {} is running (started {} by {}; it holds the rotation lock)",
                run.operation,
                run.run_id,
                run.started_at,
                run.actor
            );
        } else {
            outln!(
                "\n{} run {} (started {} by {}) was INTERRUPTED: its process is gone without recording its end. \
                 The next `keyturn {}` records it and resumes from its checkpoint.",
                run.operation,
                run.run_id,
                run.started_at,
                run.actor,
                run.operation
            );
        }
    }
    Ok(())
}

pub fn print_summary(s: &RunSummary, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(s);
    }
    let verb = match s.operation {
        keyturn_engine::Operation::Rotate => "rotated",
        keyturn_engine::Operation::Encrypt => "encrypted",
    };
    outln!("");
    outln!(
        "{}{} under key {:?}: run {}",
        s.operation.name(),
        if s.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        },
        s.current_key_id,
        s.run_id
    );
    outln!(
        "  {:<32} {:>10} {:>10} {:>8} {:>8}",
        "column",
        verb,
        "skipped",
        "retried",
        "failed"
    );
    for c in &s.columns {
        outln!(
            "  {:<32} {:>10} {:>10} {:>8} {:>8}",
            format!("{}.{}", c.table, c.column),
            c.written,
            c.skipped,
            c.retried,
            c.failed
        );
    }
    outln!(
        "  {:.1}s, {:.0} rows/s, outcome: {}",
        s.seconds,
        s.rows_per_sec,
        s.outcome
    );
    for k in &s.unusable_keys {
        outln!(
            "\nkey {:?} cannot decrypt ({}): its {} rows in {}.{} were left as they are (--skip-unknown-keys)",
            k.key_id,
            if k.retired {
                "retired"
            } else {
                "not in the keyring"
            },
            k.rows,
            k.table,
            k.column
        );
    }
    if !s.bad_rows.is_empty() {
        outln!(
            "\nrows that could not be processed (left untouched; {}):",
            if s.dry_run {
                "a real run would record them in keyturn_bad_rows"
            } else {
                "recorded in keyturn_bad_rows, see `keyturn bad-rows list`"
            }
        );
        for b in s.bad_rows.iter().take(50) {
            outln!("  {}.{} key {}: {}", b.table, b.column, b.pk, b.reason);
        }
        if s.bad_rows.len() > 50 || s.bad_rows_truncated {
            outln!("  … and more: use --json or query keyturn_bad_rows for the full list");
        }
    }
    if s.lock_retaken > 0 {
        outln!(
            "\nthe rotation lock's database session ended {} time(s) during the run; the lock was free and the run took it again each time",
            s.lock_retaken
        );
    }
    if let Some(l) = &s.lock_lost {
        outln!(
            "\nlock lost: {} took the rotation lock (since {}); this run stopped after the batches in flight, its progress saved: run the same command again once that run has finished",
            l.holder,
            l.since
        );
    } else if s.interrupted {
        outln!("\ninterrupted: progress is saved; run the same command again to resume");
    }
    Ok(())
}

pub fn print_verify(r: &VerifyReport, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(r);
    }
    outln!(
        "verify{} (current key {:?}): {}",
        if r.deep { " --deep" } else { "" },
        r.current_key_id,
        if r.ok { "OK" } else { "FAILED" }
    );
    for c in &r.columns {
        outln!(
            "  {}.{}: {} values checked{}, {} under the current key, {} failing",
            c.table,
            c.column,
            c.checked,
            if c.counted_by == keyturn_engine::CountedBy::Decryption {
                " by decryption"
            } else {
                ""
            },
            c.under_current,
            c.failing
        );
        for f in c.first_failures.iter().take(20) {
            outln!("    key {}: {}", f.pk, f.reason);
        }
        if c.first_failures.len() > 20 || c.failing > c.first_failures.len() as u64 {
            outln!(
                "    … and {} more (--json lists up to {})",
                c.failing - 20.min(c.failing),
                keyturn_engine::verify::LISTED_FAILURES
            );
        }
        if let Some(note) = &c.note {
            outln!("    note: {note}");
        }
    }
    Ok(())
}

pub fn print_error(err: &anyhow::Error, json: bool) {
    let text = error_text(err);
    if json {
        let mut v = serde_json::json!({ "error": text });
        let catalog = err
            .downcast_ref::<keyturn_catalog::CatalogError>()
            .or_else(|| err.downcast_ref::<keyturn_ops::OpsError>()?.catalog());
        if let Some(c) = catalog {
            v["kind"] = c.kind().into();
        }
        outln!("{v}");
    }
    errln!("error: {text}");
}

/// The error and its causes. keyturn's own errors hold their cause's text
/// in their message and expose no `source` (each layer's error type says
/// so), so each cause is printed once without any de-duplication here;
/// `anyhow` context adds one line of its own before its cause.
pub(crate) fn error_text(err: &anyhow::Error) -> String {
    error_chain(err.as_ref())
}

/// [`error_text`] for any error.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Who decides the key of a value that names none: KMS for AWS KMS
/// ciphertext (`status --deep` asks it), decryption for the other codecs.
fn keyless_by(codec: &str) -> &'static str {
    if codec == "aws-kms" {
        "KMS"
    } else {
        "decryption"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn each_cause_once() {
        let io = || std::io::Error::other("connection reset");
        let e = Err::<(), _>(io()).context("saving").unwrap_err();
        assert_eq!(error_text(&e), "saving: connection reset");
        // keyturn's layered errors: the message holds the cause, and no
        // layer exposes it again as a source.
        let engine =
            keyturn_engine::EngineError::Schema("reading a batch: connection reset".into());
        let e = anyhow::Error::new(keyturn_ops::OpsError::step("rotating", engine));
        assert_eq!(
            error_text(&e),
            "rotating: schema: reading a batch: connection reset"
        );
    }
}
