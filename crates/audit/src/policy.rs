//! The `[policy]` section: how old a key may get before its data must be
//! rotated. Read by `keyturn due` and `keyturn report` (crate
//! this crate); optional, with defaults.
//!
//! ```toml
//! [policy]
//! max_key_age_days = 90      # default 90
//! warn_days = 14             # "due soon" this many days before; default 14
//!
//! [[policy.column]]          # stricter or looser per column
//! table = "records"
//! column = "cjis_data"
//! max_key_age_days = 365
//!
//! [[policy.key]]             # keys in use before keyturn's audit trail began
//! id = "k1"
//! since = "2025-01-15"       # date (UTC) or RFC 3339 time
//! ```

use crate::AuditError;
use serde::Deserialize;

/// Default `max_key_age_days`: 90.
pub const DEFAULT_MAX_KEY_AGE_DAYS: u32 = 90;
/// Default `warn_days`: 14.
pub const DEFAULT_WARN_DAYS: u32 = 14;
/// Ten years: anything longer is a typo.
const MAX_DAYS: u32 = 3660;

/// The `[policy]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// How many days a key may be in use in a column before its data is overdue for rotation
    /// (default 90).
    #[serde(default = "default_max_age")]
    pub max_key_age_days: u32,
    /// How many days before that the column is "due soon" (default 14).
    #[serde(default = "default_warn")]
    pub warn_days: u32,
    /// Per-column overrides.
    #[serde(rename = "column", default)]
    pub columns: Vec<ColumnPolicy>,
    /// Declared start dates of keys (until the key catalog records them).
    #[serde(rename = "key", default)]
    pub keys: Vec<KeySince>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            max_key_age_days: DEFAULT_MAX_KEY_AGE_DAYS,
            warn_days: DEFAULT_WARN_DAYS,
            columns: Vec::new(),
            keys: Vec::new(),
        }
    }
}

fn default_max_age() -> u32 {
    DEFAULT_MAX_KEY_AGE_DAYS
}
fn default_warn() -> u32 {
    DEFAULT_WARN_DAYS
}

/// A `[[policy.column]]` override of the limits for one column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnPolicy {
    /// The column's table.
    pub table: String,
    /// The column's name.
    pub column: String,
    /// Its `max_key_age_days`; `None` uses the section's.
    pub max_key_age_days: Option<u32>,
    /// Its `warn_days`; `None` uses the section's.
    pub warn_days: Option<u32>,
}

/// A `[[policy.key]]` entry: when a key came into use, for keys older than the audit trail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySince {
    /// The key id.
    pub id: String,
    /// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
    pub since: String,
}

/// The limits that apply to one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnLimits {
    /// How many days a key may be in use before the data is overdue.
    pub max_key_age_days: u32,
    /// How many days before that it is due soon.
    pub warn_days: u32,
}

impl PolicyConfig {
    /// The limits for `table.column`: its override, else the defaults.
    pub fn limits_for(&self, table: &str, column: &str) -> ColumnLimits {
        let o = self
            .columns
            .iter()
            .find(|c| c.table == table && c.column == column);
        let max = o
            .and_then(|c| c.max_key_age_days)
            .unwrap_or(self.max_key_age_days);
        let warn = o.and_then(|c| c.warn_days).unwrap_or(self.warn_days);
        ColumnLimits {
            max_key_age_days: max,
            // An override may shorten the age below the default window.
            warn_days: warn.min(max),
        }
    }

