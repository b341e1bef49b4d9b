//! keyturn.toml (keyturn-ops' `Config::parse`).

use crate::check::{assert_no_canary, with_canary};

/// `keyturn_ops::Config::parse`, with every `@@` of the input replaced by
/// [`crate::CANARY_SPEC`]: wherever the key spec lands (a misspelt field,
/// `primary`, a source, a table name, a TOML key), the error never shows its
/// key material. Never panics.
pub fn config(data: &[u8]) {
    let Some(text) = with_canary(data) else {
        return;
    };
    if let Err(e) = keyturn_ops::Config::parse(&text) {
        assert_no_canary("Config::parse", &e.to_string());
    }
}
