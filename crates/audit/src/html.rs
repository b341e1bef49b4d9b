//! The evidence report as one self-contained HTML page: inline CSS, an
//! inline SVG chart, no scripts, no external assets; opens offline and
//! prints cleanly.
//!
//! The page is the askama template `templates/report.html`, checked at
//! compile time; every value it shows is escaped for HTML (by the
//! template's extension; the template marks nothing safe, so markup is
//! only ever the template's own). This module turns an [`EvidenceReport`]
//! into what the template shows: labels, classes, the chart's geometry.

use crate::due::{DueStatus, SinceSource};
use crate::event::AuditEvent;
use crate::report::{ColumnDistribution, Compliance, EvidenceReport};
use askama::Template;

/// Colors for key ids: the current key is always the first.
const PALETTE: [&str; 8] = [
    "#2563eb", "#f59e0b", "#dc2626", "#7c3aed", "#059669", "#db2777", "#0891b2", "#65a30d",
];
const UNRECOGNIZED: &str = "#9ca3af";

/// A status badge: its class and text.
struct Badge {
    class: &'static str,
    label: &'static str,
}

fn status_badge(s: DueStatus) -> Badge {
    Badge {
        class: match s {
            DueStatus::Ok => "ok",
            DueStatus::DueSoon => "warn",
            DueStatus::Overdue => "bad",
        },
        label: s.label(),
    }
}

fn outcome_class(o: &str) -> &'static str {
    match o {
        "ok" => "ok",
        "started" => "neutral",
        "completed_with_errors" | "interrupted" | "lock_lost" => "warn",
        _ => "bad",
    }
}

/// `2025-03-01 10:00:00` from a stored time (UTC; seconds are enough for people).
fn human(t: &str) -> String {
    let t = t.replace('T', " ");
    t.get(..19).map(str::to_owned).unwrap_or(t)
}

/// The date part of a stored time, or a dash.
fn day(t: Option<&str>) -> String {
    t.map(|d| d.get(..10).unwrap_or(d).to_owned())
        .unwrap_or_else(|| "—".into())
}

/// How a key's state reads in the inventory.
fn state_label(state: &str) -> &str {
    match state {
        "unused" => "no values left",
        s => s,
    }
}

fn since_source(s: Option<SinceSource>) -> &'static str {
    match s {
        Some(SinceSource::AuditTrail) => "audit trail",
        Some(SinceSource::Config) => "declared in config",
        Some(SinceSource::Catalog) => "key catalog",
        None => "unknown",
    }
}

/// Every key id in the chart, the current key first, with its color.
fn key_colors(r: &EvidenceReport) -> Vec<(String, &'static str)> {
    let mut ids: Vec<String> = Vec::new();
    if let Some(p) = &r.summary.current_key_id {
        ids.push(p.clone());
    }
    for c in &r.columns {
        for k in &c.by_key {
            if !ids.contains(&k.key_id) {
                ids.push(k.key_id.clone());
            }
        }
    }
    ids.into_iter()
        .enumerate()
        .map(|(i, k)| (k, PALETTE[i % PALETTE.len()]))
        .collect()
}

fn color_of(colors: &[(String, &'static str)], key: &str) -> &'static str {
    colors
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, c)| *c)
        .unwrap_or(UNRECOGNIZED)
}

/// The summary cards at the top.
struct Summary {
    compliance_class: &'static str,
    compliance: &'static str,
    next: String,
    chain_class: &'static str,
    chain: &'static str,
    events: u64,
    verify_class: &'static str,
    verify: String,
    verify_sub: String,
    keys_in_use: usize,
    current_key: String,
}

fn summary(r: &EvidenceReport) -> Summary {
    let s = &r.summary;
    let next = match s.attention.as_slice() {
        [] => r
            .due
            .next_due_at
            .as_deref()
            .map(|d| format!("next rotation due {}", day(Some(d))))
            .unwrap_or_else(|| "no due date known".into()),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first}; and {} more below", rest.len()),
    };
    let (verify_class, verify, verify_sub) = match &r.latest_verify {
        None => ("neutral", "none".into(), "no verify recorded yet".into()),
        Some(e) => {
            let ok = e.outcome.as_str() == "ok";
            (
                if ok { "ok" } else { "bad" },
                if ok {
                    "passed".into()
                } else {
                    e.outcome.as_str().replace('_', " ")
                },
                format!("{} UTC · event #{}", human(&e.time), e.seq),
            )
        }
    };
    Summary {
        compliance_class: match s.compliance {
            Compliance::Ok => "ok",
            Compliance::DueSoon | Compliance::Attention => "warn",
            Compliance::Overdue => "bad",
        },
        compliance: match s.compliance {
            Compliance::Ok => "compliant",
            Compliance::DueSoon => "due soon",
            Compliance::Overdue => "overdue",
            Compliance::Attention => "needs attention",
        },
        next,
        chain_class: if s.chain_ok { "ok" } else { "bad" },
        chain: if s.chain_ok { "intact" } else { "BROKEN" },
        events: s.events,
        verify_class,
        verify,
        verify_sub,
        keys_in_use: s.keys_in_use,
        current_key: s.current_key_id.clone().unwrap_or_else(|| "unknown".into()),
    }
}

