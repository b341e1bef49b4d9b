//! The `[database]` section of keyturn.toml.
//!
//! ```toml
//! [database]
//! # ${VAR} is read from the environment (percent-encoded inside the
//! # userinfo, so a password such as p@ss/w#rd works as it is).
//! url = "postgres://app:${DB_PASSWORD}@127.0.0.1:5432/app"   # or mysql://…, sqlite://path
//! ```

use crate::DbError;
use serde::Deserialize;
use std::path::Path;

/// The `[database]` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path`, `postgres://…` or `mysql://…`, with `${VAR}`
    /// interpolation.
    pub url: String,
}

/// The URL with its password and password-like parameters hidden
/// ([`crate::redact_url`]): after interpolation it may hold a secret.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &crate::redact_url(&self.url))
            .finish()
    }
}

impl DatabaseConfig {
    /// `${VAR}` replaced by the environment's values (`key` names the
    /// setting in messages).
    pub fn interpolated(mut self, key: &str) -> Result<DatabaseConfig, DbError> {
        self.url = interpolate_url(&self.url, key)?;
        Ok(self)
    }

    /// A relative SQLite path taken against `base` (the config file's
    /// folder); other URLs unchanged.
    pub fn relative_to(mut self, base: &Path) -> DatabaseConfig {
        if let Some(url) = sqlite_relative_to(&self.url, base) {
            self.url = url;
        }
        self
    }
}

/// A relative SQLite database path made relative to `base`; `None` when
/// there is nothing to change (not SQLite, in memory, absolute, empty).
fn sqlite_relative_to(url: &str, base: &Path) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let in_memory = query.is_some_and(|q| q.split('&').any(|kv| kv == "mode=memory"));
    if path.is_empty() || path == ":memory:" || in_memory || Path::new(path).is_absolute() {
        return None;
    }
    // sqlx percent-decodes the path: the folder's own `%`, `?` and `#`
    // must stay literal.
    let mut folder = String::new();
    for c in base.display().to_string().chars() {
        match c {
            '%' => folder.push_str("%25"),
            '?' => folder.push_str("%3F"),
            '#' => folder.push_str("%23"),
            c => folder.push(c),
        }
    }
    let mut out = format!("sqlite://{folder}/{path}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// Characters of a substituted value kept as they are in a URL's userinfo:
/// RFC 3986's unreserved ones; everything else is percent-encoded.
const USERINFO_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Replaces `${VAR}` with the environment variable's value; in the URL's
/// userinfo (between `scheme://` and the `@` that ends the authority) the
/// value is percent-encoded, so a password such as `p@ss/w#rd` works as it
/// is. Elsewhere (host, path, query) it is inserted as it is.
fn interpolate_url(s: &str, key: &str) -> Result<String, DbError> {
    interpolate_url_from(s, key, |name| std::env::var(name).ok())
}

/// [`interpolate_url`] with the variables from `lookup`.
fn interpolate_url_from(
    s: &str,
    key: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, DbError> {
    let userinfo = userinfo_span(s);
    interpolate(s, key, lookup, |at, value, out| {
        if userinfo.as_ref().is_some_and(|r| r.contains(&at)) {
            out.extend(percent_encoding::utf8_percent_encode(
                value,
                USERINFO_ENCODE,
            ));
        } else {
            out.push_str(value);
        }
    })
}

/// Where the userinfo of a URL template lies (byte offsets), `${…}`
/// placeholders skipped over: from after `://` to the `@` that comes before
/// any `/`, `?` or `#`.
fn userinfo_span(s: &str) -> Option<std::ops::Range<usize>> {
    let start = s.find("://")? + 3;
    let b = s.as_bytes();
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'$' if b.get(i + 1) == Some(&b'{') => {
                i += s[i..].find('}')? + 1;
                continue;
            }
            b'@' => return Some(start..i),
            b'/' | b'?' | b'#' => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Replaces `${VAR}` with the environment variable's value, handed to
/// `put` with the placeholder's byte offset in `s`.
fn interpolate(
    s: &str,
    key: &str,
    lookup: impl Fn(&str) -> Option<String>,
    put: impl Fn(usize, &str, &mut String),
) -> Result<String, DbError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let at = s.len() - rest.len() + start;
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| DbError::Config(format!("{key}: unclosed ${{ in the value")))?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(DbError::Config(format!(
                "{key}: ${{{}}} is not a valid variable name",
                if keyturn_format::is_showable(name) {
                    name
                } else {
                    "…"
                }
            )));
        }
        let val = zeroize::Zeroizing::new(lookup(name).ok_or_else(|| {
            DbError::Config(format!("{key}: environment variable {name} is not set"))
        })?);
        put(at, &val, &mut out);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_that_stay_as_they_are() {
        let base = Path::new("/etc/kt");
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
            "sqlite://x.db?mode=memory&cache=shared",
            "sqlite:///var/lib/x.db",
            "sqlite:///var/lib/x.db?mode=ro",
            "postgres://h/db",
        ] {
            assert_eq!(sqlite_relative_to(url, base), None, "{url}");
        }
        assert_eq!(
            sqlite_relative_to("sqlite:x.db", base).as_deref(),
            Some("sqlite:///etc/kt/x.db")
        );
        assert_eq!(
            sqlite_relative_to("sqlite://d/x.db", Path::new("/a b/100%?#")).as_deref(),
            Some("sqlite:///a b/100%25%3F%23/d/x.db")
        );
    }

    #[test]
    fn debug_hides_the_database_password() {
        let c = DatabaseConfig {
            url: "postgres://u:s3cret@h/db?sslpassword=s3cret".into(),
        };
        let d = format!("{c:?}");
        assert!(d.contains("postgres://u:***@h/db?sslpassword=***"), "{d}");
        assert!(!d.contains("s3cret"), "{d}");
    }

    #[test]
    fn variables_in_the_userinfo_are_percent_encoded() {
        let env = |name: &str| (name == "KEYTURN_TEST_URL_PW").then(|| "p@ss/w#rd:x%".to_owned());
        let u = |t: &str| interpolate_url_from(t, "database.url", env).unwrap();
        assert_eq!(
            u("postgres://app:${KEYTURN_TEST_URL_PW}@127.0.0.1/db"),
            "postgres://app:p%40ss%2Fw%23rd%3Ax%25@127.0.0.1/db"
        );
        assert_eq!(
            u("mysql://${KEYTURN_TEST_URL_PW}@h/db"),
            "mysql://p%40ss%2Fw%23rd%3Ax%25@h/db"
        );
        // Outside the userinfo: as it is.
        assert_eq!(
            u("postgres://h/db?application_name=${KEYTURN_TEST_URL_PW}"),
            "postgres://h/db?application_name=p@ss/w#rd:x%"
        );
        assert_eq!(
            u("postgres://u@h/${KEYTURN_TEST_URL_PW}"),
            "postgres://u@h/p@ss/w#rd:x%"
        );
        assert_eq!(userinfo_span("postgres://a:${X}@h"), Some(11..17));
        assert_eq!(userinfo_span("postgres://h/x@y"), None);
    }

    #[test]
    fn interpolates_env_and_reports_missing() {
        let e = interpolate_url("postgres://u:${KEYTURN_SURELY_UNSET}@h/db", "database.url")
            .unwrap_err()
            .to_string();
        assert!(e.contains("KEYTURN_SURELY_UNSET is not set"), "{e}");
        // PATH is set in every test environment.
        let v = interpolate_url("a${PATH}b", "x").unwrap();
        assert!(v.starts_with('a') && v.ends_with('b') && v.len() > 2);
    }
}
