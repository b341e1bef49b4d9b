//! Whether a run may write its next batch now: replica lag
//! (`rotation.max_replica_lag`), and any other [`Pacing`] a caller adds.
//!
//! The engine asks before every batch write. While the answer is
//! [`Pace::Wait`], it writes nothing, tells the progress sink why
//! ("paused: replica lag 3.4 s on walreceiver@127.0.0.1") and asks again
//! every [`RECHECK`]; batches already written stay written, and the run goes
//! on where it paused.

use crate::EngineError;
use keyturn_db::replicas::{Reading, ReplicaWatch};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a paused run asks again.
pub const RECHECK: Duration = Duration::from_millis(500);

/// What a [`Pacing`] says of the next batch write.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pace {
    /// Write it.
    Go,
    /// Not yet: why (shown as "paused: …").
    Wait(String),
    /// Stop the run like Ctrl-C (the batch in hand is written, the
    /// checkpoint saved, the run resumable): why.
    Stop(String),
}

/// Asked before each batch write.
#[async_trait::async_trait]
pub trait Pacing: Send + Sync + std::fmt::Debug {
    /// Whether the next batch may be written now. An error stops the run,
    /// resumable (a lag that cannot be read).
    async fn check(&self) -> Result<Pace, EngineError>;

    /// What the last [`check`](Self::check) measured, for metrics:
    /// (replica, lag). Default: nothing.
    fn observed(&self) -> Vec<(String, Duration)> {
        Vec::new()
    }
}

/// Pauses writing while any replica is more than `max` behind.
///
/// A MariaDB/MySQL replica says how far behind it is. A PostgreSQL replica
/// says how far it has replayed the primary's WAL; the lag is the time since
/// the primary's WAL first passed that position, from the positions this
/// gate samples at each check (so a replica whose replay is paused falls
/// further behind with every check, while the application's writes alone
/// keep it within one check of the primary).
#[derive(Debug)]
pub struct LagGate {
    max: Duration,
    watch: ReplicaWatch,
    /// The primary's WAL position at past checks, oldest first.
    samples: Mutex<VecDeque<(Instant, u64)>>,
    /// Optional replicas whose lag could not be read, already warned about.
    warned: Mutex<Vec<String>>,
    /// The lags the last check read.
    last: Mutex<Vec<(String, Duration)>>,
}

impl LagGate {
    /// A gate over `watch` that waits while a replica is more than `max` behind.
    pub fn new(max: Duration, watch: ReplicaWatch) -> LagGate {
        LagGate {
            max,
            watch,
            samples: Mutex::new(VecDeque::new()),
            warned: Mutex::new(Vec::new()),
            last: Mutex::new(Vec::new()),
        }
    }

    /// Every replica's lag now (name, lag), reading and sampling once.
    pub async fn lags(&self) -> Result<Vec<(String, Duration)>, EngineError> {
        let now = Instant::now();
        let position = self.watch.primary_position().await?;
        let readings = self.watch.read().await?;
        let mut samples = self
            .samples
            .lock()
            .map_err(|_| EngineError::Internal("replica lag samples poisoned".into()))?;
        if let Some(p) = position
            && samples.back().is_none_or(|(_, last)| *last != p)
        {
            samples.push_back((now, p));
        }
        let mut out = Vec::new();
        let mut oldest_needed = position.unwrap_or(u64::MAX);
        for r in readings {
            let lag = match r.reading {
                Reading::Behind(d) => d,
                Reading::Replayed(replayed) => {
                    oldest_needed = oldest_needed.min(replayed);
                    // The first moment the primary was seen past `replayed`.
                    samples
                        .iter()
                        .find(|(_, p)| *p > replayed)
                        .map(|(t, _)| now.saturating_duration_since(*t))
                        .unwrap_or_default()
                }
                Reading::Unknown(why) if r.optional => {
                    let mut warned = self
                        .warned
                        .lock()
                        .map_err(|_| EngineError::Internal("replica warnings poisoned".into()))?;
                    if !warned.contains(&r.name) {
                        tracing::warn!(
                            "replica {} is optional and its lag cannot be read: {why}",
                            r.name
                        );
                        warned.push(r.name.clone());
                    }
                    continue;
                }
                Reading::Unknown(why) => {
                    return Err(EngineError::Refused(format!(
                        "the lag of replica {} cannot be read: {why}; fix it, or mark the replica optional in rotation.replicas",
                        r.name
                    )));
                }
                _ => continue,
            };
            out.push((r.name, lag));
        }
        // Samples at or below every replica's replayed position are no
        // longer needed, but the newest of them is kept.
        while samples.len() > 1 && samples.get(1).is_some_and(|(_, p)| *p <= oldest_needed) {
            samples.pop_front();
        }
        Ok(out)
    }

    /// Closes the gate's connections.
    pub async fn close(&self) {
        self.watch.close().await;
    }
}

#[async_trait::async_trait]
impl Pacing for LagGate {
    async fn check(&self) -> Result<Pace, EngineError> {
        let lags = self.lags().await?;
        if let Ok(mut last) = self.last.lock() {
            last.clone_from(&lags);
        }
        match lags.iter().max_by_key(|(_, d)| *d) {
            Some((name, lag)) if *lag > self.max => Ok(Pace::Wait(format!(
                "replica lag {:.1} s on {name} (max_replica_lag {:.1} s)",
                lag.as_secs_f64(),
                self.max.as_secs_f64()
            ))),
            _ => Ok(Pace::Go),
        }
    }

    fn observed(&self) -> Vec<(String, Duration)> {
        self.last.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Parses a duration as config files write it: `250ms`, `2s`, `1.5s`,
/// `5m`, `1h`, `1m 30s`, or ISO 8601 (`PT2S`); between 1 ms and 24 h.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("{t:?}: give a unit (ms, s or m), e.g. \"2s\""));
    }
    let d: jiff::SignedDuration = t
        .parse()
        .map_err(|_| format!("{t:?} is not a duration like \"2s\" or \"500ms\""))?;
    match Duration::try_from(d) {
        Ok(d) if d >= Duration::from_millis(1) && d <= Duration::from_secs(86_400) => Ok(d),
        _ => Err(format!("{t:?}: between 1 ms and 24 h")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration(" 2min ").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("PT2S").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("2").unwrap_err().contains("give a unit"));
        assert!(
            parse_duration("25h")
                .unwrap_err()
                .contains("between 1 ms and 24 h")
        );
        for bad in ["s", "-1s", "0s", "25h", "abc", "1e9s", "2d", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
