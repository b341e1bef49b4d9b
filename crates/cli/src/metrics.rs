//! `--metrics-addr` / `[metrics] addr`: while `rotate` or `encrypt` runs,
//! `/metrics` (OpenMetrics text, prometheus-client's encoder) and `/health`
//! (`ok`, `paused` or `lock-lost`) on a small hyper server.
//!
//! [`MetricsSink`] sits in front of the CLI's progress output: it forwards
//! every hook and records what the hooks say in [`Metrics`]. Labels are
//! table and column names, replica names (URLs without their password),
//! the run id and the operation: never a value, a key or a secret.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use keyturn_engine::{BatchStats, ProgressSink};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Labels of the per-column metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ColumnLabels {
    table: String,
    column: String,
}

/// Labels of `keyturn_rows_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RowLabels {
    table: String,
    column: String,
    outcome: &'static str,
}

/// Labels of `keyturn_replica_lag_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    replica: String,
}

/// Labels of `keyturn_run_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    run_id: String,
    operation: String,
}

type WriteHistograms = Family<ColumnLabels, Histogram, fn() -> Histogram>;

/// Batch write latency buckets: 1 ms to about 33 s, doubling.
fn write_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// What `/health` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Running (or finished) normally: 200 `ok`.
    Ok,
    /// Writing is paused (operator, replica lag or another pacing): 200
    /// `paused`.
    Paused,
    /// Another holder took the rotation lock; the run stops: 503
    /// `lock-lost`.
    LockLost,
}

impl Health {
    /// The HTTP status and body `/health` answers with.
    pub fn response(self) -> (StatusCode, &'static str) {
        match self {
            Health::Ok => (StatusCode::OK, "ok\n"),
            Health::Paused => (StatusCode::OK, "paused\n"),
            Health::LockLost => (StatusCode::SERVICE_UNAVAILABLE, "lock-lost\n"),
        }
    }
}

/// One run's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    operation: String,
    rows: Family<RowLabels, Counter>,
    batch_write: WriteHistograms,
    batch_size: Family<ColumnLabels, Gauge>,
    replica_lag: Family<ReplicaLabels, Gauge<f64, AtomicU64>>,
    paused: Gauge,
    lock_held: Gauge,
    running: Gauge,
    run_info: Family<RunLabels, Gauge>,
    lock_lost: AtomicBool,
}

