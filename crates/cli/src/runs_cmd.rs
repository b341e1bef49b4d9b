//! `keyturn runs`: running and recent runs, read from keyturn's tables (any
//! host that reaches the database), and `runs pause|resume|stop [RUN]`,
//! which the running process applies at its next batch boundary. Needs no
//! key material.

use crate::cli::Cli;
use crate::exit::Exit;
use crate::output::print_json;
use anyhow::Result;
use clap::{Args, Subcommand};
use keyturn_ops::runs::{Control, RunView};
use std::io::IsTerminal as _;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub action: Option<RunsAction>,
    /// How many recent runs to list
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
    /// List again every 2 seconds until interrupted (not with --json: a stream is not one document)
    #[arg(long)]
    pub watch: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum RunsAction {
    /// Pause the running run at its next batch boundary (audited)
    Pause(RunId),
    /// Let a paused run go on (audited)
    Resume(RunId),
    /// Stop the running run like Ctrl-C: batches in flight finish, the checkpoint is saved, it is resumable (audited)
    Stop(RunId),
}

#[derive(Args, Debug, Clone)]
pub struct RunId {
    /// The run's id [default: the one run that is running]
    #[arg(value_name = "RUN")]
    pub run: Option<String>,
}

pub async fn run(cli: &Cli, args: &RunsArgs, actor: &str) -> Result<Exit> {
    if args.watch && cli.json {
        return Err(keyturn_engine::EngineError::Usage(
            "--watch lists again and again, where --json prints one document: give one of them (poll `keyturn runs --json` for a feed)".into(),
        )
        .into());
    }
    let s = crate::compliance::read_session(cli).await?;
    let out = match &args.action {
        Some(a) => control(&s, a, actor, cli.json).await,
        None => list(&s, args, cli.json).await,
    };
    s.db.close().await;
    out
}

async fn control(
    s: &keyturn_ops::ReadSession,
    a: &RunsAction,
    actor: &str,
    json: bool,
) -> Result<Exit> {
    let (what, id) = match a {
        RunsAction::Pause(r) => (Control::Pause, r),
        RunsAction::Resume(r) => (Control::Resume, r),
        RunsAction::Stop(r) => (Control::Stop, r),
    };
    let req = keyturn_ops::runs::control(s.db.as_ref(), id.run.as_deref(), what, actor).await?;
    if json {
        print_json(&req)?;
    } else {
        outln!(
            "{} requested for run {}: it applies it at its next batch boundary (within seconds)",
            req.action,
            req.run_id
        );
    }
    Ok(Exit::Ok)
}

async fn list(s: &keyturn_ops::ReadSession, args: &RunsArgs, json: bool) -> Result<Exit> {
    loop {
        let runs = keyturn_ops::runs::list(s.db.as_ref(), usize::from(args.limit)).await?;
        if json {
            print_json(&serde_json::json!({ "runs": runs }))?;
        } else {
            if args.watch && std::io::stdout().is_terminal() {
                // Clear the screen between listings on a terminal.
                outln!("\x1b[2J\x1b[H");
            }
            render(&runs);
        }
        if !args.watch {
            return Ok(Exit::Ok);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(Exit::Ok),
        }
    }
}

fn num(v: &serde_json::Value, k: &str) -> f64 {
    v.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0)
}

/// One row per run, then what the running ones report (host, columns,
/// the last operator request).
fn render(runs: &[RunView]) {
    if runs.is_empty() {
        outln!("no runs recorded");
        return;
    }
    let mut t =
        crate::table::Table::new(["RUN", "OPERATION", "STATE", "ACTOR", "STARTED", "ENDED"]);
    for r in runs {
        t.row([
            r.run_id.clone(),
            r.operation.clone(),
            r.state.clone(),
            r.actor.clone(),
            r.started_at.clone(),
            r.finished_at.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    t.print();
    for r in runs {
        if r.progress.is_none() && r.control.is_none() {
            continue;
        }
        outln!("");
        outln!("run {}:", r.run_id);
        if let Some(p) = &r.progress {
            let host = p.get("host").and_then(|h| h.as_str()).unwrap_or("?");
            let state = p.get("state").and_then(|h| h.as_str()).unwrap_or("?");
            outln!(
                "  on {host} pid {}: {state}{}",
                num(p, "pid"),
                p.get("paused")
                    .and_then(|x| x.as_str())
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default()
            );
            let mut cols = crate::table::Table::new(["COLUMN", "DONE", "TODO", "ROWS/S", "ETA"])
                .indent(2)
                .right(&[1, 2, 3, 4]);
            for c in p
                .get("columns")
                .and_then(|c| c.as_array())
                .into_iter()
                .flatten()
            {
                let eta = c
                    .get("eta_seconds")
                    .and_then(serde_json::Value::as_f64)
                    .map(|e| format!("{e:.0} s"))
                    .unwrap_or_else(|| "-".into());
                cols.row([
                    format!(
                        "{}.{}",
                        c.get("table").and_then(|x| x.as_str()).unwrap_or("?"),
                        c.get("column").and_then(|x| x.as_str()).unwrap_or("?")
                    ),
                    group(num(c, "done")),
                    group(num(c, "todo")),
                    group(num(c, "rows_per_sec")),
                    eta,
                ]);
            }
            cols.print();
        }
        if let Some(c) = &r.control {
            outln!(
                "  last request: {} by {} at {}",
                c.action,
                c.actor,
                c.requested_at
            );
        }
    }
}

/// A JSON count as grouped digits (`1,234`).
fn group(n: f64) -> String {
    crate::table::group(n.max(0.0) as u64)
}
