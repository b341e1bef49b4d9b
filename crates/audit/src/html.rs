//! The evidence report as one self-contained HTML page: inline CSS, an
//! inline SVG chart, no scripts, no external assets; opens offline and
//! prints cleanly.

use crate::due::{DueStatus, SinceSource};
use crate::event::AuditEvent;
use crate::report::{ColumnDistribution, Compliance, EvidenceReport};
use std::fmt::Write as _;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = r#"
:root { --ok:#047857; --ok-bg:#d1fae5; --warn:#92400e; --warn-bg:#fef3c7; --bad:#b91c1c; --bad-bg:#fee2e2; --ink:#111827; --muted:#4b5563; --line:#e5e7eb; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "Liberation Sans", sans-serif; color: var(--ink); margin: 0; background: #f9fafb; line-height: 1.45; font-size: 15px; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 48px; background: #fff; }
header h1 { font-size: 26px; margin: 0 0 4px; }
header .meta { color: var(--muted); margin: 0; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
p.lead { color: var(--muted); margin: 4px 0 12px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 14px; margin-top: 22px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; border-top-width: 5px; }
.card h3 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 0 0 4px; }
.card .big { font-size: 24px; font-weight: 700; margin: 0; }
.card p { margin: 2px 0 0; font-size: 13px; color: var(--muted); }
.card.ok { border-top-color: var(--ok); } .card.ok .big { color: var(--ok); }
.card.warn { border-top-color: #d97706; } .card.warn .big { color: var(--warn); }
.card.bad { border-top-color: var(--bad); } .card.bad .big { color: var(--bad); }
.card.neutral { border-top-color: #6b7280; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; white-space: nowrap; }
.badge.ok { background: var(--ok-bg); color: var(--ok); }
.badge.warn { background: var(--warn-bg); color: var(--warn); }
.badge.bad { background: var(--bad-bg); color: var(--bad); }
.badge.neutral { background: #e5e7eb; color: #374151; }
.chart { margin: 8px 0 4px; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; font-size: 13px; margin: 6px 0 14px; }
.legend span.sw { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.note { font-size: 13px; color: var(--muted); }
.problem { background: var(--bad-bg); border-left: 4px solid var(--bad); padding: 8px 12px; margin: 8px 0; }
.fine { background: var(--ok-bg); border-left: 4px solid var(--ok); padding: 8px 12px; margin: 8px 0; }
footer { margin-top: 40px; font-size: 12.5px; color: var(--muted); border-top: 1px solid var(--line); padding-top: 10px; }
@media print { body { background: #fff; } main { padding: 0; max-width: none; } h2 { break-after: avoid; } tr { break-inside: avoid; } }
"#;

/// Colors for key ids: the primary is always the first.
const PALETTE: [&str; 8] = [
    "#2563eb", "#f59e0b", "#dc2626", "#7c3aed", "#059669", "#db2777", "#0891b2", "#65a30d",
];
const UNRECOGNIZED: &str = "#9ca3af";

fn status_class(s: DueStatus) -> &'static str {
    match s {
        DueStatus::Ok => "ok",
        DueStatus::DueSoon => "warn",
        DueStatus::Overdue => "bad",
    }
}

fn status_badge(s: DueStatus) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        status_class(s),
        esc(s.label())
    )
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

fn date(t: &Option<String>) -> String {
    t.as_deref()
        .map(|s| esc(&human(s)))
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

/// Every key id in the chart, primary first, with its color.
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

/// A horizontal stacked bar per column: the share of its values under each
/// key id (and unrecognized values).
fn chart(r: &EvidenceReport, colors: &[(String, &'static str)]) -> String {
    const LABEL_W: f64 = 250.0;
    const BAR_W: f64 = 640.0;
    const ROW_H: f64 = 34.0;
    let n = r.columns.len().max(1);
    let height = ROW_H * n as f64 + 26.0;
    let width = LABEL_W + BAR_W + 110.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" id=\"distribution-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"Values per key id for each encrypted column\" font-family=\"-apple-system, Segoe UI, Roboto, Liberation Sans, Arial, sans-serif\" font-size=\"13\">"
    );
    for pct in [0, 25, 50, 75, 100] {
        let x = LABEL_W + BAR_W * f64::from(pct) / 100.0;
        let _ = write!(
            s,
            "<line x1=\"{x}\" y1=\"4\" x2=\"{x}\" y2=\"{}\" stroke=\"#e5e7eb\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" fill=\"#6b7280\" font-size=\"11\">{pct}%</text>",
            height - 20.0,
            height - 6.0
        );
    }
    for (i, c) in r.columns.iter().enumerate() {
        let y = 8.0 + ROW_H * i as f64;
        let values = c.total - c.nulls;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#111827\">{}</text>",
            LABEL_W - 10.0,
            y + 16.0,
            esc(&c.label())
        );
        let mut segs: Vec<(String, u64, &str)> = c
            .by_key
            .iter()
            .map(|k| (k.key_id.clone(), k.rows, color_of(colors, &k.key_id)))
            .collect();
        // Primary first, then the chart's key order.
        segs.sort_by_key(|(k, _, _)| {
            colors
                .iter()
                .position(|(x, _)| x == k)
                .unwrap_or(usize::MAX)
        });
        if c.unrecognized > 0 {
            segs.push(("plaintext / other".into(), c.unrecognized, UNRECOGNIZED));
        }
        if values == 0 {
            let _ = write!(
                s,
                "<rect x=\"{LABEL_W}\" y=\"{y}\" width=\"{BAR_W}\" height=\"22\" fill=\"#f3f4f6\" stroke=\"#d1d5db\"/><text x=\"{}\" y=\"{}\" fill=\"#6b7280\">no values</text>",
                LABEL_W + 8.0,
                y + 15.0
            );
            continue;
        }
        // Every non-empty segment stays visible (at least MIN_SEG wide): a
        // few values left under an old key are what an auditor looks for.
        const MIN_SEG: f64 = 4.0;
        let raw: Vec<f64> = segs
            .iter()
            .map(|(_, rows, _)| BAR_W * (*rows as f64) / (values as f64))
            .collect();
        let tiny = raw.iter().filter(|w| **w < MIN_SEG).count() as f64;
        let big: f64 = raw.iter().filter(|w| **w >= MIN_SEG).sum();
        let scale = if big > 0.0 {
            (BAR_W - MIN_SEG * tiny) / big
        } else {
            1.0
        };
        let mut x = LABEL_W;
        for ((label, rows, color), raw_w) in segs.iter().zip(&raw) {
            let w = if *raw_w < MIN_SEG {
                MIN_SEG
            } else {
                raw_w * scale
            };
            let pct = 100.0 * (*rows as f64) / (values as f64);
            let _ = write!(
                s,
                "<rect class=\"seg\" data-key=\"{}\" x=\"{x:.2}\" y=\"{y}\" width=\"{w:.2}\" height=\"22\" fill=\"{color}\"><title>{}: {rows} values ({pct:.1}%)</title></rect>",
                esc(label),
                esc(&format!("{} — {label}", c.label()))
            );
            if w >= 70.0 {
                let _ = write!(
                    s,
                    "<text x=\"{:.2}\" y=\"{}\" fill=\"#fff\" font-size=\"12\" font-weight=\"600\">{} {pct:.0}%</text>",
                    x + 6.0,
                    y + 15.5,
                    esc(label)
                );
            }
            x += w;
        }
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"#374151\" font-size=\"12\">{values} values</text>",
            LABEL_W + BAR_W + 8.0,
            y + 15.5
        );
    }
    s.push_str("</svg>");
    s
}

fn event_row(e: &AuditEvent) -> String {
    let counts = e.counts_summary();
    format!(
        "<tr data-seq=\"{seq}\"><td class=\"num\">{seq}</td><td class=\"mono\">{time}</td><td><code>{action}</code></td><td>{actor}</td><td><span class=\"badge {cls}\">{outcome}</span></td><td>{keys}</td><td>{counts}</td><td class=\"num\">{dur}</td><td>{reason}</td></tr>",
        seq = e.seq,
        time = esc(&human(&e.time)),
        action = esc(e.action.as_str()),
        actor = esc(&e.actor),
        cls = outcome_class(e.outcome.as_str()),
        outcome = esc(&e.outcome.as_str().replace('_', " ")),
        keys = esc(&e.key_ids.join(", ")),
        counts = esc(&counts),
        dur = e
            .duration_ms
            .map(|d| format!("{:.1}s", d as f64 / 1000.0))
            .unwrap_or_default(),
        reason = esc(e.reason.as_deref().unwrap_or("")),
    )
}

fn distribution_table(cols: &[ColumnDistribution], colors: &[(String, &'static str)]) -> String {
    let mut s = String::from(
        "<table id=\"distribution-table\"><thead><tr><th>column</th><th class=\"num\">rows</th><th class=\"num\">NULL</th><th>values per key id</th><th class=\"num\">plaintext / other</th></tr></thead><tbody>",
    );
    for c in cols {
        let keys: Vec<String> = c
            .by_key
            .iter()
            .map(|k| {
                format!(
                    "<span class=\"sw-inline\" style=\"color:{}\">■</span> {}: {}",
                    color_of(colors, &k.key_id),
                    esc(&k.key_id),
                    k.rows
                )
            })
            .collect();
        let _ = write!(
            s,
            "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(&c.label()),
            c.total,
            c.nulls,
            if keys.is_empty() {
                "—".into()
            } else {
                keys.join(" &nbsp; ")
            },
            c.unrecognized
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// Renders the report as a complete HTML document.
pub fn render(r: &EvidenceReport) -> String {
    let colors = key_colors(r);
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"generator\" content=\"keyturn {ver}\"><title>Key rotation evidence report — {db}</title><style>{CSS}</style></head><body><main>",
        ver = esc(&r.keyturn_version),
        db = esc(&r.database)
    );
    let _ = write!(
        h,
        "<header><h1>Key rotation evidence report</h1><p class=\"meta\">Database <code>{}</code> · generated {} UTC · keyturn {}</p></header>",
        esc(&r.database),
        esc(&human(&r.generated_at)),
        esc(&r.keyturn_version)
    );

    // Summary cards.
    let s = &r.summary;
    let comp = s.compliance;
    let next = match s.attention.as_slice() {
        [] => r
            .due
            .next_due_at
            .as_deref()
            .map(|d| format!("next rotation due {}", &d[..10.min(d.len())]))
            .unwrap_or_else(|| "no due date known".into()),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first}; and {} more below", rest.len()),
    };
    let (verify_cls, verify_big, verify_sub) = match &r.latest_verify {
        None => (
            "neutral",
            "none".to_owned(),
            "no verify recorded yet".to_owned(),
        ),
        Some(e) => (
            if e.outcome.as_str() == "ok" {
                "ok"
            } else {
                "bad"
            },
            if e.outcome.as_str() == "ok" {
                "passed".to_owned()
            } else {
                e.outcome.as_str().replace('_', " ")
            },
            format!("{} UTC · event #{}", human(&e.time), e.seq),
        ),
    };
    let _ = write!(
        h,
        "<section id=\"summary\" class=\"cards\">\
         <div class=\"card {cc}\" id=\"summary-compliance\"><h3>Compliance</h3><p class=\"big\">{cb}</p><p>{next}</p></div>\
         <div class=\"card {hc}\" id=\"summary-chain\"><h3>Audit trail</h3><p class=\"big\">{hb}</p><p>{events} events, hash-chained</p></div>\
         <div class=\"card {verify_cls}\" id=\"summary-verify\"><h3>Latest verify</h3><p class=\"big\">{vb}</p><p>{vs}</p></div>\
         <div class=\"card neutral\" id=\"summary-keys\"><h3>Keys holding data</h3><p class=\"big\">{kin}</p><p>current key: {prim}</p></div>\
         </section>",
        cc = match comp {
            Compliance::Ok => "ok",
            Compliance::DueSoon | Compliance::Attention => "warn",
            Compliance::Overdue => "bad",
        },
        cb = esc(match comp {
            Compliance::Ok => "compliant",
            Compliance::DueSoon => "due soon",
            Compliance::Overdue => "overdue",
            Compliance::Attention => "needs attention",
        }),
        next = esc(&next),
        hc = if s.chain_ok { "ok" } else { "bad" },
        hb = if s.chain_ok { "intact" } else { "BROKEN" },
        events = s.events,
        vb = esc(&verify_big),
        vs = esc(&verify_sub),
        kin = s.keys_in_use,
        prim = esc(s.current_key_id.as_deref().unwrap_or("unknown")),
    );

    // 1. Compliance.
    let _ = write!(
        h,
        "<section id=\"compliance\"><h2>1. Policy compliance</h2><p class=\"lead\">Policy: keys may be used for at most <b>{} days</b> (per-column overrides below); a reminder starts {} days before. Ages are counted in UTC, in days of 24 hours, from the earliest known date a key came into use.</p>\
         <table><thead><tr><th>column</th><th class=\"num\">limit</th><th>keys in use (oldest first)</th><th>due</th><th>status</th><th>assessment</th></tr></thead><tbody>",
        r.due.max_key_age_days, r.due.warn_days
    );
    for c in &r.due.columns {
        let keys: Vec<String> = c
            .keys
            .iter()
            .map(|k| {
                format!(
                    "<code>{}</code>{} {}",
                    esc(&k.key_id),
                    if k.primary { " (current)" } else { "" },
                    match k.age_days {
                        Some(a) => format!("{a} d"),
                        None => "age unknown".into(),
                    }
                )
            })
            .collect();
        let _ = write!(
            h,
            "<tr class=\"due-row\" data-status=\"{st}\"><td><code>{col}</code></td><td class=\"num\">{lim} d</td><td>{keys}</td><td class=\"mono\">{due}</td><td>{badge}</td><td>{msg}</td></tr>",
            st = c.status.as_str(),
            col = esc(&format!("{}.{}", c.table, c.column)),
            lim = c.max_key_age_days,
            keys = if keys.is_empty() {
                "—".into()
            } else {
                keys.join("<br>")
            },
            due = c
                .due_at
                .as_deref()
                .map(|d| esc(&d[..10.min(d.len())]))
                .unwrap_or_else(|| "—".into()),
            badge = status_badge(c.status),
            msg = esc(&c.message),
        );
    }
    h.push_str("</tbody></table></section>");

    // 2. Key inventory.
    h.push_str(
        "<section id=\"key-inventory\"><h2>2. Key inventory</h2><p class=\"lead\">Every key id named by the configuration, the data or the audit trail. Key material is never part of this report.</p>\
         <table><thead><tr><th>key id</th><th>state</th><th class=\"num\">values</th><th>columns</th><th>in use since</th><th class=\"num\">age</th><th>due</th><th>status</th><th>last audit event</th></tr></thead><tbody>",
    );
    for k in &r.keys {
        let _ = write!(
            h,
            "<tr class=\"key-row\" data-key=\"{id}\"><td><span style=\"color:{color}\">■</span> <code>{id}</code></td><td>{state}{comp}</td><td class=\"num\">{rows}</td><td>{cols}</td><td class=\"mono\">{since}<br><span class=\"note\">{src}</span></td><td class=\"num\">{age}</td><td class=\"mono\">{due}</td><td>{status}</td><td class=\"mono\">{last}</td></tr>",
            id = esc(&k.key_id),
            color = color_of(&colors, &k.key_id),
            state = esc(state_label(&k.state)),
            comp = if k.compromised {
                " <span class=\"badge bad\">compromised</span>"
            } else {
                ""
            },
            rows = k.rows,
            cols = esc(&k.columns.join(", ")),
            since = date(&k.since),
            src = since_source(k.since_source),
            age = k
                .age_days
                .map(|a| format!("{a} d"))
                .unwrap_or_else(|| "—".into()),
            due = k
                .due_at
                .as_deref()
                .map(|d| esc(&d[..10.min(d.len())]))
                .unwrap_or_else(|| "—".into()),
            status = k
                .status
                .map(status_badge)
                .unwrap_or_else(|| "<span class=\"badge neutral\">not in use</span>".into()),
            last = esc(k.last_event.as_deref().unwrap_or("—")),
        );
    }
    h.push_str("</tbody></table></section>");

    // 3. Distribution.
    h.push_str("<section id=\"distribution\"><h2>3. Where the data is: values per key, per column</h2><p class=\"lead\">Counted by the database from each value's key id at the time of this report. After a complete rotation every bar is a single color: the primary key.</p>");
    h.push_str(&chart(r, &colors));
    h.push_str("<div class=\"legend\">");
    for (k, c) in &colors {
        let primary = r.summary.current_key_id.as_deref() == Some(k.as_str());
        let _ = write!(
            h,
            "<span><span class=\"sw\" style=\"background:{c}\"></span><code>{}</code>{}</span>",
            esc(k),
            if primary { " (current)" } else { "" }
        );
    }
    if r.columns.iter().any(|c| c.unrecognized > 0) {
        let _ = write!(
            h,
            "<span><span class=\"sw\" style=\"background:{UNRECOGNIZED}\"></span>plaintext / other format</span>"
        );
    }
    h.push_str("</div>");
    h.push_str(&distribution_table(&r.columns, &colors));
    h.push_str("</section>");

    // 4. Latest verify.
    h.push_str("<section id=\"latest-verify\"><h2>4. Latest verification</h2>");
    match &r.latest_verify {
        None => h.push_str("<p class=\"problem\">No <code>keyturn verify</code> has been recorded in the audit trail. Run <code>keyturn verify --deep</code>.</p>"),
        Some(e) => {
            let deep = e.details.get("deep").and_then(|v| v.as_bool()).unwrap_or(false);
            let _ = write!(
                h,
                "<p class=\"{}\"><b>{}</b> — <code>keyturn verify{}</code> by {} at {} UTC (event #{}), current key <code>{}</code>.</p>",
                if e.outcome.as_str() == "ok" { "fine" } else { "problem" },
                if e.outcome.as_str() == "ok" { "Every value is under the current key" } else { "Some values are not under the current key" },
                if deep { " --deep" } else { "" },
                esc(&e.actor),
                esc(&human(&e.time)),
                e.seq,
                esc(e.key().unwrap_or("?")),
            );
            h.push_str("<table><thead><tr><th>column</th><th class=\"num\">checked</th><th class=\"num\">under the current key</th><th class=\"num\">failing</th></tr></thead><tbody>");
            for c in &e.columns {
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    esc(&c.label()),
                    c.get("checked"),
                    c.get("under_current").max(c.get("under_primary")),
                    c.get("failing")
                );
            }
            h.push_str("</tbody></table>");
            if deep {
                h.push_str("<p class=\"note\">--deep: every value was decrypted with its row's context, not only its key id read.</p>");
            }
        }
    }
    h.push_str("</section>");

    // 5. Chain integrity.
    let c = &r.chain;
    h.push_str("<section id=\"chain-integrity\"><h2>5. Audit-trail integrity</h2>");
    if c.ok {
        let _ = write!(
            h,
            "<p class=\"fine\"><b>Intact.</b> {} events checked: each event's SHA-256 matches its contents and links to the previous event's hash; no event is missing or out of order.</p>",
            c.events
        );
    } else if let Some(p) = &c.first_bad {
        let _ = write!(
            h,
            "<p class=\"problem\" id=\"first-bad-event\"><b>Broken at event #{}.</b> {}</p>",
            p.seq,
            esc(&p.message)
        );
        if c.problems.len() > 1 {
            let _ = write!(
                h,
                "<p class=\"note\">{} problems in all; the first is shown.</p>",
                c.problems.len()
            );
        }
    }
    let _ = write!(
        h,
        "<p>Tip of the chain: event <b>#{}</b>, hash <code>{}</code>. Record it outside the database (ticket, chat, signed e-mail) and check it later with <code>keyturn audit verify --anchor {}:{}</code>: that detects events removed from the end, which no chain can detect on its own.</p></section>",
        c.tip_seq
            .map(|s| s.to_string())
            .unwrap_or_else(|| "—".into()),
        esc(c.tip_hash.as_deref().unwrap_or("—")),
        c.tip_seq.unwrap_or(0),
        esc(c.tip_hash.as_deref().unwrap_or("HASH")),
    );

    // 6. History.
    let _ = write!(
        h,
        "<section id=\"rotation-history\"><h2>6. Rotation history (audit trail)</h2><p class=\"lead\">{}, newest first.</p>",
        if r.history_total > r.history.len() {
            format!(
                "The latest {} of {} events; <code>keyturn audit export</code> gives all of them",
                r.history.len(),
                r.history_total
            )
        } else {
            format!("All {} events", r.history_total)
        }
    );
    if !r.flagged_runs.is_empty() {
        h.push_str("<div class=\"problem\" id=\"flagged-runs\"><b>Runs needing attention</b> (interrupted or failed, and no run of the same operation has finished since; run it again to resume):<ul>");
        for f in &r.flagged_runs {
            let _ = write!(
                h,
                "<li class=\"flagged-run\" data-outcome=\"{}\"><span class=\"mono\">{}</span> {}</li>",
                esc(&f.outcome),
                esc(&human(&f.time)),
                esc(&f.describe())
            );
        }
        h.push_str("</ul></div>");
    }
    if r.history.is_empty() {
        h.push_str("<p class=\"problem\">The audit trail is empty: no rotate, encrypt or verify has been recorded in this database.</p>");
    } else {
        h.push_str("<table id=\"history-table\"><thead><tr><th class=\"num\">#</th><th>time (UTC)</th><th>action</th><th>actor</th><th>outcome</th><th>keys</th><th>counts</th><th class=\"num\">duration</th><th>reason</th></tr></thead><tbody>");
        for e in &r.history {
            h.push_str(&event_row(e));
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");

    h.push_str("<footer>Generated by keyturn from the database's own audit table (<code>keyturn_audit</code>) and live counts. Re-check independently: <code>keyturn audit verify</code>, <code>keyturn audit export</code> (each line carries its hash; docs/AUDIT.md shows how to recompute the chain without keyturn), <code>keyturn verify --deep</code>.</footer>");
    h.push_str("</main></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
