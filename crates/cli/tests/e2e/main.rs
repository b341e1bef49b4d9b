//! keyturn end to end: the real `keyturn` binary against real databases
//! (SQLite, PostgreSQL, MariaDB), KMS servers and the real libraries'
//! values, in one test binary with a module per theme. The harness is the
//! `keyturn-test-support` crate.
//!
//! Run one theme, or one backend of it:
//!
//! ```text
//! cargo test -p keyturn --test e2e engine::
//! cargo test -p keyturn --test e2e engine::postgres::
//! ```

/// Declares each scenario once per backend: `<theme>::sqlite::<name>`,
/// `<theme>::postgres::<name>`, `<theme>::mariadb::<name>`.
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { crate::common::run(crate::common::Kind::Sqlite, stringify!($name), super::$name) } )*
        }
        mod postgres {
            $( #[test] fn $name() { crate::common::run(crate::common::Kind::Postgres, stringify!($name), super::$name) } )*
        }
        mod mariadb {
            $( #[test] fn $name() { crate::common::run(crate::common::Kind::MariaDb, stringify!($name), super::$name) } )*
        }
    };
}

/// The harness, with this package's `keyturn` binary.
mod common {
    pub use keyturn_test_support::*;
    use std::future::Future;

    /// [`keyturn_test_support::run`] with the `keyturn` binary built for
    /// these tests.
    pub fn run<F, Fut>(kind: Kind, scenario: &'static str, f: F)
    where
        F: FnOnce(TestDb) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        keyturn_test_support::use_binary(env!("CARGO_BIN_EXE_keyturn"));
        keyturn_test_support::run(kind, scenario, f)
    }
}

mod catalog;
mod compliance;
mod config;
mod demo;
mod engine;
mod envelope;
mod generated;
mod instances;
mod json;
mod kek;
mod kek_million;
mod kms_aws;
mod kms_envelope;
mod kms_transit;
mod lock;
mod metrics;
mod odd_rows;
mod replicas;
mod row_locks;
mod runs;
mod terminal;
