//! Multi-column values: several columns of one row read, compared and
//! written together, so a codec may span columns (ciphertext, IV, key id,
//! wrapped data key) while the engine's pipeline keeps moving one value per
//! row.
//!
//! A [`ColumnRef`] with [`cells`](ColumnRef::cells) names those columns in
//! packing order; its `column` (one of them, the ciphertext) is the anchor:
//! a row whose anchor is NULL holds no value (skipped, counted as NULL).
//!
//! # Packing
//!
//! [`Row::value`](crate::Row::value), the values of
//! [`fetch_rows`](crate::Database::fetch_rows) and the `old` / `new` of a
//! [`CasUpdate`] are the row's cells packed in order, each cell as
//!
//! - `0x00` for SQL NULL, or
//! - `0x01`, the length as a 4-byte big-endian integer, then the bytes (text
//!   columns: their UTF-8).
//!
//! The encoding is canonical (one packing per tuple of cells), so two packed
//! values are equal exactly when every cell is. It is also prefix-free per
//! cell: a `skip_prefix` made of whole cells means "the leading cells equal
//! these", which SQL evaluates on the columns themselves (the envelope codec
//! packs the key-id cell first, so rows already under the primary key are
//! filtered out by `WHERE NOT (key_id_col = primary)`).
//!
//! # SQL
//!
//! Reads select every cell column; counts per key id `GROUP BY` the key-id
//! column ([`KeyIdLocation::Cell`]). A batch is written with ONE
//! compare-and-swap statement (split only at bind-parameter or packet
//! limits) whose `WHERE` compares every old cell NULL-safely (`IS NOT
//! DISTINCT FROM` on PostgreSQL, `<=>` on MySQL/MariaDB, `IS` on SQLite) and
//! whose `SET` writes the cells that change in the batch (a re-wrap leaves
//! the ciphertext and IV columns alone).

use crate::driver::Value;
use crate::sql::{Bind, Dialect};
use crate::{CasUpdate, CellColumn, ColumnRef, DbError, PkValue, ValueKind};

const NULL: u8 = 0;
const PRESENT: u8 = 1;

/// Packs a row's cells (`None` = SQL NULL); see the module docs.
pub fn pack<'a>(cells: impl IntoIterator<Item = Option<&'a [u8]>>) -> Vec<u8> {
    let mut out = Vec::new();
    for c in cells {
        match c {
            None => out.push(NULL),
            Some(v) => {
                out.push(PRESENT);
                // Cells are column values: far below 4 GiB.
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }
    out
}

/// Unpacks cells packed by [`pack`].
pub fn unpack(packed: &[u8]) -> Result<Vec<Option<&[u8]>>, DbError> {
    let bad = |why: &str| DbError::Invalid(format!("malformed packed cells: {why}"));
    let mut out = Vec::new();
    let mut rest = packed;
    while let Some((&flag, tail)) = rest.split_first() {
        match flag {
            NULL => {
                out.push(None);
                rest = tail;
            }
            PRESENT => {
                if tail.len() < 4 {
                    return Err(bad("truncated length"));
                }
                let (len, tail) = tail.split_at(4);
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                if tail.len() < len {
                    return Err(bad("truncated cell"));
                }
                let (v, tail) = tail.split_at(len);
                out.push(Some(v));
                rest = tail;
            }
            _ => return Err(bad("unknown cell flag")),
        }
    }
    Ok(out)
}

/// A cell bound in the column's kind (text as a string, binary as bytes).
fn cell_bind(kind: ValueKind, v: Option<&[u8]>) -> Value {
    match kind {
        // Cells read from a text column are UTF-8 (the driver decoded them
        // as String); new ones are what the codec wrote (ASCII key ids).
        ValueKind::Text => Value::Text(v.map(|b| String::from_utf8_lossy(b).into_owned())),
        ValueKind::Binary => Value::Bytes(v.map(<[u8]>::to_vec)),
    }
}

/// NULL-safe equality of a stored column with a value as keyturn read it.
/// MySQL compares bytes (its `value` is bound as bytes): a case-insensitive
/// collation must not let a different key id or value pass.
fn same(d: Dialect, kind: ValueKind, column: &str, value: &str) -> String {
    match (d, kind) {
        (Dialect::Postgres, _) => format!("{column} IS NOT DISTINCT FROM {value}"),
        (Dialect::Sqlite, _) => format!("{column} IS {value}"),
        (Dialect::MySql, ValueKind::Text) => {
            format!("CAST(CONVERT({column} USING utf8mb4) AS BINARY) <=> {value}")
        }
        (Dialect::MySql, ValueKind::Binary) => format!("{column} <=> {value}"),
    }
}

/// `NOT (leading cells equal the prefix's)`, or `None` when the prefix is
/// not made of whole cells (then nothing is filtered in SQL).
pub(crate) fn skip_condition(
    d: Dialect,
    col: &ColumnRef,
    prefix: &[u8],
    binds: &mut Vec<Bind>,
) -> Option<String> {
    let cells = unpack(prefix).ok()?;
    if cells.is_empty() || cells.len() > col.cells.len() {
        return None;
    }
    let mut parts = Vec::with_capacity(cells.len());
    for (v, c) in cells.iter().zip(&col.cells) {
        let q = d.quote(&c.name);
        match v {
            None => parts.push(format!("{q} IS NULL")),
            Some(v) => {
                binds.push(match d {
                    Dialect::MySql => Bind::Bytes(v.to_vec()),
                    _ => Bind::value(c.kind, v),
                });
                parts.push(same(d, c.kind, &q, &d.ph(binds.len())));
            }
        }
    }
    Some(format!("NOT ({})", parts.join(" AND ")))
}

// ---------------------------------------------------------------------------
// Compare-and-swap writes
// ---------------------------------------------------------------------------

/// One update's cells, old and new.
struct CellUpdate<'a> {
    pk: &'a [PkValue],
    old: Vec<Option<&'a [u8]>>,
    new: Vec<Option<&'a [u8]>>,
}

fn unpack_updates<'a>(
    col: &ColumnRef,
    updates: &'a [CasUpdate],
) -> Result<Vec<CellUpdate<'a>>, DbError> {
    let n = col.cells.len();
    updates
        .iter()
        .map(|u| {
            let (old, new) = (unpack(&u.old)?, unpack(&u.new)?);
            if old.len() != n || new.len() != n || u.pk.len() != col.pk.len() {
                return Err(DbError::Invalid(format!(
                    "{}.{}: an update of {} / {} cells for {n} cell columns",
                    col.table,
                    col.column,
                    old.len(),
                    new.len()
                )));
            }
            Ok(CellUpdate {
                pk: &u.pk,
                old,
                new,
            })
        })
        .collect()
}

