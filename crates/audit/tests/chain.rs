//! The hash chain in a real (SQLite) audit table: appends, tampering by
//! edit, delete and reorder, anchors, exports, and an independent
//! recomputation in Python (the documented canonical form).

mod common;

use keyturn_audit::{AuditAction, ColumnCounts, NewEvent, Outcome, append, store, verify};
use keyturn_db::Database;
use std::sync::Arc;

/// A reason that exercises the canonical string escaping.
const TRICKY: &str = "Schlüsselwechsel 🔑 \"quoted\" back\\slash\ttab\nnewline \u{1}ctrl </b>";

fn events() -> Vec<NewEvent> {
    vec![
        NewEvent::new(AuditAction::EncryptStart, "alice@ops", Outcome::Started)
            .keys(["k1"])
            .columns(vec![
                ColumnCounts::new("patients", "phone").count("unrecognized", 100),
            ]),
        NewEvent::new(AuditAction::EncryptEnd, "alice@ops", Outcome::Ok)
            .keys(["k1"])
            .run_id(Some("20250101T000000Z-1"))
            .duration_ms(1234)
            .columns(vec![
                ColumnCounts::new("patients", "phone")
                    .count("encrypted", 100)
                    .count("failed", 0),
            ]),
        NewEvent::new(AuditAction::RotateStart, "bob@ops", Outcome::Started)
            .reason(Some(TRICKY))
            .keys(["k2", "k1"]),
        NewEvent::new(
            AuditAction::RotateEnd,
            "bob@ops",
            Outcome::CompletedWithErrors,
        )
        .reason(Some(TRICKY))
        .keys(["k2", "k1"])
        .duration_ms(99)
        .columns(vec![
            ColumnCounts::new("patients", "phone")
                .count("rotated", 99)
                .count("failed", 1),
        ])
        .detail("start_seq", 3u64)
        .detail(
            "nested",
            serde_json::json!({"z": [1, 2, {"b": true, "a": null}], "a": "x"}),
        ),
        NewEvent::new(AuditAction::Verify, "carol@audit", Outcome::Mismatch)
            .keys(["k2"])
            .detail("deep", true),
        NewEvent::new(AuditAction::KeyCompromised, "dave@sec", Outcome::Ok)
            .keys(["k1"])
            .reason(Some("compromise")),
    ]
}

async fn fresh(dir: &tempfile::TempDir, name: &str) -> Arc<dyn Database> {
    let db = common::sqlite(dir.path(), name).await;
    for e in events() {
        append(db.as_ref(), &e).await.unwrap();
    }
    db
}

#[tokio::test]
async fn appends_link_each_event_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh(&dir, "ok.db").await;
    let rows = store::read_rows(db.as_ref()).await.unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0].prev_hash, keyturn_audit::GENESIS);
    for w in rows.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    let evs = store::read_events(db.as_ref()).await.unwrap();
    assert_eq!(evs[3].reason.as_deref(), Some(TRICKY));
    assert_eq!(evs[3].columns[0].get("rotated"), 99);
    assert_eq!(evs[3].action, AuditAction::RotateEnd);
    let r = verify(db.as_ref(), None).await.unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!((r.events, r.tip_seq), (6, Some(6)));
    assert_eq!(r.tip_hash.as_deref(), Some(rows[5].hash.as_str()));
}

#[tokio::test]
async fn an_edited_event_is_named() {
    let dir = tempfile::tempdir().unwrap();
    for (sql, seq) in [
        (
            "UPDATE keyturn_audit SET actor = 'mallory' WHERE seq = 3",
            3,
        ),
        (
            "UPDATE keyturn_audit SET column_counts = replace(column_counts, '99', '100') WHERE seq = 4",
            4,
        ),
        ("UPDATE keyturn_audit SET outcome = 'ok' WHERE seq = 5", 5),
        (
            "UPDATE keyturn_audit SET event_time = '2020-01-01T00:00:00.000Z' WHERE seq = 1",
            1,
        ),
        (
            "UPDATE keyturn_audit SET details = '{\"deep\":false}' WHERE seq = 5",
            5,
        ),
        (
            "UPDATE keyturn_audit SET details = 'not json' WHERE seq = 2",
            2,
        ),
    ] {
        let db = fresh(&dir, &format!("edit{seq}-{}.db", sql.len())).await;
        db.execute_script(sql).await.unwrap();
        let r = verify(db.as_ref(), None).await.unwrap();
        assert!(!r.ok, "{sql}");
        let bad = r.first_bad.unwrap();
        assert_eq!(bad.seq, seq, "{sql}: {}", bad.message);
        assert!(
            bad.kind == "edited" || (bad.kind == "unreadable" && sql.contains("not json")),
            "{sql}: {bad:?}"
        );
        assert!(
            bad.message.contains(&format!("event #{seq}")),
            "{}",
            bad.message
        );
    }
}

