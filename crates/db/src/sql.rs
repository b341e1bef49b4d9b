//! SQL text shared by the three backends, parameterized by dialect.
//!
//! Every identifier is quoted; every value is a bind parameter. Builders
//! return the statement and its parameters in order; each backend binds them.

use crate::{ColumnRef, PkColumn, PkKind, PkValue, ValueKind};
use keyturn_format::KeyIdLocation;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

/// A bind parameter.
#[derive(Clone, Debug)]
pub(crate) enum Bind {
    I64(i64),
    Str(String),
    Bytes(Vec<u8>),
}

impl Bind {
    pub(crate) fn pk(v: &PkValue) -> Bind {
        match v {
            PkValue::Int(i) => Bind::I64(*i),
            PkValue::Text(s) => Bind::Str(s.clone()),
        }
    }

    /// A column value: text columns are bound as strings, binary as bytes.
    pub(crate) fn value(kind: ValueKind, bytes: &[u8]) -> Bind {
        match kind {
            // Values read from a text column are UTF-8 (the driver decoded
            // them as String); new values are ASCII ciphertext.
            ValueKind::Text => Bind::Str(String::from_utf8_lossy(bytes).into_owned()),
            ValueKind::Binary => Bind::Bytes(bytes.to_vec()),
        }
    }
}

impl Dialect {
    pub(crate) fn quote(self, ident: &str) -> String {
        let q = if self == Dialect::MySql { '`' } else { '"' };
        ident
            .split('.')
            .map(|p| format!("{q}{}{q}", p.replace(q, &format!("{q}{q}"))))
            .collect::<Vec<_>>()
            .join(".")
    }

