//! Errors of the database layer.

/// Why a database operation failed.
///
/// Each variant's message includes its cause's text, and no variant exposes
/// the cause as [`std::error::Error::source`]: printing the chain never says
/// the same thing twice. No driver type (sqlx, rusqlite) appears here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// A setting keyturn refuses before using it: an unsupported URL
    /// scheme, a table or column name that is not a plain identifier, an
    /// unset or malformed `${VAR}` in the URL.
    #[error("{0}")]
    Config(String),
    /// The driver refused the URL, or the connection could not be opened.
    #[error("cannot connect to {target}: {cause}")]
    Connect {
        /// The URL with any password removed.
        target: String,
        /// The driver's error.
        cause: DriverError,
    },
    /// A statement failed (`what` says which).
    #[error("{what}: {cause}")]
    Query {
        /// What was being done (`reading a checkpoint`, …).
        what: String,
        /// The driver's error.
        cause: DriverError,
    },
    /// The operation cannot go on, though no driver call failed: a result
    /// of unexpected shape or type, malformed stored data (packed cells, an
    /// instance's key ids), a value that cannot be written as it is (too
    /// large for MySQL's `max_allowed_packet`, new text that is not UTF-8),
    /// a catalog row changed by someone else, a released rotation lock, an
    /// audit row its builder refused.
    #[error("{0}")]
    Invalid(String),
}

/// A database driver's error, reduced to what keyturn needs: its message and
/// how to treat it.
#[derive(Debug, Clone)]
pub struct DriverError {
    message: String,
    kind: DriverErrorKind,
}

/// How keyturn treats a driver error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverErrorKind {
    /// Retrying after a pause may succeed: a dropped connection, a pool
    /// time-out, a serialization failure, a deadlock, a lock time-out, a
    /// busy SQLite database.
    Transient,
    /// A row lock was not granted within the lock time-out (PostgreSQL
    /// 55P03, MariaDB/MySQL 1205).
    LockTimeout,
    /// A unique constraint was violated.
    UniqueViolation,
    /// A `CREATE … IF NOT EXISTS` lost a race with another session creating
    /// the same object (see [`DbError::is_concurrent_create`]).
    ConcurrentCreate,
    /// Anything else.
    Other,
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DriverError {}

impl DriverError {
    /// How keyturn treats it.
    pub fn kind(&self) -> DriverErrorKind {
        self.kind
    }

    pub(crate) fn from_sqlx(e: &sqlx::Error) -> DriverError {
        let kind = match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Protocol(_) => DriverErrorKind::Transient,
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                if matches!(code.as_str(), "42P07" | "42710" | "1050") {
                    DriverErrorKind::ConcurrentCreate
                } else if matches!(code.as_str(), "55P03" | "1205")
                    || db.message().contains("Lock wait timeout")
                {
                    DriverErrorKind::LockTimeout
                } else if db.is_unique_violation() {
                    // PostgreSQL's concurrent CREATE TABLE IF NOT EXISTS can
                    // also end in a unique violation on pg_type (23505):
                    // callers that create tables check for both.
                    DriverErrorKind::UniqueViolation
                } else if backend_of(db.as_ref()).is_some_and(|b| {
                    let caps = b.capabilities();
                    caps.transient_codes.contains(&code.as_str())
                        || caps
                            .transient_messages
                            .iter()
                            .any(|m| db.message().contains(m))
                }) {
                    DriverErrorKind::Transient
                } else {
                    DriverErrorKind::Other
                }
            }
            _ => DriverErrorKind::Other,
        };
        DriverError {
            message: e.to_string(),
            kind,
        }
    }

    pub(crate) fn from_rusqlite(e: &rusqlite::Error) -> DriverError {
        let kind = match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                DriverErrorKind::Transient
            }
            Some(rusqlite::ErrorCode::ConstraintViolation) => DriverErrorKind::UniqueViolation,
            _ => DriverErrorKind::Other,
        };
        DriverError {
            message: e.to_string(),
            kind,
        }
    }
}

/// The server a database error came from: each backend says which of its
/// errors are transient ([`crate::Capabilities::transient_codes`]).
fn backend_of(e: &dyn sqlx::error::DatabaseError) -> Option<crate::Backend> {
    if e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        Some(crate::Backend::Postgres)
    } else if e
        .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .is_some()
    {
        Some(crate::Backend::MySql)
    } else if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        Some(crate::Backend::Sqlite)
    } else {
        None
    }
}

