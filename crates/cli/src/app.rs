//! Command dispatch: load config and keys, connect, run, print.

use crate::cli::{Cli, Command, KekCommand, KeysCommand, RunArgs, TargetArgs, VerifyArgs};
use crate::exit::Exit;
use crate::metrics;
use crate::output::{self, Progress};
use anyhow::{Context, Result};
use keyturn_engine::{Operation, ProgressSink, RunOptions};
use keyturn_format::{Algorithm, KeyId, KeySpec};
use keyturn_ops::{Config, RunAudit, RunReport, Selection, Session, Verdict, config_path};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub fn run(cli: Cli) -> Result<Exit> {
    output::set_terminal(cli.color, cli.quiet, cli.verbose);
    init_logging(cli.quiet, cli.verbose);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(dispatch(cli))
}

/// The log (tracing events of keyturn and its libraries) on stderr, in the
/// style of keyturn's own messages: `warning: message key=value`, with the
/// event's origin after the level for debug and trace (`debug:
/// keyturn_engine::live: …`), never a timestamp. Levels: `warn` by default,
/// `error` with -q, keyturn's `info` with -v, `debug` with -vv (other crates
/// one level less), everything with -vvv; `KEYTURN_LOG` (a filter such as
/// `debug`) replaces them.
fn init_logging(quiet: u8, verbose: u8) {
    let (filter, invalid) = match std::env::var("KEYTURN_LOG") {
        Ok(v) if !v.trim().is_empty() => match tracing_subscriber::EnvFilter::try_new(&v) {
            Ok(f) => (Some(f), None),
            Err(e) => (
                None,
                Some(format!("KEYTURN_LOG={v:?} is not a log filter ({e})")),
            ),
        },
        _ => (None, None),
    };
    let filter =
        filter.unwrap_or_else(|| tracing_subscriber::EnvFilter::new(log_filter(quiet, verbose)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogLine(Vec::new()))
        .with_ansi(false)
        // A closed stderr drops log lines: without this the subscriber
        // reports the failed write with `eprintln!`, which panics.
        .log_internal_errors(false)
        .event_format(PlainEvent)
        .try_init();
    if let Some(why) = invalid {
        tracing::warn!("{why}; using the levels of -q/-v");
    }
}

/// The filter for `-q` / `-v` counts (they conflict: one of them is 0).
fn log_filter(quiet: u8, verbose: u8) -> &'static str {
    match (quiet, verbose) {
        (q, _) if q > 0 => "error",
        (_, 0) => "warn",
        (_, 1) => "warn,keyturn=info",
        (_, 2) => "info,keyturn=debug",
        _ => "trace",
    }
}

/// One formatted event, handed to [`output::stderr_line`] line by line
/// when tracing drops the writer (after each event): the same colours, the
/// same place above the progress bar as keyturn's own lines.
struct LogLine(Vec<u8>);

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        for line in text.lines() {
            output::stderr_line(line);
        }
    }
}

/// `level: [target: ]message fields`, like keyturn's own `error: …` lines.
struct PlainEvent;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for PlainEvent
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let level = match *meta.level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        write!(writer, "{level}: ")?;
        if *meta.level() >= tracing::Level::DEBUG {
            write!(writer, "{}: ", meta.target())?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

async fn dispatch(cli: Cli) -> Result<Exit> {
    let actor = cli.actor.clone().unwrap_or_else(default_actor);
    match &cli.command {
        Command::Keys(KeysCommand::Generate { id, alg }) => keys_generate(id.as_deref(), alg),
        Command::Keys(cmd) => crate::catalog_cmd::run_keys(&cli, cmd).await,
        Command::Kek(KekCommand::Rotate(args)) => crate::catalog_cmd::kek_rotate(&cli, args).await,
        Command::Demo(args) => crate::demo::run(args, cli.json).await,
        Command::Completions { shell } => generated(|out| {
            clap_complete::generate(*shell, &mut crate::cli::command(), "keyturn", out);
            Ok(())
        }),
        Command::Man { dir: None } => {
            generated(|out| clap_mangen::Man::new(crate::cli::command()).render(out))
        }
        Command::Man { dir: Some(dir) } => man_pages(dir),
        Command::Status(args) => {
            let session = open_session(&cli, &args.target, 2).await?;
            let status = keyturn_ops::verify::status(&session, args.deep).await;
            session.close().await;
            let status = status?;
            // A login that may read the data but not keyturn's tables still
            // gets the counts.
            let runs = status.runs.unwrap_or_else(|e| {
                errln!("warning: the runs recorded in keyturn_runs could not be read: {e}");
                Vec::new()
            });
            output::print_status(&status.report, &runs, cli.json)?;
            Ok(Exit::Ok)
        }
        Command::Rotate(args) => run_op(&cli, args, Operation::Rotate, actor).await,
        Command::Encrypt(args) => run_op(&cli, args, Operation::Encrypt, actor).await,
        Command::Verify(args) => verify(&cli, args, &actor).await,
        Command::Audit(c) => crate::compliance::audit(&cli, c).await,
        Command::Due(args) => crate::compliance::due(&cli, args).await,
        Command::Report(args) => crate::compliance::report(&cli, args).await,
        Command::BadRows(c) => crate::bad_rows_cmd::run(&cli, c, &actor).await,
        Command::Kms(c) => crate::kms_cmd::run(&cli, c, &actor).await,
        Command::Runs(a) => crate::runs_cmd::run(&cli, a, &actor).await,
    }
}

/// Writes a generated file (completion script, man page) to stdout
/// (`--json` is refused before: [`crate::cli::NOT_FOR`]).
fn generated(write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> Result<Exit> {
    let mut buf = Vec::new();
    write(&mut buf).context("generating")?;
    let mut out = std::io::stdout().lock();
    // A reader that stops early (`keyturn man | head`) is not an error.
    match out.write_all(&buf).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(Exit::Ok),
    }
}

/// `keyturn man --dir DIR`: keyturn.1 and one page per subcommand, the
/// pages keyturn.1's SEE ALSO names; the written files' names on stdout.
fn man_pages(dir: &std::path::Path) -> Result<Exit> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(crate::cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("keyturn") && n.ends_with(".1"))
        .collect();
    names.sort();
    for n in &names {
        outln!("{}", dir.join(n).display());
    }
    Ok(Exit::Ok)
}

