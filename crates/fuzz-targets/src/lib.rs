//! keyturn's fuzz targets, as plain functions of the input bytes.
//!
//! The cargo-fuzz crate in `fuzz/` (outside the workspace: it needs nightly
//! and libFuzzer) has one binary per function here, and this crate's test
//! `tests/replay.rs` runs every saved input of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` through the same function, so
//! `cargo test --workspace` replays the corpus on stable Rust.
//!
//! A target does more than "not panic": where it is cheap it checks
//! properties, and panics (the fuzzer's crash) when one fails:
//!
//! - **round trips**: a v1 value that parses re-encodes to the same bytes
//!   (both encodings are canonical); a key spec that parses prints a spec
//!   that parses to the same key; packed cells that unpack pack to the same
//!   bytes;
//! - **agreement**: `peek` and `parse` agree, the stack-buffer parse of the
//!   re-encryption path agrees with the heap one, `inspect` agrees with
//!   `decrypt` on the key of a value;
//! - **keys**: a value that decrypts re-encrypts under the primary key and
//!   decrypts again to the same plaintext; a ring with the same key ids but
//!   other key material never decrypts it;
//! - **no echo**: an error message never holds 24 or more consecutive bytes
//!   of the input, unless they are fixed message text (found in the crates'
//!   own sources) or a key id the value names; key-spec errors depend on the
//!   key material only through its length; config errors never show a key
//!   spec placed anywhere in the file.
//!
//! See docs/TESTING.md, section "Fuzzing".
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod check;
mod codecs;
mod config;
mod keys;
mod multi;
mod v1;

pub use codecs::{
    codec_aws_kms, codec_cloak, codec_detect, codec_envelope, codec_fernet, codec_json_envelope,
    codec_laravel, codec_lockbox, codec_node, codec_parse_key, codec_rails, codec_sodium,
    codec_vault, codec_version_byte,
};
pub use config::config;
pub use keys::{key_source, key_spec};
pub use multi::multi_cells;
pub use v1::{v1_binary, v1_text};

/// A fuzz target: takes any bytes, panics when a property fails.
pub type Target = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary and corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("v1_text", v1_text),
    ("v1_binary", v1_binary),
    ("codec_aws_kms", codec_aws_kms),
    ("codec_cloak", codec_cloak),
    ("codec_fernet", codec_fernet),
    ("codec_json_envelope", codec_json_envelope),
    ("codec_laravel", codec_laravel),
    ("codec_lockbox", codec_lockbox),
    ("codec_node", codec_node),
    ("codec_rails", codec_rails),
    ("codec_sodium", codec_sodium),
    ("codec_vault", codec_vault),
    ("codec_version_byte", codec_version_byte),
    ("codec_envelope", codec_envelope),
    ("codec_detect", codec_detect),
    ("codec_parse_key", codec_parse_key),
    ("key_spec", key_spec),
    ("key_source", key_source),
    ("config", config),
    ("multi_cells", multi_cells),
];

/// The key spec that the `config` and `key_source` targets put in place of
/// every `@@` of their input: its key material must never appear in an
/// error message.
pub const CANARY_SPEC: &str = "k9:aes256gcm:q0cXZq+Wv7pj8sLXS9N4DhfOQ1H/4jVXk4GMI84kvgE=";