impl DbError {
    pub(crate) fn query(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DbError {
        let what = what.into();
        move |e| DbError::Query {
            what,
            cause: DriverError::from_sqlx(&e),
        }
    }

    /// A driver's error as the failure of `what`.
    pub(crate) fn at(what: impl Into<String>) -> impl FnOnce(DriverError) -> DbError {
        let what = what.into();
        move |cause| DbError::Query { what, cause }
    }

    pub(crate) fn sqlite(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> DbError {
        let what = what.into();
        move |e| DbError::Query {
            what,
            cause: DriverError::from_rusqlite(&e),
        }
    }

    pub(crate) fn connect(target: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DbError {
        let target = target.into();
        move |e| DbError::Connect {
            target,
            cause: DriverError::from_sqlx(&e),
        }
    }

    fn driver_kind(&self) -> Option<DriverErrorKind> {
        match self {
            DbError::Query { cause, .. } | DbError::Connect { cause, .. } => Some(cause.kind),
            _ => None,
        }
    }

    /// Whether retrying after a pause may succeed: dropped connections,
    /// pool time-outs, serialization failures, deadlocks, lock time-outs and
    /// a busy SQLite database.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.driver_kind(),
            Some(DriverErrorKind::Transient | DriverErrorKind::LockTimeout)
        )
    }

    /// Whether a row lock was not granted in time: another transaction
    /// holds it (a rotation splits the batch and comes back to the row).
    pub fn is_lock_timeout(&self) -> bool {
        self.driver_kind() == Some(DriverErrorKind::LockTimeout)
    }

    /// Whether a unique constraint was violated (another appender took the
    /// same audit `seq`).
    pub(crate) fn is_unique_violation(&self) -> bool {
        self.driver_kind() == Some(DriverErrorKind::UniqueViolation)
    }

    /// Whether a `CREATE TABLE IF NOT EXISTS` lost a race with another
    /// session creating the same table. PostgreSQL checks "not exists"
    /// before taking the catalog lock, so two concurrent creates can end in
    /// a unique violation on `pg_type` (23505), `duplicate_table` (42P07) or
    /// `duplicate_object` (42710);
    /// running the statement again then sees the table and does nothing.
    pub(crate) fn is_concurrent_create(&self) -> bool {
        matches!(self, DbError::Query { .. })
            && matches!(
                self.driver_kind(),
                Some(DriverErrorKind::ConcurrentCreate | DriverErrorKind::UniqueViolation)
            )
    }
}

/// Query parameters whose value is a secret (compared case-insensitively,
/// `-` read as `_`); any parameter whose name contains one of
/// [`SECRET_PARTS`] is redacted too.
const SECRET_PARAMS: &[&str] = &[
    "pass",
    "pwd",
    "key",
    "sslkey",
    "ssl_key",
    "apikey",
    "auth",
    "credentials",
    "sig",
    "signature",
];

/// Name fragments that make a query parameter secret: `password`,
/// `sslpassword`, `client_secret`, `access_token`, `passphrase`, …
const SECRET_PARTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "passphrase",
    "api_key",
];

/// Whether a URL query parameter holds a secret (see [`SECRET_PARAMS`]).
pub(crate) fn is_secret_param(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase().replace('-', "_");
    SECRET_PARAMS.contains(&n.as_str()) || SECRET_PARTS.iter().any(|p| n.contains(p))
}