    /// Checks the section; `configured(table, column)` says whether a
    /// column is one of the config's targets.
    pub fn validate(&self, configured: impl Fn(&str, &str) -> bool) -> Result<(), AuditError> {
        let bad = |key: String, why: String| Err(AuditError::Invalid(format!("{key}: {why}")));
        let days = |key: String, v: u32| {
            if (1..=MAX_DAYS).contains(&v) {
                Ok(())
            } else {
                bad(key, format!("{v} is outside 1..={MAX_DAYS}"))
            }
        };
        days("policy.max_key_age_days".into(), self.max_key_age_days)?;
        if self.warn_days >= self.max_key_age_days {
            return bad(
                "policy.warn_days".into(),
                format!(
                    "{} must be less than max_key_age_days ({})",
                    self.warn_days, self.max_key_age_days
                ),
            );
        }
        for (i, c) in self.columns.iter().enumerate() {
            let key = format!("policy.column[{i}]");
            if !configured(&c.table, &c.column) {
                return bad(
                    key,
                    if keyturn_format::is_showable(&c.table)
                        && keyturn_format::is_showable(&c.column)
                    {
                        format!("{}.{} is not a configured target column", c.table, c.column)
                    } else {
                        "not a configured target column (the value is not shown)".into()
                    },
                );
            }
            if self
                .columns
                .iter()
                .filter(|o| o.table == c.table && o.column == c.column)
                .count()
                > 1
            {
                return bad(key, format!("{}.{} is listed twice", c.table, c.column));
            }
            if let Some(v) = c.max_key_age_days {
                days(format!("{key}.max_key_age_days"), v)?;
            }
            if let Some(w) = c.warn_days {
                let max = c.max_key_age_days.unwrap_or(self.max_key_age_days);
                if w >= max {
                    return bad(
                        format!("{key}.warn_days"),
                        format!("{w} must be less than max_key_age_days ({max})"),
                    );
                }
            }
        }
        for (i, k) in self.keys.iter().enumerate() {
            let key = format!("policy.key[{i}]");
            if keyturn_format::KeyId::new(&k.id).is_err() {
                return bad(format!("{key}.id"), format!("{:?} is not a key id", k.id));
            }
            if self.keys.iter().filter(|o| o.id == k.id).count() > 1 {
                return bad(format!("{key}.id"), format!("{} is listed twice", k.id));
            }
            if !looks_like_date(&k.since) {
                return bad(
                    format!("{key}.since"),
                    format!(
                        "{:?} is not YYYY-MM-DD or an RFC 3339 time such as 2025-01-15T09:00:00Z",
                        k.since
                    ),
                );
            }
        }
        Ok(())
    }
}

/// A cheap shape check (the exact parse happens where dates are used):
/// `YYYY-MM-DD`, optionally followed by `T…` and a zone.
fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    let date_ok = b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit);
    date_ok && (b.len() == 10 || (b.len() >= 20 && (b[10] == b'T' || b[10] == b't')))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy of a config that targets patients.phone and patients.cjis.
    fn parse(text: &str) -> Result<PolicyConfig, String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            #[serde(default)]
            policy: PolicyConfig,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        doc.policy
            .validate(|t, c| t == "patients" && (c == "phone" || c == "cjis"))
            .map_err(|e| e.to_string())?;
        Ok(doc.policy)
    }

    const BASE: &str = "";

    #[test]
    fn defaults_without_a_policy_section() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.max_key_age_days, 90);
        assert_eq!(c.warn_days, 14);
        let l = c.limits_for("patients", "phone");
        assert_eq!((l.max_key_age_days, l.warn_days), (90, 14));
    }

    #[test]
    fn column_overrides_and_key_dates() {
        let c = parse(&format!(
            "{BASE}\n[policy]\nmax_key_age_days = 30\nwarn_days = 7\n\
             [[policy.column]]\ntable = \"patients\"\ncolumn = \"cjis\"\nmax_key_age_days = 365\n\
             [[policy.key]]\nid = \"k1\"\nsince = \"2024-02-29\"\n"
        ))
        .unwrap();
        let l = c.limits_for("patients", "cjis");
        assert_eq!((l.max_key_age_days, l.warn_days), (365, 7));
        let l = c.limits_for("patients", "phone");
        assert_eq!((l.max_key_age_days, l.warn_days), (30, 7));
        assert_eq!(c.keys[0].since, "2024-02-29");
    }

    #[test]
    fn rejects_bad_policies_with_the_exact_key() {
        let cases = [
            (
                "[policy]\nmax_key_age_days = 0\n",
                "policy.max_key_age_days",
            ),
            ("[policy]\nwarn_days = 90\n", "policy.warn_days"),
            (
                "[[policy.column]]\ntable = \"patients\"\ncolumn = \"nope\"\nmax_key_age_days = 5\n",
                "policy.column[0]",
            ),
            (
                "[[policy.column]]\ntable = \"patients\"\ncolumn = \"cjis\"\nmax_key_age_days = 10\nwarn_days = 10\n",
                "policy.column[0].warn_days",
            ),
            (
                "[[policy.key]]\nid = \"k1\"\nsince = \"15/01/2025\"\n",
                "policy.key[0].since",
            ),
            ("[policy]\nmax_age = 5\n", "max_age"),
        ];
        for (extra, want) in cases {
            let e = parse(&format!("{BASE}\n{extra}")).unwrap_err().to_string();
            assert!(e.contains(want), "{extra:?}: {e}");
        }
    }
}
