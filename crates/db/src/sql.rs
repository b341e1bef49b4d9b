//! SQL text shared by the three backends, parameterized by dialect.
//!
//! Every identifier is quoted; every value is a bind parameter. Builders
//! return the statement and its parameters in order; each backend binds them.

use crate::{ColumnRef, PkColumn, PkKind, PkValue, ValueKind};

/// A database as SQL text is spelled for it: the [`crate::Backend`] itself,
/// so a new database is one variant, not two.
pub(crate) use crate::Backend as Dialect;

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
            PkValue::Bytes(b) => Bind::Bytes(b.clone()),
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

    /// Reads a primary-key column as i64, text (text and numeric keys, in
    /// the database's exact text form) or bytes. Aliased: PostgreSQL names
    /// `CAST(k AS TEXT)` after `k`, and an `ORDER BY k` would then sort by
    /// the text rather than by the key.
    pub(crate) fn pk_select(self, pk: &PkColumn) -> String {
        let c = self.quote(&pk.name);
        let read = match (self, pk.kind) {
            (Dialect::Postgres, PkKind::Int) => format!("CAST({c} AS BIGINT)"),
            (Dialect::MySql, PkKind::Int) => format!("CAST({c} AS SIGNED)"),
            (Dialect::Sqlite, PkKind::Int) | (_, PkKind::Bytes) => c.clone(),
            (Dialect::MySql, PkKind::Text | PkKind::Decimal) => format!("CAST({c} AS CHAR)"),
            (_, PkKind::Text | PkKind::Decimal) => format!("CAST({c} AS TEXT)"),
        };
        if read == c {
            read
        } else {
            format!("{read} AS {}", self.quote(&format!("keyturn_{}", pk.name)))
        }
    }

    /// A column read in its text form (an auxiliary column: [`ColumnRef::aux`]).
    pub(crate) fn text_of(self, name: &str) -> String {
        let c = self.quote(name);
        match self {
            Dialect::MySql => format!("CAST({c} AS CHAR)"),
            _ => format!("CAST({c} AS TEXT)"),
        }
    }

    /// A bound primary-key value in the column's own type (so comparisons
    /// are exact and use the index): PostgreSQL casts text to the column's
    /// type; MySQL compares a decimal exactly only with a decimal (a string
    /// would be compared as a double); SQLite applies the column's affinity.
    pub(crate) fn pk_param(self, pk: &PkColumn, ph: &str) -> String {
        match (self, pk.kind) {
            (Dialect::Postgres, PkKind::Text | PkKind::Decimal) => {
                format!("CAST({ph} AS {})", pk.sql_type)
            }
            (Dialect::MySql, PkKind::Decimal) => format!("CAST({ph} AS DECIMAL(65,30))"),
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
        s.extend(col.aux.iter().map(|a| self.text_of(a)));
        s.join(", ")
    }

    /// A condition excluding the values `skip` names: those that start
    /// with its prefix and have the codec's shape (for a multi-column value:
    /// whose leading cells equal the prefix's); `None` when SQL cannot
    /// express it and nothing is filtered. A `CASE`, whose branches run in
    /// order on every database: the shape's checks only see values with
    /// the prefix.
    fn skip_condition(
        self,
        col: &ColumnRef,
        skip: &crate::Skip,
        binds: &mut Vec<Bind>,
    ) -> Option<String> {
        if col.has_cells() {
            return crate::cells::skip_condition(self, col, &skip.prefix, binds);
        }
        binds.push(self.prefix_bind(col, &skip.prefix));
        let mut whens = vec![format!(
            "{} <> {}",
            self.prefix_of(col, skip.prefix.len()),
            self.ph(binds.len())
        )];
        whens.extend(self.shape_refusals(col, &skip.census.shape, binds));
        let whens: String = whens.iter().map(|w| format!("WHEN {w} THEN 1 ")).collect();
        Some(format!("(CASE {whens}ELSE 0 END) = 1"))
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
        skip: Option<&crate::Skip>,
        limit: usize,
    ) -> (String, Vec<Bind>) {
        self.fetch_batch_of(self.select_list(col), col, after, skip, limit)
    }

    fn fetch_batch_of(
        self,
        select_list: String,
        col: &ColumnRef,
        after: Option<&[PkValue]>,
        skip: Option<&crate::Skip>,
        limit: usize,
    ) -> (String, Vec<Bind>) {
        let mut binds = Vec::new();
        let mut conds = vec![format!("{} IS NOT NULL", self.quote(&col.column))];
        if let Some(after) = after {
            conds.push(self.after_condition(col, after, &mut binds));
        }
        if let Some(c) = skip.and_then(|p| self.skip_condition(col, p, &mut binds)) {
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
        skip: Option<&crate::Skip>,
    ) -> (String, Vec<Bind>) {
        let mut binds = Vec::new();
        let mut sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {} IS NOT NULL",
            self.quote(&col.table),
            self.quote(&col.column)
        );
        if let Some(c) = skip.and_then(|p| self.skip_condition(col, p, &mut binds)) {
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
        let skip = crate::Skip {
            prefix: b"kt1:k2:a:".to_vec(),
            census: crate::KeyCensus::of(&keyturn_format::NativeCodec {
                encoding: keyturn_format::Encoding::Text,
            }),
        };
        let (sql, binds) = Dialect::Postgres.fetch_batch(&c, Some(&after), Some(&skip), 100);
        assert!(
            sql.contains(r#"(("a" > $1) OR ("a" = $2 AND "b" > CAST($3 AS uuid)))"#),
            "{sql}"
        );
        // Left out: values with the primary's prefix that also have the
        // format's shape (a damaged one is still read, to be named).
        assert!(
            sql.contains(r#"(CASE WHEN left("phone", 9) <> $4 THEN 1 WHEN length("phone") < 51 THEN 1 WHEN NOT ("phone" ~ $5) THEN 1 ELSE 0 END) = 1"#),
            "{sql}"
        );
        assert!(sql.ends_with(r#"ORDER BY "a", "b" LIMIT 100"#), "{sql}");
        assert_eq!(binds.len(), 5);
        let (sql, _) = Dialect::MySql.fetch_batch(&c, None, None, 5);
        assert!(
            sql.starts_with(
                "SELECT CAST(`a` AS SIGNED) AS `keyturn_a`, CAST(`b` AS CHAR) AS `keyturn_b`, `phone` FROM `patients`"
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
