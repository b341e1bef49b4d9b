//! Retries with backoff for transient database failures (a dropped
//! connection, a restart, a serialization failure, a busy SQLite file).
//! Every retried operation is safe to repeat: reads, and compare-and-swap
//! writes that cannot apply twice.

use crate::ProgressSink;
use keyturn_db::DbError;
use std::future::Future;
use std::time::Duration;

const ATTEMPTS: u32 = 10;

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

/// [`with_retry`] for a batch write: a lock time-out is returned at once
/// (the caller splits the batch and comes back to the locked row), other
/// transient failures are retried.
pub(crate) async fn write_retry<T, F, Fut>(
    what: &str,
    progress: &dyn ProgressSink,
    f: F,
) -> Result<T, DbError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DbError>>,
{
    with_retry_if(
        what,
        progress,
        |e: &DbError| e.is_transient() && !e.is_lock_timeout(),
        f,
    )
    .await
}

async fn with_retry_if<T, F, Fut>(
    what: &str,
    progress: &dyn ProgressSink,
    retryable: impl Fn(&DbError) -> bool,
    mut f: F,
) -> Result<T, DbError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DbError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && attempt < ATTEMPTS => {
                progress.note(&format!(
                    "{what}: {e}; retrying in {} ms (attempt {attempt}/{ATTEMPTS})",
                    delay.as_millis()
                ));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