#[tokio::test]
async fn a_deleted_event_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh(&dir, "delete.db").await;
    db.execute_script("DELETE FROM keyturn_audit WHERE seq = 3")
        .await
        .unwrap();
    let r = verify(db.as_ref(), None).await.unwrap();
    let bad = r.first_bad.unwrap();
    assert_eq!(
        (bad.seq, bad.kind.as_str()),
        (3, "missing"),
        "{}",
        bad.message
    );
    assert!(
        bad.message.contains("#2 is followed by #4"),
        "{}",
        bad.message
    );

    // The first event gone.
    let db = fresh(&dir, "delete1.db").await;
    db.execute_script("DELETE FROM keyturn_audit WHERE seq = 1")
        .await
        .unwrap();
    let bad = verify(db.as_ref(), None).await.unwrap().first_bad.unwrap();
    assert_eq!((bad.seq, bad.kind.as_str()), (1, "missing"));

    // Several in a row.
    let db = fresh(&dir, "delete3.db").await;
    db.execute_script("DELETE FROM keyturn_audit WHERE seq IN (2, 3, 4)")
        .await
        .unwrap();
    let bad = verify(db.as_ref(), None).await.unwrap().first_bad.unwrap();
    assert_eq!(bad.seq, 2);
    assert!(
        bad.message.contains("events #2 to #4 are missing"),
        "{}",
        bad.message
    );
}

#[tokio::test]
async fn reordered_events_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // Swap events 3 and 4.
    let db = fresh(&dir, "swap.db").await;
    db.execute_script(
        "UPDATE keyturn_audit SET seq = -3 WHERE seq = 3; UPDATE keyturn_audit SET seq = 3 WHERE seq = 4; UPDATE keyturn_audit SET seq = 4 WHERE seq = -3",
    )
    .await
    .unwrap();
    let r = verify(db.as_ref(), None).await.unwrap();
    let bad = r.first_bad.unwrap();
    assert_eq!(
        (bad.seq, bad.kind.as_str()),
        (3, "edited"),
        "{}",
        bad.message
    );

    // Move the last event to the front of a gap-free renumbering: 6,1,2,3,4,5.
    let db = fresh(&dir, "rotate.db").await;
    db.execute_script(
        "UPDATE keyturn_audit SET seq = seq + 100; UPDATE keyturn_audit SET seq = 1 WHERE seq = 106; UPDATE keyturn_audit SET seq = seq - 99 WHERE seq > 100",
    )
    .await
    .unwrap();
    let bad = verify(db.as_ref(), None).await.unwrap().first_bad.unwrap();
    assert_eq!(bad.seq, 1, "{}", bad.message);
}

#[tokio::test]
async fn a_rehashed_edit_breaks_the_next_link_and_anchors_catch_truncation_and_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh(&dir, "rehash.db").await;
    let rows = store::read_rows(db.as_ref()).await.unwrap();
    // Edit #3 and give it a correct hash of its own: #4 no longer follows it.
    let mut r3 = rows[2].clone();
    r3.actor = "mallory".into();
    let h = keyturn_audit::chain::row_hash(&r3).unwrap();
    db.execute_script(&format!(
        "UPDATE keyturn_audit SET actor = 'mallory', hash = '{h}' WHERE seq = 3"
    ))
    .await
    .unwrap();
    let bad = verify(db.as_ref(), None).await.unwrap().first_bad.unwrap();
    assert_eq!(
        (bad.seq, bad.kind.as_str()),
        (4, "broken_link"),
        "{}",
        bad.message
    );
    assert!(
        bad.message.contains("does not follow event #3"),
        "{}",
        bad.message
    );

    // Removing the last events cannot be seen in the chain itself…
    let db = fresh(&dir, "truncate.db").await;
    let tip = verify(db.as_ref(), None).await.unwrap();
    let anchor = (tip.tip_seq.unwrap(), tip.tip_hash.clone().unwrap());
    db.execute_script("DELETE FROM keyturn_audit WHERE seq >= 5")
        .await
        .unwrap();
    assert!(verify(db.as_ref(), None).await.unwrap().ok);
    // …but an anchor recorded earlier sees it.
    let r = verify(db.as_ref(), Some(anchor.clone())).await.unwrap();
    let bad = r.first_bad.unwrap();
    assert_eq!(
        (bad.seq, bad.kind.as_str()),
        (6, "anchor"),
        "{}",
        bad.message
    );

    // A complete rewrite with recomputed hashes: the anchor's hash differs.
    let db = fresh(&dir, "rewrite.db").await;
    let anchor = {
        let r = verify(db.as_ref(), None).await.unwrap();
        (r.tip_seq.unwrap(), r.tip_hash.unwrap())
    };
    let rows = store::read_rows(db.as_ref()).await.unwrap();
    db.execute_script("DELETE FROM keyturn_audit")
        .await
        .unwrap();
    let mut prev = keyturn_audit::GENESIS.to_owned();
    for mut r in rows {
        if r.seq == 2 {
            r.actor = "mallory".into();
        }
        r.prev_hash = prev.clone();
        r.hash = keyturn_audit::chain::row_hash(&r).unwrap();
        prev = r.hash.clone();
        let build = |_: Option<&keyturn_db::AuditTip>| Ok(r.clone());
        db.audit_append(&build).await.unwrap();
    }
    assert!(verify(db.as_ref(), None).await.unwrap().ok);
    let bad = verify(db.as_ref(), Some(anchor))
        .await
        .unwrap()
        .first_bad
        .unwrap();
    assert_eq!((bad.seq, bad.kind.as_str()), (6, "anchor"));
    assert!(bad.message.contains("rewritten"), "{}", bad.message);
}

