//! What the evidence report flags: interrupted and failed runs (from the
//! audit trail and from `keyturn_runs`), until a later run of the same
//! operation finishes; and never "compliance: ok" beside a failed verify.

mod common;

use keyturn_audit::report::{self, Compliance, EvidenceReport};
use keyturn_audit::{AuditAction, NewEvent, Outcome, append, store};
use keyturn_db::OpenRun;
use keyturn_ops::Config;

const CONFIG: &str = r#"
[database]
url = "sqlite://flags.db"
[keys]
primary = "k2"
[[target]]
table = "patients"
primary_key = "id"
columns = [{ name = "phone" }]
"#;

/// The report over these events (the keys are young: the policy is met),
/// with `open` as what `keyturn_runs` still says is running.
async fn report_of(events: &[NewEvent], open: &[OpenRun]) -> EvidenceReport {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite(dir.path(), "flags.db").await;
    for e in events {
        append(db.as_ref(), e).await.unwrap();
    }
    let rows = store::read_rows(db.as_ref()).await.unwrap();
    db.close().await;
    let mut v = keyturn_audit::ChainVerifier::new();
    for r in &rows {
        v.push_row(r);
    }
    let cfg = Config::parse(CONFIG).unwrap();
    report::build_with_runs(
        keyturn_audit::ts::now(),
        &keyturn_ops::report::report_config(&cfg),
        "sqlite://flags.db",
        Vec::new(),
        &rows,
        v.finish(),
        open,
    )
    .unwrap()
}

fn end(action: AuditAction, run: &str, outcome: Outcome) -> NewEvent {
    NewEvent::new(action, "ops", outcome)
        .keys(["k2", "k1"])
        .run_id(Some(run))
}

fn verify(outcome: Outcome) -> NewEvent {
    NewEvent::new(AuditAction::Verify, "audit", outcome).keys(["k2"])
}

#[tokio::test]
async fn everything_fine_is_ok() {
    let r = report_of(
        &[
            end(AuditAction::RotateEnd, "r1", Outcome::Ok),
            verify(Outcome::Ok),
        ],
        &[],
    )
    .await;
    assert_eq!(r.summary.compliance, Compliance::Ok);
    assert!(r.summary.attention.is_empty(), "{:?}", r.summary.attention);
    assert!(r.flagged_runs.is_empty());
}

#[tokio::test]
async fn a_failed_latest_verify_is_never_compliance_ok() {
    for outcome in [Outcome::Failed, Outcome::Mismatch] {
        let r = report_of(
            &[
                end(AuditAction::RotateEnd, "r1", Outcome::Ok),
                verify(Outcome::Ok),
                verify(outcome.clone()),
            ],
            &[],
        )
        .await;
        assert_eq!(r.summary.compliance, Compliance::Attention, "{outcome}");
        let v = serde_json::to_value(&r.summary).unwrap();
        assert_eq!(v["compliance"], "attention");
        assert_eq!(v["policy"], "ok");
        assert!(
            r.summary.attention[0].contains("latest verify"),
            "{:?}",
            r.summary.attention
        );
    }
}

