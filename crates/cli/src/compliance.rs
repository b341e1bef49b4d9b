//! Compliance commands and hooks: the audit trail around rotate / encrypt /
//! verify, `keyturn audit list|export|verify`, `keyturn due` and
//! `keyturn report`. The logic lives in `keyturn-audit`; this file parses
//! arguments, opens the database and prints.
//!
//! Dry runs are not recorded: `--dry-run` writes nothing at all, not even
//! an audit event (README, docs/AUDIT.md).

use crate::cli::{Cli, TargetArgs};
use crate::exit::Exit;
use crate::output::print_json;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use keyturn_audit::due::DueStatus;
use keyturn_audit::notify::{self, Message, NotifyFormat};
use keyturn_audit::{AuditAction, AuditEvent, ChainReport, EventFilter, ts};
use keyturn_engine::EngineError;
use keyturn_engine::run::OpenRun;
use keyturn_ops::{Config, ReadSession, RunAudit, config_path};
use std::io::Write;
use std::path::PathBuf;

// ---------------------------------------------------------------- arguments

/// Audit and notification options of `rotate` and `encrypt`.
#[derive(Args, Debug, Clone)]
pub struct RunAuditArgs {
    /// Why this run happens, recorded in the audit trail (e.g. scheduled, compromise, staff-change)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// When the run ends, post its summary to this webhook [env: KEYTURN_NOTIFY_URL]
    #[arg(long, value_name = "URL", env = "KEYTURN_NOTIFY_URL", hide_env = true)]
    pub notify: Option<String>,
    /// Webhook body: slack (text + blocks) or json
    #[arg(long, value_name = "FORMAT", default_value = "slack")]
    pub notify_format: String,
}

