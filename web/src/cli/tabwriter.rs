//! A minimal Go `text/tabwriter` for the tables promtool prints.
//!
//! promtool uses `tabwriter.NewWriter(out, 13, 0, 2, ' ', 0)`: every cell but the last of a
//! line is padded with spaces to the column width, which is the widest cell of that column plus
//! 2, and at least 13. Widths count characters (runes), not bytes. The last cell of each line is
//! printed as is. This implementation assumes every line has the same number of cells (true for
//! promtool's tables).

/// Lays out `rows` (each a list of cells) as Go's tabwriter with promtool's settings does, one
/// `\n`-terminated line per row.
pub fn format_table(rows: &[Vec<String>]) -> String {
    const MIN_WIDTH: usize = 13;
    const PADDING: usize = 2;
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; ncols];
    for row in rows {
        for (j, cell) in row.iter().enumerate() {
            if j + 1 < row.len() {
                widths[j] = widths[j].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        for (j, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < row.len() {
                let w = (widths[j] + PADDING).max(MIN_WIDTH);
                let pad = w - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_like_go_tabwriter() {
        let rows = vec![
            vec![
                "BLOCK ULID".to_string(),
                "NUM".to_string(),
                "SIZE".to_string(),
            ],
            vec![
                "01M8BBP7NGC1DJPDEQ4B9A263N".to_string(),
                "128580".to_string(),
                "382KiB547B".to_string(),
            ],
        ];
        let got = format_table(&rows);
        assert_eq!(
            got,
            "BLOCK ULID                  NUM          SIZE\n01M8BBP7NGC1DJPDEQ4B9A263N  128580       382KiB547B\n"
        );
    }

    #[test]
    fn counts_characters_not_bytes() {
        let rows = vec![
            vec!["µµµµµµµµµµµµµµ".to_string(), "x".to_string()],
            vec!["a".to_string(), "y".to_string()],
        ];
        let got = format_table(&rows);
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines[1], format!("a{}y", " ".repeat(15)));
    }
}
