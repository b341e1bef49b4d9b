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
    let line = styled(&args.to_string(), stdout_color());
    let mut out = std::io::stdout().lock();
    if let Err(e) = out
        .write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        errln!("error: writing to standard output: {e}");
    }
}

/// Writes one line to stderr (unless `-q` hides it, see [`shown`]), its
/// `error:` / `warning:` prefix coloured when colour is on, above the
/// progress bar if one is drawn; any error (a closed pipe, a full disk)
/// drops it: there is nowhere left to report it.
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    stderr_line(&args.to_string());
}

/// [`write_stderr`] for a line already formatted (the log's lines come
/// through here too, so they look like keyturn's own).
pub fn stderr_line(text: &str) {
    use std::io::Write as _;
    let (kind, _) = classify(text);
    if !shown(kind) {
        return;
    }
    let line = styled(text, stderr_color());
    let write = || {
        let mut err = std::io::stderr().lock();
        let _ = err
            .write_all(line.as_bytes())
            .and_then(|()| err.write_all(b"\n"));
    };
    // A clone: the bar's own lock is taken while it redraws, never this one.
    let bar = ACTIVE_BAR.lock().ok().and_then(|b| b.clone());
    match bar {
        Some(bar) if !bar.is_finished() => bar.suspend(write),
        _ => write(),
    }
}

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keyturn_engine::ProgressSink;
use keyturn_engine::run::{OpenRun, RunSummary};
use keyturn_engine::status::StatusReport;
use keyturn_engine::verify::VerifyReport;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicI8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::table::{Table, group};

/// `-v` count minus `-q` count, set once by [`set_terminal`].
static VERBOSITY: AtomicI8 = AtomicI8::new(0);

/// The progress bar on screen, if any: stderr lines are written above it.
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Applies `--color`, `-q` and `-v` for the whole process: the colour
/// choice for both streams (anstream's global choice: `auto` honours
/// `NO_COLOR`, `CLICOLOR`, `CLICOLOR_FORCE` and whether the stream is a
/// terminal; `always` and `never` override them all) and how much goes to
/// stderr.
pub fn set_terminal(color: clap::ColorChoice, quiet: u8, verbose: u8) {
    let choice = match color {
        clap::ColorChoice::Always => anstream::ColorChoice::Always,
        clap::ColorChoice::Never => anstream::ColorChoice::Never,
        clap::ColorChoice::Auto => anstream::ColorChoice::Auto,
    };
    choice.write_global();
    let v = i16::from(verbose) - i16::from(quiet);
    VERBOSITY.store(
        i8::try_from(v.clamp(-3, 3)).unwrap_or_default(),
        Ordering::Relaxed,
    );
}

/// `-q`: results on stdout and errors only; no progress, notes or
/// warnings on stderr.
pub fn quiet() -> bool {
    VERBOSITY.load(Ordering::Relaxed) < 0
}

/// What a stderr line is, by its prefix: keyturn's messages and the log
/// share the `level: message` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineKind {
    Error,
    Warning,
    Info,
    Debug,
    Trace,
    /// Progress, notes, what a command did: no prefix.
    Message,
}

const PREFIXES: [(&str, LineKind); 5] = [
    ("error:", LineKind::Error),
    ("warning:", LineKind::Warning),
    ("info:", LineKind::Info),
    ("debug:", LineKind::Debug),
    ("trace:", LineKind::Trace),
];

/// The line's kind and where its prefix (`error:` …) starts, after any
/// leading blank lines.
pub(crate) fn classify(line: &str) -> (LineKind, usize) {
    let at = line.len() - line.trim_start_matches('\n').len();
    let rest = &line[at..];
    PREFIXES
        .iter()
        .find(|(p, _)| rest.starts_with(p))
        .map_or((LineKind::Message, at), |&(_, k)| (k, at))
}

/// Errors always; warnings, progress and notes unless `-q`. The log's own
/// `info:`/`debug:`/`trace:` lines were filtered by level already.
fn shown(kind: LineKind) -> bool {
    match kind {
        LineKind::Error | LineKind::Info | LineKind::Debug | LineKind::Trace => true,
        LineKind::Warning | LineKind::Message => !quiet(),
    }
}