pub fn default_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", keyturn_ops::host_name())
}

/// The columns `--table` / `--column` select.
pub fn selection(target: &TargetArgs) -> Selection {
    Selection {
        table: target.table.clone(),
        column: target.column.clone(),
    }
}

/// Loads the config named by `--config` (its path is an info line, `-v`).
fn load_config(cli: &Cli) -> Result<Config> {
    let path = config_path(cli.config.as_deref());
    tracing::info!("config {}", path.display());
    Ok(Config::load(&path)?)
}

/// Loads the config named by `--config` and opens a session on it.
pub async fn open_session(cli: &Cli, target: &TargetArgs, connections: u32) -> Result<Session> {
    let cfg = load_config(cli)?;
    Ok(Session::open(cfg, &selection(target), connections).await?)
}

fn keys_generate(id: Option<&str>, alg: &str) -> Result<Exit> {
    let alg = Algorithm::from_name(alg).map_err(|_| {
        keyturn_engine::EngineError::Usage(format!(
            "--alg {alg:?}: use aes256gcm or xchacha20poly1305"
        ))
    })?;
    let id = match id {
        Some(i) => {
            KeyId::new(i).map_err(|e| keyturn_engine::EngineError::Usage(format!("--id: {e}")))?
        }
        None => {
            let today = time::OffsetDateTime::now_utc().date();
            KeyId::new(&format!(
                "k{:04}{:02}{:02}",
                today.year(),
                u8::from(today.month()),
                today.day()
            ))?
        }
    };
    let spec = KeySpec::generate(id, alg)?;
    let s = spec.to_spec_string();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", &*s).context("writing to stdout")?;
    Ok(Exit::Ok)
}

/// Sets the stop flag on the first Ctrl-C / SIGTERM; exits at once on the second.
fn install_stop_handler(stop: Arc<AtomicBool>, json: bool) {
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            wait_for_signal().await;
            count += 1;
            if count == 1 {
                stop.store(true, Ordering::SeqCst);
                if !json {
                    errln!(
                        "\nstopping: finishing the batches in flight and saving the checkpoint (Ctrl-C again to abort at once)"
                    );
                }
            } else {
                output::abort(
                    json,
                    "aborted; the next run resumes from the last saved checkpoint",
                    "interrupted",
                    Exit::Interrupted as u8,
                );
            }
        }
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The run's settings: flags over the config. Both are range-checked where
/// they are read (clap's value parsers, `Config::validate`), with the same
/// bounds (`keyturn_engine::config`), so nothing is clamped here.
pub fn run_options(cfg: &Config, args: &RunArgs, actor: String) -> RunOptions {
    RunOptions {
        batch_size: args.batch_size.unwrap_or(cfg.rotation.batch_size),
        workers: run_workers(cfg, args),
        max_rows_per_sec: args.max_rows_per_sec.or(cfg.rotation.max_rows_per_sec),
        dry_run: args.dry_run,
        actor,
        skip_unknown_keys: args.skip_unknown_keys,
    }
}

