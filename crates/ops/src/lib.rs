//! keyturn's operations layer, between the engine and the command line: the
//! config file composed from each crate's section ([`config`]), and the
//! operations a program runs, whether it is the `keyturn` binary or an
//! application embedding keyturn.
#![forbid(unsafe_code)]

pub mod bad_rows;
pub mod config;
mod error;
pub mod keys;
pub mod kms;
pub mod notify;
pub mod report;
pub mod run;
pub mod runs;
pub mod session;
pub mod verify;

pub use config::{CONFIG_ENV, Config, DEFAULT_CONFIG, config_path};
pub use error::OpsError;
pub use run::{RunAudit, RunReport, Verdict};
pub use session::{ReadSession, Selection, Session};
pub use verify::{Status, Verified};

use keyturn_engine::EngineError;
use keyturn_engine::plan::Rings;
use keyturn_format::Keyring;
use std::sync::Arc;

/// Loads the keyrings the selected columns use (`table`, `column` narrow
/// the selection), the `[keys]` ring given by the caller when it comes from
/// the key catalog.
pub fn load_rings(
    cfg: &Config,
    table: Option<&str>,
    column: Option<&str>,
    default: Option<Arc<Keyring>>,
) -> Result<Rings, EngineError> {
    let mut rings = Rings::load_with_default(
        &cfg.targets,
        &cfg.keys,
        &cfg.keyrings,
        table,
        column,
        default,
    )?;
    rings.servers = cfg.kms.clone();
    Ok(rings)
}

/// This machine's host name (any OS), or `unknown-host`.
pub use keyturn_db::host_name;
