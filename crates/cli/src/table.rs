//! Human tables: every table keyturn prints (status, run summaries, `due`,
//! `keys list`, `keys instances`, `bad-rows list`, `runs`, `audit list`) is
//! built here, so they share one look: a header row, no borders, two spaces
//! between columns, numbers right-aligned, each column as wide as its
//! widest cell (long table and column names keep the columns aligned).
//!
//! On a terminal a table fits the terminal's width: the free-text columns
//! a table names (details, reasons) wrap inside their column; names, ids,
//! counts and times are never split. Into a pipe or a file nothing wraps,
//! so each row stays one stable line for `grep`, `awk` and `cut`.

use comfy_table::{
    CellAlignment, ColumnConstraint, ContentArrangement, Table as Comfy, Width, presets,
};
use std::io::IsTerminal as _;

/// Spaces between two columns.
const GAP: u16 = 2;

/// The narrowest a wrapping column gets.
const MIN_WRAPPED: u16 = 30;

/// A table being built; [`Table::print`] writes it to stdout.
#[derive(Debug)]
pub struct Table {
    inner: Comfy,
    indent: usize,
    /// The columns that may wrap to fit a terminal.
    wrap: Vec<usize>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<I, S>(header: I) -> Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut inner = Comfy::new();
        inner.load_style(presets::NOTHING);
        inner.set_header(header.into_iter().map(Into::into).collect::<Vec<String>>());
        Table {
            inner,
            indent: 0,
            wrap: Vec::new(),
        }
    }

    /// Every line starts with `n` spaces (a table under a heading).
    pub fn indent(mut self, n: usize) -> Table {
        self.indent = n;
        self
    }

    /// Right-aligns these columns (counts, sizes, percentages), header
    /// included.
    pub fn right(mut self, columns: &[usize]) -> Table {
        for &i in columns {
            if let Some(c) = self.inner.column_mut(i) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
        self
    }

    /// These columns (free text) wrap to fit a terminal; the others keep
    /// their content's width.
    pub fn wrap(mut self, columns: &[usize]) -> Table {
        self.wrap.extend_from_slice(columns);
        self
    }

    /// Adds one row; missing trailing cells are empty.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner
            .add_row(cells.into_iter().map(Into::into).collect::<Vec<String>>());
        self
    }

    /// The table's lines for an output `width` columns wide (`None`: no
    /// limit, nothing wraps), without trailing spaces.
    pub fn render(&self, width: Option<u16>) -> Vec<String> {
        let mut t = self.inner.clone();
        let last = t.column_iter().count().saturating_sub(1);
        let widths = t.column_max_content_widths();
        for (i, c) in t.column_iter_mut().enumerate() {
            c.set_padding((0, if i == last { 0 } else { GAP }));
            if !self.wrap.contains(&i) {
                c.set_constraint(ColumnConstraint::ContentWidth);
            } else {
                // Text squeezed narrower than this is harder to read than
                // a line the terminal wraps.
                let least = widths.get(i).copied().unwrap_or(0).min(MIN_WRAPPED);
                c.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(least)));
            }
        }
        match width {
            Some(w) => {
                let indent = u16::try_from(self.indent).unwrap_or(u16::MAX);
                t.set_width(w.saturating_sub(indent).max(20));
                t.set_content_arrangement(ContentArrangement::Dynamic);
            }
            None => {
                t.set_content_arrangement(ContentArrangement::Disabled);
            }
        }
        let pad = " ".repeat(self.indent);
        t.lines()
            .map(|l| format!("{pad}{}", l.trim_end()))
            .collect()
    }

    /// Writes the table to stdout, as wide as the terminal when stdout is
    /// one.
    pub fn print(&self) {
        for line in self.render(stdout_width()) {
            outln!("{line}");
        }
    }
}

