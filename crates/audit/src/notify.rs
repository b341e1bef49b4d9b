//! Webhook reminders: a Slack-compatible message (`text` plus `blocks`;
//! Slack, Mattermost, Rocket.Chat and most chat webhooks take it) or a
//! generic JSON document for anything else.

use crate::AuditError;
use crate::due::{DueReport, DueStatus};
use backon::Retryable;
use serde::Serialize;
use serde_json::{Value, json};
use std::time::Duration;

/// How long one webhook request may take before it is abandoned.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts of one delivery: the first and up to three retries.
pub const ATTEMPTS: usize = 4;

/// No retry starts once this long has passed since the first attempt, so a
/// dead webhook holds keyturn up for about 20 s at most (two timed-out
/// attempts and a pause), however many attempts remain.
const RETRY_WINDOW: Duration = Duration::from_secs(15);

/// The pauses between attempts: 250 ms, then doubling up to 2 s, each with
/// random jitter up to its own length.
fn webhook_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_factor(2.0)
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .with_max_times(ATTEMPTS - 1)
}

/// The body a webhook receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// A Slack incoming-webhook message.
    Slack,
    /// keyturn's own JSON object: the message's fields and the full data.
    Json,
}

impl NotifyFormat {
    /// Parses `--notify-format` (`slack` or `json`); anything else is [`AuditError::Invalid`].
    pub fn parse(s: &str) -> Result<NotifyFormat, AuditError> {
        match s {
            "slack" => Ok(NotifyFormat::Slack),
            "json" => Ok(NotifyFormat::Json),
            _ => Err(AuditError::Invalid(format!(
                "--notify-format {s:?}: use slack or json"
            ))),
        }
    }
}

/// A message independent of the format.
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    /// `due`, `rotate`, `encrypt`.
    pub event: String,
    /// `ok`, `due_soon`, `overdue`, or a run outcome.
    pub status: String,
    /// One line: what it is about.
    pub title: String,
    /// Detail lines (one per column).
    pub lines: Vec<String>,
    /// Where: the database (no password) and the host keyturn ran on.
    pub database: String,
    /// The host keyturn ran on.
    pub host: String,
    /// The full data (the due report, the run summary).
    pub data: Value,
}

/// What a run's end message says: filled by the caller from the run's
/// summary.
#[derive(Clone, Debug)]
pub struct RunNotice {
    /// `rotate` or `encrypt`.
    pub operation: String,
    /// `rotated` or `encrypted`.
    pub verb: String,
    /// The key the run wrote under.
    pub current_key_id: String,
    /// The run's outcome (`ok`, `completed_with_errors`, …).
    pub outcome: String,
    /// Wall-clock duration of the run, in seconds.
    pub seconds: f64,
    /// Per column, in run order.
    pub columns: Vec<ColumnNotice>,
    /// The whole summary, as JSON (for the `json` format's `data`).
    pub data: Value,
}

/// One column of a [`RunNotice`].
#[derive(Clone, Debug)]
pub struct ColumnNotice {
    /// `table.column`.
    pub label: String,
    /// Values written.
    pub written: u64,
    /// Values left alone (already done, or changed by the application).
    pub skipped: u64,
    /// Values that failed (bad rows).
    pub failed: u64,
}

impl Message {
    /// The reminder for a `due` report.
    pub fn from_due(r: &DueReport, database: &str, host: &str) -> Message {
        let title = match r.status {
            DueStatus::Ok => format!(
                "keyturn: key rotation on schedule ({} column{}; next due {})",
                r.columns.len(),
                if r.columns.len() == 1 { "" } else { "s" },
                r.next_due_at
                    .as_deref()
                    .map(|d| &d[..10])
                    .unwrap_or("not yet known")
            ),
            DueStatus::DueSoon => format!(
                "keyturn: key rotation due soon for {} column{}",
                r.count(DueStatus::DueSoon),
                if r.count(DueStatus::DueSoon) == 1 {
                    ""
                } else {
                    "s"
                }
            ),
            DueStatus::Overdue => format!(
                "keyturn: key rotation OVERDUE for {} column{}",
                r.count(DueStatus::Overdue),
                if r.count(DueStatus::Overdue) == 1 {
                    ""
                } else {
                    "s"
                }
            ),
        };
        let mut cols: Vec<_> = r.columns.iter().collect();
        cols.sort_by_key(|c| std::cmp::Reverse(c.status));
        let lines = cols
            .iter()
            .map(|c| {
                format!(
                    "{} {}.{}: {}",
                    match c.status {
                        DueStatus::Ok => "ok",
                        DueStatus::DueSoon => "due soon",
                        DueStatus::Overdue => "OVERDUE",
                    },
                    c.table,
                    c.column,
                    c.message
                )
            })
            .collect();
        let mut lines: Vec<String> = lines;
        if let Some(tip) = &r.audit_tip {
            lines.push(format!("audit trail tip (keep as an anchor): {tip}"));
        }
        Message {
            event: "due".into(),
            status: r.status.as_str().into(),
            title,
            lines,
            database: database.into(),
            host: host.into(),
            data: serde_json::to_value(r).unwrap_or(Value::Null),
        }
    }

