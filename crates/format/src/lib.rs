//! keyturn's format layer: ciphertext format v1, keys, keyrings, key specs and
//! the codec trait. Pure: no I/O, no async, no global state beyond the
//! operating system's random generator (for nonces and new keys), read
//! through aws-lc's CSPRNG, and one per-thread block of nonce bytes drawn
//! from it (the keyturn-nonce crate, which holds the project's only
//! `unsafe` code).
//!
//! The byte layout is specified in docs/FORMAT.md at the repository root.
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]

mod algorithm;
mod b64;
pub mod codec;
mod error;
mod key_id;
mod keyring;
mod keyspec;
mod secret;
pub mod v1;

pub use algorithm::{ALGORITHMS, Algorithm, TAG_LEN};
pub use codec::{
    Carry, Codec, Inspection, KEY_ID_PATTERN, KeyIdLocation, NativeCodec, Opened, Reencryption,
    Shape, key_id_from_token,
};
pub use error::{Field, FormatError};
pub use key_id::{KeyId, MAX_KEY_ID_LEN, is_showable, scrub_message, shown};
pub use keyring::{KeyState, Keyring, KeyringBuilder, Reencrypted};
pub use keyspec::KeySpec;
pub use secret::{CodecKeyKind, KeyKind, SecretKey};
pub use v1::{Encoding, MAX_PLAINTEXT_LEN};