#[tokio::test]
async fn interrupted_and_failed_runs_are_flagged_until_a_later_run_finishes() {
    let interrupted = NewEvent::new(AuditAction::RunInterrupted, "ops", Outcome::Interrupted)
        .run_id(Some("r1"))
        .detail("operation", "rotate");
    let lost = end(AuditAction::RotateEnd, "r2", Outcome::LockLost)
        .detail("lock_holder", "bob@host pid 7 (rotate)");
    let failed = end(AuditAction::EncryptEnd, "e1", Outcome::Failed)
        .detail("error_kind", "database")
        .detail("error", "database: connection refused\nmore");
    // A run refused by the lock (recorded so by older versions) changed
    // nothing: not flagged.
    let refused = end(AuditAction::RotateEnd, "r3", Outcome::Failed).detail("error_kind", "locked");
    let r = report_of(
        &[
            interrupted.clone(),
            lost.clone(),
            failed.clone(),
            refused,
            verify(Outcome::Ok),
        ],
        &[],
    )
    .await;
    let got: Vec<(&str, &str, &str)> = r
        .flagged_runs
        .iter()
        .map(|f| {
            (
                f.operation.as_str(),
                f.run_id.as_deref().unwrap(),
                f.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("rotate", "r1", "interrupted"),
            ("rotate", "r2", "lock_lost"),
            ("encrypt", "e1", "failed"),
        ]
    );
    assert_eq!(r.summary.compliance, Compliance::Attention);
    assert_eq!(r.summary.attention.len(), 3, "{:?}", r.summary.attention);
    assert!(r.summary.attention[1].contains("bob@host"));
    assert!(r.summary.attention[2].contains("connection refused"));
    assert!(!r.summary.attention[2].contains("more"));
    let html = keyturn_audit::html::render(&r);
    assert!(html.contains("id=\"flagged-runs\""));
    assert!(html.contains("needs attention"));

    // A rotate that finishes afterwards settles the rotate runs, not the
    // encrypt.
    let r = report_of(
        &[
            interrupted,
            lost,
            failed,
            end(AuditAction::RotateEnd, "r4", Outcome::Ok),
            verify(Outcome::Ok),
        ],
        &[],
    )
    .await;
    let ids: Vec<&str> = r
        .flagged_runs
        .iter()
        .filter_map(|f| f.run_id.as_deref())
        .collect();
    assert_eq!(ids, vec!["e1"]);
}

/// A run marked interrupted by the next run, which then lived on and
/// recorded its own end (lock lost), is one flagged run.
#[tokio::test]
async fn one_run_is_flagged_once() {
    let r = report_of(
        &[
            NewEvent::new(AuditAction::RunInterrupted, "ops", Outcome::Interrupted)
                .run_id(Some("r1"))
                .detail("operation", "rotate"),
            end(AuditAction::RotateEnd, "r1", Outcome::LockLost),
        ],
        &[],
    )
    .await;
    assert_eq!(r.flagged_runs.len(), 1);
    assert_eq!(r.flagged_runs[0].outcome, "lock_lost");
}

/// A run still `running` in keyturn_runs whose process is gone is flagged
/// before any run records it; one that is live is not.
#[tokio::test]
async fn a_running_record_without_its_process_is_flagged() {
    let open = |id: &str, state: &str| OpenRun {
        run_id: id.into(),
        operation: "rotate".into(),
        actor: "ops".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        state: state.into(),
    };
    let r = report_of(
        &[verify(Outcome::Ok)],
        &[open("gone", "interrupted"), open("live", "running")],
    )
    .await;
    assert_eq!(r.flagged_runs.len(), 1);
    assert_eq!(r.flagged_runs[0].run_id.as_deref(), Some("gone"));
    assert_eq!(r.flagged_runs[0].seq, None);
    assert!(r.summary.attention[0].contains("its process is gone"));
    assert_eq!(r.summary.compliance, Compliance::Attention);
}

/// Names, reasons and errors come from the database and the config: markup
/// in them is shown as text wherever the page puts them.
#[tokio::test]
async fn hostile_values_are_escaped_everywhere() {
    let failed = end(AuditAction::EncryptEnd, "e1", Outcome::Failed)
        .detail("error_kind", "database")
        .detail("error", "database: <b onclick='x'>\"y\"</b> & z");
    let mut r = report_of(&[failed], &[]).await;
    r.columns = vec![report::ColumnDistribution {
        table: "t<img>".into(),
        column: "c\"'".into(),
        total: 1000,
        nulls: 0,
        by_key: vec![
            report::KeyCount {
                key_id: "k2".into(),
                rows: 990,
            },
            report::KeyCount {
                key_id: "<k1>".into(),
                rows: 1,
            },
        ],
        keyless: 0,
        unrecognized: 9,
        candidates: vec![],
        primary: None,
    }];
    r.database = "sqlite://<x>.db".into();
    let html = keyturn_audit::html::render(&r);
    for raw in ["<b onclick", "<img>", "<k1>", "<x>", "c\"'"] {
        assert!(!html.contains(raw), "{raw} not escaped");
    }
    for escaped in [
        "&#60;b onclick=&#39;x&#39;&#62;&#34;y&#34;&#60;/b&#62; &#38; z",
        "t&#60;img&#62;.c&#34;&#39;",
        "data-key=\"&#60;k1&#62;\"",
        "sqlite://&#60;x&#62;.db",
    ] {
        assert!(html.contains(escaped), "missing {escaped}");
    }
}
