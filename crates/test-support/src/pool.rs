//! One sqlx pool over whichever database a test or benchmark talks to.

use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

/// A pool of one of the three drivers.
#[derive(Clone, Debug)]
pub enum Pool {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Pg(PgPool),
    /// MariaDB / MySQL.
    My(MySqlPool),
}

/// Runs the same code against whichever driver's pool: `$p` is bound to
/// the concrete pool (the drivers' types share method names, not a usable
/// common bound).
#[macro_export]
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::Pool::Sqlite($p) => $body,
            $crate::Pool::Pg($p) => $body,
            $crate::Pool::My($p) => $body,
        }
    };
}