/// A database URL for messages: the password of the userinfo and the value
/// of every password-like query parameter (`password`, `sslpassword`,
/// `secret`, `token`, `key`, … see [`is_secret_param`]) replaced by `***`.
///
/// Written for malformed URLs too (they end up in "cannot connect"
/// messages): the userinfo is everything up to the last `@` after the
/// scheme, so a password with a raw `@`, `/` or `#` is still hidden; when a
/// `?` comes before that `@` only the scheme is shown.
pub fn redact_url(url: &str) -> String {
    let (prefix, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let (userinfo, tail) = match rest.rfind('@') {
        // An `@` after a `?`: in a query value, or a password holding a raw
        // `?`; no telling which, so nothing past the scheme is shown.
        Some(at) if !prefix.is_empty() && rest[..at].contains('?') => {
            return format!("{prefix}***");
        }
        Some(at) if !prefix.is_empty() => (Some(&rest[..at]), &rest[at + 1..]),
        _ => (None, rest),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(prefix);
    if let Some(info) = userinfo {
        let user = info.split(':').next().unwrap_or_default();
        if user.contains(['/', '#']) {
            // No user name holds these raw: no telling where the user name
            // ends and a password begins, so hide all of it.
            out.push_str("***");
        } else if info.len() > user.len() {
            out.push_str(user);
            out.push_str(":***");
        } else {
            out.push_str(user);
        }
        out.push('@');
    }
    match tail.split_once('?') {
        Some((main, query)) => {
            out.push_str(main);
            out.push('?');
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let parts: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_secret_param(&percent_decoded(k)) => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&parts.join("&"));
            if fragment.is_some() {
                out.push_str("#***");
            }
        }
        None => out.push_str(tail),
    }
    out
}

/// `%XX` sequences decoded (for comparing parameter names); invalid ones
/// kept as they are.
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://bob:s3cret@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://demo.db"), "sqlite://demo.db");
        assert_eq!(
            redact_url("sqlite://demo.db?mode=rwc"),
            "sqlite://demo.db?mode=rwc"
        );
        assert_eq!(redact_url("postgres://bob@db/x"), "postgres://bob@db/x");
        assert_eq!(redact_url("mysql://:s3cret@db/x"), "mysql://:***@db/x");
    }

    #[test]
    fn redacts_password_like_query_parameters() {
        for (url, shown) in [
            (
                "postgres://db/x?user=app&password=s3cret&sslmode=require",
                "postgres://db/x?user=app&password=***&sslmode=require",
            ),
            ("mysql://db/x?PassWord=s3cret", "mysql://db/x?PassWord=***"),
            (
                "postgres://db/x?sslpassword=s3cret&application_name=k",
                "postgres://db/x?sslpassword=***&application_name=k",
            ),
            ("postgres://db/x?pwd=s3cret", "postgres://db/x?pwd=***"),
            ("postgres://db/x?pass=s3cret", "postgres://db/x?pass=***"),
            (
                "postgres://db/x?ssl-key=s3cret",
                "postgres://db/x?ssl-key=***",
            ),
            (
                "postgres://db/x?access_token=s3cret&api-key=s3cret",
                "postgres://db/x?access_token=***&api-key=***",
            ),
            (
                "postgres://db/x?pass%77ord=s3cret",
                "postgres://db/x?pass%77ord=***",
            ),
            (
                "postgres://u:s3cret@db/x?client_secret=s3cret#s3cret",
                "postgres://u:***@db/x?client_secret=***#***",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn malformed_urls_hide_the_whole_password() {
        for url in [
            "postgres://u:p@ss/w#rd@127.0.0.1/db",
            "postgres://u:s3cret/x@h/db",
            "postgres://u:s3c?ret@h/db",
            "mysql://h/db?password=s3c@ret",
            "postgres://h/db?password=s3cret&x=a@b",
        ] {
            let r = redact_url(url);
            for secret in ["s3c", "ret", "p@ss", "w#rd"] {
                assert!(!r.contains(secret), "{url} -> {r}");
            }
        }
        assert_eq!(
            redact_url("postgres://u:p@ss/w#rd@127.0.0.1/db"),
            "postgres://u:***@127.0.0.1/db"
        );
    }

    #[test]
    fn secret_parameter_names() {
        for n in [
            "password",
            "PASSWORD",
            "sslpassword",
            "pass",
            "pwd",
            "secret",
            "token",
            "key",
            "sslkey",
            "ssl-key",
            "passphrase",
            "auth_token",
        ] {
            assert!(is_secret_param(n), "{n}");
        }
        for n in [
            "user",
            "sslmode",
            "application_name",
            "dbname",
            "host",
            "charset",
            "mode",
            "statement-cache-capacity",
        ] {
            assert!(!is_secret_param(n), "{n}");
        }
    }
}

#[cfg(test)]
mod driver_error_tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn driver_errors_are_in_the_message_never_a_source() {
        let e = DbError::query("reading a batch")(sqlx::Error::PoolTimedOut);
        assert!(e.source().is_none());
        assert!(e.is_transient());
        assert!(e.to_string().starts_with("reading a batch: "), "{e}");
        let e = DbError::sqlite("writing")(rusqlite::Error::InvalidQuery);
        assert!(e.source().is_none());
        assert!(!e.is_transient());
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(DbError::sqlite("writing")(busy).is_transient());
    }
}
