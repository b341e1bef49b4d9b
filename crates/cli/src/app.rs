//! Command dispatch: load config and keys, connect, run, print.

use crate::cli::{Cli, Command, KekCommand, KeysCommand, RunArgs, TargetArgs, VerifyArgs};
use crate::exit::Exit;
use crate::output::{self, Progress};
use anyhow::{Context, Result};
use keyturn_db::{ConnectOptions, Database};
use keyturn_engine::{Operation, Plan, RunOptions, VerifyOptions};
use keyturn_format::{Algorithm, KeyId, KeySpec};
use keyturn_ops::Config;
use keyturn_ops::config_path;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub fn run(cli: Cli) -> Result<Exit> {
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(dispatch(cli))
}

/// Warnings go to stderr as `warning: …` lines; with `KEYTURN_LOG` set (a
/// filter such as `debug`), every event with its time and origin.
fn init_logging() {
    match tracing_subscriber::EnvFilter::try_from_env("KEYTURN_LOG") {
        Ok(filter) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(output::color_enabled())
                // A closed stderr drops log lines: without this the
                // subscriber reports the failed write with `eprintln!`,
                // which panics.
                .log_internal_errors(false)
                .try_init();
        }
        Err(_) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .log_internal_errors(false)
                .event_format(PlainEvent)
                .try_init();
        }
    }
}

/// `warning: <message> <fields>`, like keyturn's own `error: …` lines.
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
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        write!(writer, "{level}: ")?;
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
        Command::Status(args) => {
            let ctx = Session::open(&cli, &args.target, 2).await?;
            let opts = keyturn_engine::StatusOptions {
                deep: args.deep,
                batch_size: ctx.cfg.rotation.batch_size,
            };
            let mut report = keyturn_engine::status::status(ctx.db.as_ref(), &ctx.plan, &opts)
                .await
                .map_err(anyhow::Error::from);
            if let Ok(r) = report.as_mut() {
                // Compromised catalog keys are flagged per column.
                if let Err(e) = crate::catalog_cmd::flag_status(&ctx.cfg, &ctx.db, r).await {
                    report = Err(e);
                }
            }
            // Runs still recorded as running: live, or interrupted.
            let runs = keyturn_engine::run::open_runs(ctx.db.as_ref()).await;
            ctx.db.close().await;
            let report = report?;
            // A login that may read the data but not keyturn's tables still
            // gets the counts.
            let runs = runs.unwrap_or_else(|e| {
                errln!(
                    "warning: the runs recorded in keyturn_runs could not be read: {}",
                    output::error_chain(&e)
                );
                Vec::new()
            });
            output::print_status(&report, &runs, cli.json)?;
            Ok(Exit::Ok)
        }
        Command::Rotate(args) => run_op(&cli, args, Operation::Rotate, actor).await,
        Command::Encrypt(args) => run_op(&cli, args, Operation::Encrypt, actor).await,
        Command::Verify(args) => verify(&cli, args, &actor).await,
        Command::Audit(c) => crate::compliance::audit(&cli, c).await,
        Command::Due(args) => crate::compliance::due(&cli, args).await,
        Command::Report(args) => crate::compliance::report(&cli, args).await,
        Command::BadRows(c) => crate::bad_rows_cmd::run(&cli, c, &actor).await,
    }
}

pub fn default_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    match host_name() {
        Some(host) => format!("{user}@{host}"),
        None => user,
    }
}

