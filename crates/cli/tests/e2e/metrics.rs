//! `--metrics-addr`: a throttled encryption scraped while it runs. The
//! exposition is read with a Prometheus text parser; the counters grow,
//! the histogram's buckets are cumulative, `/health` follows `keyturn runs
//! pause|resume`, and the last scrape (during `[metrics] linger_seconds`)
//! matches the run's own summary.

use crate::common::*;
use prometheus_parse::{Sample, Scrape, Value as PValue};
use std::time::{Duration, Instant};

scenarios!(metrics_scraped_during_a_throttled_run);

const ROWS: i64 = 4000;
const BATCH: usize = 100;

/// A port nobody listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("its address").port()
}

async fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

struct Metrics {
    text: String,
    samples: Vec<Sample>,
}

impl Metrics {
    /// A sample's value (counters, gauges, and the histograms' `_sum` and
    /// `_count`, which the parser leaves untyped).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                PValue::Counter(v) | PValue::Gauge(v) | PValue::Untyped(v) => *v,
                other => panic!("{name} is not a single number: {other:?}"),
            })
    }

    fn rows(&self, tb: &Table, outcome: &str) -> f64 {
        self.value(
            "keyturn_rows_total",
            &[("table", &tb.name), ("column", "v"), ("outcome", outcome)],
        )
        .unwrap_or_else(|| panic!("no keyturn_rows_total {outcome}:\n{}", self.text))
    }

    fn one(&self, name: &str) -> f64 {
        self.value(name, &[])
            .unwrap_or_else(|| panic!("no {name}:\n{}", self.text))
    }
}

async fn scrape(base: &str) -> Metrics {
    let (status, text) = get(&format!("{base}/metrics"))
        .await
        .expect("/metrics answers");
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("# EOF\n"), "not OpenMetrics text:\n{text}");
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    Metrics {
        text,
        samples: scrape.samples,
    }
}