/// The cells that change in at least one update: the statement's `SET`.
/// (A batch that changes nothing still sets the anchor to its own value, so
/// the count of rows that matched is returned as for any batch.)
fn changed_cells(col: &ColumnRef, ups: &[CellUpdate<'_>]) -> Vec<usize> {
    let changed: Vec<usize> = (0..col.cells.len())
        .filter(|&j| ups.iter().any(|u| u.old[j] != u.new[j]))
        .collect();
    if changed.is_empty() {
        let anchor = col
            .cells
            .iter()
            .position(|c| c.name == col.column)
            .unwrap_or(0);
        return vec![anchor];
    }
    changed
}

fn what(col: &ColumnRef) -> String {
    format!("writing a batch of {}.{}", col.table, col.column)
}

/// PostgreSQL: `UPDATE … FROM unnest(arrays…)`, one statement per batch.
pub(crate) async fn write_cas_postgres(
    pool: &sqlx::PgPool,
    col: &ColumnRef,
    updates: &[CasUpdate],
    lock_timeout: Option<std::time::Duration>,
) -> Result<u64, DbError> {
    if updates.is_empty() {
        return Ok(0);
    }
    let d = Dialect::Postgres;
    let ups = unpack_updates(col, updates)?;
    let changed = changed_cells(col, &ups);
    let array_type = |c: &CellColumn| match c.kind {
        ValueKind::Text => "text",
        ValueKind::Binary => "bytea",
    };
    let (mut arrays, mut names, mut conds) = crate::postgres::unnest_pk(col);
    for (j, c) in col.cells.iter().enumerate() {
        arrays.push(format!("${}::{}[]", arrays.len() + 1, array_type(c)));
        names.push(format!("o{j}"));
        conds.push(same(
            d,
            c.kind,
            &format!("keyturn_t.{}", d.quote(&c.name)),
            &format!("keyturn_v.o{j}"),
        ));
    }
    let mut sets = Vec::new();
    for &j in &changed {
        let c = &col.cells[j];
        arrays.push(format!("${}::{}[]", arrays.len() + 1, array_type(c)));
        names.push(format!("n{j}"));
        sets.push(format!("{} = keyturn_v.n{j}", d.quote(&c.name)));
    }
    let sql = format!(
        "UPDATE {} AS keyturn_t SET {} FROM unnest({}) AS keyturn_v({}) WHERE {}",
        d.quote(&col.table),
        sets.join(", "),
        arrays.join(", "),
        names.join(", "),
        conds.join(" AND ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for a in crate::postgres::pk_arrays(col, ups.iter().map(|u| u.pk))? {
        q = match a {
            crate::postgres::PkArray::Int(v) => q.bind(v),
            crate::postgres::PkArray::Text(v) => q.bind(v),
            crate::postgres::PkArray::Bytes(v) => q.bind(v),
        };
    }
    let js: Vec<(usize, bool)> = (0..col.cells.len())
        .map(|j| (j, false))
        .chain(changed.iter().map(|&j| (j, true)))
        .collect();
    for (j, new) in js {
        // Each array typed by its column's kind directly: no path can turn
        // a cell into a NULL it did not hold.
        let cells = ups.iter().map(|u| if new { u.new[j] } else { u.old[j] });
        q = match col.cells[j].kind {
            ValueKind::Text => q.bind(
                cells
                    .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect::<Vec<Option<String>>>(),
            ),
            ValueKind::Binary => q.bind(
                cells
                    .map(|v| v.map(<[u8]>::to_vec))
                    .collect::<Vec<Option<Vec<u8>>>>(),
            ),
        };
    }
    // In a transaction that commits as the single-column write's does.
    crate::postgres::write_batch(pool, q, col, lock_timeout).await
}

/// Rows per statement so that `width` parameters per row stay within
/// `max_params`.
fn rows_per_statement(width: usize, max_params: usize) -> usize {
    (max_params / width.max(1)).max(1)
}

/// MySQL / MariaDB: one multi-row `UPDATE … JOIN (SELECT … UNION ALL …)`
/// per batch, split when the batch exceeds 60,000 parameters or `budget`
/// bytes (the server's `max_allowed_packet`, with room to spare).
pub(crate) async fn write_cas_mysql(
    pool: &sqlx::MySqlPool,
    budget: usize,
    col: &ColumnRef,
    updates: &[CasUpdate],
) -> Result<u64, DbError> {
    if updates.is_empty() {
        return Ok(0);
    }
    let ups = unpack_updates(col, updates)?;
    let changed = changed_cells(col, &ups);
    let width = col.pk.len() + col.cells.len() + changed.len();
    let max_rows = rows_per_statement(width, 60_000);
    let mut written = 0;
    let (mut start, mut bytes) = (0, 0);
    for (i, u) in ups.iter().enumerate() {
        let size = u
            .old
            .iter()
            .chain(&u.new)
            .flatten()
            .map(|c| c.len())
            .sum::<usize>()
            + 64 * width;
        if size > budget {
            return Err(DbError::Invalid(format!(
                "{}.{}: a row of {size} bytes does not fit in one statement under this server's max_allowed_packet; raise max_allowed_packet",
                col.table, col.column
            )));
        }
        if i > start && (bytes + size > budget || i - start >= max_rows) {
            written += mysql_statement(pool, col, &changed, &ups[start..i]).await?;
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < ups.len() {
        written += mysql_statement(pool, col, &changed, &ups[start..]).await?;
    }
    Ok(written)
}

async fn mysql_statement(
    pool: &sqlx::MySqlPool,
    col: &ColumnRef,
    changed: &[usize],
    ups: &[CellUpdate<'_>],
) -> Result<u64, DbError> {
    let d = Dialect::MySql;
    // Cells travel as bytes cast to binary strings (see mysql.rs: a string
    // parameter may be truncated to the derived table's VARCHAR width).
    let mut first: Vec<String> = col
        .pk
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{} AS k{i}", d.pk_param(p, "?")))
        .collect();
    first.extend((0..col.cells.len()).map(|j| format!("CAST(? AS BINARY) AS o{j}")));
    first.extend(changed.iter().map(|j| format!("CAST(? AS BINARY) AS n{j}")));
    let rest: Vec<&str> = (0..col.pk.len())
        .map(|_| "?")
        .chain((0..col.cells.len() + changed.len()).map(|_| "CAST(? AS BINARY)"))
        .collect();
    let rest = rest.join(", ");
    let mut derived = format!("SELECT {}", first.join(", "));
    for _ in 1..ups.len() {
        derived.push_str(" UNION ALL SELECT ");
        derived.push_str(&rest);
    }
    let mut conds: Vec<String> = col
        .pk
        .iter()
        .enumerate()
        .map(|(i, p)| format!("keyturn_t.{} = keyturn_v.k{i}", d.quote(&p.name)))
        .collect();
    for (j, c) in col.cells.iter().enumerate() {
        conds.push(same(
            d,
            c.kind,
            &format!("keyturn_t.{}", d.quote(&c.name)),
            &format!("keyturn_v.o{j}"),
        ));
    }
    let sets: Vec<String> = changed
        .iter()
        .map(|&j| {
            let c = &col.cells[j];
            match c.kind {
                ValueKind::Text => format!(
                    "keyturn_t.{} = CONVERT(keyturn_v.n{j} USING utf8mb4)",
                    d.quote(&c.name)
                ),
                ValueKind::Binary => format!("keyturn_t.{} = keyturn_v.n{j}", d.quote(&c.name)),
            }
        })
        .collect();
    let sql = format!(
        "UPDATE {} AS keyturn_t JOIN ({derived}) AS keyturn_v ON {} SET {}",
        d.quote(&col.table),
        conds.join(" AND "),
        sets.join(", ")
    );
    let mut binds = Vec::with_capacity(ups.len() * (col.pk.len() + col.cells.len() * 2));
    for u in ups {
        binds.extend(u.pk.iter().map(Value::pk));
        binds.extend(u.old.iter().map(|c| Value::Bytes(c.map(<[u8]>::to_vec))));
        binds.extend(
            changed
                .iter()
                .map(|&j| Value::Bytes(u.new[j].map(<[u8]>::to_vec))),
        );
    }
    let q = crate::driver::bind_values(sqlx::query(sqlx::AssertSqlSafe(sql)), binds);
    let done = q.execute(pool).await.map_err(DbError::query(what(col)))?;
    Ok(done.rows_affected())
}

/// SQLite: `UPDATE … FROM (VALUES …)`, one statement per batch (split only
/// above 32,000 bind parameters), in one `BEGIN IMMEDIATE` transaction.
pub(crate) async fn write_cas_sqlite(
    pool: &sqlx::SqlitePool,
    col: &ColumnRef,
    updates: &[CasUpdate],
) -> Result<u64, DbError> {
    use sqlx::Connection as _;
    if updates.is_empty() {
        return Ok(0);
    }
    let d = Dialect::Sqlite;
    let ups = unpack_updates(col, updates)?;
    let changed = changed_cells(col, &ups);
    let width = col.pk.len() + col.cells.len() + changed.len();
    // VALUES columns are named column1, column2, …: pk, old cells, new cells.
    let v = |n: usize| format!("keyturn_v.column{}", n + 1);
    let mut conds: Vec<String> = col
        .pk
        .iter()
        .enumerate()
        .map(|(i, p)| format!("keyturn_t.{} = {}", d.quote(&p.name), v(i)))
        .collect();
    for (j, c) in col.cells.iter().enumerate() {
        conds.push(same(
            d,
            c.kind,
            &format!("keyturn_t.{}", d.quote(&c.name)),
            &v(col.pk.len() + j),
        ));
    }
    let sets: Vec<String> = changed
        .iter()
        .enumerate()
        .map(|(x, &j)| {
            format!(
                "{} = {}",
                d.quote(&col.cells[j].name),
                v(col.pk.len() + col.cells.len() + x)
            )
        })
        .collect();
    let tuple = format!("({})", vec!["?"; width].join(", "));
    let mut conn = pool.acquire().await.map_err(DbError::query(what(col)))?;
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(DbError::query(what(col)))?;
    let mut written = 0;
    for chunk in ups.chunks(rows_per_statement(width, crate::sqlite::MAX_BINDS)) {
        let sql = format!(
            "UPDATE {} AS keyturn_t SET {} FROM (VALUES {}) AS keyturn_v WHERE {}",
            d.quote(&col.table),
            sets.join(", "),
            vec![tuple.as_str(); chunk.len()].join(", "),
            conds.join(" AND ")
        );
        let mut binds = Vec::with_capacity(chunk.len() * width);
        for u in chunk {
            binds.extend(u.pk.iter().map(Value::pk));
            binds.extend(
                u.old
                    .iter()
                    .zip(&col.cells)
                    .map(|(o, c)| cell_bind(c.kind, *o)),
            );
            binds.extend(
                changed
                    .iter()
                    .map(|&j| cell_bind(col.cells[j].kind, u.new[j])),
            );
        }
        let q = crate::driver::bind_values(sqlx::query(sqlx::AssertSqlSafe(sql)), binds);
        written += q
            .execute(&mut *tx)
            .await
            .map_err(DbError::query(what(col)))?
            .rows_affected();
    }
    tx.commit().await.map_err(DbError::query(what(col)))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PkColumn, PkKind};
    use keyturn_format::KeyIdLocation;

    fn col() -> ColumnRef {
        let cell = |n: &str, kind| CellColumn {
            name: n.into(),
            kind,
        };
        ColumnRef {
            table: "accounts".into(),
            pk: vec![PkColumn {
                name: "id".into(),
                kind: PkKind::Int,
                sql_type: "bigint".into(),
            }],
            column: "ssn_ct".into(),
            kind: ValueKind::Binary,
            cells: vec![
                cell("ssn_kek", ValueKind::Text),
                cell("ssn_dek", ValueKind::Binary),
                cell("ssn_iv", ValueKind::Binary),
                cell("ssn_ct", ValueKind::Binary),
            ],
            aux: Vec::new(),
        }
    }

    #[test]
    fn packing_round_trips_and_is_prefix_free() {
        let cells: Vec<Option<&[u8]>> = vec![Some(b"kek-2"), None, Some(b""), Some(&[0, 1, 2])];
        let p = pack(cells.iter().copied());
        assert_eq!(
            p,
            [
                &[1, 0, 0, 0, 5][..],
                b"kek-2",
                &[0],
                &[1, 0, 0, 0, 0],
                &[1, 0, 0, 0, 3, 0, 1, 2]
            ]
            .concat()
        );
        assert_eq!(unpack(&p).unwrap(), cells);
        assert!(p.starts_with(&pack([Some(&b"kek-2"[..])])));
        assert!(!p.starts_with(&pack([Some(&b"kek"[..])])));
        assert!(unpack(&p[..p.len() - 1]).is_err());
        assert!(unpack(&[7]).is_err());
        assert_eq!(unpack(&[]).unwrap(), Vec::<Option<&[u8]>>::new());
    }

    #[test]
    fn skip_prefix_becomes_a_null_safe_condition_on_the_key_id_column() {
        let c = col();
        let census = crate::KeyCensus {
            location: KeyIdLocation::Cell(0),
            shape: keyturn_format::Shape::Cells,
        };
        let skip = |prefix: Vec<u8>| crate::Skip {
            prefix,
            census: census.clone(),
        };
        let prefix = skip(pack([Some(&b"kek-2"[..])]));
        let (sql, binds) = Dialect::Postgres.fetch_batch(&c, None, Some(&prefix), 10);
        assert!(
            sql.contains(r#"NOT ("ssn_kek" IS NOT DISTINCT FROM $1)"#),
            "{sql}"
        );
        assert!(sql.contains(r#""ssn_ct" IS NOT NULL"#), "{sql}");
        assert!(matches!(&binds[..], [Bind::Str(s)] if s == "kek-2"));
        let (sql, _) = Dialect::MySql.fetch_batch(&c, None, Some(&prefix), 10);
        assert!(
            sql.contains("NOT (CAST(CONVERT(`ssn_kek` USING utf8mb4) AS BINARY) <=> ?)"),
            "{sql}"
        );
        let (sql, _) = Dialect::Sqlite.count_without_prefix(&c, Some(&prefix));
        assert!(sql.ends_with(r#"AND NOT ("ssn_kek" IS ?)"#), "{sql}");
        // A prefix that is not whole cells filters nothing in SQL.
        let (sql, binds) =
            Dialect::Sqlite.fetch_batch(&c, None, Some(&skip(b"\x01\x00".to_vec())), 10);
        assert!(!sql.contains("NOT ("), "{sql}");
        assert!(binds.is_empty());
        let (sql, _) = Dialect::Postgres.census(&c, &census);
        assert!(
            sql.contains(r#"SELECT "ssn_kek" AS k, "ssn_ct" AS v FROM "accounts""#),
            "{sql}"
        );
    }

    #[test]
    fn only_changed_cells_are_set() {
        let c = col();
        let old = pack([Some(&b"kek-1"[..]), Some(b"w1"), Some(b"iv"), Some(b"ct")]);
        let new = pack([Some(&b"kek-2"[..]), Some(b"w2"), Some(b"iv"), Some(b"ct")]);
        let updates = [CasUpdate {
            pk: vec![PkValue::Int(1)],
            old,
            new,
        }];
        let ups = unpack_updates(&c, &updates).unwrap();
        assert_eq!(changed_cells(&c, &ups), vec![0, 1]);
        let bad = [CasUpdate {
            pk: vec![PkValue::Int(1)],
            old: pack([None]),
            new: pack([None]),
        }];
        assert!(unpack_updates(&c, &bad).is_err());
    }
}