    /// The message at the end of a rotate / encrypt run.
    pub fn from_run(s: &RunNotice, database: &str, host: &str) -> Message {
        let (op, verb) = (s.operation.as_str(), s.verb.as_str());
        let written: u64 = s.columns.iter().map(|c| c.written).sum();
        let failed: u64 = s.columns.iter().map(|c| c.failed).sum();
        let title = format!(
            "keyturn {op} to key {}: {} ({written} values {verb}, {failed} failed, {:.0}s)",
            s.current_key_id,
            s.outcome.replace('_', " "),
            s.seconds
        );
        let lines = s
            .columns
            .iter()
            .map(|c| {
                format!(
                    "{}: {} {verb}, {} skipped, {} failed",
                    c.label, c.written, c.skipped, c.failed
                )
            })
            .collect();
        Message {
            event: op.into(),
            status: s.outcome.clone(),
            title,
            lines,
            database: database.into(),
            host: host.into(),
            data: {
                let mut v = s.data.clone();
                // The full list is in keyturn_bad_rows; a message keeps 20.
                if let Some(Value::Array(b)) = v.get_mut("bad_rows") {
                    b.truncate(20);
                }
                v
            },
        }
    }

    /// The body to post.
    pub fn payload(&self, format: NotifyFormat) -> Value {
        match format {
            NotifyFormat::Slack => self.slack(),
            NotifyFormat::Json => json!({
                "source": "keyturn",
                "version": env!("CARGO_PKG_VERSION"),
                "event": self.event,
                "status": self.status,
                "title": self.title,
                "lines": self.lines,
                "database": self.database,
                "host": self.host,
                "data": self.data,
            }),
        }
    }

    fn slack(&self) -> Value {
        let mut text = self.title.clone();
        for l in &self.lines {
            text.push_str("\n• ");
            text.push_str(l);
        }
        // Slack limits a section's text to 3000 characters.
        let body: String = self
            .lines
            .iter()
            .map(|l| format!("• {}", slack_escape(l)))
            .collect::<Vec<_>>()
            .join("\n");
        let body = truncate(&body, 2900);
        let mut blocks = vec![json!({
            "type": "header",
            "text": { "type": "plain_text", "text": truncate(&self.title, 150), "emoji": true }
        })];
        if !body.is_empty() {
            blocks.push(json!({
                "type": "section",
                "text": { "type": "mrkdwn", "text": body }
            }));
        }
        blocks.push(json!({
            "type": "context",
            "elements": [{
                "type": "mrkdwn",
                "text": slack_escape(&format!("{} · from {} · keyturn {}", self.database, self.host, env!("CARGO_PKG_VERSION")))
            }]
        }));
        json!({ "text": text, "blocks": blocks })
    }
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

/// A webhook URL for messages: Slack-style URLs carry their secret in the
/// path, so only scheme, host and port are shown.
pub fn redact_webhook(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if u.path().len() > 1 || u.query().is_some() {
                "/…"
            } else {
                ""
            };
            format!("{}://{host}{port}{rest}", u.scheme())
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// Why one attempt failed, and whether another may succeed.
struct Failed {
    message: String,
    retry: bool,
}

/// Posts `body` as JSON to `url`. No connection, a timeout (10 s), an
/// HTTP 5xx or 429 answer is retried with backoff ([`ATTEMPTS`] attempts
/// within about 20 s); any other answer but 2xx fails at once. The error
/// never contains the URL's path (it may hold the webhook's secret).
pub async fn post(url: &str, body: &Value) -> Result<(), AuditError> {
    let shown = redact_webhook(url);
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| AuditError::Notify(format!("--notify URL is not valid ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(AuditError::Notify(format!(
            "--notify {shown}: only http:// and https:// webhooks are supported"
        )));
    }
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .user_agent(concat!("keyturn/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AuditError::Notify(format!("cannot set up the HTTP client: {e}")))?;
    let started = std::time::Instant::now();
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let once = || async {
        attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        post_once(&client, &parsed, &shown, body).await
    };
    once.retry(webhook_backoff())
        .when(|f: &Failed| f.retry && started.elapsed() < RETRY_WINDOW)
        .await
        .map_err(|f| {
            let n = attempts.load(std::sync::atomic::Ordering::Relaxed);
            AuditError::Notify(if n > 1 {
                format!("{} ({n} attempts)", f.message)
            } else {
                f.message
            })
        })
}

/// One POST.
async fn post_once(
    client: &reqwest::Client,
    url: &reqwest::Url,
    shown: &str,
    body: &Value,
) -> Result<(), Failed> {
    let resp = client
        .post(url.clone())
        .json(body)
        .send()
        .await
        .map_err(|e| Failed {
            // Whatever failed on the way (connect, TLS, timeout, a dropped
            // connection) may pass on another try.
            message: format!("cannot deliver to {shown}: {}", chain(e.without_url())),
            retry: true,
        })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    let text: String = text.chars().take(200).collect();
    Err(Failed {
        message: format!(
            "{shown} answered HTTP {}{}",
            status.as_u16(),
            if text.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", text.trim())
            }
        ),
        retry: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
    })
}

fn chain(e: reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_secrets_stay_out_of_messages() {
        assert_eq!(
            redact_webhook("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_webhook("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(redact_webhook("not a url"), "(unparsable URL)");
    }

    #[test]
    fn slack_text_is_escaped_and_bounded() {
        let m = Message {
            event: "due".into(),
            status: "overdue".into(),
            title: "t".into(),
            lines: vec!["a <b> & c".into(); 500],
            database: "sqlite://x".into(),
            host: "h".into(),
            data: Value::Null,
        };
        let p = m.payload(NotifyFormat::Slack);
        let section = p["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(section.starts_with("• a &lt;b&gt; &amp; c"));
        assert!(section.chars().count() <= 2900);
        assert!(p["text"].as_str().unwrap().starts_with("t\n• a <b> & c"));
    }
}