/// Scrapes until `ok` holds.
async fn scrape_until(base: &str, what: &str, ok: impl Fn(&Metrics) -> bool) -> Metrics {
    let start = Instant::now();
    loop {
        let m = scrape(base).await;
        if ok(&m) {
            return m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never saw {what}:\n{}",
            m.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn health_until(base: &str, want: (u16, &str)) {
    let start = Instant::now();
    loop {
        let got = get(&format!("{base}/health")).await;
        if got.as_ref().is_some_and(|(s, b)| (*s, b.trim()) == want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "/health never said {want:?}; last {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metrics_scraped_during_a_throttled_run(t: TestDb) {
    let tb = t.plaintext_table(&t.table_name("metrics"), "v", ROWS).await;
    let key = t.key("k1");
    let mut cfg = Cfg::new(&[&tb], &[&key], "k1");
    cfg.batch_size = BATCH;
    // The flag gives the address; the config keeps the endpoint up a little
    // after the run so the last scrape sees the final counts.
    cfg.extra_toml = "\n[metrics]\nlinger_seconds = 4\n".into();

    // A taken port: a clear error before anything runs.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let o = t
        .keyturn(&cfg, &["encrypt", "--metrics-addr", &taken_addr])
        .await
        .expect(1);
    assert!(
        o.stderr.contains(&taken_addr) && o.stderr.contains("cannot listen"),
        "{o}"
    );
    drop(taken);

    let addr = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{addr}");
    let p = t.spawn(
        &cfg,
        &[
            "--json",
            "encrypt",
            "--max-rows-per-sec",
            "500",
            "--metrics-addr",
            &addr,
        ],
    );

    health_until(&base, (200, "ok")).await;
    let first = scrape_until(&base, "rows written", |m| {
        m.value(
            "keyturn_rows_total",
            &[("table", &tb.name), ("outcome", "written")],
        )
        .is_some_and(|v| v > 0.0)
    })
    .await;
    let w1 = first.rows(&tb, "written");
    assert_eq!(first.one("keyturn_running"), 1.0);
    assert_eq!(first.one("keyturn_lock_held"), 1.0);
    assert_eq!(first.one("keyturn_paused"), 0.0);
    assert_eq!(first.one("keyturn_max_rows_per_sec"), 500.0);
    assert_eq!(
        first.value(
            "keyturn_batch_size",
            &[("table", &tb.name), ("column", "v")]
        ),
        Some(BATCH as f64)
    );
    let info = first
        .samples
        .iter()
        .find(|s| s.metric == "keyturn_run_info")
        .unwrap_or_else(|| panic!("no keyturn_run_info:\n{}", first.text));
    assert_eq!(info.labels.get("operation"), Some("encrypt"));
    let run_id = info.labels.get("run_id").expect("a run id").to_owned();

    // The counters grow while it runs.
    let second = scrape_until(&base, "more rows written", |m| m.rows(&tb, "written") > w1).await;
    assert!(
        second.rows(&tb, "written") < ROWS as f64,
        "finished too soon"
    );

    // Pause from another process: /health and keyturn_paused say so.
    t.keyturn(&cfg, &["runs", "pause", &run_id]).await.expect(0);
    health_until(&base, (200, "paused")).await;
    let paused = scrape(&base).await;
    assert_eq!(paused.one("keyturn_paused"), 1.0);
    let held = paused.rows(&tb, "written");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = scrape(&base).await.rows(&tb, "written");
    assert!(
        still - held <= 2.0 * BATCH as f64,
        "kept writing while paused: {held} -> {still}"
    );
    t.keyturn(&cfg, &["runs", "resume", &run_id])
        .await
        .expect(0);
    health_until(&base, (200, "ok")).await;

    // The run ends; during the linger the counters are final.
    let last = scrape_until(&base, "the run's end", |m| m.one("keyturn_running") == 0.0).await;
    let o = p.wait(Duration::from_secs(120)).await.expect(0);
    let col = &o.json()["columns"][0];
    for (outcome, field) in [
        ("written", "written"),
        ("skipped", "skipped"),
        ("retried", "retried"),
        ("bad", "failed"),
    ] {
        assert_eq!(
            last.rows(&tb, outcome),
            col[field].as_u64().expect("a count") as f64,
            "{outcome} vs the summary's {field}: {col}\n{}",
            last.text
        );
    }
    assert_eq!(last.rows(&tb, "written"), ROWS as f64);
    assert_eq!(last.one("keyturn_lock_held"), 0.0, "released at the end");
    assert_eq!(last.one("keyturn_paused"), 0.0);

    // The write latency histogram: cumulative buckets ending in +Inf, which
    // holds every batch written, as does _count.
    let hist = last
        .samples
        .iter()
        .find(|s| {
            s.metric == "keyturn_batch_write_seconds" && s.labels.get("table") == Some(&*tb.name)
        })
        .unwrap_or_else(|| panic!("no histogram:\n{}", last.text));
    let PValue::Histogram(buckets) = &hist.value else {
        panic!("not a histogram: {hist:?}");
    };
    assert!(buckets.len() > 2, "{buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].less_than < w[1].less_than),
        "{buckets:?}"
    );
    assert!(
        buckets.windows(2).all(|w| w[0].count <= w[1].count),
        "not cumulative: {buckets:?}"
    );
    let inf = buckets.last().expect("a +Inf bucket");
    assert!(inf.less_than.is_infinite(), "{buckets:?}");
    let count = last
        .value(
            "keyturn_batch_write_seconds_count",
            &[("table", &tb.name), ("column", "v")],
        )
        .expect("a _count");
    assert_eq!(inf.count, count);
    // One observation per batch that wrote: at least ROWS / BATCH.
    assert!(count >= (ROWS as usize / BATCH) as f64, "{count}");
    let sum = last
        .value(
            "keyturn_batch_write_seconds_sum",
            &[("table", &tb.name), ("column", "v")],
        )
        .expect("a _sum");
    assert!(sum > 0.0, "{sum}");

    // Nothing of the values in the exposition.
    assert!(!last.text.contains("value-"), "{}", last.text);

    // The endpoint stops with the process.
    assert!(get(&format!("{base}/health")).await.is_none());
}