fn style(kind: LineKind) -> Option<anstyle::Style> {
    use anstyle::{AnsiColor, Style};
    let c = match kind {
        LineKind::Error => AnsiColor::Red,
        LineKind::Warning => AnsiColor::Yellow,
        LineKind::Info => AnsiColor::Green,
        LineKind::Debug => AnsiColor::Blue,
        LineKind::Trace => AnsiColor::Magenta,
        LineKind::Message => return None,
    };
    Some(Style::new().bold().fg_color(Some(c.into())))
}

/// The line with its `level:` prefix in the level's colour when `color`.
pub(crate) fn styled(line: &str, color: bool) -> String {
    let (kind, at) = classify(line);
    let Some(style) = style(kind).filter(|_| color) else {
        return line.to_owned();
    };
    let end = line[at..].find(':').map_or(at, |i| at + i + 1);
    format!(
        "{}{}{}{}{}",
        &line[..at],
        style.render(),
        &line[at..end],
        style.render_reset(),
        &line[end..]
    )
}

fn stderr_color() -> bool {
    anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
}

fn stdout_color() -> bool {
    anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
}

/// Colours on stderr: `--color`, else unless NO_COLOR is set or stderr is
/// not a terminal.
pub fn color_enabled() -> bool {
    stderr_color()
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

/// The bar drawn for the current column on a terminal.
struct Bar {
    bar: ProgressBar,
    label: String,
    todo: u64,
    started: Instant,
}

/// Progress on stderr: a bar per column on a terminal, else a line when a
/// column starts, every [`LOG_EVERY`] and when it ends ("done, N rows" or
/// "interrupted at N rows"). Counts are grouped (`1,234,567`) in both.
/// Silent with `--json` (pauses are then JSON events) and with `-q`.
pub struct Progress {
    op: String,
    json: bool,
    silent: bool,
    tty: bool,
    bar: Mutex<Option<Bar>>,
    plain: Mutex<Option<Plain>>,
    /// The run's stop flag (Ctrl-C, `runs stop`, a replica that stops it):
    /// a column that ends with it set was interrupted, not done.
    stop: Option<Arc<AtomicBool>>,
    lock_lost: AtomicBool,
}

impl Progress {
    pub fn new(op: &str, json: bool) -> Progress {
        Progress {
            op: op.to_owned(),
            json,
            silent: json || quiet(),
            tty: stderr_tty(),
            bar: Mutex::new(None),
            plain: Mutex::new(None),
            stop: None,
            lock_lost: AtomicBool::new(false),
        }
    }

    /// Reads `stop` when a column ends: set, the column was interrupted.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Progress {
        self.stop = Some(stop);
        self
    }

    fn interrupted(&self) -> bool {
        self.lock_lost.load(Ordering::SeqCst)
            || self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    pub fn finish(&self) {
        self.end_bar();
    }

    /// Ends the current column's bar: left on screen when the column is
    /// done, replaced by an "interrupted at N of M rows" line when it was
    /// interrupted.
    fn end_bar(&self) {
        let Some(b) = self.bar.lock().ok().and_then(|mut b| b.take()) else {
            return;
        };
        if let Ok(mut active) = ACTIVE_BAR.lock() {
            *active = None;
        }
        let done = b.bar.position();
        if self.interrupted() && done < b.todo {
            // The line below says where it stopped, in the bar's place
            // (clearing it leaves the cursor at the start of its line).
            b.bar.finish_and_clear();
            errln!("{}", interrupted_line(&b.label, done, b.todo, b.started));
        } else {
            b.bar.finish();
        }
    }

    fn style() -> ProgressStyle {
        let template = if color_enabled() {
            "{prefix:.bold} [{bar:30.cyan/blue}] {grouped_pos}/{grouped_len} rows  {grouped_rate}  ETA {eta}"
        } else {
            "{prefix} [{bar:30}] {grouped_pos}/{grouped_len} rows  {grouped_rate}  ETA {eta}"
        };
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "grouped_pos",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&group(s.pos()));
                },
            )
            .with_key(
                "grouped_len",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&group(s.len().unwrap_or(0)));
                },
            )
            .with_key(
                "grouped_rate",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{} rows/s", group(s.per_sec() as u64));
                },
            )
            .progress_chars("=> ")
    }
}

