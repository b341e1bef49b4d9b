//! Errors of the database layer.

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("{0}")]
    Config(String),
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The URL with any password removed.
        target: String,
        source: sqlx::Error,
    },
    #[error("{what}: {source}")]
    Query { what: String, source: sqlx::Error },
    /// A failure on SQLite's direct connections (batch reads and writes).
    #[error("{what}: {source}")]
    Sqlite {
        what: String,
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl DbError {
    pub(crate) fn query(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DbError {
        let what = what.into();
        move |source| DbError::Query { what, source }
    }

    /// Whether retrying after a pause may succeed: dropped connections,
    /// pool time-outs, serialization failures, deadlocks, lock time-outs and
    /// a busy SQLite database.
    pub fn is_transient(&self) -> bool {
        let source = match self {
            DbError::Query { source, .. } | DbError::Connect { source, .. } => source,
            DbError::Sqlite { source, .. } => {
                return matches!(
                    source.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                );
            }
            _ => return false,
        };
        match source {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                matches!(
                    code.as_str(),
                    // PostgreSQL: serialization failure, deadlock, admin shutdown, crash shutdown, cannot connect now
                    "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "08000" | "08003" | "08006"
                    // SQLite: BUSY, LOCKED (extended codes included)
                    | "5" | "6" | "261" | "517" | "262"
                ) || db.message().contains("database is locked")
                    || db.message().contains("Lock wait timeout")
                    || db.message().contains("Deadlock found")
            }
            _ => false,
        }
    }
}

impl DbError {
    /// Whether a `CREATE TABLE IF NOT EXISTS` lost a race with another
    /// session creating the same table. PostgreSQL checks "not exists"
    /// before taking the catalog lock, so two concurrent creates can end in
    /// a unique violation on `pg_type` (23505), `duplicate_table` (42P07) or
    /// `duplicate_object` (42710);
    /// running the statement again then sees the table and does nothing.
    pub(crate) fn is_concurrent_create(&self) -> bool {
        match self {
            DbError::Query {
                source: sqlx::Error::Database(db),
                ..
            } => matches!(
                db.code().as_deref(),
                Some("23505" | "42P07" | "42710" | "1050")
            ),
            _ => false,
        }
    }
}

/// Removes the password from a database URL for messages.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.rsplit_once('@')
    {
        let user = creds.split(':').next().unwrap_or_default();
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
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
    }
}
