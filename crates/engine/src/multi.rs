//! Multi-column codecs in the engine: a value spread over several columns of
//! a row (ciphertext, IV, key id, wrapped data key).
//!
//! The pipeline stays the one of single-value columns: the plan's
//! [`ColumnRef`](keyturn_db::ColumnRef) lists the row's cell columns
//! ([`ColumnRef::cells`](keyturn_db::ColumnRef::cells)), the database layer
//! reads them as one packed value per row and writes them back with one
//! compare-and-swap statement per batch over every cell
//! ([`keyturn_db::cells`]), and [`PackedCells`] implements the single-value
//! [`Codec`] over packed values by delegating to the [`MultiColumnCodec`].
//! Compare-and-swap, re-reads after a miss, checkpoints and bad rows behave
//! exactly as for any other column.

use crate::config::ColumnConfig;
use keyturn_codecs::multi::{Cells, MultiColumnCodec, Role, RowReencryption};
use keyturn_db::cells::{pack, unpack};
use keyturn_db::{CellColumn, TableInfo, ValueKind, value_kind_of};
use keyturn_format::{
    Codec, FormatError, Inspection, KeyId, KeyIdLocation, Keyring, Opened, Reencryption,
};
use std::sync::Arc;

/// A [`MultiColumnCodec`] seen as a single-value [`Codec`] over the row's
/// cells packed by the database layer, in [`order`](Self::order): the
/// key-id cell first (so that SQL can skip rows under the primary key and
/// count rows per key), then the codec's other roles.
///
/// [`Codec::encrypt`] takes the packed row too (what `encrypt` reads from a
/// column not yet encrypted): the plaintext is its ciphertext cell, the
/// other cells NULL.
#[derive(Debug, Clone)]
pub struct PackedCells {
    inner: Arc<dyn MultiColumnCodec>,
    order: Vec<Role>,
}

impl PackedCells {
    /// `inner` as a single-value codec, its key-id cell packed first.
    pub fn new(inner: Arc<dyn MultiColumnCodec>) -> PackedCells {
        let mut order: Vec<Role> = Vec::with_capacity(inner.roles().len());
        order.extend(inner.key_id_role());
        order.extend(
            inner
                .roles()
                .iter()
                .filter(|r| Some(**r) != inner.key_id_role()),
        );
        PackedCells { inner, order }
    }

    /// The roles, in packing order.
    pub fn order(&self) -> &[Role] {
        &self.order
    }

    /// The multi-column codec whose cells are packed.
    pub fn inner(&self) -> &Arc<dyn MultiColumnCodec> {
        &self.inner
    }

    fn slices<'v>(&self, packed: &'v [u8]) -> Result<Vec<Option<&'v [u8]>>, FormatError> {
        let cells = unpack(packed).map_err(|_| FormatError::UnknownFormat)?;
        if cells.len() != self.order.len() {
            return Err(FormatError::UnknownFormat);
        }
        Ok(cells)
    }

    fn to_cells(&self, slices: &[Option<&[u8]>]) -> Result<Cells, FormatError> {
        let mut cells = Cells::default();
        for (role, v) in self.order.iter().zip(slices) {
            cells.set_cell(*role, v.map(<[u8]>::to_vec))?;
        }
        Ok(cells)
    }

    /// The cells of a packed row.
    pub fn unpack(&self, packed: &[u8]) -> Result<Cells, FormatError> {
        self.to_cells(&self.slices(packed)?)
    }

    /// A row's cells, packed.
    pub fn pack(&self, cells: &Cells) -> Vec<u8> {
        pack(self.order.iter().map(|r| cells.cell(*r)))
    }
}

