//! The census: rows per key id of one column, counted by the database in
//! one scan, for every codec's format.
//!
//! Each non-NULL value is put in one of three groups by a single SQL
//! expression, the *key token* `k` (see [`Dialect::census_token`]):
//!
//! - `k` is a token naming the key, read from where the format keeps it,
//!   only when the whole value has the codec's [`Shape`] (the separators,
//!   the id's charset and length, a body of the right alphabet and length);
//!   Rust then turns the token into a key id
//!   ([`keyturn_format::key_id_from_token`]: base64 or hex decoding, a
//!   version byte mapped through the codec's table) and validates it;
//! - `k` is `''` for a value of the codec's format that names no key (Fernet,
//!   Laravel, Lockbox, a Rails value without a key reference): its key is
//!   decided by decryption;
//! - `k` is NULL for everything else: plaintext, garbage, another format, a
//!   value stored with the wrong storage class or not as ASCII text. No part
//!   of such a value ever leaves the database.
//!
//! The statement is `SELECT k, COUNT(*), COUNT(v) FROM (SELECT <k>, c AS v
//! FROM t) GROUP BY k`, so NULLs (in the `NULL` group, told apart by
//! `COUNT(v)`) and every group cost one scan.
//!
//! Shapes are regular expressions over text values (PostgreSQL `~`,
//! MariaDB/MySQL `REGEXP` made case-sensitive with `(?-i)`, SQLite `REGEXP`
//! through sqlx's function on connections that register it, after SQLite
//! checked the value is printable ASCII so the function never sees invalid
//! UTF-8), JSON functions where the database can test JSON validity without
//! failing on invalid input (MariaDB/MySQL `JSON_VALID`, SQLite
//! `json_valid`; on PostgreSQL a cast of one invalid value to `jsonb` fails
//! the whole statement, so it matches the shape's patterns), and byte checks in `CASE` chains for binary formats (a `CASE`
//! evaluates its branches in order, so no function meets a value too short
//! for it).

use crate::sql::{Bind, Dialect};
use crate::{ColumnCounts, ColumnRef, KeyCount, ValueKind};
use keyturn_format::{Codec, KEY_ID_PATTERN, KeyIdLocation, Shape, key_id_from_token};

/// What the census needs to know of a column's codec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCensus {
    /// Where the codec's values name their key, if they do.
    pub location: KeyIdLocation,
    /// What a whole value of the codec's format looks like, as SQL checks
    /// it.
    pub shape: Shape,
}

impl KeyCensus {
    /// The census of `codec`: its key id location and shape.
    pub fn of(codec: &dyn Codec) -> KeyCensus {
        KeyCensus {
            location: codec.key_id_location(),
            shape: codec.shape(),
        }
    }

    /// Whether the format names the key in its values (SQL can count rows
    /// per key). `false`: every value's key is decided by decryption.
    pub fn has_key_ids(&self) -> bool {
        self.location != KeyIdLocation::None
    }
}

/// Printable ASCII plus tab, line feed and carriage return: a SQLite text
/// value with any other byte is not any codec's text.
const SQLITE_NOT_ASCII: &str = "'*[^' || char(9, 10, 13) || ' -~]*'";

impl Dialect {
    /// The value as text, for shapes and tokens of text formats: a binary
    /// column holding a text format is read byte for byte.
    fn census_text(self, col: &ColumnRef) -> String {
        let c = self.quote(&col.column);
        match (self, col.kind) {
            (_, ValueKind::Text) => c,
            // 'escape' keeps printable ASCII as is and escapes everything
            // else with a backslash, which no shape accepts.
            (Dialect::Postgres, ValueKind::Binary) => format!("encode({c}, 'escape')"),
            (Dialect::MySql, ValueKind::Binary) => format!("CONVERT({c} USING latin1)"),
            (Dialect::Sqlite, ValueKind::Binary) => format!("CAST({c} AS TEXT)"),
        }
    }