impl Default for RunAuditArgs {
    fn default() -> Self {
        RunAuditArgs {
            reason: None,
            notify: None,
            notify_format: "slack".into(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// List audit events, oldest first
    List(AuditListArgs),
    /// Write audit events as JSON lines, each with its hash (for the compliance archive); --json: one document holding them
    Export(AuditExportArgs),
    /// Check the hash chain; names the first edited, missing or reordered event (exit 12)
    Verify(AuditVerifyArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct EventFilterArgs {
    /// Only events at or after this time: YYYY-MM-DD, RFC 3339, or a span back (30d, 12h, 2w, 3mo, 5y)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only these actions: a name (rotate.end) or a group (rotate, key, verify); repeatable or comma-separated
    #[arg(long, value_name = "ACTION", value_delimiter = ',')]
    pub action: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct AuditListArgs {
    #[command(flatten)]
    pub filter: EventFilterArgs,
    /// Only the last N matching events
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct AuditExportArgs {
    #[command(flatten)]
    pub filter: EventFilterArgs,
    /// Write the JSON lines to this file instead of stdout (`-`: stdout); with --json, stdout gets a summary of the export
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct AuditVerifyArgs {
    /// Also require event SEQ with hash HASH (a tip recorded earlier): detects events removed from the end
    #[arg(long, value_name = "SEQ:HASH")]
    pub anchor: Option<String>,
    /// Check an export file (JSON lines from `audit export`) instead of the database; no config needed
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct DueArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Evaluate the policy at this time instead of now (plan ahead): YYYY-MM-DD or RFC 3339
    #[arg(long, value_name = "WHEN")]
    pub at: Option<String>,
    /// Post a reminder to this webhook when something is due soon or overdue [env: KEYTURN_NOTIFY_URL]
    #[arg(long, value_name = "URL", env = "KEYTURN_NOTIFY_URL", hide_env = true)]
    pub notify: Option<String>,
    /// Webhook body: slack (text + blocks) or json
    #[arg(long, value_name = "FORMAT", default_value = "slack")]
    pub notify_format: String,
    /// Post even when everything is ok
    #[arg(long)]
    pub notify_always: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Write the report as one self-contained HTML page to FILE (`-`: to stdout)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

// ------------------------------------------------------------ shared bits

fn audit_err(e: keyturn_audit::AuditError) -> anyhow::Error {
    match e {
        keyturn_audit::AuditError::Invalid(m) => EngineError::Usage(m).into(),
        other => anyhow::Error::new(other),
    }
}

/// Config and database, without keys (see [`ReadSession`]).
pub(crate) async fn read_session(cli: &Cli) -> Result<ReadSession> {
    let cfg = Config::load(&config_path(cli.config.as_deref()))?;
    Ok(ReadSession::open(cfg).await?)
}

fn notify_format(s: &str) -> Result<NotifyFormat> {
    NotifyFormat::parse(s).map_err(audit_err)
}

// ------------------------------------------------- rotate / encrypt hooks

/// The audit and notify options of `rotate` / `encrypt`, checked.
pub fn run_audit(args: &RunAuditArgs) -> Result<RunAudit> {
    let audit = RunAudit {
        reason: args.reason.clone(),
        notify: args.notify.clone(),
        notify_format: notify_format(&args.notify_format)?,
    };
    audit.check()?;
    Ok(audit)
}

// ------------------------------------------------------------------ audit

fn filter(args: &EventFilterArgs) -> Result<EventFilter> {
    for a in &args.action {
        if !AuditAction::is_known_filter(a) {
            let names: Vec<&str> = AuditAction::KNOWN.iter().map(|a| a.as_str()).collect();
            return Err(EngineError::Usage(format!(
                "--action {a:?}: not an action or group (actions: {}; groups: key, rotate, encrypt, kek, run)",
                names.join(", ")
            ))
            .into());
        }
    }
    let since = match &args.since {
        Some(s) => Some(ts::format(
            ts::parse_since(s, ts::now())
                .map_err(|e| EngineError::Usage(format!("--since: {e}")))?,
        )),
        None => None,
    };
    Ok(EventFilter {
        since,
        actions: args.action.clone(),
    })
}

pub async fn audit(cli: &Cli, cmd: &AuditCommand) -> Result<Exit> {
    match cmd {
        AuditCommand::List(a) => {
            let f = filter(&a.filter)?;
            let s = read_session(cli).await?;
            let read = async {
                let events = keyturn_audit::read_events(s.db.as_ref()).await?;
                // The trail is readable without keyturn_runs: a login that
                // may not read it still gets the list.
                let open = keyturn_engine::run::open_runs(s.db.as_ref())
                    .await
                    .unwrap_or_else(|e| {
                        errln!("warning: the runs recorded in keyturn_runs could not be read: {e}");
                        Vec::new()
                    });
                Ok::<_, keyturn_audit::AuditError>((events, open))
            }
            .await;
            s.db.close().await;
            let (events, open) = read.map_err(audit_err)?;
            // Runs killed before their start event (during the census)
            // have a record and no event at all.
            let eventless: Vec<&OpenRun> = open
                .iter()
                .filter(|r| {
                    !events
                        .iter()
                        .any(|e| e.run_id.as_deref() == Some(&r.run_id))
                })
                .collect();
            let mut events: Vec<AuditEvent> = events.into_iter().filter(|e| f.matches(e)).collect();
            if let Some(n) = a.limit {
                let skip = events.len().saturating_sub(n);
                events.drain(..skip);
            }
            if cli.json {
                // A start event of a run still `running` says how it
                // stands now: `run_state` running or interrupted.
                let mut list = serde_json::to_value(&events)?;
                if let Some(items) = list.as_array_mut() {
                    for (e, v) in events.iter().zip(items.iter_mut()) {
                        if let (Some(state), Some(obj)) = (open_state(e, &open), v.as_object_mut())
                        {
                            obj.insert("run_state".into(), state.into());
                        }
                    }
                }
                print_json(&list)?;
            } else {
                print_events(&events, &open, &eventless);
            }
            Ok(Exit::Ok)
        }
        AuditCommand::Export(a) => {
            let f = filter(&a.filter)?;
            // `--output -` is stdout, as no --output.
            let file = a.output.as_ref().filter(|p| p.as_os_str() != "-");
            let s = read_session(cli).await?;
            let rows = keyturn_audit::read_rows(s.db.as_ref()).await;
            s.db.close().await;
            let rows = rows.map_err(audit_err)?;
            let rows: Vec<_> = rows.iter().filter(|r| f.matches_row(r)).collect();
            let events: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| keyturn_audit::chain::export_object(r))
                .collect();
            let mut lines = String::new();
            if file.is_some() || !cli.json {
                for e in &events {
                    lines.push_str(&e.to_string());
                    lines.push('\n');
                }
            }
            if let Some(p) = file {
                std::fs::write(p, &lines).with_context(|| format!("writing {}", p.display()))?;
                errln!("wrote {} audit events to {}", events.len(), p.display());
            }
            if cli.json {
                let mut doc = serde_json::json!({
                    "count": events.len(),
                    "first_seq": rows.first().map(|r| r.seq),
                    "tip_seq": rows.last().map(|r| r.seq),
                    "tip_hash": rows.last().map(|r| r.hash.clone()),
                    "output": file.map(|p| p.display().to_string()),
                });
                if file.is_none() {
                    doc["events"] = serde_json::Value::Array(events);
                }
                print_json(&doc)?;
            } else if file.is_none() {
                let mut so = std::io::stdout().lock();
                // A reader that stops early (`| head`) is not an error.
                match so.write_all(lines.as_bytes()).and_then(|()| so.flush()) {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                        return Err(e).context("writing to stdout");
                    }
                    _ => {}
                }
            }
            Ok(Exit::Ok)
        }
        AuditCommand::Verify(a) => {
            let anchor = match &a.anchor {
                Some(s) => Some(keyturn_audit::chain::parse_anchor(s).map_err(EngineError::Usage)?),
                None => None,
            };
            let report = match &a.file {
                Some(p) => {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    keyturn_audit::verify_export(&text, anchor)
                }
                None => {
                    let s = read_session(cli).await?;
                    let r = keyturn_audit::verify(s.db.as_ref(), anchor).await;
                    s.db.close().await;
                    r.map_err(audit_err)?
                }
            };
            if cli.json {
                print_json(&report)?;
            } else {
                print_chain(&report);
            }
            Ok(if report.ok {
                Exit::Ok
            } else {
                Exit::AuditBroken
            })
        }
    }
}

/// How a start event's run stands, when its record still says `running`.
fn open_state<'a>(e: &AuditEvent, open: &'a [OpenRun]) -> Option<&'a str> {
    if !matches!(
        e.action,
        AuditAction::RotateStart | AuditAction::EncryptStart
    ) {
        return None;
    }
    let id = e.run_id.as_deref()?;
    open.iter()
        .find(|r| r.run_id == id)
        .map(|r| r.state.as_str())
}

fn print_events(events: &[AuditEvent], open: &[OpenRun], eventless: &[&OpenRun]) {
    print_event_list(events, open);
    for r in eventless {
        outln!(
            "note: {} run {} (started {} by {}) is recorded as running but {}",
            r.operation,
            r.run_id,
            r.started_at,
            r.actor,
            if r.state == "running" {
                "has no start event yet (counting the values before it starts)"
            } else {
                "its process is gone: interrupted before its start event; the next rotate or encrypt records it"
            }
        );
    }
}

fn print_event_list(events: &[AuditEvent], open: &[OpenRun]) {
    if events.is_empty() {
        outln!("no audit events");
        return;
    }
    let mut t = crate::table::Table::new([
        "#",
        "TIME (UTC)",
        "ACTION",
        "ACTOR",
        "OUTCOME",
        "KEYS",
        "COUNTS / REASON",
    ])
    .right(&[0])
    .wrap(&[6]);
    for e in events {
        let mut tail = e.counts_summary();
        if let Some(r) = &e.reason {
            tail.push_str(&format!("  reason: {r}"));
        }
        if let Some(err) = e.details.get("error").and_then(|v| v.as_str()) {
            tail.push_str(&format!("  error: {}", err.lines().next().unwrap_or("")));
        }
        if e.is_dry_run() {
            tail.push_str("  (dry run)");
        }
        match open_state(e, open) {
            Some("interrupted") => tail.push_str(
                "  (INTERRUPTED: its process is gone and no end was recorded; the next rotate or encrypt records it)",
            ),
            Some(_) => tail.push_str("  (running now)"),
            None => {}
        }
        t.row([
            e.seq.to_string(),
            e.time.clone(),
            e.action.as_str().to_owned(),
            e.actor.clone(),
            e.outcome.as_str().to_owned(),
            e.key_ids.join(","),
            tail.trim_start().to_owned(),
        ]);
    }
    t.print();
}

fn print_chain(r: &ChainReport) {
    if r.ok {
        outln!(
            "audit trail intact: {} events{}, every hash matches and links to the one before",
            r.events,
            if r.complete {
                ""
            } else {
                " (a partial export, checked from its first event on)"
            }
        );
    } else if let Some(p) = &r.first_bad {
        outln!(
            "audit trail BROKEN: first bad event #{}: {}",
            p.seq,
            p.message
        );
        for q in r.problems.iter().skip(1).take(9) {
            outln!("  also #{}: {}", q.seq, q.message);
        }
        if r.problems.len() > 10 {
            outln!("  … {} problems in all", r.problems.len());
        }
    }
    if let (Some(seq), Some(h)) = (r.tip_seq, &r.tip_hash) {
        outln!("tip: #{seq} {h}");
        outln!(
            "  record it elsewhere and check later with: keyturn audit verify --anchor {seq}:{h}"
        );
    }
    if let Some(a) = r.anchor.as_ref().filter(|_| r.ok) {
        outln!("anchor {a}: present and unchanged");
    }
}

// -------------------------------------------------------------------- due

pub async fn due(cli: &Cli, args: &DueArgs) -> Result<Exit> {
    let format = notify_format(&args.notify_format)?;
    let now = match &args.at {
        Some(s) => ts::parse(s).map_err(|e| EngineError::Usage(format!("--at: {e}")))?,
        None => ts::now(),
    };
    let s = read_session(cli).await?;
    let report = async {
        let plan = s.plan(&crate::app::selection(&args.target)).await?;
        let columns = keyturn_ops::report::distribution(s.db.as_ref(), &s.cfg, &plan)
            .await
            .map_err(audit_err)?;
        let events = keyturn_audit::read_events(s.db.as_ref())
            .await
            .map_err(audit_err)?;
        keyturn_audit::report::due_report(
            now,
            &keyturn_ops::report::report_config(&s.cfg),
            &columns,
            &events,
        )
        .map_err(audit_err)
    }
    .await;
    s.db.close().await;
    let report = report?;
    let mut notified: Option<Result<(), String>> = None;
    let wanted = report.status != DueStatus::Ok || args.notify_always;
    if let Some(url) = args.notify.as_deref().filter(|u| !u.is_empty() && wanted) {
        let msg = Message::from_due(&report, &s.label, &keyturn_ops::host_name());
        notified = Some(
            notify::post(url, &msg.payload(format))
                .await
                .map_err(|e| e.to_string()),
        );
    }
    if cli.json {
        let mut v = serde_json::to_value(&report)?;
        if let serde_json::Value::Object(m) = &mut v {
            m.insert(
                "notify".into(),
                match &notified {
                    None => serde_json::json!({ "sent": false }),
                    Some(Ok(())) => serde_json::json!({ "sent": true }),
                    Some(Err(e)) => serde_json::json!({ "sent": false, "error": e }),
                },
            );
        }
        print_json(&v)?;
    } else {
        print_due(&report);
        if let Some(Ok(())) = &notified {
            outln!(
                "reminder sent to {}",
                notify::redact_webhook(args.notify.as_deref().unwrap_or(""))
            );
        }
    }
    if let Some(Err(e)) = &notified {
        errln!(
            "error: {e}: the reminder was NOT delivered (due status: {})",
            report.status.label()
        );
        return Ok(Exit::Error);
    }
    Ok(match report.status {
        DueStatus::Ok => Exit::Ok,
        DueStatus::DueSoon => Exit::DueSoon,
        DueStatus::Overdue => Exit::Overdue,
    })
}

fn print_due(r: &keyturn_audit::DueReport) {
    outln!(
        "keyturn due at {} (policy: keys at most {} days old, reminder {} days before{})",
        r.now.replace(".000Z", "Z"),
        r.max_key_age_days,
        r.warn_days,
        if r.columns
            .iter()
            .any(|c| c.max_key_age_days != r.max_key_age_days)
        {
            "; some columns override it"
        } else {
            ""
        }
    );
    outln!("");
    let mut t = crate::table::Table::new(["COLUMN", "LIMIT", "DUE", "STATUS", "DETAILS"])
        .indent(2)
        .right(&[1])
        .wrap(&[4]);
    for c in &r.columns {
        t.row([
            format!("{}.{}", c.table, c.column),
            format!("{}d", c.max_key_age_days),
            c.due_at
                .as_deref()
                .map(|d| &d[..10])
                .unwrap_or("-")
                .to_owned(),
            c.status.label().to_owned(),
            c.message.clone(),
        ]);
    }
    t.print();
    if !r.keys.is_empty() {
        outln!("");
        let mut t =
            crate::table::Table::new(["KEY", "VALUES", "IN USE SINCE", "AGE", "DUE", "STATUS"])
                .indent(2)
                .right(&[1, 3]);
        for k in &r.keys {
            t.row([
                format!("{}{}", k.key_id, if k.primary { " (current)" } else { "" }),
                crate::table::group(k.rows),
                k.since
                    .as_deref()
                    .map(|d| &d[..10])
                    .unwrap_or("unknown")
                    .to_owned(),
                k.age_days
                    .map(|a| format!("{a}d"))
                    .unwrap_or_else(|| "-".into()),
                k.due_at
                    .as_deref()
                    .map(|d| &d[..10])
                    .unwrap_or("-")
                    .to_owned(),
                k.status.label().to_owned(),
            ]);
        }
        t.print();
    }
    outln!("");
    outln!("overall: {} (exit {})", r.status.label(), r.exit_code);
}

// ----------------------------------------------------------------- report

pub async fn report(cli: &Cli, args: &ReportArgs) -> Result<Exit> {
    let to_stdout = args.html.as_ref().is_some_and(|p| p.as_os_str() == "-");
    if to_stdout && cli.json {
        return Err(keyturn_engine::EngineError::Usage(
            "--html - writes the page to stdout, where --json would print its data too: give one of them".into(),
        )
        .into());
    }
    let s = read_session(cli).await?;
    let report = async {
        let plan = s.plan(&crate::app::selection(&args.target)).await?;
        keyturn_ops::report::gather(s.db.as_ref(), &s.cfg, &plan, &s.label, ts::now())
            .await
            .map_err(audit_err)
    }
    .await;
    s.db.close().await;
    let report = report?;
    if to_stdout {
        use std::io::Write as _;
        let html = keyturn_audit::html::render(&report);
        let mut out = std::io::stdout().lock();
        // A reader that stops early (`| head`) is not an error.
        return match out.write_all(html.as_bytes()).and_then(|()| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(e).context("writing to stdout")
            }
            _ => Ok(Exit::Ok),
        };
    }
    if let Some(p) = &args.html {
        let html = keyturn_audit::html::render(&report);
        std::fs::write(p, html).with_context(|| format!("writing {}", p.display()))?;
        if !cli.json {
            errln!("wrote the evidence report to {}", p.display());
        }
    }
    if cli.json {
        print_json(&report)?;
    } else {
        let sm = &report.summary;
        outln!(
            "compliance: {} · key ages: {} · audit trail: {} ({} events) · latest verify: {} · keys holding data: {} · current key: {}",
            sm.compliance.label(),
            sm.policy.label(),
            if sm.chain_ok { "intact" } else { "BROKEN" },
            sm.events,
            sm.latest_verify.as_deref().unwrap_or("none recorded"),
            sm.keys_in_use,
            sm.current_key_id.as_deref().unwrap_or("unknown")
        );
        for a in &sm.attention {
            outln!("  needs attention: {a}");
        }
        if args.html.is_none() {
            outln!("(--html FILE writes the full report as one page; --json prints its data)");
        }
    }
    Ok(Exit::Ok)
}
