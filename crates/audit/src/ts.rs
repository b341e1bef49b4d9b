//! Times: stored and compared in UTC, written as RFC 3339 with milliseconds.

use crate::AuditError;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, UtcOffset};

pub use keyturn_db::ts::{format, now};

/// `2025-03-01` (the UTC date).
pub fn format_date(t: OffsetDateTime) -> String {
    let d = t.to_offset(UtcOffset::UTC).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Parses an RFC 3339 time (any offset, converted to UTC) or a date
/// `YYYY-MM-DD` (midnight UTC).
pub fn parse(s: &str) -> Result<OffsetDateTime, AuditError> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.to_offset(UtcOffset::UTC));
    }
    let date_fmt = format_description!("[year]-[month]-[day]");
    if let Ok(d) = Date::parse(s, &date_fmt) {
        return Ok(d.midnight().assume_utc());
    }
    Err(AuditError::Invalid(format!(
        "{s:?} is not a date (YYYY-MM-DD) or an RFC 3339 time (2025-03-01T10:00:00Z)"
    )))
}

/// `--since`: a date, an RFC 3339 time, or a span back from `now` such as
/// `30d`, `12h` or `2w`.
pub fn parse_since(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime, AuditError> {
    let t = s.trim();
    if let Some(unit) = t.chars().last() {
        let num = &t[..t.len() - unit.len_utf8()];
        if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
            let n: i64 = num
                .parse()
                .map_err(|_| AuditError::Invalid(format!("{s:?}: number too large")))?;
            let span = match unit {
                'd' => Duration::days(n),
                'h' => Duration::hours(n),
                'w' => Duration::weeks(n),
                'm' => Duration::minutes(n),
                _ => {
                    return Err(AuditError::Invalid(format!(
                        "{s:?}: use a date, an RFC 3339 time, or a span like 30d, 12h, 2w"
                    )));
                }
            };
            return Ok(now - span);
        }
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
        assert!(parse_since("3y", now).is_err());
    }
}