    /// SQLite's storage class a value of this column must have.
    fn sqlite_class(col: &ColumnRef) -> &'static str {
        match col.kind {
            ValueKind::Text => "text",
            ValueKind::Binary => "blob",
        }
    }

    fn regex_match(self, text: &str, pattern: &str, binds: &mut Vec<Bind>) -> String {
        match self {
            Dialect::Postgres => {
                binds.push(Bind::Str(pattern.to_owned()));
                format!("{text} ~ {}", self.ph(binds.len()))
            }
            Dialect::MySql => {
                // Case-sensitive whatever the column's collation.
                binds.push(Bind::Str(format!("(?-i){pattern}")));
                format!("{text} REGEXP {}", self.ph(binds.len()))
            }
            Dialect::Sqlite => {
                binds.push(Bind::Str(pattern.to_owned()));
                format!("{text} REGEXP {}", self.ph(binds.len()))
            }
        }
    }

    /// `WHEN <not this shape> THEN NULL` branches of a `CASE` (each one a
    /// reason to refuse the value), in evaluation order.
    pub(crate) fn shape_refusals(
        self,
        col: &ColumnRef,
        shape: &Shape,
        binds: &mut Vec<Bind>,
    ) -> Vec<String> {
        let c = self.quote(&col.column);
        let text = self.census_text(col);
        let mut out = Vec::new();
        if self == Dialect::Sqlite {
            out.push(format!("typeof({c}) <> '{}'", Self::sqlite_class(col)));
        }
        match shape {
            Shape::Text(patterns) => {
                if self == Dialect::Sqlite {
                    out.push(format!("{text} GLOB {SQLITE_NOT_ASCII}"));
                }
                for p in patterns {
                    out.push(format!("NOT ({})", self.regex_match(&text, p, binds)));
                }
            }
            Shape::TextMin { min_len, patterns } => {
                if self == Dialect::Sqlite {
                    out.push(format!("{text} GLOB {SQLITE_NOT_ASCII}"));
                }
                // Characters, not bytes (the text is ASCII once it matches).
                let len = match self {
                    Dialect::MySql => "CHAR_LENGTH",
                    _ => "length",
                };
                out.push(format!("{len}({text}) < {min_len}"));
                for p in patterns {
                    out.push(format!("NOT ({})", self.regex_match(&text, p, binds)));
                }
            }
            // Without a JSON validity test that survives invalid input
            // (PostgreSQL), the shape's patterns over the text.
            Shape::Json { patterns, .. } if !self.capabilities().json_valid => {
                for p in patterns {
                    out.push(format!("NOT ({})", self.regex_match(&text, p, binds)));
                }
            }
            Shape::Json { members, .. } => match self {
                Dialect::MySql => {
                    out.push(format!("NOT JSON_VALID({text})"));
                    out.push(format!("JSON_TYPE({text}) <> 'OBJECT'"));
                    for m in members {
                        out.push(format!(
                            "COALESCE(JSON_TYPE(JSON_EXTRACT({text}, '{}')), '') <> 'STRING'",
                            json_path(m)
                        ));
                    }
                }
                _ => {
                    out.push(format!("{text} GLOB {SQLITE_NOT_ASCII}"));
                    out.push(format!("NOT json_valid({text})"));
                    out.push(format!("json_type({text}) <> 'object'"));
                    for m in members {
                        out.push(format!(
                            "COALESCE(json_type({text}, '{}'), '') <> 'text'",
                            json_path(m)
                        ));
                    }
                }
            },
            Shape::Binary { min_len } => {
                let len = match self {
                    Dialect::MySql => "LENGTH",
                    _ => "length",
                };
                out.push(format!("{len}({c}) < {min_len}"));
            }
            Shape::Cells => {}
            // A shape this build does not know: nothing is recognized.
            _ => out.push("1 = 1".into()),
        }
        out
    }

    /// The key token of a value known to have the codec's shape, or `None`
    /// when the location names no key: `(expression, keyless_when_null)`,
    /// where `keyless_when_null` says a NULL token still means "this format,
    /// key decided by decryption" (an optional key reference).
    fn token_expr(
        self,
        col: &ColumnRef,
        loc: &KeyIdLocation,
        binds: &mut Vec<Bind>,
    ) -> Option<(String, bool)> {
        let c = self.quote(&col.column);
        let text = self.census_text(col);
        Some(match loc {
            KeyIdLocation::None => return None,
            KeyIdLocation::TextDelimited { prefix, terminator } => {
                let s = prefix.len() + 1;
                let term = sql_string_literal(&(*terminator as char).to_string());
                (
                    match self {
                        Dialect::Postgres => format!("split_part(substr({text}, {s}), {term}, 1)"),
                        Dialect::MySql => format!(
                            "CAST(SUBSTRING_INDEX(SUBSTRING({text}, {s}), {term}, 1) AS BINARY)"
                        ),
                        Dialect::Sqlite => {
                            format!("substr({text}, {s}, instr(substr({text}, {s}), {term}) - 1)")
                        }
                    },
                    false,
                )
            }
            KeyIdLocation::JsonPath(path) => {
                (self.json_token(col, path, KEY_ID_PATTERN, binds), false)
            }
            KeyIdLocation::JsonPathBase64(path) => (
                self.json_token(col, path, "[A-Za-z0-9+/]{1,64}={0,2}", binds),
                true,
            ),
            KeyIdLocation::BinaryLengthPrefixed { magic, len_offset } => {
                let hex: String = magic.iter().map(|b| format!("{b:02X}")).collect();
                let (mlen, lpos, start) = (magic.len(), len_offset + 1, len_offset + 2);
                // Header, id, a 12-byte nonce and the tag at least.
                let rest = len_offset + 5 + 12 + keyturn_format::TAG_LEN;
                (
                    match self {
                        Dialect::Postgres => format!(
                            "CASE WHEN length({c}) <= {lpos} THEN NULL \
                             WHEN substring({c} from 1 for {mlen}) <> '\\x{hex}'::bytea THEN NULL \
                             WHEN get_byte({c}, {len_offset}) NOT BETWEEN 1 AND 32 THEN NULL \
                             WHEN length({c}) < {rest} + get_byte({c}, {len_offset}) THEN NULL \
                             ELSE encode(substring({c} from {start} for get_byte({c}, {len_offset})), 'hex') END"
                        ),
                        Dialect::MySql => format!(
                            "CASE WHEN LENGTH({c}) <= {lpos} THEN NULL \
                             WHEN LEFT({c}, {mlen}) <> X'{hex}' THEN NULL \
                             WHEN ORD(SUBSTRING({c}, {lpos}, 1)) NOT BETWEEN 1 AND 32 THEN NULL \
                             WHEN LENGTH({c}) < {rest} + ORD(SUBSTRING({c}, {lpos}, 1)) THEN NULL \
                             ELSE HEX(SUBSTRING({c}, {start}, ORD(SUBSTRING({c}, {lpos}, 1)))) END"
                        ),
                        Dialect::Sqlite => {
                            // The length byte read as a number: bytes 1..=32
                            // are one-byte UTF-8, anything else fails the range.
                            let l = format!(
                                "COALESCE(unicode(CAST(substr({c}, {lpos}, 1) AS TEXT)), 0)"
                            );
                            format!(
                                "CASE WHEN length({c}) <= {lpos} THEN NULL \
                                 WHEN substr({c}, 1, {mlen}) <> X'{hex}' THEN NULL \
                                 WHEN {l} NOT BETWEEN 1 AND 32 THEN NULL \
                                 WHEN length({c}) < {rest} + {l} THEN NULL \
                                 ELSE hex(substr({c}, {start}, {l})) END"
                            )
                        }
                    },
                    false,
                )
            }
            KeyIdLocation::BinaryByte { offset, .. } => {
                let at = offset + 1;
                (
                    match self {
                        Dialect::Postgres => {
                            format!("encode(substring({c} from {at} for 1), 'hex')")
                        }
                        Dialect::MySql => format!("HEX(SUBSTRING({c}, {at}, 1))"),
                        Dialect::Sqlite => format!("hex(substr({c}, {at}, 1))"),
                    },
                    false,
                )
            }
            KeyIdLocation::Cell(i) => {
                let cell = col.cells.get(*i)?;
                let q = self.quote(&cell.name);
                (
                    match (self, cell.kind) {
                        // Binary on MySQL: case-insensitive collations would
                        // merge ids.
                        (Dialect::MySql, ValueKind::Text) => {
                            format!("CAST(CONVERT({q} USING utf8mb4) AS BINARY)")
                        }
                        (Dialect::MySql, ValueKind::Binary) => q,
                        (Dialect::Postgres, ValueKind::Binary) => format!("encode({q}, 'escape')"),
                        (Dialect::Sqlite, _) => format!("CAST({q} AS TEXT)"),
                        (Dialect::Postgres, ValueKind::Text) => q,
                    },
                    false,
                )
            }
            _ => return None,
        })
    }

    /// A JSON string member as the token: JSON functions where the shape
    /// was checked with them, else the first match of `"name": "<token>"`.
    fn json_token(
        self,
        col: &ColumnRef,
        path: &[&str],
        token_pattern: &str,
        binds: &mut Vec<Bind>,
    ) -> String {
        let text = self.census_text(col);
        if !self.capabilities().json_valid {
            // PostgreSQL (no JSON function that survives invalid input).
            let name = path.last().copied().unwrap_or_default();
            binds.push(Bind::Str(format!(
                "\"{name}\"\\s*:\\s*\"({token_pattern})\""
            )));
            return format!("substring({text} from {})", self.ph(binds.len()));
        }
        match self {
            Dialect::MySql => format!(
                "CAST(JSON_UNQUOTE(JSON_EXTRACT({text}, '{}')) AS BINARY)",
                json_path(path)
            ),
            _ => format!("json_extract({text}, '{}')", json_path(path)),
        }
    }

    /// The key-token expression of the census (module docs): a token, `''`
    /// or NULL.
    pub(crate) fn census_token(
        self,
        col: &ColumnRef,
        census: &KeyCensus,
        binds: &mut Vec<Bind>,
    ) -> String {
        let refusals = self.shape_refusals(col, &census.shape, binds);
        let accepted = match self.token_expr(col, &census.location, binds) {
            None => "''".to_owned(),
            Some((tok, true)) => format!("COALESCE({tok}, '')"),
            Some((tok, false)) => tok,
        };
        if refusals.is_empty() {
            return accepted;
        }
        let whens: String = refusals
            .iter()
            .map(|r| format!("WHEN {r} THEN NULL "))
            .collect();
        format!("CASE {whens}ELSE {accepted} END")
    }

    /// The census statement (module docs): rows `(k, rows, values)`.
    pub(crate) fn census(self, col: &ColumnRef, census: &KeyCensus) -> (String, Vec<Bind>) {
        let mut binds = Vec::new();
        let k = self.census_token(col, census, &mut binds);
        let t = self.quote(&col.table);
        let v = self.quote(&col.column);
        (
            format!(
                "SELECT k, COUNT(*), COUNT(v) FROM (SELECT {k} AS k, {v} AS v FROM {t}) keyturn_census GROUP BY k"
            ),
            binds,
        )
    }

    /// Primary keys of up to `limit` rows whose key token is one of
    /// `tokens`, in key order (the preflight names the rows under a key it
    /// cannot decrypt).
    pub(crate) fn rows_with_tokens(
        self,
        col: &ColumnRef,
        census: &KeyCensus,
        tokens: &[Vec<u8>],
        limit: usize,
    ) -> (String, Vec<Bind>) {
        let mut binds = Vec::new();
        let k = self.census_token(col, census, &mut binds);
        let mut phs = Vec::with_capacity(tokens.len());
        for t in tokens {
            binds.push(match self {
                Dialect::MySql => Bind::Bytes(t.clone()),
                _ => Bind::Str(String::from_utf8_lossy(t).into_owned()),
            });
            phs.push(self.ph(binds.len()));
        }
        let pk_select: Vec<String> = col.pk.iter().map(|p| self.pk_select(p)).collect();
        let pk_order: Vec<String> = col.pk.iter().map(|p| self.quote(&p.name)).collect();
        (
            format!(
                "SELECT {} FROM {} WHERE {k} IN ({}) ORDER BY {} LIMIT {limit}",
                pk_select.join(", "),
                self.quote(&col.table),
                phs.join(", "),
                pk_order.join(", ")
            ),
            binds,
        )
    }
}

