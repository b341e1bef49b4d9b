//! The hash chain (docs/AUDIT.md).
//!
//! Each event's hash is `SHA-256(canonical_json(event))`, where the event is
//! the object of its fields *including* `prev_hash` (the previous event's
//! hash; 64 zeros for the first event) and *excluding* `hash`:
//!
//! ```text
//! {"action":…,"actor":…,"columns":[…],"details":{…},"duration_ms":…|null,
//!  "key_ids":[…],"outcome":…,"prev_hash":…,"reason":…|null,"run_id":…|null,
//!  "seq":N,"time":…,"v":1}
//! ```
//!
//! Canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace,
//! integers only, strings escaped as `\"` `\\` `\b` `\f` `\n` `\r` `\t` and
//! other control characters as lowercase `\u00xx`, everything else as
//! literal UTF-8. That is exactly Python's
//! `json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`,
//! so an auditor can recompute the chain without keyturn.

use keyturn_db::AuditRow;
use serde::Serialize;
use serde_json::{Map, Value};

/// `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The canonical form's version.
pub const FORMAT_VERSION: u32 = 1;

/// Writes `v` in canonical JSON. Fails on non-integer numbers.
pub fn canonical_json(v: &Value) -> Result<String, String> {
    let mut out = String::new();
    write_canonical(v, &mut out)?;
    Ok(out)
}

fn write_canonical(v: &Value, out: &mut String) -> Result<(), String> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                return Err(format!(
                    "the number {n} is not an integer (audit events hold integers only)"
                ));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out)?;
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(&m[k], out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Hex SHA-256 of the canonical form.
pub fn hash_hex(canonical: &str) -> String {
    hex::encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref(),
    )
}

/// The object that is hashed for a stored row (every field but `hash`).
/// JSON columns are parsed, so their stored spelling does not matter, only
/// their content.
pub fn hashed_object(r: &AuditRow) -> Result<Value, String> {
    let json = |what: &str, text: &str| {
        serde_json::from_str::<Value>(text).map_err(|e| format!("{what} is not valid JSON: {e}"))
    };
    let mut m = Map::new();
    m.insert("v".into(), Value::from(r.format_version));
    m.insert("seq".into(), Value::from(r.seq));
    m.insert("time".into(), Value::from(r.event_time.clone()));
    m.insert("action".into(), Value::from(r.action.clone()));
    m.insert("actor".into(), Value::from(r.actor.clone()));
    m.insert("outcome".into(), Value::from(r.outcome.clone()));
    m.insert(
        "reason".into(),
        r.reason.clone().map_or(Value::Null, Value::from),
    );
    m.insert(
        "run_id".into(),
        r.run_id.clone().map_or(Value::Null, Value::from),
    );
    m.insert("key_ids".into(), json("key_ids", &r.key_ids)?);
    m.insert("columns".into(), json("column_counts", &r.column_counts)?);
    m.insert(
        "duration_ms".into(),
        r.duration_ms.map_or(Value::Null, Value::from),
    );
    m.insert("details".into(), json("details", &r.details)?);
    m.insert("prev_hash".into(), Value::from(r.prev_hash.clone()));
    Ok(Value::Object(m))
}

/// The hash a row should carry.
pub fn row_hash(r: &AuditRow) -> Result<String, String> {
    Ok(hash_hex(&canonical_json(&hashed_object(r)?)?))
}

/// One exported line: the hashed object plus `hash`. Unparsable JSON
/// columns (a tampered row) are exported as strings, and then fail to
/// verify.
pub fn export_object(r: &AuditRow) -> Value {
    let mut v = hashed_object(r).unwrap_or_else(|_| {
        let mut m = Map::new();
        m.insert("v".into(), Value::from(r.format_version));
        m.insert("seq".into(), Value::from(r.seq));
        m.insert("time".into(), Value::from(r.event_time.clone()));
        m.insert("action".into(), Value::from(r.action.clone()));
        m.insert("actor".into(), Value::from(r.actor.clone()));
        m.insert("outcome".into(), Value::from(r.outcome.clone()));
        m.insert(
            "reason".into(),
            r.reason.clone().map_or(Value::Null, Value::from),
        );
        m.insert(
            "run_id".into(),
            r.run_id.clone().map_or(Value::Null, Value::from),
        );
        m.insert("key_ids".into(), Value::from(r.key_ids.clone()));
        m.insert("columns".into(), Value::from(r.column_counts.clone()));
        m.insert(
            "duration_ms".into(),
            r.duration_ms.map_or(Value::Null, Value::from),
        );
        m.insert("details".into(), Value::from(r.details.clone()));
        m.insert("prev_hash".into(), Value::from(r.prev_hash.clone()));
        Value::Object(m)
    });
    if let Value::Object(m) = &mut v {
        m.insert("hash".into(), Value::from(r.hash.clone()));
    }
    v
}

/// The first problem found, named by the event's sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainProblem {
    /// The sequence number of the event with the problem.
    pub seq: u64,
    /// `edited`, `missing`, `out_of_order`, `broken_link`, `unreadable`,
    /// `anchor`.
    pub kind: String,
    /// What is wrong, for people.
    pub message: String,
}