/// This machine's host name (any OS), if it has a readable one.
pub fn host_name() -> Option<String> {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Config, database and plan (with each column's keyring) for one command.
pub struct Session {
    pub cfg: Config,
    pub db: Arc<dyn Database>,
    pub plan: Plan,
}

impl Session {
    pub async fn open(cli: &Cli, target: &TargetArgs, connections: u32) -> Result<Session> {
        let path = config_path(cli.config.as_deref());
        let cfg = Config::load(&path)?;
        Session::from_config(cfg, target, connections).await
    }

    pub async fn from_config(
        cfg: Config,
        target: &TargetArgs,
        connections: u32,
    ) -> Result<Session> {
        // Without a catalog, keys are checked before connecting.
        let rings = if cfg.catalog.is_none() {
            Some(keyturn_ops::load_rings(
                &cfg,
                target.table.as_deref(),
                target.column.as_deref(),
                None,
            )?)
        } else {
            None
        };
        let db = keyturn_db::connect(
            &cfg.database.url,
            &ConnectOptions {
                max_connections: connections,
                create_if_missing: false,
            },
        )
        .await?;
        let rings = match rings {
            Some(r) => r,
            None => {
                let ring = crate::catalog_cmd::load_ring(&cfg, &db).await?;
                keyturn_ops::load_rings(
                    &cfg,
                    target.table.as_deref(),
                    target.column.as_deref(),
                    ring,
                )?
            }
        };
        let plan = match keyturn_engine::plan::resolve(
            db.as_ref(),
            &cfg.targets,
            Some(&rings),
            target.table.as_deref(),
            target.column.as_deref(),
        )
        .await
        {
            Ok(plan) => plan,
            Err(e) => {
                // Close the connections properly (no "aborted connection"
                // in the server's log).
                db.close().await;
                return Err(e.into());
            }
        };
        Ok(Session { cfg, db, plan })
    }
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
                errln!("aborted; the next run resumes from the last saved checkpoint");
                std::process::exit(Exit::Interrupted as i32);
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
    args.workers
        .unwrap_or_else(|| cfg.rotation.workers_for(&cfg.database.url))
}

pub async fn run_op(cli: &Cli, args: &RunArgs, op: Operation, actor: String) -> Result<Exit> {
    if let Some(new) = &args.to {
        if op != Operation::Rotate {
            return Err(
                keyturn_engine::EngineError::Usage("--to applies to rotate only".into()).into(),
            );
        }
        // Boxed: rotate_to runs an ordinary rotate through this function.
        return Box::pin(crate::catalog_cmd::rotate_to(cli, args, actor, new)).await;
    }
    crate::compliance::check_run_args(&args.audit)?;
    let path = config_path(cli.config.as_deref());
    let cfg = Config::load(&path)?;
    let workers = u32::try_from(run_workers(&cfg, args)).unwrap_or(u32::MAX);
    let mut ctx = Session::from_config(cfg, &args.target, workers.saturating_add(2)).await?;
    let opts = run_options(&ctx.cfg, args, actor);
    // Compromised catalog keys: their rows first, and none may remain.
    let compromised = if op == Operation::Rotate {
        crate::catalog_cmd::prioritize(&mut ctx).await?
    } else {
        Vec::new()
    };
    let dry_run = opts.dry_run;
    let exit = execute_audited(&ctx, op, opts, cli.json, &args.audit, None).await?;
    if !compromised.is_empty() && !dry_run {
        crate::catalog_cmd::check_no_compromised_rows(&ctx.cfg, &ctx.plan, &compromised).await?;
    }
    Ok(exit)
}

/// Runs an operation like `rotate` does, handing the summary to `keep`
/// instead of printing it (the demo prints one JSON document at the end).
pub async fn execute_kept(
    ctx: &Session,
    op: Operation,
    opts: RunOptions,
    json: bool,
    keep: &std::sync::Mutex<Vec<keyturn_engine::RunSummary>>,
) -> Result<Exit> {
    execute_audited(ctx, op, opts, json, &Default::default(), Some(keep)).await
}

/// Runs an operation with progress output and prints the summary, recorded
/// in `keyturn_runs` and the audit trail alike (dry runs are not recorded)
/// and optionally announced to a webhook. The order makes a killed run
/// leave a trace from its first moment: the lock and the `running` record,
/// then runs a gone process left `running` recorded as interrupted, the
/// census, the start event (with the run id and the counts), the work, the
/// end event.
pub async fn execute_audited(
    ctx: &Session,
    op: Operation,
    opts: RunOptions,
    json: bool,
    audit: &crate::compliance::RunAuditArgs,
    keep: Option<&std::sync::Mutex<Vec<keyturn_engine::RunSummary>>>,
) -> Result<Exit> {
    crate::compliance::check_run_args(audit)?;
    let stop = Arc::new(AtomicBool::new(false));
    install_stop_handler(stop.clone(), json);
    let run = match keyturn_engine::Run::begin(ctx.db.clone(), op, opts.clone()).await {
        Ok(r) => r,
        Err(e) => {
            ctx.db.close().await;
            return Err(e.into());
        }
    };
    let run_id = run.run_id().to_owned();
    // One count per column serves the audit's start event, the preflight
    // and the progress totals.
    let prepared = async {
        crate::compliance::record_interrupted(ctx, &run, json).await?;
        let census = keyturn_engine::run::census(ctx.db.as_ref(), &ctx.plan).await?;
        let started =
            crate::compliance::run_started(ctx, op, &opts, audit, &census, &run_id).await?;
        anyhow::Ok((census, started))
    }
    .await;
    let (census, started) = match prepared {
        Ok(p) => p,
        Err(e) => {
            // Failed before any value changed: recorded as such in
            // keyturn_runs and the audit trail.
            for w in run.abandon().await {
                errln!("warning: {w}");
            }
            if let Err(a) = crate::compliance::run_finished(
                ctx,
                op,
                &opts,
                audit,
                &run_id,
                None,
                Err(e.as_ref()),
            )
            .await
            {
                errln!("error: {a:#}");
            }
            ctx.db.close().await;
            return Err(e);
        }
    };
    let progress = Arc::new(Progress::new(op.name(), json));
    let result = run.execute(&ctx.plan, census, progress.clone(), stop).await;
    progress.finish();
    let recorded = crate::compliance::run_finished(
        ctx,
        op,
        &opts,
        audit,
        &run_id,
        started,
        result
            .as_ref()
            .map_err(|e| e as &(dyn std::error::Error + 'static)),
    )
    .await;
    ctx.db.close().await;
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            if let Err(a) = recorded {
                errln!("error: {a:#}");
            }
            return Err(e.into());
        }
    };
    match keep {
        Some(k) => k
            .lock()
            .map_err(|_| anyhow::anyhow!("summary lock poisoned"))?
            .push(summary.clone()),
        None => output::print_summary(&summary, json)?,
    }
    for w in &summary.warnings {
        errln!("warning: {w}");
    }
    recorded?;
    let code = if let Some(lost) = &summary.lock_lost {
        let e = keyturn_engine::EngineError::LockLost {
            holder: lost.holder.clone(),
            since: lost.since.clone(),
        };
        errln!("error: {e}");
        Exit::Locked
    } else if summary.interrupted {
        Exit::Interrupted
    } else if summary.failed() > 0 {
        Exit::BadRows
    } else {
        Exit::Ok
    };
    if !summary.dry_run
        && crate::compliance::notify_run(ctx, audit, &summary)
            .await
            .is_some()
    {
        // Not delivered (already printed): never silent, never exit 0.
        return Ok(if code == Exit::Ok { Exit::Error } else { code });
    }
    Ok(code)
}

async fn verify(cli: &Cli, args: &VerifyArgs, actor: &str) -> Result<Exit> {
    let ctx = Session::open(cli, &args.target, 2).await?;
    let verify_started = std::time::Instant::now();
    let progress = Progress::new("verify", cli.json);
    let report = keyturn_engine::verify::verify(
        ctx.db.as_ref(),
        &ctx.plan,
        &VerifyOptions {
            deep: args.deep,
            batch_size: ctx.cfg.rotation.batch_size,
            // Odd rows found go to keyturn_bad_rows, records of rows that
            // verify now are cleared; not with --no-record.
            record: !args.no_record,
            run_id: keyturn_engine::run::new_run_id(),
        },
        &progress,
    )
    .await;
    progress.finish();
    let recorded = if args.no_record {
        Ok(())
    } else {
        crate::compliance::record_verify(&ctx, actor, args.deep, verify_started, &report).await
    };
    ctx.db.close().await;
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            if let Err(a) = recorded {
                errln!("error: {a:#}");
            }
            return Err(e.into());
        }
    };
    output::print_verify(&report, cli.json)?;
    for w in &report.warnings {
        errln!("warning: {w}; the result above stands (pass --no-record to skip recording)");
    }
    // The result stands without its record (a read-only login cannot
    // append to the audit trail): say so, keep the verdict's exit code.
    if let Err(e) = recorded {
        errln!(
            "warning: {}; the result above stands (pass --no-record to skip recording)",
            output::error_text(&e)
        );
    }
    Ok(if report.ok {
        Exit::Ok
    } else {
        Exit::VerifyFailed
    })
}