impl Codec for PackedCells {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn inspect<'v>(&self, stored: &'v [u8]) -> Inspection<'v> {
        let slices = match self.slices(stored) {
            Ok(s) => s,
            Err(e) => return Inspection::Invalid(e),
        };
        let cells = match self.to_cells(&slices) {
            Ok(c) => c,
            Err(e) => return Inspection::Invalid(e),
        };
        match self.inner.inspect_row(&cells) {
            Inspection::UnderKey(id) => {
                // The key id is cell 0 of the packed value: borrow it there.
                let stored_id = match self.order.first() {
                    Some(Role::KeyId) => slices[0].and_then(|b| std::str::from_utf8(b).ok()),
                    _ => None,
                };
                match stored_id {
                    Some(s) if s == id => Inspection::UnderKey(s),
                    _ => match KeyId::new(id) {
                        Ok(k) => Inspection::UnderKeyOwned(k),
                        Err(e) => Inspection::Invalid(e),
                    },
                }
            }
            Inspection::UnderKeyOwned(k) => Inspection::UnderKeyOwned(k),
            Inspection::NotThisFormat => Inspection::NotThisFormat,
            Inspection::Invalid(e) => Inspection::Invalid(e),
            _ => Inspection::KeyUnknown,
        }
    }

    fn decrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        context: &[&[u8]],
    ) -> Result<Opened, FormatError> {
        self.inner.decrypt_row(ring, &self.unpack(stored)?, context)
    }

    fn reseal(
        &self,
        ring: &Keyring,
        opened: &Opened,
        context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        Ok(self.pack(&self.inner.reseal_row(ring, opened, context)?))
    }

    fn encrypt(
        &self,
        ring: &Keyring,
        plaintext: &[u8],
        context: &[&[u8]],
    ) -> Result<Vec<u8>, FormatError> {
        let row = self.unpack(plaintext)?;
        let Some(p) = &row.ciphertext else {
            return Err(FormatError::Empty);
        };
        Ok(self.pack(&self.inner.encrypt_row(ring, p, context)?))
    }

    fn primary_prefix(&self, ring: &Keyring) -> Option<Vec<u8>> {
        match self.order.first() {
            Some(Role::KeyId) => Some(pack([Some(ring.primary_id().as_str().as_bytes())])),
            _ => None,
        }
    }

    fn shape(&self) -> keyturn_format::Shape {
        keyturn_format::Shape::Cells
    }

    fn key_id_location(&self) -> KeyIdLocation {
        match self.order.first() {
            Some(Role::KeyId) => KeyIdLocation::Cell(0),
            _ => KeyIdLocation::None,
        }
    }

    fn reencrypt(
        &self,
        ring: &Keyring,
        stored: &[u8],
        context: &[&[u8]],
    ) -> Result<Reencryption, FormatError> {
        Ok(
            match self
                .inner
                .reencrypt_row(ring, &self.unpack(stored)?, context)?
            {
                RowReencryption::AlreadyPrimary => Reencryption::AlreadyPrimary,
                RowReencryption::Rotated(cells) => Reencryption::Rotated(self.pack(&cells)),
            },
        )
    }
}

/// The config key naming the column of `role` (the ciphertext column is the
/// column's `name`).
pub(crate) fn role_key(role: Role) -> &'static str {
    match role {
        Role::Ciphertext => "name",
        Role::Iv => "iv_column",
        Role::KeyId => "key_id_column",
        Role::WrappedKey => "wrapped_key_column",
        _ => "name",
    }
}

/// A resolved multi-column value: its codec and cell columns.
pub(crate) type ResolvedCells = (Arc<dyn Codec>, Vec<CellColumn>);