impl Metrics {
    /// Metrics for a run of `operation` (`rotate`, `encrypt`), throttled to
    /// `max_rows_per_sec` if given.
    pub fn new(operation: &str, max_rows_per_sec: Option<u64>) -> Metrics {
        let mut registry = Registry::with_prefix("keyturn");
        let rows = Family::<RowLabels, Counter>::default();
        registry.register(
            "rows",
            "Values processed, per table, column and outcome (written, skipped, bad; retried counts compare-and-swap misses re-read, each also counted once as written, skipped or bad)",
            rows.clone(),
        );
        let batch_write = WriteHistograms::new_with_constructor(write_histogram);
        registry.register_with_unit(
            "batch_write",
            "Time to write one batch, compare-and-swap rounds included",
            Unit::Seconds,
            batch_write.clone(),
        );
        let batch_size = Family::<ColumnLabels, Gauge>::default();
        registry.register(
            "batch_size",
            "The most rows a batch of the column holds",
            batch_size.clone(),
        );
        let replica_lag = Family::<ReplicaLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "replica_lag",
            "A watched replica's lag at the last check",
            Unit::Seconds,
            replica_lag.clone(),
        );
        let paused = Gauge::default();
        registry.register(
            "paused",
            "1 while writing is paused (keyturn runs pause, replica lag, pacing), else 0",
            paused.clone(),
        );
        let lock_held = Gauge::default();
        registry.register(
            "lock_held",
            "1 while the run holds the rotation lock, else 0",
            lock_held.clone(),
        );
        let running = Gauge::default();
        registry.register(
            "running",
            "1 while the run runs, 0 once it has ended",
            running.clone(),
        );
        let throttle = Gauge::<i64>::default();
        registry.register(
            "max_rows_per_sec",
            "The run's throttle (--max-rows-per-sec, rotation.max_rows_per_sec); 0 when unthrottled",
            throttle.clone(),
        );
        throttle.set(max_rows_per_sec.map_or(0, |r| i64::try_from(r).unwrap_or(i64::MAX)));
        let run_info = Family::<RunLabels, Gauge>::default();
        registry.register(
            "run_info",
            "The run's id (in keyturn_runs) and operation; always 1",
            run_info.clone(),
        );
        running.set(1);
        Metrics {
            registry,
            operation: operation.to_owned(),
            rows,
            batch_write,
            batch_size,
            replica_lag,
            paused,
            lock_held,
            running,
            run_info,
            lock_lost: AtomicBool::new(false),
        }
    }

    /// The run has ended: `keyturn_running` 0, nothing paused.
    pub fn ended(&self) {
        self.running.set(0);
        self.paused.set(0);
    }

    /// What `/health` says now.
    pub fn health(&self) -> Health {
        if self.lock_lost.load(Ordering::SeqCst) {
            Health::LockLost
        } else if self.paused.get() != 0 {
            Health::Paused
        } else {
            Health::Ok
        }
    }

    /// The OpenMetrics text exposition.
    pub fn exposition(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; an encoder error would be a label
        // it cannot write, and the metrics so far are still worth serving.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::debug!("encoding the metrics: {e}");
        }
        out
    }

    fn record_batch(&self, table: &str, column: &str, b: &BatchStats) {
        for (outcome, n) in [
            ("written", b.written),
            ("skipped", b.skipped),
            ("retried", b.retried),
            ("bad", b.bad),
        ] {
            self.rows
                .get_or_create(&RowLabels {
                    table: table.to_owned(),
                    column: column.to_owned(),
                    outcome,
                })
                .inc_by(n);
        }
        let col = ColumnLabels {
            table: table.to_owned(),
            column: column.to_owned(),
        };
        if b.batch_size > 0 {
            self.batch_size
                .get_or_create(&col)
                .set(i64::try_from(b.batch_size).unwrap_or(i64::MAX));
        }
        if let Some(took) = b.took {
            self.batch_write
                .get_or_create(&col)
                .observe(took.as_secs_f64());
        }
    }
}

/// The progress sink of a run served on `--metrics-addr`: records, then
/// forwards to the CLI's own output.
pub struct MetricsSink {
    inner: Arc<dyn ProgressSink>,
    metrics: Arc<Metrics>,
}

impl MetricsSink {
    /// Wraps `inner`, recording into `metrics`.
    pub fn new(inner: Arc<dyn ProgressSink>, metrics: Arc<Metrics>) -> MetricsSink {
        MetricsSink { inner, metrics }
    }
}

impl ProgressSink for MetricsSink {
    fn column_started(&self, table: &str, column: &str, todo: u64, resumed_from: u64) {
        // Every outcome shows from the start, at 0.
        self.metrics
            .record_batch(table, column, &BatchStats::default());
        self.inner.column_started(table, column, todo, resumed_from);
    }

    fn advanced(&self, table: &str, column: &str, processed: u64) {
        self.inner.advanced(table, column, processed);
    }

    fn column_finished(&self, table: &str, column: &str) {
        self.inner.column_finished(table, column);
    }

    fn note(&self, message: &str) {
        self.inner.note(message);
    }

    fn batch_written(&self, table: &str, column: &str, batch: &BatchStats) {
        self.metrics.record_batch(table, column, batch);
        self.inner.batch_written(table, column, batch);
    }

    fn run_started(&self, run_id: &str, lock_held: bool) {
        self.metrics
            .run_info
            .get_or_create(&RunLabels {
                run_id: run_id.to_owned(),
                operation: self.metrics.operation.clone(),
            })
            .set(1);
        self.metrics.lock_held.set(i64::from(lock_held));
        self.inner.run_started(run_id, lock_held);
    }

    fn lock_released(&self) {
        self.metrics.lock_held.set(0);
        self.inner.lock_released();
    }

    fn replica_lag(&self, replica: &str, lag: Duration) {
        self.metrics
            .replica_lag
            .get_or_create(&ReplicaLabels {
                replica: replica.to_owned(),
            })
            .set(lag.as_secs_f64());
        self.inner.replica_lag(replica, lag);
    }

    fn lock_lost(&self) {
        self.metrics.lock_lost.store(true, Ordering::SeqCst);
        self.metrics.lock_held.set(0);
        self.inner.lock_lost();
    }