/// `rotate t.c: interrupted at 1,200 of 5,000 rows after 3.2s; …`
fn interrupted_line(label: &str, done: u64, todo: u64, started: Instant) -> String {
    format!(
        "{label}: interrupted at {} of {} rows after {:.1}s; the next run resumes from the saved checkpoint",
        group(done),
        group(todo),
        started.elapsed().as_secs_f64()
    )
}

fn rate(done: u64, since: Instant) -> f64 {
    let s = since.elapsed().as_secs_f64();
    if s > 0.0 { done as f64 / s } else { 0.0 }
}

impl ProgressSink for Progress {
    fn column_started(&self, table: &str, column: &str, todo: u64, resumed_from: u64) {
        if self.silent {
            return;
        }
        let label = format!("{} {table}.{column}", self.op);
        if self.tty {
            self.end_bar();
            let bar = ProgressBar::with_draw_target(Some(todo), ProgressDrawTarget::stderr());
            bar.set_style(Progress::style());
            bar.set_prefix(label.clone());
            if let Ok(mut active) = ACTIVE_BAR.lock() {
                *active = Some(bar.clone());
            }
            if let Ok(mut b) = self.bar.lock() {
                *b = Some(Bar {
                    bar,
                    label,
                    todo,
                    started: Instant::now(),
                });
            }
        } else {
            let resumed = if resumed_from > 0 {
                format!(" (resuming; {} rows done earlier)", group(resumed_from))
            } else {
                String::new()
            };
            errln!("{label}: {} values to process{resumed}", group(todo));
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
        if self.silent {
            return;
        }
        if self.tty {
            if let Ok(b) = self.bar.lock()
                && let Some(b) = b.as_ref()
            {
                b.bar.inc(processed);
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
                    "{}: {}/{} rows ({} rows/s, ETA {:.0}s)",
                    p.label,
                    group(p.done),
                    group(p.todo),
                    group(r as u64),
                    eta
                );
            }
        }
    }

    fn column_finished(&self, _table: &str, _column: &str) {
        if self.silent {
            return;
        }
        if self.tty {
            self.end_bar();
        } else if let Ok(mut p) = self.plain.lock()
            && let Some(p) = p.take()
        {
            if self.interrupted() && p.done < p.todo {
                errln!("{}", interrupted_line(&p.label, p.done, p.todo, p.started));
            } else {
                errln!(
                    "{}: done, {} rows in {:.1}s ({} rows/s)",
                    p.label,
                    group(p.done),
                    p.started.elapsed().as_secs_f64(),
                    group(rate(p.done, p.started) as u64)
                );
            }
        }
    }

    fn lock_lost(&self) {
        self.lock_lost.store(true, Ordering::SeqCst);
    }

