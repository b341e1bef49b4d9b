//! keyturn's key catalog: the data keys of an application, stored in the
//! target database **wrapped** under a key-encryption key (KEK), with a
//! staged lifecycle (pending → primary → decrypt-only → retired →
//! destroyed, plus a `compromised` flag).
//!
//! - [`lifecycle`]: the state machine, pure, with typed [`Refusal`]s;
//! - [`Catalog`]: the `keyturn_keys_catalog` table through
//!   [`keyturn_db::Database`], lifecycle commands as transactions,
//!   [`Catalog::load_keyring`] (one KMS call per DEK via
//!   [`keyturn_kms::DekCache`]), [`Catalog::self_test`] and
//!   [`Catalog::rotate_kek`];
//! - [`AppKeyring`]: what an application embeds: connect, load, refresh
//!   (on demand or on an interval, [`AppKeyring::spawn_refresh`]),
//!   self-test, and opt-in instance tracking
//!   ([`AppKeyring::track_instance`]) that `keyturn keys promote` checks;
//! - [`CatalogConfig`]: the `[catalog]` section of `keyturn.toml`.
//!
//! docs/CATALOG.md documents the table and the rules.
#![forbid(unsafe_code)]

mod app;
mod catalog;
mod config;
mod error;
mod instances;
pub mod lifecycle;

pub use app::{AppKeyring, RefreshError, RefreshHandle};
pub use catalog::{Catalog, CatalogEntry, KekRotation, Outcome, SelfTest, parse_algorithm};
pub use config::CatalogConfig;
pub use error::CatalogError;
pub use instances::{InstanceStatus, MAX_LABEL_LEN};
pub use keyturn_kms::KekConfig;
pub use lifecycle::{LifecycleState, Policy, Refusal};