/// A key in a compliance row.
struct DueKey {
    id: String,
    current: bool,
    age: String,
}

/// One column's row in "1. Policy compliance".
struct DueRow {
    status: &'static str,
    column: String,
    limit: u32,
    keys: Vec<DueKey>,
    due: String,
    badge: Badge,
    message: String,
}

fn due_rows(r: &EvidenceReport) -> Vec<DueRow> {
    r.due
        .columns
        .iter()
        .map(|c| DueRow {
            status: c.status.as_str(),
            column: format!("{}.{}", c.table, c.column),
            limit: c.max_key_age_days,
            keys: c
                .keys
                .iter()
                .map(|k| DueKey {
                    id: k.key_id.clone(),
                    current: k.primary,
                    age: match k.age_days {
                        Some(a) => format!("{a} d"),
                        None => "age unknown".into(),
                    },
                })
                .collect(),
            due: day(c.due_at.as_deref()),
            badge: status_badge(c.status),
            message: c.message.clone(),
        })
        .collect()
}

/// One key's row in "2. Key inventory".
struct KeyRow {
    id: String,
    color: &'static str,
    state: String,
    compromised: bool,
    rows: u64,
    columns: String,
    since: String,
    source: &'static str,
    age: String,
    due: String,
    badge: Option<Badge>,
    last: String,
}