fn export(rows: &[keyturn_db::AuditRow]) -> String {
    rows.iter()
        .map(|r| keyturn_audit::chain::export_object(r).to_string() + "\n")
        .collect()
}

#[tokio::test]
async fn exports_verify_offline_and_tampering_with_them_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh(&dir, "export.db").await;
    let rows = store::read_rows(db.as_ref()).await.unwrap();
    let text = export(&rows);
    let r = store::verify_export(&text, None);
    assert!(r.ok && r.complete, "{r:?}");
    assert_eq!(r.events, 6);

    let lines: Vec<&str> = text.lines().collect();
    // Edited line.
    let edited = text.replace("\"actor\":\"carol@audit\"", "\"actor\":\"eve\"");
    let bad = store::verify_export(&edited, None).first_bad.unwrap();
    assert_eq!((bad.seq, bad.kind.as_str()), (5, "edited"));
    // Deleted line.
    let deleted: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let bad = store::verify_export(&deleted, None).first_bad.unwrap();
    assert_eq!((bad.seq, bad.kind.as_str()), (2, "missing"));
    // Reordered lines.
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    let bad = store::verify_export(&swapped.join("\n"), None)
        .first_bad
        .unwrap();
    assert_eq!(bad.seq, 3, "{bad:?}");
    // A partial export (from event 3 on) verifies from its first event.
    let partial = lines[2..].join("\n");
    let r = store::verify_export(&partial, None);
    assert!(r.ok && !r.complete, "{r:?}");
}

/// The canonical form is exactly Python's json.dumps(sort_keys=True,
/// separators=(",", ":"), ensure_ascii=False): an auditor can recompute the
/// chain from an export with nothing but Python (docs/AUDIT.md).
#[tokio::test]
async fn python_recomputes_the_same_hashes() {
    let Some(py) = ["python3", "python"].into_iter().find(|p| {
        std::process::Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: python_recomputes_the_same_hashes: python3 not found\n",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = fresh(&dir, "py.db").await;
    let rows = store::read_rows(db.as_ref()).await.unwrap();
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, export(&rows)).unwrap();
    let script = dir.path().join("check.py");
    std::fs::write(&script, include_str!("../../../docs/audit_verify.py")).unwrap();
    let out = std::process::Command::new(py)
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("6 events, chain intact"), "{stdout}");
    // And it names a tampered event too.
    let tampered = export(&rows).replace("bob@ops", "mallory");
    std::fs::write(&path, tampered).unwrap();
    let out = std::process::Command::new(py)
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("event #3"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn refuses_events_the_canonical_form_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite(dir.path(), "refuse.db").await;
    let e = NewEvent::new(AuditAction::Verify, "x", Outcome::Ok).detail("ratio", 0.5);
    assert!(
        append(db.as_ref(), &e)
            .await
            .unwrap_err()
            .to_string()
            .contains("not an integer")
    );
    let e = NewEvent::new(AuditAction::Verify, " ", Outcome::Ok);
    assert!(append(db.as_ref(), &e).await.is_err());
    let e = NewEvent::new(AuditAction::Verify, "x", Outcome::Ok).reason(Some("a\0b"));
    assert!(
        append(db.as_ref(), &e)
            .await
            .unwrap_err()
            .to_string()
            .contains("NUL")
    );
    assert!(store::read_rows(db.as_ref()).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_appenders_never_fork_the_chain_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite(dir.path(), "concurrent.db").await;
    hammer(db.clone(), 4, 15).await;
    let r = verify(db.as_ref(), None).await.unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(r.events, 60);
}

/// `tasks` appenders, `each` events each, all at once.
pub async fn hammer(db: Arc<dyn Database>, tasks: usize, each: usize) {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let db = db.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..each {
                let e = NewEvent::new(AuditAction::Verify, &format!("appender-{t}"), Outcome::Ok)
                    .detail("i", i as u64);
                append(db.as_ref(), &e).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}