/// Batches in flight: `--workers`, else the config's or the database's default.
fn run_workers(cfg: &Config, args: &RunArgs) -> usize {
    args.workers.unwrap_or_else(|| {
        cfg.rotation
            .workers_for_targets(&cfg.database.url, &cfg.targets)
    })
}

pub async fn run_op(cli: &Cli, args: &RunArgs, op: Operation, actor: String) -> Result<Exit> {
    if let Some(new) = &args.to {
        if op != Operation::Rotate {
            return Err(
                keyturn_engine::EngineError::Usage("--to applies to rotate only".into()).into(),
            );
        }
        return crate::catalog_cmd::rotate_to(cli, args, actor, new).await;
    }
    let report = run_report(cli, args, op, actor).await?;
    conclude(report, cli.json, true)
}

/// Runs `rotate` or `encrypt` with the flags' and the config's settings
/// and returns its report; prints nothing on stdout (progress and notes go
/// to stderr).
pub async fn run_report(
    cli: &Cli,
    args: &RunArgs,
    op: Operation,
    actor: String,
) -> Result<RunReport> {
    let audit = crate::compliance::run_audit(&args.audit)?;
    let cfg = load_config(cli)?;
    // Bound before anything else: a taken port is an error before the run.
    let metrics = match args.metrics_addr.or(cfg.metrics.addr) {
        Some(addr) => Some(
            metrics::Listener::bind(addr, Duration::from_secs(cfg.metrics.linger_seconds)).await?,
        ),
        None => None,
    };
    let workers = u32::try_from(run_workers(&cfg, args)).unwrap_or(u32::MAX);
    let mut session =
        Session::open(cfg, &selection(&args.target), workers.saturating_add(2)).await?;
    let opts = run_options(&session.cfg, args, actor);
    let report = execute(&mut session, op, opts, cli.json, &audit, metrics).await;
    session.close().await;
    report
}

/// Runs an operation with progress output and a Ctrl-C handler (the
/// operation itself, audit and all, is `keyturn_ops::run::run`), serving
/// its metrics on `metrics` when given.
pub async fn execute(
    session: &mut Session,
    op: Operation,
    opts: RunOptions,
    json: bool,
    audit: &RunAudit,
    metrics: Option<metrics::Listener>,
) -> Result<RunReport> {
    let stop = Arc::new(AtomicBool::new(false));
    install_stop_handler(stop.clone(), json);
    tracing::info!(
        "{}{}: batches of {} rows, {} in flight, {}",
        op.name(),
        if opts.dry_run { " (dry run)" } else { "" },
        opts.batch_size,
        opts.workers,
        opts.max_rows_per_sec.map_or_else(
            || "no rate limit".to_owned(),
            |r| format!("at most {r} rows/s")
        )
    );
    let progress = Arc::new(Progress::new(op.name(), json).with_stop(stop.clone()));
    let (sink, serving): (Arc<dyn ProgressSink>, _) = match metrics {
        Some(l) => {
            if let Ok(addr) = l.local_addr() {
                progress.note(&format!(
                    "serving http://{addr}/metrics and http://{addr}/health while the {} runs",
                    op.name()
                ));
            }
            let m = Arc::new(metrics::Metrics::new(op.name(), opts.max_rows_per_sec));
            let serving = l.serve(m.clone());
            (
                Arc::new(metrics::MetricsSink::new(progress.clone(), m)),
                Some(serving),
            )
        }
        None => (progress.clone(), None),
    };
    let report = keyturn_ops::run::run(session, op, opts, audit, sink, stop).await;
    progress.finish();
    if let Some(s) = serving {
        s.finish().await;
    }
    Ok(report?)
}