    /// With `--json`, stdout holds the one result document; a pause and
    /// its end are events on stderr, one JSON object per line.
    fn paused(&self, why: Option<&str>) {
        if self.json {
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

    /// Written above the bar when one is drawn (see [`stderr_line`]).
    fn note(&self, message: &str) {
        if self.silent {
            return;
        }
        errln!("{message}");
    }
}

/// Whether the command's one JSON document has been printed. Held while
/// one is printed, so that an abort (a second Ctrl-C) prints its error
/// document only when no other was printed, and never inside one.
static DOCUMENT: Mutex<bool> = Mutex::new(false);

fn document_lock() -> std::sync::MutexGuard<'static, bool> {
    // A panic while printing leaves the flag as it was: still usable.
    DOCUMENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Prints the command's JSON document on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    let mut printed = document_lock();
    outln!("{text}");
    *printed = true;
    Ok(())
}

/// Ends the process at once with `code`: `error: text` on stderr and,
/// with `--json`, the error document on stdout unless the command's
/// document was printed already.
pub fn abort(json: bool, text: &str, kind: &str, code: u8) -> ! {
    let printed = document_lock();
    if json && !*printed {
        match serde_json::to_string_pretty(&error_document(text, kind, code)) {
            Ok(doc) => outln!("{doc}"),
            Err(e) => errln!("error: printing the JSON document: {e}"),
        }
    }
    errln!("{text}");
    std::process::exit(i32::from(code))
}

fn bar(fraction: f64, width: usize) -> String {
    let full = ((fraction.clamp(0.0, 1.0)) * width as f64).round() as usize;
    format!("{}{}", "█".repeat(full), "░".repeat(width - full))
}

/// `status`: the report, and the runs `keyturn_runs` still says are
/// running (in JSON as `runs`, each with its `state`). Two tables: one row
/// per column (counts), then one row per key of each column (values under
/// it, their share, and a bar on a terminal).
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
    if !r.columns.is_empty() {
        outln!("");
        let mut t = Table::new([
            "COLUMN",
            "CODEC",
            "ROWS",
            "NULL",
            "UNDER CURRENT KEY",
            "TO ROTATE",
            "OTHER",
        ])
        .right(&[2, 3, 4, 5])
        .wrap(&[6]);
        for c in &r.columns {
            let mut other = Vec::new();
            if c.keyless > 0 {
                other.push(format!(
                    "{} key decided by {}",
                    group(c.keyless),
                    keyless_by(&c.codec)
                ));
            }
            if c.undecryptable > 0 {
                other.push(format!("{} undecryptable", group(c.undecryptable)));
            }
            if c.unrecognized > 0 {
                other.push(format!("{} unrecognized", group(c.unrecognized)));
            }
            t.row([
                format!("{}.{}", c.table, c.column),
                c.codec.to_string(),
                group(c.total),
                group(c.nulls),
                group(c.under_current),
                group(c.needs_rotation),
                other.join(", "),
            ]);
        }
        t.print();
        outln!("");
        let mut header = vec!["COLUMN", "KEY", "VALUES", "SHARE"];
        if tty {
            header.push("");
        }
        let mut t = Table::new(header).right(&[2, 3]);
        for c in &r.columns {
            let values = c.total - c.nulls;
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
            if lines.is_empty() {
                lines.push(("-".into(), 0));
            }
            for (i, (label, n)) in lines.into_iter().enumerate() {
                let pct = if values > 0 {
                    n as f64 / values as f64
                } else {
                    0.0
                };
                let mut row = vec![
                    if i == 0 {
                        format!("{}.{}", c.table, c.column)
                    } else {
                        String::new()
                    },
                    label,
                    group(n),
                    format!("{:.1}%", pct * 100.0),
                ];
                if tty {
                    row.push(bar(pct, 24));
                }
                t.row(row);
            }
        }
        t.print();
    }
    for c in &r.columns {
        if let Some(note) = &c.note {
            outln!("\nnote: {}.{}: {note}", c.table, c.column);
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
        keyturn_engine::Operation::Rotate => "ROTATED",
        keyturn_engine::Operation::Encrypt => "ENCRYPTED",
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
    let mut t = Table::new(["COLUMN", verb, "SKIPPED", "RETRIED", "FAILED"])
        .indent(2)
        .right(&[1, 2, 3, 4]);
    for c in &s.columns {
        t.row([
            format!("{}.{}", c.table, c.column),
            group(c.written),
            group(c.skipped),
            group(c.retried),
            group(c.failed),
        ]);
    }
    t.print();
    outln!(
        "  {:.1}s, {} rows/s, outcome: {}",
        s.seconds,
        group(s.rows_per_sec as u64),
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
            group(k.rows),
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
    let mut t = Table::new(["COLUMN", "CHECKED", "BY", "UNDER CURRENT KEY", "FAILING"])
        .indent(2)
        .right(&[1, 3, 4]);
    for c in &r.columns {
        t.row([
            format!("{}.{}", c.table, c.column),
            group(c.checked),
            if c.counted_by == keyturn_engine::CountedBy::Decryption {
                "decryption".to_owned()
            } else {
                "key id (SQL)".to_owned()
            },
            group(c.under_current),
            group(c.failing),
        ]);
    }
    t.print();
    // The failures and notes, per column, after the table.
    for c in &r.columns {
        if c.first_failures.is_empty() && c.note.is_none() {
            continue;
        }
        outln!("  {}.{}:", c.table, c.column);
        for f in c.first_failures.iter().take(20) {
            outln!("    primary key {}: {}", f.pk, f.reason);
        }
        if c.first_failures.len() > 20 || c.failing > c.first_failures.len() as u64 {
            outln!(
                "    … and {} more (--json lists up to {})",
                group(c.failing - 20.min(c.failing)),
                keyturn_engine::verify::LISTED_FAILURES
            );
        }
        if let Some(note) = &c.note {
            outln!("    note: {note}");
        }
    }
    Ok(())
}

/// Prints an error: `error: …` on stderr, and with `--json` also the
/// command's one document on stdout, `{"error", "kind", "exit_code"}`
/// (plus the fields an [`ErrorWith`](crate::exit::ErrorWith) carries).
pub fn print_error(err: &anyhow::Error, json: bool) {
    let text = error_text(crate::exit::root(err));
    if json {
        let mut doc = error_document(
            &text,
            crate::exit::kind_for(err),
            crate::exit::code_for(err) as u8,
        );
        if let Some(w) = err.downcast_ref::<crate::exit::ErrorWith>() {
            for (k, v) in &w.fields {
                doc.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        print_json_or_warn(&doc);
    }
    errln!("error: {text}");
}

/// The JSON error document: `error` (the message and its causes, as on
/// stderr), `kind` (a stable snake_case class) and `exit_code` (the
/// process's exit code).
pub fn error_document(
    text: &str,
    kind: &str,
    exit_code: u8,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("error".into(), text.into());
    m.insert("kind".into(), kind.into());
    m.insert("exit_code".into(), exit_code.into());
    m
}

/// [`print_json`] where a failure has nowhere else to go than stderr.
pub fn print_json_or_warn<T: serde::Serialize>(v: &T) {
    if let Err(e) = print_json(v) {
        errln!("error: printing the JSON document: {e}");
    }
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

    /// `text` without its ANSI escape sequences.
    fn plain(text: &str) -> String {
        let mut out = String::new();
        let mut it = text.chars();
        while let Some(c) = it.next() {
            if c == '\x1b' {
                for c in it.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn prefixes_are_classified_and_coloured() {
        assert_eq!(classify("error: x"), (LineKind::Error, 0));
        assert_eq!(classify("\nwarning: y"), (LineKind::Warning, 1));
        assert_eq!(classify("info: z").0, LineKind::Info);
        assert_eq!(classify("debug: keyturn_engine: z").0, LineKind::Debug);
        assert_eq!(classify("trace: z").0, LineKind::Trace);
        assert_eq!(classify("rotate t.error: 3 values").0, LineKind::Message);
        assert_eq!(classify("errors: 3").0, LineKind::Message);

        for line in ["error: x: y", "\nwarning: y", "info: z", "debug: a: b"] {
            assert_eq!(styled(line, false), line);
            let c = styled(line, true);
            assert_ne!(c, line);
            assert_eq!(plain(&c), line);
            // Only the prefix is styled: the reset comes right after its colon.
            let prefix = line.trim_start().split(' ').next().unwrap_or_default();
            assert!(c.contains(&format!("{prefix}\x1b[0m ")), "{c:?}");
        }
        let red = styled("error: x", true);
        assert!(
            red.starts_with("\x1b[1m") && red.contains("\x1b[31m"),
            "{red:?}"
        );
        let yellow = styled("warning: x", true);
        assert!(yellow.contains("\x1b[33m"), "{yellow:?}");
        assert_eq!(styled("rotate t.c: done", true), "rotate t.c: done");
    }

    #[test]
    fn interrupted_lines_group_digits() {
        let l = interrupted_line("rotate t.c", 1_234, 1_000_000, Instant::now());
        assert!(
            l.starts_with("rotate t.c: interrupted at 1,234 of 1,000,000 rows after "),
            "{l}"
        );
    }

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

    #[test]
    fn error_document_fields() {
        let doc = error_document("config: no [database] section", "config", 1);
        let v = serde_json::Value::Object(doc);
        assert_eq!(v["error"], "config: no [database] section");
        assert_eq!(v["kind"], "config");
        assert_eq!(v["exit_code"], 1);
        assert_eq!(v.as_object().map(|m| m.len()), Some(3));
    }
}
