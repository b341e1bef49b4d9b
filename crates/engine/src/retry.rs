//! Retries with backoff for transient database failures (a dropped
//! connection, a restart, a serialization failure, a busy SQLite file).
//! Every retried operation is safe to repeat: reads, and compare-and-swap
//! writes that cannot apply twice.
//!
//! The policies are `backon` builders, as everywhere in keyturn: each pause
//! has random jitter, so that workers (and keyturn processes on other hosts)
//! that failed together do not come back together.

use crate::ProgressSink;
use backon::Retryable;
use keyturn_db::DbError;
use std::future::Future;
use std::time::Duration;

/// Attempts of one database operation: the first and up to nine retries.
const ATTEMPTS: usize = 10;

/// The pauses between [`ATTEMPTS`] attempts: 100 ms, doubling up to 5 s,
/// each lengthened by random jitter of up to its own length. Pause `n` thus
/// lies between half and all of `200 ms × 2ⁿ` (capped at 10 s): the nine
/// pauses add up to 21–43 s, time for a database restart or a failover,
/// and never more than 43 s, so a dead server stops the run (resumable)
/// within a minute.
fn db_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_factor(2.0)
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .with_max_times(ATTEMPTS - 1)
}

/// The pauses before coming back to rows another transaction kept locked
/// past the lock time-out: 125 ms, doubling up to 2.5 s, each lengthened by
/// random jitter of up to its own length (so between half and all of
/// `250 ms × 2ⁿ`, capped at 5 s). Unbounded in number: the caller gives up
/// after a fixed time instead (`LOCKED_PATIENCE` in `run`).
pub(crate) fn locked_rows_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(125))
        .with_factor(2.0)
        .with_max_delay(Duration::from_millis(2500))
        .with_jitter()
        .without_max_times()
}

/// Runs `f`, again after a pause while it fails transiently
/// ([`DbError::is_transient`]: a dropped connection, a pool time-out, a
/// serialization failure, a deadlock, a lock time-out, a busy SQLite file),
/// at most [`ATTEMPTS`] times in all; each retry is a progress note.
pub(crate) async fn with_retry<T, F, Fut>(
    what: &str,
    progress: &dyn ProgressSink,
    f: F,
) -> Result<T, DbError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DbError>>,
{
    with_retry_if(what, progress, DbError::is_transient, f).await
}

/// Whether a batch write is tried again: a transient failure other than a
/// lock time-out (the caller splits the batch and comes back to the locked
/// row instead of waiting for it here).
fn write_retryable(e: &DbError) -> bool {
    e.is_transient() && !e.is_lock_timeout()
}

/// [`with_retry`] for a batch write: a lock time-out is returned at once
/// (see [`write_retryable`]), other transient failures are retried.
pub(crate) async fn write_retry<T, F, Fut>(
    what: &str,
    progress: &dyn ProgressSink,
    f: F,
) -> Result<T, DbError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DbError>>,
{
    with_retry_if(what, progress, write_retryable, f).await
}

/// Runs `f` under [`db_backoff`] while `retryable` says its error may pass,
/// noting each retry: `<what>: <error>; retrying in N ms (attempt i/10)`.
async fn with_retry_if<T, E, F, Fut>(
    what: &str,
    progress: &dyn ProgressSink,
    retryable: impl Fn(&E) -> bool,
    f: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    f.retry(db_backoff())
        .when(retryable)
        .notify(|e: &E, pause: Duration| {
            attempt += 1;
            progress.note(&format!(
                "{what}: {e}; retrying in {} ms (attempt {attempt}/{ATTEMPTS})",
                pause.as_millis()
            ));
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The old fixed schedule: 200 ms doubling up to 10 s.
    fn unjittered(n: usize) -> Duration {
        (Duration::from_millis(200) * 2u32.pow(n.min(10) as u32)).min(Duration::from_secs(10))
    }

    #[test]
    fn db_backoff_is_bounded_and_jittered() {
        let pauses: Vec<Duration> = db_backoff().build().collect();
        assert_eq!(pauses.len(), ATTEMPTS - 1);
        // (1 ms of slack: backon computes durations in f32.)
        let slack = Duration::from_millis(1);
        for (n, p) in pauses.iter().enumerate() {
            let base = unjittered(n);
            assert!(
                *p + slack >= base / 2 && *p <= base + slack,
                "pause {n}: {p:?}"
            );
        }
        let total: Duration = pauses.iter().sum();
        assert!(total <= Duration::from_millis(42_610), "{total:?}");
        assert_ne!(pauses, db_backoff().build().collect::<Vec<_>>());
    }

    #[test]
    fn locked_rows_backoff_never_runs_out() {
        let pauses: Vec<Duration> = locked_rows_backoff().build().take(100).collect();
        assert_eq!(pauses.len(), 100);
        assert!(pauses[0] >= Duration::from_millis(124) && pauses[0] <= Duration::from_millis(251));
        assert!(
            pauses
                .iter()
                .all(|p| *p <= Duration::from_millis(5001) && *p >= Duration::from_millis(124))
        );
    }

    #[test]
    fn a_non_transient_error_is_not_retried() {
        let e = DbError::Invalid("a result of unexpected shape".into());
        assert!(!e.is_transient());
        assert!(!write_retryable(&e));
        assert!(!write_retryable(&DbError::Config("bad URL".into())));
    }

    #[derive(Default)]
    struct Notes(Mutex<Vec<String>>);

    impl ProgressSink for Notes {
        fn note(&self, message: &str) {
            self.0
                .lock()
                .expect("no panic while locked")
                .push(message.to_owned());
        }
    }

    #[derive(Debug)]
    struct Fail(bool);

    impl std::fmt::Display for Fail {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(if self.0 {
                "connection reset"
            } else {
                "syntax error"
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_ten_attempts_each_one_noted() {
        let notes = Notes::default();
        let calls = AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        let r: Result<(), Fail> = with_retry_if(
            "reading a batch",
            &notes,
            |e: &Fail| e.0,
            || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(Fail(true))
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), ATTEMPTS);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(21_300) && waited <= Duration::from_millis(42_700),
            "{waited:?}"
        );
        let notes = notes.0.into_inner().expect("not poisoned");
        assert_eq!(notes.len(), ATTEMPTS - 1);
        assert!(
            notes[0].starts_with("reading a batch: connection reset; retrying in "),
            "{}",
            notes[0]
        );
        assert!(notes[0].ends_with(" ms (attempt 1/10)"), "{}", notes[0]);
        assert!(notes[8].ends_with(" ms (attempt 9/10)"), "{}", notes[8]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_passing_retry_returns_its_value_and_other_errors_return_at_once() {
        let notes = Notes::default();
        let calls = AtomicUsize::new(0);
        let r = with_retry_if(
            "saving the checkpoint",
            &notes,
            |e: &Fail| e.0,
            || async {
                match calls.fetch_add(1, Ordering::Relaxed) {
                    0 | 1 => Err(Fail(true)),
                    n => Ok(n),
                }
            },
        )
        .await;
        assert_eq!(r.ok(), Some(2));
        assert_eq!(notes.0.lock().expect("not poisoned").len(), 2);

        let calls = AtomicUsize::new(0);
        let r: Result<(), Fail> = with_retry_if(
            "saving the checkpoint",
            &notes,
            |e: &Fail| e.0,
            || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(Fail(false))
            },
        )
        .await;
        assert!(matches!(r, Err(Fail(false))));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(notes.0.lock().expect("not poisoned").len(), 2);
    }
}