/// Resolves a multi-column codec's columns against the table: every role's
/// column must exist, and hold bytes (the key id: text or bytes; with
/// `text_cells`, any role may be a text column, the codec decoding it).
/// Returns the codec and the cell columns in packing order, or every
/// problem found.
pub(crate) fn resolve_cells(
    info: &TableInfo,
    table: &str,
    c: &ColumnConfig,
    inner: Arc<dyn MultiColumnCodec>,
    text_cells: bool,
) -> Result<ResolvedCells, Vec<String>> {
    let codec = PackedCells::new(inner);
    let mut problems = Vec::new();
    let mut cells = Vec::new();
    for &role in codec.order() {
        let Some(name) = c.role_column(role) else {
            problems.push(format!(
                "{table}.{}: codec {} needs {} (the {} column)",
                c.name,
                c.codec,
                role_key(role),
                role.name()
            ));
            continue;
        };
        let Some(ty) = info.column_type(name) else {
            problems.push(format!(
                "{table}: column {name} ({} column of {table}.{}) does not exist",
                role.name(),
                c.name
            ));
            continue;
        };
        let Some(kind) = value_kind_of(ty) else {
            problems.push(format!(
                "{table}.{name}: type {ty} cannot hold the {} (use a {} column)",
                role.name(),
                if role == Role::KeyId {
                    "text or binary"
                } else {
                    "binary"
                }
            ));
            continue;
        };
        if kind == ValueKind::Text && role != Role::KeyId && !text_cells {
            problems.push(format!(
                "{table}.{name}: codec {} stores raw bytes in the {} column, but the column is {ty}; use a binary column",
                c.codec,
                role.name()
            ));
            continue;
        }
        cells.push(CellColumn {
            name: name.to_owned(),
            kind,
        });
    }
    if problems.is_empty() {
        Ok((Arc::new(codec), cells))
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyturn_codecs::envelope::EnvelopeCodec;
    use keyturn_format::{Algorithm, SecretKey};

    fn ring(primary: &str) -> Keyring {
        let k = |b| SecretKey::from_bytes(Algorithm::Aes256Gcm, &[b; 32]).unwrap();
        Keyring::from_keys(
            vec![
                (KeyId::new("kek-1").unwrap(), k(1)),
                (KeyId::new("kek-2").unwrap(), k(2)),
            ],
            Some(primary),
            &[],
        )
        .unwrap()
    }

    #[test]
    fn packed_envelope_rows_behave_like_single_values() {
        let c = PackedCells::new(Arc::new(EnvelopeCodec::default()));
        assert_eq!(
            c.order(),
            &[Role::KeyId, Role::WrappedKey, Role::Iv, Role::Ciphertext]
        );
        assert_eq!(c.key_id_location(), KeyIdLocation::Cell(0));
        let plain = pack([None, None, None, Some(&b"secret"[..])]);
        assert_eq!(c.inspect(&plain), Inspection::NotThisFormat);
        let v1 = c.encrypt(&ring("kek-1"), &plain, &[]).unwrap();
        assert_eq!(c.inspect(&v1), Inspection::UnderKey("kek-1"));
        let r2 = ring("kek-2");
        let prefix = c.primary_prefix(&r2).unwrap();
        assert!(!v1.starts_with(&prefix));
        let Reencryption::Rotated(v2) = c.reencrypt(&r2, &v1, &[]).unwrap() else {
            panic!("not rotated")
        };
        assert!(v2.starts_with(&prefix));
        assert_eq!(&c.decrypt(&r2, &v2, &[]).unwrap().plaintext[..], b"secret");
        // Only the key id and the wrapped key changed.
        let (a, b) = (c.unpack(&v1).unwrap(), c.unpack(&v2).unwrap());
        assert_eq!((a.ciphertext, a.iv), (b.ciphertext, b.iv));
        assert!(matches!(
            c.reencrypt(&r2, &v2, &[]).unwrap(),
            Reencryption::AlreadyPrimary
        ));
        assert_eq!(c.inspect(b"junk").kind_name(), "invalid");
    }

    trait KindName {
        fn kind_name(&self) -> &'static str;
    }
    impl KindName for Inspection<'_> {
        fn kind_name(&self) -> &'static str {
            match self {
                Inspection::Invalid(_) => "invalid",
                _ => "other",
            }
        }
    }
}
