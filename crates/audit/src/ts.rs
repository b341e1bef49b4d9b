//! Times: stored and compared in UTC, written as RFC 3339 with milliseconds.
//!
//! Parsing (`--since`, `--as-of` style inputs) and spans go through `jiff`;
//! the rest of the workspace keeps `time`'s [`OffsetDateTime`], converted at
//! this boundary by Unix nanoseconds (exact both ways).

use crate::AuditError;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ZonedDateTime};
use time::OffsetDateTime;

pub use keyturn_db::ts::{format, now};

fn to_jiff(t: OffsetDateTime) -> Result<Timestamp, AuditError> {
    Timestamp::from_nanosecond(t.unix_timestamp_nanos())
        .map_err(|e| AuditError::Invalid(format!("time out of range: {e}")))
}

fn from_jiff(t: Timestamp) -> Result<OffsetDateTime, AuditError> {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond())
        .map_err(|e| AuditError::Invalid(format!("time out of range: {e}")))
}

fn utc(t: OffsetDateTime) -> Result<ZonedDateTime, AuditError> {
    Ok(to_jiff(t)?.to_zoned_datetime(TimeZone::UTC))
}

/// `2025-03-01` (the UTC date).
pub fn format_date(t: OffsetDateTime) -> String {
    match utc(t) {
        Ok(z) => z.date().to_string(),
        // Outside jiff's range (years beyond ±9999): `time` says it.
        Err(_) => t.date().to_string(),
    }
}

/// Parses an RFC 3339 time (any offset, converted to UTC) or a date
/// `YYYY-MM-DD` (midnight UTC).
pub fn parse(s: &str) -> Result<OffsetDateTime, AuditError> {
    let s = s.trim();
    let bad = || {
        AuditError::Invalid(format!(
            "{s:?} is not a date (YYYY-MM-DD) or an RFC 3339 time (2025-03-01T10:00:00Z)"
        ))
    };
    // A time needs its offset (`Z`, `+02:00`): a local time names no instant.
    if s.contains(['T', 't', ' ']) {
        let t: Timestamp = s.parse().map_err(|_| bad())?;
        return from_jiff(t);
    }
    let d = jiff::fmt::strtime::parse("%Y-%m-%d", s)
        .and_then(|p| p.to_date())
        .map_err(|_| bad())?;
    let midnight = d
        .to_zoned_datetime(TimeZone::UTC)
        .map_err(|_| bad())?
        .timestamp();
    from_jiff(midnight)
}

/// `--since`: a date, an RFC 3339 time, or a span back from `now` such as
/// `30d`, `12h`, `2w`, `3mo`, `5y`, `1y 6mo` or ISO 8601 `P1Y6M`. Years
/// and months are calendar units, counted back in UTC (5y before
/// 2026-12-06 is 2021-12-06; a day that month lacks becomes its last day).
pub fn parse_since(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime, AuditError> {
    let t = s.trim();
    if t.starts_with(|c: char| c.is_ascii_digit()) && t.len() > 4 && t.as_bytes()[4] == b'-' {
        return parse(t);
    }
    if t.starts_with(['P', 'p']) || t.starts_with(|c: char| c.is_ascii_digit()) {
        let span: Span = t.parse().map_err(|_| {
            AuditError::Invalid(format!(
                "{s:?}: use a date, an RFC 3339 time, or a span like 30d, 12h, 2w, 3mo, 5y"
            ))
        })?;
        let back = utc(now)?
            .checked_sub(span.abs())
            .map_err(|_| AuditError::Invalid(format!("{s:?}: too far back")))?;
        return from_jiff(back.timestamp());
    }
    parse(t)
}

/// Whole days from `a` to `b` (rounded down; negative if `b` is earlier).
pub fn whole_days(a: OffsetDateTime, b: OffsetDateTime) -> i64 {
    (b - a).whole_days()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_fixed_width_utc() {
        assert_eq!(
            format(datetime!(2024-02-29 23:59:59.5 +02:00)),
            "2024-02-29T21:59:59.500Z"
        );
        assert_eq!(
            format(datetime!(2025-01-01 0:00 UTC)),
            "2025-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn parses_dates_times_and_offsets_into_utc() {
        assert_eq!(parse("2024-02-29").unwrap(), datetime!(2024-02-29 0:00 UTC));
        assert_eq!(
            parse("2024-03-01T01:30:00+02:00").unwrap(),
            datetime!(2024-02-29 23:30 UTC)
        );
        assert!(parse("2023-02-29").is_err());
        assert!(parse("yesterday").is_err());
    }

    #[test]
    fn parses_relative_spans() {
        let now = datetime!(2025-03-01 12:00 UTC);
        assert_eq!(
            parse_since("30d", now).unwrap(),
            datetime!(2025-01-30 12:00 UTC)
        );
        assert_eq!(
            parse_since("2w", now).unwrap(),
            datetime!(2025-02-15 12:00 UTC)
        );
        assert_eq!(
            parse_since("12h", now).unwrap(),
            datetime!(2025-03-01 0:00 UTC)
        );
        assert_eq!(
            parse_since("90m", now).unwrap(),
            datetime!(2025-03-01 10:30 UTC)
        );
        assert_eq!(
            parse_since("90 days", now).unwrap(),
            datetime!(2024-12-01 12:00 UTC)
        );
        assert_eq!(
            parse_since("2025-02-01", now).unwrap(),
            datetime!(2025-02-01 0:00 UTC)
        );
        for bad in ["3x", "d", "30", "", "-", "yesterday", "30d and more"] {
            let e = parse_since(bad, now).unwrap_err().to_string();
            assert!(
                e.contains("span like 30d") || e.contains("is not a date"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn years_and_months_are_calendar_units_in_utc() {
        let now = datetime!(2026-12-06 9:30 UTC);
        assert_eq!(
            parse_since("5y", now).unwrap(),
            datetime!(2021-12-06 9:30 UTC)
        );
        assert_eq!(
            parse_since("3mo", now).unwrap(),
            datetime!(2026-09-06 9:30 UTC)
        );
        assert_eq!(
            parse_since("1y 6mo", now).unwrap(),
            datetime!(2025-06-06 9:30 UTC)
        );
        assert_eq!(
            parse_since("P1Y6M", now).unwrap(),
            datetime!(2025-06-06 9:30 UTC)
        );
        // A leap day back a year: the last day of that February.
        assert_eq!(
            parse_since("1y", datetime!(2024-02-29 0:00 UTC)).unwrap(),
            datetime!(2023-02-28 0:00 UTC)
        );
        // A month back from 31 March: 28 February (2026 is no leap year).
        assert_eq!(
            parse_since("1mo", datetime!(2026-03-31 0:00 UTC)).unwrap(),
            datetime!(2026-02-28 0:00 UTC)
        );
    }

    #[test]
    fn dates_format_in_utc() {
        assert_eq!(format_date(datetime!(2025-03-01 1:00 +02:00)), "2025-02-28");
        assert_eq!(format_date(datetime!(2025-03-01 23:59 UTC)), "2025-03-01");
    }
}