    fn paused(&self, why: Option<&str>) {
        self.metrics.paused.set(i64::from(why.is_some()));
        self.inner.paused(why);
    }
}

/// A bound listener, before the run starts.
#[derive(Debug)]
pub struct Listener {
    listener: tokio::net::TcpListener,
    linger: Duration,
}

impl Listener {
    /// Binds `addr`; `linger`: how long to keep serving after the run.
    pub async fn bind(addr: SocketAddr, linger: Duration) -> anyhow::Result<Listener> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            keyturn_engine::EngineError::Config(format!(
                "metrics address {addr}: cannot listen there ({e}); pick a free port, or leave --metrics-addr and [metrics] addr out"
            ))
        })?;
        Ok(Listener { listener, linger })
    }

    /// The address bound (the port chosen, for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `metrics` until [`Serving::finish`].
    pub fn serve(self, metrics: Arc<Metrics>) -> Serving {
        Serving {
            task: tokio::spawn(accept(self.listener, metrics.clone())),
            metrics,
            linger: self.linger,
        }
    }
}

/// The endpoint, serving.
#[derive(Debug)]
pub struct Serving {
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
    linger: Duration,
}

impl Serving {
    /// The run has ended: marks it in the metrics, keeps serving for the
    /// linger, then stops (open connections with it).
    pub async fn finish(self) {
        self.metrics.ended();
        if !self.linger.is_zero() {
            tokio::time::sleep(self.linger).await;
        }
        self.task.abort();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long a client may take to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until aborted; each is served on its own task, all
/// of them dropped (and so closed) with this one.
async fn accept(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        // Reap finished connections so the set stays small.
        while conns.try_join_next().is_some() {}
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait, go on.
                tracing::debug!("metrics endpoint: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let m = metrics.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let m = m.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&m, &req)) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("metrics endpoint: {e}");
            }
        });
    }
}

