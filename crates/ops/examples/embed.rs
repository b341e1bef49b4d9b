//! A program embedding keyturn: the same operations the `keyturn` binary
//! runs, without the command line. It rotates every configured column to
//! its primary key, audited and recorded like `keyturn rotate`, then
//! verifies by decrypting.
//!
//! ```text
//! keyturn demo --dir /tmp/kt          # a SQLite database, keys and config
//! cargo run -p keyturn-ops --example embed -- /tmp/kt/keyturn.toml
//! ```

use keyturn_engine::{NoProgress, Operation, RunOptions};
use keyturn_ops::{Config, RunAudit, Selection, Session, Verdict};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| keyturn_ops::DEFAULT_CONFIG.to_owned());
    let cfg = Config::load(std::path::Path::new(&path))?;
    let opts = RunOptions {
        batch_size: cfg.rotation.batch_size,
        workers: cfg.rotation.workers_for(&cfg.database.url),
        max_rows_per_sec: cfg.rotation.max_rows_per_sec,
        dry_run: false,
        actor: format!("embed@{}", keyturn_ops::host_name()),
        skip_unknown_keys: false,
    };
    let connections = u32::try_from(opts.workers).unwrap_or(1) + 2;
    let mut session = Session::open(cfg, &Selection::default(), connections).await?;

    let before = keyturn_ops::verify::status(&session, false).await?;
    for c in &before.report.columns {
        println!(
            "{}.{}: {} under the primary, {} to rotate",
            c.table, c.column, c.under_current, c.needs_rotation
        );
    }
    // Setting `stop` (from a signal handler, say) ends the run at the next
    // batch boundary with its checkpoint saved; the next run resumes.
    let stop = Arc::new(AtomicBool::new(false));
    let run = keyturn_ops::run::run(
        &mut session,
        Operation::Rotate,
        opts,
        &RunAudit {
            reason: Some("scheduled".into()),
            ..RunAudit::default()
        },
        Arc::new(NoProgress),
        stop,
    )
    .await;
    let run = match run {
        Ok(r) => r,
        Err(e) => {
            session.close().await;
            return Err(e.into());
        }
    };
    println!(
        "rotate: {} ({:?}), {} bad rows",
        run.summary.outcome,
        run.verdict(),
        run.summary.failed()
    );
    let verified = keyturn_ops::verify::verify(&session, "embed", true, true, &NoProgress).await;
    session.close().await;
    let verified = verified?;
    println!(
        "verify --deep: {}",
        if verified.report.ok { "ok" } else { "FAILED" }
    );
    if run.verdict() != Verdict::Done || !verified.report.ok {
        std::process::exit(1);
    }
    Ok(())
}