/// The terminal's width when stdout is a terminal, else `None`.
pub fn stdout_width() -> Option<u16> {
    let out = std::io::stdout();
    if !out.is_terminal() {
        return None;
    }
    terminal_size::terminal_size_of(&out).map(|(w, _)| w.0)
}

/// `1234567` as `1,234,567`: counts in tables and progress lines, grouped
/// the same way everywhere (indicatif's `HumanCount` groups with commas
/// too).
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte offsets where each column starts, from the header line's
    /// words (single-word headers).
    fn starts(header: &[&str], header_line: &str) -> Vec<usize> {
        header
            .iter()
            .map(|h| {
                header_line
                    .find(h)
                    .unwrap_or_else(|| panic!("{h} in {header_line}"))
            })
            .collect()
    }

    #[test]
    fn long_names_keep_the_columns_aligned() {
        let long = format!("{}.{}", "t".repeat(60), "c".repeat(60));
        let header = ["COLUMN", "ROWS", "STATE"];
        let mut t = Table::new(header).right(&[1]);
        t.row(["a.b", "7", "ok"]);
        t.row([long.as_str(), &group(1_234_567), "overdue"]);
        t.row(["x.y", "12", "due soon"]);
        let lines = t.render(None);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        let cols = starts(&header, &lines[0]);
        // Every row's cells start where the header's do: the STATE column
        // starts at one offset, past the longest name, in every row.
        for l in &lines[1..] {
            let state_at = cols[2];
            assert!(l.len() > state_at, "{lines:#?}");
            assert_ne!(&l[state_at..state_at + 1], " ", "{lines:#?}");
            assert_eq!(&l[state_at - GAP as usize..state_at], "  ", "{lines:#?}");
        }
        assert!(cols[1] > long.len(), "{lines:#?}");
        // Right-aligned: the counts end where the header ROWS ends.
        let rows_end = cols[1] + "ROWS".len();
        for l in &lines[1..] {
            let c = l.as_bytes()[rows_end - 1];
            assert!(c.is_ascii_digit(), "{lines:#?}");
        }
        // No trailing spaces, no wrapping without a width.
        assert!(lines.iter().all(|l| l == l.trim_end()));
        assert!(lines[2].contains(&long));
    }

    #[test]
    fn a_width_is_respected() {
        let mut t = Table::new(["COLUMN", "DETAILS"]).wrap(&[1]);
        t.row(["users.ssn", &"word ".repeat(40)]);
        t.row(["orders.card", "short"]);
        let lines = t.render(Some(60));
        assert!(lines.len() > 3, "the long cell wraps: {lines:#?}");
        for l in &lines {
            assert!(l.chars().count() <= 60, "{l:?} in {lines:#?}");
        }
        // Wrapped text stays in its column.
        let details = lines[0].find("DETAILS").unwrap_or_default();
        for l in lines.iter().skip(1).filter(|l| l.starts_with(' ')) {
            assert_eq!(l.find("word"), Some(details), "{lines:#?}");
        }
    }

    #[test]
    fn only_free_text_wraps() {
        let name = "a_rather_long_table_name.with_its_column";
        let mut t = Table::new(["COLUMN", "STATUS", "DETAILS"]).wrap(&[2]);
        t.row([name, "overdue", &"reason ".repeat(20)]);
        let lines = t.render(Some(90));
        assert!(lines[1].starts_with(name), "{lines:#?}");
        assert!(lines[1].contains("overdue"), "{lines:#?}");
        assert!(lines.len() > 3, "{lines:#?}");
        assert!(lines.iter().all(|l| l.chars().count() <= 90), "{lines:#?}");
    }

    #[test]
    fn indent_prefixes_every_line() {
        let mut t = Table::new(["A", "B"]).indent(2);
        t.row(["1", "2"]);
        let lines = t.render(None);
        assert_eq!(lines, vec!["  A  B", "  1  2"]);
    }

    #[test]
    fn groups_digits() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(u64::MAX), "18,446,744,073,709,551,615");
    }
}