fn key_rows(r: &EvidenceReport, colors: &[(String, &'static str)]) -> Vec<KeyRow> {
    r.keys
        .iter()
        .map(|k| KeyRow {
            id: k.key_id.clone(),
            color: color_of(colors, &k.key_id),
            state: state_label(&k.state).to_owned(),
            compromised: k.compromised,
            rows: k.rows,
            columns: k.columns.join(", "),
            since: k.since.as_deref().map(human).unwrap_or_else(|| "—".into()),
            source: since_source(k.since_source),
            age: k
                .age_days
                .map(|a| format!("{a} d"))
                .unwrap_or_else(|| "—".into()),
            due: day(k.due_at.as_deref()),
            badge: k.status.map(status_badge),
            last: k.last_event.clone().unwrap_or_else(|| "—".into()),
        })
        .collect()
}

/// A vertical grid line of the chart, at a percentage.
struct GridLine {
    x: f64,
    pct: u32,
}

/// One key's share of a column's bar.
struct Segment {
    key: String,
    x: String,
    width: String,
    color: &'static str,
    /// The tooltip: column, key, values and share.
    title: String,
    /// The label drawn on the bar when it is wide enough.
    text: Option<(String, String)>,
}

/// One column's bar.
struct Bar {
    label: String,
    y: f64,
    values: u64,
    segments: Vec<Segment>,
}

/// A horizontal stacked bar per column: the share of its values under each
/// key id (and unrecognized values).
struct Chart {
    width: f64,
    height: f64,
    /// Where the column labels end (right-aligned).
    label_x: f64,
    /// Where the bars start, and their full width.
    bar_x: f64,
    bar_w: f64,
    /// Where "no values" and each bar's total are written.
    empty_x: f64,
    total_x: f64,
    grid: Vec<GridLine>,
    bars: Vec<Bar>,
}

impl Chart {
    const LABEL_W: f64 = 250.0;
    const BAR_W: f64 = 640.0;
    const ROW_H: f64 = 34.0;
    /// Every non-empty segment stays visible (at least this wide): a few
    /// values left under an old key are what an auditor looks for.
    const MIN_SEG: f64 = 4.0;

    fn new(r: &EvidenceReport, colors: &[(String, &'static str)]) -> Chart {
        let n = r.columns.len().max(1);
        let height = Self::ROW_H * n as f64 + 26.0;
        let grid = [0, 25, 50, 75, 100]
            .into_iter()
            .map(|pct| GridLine {
                x: Self::LABEL_W + Self::BAR_W * f64::from(pct) / 100.0,
                pct,
            })
            .collect();
        let bars = r
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| Self::bar(c, 8.0 + Self::ROW_H * i as f64, colors))
            .collect();
        Chart {
            width: Self::LABEL_W + Self::BAR_W + 110.0,
            height,
            label_x: Self::LABEL_W - 10.0,
            bar_x: Self::LABEL_W,
            bar_w: Self::BAR_W,
            empty_x: Self::LABEL_W + 8.0,
            total_x: Self::LABEL_W + Self::BAR_W + 8.0,
            grid,
            bars,
        }
    }

    fn bar(c: &ColumnDistribution, y: f64, colors: &[(String, &'static str)]) -> Bar {
        let values = c.total - c.nulls;
        let label = c.label();
        let mut segs: Vec<(String, u64, &'static str)> = c
            .by_key
            .iter()
            .map(|k| (k.key_id.clone(), k.rows, color_of(colors, &k.key_id)))
            .collect();
        // The current key first, then the chart's key order.
        segs.sort_by_key(|(k, _, _)| {
            colors
                .iter()
                .position(|(x, _)| x == k)
                .unwrap_or(usize::MAX)
        });
        if c.unrecognized > 0 {
            segs.push(("plaintext / other".into(), c.unrecognized, UNRECOGNIZED));
        }
        let mut segments = Vec::new();
        if values > 0 {
            let raw: Vec<f64> = segs
                .iter()
                .map(|(_, rows, _)| Self::BAR_W * (*rows as f64) / (values as f64))
                .collect();
            let tiny = raw.iter().filter(|w| **w < Self::MIN_SEG).count() as f64;
            let big: f64 = raw.iter().filter(|w| **w >= Self::MIN_SEG).sum();
            let scale = if big > 0.0 {
                (Self::BAR_W - Self::MIN_SEG * tiny) / big
            } else {
                1.0
            };
            let mut x = Self::LABEL_W;
            for ((key, rows, color), raw_w) in segs.into_iter().zip(&raw) {
                let w = if *raw_w < Self::MIN_SEG {
                    Self::MIN_SEG
                } else {
                    raw_w * scale
                };
                let pct = 100.0 * (rows as f64) / (values as f64);
                segments.push(Segment {
                    title: format!("{label} — {key}: {rows} values ({pct:.1}%)"),
                    text: (w >= 70.0)
                        .then(|| (format!("{:.2}", x + 6.0), format!("{key} {pct:.0}%"))),
                    key,
                    x: format!("{x:.2}"),
                    width: format!("{w:.2}"),
                    color,
                });
                x += w;
            }
        }
        Bar {
            label,
            y,
            values,
            segments,
        }
    }
}

/// One column in the distribution table.
struct DistRow {
    column: String,
    total: u64,
    nulls: u64,
    keys: Vec<(&'static str, String, u64)>,
    unrecognized: u64,
}

/// One column of the latest verify.
struct VerifyRow {
    column: String,
    checked: u64,
    under_current: u64,
    failing: u64,
}

/// "4. Latest verification".
struct Verify {
    ok: bool,
    deep: bool,
    actor: String,
    time: String,
    seq: u64,
    key: String,
    columns: Vec<VerifyRow>,
}

fn verify(e: &AuditEvent) -> Verify {
    Verify {
        ok: e.outcome.as_str() == "ok",
        deep: e
            .details
            .get("deep")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        actor: e.actor.clone(),
        time: human(&e.time),
        seq: e.seq,
        key: e.key().unwrap_or("?").to_owned(),
        columns: e
            .columns
            .iter()
            .map(|c| VerifyRow {
                column: c.label(),
                checked: c.get("checked"),
                // Events before the rename counted `under_primary`.
                under_current: c.get("under_current").max(c.get("under_primary")),
                failing: c.get("failing"),
            })
            .collect(),
    }
}

/// One event in the history table.
struct EventRow {
    seq: u64,
    time: String,
    action: String,
    actor: String,
    class: &'static str,
    outcome: String,
    keys: String,
    counts: String,
    duration: String,
    reason: String,
}

fn event_row(e: &AuditEvent) -> EventRow {
    EventRow {
        seq: e.seq,
        time: human(&e.time),
        action: e.action.as_str().to_owned(),
        actor: e.actor.clone(),
        class: outcome_class(e.outcome.as_str()),
        outcome: e.outcome.as_str().replace('_', " "),
        keys: e.key_ids.join(", "),
        counts: e.counts_summary(),
        duration: e
            .duration_ms
            .map(|d| format!("{:.1}s", d as f64 / 1000.0))
            .unwrap_or_default(),
        reason: e.reason.clone().unwrap_or_default(),
    }
}

/// A run the history flags.
struct FlaggedRow {
    outcome: String,
    time: String,
    text: String,
}

/// The page: everything the template shows, already worded.
#[derive(Template)]
#[template(path = "report.html")]
struct Page<'a> {
    r: &'a EvidenceReport,
    generated: String,
    summary: Summary,
    due: Vec<DueRow>,
    keys: Vec<KeyRow>,
    chart: Chart,
    legend: Vec<(String, &'static str, bool)>,
    unrecognized: bool,
    unrecognized_color: &'static str,
    distribution: Vec<DistRow>,
    verify: Option<Verify>,
    tip_seq: String,
    tip_hash: String,
    anchor: String,
    flagged: Vec<FlaggedRow>,
    history: Vec<EventRow>,
}

impl<'a> Page<'a> {
    fn new(r: &'a EvidenceReport) -> Page<'a> {
        let colors = key_colors(r);
        let current = r.summary.current_key_id.as_deref();
        Page {
            r,
            generated: human(&r.generated_at),
            summary: summary(r),
            due: due_rows(r),
            keys: key_rows(r, &colors),
            chart: Chart::new(r, &colors),
            legend: colors
                .iter()
                .map(|(k, c)| (k.clone(), *c, current == Some(k.as_str())))
                .collect(),
            unrecognized: r.columns.iter().any(|c| c.unrecognized > 0),
            unrecognized_color: UNRECOGNIZED,
            distribution: r
                .columns
                .iter()
                .map(|c| DistRow {
                    column: c.label(),
                    total: c.total,
                    nulls: c.nulls,
                    keys: c
                        .by_key
                        .iter()
                        .map(|k| (color_of(&colors, &k.key_id), k.key_id.clone(), k.rows))
                        .collect(),
                    unrecognized: c.unrecognized,
                })
                .collect(),
            verify: r.latest_verify.as_ref().map(verify),
            tip_seq: r
                .chain
                .tip_seq
                .map(|s| s.to_string())
                .unwrap_or_else(|| "—".into()),
            tip_hash: r.chain.tip_hash.clone().unwrap_or_else(|| "—".into()),
            anchor: format!(
                "{}:{}",
                r.chain.tip_seq.unwrap_or(0),
                r.chain.tip_hash.as_deref().unwrap_or("HASH")
            ),
            flagged: r
                .flagged_runs
                .iter()
                .map(|f| FlaggedRow {
                    outcome: f.outcome.clone(),
                    time: human(&f.time),
                    text: f.describe(),
                })
                .collect(),
            history: r.history.iter().map(event_row).collect(),
        }
    }
}

/// Renders the report as a complete HTML document.
pub fn render(r: &EvidenceReport) -> String {
    let page = Page::new(r);
    // Rendering into a String fails only if a value's Display fails, and
    // every value here is a String or a number.
    page.render().unwrap_or_else(|e| {
        format!("<!DOCTYPE html>\n<html lang=\"en\"><body><p>the report could not be rendered: {e}</p></body></html>\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_times_read_for_people() {
        assert_eq!(human("2025-03-01T10:00:00.000Z"), "2025-03-01 10:00:00");
        assert_eq!(human("short"), "short");
        assert_eq!(day(Some("2025-03-01T10:00:00.000Z")), "2025-03-01");
        assert_eq!(day(None), "—");
    }
}
