//! `keyturn bad-rows list|ack`: the rows keyturn could not process, as a
//! list an operator works through. Needs no key material.

use crate::cli::Cli;
use crate::compliance::ReadSession;
use crate::exit::Exit;
use crate::output::print_json;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use keyturn_audit::{AuditAction, NewEvent, Outcome};
use keyturn_db::{BadRowAck, BadRowRecord, now_rfc3339};
use keyturn_engine::EngineError;

#[derive(Subcommand, Debug)]
pub enum BadRowsCommand {
    /// Every recorded bad row: table, column, primary key, reason, first and last seen, times seen, acknowledgement
    List(BadRowsFilter),
    /// Acknowledge bad rows as they are: verify then lists them without failing, until their value changes (audited)
    Ack(BadRowsAckArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct BadRowsFilter {
    /// Only this table
    #[arg(long, value_name = "T")]
    pub table: Option<String>,
    /// Only this column
    #[arg(long, value_name = "C")]
    pub column: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct BadRowsAckArgs {
    #[command(flatten)]
    pub filter: BadRowsFilter,
    /// The rows' primary keys as `bad-rows list` shows them (repeatable); needs --table and --column
    #[arg(long, value_name = "PK")]
    pub pk: Vec<String>,
    /// Every recorded bad row (of --table / --column when given)
    #[arg(long, conflicts_with = "pk")]
    pub all: bool,
    /// Why these rows may stay as they are (recorded in the audit trail)
    #[arg(long, value_name = "TEXT", required = true)]
    pub reason: String,
}

pub async fn run(cli: &Cli, cmd: &BadRowsCommand, actor: &str) -> Result<Exit> {
    let s = ReadSession::open(cli).await?;
    let out = match cmd {
        BadRowsCommand::List(f) => list(&s, f, cli.json).await,
        BadRowsCommand::Ack(a) => ack(&s, a, actor, cli.json).await,
    };
    s.db.close().await;
    out
}

async fn list(s: &ReadSession, f: &BadRowsFilter, json: bool) -> Result<Exit> {
    let records =
        s.db.load_bad_rows(f.table.as_deref(), f.column.as_deref())
            .await?;
    if json {
        print_json(&serde_json::json!({
            "count": records.len(),
            "acknowledged": records.iter().filter(|r| r.acknowledged).count(),
            "bad_rows": records,
        }))?;
        return Ok(Exit::Ok);
    }
    if records.is_empty() {
        outln!("no bad rows recorded");
        return Ok(Exit::Ok);
    }
    for r in &records {
        let state = if r.acknowledged {
            format!(
                "acknowledged by {} at {}: {}",
                r.acked_by.as_deref().unwrap_or("?"),
                r.acked_at.as_deref().unwrap_or("?"),
                r.ack_reason.as_deref().unwrap_or("")
            )
        } else if r.changed_since_ack {
            "acknowledged once, but the value changed since".into()
        } else {
            "not acknowledged".into()
        };
        outln!("{}.{} key {}: {}", r.table, r.column, r.pk, r.reason);
        outln!(
            "    first seen {}, last seen {}, {} time{}; {state}",
            r.first_seen,
            r.last_seen,
            r.times_seen,
            if r.times_seen == 1 { "" } else { "s" }
        );
    }
    let acked = records.iter().filter(|r| r.acknowledged).count();
    outln!(
        "{} bad row{}, {acked} acknowledged",
        records.len(),
        if records.len() == 1 { "" } else { "s" }
    );
    Ok(Exit::Ok)
}

async fn ack(s: &ReadSession, a: &BadRowsAckArgs, actor: &str, json: bool) -> Result<Exit> {
    let reason = a.reason.trim();
    if reason.is_empty() {
        return Err(EngineError::Usage("--reason must not be empty".into()).into());
    }
    if !a.all && a.pk.is_empty() {
        return Err(EngineError::Usage(
            "name the rows: --table T --column C --pk PK (repeatable), or --all".into(),
        )
        .into());
    }
    if !a.pk.is_empty() && (a.filter.table.is_none() || a.filter.column.is_none()) {
        return Err(EngineError::Usage("--pk needs --table and --column".into()).into());
    }
    let records =
        s.db.load_bad_rows(a.filter.table.as_deref(), a.filter.column.as_deref())
            .await?;
    let chosen: Vec<&BadRowRecord> = if a.all {
        records.iter().collect()
    } else {
        let missing: Vec<&String> =
            a.pk.iter()
                .filter(|pk| !records.iter().any(|r| &r.pk == *pk))
                .collect();
        if !missing.is_empty() {
            return Err(EngineError::Config(format!(
                "no bad row recorded for key{} {} in {}.{} (see `keyturn bad-rows list`); nothing was acknowledged",
                if missing.len() == 1 { "" } else { "s" },
                missing
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                a.filter.table.as_deref().unwrap_or(""),
                a.filter.column.as_deref().unwrap_or("")
            ))
            .into());
        }
        records.iter().filter(|r| a.pk.contains(&r.pk)).collect()
    };
    let rows: Vec<(String, String, String)> = chosen
        .iter()
        .map(|r| (r.table.clone(), r.column.clone(), r.pk.clone()))
        .collect();
    if !rows.is_empty() {
        let ack = BadRowAck {
            by: actor.to_owned(),
            at: now_rfc3339(),
            reason: reason.to_owned(),
        };
        // Recorded first: no acknowledgement without its audit event.
        let listed: Vec<serde_json::Value> = rows
            .iter()
            .take(1000)
            .map(|(t, c, pk)| serde_json::json!({ "table": t, "column": c, "pk": pk }))
            .collect();
        let ev = NewEvent::new(AuditAction::BadRowsAck, actor, Outcome::Ok)
            .reason(Some(reason))
            .detail("rows", rows.len() as u64)
            .detail("acknowledged", serde_json::Value::Array(listed));
        keyturn_audit::append(s.db.as_ref(), &ev)
            .await
            .map_err(anyhow::Error::new)
            .context(
                "recording the acknowledgement in the audit trail (nothing was acknowledged)",
            )?;
        s.db.ack_bad_rows(&rows, &ack).await?;
    }
    if json {
        print_json(&serde_json::json!({
            "acknowledged": rows.len(),
            "rows": rows
                .iter()
                .map(|(t, c, pk)| serde_json::json!({ "table": t, "column": c, "pk": pk }))
                .collect::<Vec<_>>(),
        }))?;
    } else {
        outln!(
            "{} bad row{} acknowledged",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        );
    }
    Ok(Exit::Ok)
}