/// The result of checking a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// True when no problem was found.
    pub ok: bool,
    /// Events checked.
    pub events: u64,
    /// The sequence number of the first event checked; `None` if there were none.
    pub first_seq: Option<u64>,
    /// The last event: record `seq` and `hash` somewhere else (a ticket, a
    /// chat message) and pass them to `audit verify --anchor` later to
    /// detect events removed from the end.
    pub tip_seq: Option<u64>,
    /// The stored hash of the last event (see `tip_seq`).
    pub tip_hash: Option<String>,
    /// The first bad event, if any.
    pub first_bad: Option<ChainProblem>,
    /// Every problem found (at most 100).
    pub problems: Vec<ChainProblem>,
    /// Whether the check started at event 1 (a full chain) or at a later
    /// event (a partial export: checked from there on).
    pub complete: bool,
    /// `seq:hash` checked with `--anchor`, if any.
    pub anchor: Option<String>,
}

const MAX_PROBLEMS: usize = 100;

/// Checks events one at a time, in the order they are read (by `seq`).
#[derive(Debug)]
pub struct ChainVerifier {
    partial_ok: bool,
    prev: Option<(u64, String)>,
    events: u64,
    first_seq: Option<u64>,
    problems: Vec<ChainProblem>,
    seen: Vec<(u64, String)>,
    anchor: Option<(u64, String)>,
}

impl ChainVerifier {
    /// A verifier for a whole chain: the first event must be #1 with
    /// `prev_hash` = [`GENESIS`].
    pub fn new() -> ChainVerifier {
        ChainVerifier {
            partial_ok: false,
            prev: None,
            events: 0,
            first_seq: None,
            problems: Vec::new(),
            seen: Vec::new(),
            anchor: None,
        }
    }

    /// A verifier for an export that may start later in the chain
    /// (`audit export --since`): the first event is taken as given.
    pub fn partial() -> ChainVerifier {
        ChainVerifier {
            partial_ok: true,
            ..ChainVerifier::new()
        }
    }

    /// Also require event `seq` with hash `hash` (recorded earlier).
    pub fn anchor(mut self, seq: u64, hash: &str) -> ChainVerifier {
        self.anchor = Some((seq, hash.to_ascii_lowercase()));
        self
    }

