//! Webhook delivery against a local HTTP server on 127.0.0.1 that records
//! every request, and the failures that must never be silent.

use keyturn_audit::due::{self, ColumnKeys, KnownDates, SinceSource};
use keyturn_audit::notify::{self, Message, NotifyFormat};
use keyturn_audit::policy::PolicyConfig;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use time::macros::datetime;

/// One recorded request.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// An HTTP/1.1 server on 127.0.0.1 answering every request with `status`
/// and `body`, recording what it got. Serves until the test ends.
fn recorder(status: u16, answer: &'static str) -> (String, Arc<Mutex<Vec<Recorded>>>) {
    scripted(&[status], answer)
}

/// [`recorder`] answering the n-th request with `statuses[n]` (the last
/// one for every request after that).
fn scripted(statuses: &[u16], answer: &'static str) -> (String, Arc<Mutex<Vec<Recorded>>>) {
    let statuses = statuses.to_vec();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(50) {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let mut lines = head.split("\r\n");
            let mut first = lines.next().unwrap_or("").split(' ');
            let method = first.next().unwrap_or("").to_owned();
            let path = first.next().unwrap_or("").to_owned();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = buf[head_end..].to_vec();
            while body.len() < len {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&chunk[..n]),
                }
            }
            let status = {
                let mut seen = s2.lock().unwrap();
                seen.push(Recorded {
                    method,
                    path,
                    headers,
                    body,
                });
                statuses[(seen.len() - 1).min(statuses.len() - 1)]
            };
            let reason = if status < 300 { "OK" } else { "Error" };
            let _ = write!(
                c,
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (format!("http://{addr}"), seen)
}

fn overdue_report() -> keyturn_audit::DueReport {
    let mut d = KnownDates::default();
    d.add(
        "k1",
        datetime!(2025-01-01 0:00 UTC),
        SinceSource::AuditTrail,
    );
    d.add(
        "k2",
        datetime!(2025-05-01 0:00 UTC),
        SinceSource::AuditTrail,
    );
    due::evaluate(
        datetime!(2025-06-01 0:00 UTC),
        &PolicyConfig::default(),
        Some("k2"),
        &[
            ColumnKeys {
                table: "patients".into(),
                column: "phone".into(),
                by_key: vec![("k2".into(), 90), ("k1".into(), 10)],
                ..Default::default()
            },
            ColumnKeys {
                table: "patients".into(),
                column: "nino".into(),
                by_key: vec![("k2".into(), 100)],
                ..Default::default()
            },
        ],
        &d,
    )
}

#[tokio::test]
async fn delivers_a_slack_message_with_text_and_blocks() {
    let (base, seen) = recorder(200, "ok");
    let url = format!("{base}/services/T000/B000/SECRETTOKEN");
    let msg = Message::from_due(&overdue_report(), "postgres://app:***@db/app", "cron-1");
    notify::post(&url, &msg.payload(NotifyFormat::Slack))
        .await
        .unwrap();
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/services/T000/B000/SECRETTOKEN");
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert!(r.header("user-agent").unwrap().starts_with("keyturn/"));
    let v = r.json();
    let text = v["text"].as_str().unwrap();
    assert!(
        text.starts_with("keyturn: key rotation OVERDUE for 1 column"),
        "{text}"
    );
    assert!(text.contains("patients.phone"), "{text}");
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[1]["type"], "section");
    let section = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(
        section.starts_with("• OVERDUE patients.phone: key k1 is 151 days old"),
        "{section}"
    );
    assert!(section.contains("• ok patients.nino"), "{section}");
    assert_eq!(blocks[2]["type"], "context");
    assert!(
        blocks[2]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("cron-1")
    );
}

#[tokio::test]
async fn delivers_the_generic_json_shape() {
    let (base, seen) = recorder(204, "");
    let msg = Message::from_due(&overdue_report(), "sqlite://x.db", "h");
    notify::post(&format!("{base}/hook"), &msg.payload(NotifyFormat::Json))
        .await
        .unwrap();
    let v = seen.lock().unwrap()[0].json();
    assert_eq!(v["source"], "keyturn");
    assert_eq!(v["event"], "due");
    assert_eq!(v["status"], "overdue");
    assert_eq!(v["database"], "sqlite://x.db");
    assert_eq!(v["data"]["exit_code"], 11);
    assert_eq!(v["data"]["columns"][0]["table"], "patients");
    assert_eq!(v["lines"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn an_error_answer_is_reported_without_the_secret() {
    // A 5xx is retried: every attempt fails, the last answer is reported.
    let (base, seen) = recorder(500, "internal trouble");
    let url = format!("{base}/services/T000/B000/SECRETTOKEN");
    let err = notify::post(&url, &serde_json::json!({"text": "x"}))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(seen.lock().unwrap().len(), notify::ATTEMPTS);
    assert!(
        err.contains("HTTP 500") && err.contains("internal trouble"),
        "{err}"
    );
    assert!(err.ends_with("(4 attempts)"), "{err}");
    assert!(!err.contains("SECRETTOKEN"), "{err}");
    // A 4xx other than 429 is not: the request itself is wrong.
    let (base, seen) = recorder(404, "no_service");
    let err = notify::post(&format!("{base}/x"), &serde_json::json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(
        err.contains("HTTP 404") && err.contains("no_service") && !err.contains("attempts"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failing_webhook_is_retried_until_it_answers() {
    let (base, seen) = scripted(&[503, 502, 200], "ok");
    let msg = Message::from_due(&overdue_report(), "sqlite://x.db", "h");
    let body = msg.payload(NotifyFormat::Json);
    let started = std::time::Instant::now();
    notify::post(&format!("{base}/hook"), &body).await.unwrap();
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    // The same message each time, after a pause.
    assert!(got.iter().all(|r| r.json() == body));
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));

    // Too Many Requests is worth another try too.
    let (base, seen) = scripted(&[429, 204], "slow down");
    notify::post(&format!("{base}/hook"), &body).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_unreachable_webhook_is_reported_without_the_secret() {
    // A port nothing listens on any more.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/services/T000/B000/SECRETTOKEN");
    let err = notify::post(&url, &serde_json::json!({"text": "x"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("notify: cannot deliver to http://127.0.0.1:"),
        "{err}"
    );
    assert!(!err.contains("SECRETTOKEN"), "{err}");
    let err = notify::post("ftp://127.0.0.1/x", &serde_json::json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("only http:// and https://"), "{err}");
    assert!(notify::post("::::", &serde_json::json!({})).await.is_err());
}
