//! Creating keyturn's own tables only when they are missing.
//!
//! `CREATE TABLE IF NOT EXISTS` needs the CREATE privilege even when the
//! table exists: PostgreSQL and MySQL/MariaDB check the privilege before
//! looking. A least-privilege login (docs/OPERATIONS.md) may read and write
//! keyturn's tables once they exist but not create tables, so each table is
//! looked up first and created only when it is missing.

use crate::sql::Dialect;

/// The table a `CREATE TABLE [IF NOT EXISTS] name (…)` statement creates.
pub(crate) fn created_table(sql: &str) -> Option<&str> {
    let rest = sql.trim_start();
    let rest = strip_word(rest, "CREATE")?;
    let rest = strip_word(rest, "TABLE")?;
    let rest = match strip_word(rest, "IF") {
        Some(r) => strip_word(strip_word(r, "NOT")?, "EXISTS")?,
        None => rest,
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

fn strip_word<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let head = s.get(..word.len())?;
    let tail = &s[word.len()..];
    (head.eq_ignore_ascii_case(word) && tail.starts_with(char::is_whitespace))
        .then(|| tail.trim_start())
}

/// One row, one column: 1 when the table (bound as the only parameter)
/// exists where an unqualified name resolves, else 0. Needs no privilege
/// on the table on PostgreSQL and SQLite; on MySQL/MariaDB a table the
/// login has no privilege on looks missing (and creating it then fails
/// with the server's own "command denied" message).
pub(crate) fn exists_sql(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => {
            "SELECT COUNT(*) FROM (SELECT to_regclass($1) AS r) t WHERE r IS NOT NULL"
        }
        Dialect::MySql => {
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?"
        }
        Dialect::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_created_table() {
        assert_eq!(
            created_table("CREATE TABLE IF NOT EXISTS keyturn_runs (\n run_id TEXT)"),
            Some("keyturn_runs")
        );
        assert_eq!(
            created_table("  create table keyturn_lock(name TEXT)"),
            Some("keyturn_lock")
        );
        assert_eq!(
            created_table("CREATE TABLE IF NOT EXISTS app.keyturn_audit (seq BIGINT)"),
            Some("app.keyturn_audit")
        );
        assert_eq!(created_table("CREATE INDEX x ON t (a)"), None);
        assert_eq!(created_table("CREATE TABLEkeyturn (a INT)"), None);
    }

    /// Every statement keyturn creates its tables with names its table.
    #[test]
    fn every_create_statement_is_recognized() {
        for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
            let mut stmts = crate::meta::create_tables(d);
            stmts.push(crate::audit::create_table(d));
            stmts.push(crate::catalog::create_catalog_table(d));
            stmts.push(crate::instances::create_table(d));
            for s in stmts {
                let name = created_table(&s).unwrap_or_else(|| panic!("{s}"));
                assert!(name.starts_with("keyturn_"), "{s}");
            }
        }
    }
}
