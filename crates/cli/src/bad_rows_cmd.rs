//! `keyturn bad-rows list|ack`: the rows keyturn could not process, as a
//! list an operator works through. Needs no key material.

use crate::cli::Cli;
use crate::exit::Exit;
use crate::output::print_json;
use anyhow::Result;
use clap::{Args, Subcommand};
use keyturn_ops::ReadSession;
use keyturn_ops::bad_rows::AckRequest;

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
    let s = crate::compliance::read_session(cli).await?;
    let out = match cmd {
        BadRowsCommand::List(f) => list(&s, f, cli.json).await,
        BadRowsCommand::Ack(a) => ack(&s, a, actor, cli.json).await,
    };
    s.db.close().await;
    out
}

async fn list(s: &ReadSession, f: &BadRowsFilter, json: bool) -> Result<Exit> {
    let records = keyturn_ops::bad_rows::list(s, f.table.as_deref(), f.column.as_deref()).await?;
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
    let mut t = crate::table::Table::new([
        "COLUMN",
        "KEY",
        "REASON",
        "FIRST SEEN",
        "LAST SEEN",
        "TIMES",
        "ACKNOWLEDGEMENT",
    ])
    .right(&[5])
    .wrap(&[2, 6]);
    for r in &records {
        let state = if r.acknowledged {
            format!(
                "by {} at {}: {}",
                r.acked_by.as_deref().unwrap_or("?"),
                r.acked_at.as_deref().unwrap_or("?"),
                r.ack_reason.as_deref().unwrap_or("")
            )
        } else if r.changed_since_ack {
            "acknowledged once, but the value changed since".into()
        } else {
            "not acknowledged".into()
        };
        t.row([
            format!("{}.{}", r.table, r.column),
            r.pk.clone(),
            r.reason.clone(),
            r.first_seen.clone(),
            r.last_seen.clone(),
            r.times_seen.to_string(),
            state,
        ]);
    }
    t.print();
    let acked = records.iter().filter(|r| r.acknowledged).count();
    outln!(
        "{} bad row{}, {acked} acknowledged",
        records.len(),
        if records.len() == 1 { "" } else { "s" }
    );
    Ok(Exit::Ok)
}

async fn ack(s: &ReadSession, a: &BadRowsAckArgs, actor: &str, json: bool) -> Result<Exit> {
    let req = AckRequest {
        all: a.all,
        pks: a.pk.clone(),
        table: a.filter.table.clone(),
        column: a.filter.column.clone(),
        reason: a.reason.clone(),
    };
    let rows = keyturn_ops::bad_rows::ack(s, &req, actor).await?;
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
