//! keyturn's test harness, shared by the integration suites of every crate
//! (one copy instead of a module compiled into each test binary):
//!
//! - [`db`]: one throw-away database per test on SQLite, PostgreSQL and
//!   MariaDB, test tables, data, keys and configs, and the real `keyturn`
//!   binary run against them;
//! - [`pool`]: one sqlx pool over whichever of the three servers, with
//!   [`on_pool!`] to run the same code on each;
//! - [`kms`]: the moto (AWS KMS) and OpenBao (transit) servers on 127.0.0.1
//!   that the KMS tests run against.
#![forbid(unsafe_code)]
#![allow(missing_docs)]

pub mod db;
pub mod kms;
pub mod pool;

pub use db::*;
pub use pool::Pool;
