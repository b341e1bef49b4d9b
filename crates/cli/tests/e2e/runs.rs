//! `keyturn runs` from another process: it lists a running run with its
//! live progress, and pauses, resumes and stops it through keyturn's tables
//! (no signal, no shell on the run's host); every request is audited.

use crate::common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

scenarios!(runs_watch_pause_resume_stop);

const ROWS: i64 = 8000;

async fn encrypted(t: &TestDb, tb: &Table) -> usize {
    t.read(tb)
        .await
        .values()
        .filter(|v| !v[0].as_deref().unwrap_or_default().starts_with(b"value-"))
        .count()
}

/// The newest run as `keyturn runs --json` shows it.
async fn newest(t: &TestDb, cfg: &Cfg) -> Value {
    let o = t
        .keyturn(cfg, &["--json", "runs", "--limit", "1"])
        .await
        .expect(0);
    o.json()["runs"][0].clone()
}

/// Waits until the newest run's published state is `want`.
async fn wait_state(t: &TestDb, cfg: &Cfg, want: &str) -> Value {
    let start = Instant::now();
    loop {
        let r = newest(t, cfg).await;
        let started = r["progress"]["columns"]
            .as_array()
            .is_some_and(|c| !c.is_empty());
        if r["progress"]["state"] == want && started {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run never showed {want}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn runs_watch_pause_resume_stop(t: TestDb) {
    let tb = t.plaintext_table(&t.table_name("runs"), "v", ROWS).await;
    let key = t.key("k1");
    let mut cfg = Cfg::new(&[&tb], &[&key], "k1");
    cfg.batch_size = 100;
    let p = t.spawn(&cfg, &["encrypt", "--max-rows-per-sec", "1000"]);

    // Seen from another process: running, its host and pid, rows to do.
    let r = wait_state(&t, &cfg, "running").await;
    assert_eq!(r["state"], "running", "{r}");
    assert_eq!(r["operation"], "encrypt", "{r}");
    assert_eq!(r["progress"]["pid"], p.pid(), "{r}");
    assert_eq!(r["progress"]["columns"][0]["todo"], ROWS, "{r}");
    let run_id = r["run_id"].as_str().unwrap().to_owned();

    // Pause: it stops writing at the next batch boundary.
    t.keyturn(&cfg, &["runs", "pause"]).await.expect(0);
    let r = wait_state(&t, &cfg, "paused").await;
    assert_eq!(r["control"]["action"], "pause", "{r}");
    let held = encrypted(&t, &tb).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = encrypted(&t, &tb).await;
    assert!(
        still - held <= 2 * 100,
        "kept writing while paused: {held} -> {still}"
    );
    assert!(still < ROWS as usize, "finished before the pause");

    // Resume: it goes on.
    t.keyturn(&cfg, &["runs", "resume", &run_id])
        .await
        .expect(0);
    let start = Instant::now();
    while encrypted(&t, &tb).await <= still + 200 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no progress after resume"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Stop: like Ctrl-C, checkpoint saved, resumable.
    let o = t.keyturn(&cfg, &["--json", "runs", "stop"]).await.expect(0);
    assert_eq!(o.json()["action"], "stop", "{o}");
    let o = p.wait(Duration::from_secs(60)).await.expect(130);
    assert!(o.stderr.contains("stop requested by"), "{o}");
    let r = newest(&t, &cfg).await;
    assert_eq!(r["state"], "interrupted", "{r}");
    assert!(encrypted(&t, &tb).await < ROWS as usize);
    assert!(t.meta_rows("keyturn_checkpoints", &tb.name).await > 0);
    // A request for a run that is not running is refused.
    t.keyturn(&cfg, &["runs", "pause", &run_id]).await.expect(2);

    let o = t.keyturn(&cfg, &["--json", "encrypt"]).await.expect(0);
    assert!(
        o.json()["columns"][0]["resumed_rows"].as_u64().unwrap() > 0,
        "{o}"
    );
    assert_eq!(encrypted(&t, &tb).await, ROWS as usize);
    let audit = t
        .keyturn(
            &cfg,
            &["--json", "audit", "list", "--action", "run.control"],
        )
        .await
        .expect(0);
    let events = audit.json();
    let actions: Vec<String> = events
        .as_array()
        .expect("a list of events")
        .iter()
        .map(|e| {
            e["details"]["action"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(actions, ["pause", "resume", "stop"], "{audit}");
}
