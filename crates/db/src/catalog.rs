//! The key catalog table, `keyturn_keys_catalog`: one row per data key of a
//! catalog. The database layer stores and reads rows as text; the meaning of
//! states and the lifecycle rules live in `keyturn-catalog`
//! (docs/CATALOG.md). No column ever holds plaintext key material: the data
//! key is stored wrapped under a key-encryption key, or not at all once
//! destroyed.

use crate::sql::Dialect;
use serde::Serialize;

/// One key of a catalog, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CatalogRow {
    /// The catalog's name (bound into every wrapped DEK).
    pub catalog: String,
    /// The key's id, unique within its catalog.
    pub key_id: String,
    /// `aes256gcm` or `xchacha20poly1305`.
    pub algorithm: String,
    /// `pending`, `primary`, `decrypt-only`, `retired` or `destroyed`.
    pub state: String,
    /// Marked compromised: never promoted again, and rotation moves its
    /// rows first (stored as 0 or 1).
    pub compromised: bool,
    /// The key's fingerprint: a truncated domain-separated SHA-256, reveals
    /// nothing about the key.
    pub fingerprint: String,
    /// Where the material lives: the KEK that wraps it (`local:m1@…`,
    /// `aws-kms:arn:…`, `transit:…`), or `destroyed`.
    pub kek: String,
    /// The wrapped DEK (JSON, see docs/KMS.md); `None` once destroyed.
    pub wrapped_dek: Option<String>,
    /// When the key was added (keyturn's timestamp format, [`crate::ts`]).
    pub created_at: String,
    /// When it last became primary; `None` if it never did.
    pub promoted_at: Option<String>,
    /// When it stopped being primary (a newer key was promoted).
    pub demoted_at: Option<String>,
    /// When it was retired; `None` if it was not.
    pub retired_at: Option<String>,
    /// When its material was destroyed; `None` if it was not.
    pub destroyed_at: Option<String>,
    /// When it was marked compromised; `None` if it was not.
    pub compromised_at: Option<String>,
    /// Incremented by every write; updates compare it (optimistic locking).
    pub revision: i64,
}

/// One change in a [`crate::Database::write_catalog`] transaction.
#[derive(Clone, Debug)]
pub struct CatalogWrite {
    /// The full new row (its `revision` is the new revision).
    pub row: CatalogRow,
    /// `None`: insert a new key (fails if the id exists). `Some(r)`: update
    /// the row only if its stored revision is still `r`; otherwise the whole
    /// transaction is rolled back.
    pub expected_revision: Option<i64>,
}

pub(crate) const CATALOG_COLUMNS: &str = "catalog_name, key_id, algorithm, state, compromised, fingerprint, kek, wrapped_dek, \
     created_at, promoted_at, demoted_at, retired_at, destroyed_at, compromised_at, revision";

pub(crate) fn create_catalog_table(d: Dialect) -> String {
    let text = d.long_text();
    format!(
        "CREATE TABLE IF NOT EXISTS keyturn_keys_catalog (
            catalog_name VARCHAR(128) NOT NULL,
            key_id VARCHAR(32) NOT NULL,
            algorithm VARCHAR(32) NOT NULL,
            state VARCHAR(16) NOT NULL,
            compromised BIGINT NOT NULL,
            fingerprint VARCHAR(64) NOT NULL,
            kek VARCHAR(512) NOT NULL,
            wrapped_dek {text},
            created_at VARCHAR(40) NOT NULL,
            promoted_at VARCHAR(40),
            demoted_at VARCHAR(40),
            retired_at VARCHAR(40),
            destroyed_at VARCHAR(40),
            compromised_at VARCHAR(40),
            revision BIGINT NOT NULL,
            PRIMARY KEY (catalog_name, key_id))"
    )
}

pub(crate) fn insert_sql(d: Dialect) -> String {
    let phs: Vec<String> = (1..=15).map(|i| d.ph(i)).collect();
    format!(
        "INSERT INTO keyturn_keys_catalog ({CATALOG_COLUMNS}) VALUES ({})",
        phs.join(", ")
    )
}

/// Placeholders in order of appearance: the 13 columns after the key
/// (`algorithm` … `revision`), then catalog name, key id and the expected
/// revision.
pub(crate) fn update_sql(d: Dialect) -> String {
    let sets: Vec<String> = CATALOG_COLUMNS
        .split(',')
        .map(str::trim)
        .skip(2)
        .enumerate()
        .map(|(i, c)| format!("{c} = {}", d.ph(i + 1)))
        .collect();
    format!(
        "UPDATE keyturn_keys_catalog SET {} WHERE catalog_name = {} AND key_id = {} AND revision = {}",
        sets.join(", "),
        d.ph(14),
        d.ph(15),
        d.ph(16)
    )
}

pub(crate) fn select_sql(d: Dialect) -> String {
    format!(
        "SELECT {CATALOG_COLUMNS} FROM keyturn_keys_catalog WHERE catalog_name = {} ORDER BY created_at, key_id",
        d.ph(1)
    )
}