/// Prints a finished run (its summary when `print`; the demo and
/// `rotate --to` print one JSON document of their own) and maps it to the
/// exit code. With `--json`, a run that ended in an error prints no
/// summary of its own: the error's document carries it (`summary`).
pub fn conclude(mut report: RunReport, json: bool, print: bool) -> Result<Exit> {
    let record_error = report.record_error.take();
    let fails = record_error.is_some()
        || (report.notify_error.is_none() && !report.compromised_left.is_empty());
    let with_summary = |e: anyhow::Error, summary: &keyturn_engine::run::RunSummary| {
        if !(print && json) {
            return e;
        }
        let mut fields = serde_json::Map::new();
        fields.insert(
            "summary".into(),
            serde_json::to_value(summary).unwrap_or(serde_json::Value::Null),
        );
        anyhow::Error::new(crate::exit::ErrorWith { error: e, fields })
    };
    // The notes were shown as they happened (the progress sink's `note`).
    if print && !(json && fails) {
        output::print_summary(&report.summary, json)?;
    }
    for w in &report.summary.warnings {
        errln!("warning: {w}");
    }
    if let Some(e) = record_error {
        return Err(with_summary(e.into(), &report.summary));
    }
    let code = match report.verdict() {
        Verdict::LockLost => {
            if let Some(lost) = &report.summary.lock_lost {
                let e = keyturn_engine::EngineError::LockLost {
                    holder: lost.holder.clone(),
                    since: lost.since.clone(),
                };
                errln!("error: {e}");
            }
            Exit::Locked
        }
        Verdict::Interrupted => Exit::Interrupted,
        Verdict::BadRows => Exit::BadRows,
        _ => Exit::Ok,
    };
    if let Some(m) = &report.notify_error {
        errln!(
            "error: {m} (the {} itself finished; see above)",
            report.summary.operation.name()
        );
        // Not delivered: never silent, never exit 0.
        return Ok(if code == Exit::Ok { Exit::Error } else { code });
    }
    if !report.compromised_left.is_empty() {
        let e = keyturn_engine::EngineError::Config(format!(
            "rows may still be under compromised keys: {}; fix the rows reported above and run `keyturn rotate` again",
            report
                .compromised_left
                .iter()
                .map(|(c, k, n)| format!("{c}: {n} under {k:?} before the run"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return Err(with_summary(e.into(), &report.summary));
    }
    Ok(code)
}

async fn verify(cli: &Cli, args: &VerifyArgs, actor: &str) -> Result<Exit> {
    let session = open_session(cli, &args.target, 2).await?;
    let progress = Progress::new("verify", cli.json);
    let verified =
        keyturn_ops::verify::verify(&session, actor, args.deep, !args.no_record, &progress).await;
    progress.finish();
    session.close().await;
    let verified = verified?;
    let report = &verified.report;
    output::print_verify(report, cli.json)?;
    for w in &report.warnings {
        errln!("warning: {w}; the result above stands (pass --no-record to skip recording)");
    }
    // The result stands without its record (a read-only login cannot
    // append to the audit trail): say so, keep the verdict's exit code.
    if let Some(e) = &verified.record_error {
        errln!("warning: {e}; the result above stands (pass --no-record to skip recording)");
    }
    Ok(if report.ok {
        Exit::Ok
    } else {
        Exit::VerifyFailed
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `f` logs through [`PlainEvent`] under `filter`.
    fn logged(filter: &str, f: impl FnOnce()) -> String {
        let cap = Capture::default();
        let writer = cap.clone();
        let sub = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .event_format(PlainEvent)
            .finish();
        tracing::subscriber::with_default(sub, f);
        let bytes = cap.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn log_lines_look_like_keyturns_own() {
        let out = logged("trace", || {
            tracing::error!("gone");
            tracing::warn!(catalog = "main", "keyring refresh failed");
            tracing::info!("config keyturn.toml");
            tracing::debug!("publishing the run's progress");
            tracing::trace!(rows = 3, "batch");
        });
        let target = module_path!();
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            vec![
                "error: gone".to_owned(),
                "warning: keyring refresh failed catalog=\"main\"".to_owned(),
                "info: config keyturn.toml".to_owned(),
                format!("debug: {target}: publishing the run's progress"),
                format!("trace: {target}: batch rows=3"),
            ]
        );
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn quiet_and_verbose_set_the_levels() {
        let all = || {
            tracing::error!("e");
            tracing::warn!("w");
            tracing::info!("i");
            tracing::debug!("d");
            tracing::trace!("t");
        };
        let firsts = |filter: &str| -> String {
            logged(filter, all)
                .lines()
                .map(|l| &l[..1])
                .collect::<String>()
        };
        assert_eq!(firsts(log_filter(0, 0)), "ew");
        assert_eq!(firsts(log_filter(1, 0)), "e");
        assert_eq!(firsts(log_filter(2, 0)), "e");
        // This module's events are keyturn's (target `keyturn::app::…`).
        assert_eq!(firsts(log_filter(0, 1)), "ewi");
        assert_eq!(firsts(log_filter(0, 2)), "ewid");
        assert_eq!(firsts(log_filter(0, 3)), "ewidt");
        // Other crates' events: one level less at -v and -vv.
        let other = |filter: &str| {
            logged(filter, || {
                tracing::info!(target: "sqlx::query", "i");
                tracing::debug!(target: "sqlx::query", "d");
            })
            .lines()
            .count()
        };
        assert_eq!(other(log_filter(0, 1)), 0);
        assert_eq!(other(log_filter(0, 2)), 1);
        assert_eq!(other(log_filter(0, 3)), 2);
    }
}