/// OpenMetrics 1.0 text, which Prometheus reads.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The answer to one request.
fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &'static str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
        r
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET only\n".into(),
        );
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, OPENMETRICS, metrics.exposition()),
        "/health" => {
            let (status, body) = metrics.health().response();
            reply(status, "text/plain; charset=utf-8", body.into())
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: /metrics or /health\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_engine::NoProgress;

    /// The samples of an exposition: (name with labels as written, value).
    fn samples(text: &str) -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').expect("a sample line");
                (name.to_owned(), value.parse().expect("a number"))
            })
            .collect()
    }

    fn value(text: &str, name: &str) -> f64 {
        samples(text)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .1
    }

    fn sink() -> (MetricsSink, Arc<Metrics>) {
        let m = Arc::new(Metrics::new("rotate", Some(250)));
        (MetricsSink::new(Arc::new(NoProgress), m.clone()), m)
    }

    #[test]
    fn batches_add_up_per_column_and_outcome() {
        let (s, m) = sink();
        s.run_started("r-1", true);
        s.column_started("patients", "phone", 10, 0);
        let text = m.exposition();
        assert_eq!(
            value(
                &text,
                r#"keyturn_rows_total{table="patients",column="phone",outcome="bad"}"#
            ),
            0.0
        );
        for (written, skipped, took) in [(3, 1, Some(0.002)), (4, 0, Some(0.5)), (0, 2, None)] {
            s.batch_written(
                "patients",
                "phone",
                &BatchStats {
                    rows: written + skipped,
                    written,
                    skipped,
                    retried: 1,
                    bad: 1,
                    batch_size: 200,
                    took: took.map(Duration::from_secs_f64),
                },
            );
        }
        let text = m.exposition();
        let row = |o: &str| {
            value(
                &text,
                &format!(r#"keyturn_rows_total{{table="patients",column="phone",outcome="{o}"}}"#),
            )
        };
        assert_eq!(row("written"), 7.0);
        assert_eq!(row("skipped"), 3.0);
        assert_eq!(row("retried"), 3.0);
        assert_eq!(row("bad"), 3.0);
        assert_eq!(
            value(
                &text,
                r#"keyturn_batch_size{table="patients",column="phone"}"#
            ),
            200.0
        );
        // Two batches wrote (the third had nothing to write).
        assert_eq!(
            value(
                &text,
                r#"keyturn_batch_write_seconds_count{table="patients",column="phone"}"#
            ),
            2.0
        );
        let sum = value(
            &text,
            r#"keyturn_batch_write_seconds_sum{table="patients",column="phone"}"#,
        );
        assert!((sum - 0.502).abs() < 1e-9, "{sum}");
        // Buckets are cumulative, +Inf holds every observation.
        let buckets: Vec<f64> = samples(&text)
            .into_iter()
            .filter(|(n, _)| n.starts_with("keyturn_batch_write_seconds_bucket{"))
            .map(|(_, v)| v)
            .collect();
        assert_eq!(buckets.len(), 17, "{text}");
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert_eq!(buckets[0], 0.0);
        assert_eq!(buckets[1], 1.0, "0.002 s is within the 2 ms bucket");
        assert_eq!(*buckets.last().unwrap(), 2.0);
        assert!(text.contains("# TYPE keyturn_batch_write_seconds histogram"));
        assert!(text.contains("# UNIT keyturn_batch_write_seconds seconds"));
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(
            value(
                &text,
                r#"keyturn_run_info{run_id="r-1",operation="rotate"}"#
            ),
            1.0
        );
        assert_eq!(value(&text, "keyturn_lock_held"), 1.0);
        assert_eq!(value(&text, "keyturn_running"), 1.0);
        assert_eq!(value(&text, "keyturn_max_rows_per_sec"), 250.0);
    }

    #[test]
    fn health_follows_pause_and_lock() {
        let (s, m) = sink();
        s.run_started("r-2", true);
        assert_eq!(m.health(), Health::Ok);
        s.paused(Some("paused by ops@host"));
        assert_eq!(m.health(), Health::Paused);
        assert_eq!(value(&m.exposition(), "keyturn_paused"), 1.0);
        assert_eq!(Health::Paused.response(), (StatusCode::OK, "paused\n"));
        s.paused(None);
        assert_eq!(m.health(), Health::Ok);
        assert_eq!(value(&m.exposition(), "keyturn_paused"), 0.0);
        s.replica_lag("walreceiver@10.0.0.2", Duration::from_millis(1500));
        assert_eq!(
            value(
                &m.exposition(),
                r#"keyturn_replica_lag_seconds{replica="walreceiver@10.0.0.2"}"#
            ),
            1.5
        );
        s.lock_lost();
        assert_eq!(m.health(), Health::LockLost);
        assert_eq!(
            m.health().response(),
            (StatusCode::SERVICE_UNAVAILABLE, "lock-lost\n")
        );
        assert_eq!(value(&m.exposition(), "keyturn_lock_held"), 0.0);
        m.ended();
        assert_eq!(value(&m.exposition(), "keyturn_running"), 0.0);
    }

    #[test]
    fn a_run_without_the_lock_says_so_and_release_clears_it() {
        let (s, m) = sink();
        s.run_started("r-3", false);
        assert_eq!(value(&m.exposition(), "keyturn_lock_held"), 0.0);
        s.run_started("r-3", true);
        s.lock_released();
        assert_eq!(value(&m.exposition(), "keyturn_lock_held"), 0.0);
        assert_eq!(m.health(), Health::Ok);
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error_and_the_server_stops_after_the_run() {
        let l = Listener::bind(([127, 0, 0, 1], 0).into(), Duration::ZERO)
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        let e = Listener::bind(addr, Duration::ZERO)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&addr.to_string()) && e.contains("cannot listen"),
            "{e}"
        );
        let m = Arc::new(Metrics::new("encrypt", None));
        let serving = l.serve(m.clone());
        let get = |path: &'static str| async move {
            let r = reqwest::get(format!("http://{addr}{path}")).await?;
            let status = r.status().as_u16();
            let ctype = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            Ok::<_, reqwest::Error>((status, ctype, r.text().await?))
        };
        assert_eq!(get("/health").await.unwrap().2, "ok\n");
        let (status, ctype, body) = get("/metrics").await.unwrap();
        assert_eq!((status, ctype.as_str()), (200, OPENMETRICS));
        assert!(body.contains("keyturn_running 1"), "{body}");
        assert_eq!(get("/other").await.unwrap().0, 404);
        serving.finish().await;
        // Aborted: the listener closes once the task is gone.
        let start = std::time::Instant::now();
        while get("/health").await.is_ok() {
            assert!(start.elapsed() < Duration::from_secs(5), "still serving");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