/// `$.a.b` for a path of plain member names.
fn json_path(path: &[&str]) -> String {
    let mut s = String::from("$");
    for m in path {
        s.push('.');
        s.push_str(m);
    }
    s
}

/// A single-quoted SQL string literal for constant ASCII text of our own
/// (never user data).
fn sql_string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Folds the census rows `(token, rows, values)` into counts: tokens into
/// key ids (an invalid one makes the value unrecognized), `''` into
/// [`ColumnCounts::keyless`], NULL into NULLs and unrecognized values.
pub(crate) fn fold(
    census: &KeyCensus,
    rows: impl IntoIterator<Item = (Option<Vec<u8>>, u64, u64)>,
) -> ColumnCounts {
    let mut counts = ColumnCounts::default();
    for (token, rows, values) in rows {
        counts.total += rows;
        counts.nulls += rows - values.min(rows);
        if values == 0 {
            continue;
        }
        match token {
            None => counts.unrecognized += values,
            Some(t) if t.is_empty() => counts.keyless += values,
            Some(t) => match key_id_from_token(&census.location, &t) {
                None => counts.unrecognized += values,
                Some(id) => match counts.by_key.iter_mut().find(|k| k.key_id == id.as_str()) {
                    Some(k) => {
                        k.rows += values;
                        k.tokens.push(t);
                    }
                    None => counts.by_key.push(KeyCount {
                        key_id: id.to_string(),
                        rows: values,
                        tokens: vec![t],
                    }),
                },
            },
        }
    }
    counts.by_key.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PkKind;

    fn census(location: KeyIdLocation, shape: Shape) -> KeyCensus {
        KeyCensus { location, shape }
    }

    #[test]
    fn tokens_are_only_read_from_well_formed_values() {
        let col = crate::test_column("t", "c", &[("id", PkKind::Int)], "bigint", ValueKind::Text);
        let cen = census(
            KeyIdLocation::TextDelimited {
                prefix: "",
                terminator: b':',
            },
            Shape::Text(vec![format!(
                "^{KEY_ID_PATTERN}:[A-Za-z0-9+/]{{54,}}={{0,2}}$"
            )]),
        );
        let (sql, binds) = Dialect::Postgres.census(&col, &cen);
        assert!(
            sql.contains(
                r#"CASE WHEN NOT ("c" ~ $1) THEN NULL ELSE split_part(substr("c", 1), ':', 1) END"#
            ),
            "{sql}"
        );
        assert_eq!(binds.len(), 1);
        let (sql, _) = Dialect::Sqlite.census(&col, &cen);
        assert!(sql.contains("typeof(\"c\") <> 'text'"), "{sql}");
        assert!(sql.contains("GLOB '*[^' || char(9, 10, 13)"), "{sql}");
        let (sql, binds) = Dialect::MySql.census(&col, &cen);
        assert!(sql.contains("REGEXP ?"), "{sql}");
        assert!(matches!(&binds[0], Bind::Str(s) if s.starts_with("(?-i)^")));
    }

    #[test]
    fn minimum_lengths_are_checked_before_the_patterns() {
        let col = crate::test_column("t", "c", &[("id", PkKind::Int)], "bigint", ValueKind::Text);
        let cen = census(
            KeyIdLocation::TextDelimited {
                prefix: "",
                terminator: b':',
            },
            Shape::TextMin {
                min_len: 56,
                patterns: vec![format!("^{KEY_ID_PATTERN}:[A-Za-z0-9+/]*={{0,2}}$")],
            },
        );
        let (sql, binds) = Dialect::Postgres.census(&col, &cen);
        let len = sql.find(r#"length("c") < 56"#).expect("length check");
        let re = sql.find(r#"NOT ("c" ~ $1)"#).expect("pattern");
        assert!(len < re, "{sql}");
        assert_eq!(binds.len(), 1);
        let (sql, _) = Dialect::MySql.census(&col, &cen);
        assert!(sql.contains("CHAR_LENGTH(`c`) < 56"), "{sql}");
        let (sql, _) = Dialect::Sqlite.census(&col, &cen);
        assert!(sql.contains(r#"length("c") < 56"#), "{sql}");
    }

    #[test]
    fn folding_validates_tokens() {
        let cen = census(
            KeyIdLocation::TextDelimited {
                prefix: "",
                terminator: b':',
            },
            Shape::Text(vec![]),
        );
        let c = fold(
            &cen,
            vec![
                (None, 5, 2),
                (Some(b"".to_vec()), 3, 3),
                (Some(b"k1".to_vec()), 4, 4),
                (Some(b"bad id".to_vec()), 1, 1),
            ],
        );
        assert_eq!((c.total, c.nulls, c.keyless, c.unrecognized), (13, 3, 3, 3));
        assert_eq!(c.by_key.len(), 1);
        assert_eq!((c.by_key[0].key_id.as_str(), c.by_key[0].rows), ("k1", 4));
    }
}
