//! keyturn's one timestamp format: UTC, RFC 3339 with milliseconds and a
//! `Z` (`2025-03-01T10:00:00.000Z`). Fixed width, so text order is time
//! order. Every record keyturn writes (runs, checkpoints, locks, bad rows,
//! the audit trail, the key catalog, instances) uses it.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// The current time in UTC.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// `t` in keyturn's format.
pub fn format(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// The current time in keyturn's format.
pub fn now_text() -> String {
    format(now())
}

/// Parses any RFC 3339 time (older records were written without
/// milliseconds), converted to UTC.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .ok()
        .map(|t| t.to_offset(UtcOffset::UTC))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn fixed_width_utc_with_milliseconds() {
        let t = datetime!(2025-03-01 10:00:00.5 +02:00);
        assert_eq!(format(t), "2025-03-01T08:00:00.500Z");
        assert_eq!(parse("2025-03-01T08:00:00.500Z"), Some(t));
        assert_eq!(
            parse("2025-03-01T08:00:00Z").map(format).as_deref(),
            Some("2025-03-01T08:00:00.000Z")
        );
        assert_eq!(now_text().len(), "2025-03-01T08:00:00.000Z".len());
    }
}