    fn problem(&mut self, seq: u64, kind: &str, message: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(ChainProblem {
                seq,
                kind: kind.into(),
                message,
            });
        }
    }

    /// Checks one stored row.
    pub fn push_row(&mut self, r: &AuditRow) {
        let computed = row_hash(r);
        self.push(r.seq, &r.prev_hash, &r.hash, computed, r.format_version);
    }

    /// Checks one exported line (the object with its `hash`).
    pub fn push_exported(&mut self, line: &Value) {
        let Some(obj) = line.as_object() else {
            let seq = self.prev.as_ref().map_or(1, |p| p.0 + 1);
            self.problem(
                seq,
                "unreadable",
                format!("line for event #{seq} is not a JSON object"),
            );
            return;
        };
        let seq = obj.get("seq").and_then(Value::as_i64).unwrap_or(-1);
        let prev = obj
            .get("prev_hash")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let stored = obj
            .get("hash")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let v = obj.get("v").and_then(Value::as_i64).unwrap_or(-1);
        let mut hashed = obj.clone();
        hashed.remove("hash");
        let computed = canonical_json(&Value::Object(hashed)).map(|c| hash_hex(&c));
        self.push(seq, &prev, &stored, computed, v);
    }

    fn push(
        &mut self,
        seq: i64,
        prev_hash: &str,
        stored: &str,
        computed: Result<String, String>,
        version: i64,
    ) {
        self.events += 1;
        let Ok(seq) = u64::try_from(seq) else {
            let after = self.prev.as_ref().map_or(0, |p| p.0);
            self.problem(
                after + 1,
                "unreadable",
                format!("an event after #{after} has an invalid seq {seq}"),
            );
            return;
        };
        if self.first_seq.is_none() {
            self.first_seq = Some(seq);
        }
        let mut gap = false;
        match &self.prev {
            None if !self.partial_ok && seq != 1 => {
                self.problem(
                    1,
                    "missing",
                    format!("event #1 is missing: the chain starts at #{seq}"),
                );
                gap = true;
            }
            Some((p, _)) if seq == *p + 1 => {}
            Some((p, _)) if seq > *p + 1 => {
                let first_missing = p + 1;
                let what = if seq == p + 2 {
                    format!("event #{first_missing} is missing")
                } else {
                    format!("events #{first_missing} to #{} are missing", seq - 1)
                };
                self.problem(
                    first_missing,
                    "missing",
                    format!("{what}: #{p} is followed by #{seq} (deleted)"),
                );
                gap = true;
            }
            Some((p, _)) => {
                self.problem(
                    seq,
                    "out_of_order",
                    format!("event #{seq} comes after #{p} (reordered or duplicated)"),
                );
            }
            None => {}
        }
        if version != i64::from(FORMAT_VERSION) {
            self.problem(
                seq,
                "unreadable",
                format!("event #{seq} has format version {version}; this keyturn knows version {FORMAT_VERSION}"),
            );
        }
        match computed {
            Err(e) => self.problem(seq, "unreadable", format!("event #{seq} cannot be read: {e}")),
            Ok(h) if !h.eq_ignore_ascii_case(stored) => self.problem(
                seq,
                "edited",
                format!(
                    "event #{seq} does not match its hash: its contents were edited (or it was moved from another position); stored {}, computed {}",
                    short(stored),
                    short(&h)
                ),
            ),
            Ok(_) => {}
        }
        let expected_prev = match &self.prev {
            Some((_, h)) => Some(h.clone()),
            None if seq == 1 => Some(GENESIS.to_owned()),
            None => None,
        };
        if let Some(exp) = expected_prev
            && !gap
            && !exp.eq_ignore_ascii_case(prev_hash)
        {
            let before = self
                .prev
                .as_ref()
                .map_or("the start of the chain".to_owned(), |(p, _)| {
                    format!("event #{p}")
                });
            self.problem(
                    seq,
                    "broken_link",
                    format!(
                        "event #{seq} does not follow {before}: its prev_hash is {}, expected {} (an event before it was edited, removed, replaced or reordered)",
                        short(prev_hash),
                        short(&exp)
                    ),
                );
        }
        if let Some((a, _)) = &self.anchor
            && *a == seq
        {
            self.seen.push((seq, stored.to_ascii_lowercase()));
        }
        self.prev = Some((seq, stored.to_ascii_lowercase()));
    }

    /// Ends the check (including the `--anchor` check) and reports what was found.
    pub fn finish(mut self) -> ChainReport {
        let mut anchor_text = None;
        if let Some((seq, hash)) = self.anchor.clone() {
            anchor_text = Some(format!("{seq}:{hash}"));
            match self.seen.iter().find(|(s, _)| *s == seq) {
                None => self.problem(
                    seq,
                    "anchor",
                    format!(
                        "anchored event #{seq} is gone: the chain ends at #{} (events were removed from the end)",
                        self.prev.as_ref().map_or(0, |p| p.0)
                    ),
                ),
                Some((_, h)) if *h != hash => self.problem(
                    seq,
                    "anchor",
                    format!(
                        "anchored event #{seq} has hash {}, not the recorded {} (the chain was rewritten)",
                        short(h),
                        short(&hash)
                    ),
                ),
                Some(_) => {}
            }
        }
        // The first problem by position in the chain.
        let mut problems = self.problems;
        problems.sort_by_key(|p| p.seq);
        ChainReport {
            ok: problems.is_empty(),
            events: self.events,
            first_seq: self.first_seq,
            tip_seq: self.prev.as_ref().map(|p| p.0),
            tip_hash: self.prev.map(|p| p.1),
            first_bad: problems.first().cloned(),
            problems,
            complete: !self.partial_ok || self.first_seq.is_none_or(|s| s == 1),
            anchor: anchor_text,
        }
    }
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier::new()
    }
}

fn short(h: &str) -> String {
    if h.len() > 16 {
        format!("{}…", &h[..16])
    } else {
        h.to_owned()
    }
}

/// Parses `--anchor SEQ:HASH`.
pub fn parse_anchor(s: &str) -> Result<(u64, String), String> {
    let (seq, hash) = s
        .split_once(':')
        .ok_or_else(|| format!("--anchor {s:?}: expected SEQ:HASH, e.g. 42:9f86d081…"))?;
    let seq: u64 = seq
        .trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|_| format!("--anchor {s:?}: {seq:?} is not an event number"))?;
    let hash = hash.trim().to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("--anchor {s:?}: the hash must be 64 hex digits"));
    }
    Ok((seq, hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_escapes_and_refuses_fractions() {
        let v = json!({"b": [1, -2, u64::MAX], "a": "x\"\\\n\u{1}é🔑/", "A": null, "c": {"z": true, "y": false}});
        assert_eq!(
            canonical_json(&v).unwrap(),
            "{\"A\":null,\"a\":\"x\\\"\\\\\\n\\u0001é🔑/\",\"b\":[1,-2,18446744073709551615],\"c\":{\"y\":false,\"z\":true}}"
        );
        assert!(canonical_json(&json!({"x": 1.5})).is_err());
    }

    #[test]
    fn sha256_of_the_canonical_form() {
        // echo -n '{"a":1}' | sha256sum
        assert_eq!(
            hash_hex("{\"a\":1}"),
            "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
    }

    #[test]
    fn anchors_parse() {
        let h = "ab".repeat(32);
        assert_eq!(
            parse_anchor(&format!("#7:{}", h.to_uppercase())).unwrap(),
            (7, h.clone())
        );
        assert!(parse_anchor("7").is_err());
        assert!(parse_anchor("x:ab").is_err());
    }
}