    pub(crate) fn long_text(self) -> &'static str {
        match self {
            Dialect::MySql => "LONGTEXT",
            _ => "TEXT",
        }
    }

    /// The n-th (1-based) placeholder.
    pub(crate) fn ph(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            _ => "?".to_string(),
        }
    }

    /// Reads a primary-key column as i64 or text.
    pub(crate) fn pk_select(self, pk: &PkColumn) -> String {
        let c = self.quote(&pk.name);
        match (self, pk.kind) {
            (Dialect::Postgres, PkKind::Int) => format!("CAST({c} AS BIGINT)"),
            (Dialect::MySql, PkKind::Int) => format!("CAST({c} AS SIGNED)"),
            (Dialect::Sqlite, PkKind::Int) => c,
            (Dialect::MySql, PkKind::Text) => format!("CAST({c} AS CHAR)"),
            (_, PkKind::Text) => format!("CAST({c} AS TEXT)"),
        }
    }

    /// A bound primary-key value in the column's own type (so comparisons
    /// use the index).
    pub(crate) fn pk_param(self, pk: &PkColumn, ph: &str) -> String {
        match (self, pk.kind) {
            (Dialect::Postgres, PkKind::Text) => format!("CAST({ph} AS {})", pk.sql_type),
            _ => ph.to_string(),
        }
    }

    /// Leading `n` bytes of a value (text columns: characters; keyturn's
    /// prefixes are ASCII, so the two agree). MySQL compares as binary to
    /// escape case-insensitive collations.
    fn prefix_of(self, col: &ColumnRef, n: usize) -> String {
        let c = self.quote(&col.column);
        match (self, col.kind) {
            (Dialect::Postgres, ValueKind::Text) => format!("left({c}, {n})"),
            (Dialect::Postgres, ValueKind::Binary) => format!("substring({c} from 1 for {n})"),
            (Dialect::MySql, ValueKind::Text) => format!("CAST(LEFT({c}, {n}) AS BINARY)"),
            (Dialect::MySql, ValueKind::Binary) => format!("LEFT({c}, {n})"),
            (Dialect::Sqlite, _) => format!("substr({c}, 1, {n})"),
        }
    }

    fn prefix_bind(self, col: &ColumnRef, prefix: &[u8]) -> Bind {
        match (self, col.kind) {
            (Dialect::MySql, _) => Bind::Bytes(prefix.to_vec()),
            (_, kind) => Bind::value(kind, prefix),
        }
    }

    fn pk_list(self, col: &ColumnRef) -> String {
        col.pk
            .iter()
            .map(|p| self.quote(&p.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key columns, then the value: the column, or a multi-column
    /// value's cells (`crate::cells`).
    fn select_list(self, col: &ColumnRef) -> String {
        let mut s: Vec<String> = col.pk.iter().map(|p| self.pk_select(p)).collect();
        if col.has_cells() {
            s.extend(col.cells.iter().map(|c| self.quote(&c.name)));
        } else {
            s.push(self.quote(&col.column));
        }
        s.join(", ")
    }

    /// A condition excluding values that start with `prefix` (for a
    /// multi-column value: whose leading cells equal the prefix's); `None`
    /// when SQL cannot express it and nothing is filtered.
    fn skip_condition(
        self,
        col: &ColumnRef,
        prefix: &[u8],
        binds: &mut Vec<Bind>,
    ) -> Option<String> {
        if col.has_cells() {
            return crate::cells::skip_condition(self, col, prefix, binds);
        }
        binds.push(self.prefix_bind(col, prefix));
        Some(format!(
            "{} <> {}",
            self.prefix_of(col, prefix.len()),
            self.ph(binds.len())
        ))
    }

    /// `(a > x) OR (a = x AND b > y) …`: keyset condition, expanded so every
    /// backend's planner uses the primary-key index.
    pub(crate) fn after_condition(
        self,
        col: &ColumnRef,
        after: &[PkValue],
        binds: &mut Vec<Bind>,
    ) -> String {
        let mut ors = Vec::new();
        for i in 0..col.pk.len() {
            let mut ands = Vec::new();
            for (j, (key, value)) in col.pk.iter().zip(after).take(i + 1).enumerate() {
                binds.push(Bind::pk(value));
                let ph = self.pk_param(key, &self.ph(binds.len()));
                let op = if j == i { ">" } else { "=" };
                ands.push(format!("{} {op} {ph}", self.quote(&key.name)));
            }
            ors.push(format!("({})", ands.join(" AND ")));
        }
        format!("({})", ors.join(" OR "))
    }

    pub(crate) fn fetch_batch(
        self,
        col: &ColumnRef,
        after: Option<&[PkValue]>,
        skip_prefix: Option<&[u8]>,
        limit: usize,
    ) -> (String, Vec<Bind>) {
        self.fetch_batch_of(self.select_list(col), col, after, skip_prefix, limit)
    }

    fn fetch_batch_of(
        self,
        select_list: String,
        col: &ColumnRef,
        after: Option<&[PkValue]>,
        skip_prefix: Option<&[u8]>,
        limit: usize,
    ) -> (String, Vec<Bind>) {
        let mut binds = Vec::new();
        let mut conds = vec![format!("{} IS NOT NULL", self.quote(&col.column))];
        if let Some(after) = after {
            conds.push(self.after_condition(col, after, &mut binds));
        }
        if let Some(c) = skip_prefix.and_then(|p| self.skip_condition(col, p, &mut binds)) {
            conds.push(c);
        }
        let sql = format!(
            "SELECT {select_list} FROM {} WHERE {} ORDER BY {} LIMIT {limit}",
            self.quote(&col.table),
            conds.join(" AND "),
            self.pk_list(col),
        );
        (sql, binds)
    }

    pub(crate) fn count_without_prefix(
        self,
        col: &ColumnRef,
        prefix: Option<&[u8]>,
    ) -> (String, Vec<Bind>) {
        let mut binds = Vec::new();
        let mut sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {} IS NOT NULL",
            self.quote(&col.table),
            self.quote(&col.column)
        );
        if let Some(c) = prefix.and_then(|p| self.skip_condition(col, p, &mut binds)) {
            sql.push_str(" AND ");
            sql.push_str(&c);
        }
        (sql, binds)
    }

    /// `WHERE` clause selecting the given rows.
    pub(crate) fn rows_condition(
        self,
        col: &ColumnRef,
        pks: &[Vec<PkValue>],
        binds: &mut Vec<Bind>,
    ) -> String {
        if col.pk.len() == 1 {
            let mut phs = Vec::with_capacity(pks.len());
            for pk in pks {
                binds.push(Bind::pk(&pk[0]));
                phs.push(self.pk_param(&col.pk[0], &self.ph(binds.len())));
            }
            return format!("{} IN ({})", self.quote(&col.pk[0].name), phs.join(", "));
        }
        let mut ors = Vec::with_capacity(pks.len());
        for pk in pks {
            let mut ands = Vec::new();
            for (j, v) in pk.iter().enumerate() {
                binds.push(Bind::pk(v));
                let ph = self.pk_param(&col.pk[j], &self.ph(binds.len()));
                ands.push(format!("{} = {ph}", self.quote(&col.pk[j].name)));
            }
            ors.push(format!("({})", ands.join(" AND ")));
        }
        ors.join(" OR ")
    }

    pub(crate) fn fetch_rows(self, col: &ColumnRef, pks: &[Vec<PkValue>]) -> (String, Vec<Bind>) {
        let mut binds = Vec::new();
        let cond = self.rows_condition(col, pks, &mut binds);
        (
            format!(
                "SELECT {} FROM {} WHERE {cond}",
                self.select_list(col),
                self.quote(&col.table)
            ),
            binds,
        )
    }

    /// An expression giving the key id of a value, or NULL when the value
    /// has no recognizable key id.
    pub(crate) fn key_id_expr(self, col: &ColumnRef, loc: &KeyIdLocation) -> Option<String> {
        let c = self.quote(&col.column);
        match loc {
            KeyIdLocation::TextDelimited { prefix, terminator } => {
                let plen = prefix.len();
                let lit = sql_string_literal(prefix);
                let term = sql_string_literal(&(*terminator as char).to_string());
                Some(match self {
                    Dialect::Postgres => format!(
                        "CASE WHEN left({c}, {plen}) = {lit} THEN split_part(substr({c}, {}), {term}, 1) END",
                        plen + 1
                    ),
                    Dialect::MySql => format!(
                        "CASE WHEN CAST(LEFT({c}, {plen}) AS BINARY) = {lit} THEN CAST(SUBSTRING_INDEX(SUBSTRING({c}, {}), {term}, 1) AS BINARY) END",
                        plen + 1
                    ),
                    Dialect::Sqlite => format!(
                        "CASE WHEN substr({c}, 1, {plen}) = {lit} AND instr(substr({c}, {s}), {term}) > 0 THEN substr({c}, {s}, instr(substr({c}, {s}), {term}) - 1) END",
                        s = plen + 1
                    ),
                })
            }
            KeyIdLocation::BinaryLengthPrefixed { magic, len_offset } => {
                // The magic plus the version byte must match; the key id
                // follows its one-byte length.
                let mlen = magic.len();
                let hex: String = magic.iter().map(|b| format!("{b:02X}")).collect();
                let (lo, start) = (len_offset + 1, len_offset + 2);
                Some(match self {
                    Dialect::Postgres => format!(
                        "CASE WHEN length({c}) > {lo} AND substring({c} from 1 for {mlen}) = '\\x{hex}'::bytea THEN convert_from(substring({c} from {start} for get_byte({c}, {len_offset})), 'SQL_ASCII') END"
                    ),
                    Dialect::MySql => format!(
                        "CASE WHEN LENGTH({c}) > {lo} AND LEFT({c}, {mlen}) = X'{hex}' THEN SUBSTRING({c}, {start}, ORD(SUBSTRING({c}, {lo}, 1))) END"
                    ),
                    Dialect::Sqlite => format!(
                        "CASE WHEN length({c}) > {lo} AND substr({c}, 1, {mlen}) = X'{hex}' THEN CAST(substr({c}, {start}, unicode(CAST(substr({c}, {lo}, 1) AS TEXT))) AS TEXT) END"
                    ),
                })
            }
            _ => None,
        }
    }

    /// `pred` over the `n` bytes at `offset` (0-based) of a value equal to
    /// the next bind parameter.
    fn bytes_at_equal(
        self,
        col: &ColumnRef,
        offset: usize,
        bytes: &[u8],
        binds: &mut Vec<Bind>,
    ) -> String {
        binds.push(self.prefix_bind(col, bytes));
        let ph = self.ph(binds.len());
        if offset == 0 {
            return format!("{} = {ph}", self.prefix_of(col, bytes.len()));
        }
        let c = self.quote(&col.column);
        let (from, n) = (offset + 1, bytes.len());
        let expr = match (self, col.kind) {
            (Dialect::Postgres, ValueKind::Text) => format!("substr({c}, {from}, {n})"),
            (Dialect::Postgres, ValueKind::Binary) => {
                format!("substring({c} from {from} for {n})")
            }
            (Dialect::MySql, ValueKind::Text) => {
                format!("CAST(SUBSTRING({c}, {from}, {n}) AS BINARY)")
            }
            (Dialect::MySql, ValueKind::Binary) => format!("SUBSTRING({c}, {from}, {n})"),
            (Dialect::Sqlite, _) => format!("substr({c}, {from}, {n})"),
        };
        format!("{expr} = {ph}")
    }

    /// Counts per key id for the ids in `known` with one scan and no
    /// grouping (a GROUP BY over a computed key sorts every row on SQLite
    /// and MariaDB): `COUNT(*)`, `COUNT(c)`, one `COUNT(CASE …)` per known
    /// id, and last the values that carry a key id at all. When that last
    /// count exceeds the sum of the others, some id is not in `known` and
    /// the caller asks [`count_keys`](Self::count_keys) which. `None` for
    /// locations this cannot express.
    pub(crate) fn count_known_keys(
        self,
        col: &ColumnRef,
        loc: &KeyIdLocation,
        known: &[String],
    ) -> Option<(String, Vec<Bind>)> {
        let c = self.quote(&col.column);
        let mut binds = Vec::new();
        let mut parts = vec!["COUNT(*)".to_string(), format!("COUNT({c})")];
        let any = match loc {
            KeyIdLocation::TextDelimited { prefix, terminator } => {
                for id in known {
                    let mut p = prefix.as_bytes().to_vec();
                    p.extend_from_slice(id.as_bytes());
                    p.push(*terminator);
                    let pred = self.bytes_at_equal(col, 0, &p, &mut binds);
                    parts.push(format!("COUNT(CASE WHEN {pred} THEN 1 END)"));
                }
                self.bytes_at_equal(col, 0, prefix.as_bytes(), &mut binds)
            }
            KeyIdLocation::BinaryLengthPrefixed { magic, len_offset } => {
                let len_fn = match self {
                    Dialect::MySql => "LENGTH",
                    _ => "length",
                };
                for id in known {
                    let mut p = vec![u8::try_from(id.len()).ok()?];
                    p.extend_from_slice(id.as_bytes());
                    let m = self.bytes_at_equal(col, 0, magic, &mut binds);
                    let k = self.bytes_at_equal(col, *len_offset, &p, &mut binds);
                    parts.push(format!("COUNT(CASE WHEN {m} AND {k} THEN 1 END)"));
                }
                let m = self.bytes_at_equal(col, 0, magic, &mut binds);
                format!("{len_fn}({c}) > {} AND {m}", len_offset + 1)
            }
            _ => return None,
        };
        parts.push(format!("COUNT(CASE WHEN {any} THEN 1 END)"));
        Some((
            format!(
                "SELECT {} FROM {}",
                parts.join(", "),
                self.quote(&col.table)
            ),
            binds,
        ))
    }

    /// Rows and non-NULL values of a column.
    pub(crate) fn count_total(self, col: &ColumnRef) -> String {
        format!(
            "SELECT COUNT(*), COUNT({}) FROM {}",
            self.quote(&col.column),
            self.quote(&col.table)
        )
    }

    /// Per key id: rows and non-NULL values, in one scan. NULLs land in the
    /// `NULL` key group, where `COUNT(*) - COUNT(c)` tells them apart from
    /// values without a recognizable key id.
    pub(crate) fn count_keys(self, col: &ColumnRef, loc: &KeyIdLocation) -> String {
        let t = self.quote(&col.table);
        let c = self.quote(&col.column);
        match self.key_id_expr(col, loc) {
            Some(expr) => format!(
                "SELECT k, COUNT(*), COUNT(v) FROM (SELECT {expr} AS k, {c} AS v FROM {t}) AS keyturn_k GROUP BY k"
            ),
            None => format!("SELECT NULL AS k, COUNT(*), COUNT({c}) FROM {t}"),
        }
    }
}

/// A single-quoted SQL string literal for constant ASCII text of our own
/// (never user data).
fn sql_string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(pk: &[(&str, PkKind)]) -> ColumnRef {
        crate::test_column("patients", "phone", pk, "uuid", ValueKind::Text)
    }

    #[test]
    fn keyset_query_is_expanded_and_bound() {
        let c = col(&[("a", PkKind::Int), ("b", PkKind::Text)]);
        let after = vec![PkValue::Int(1), PkValue::Text("x".into())];
        let (sql, binds) = Dialect::Postgres.fetch_batch(&c, Some(&after), Some(b"kt1:k2:a:"), 100);
        assert!(
            sql.contains(r#"(("a" > $1) OR ("a" = $2 AND "b" > CAST($3 AS uuid)))"#),
            "{sql}"
        );
        assert!(sql.contains(r#"left("phone", 9) <> $4"#), "{sql}");
        assert!(sql.ends_with(r#"ORDER BY "a", "b" LIMIT 100"#), "{sql}");
        assert_eq!(binds.len(), 4);
        let (sql, _) = Dialect::MySql.fetch_batch(&c, None, None, 5);
        assert!(
            sql.starts_with(
                "SELECT CAST(`a` AS SIGNED), CAST(`b` AS CHAR), `phone` FROM `patients`"
            ),
            "{sql}"
        );
    }

    #[test]
    fn quoting_doubles_quote_chars() {
        assert_eq!(Dialect::Postgres.quote("public.t"), r#""public"."t""#);
        assert_eq!(Dialect::MySql.quote("a`b"), "`a``b`");
    }
}
