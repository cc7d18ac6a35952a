//! How commands print: the `-o` format, and aligned text tables as `patronictl list`
//! and `etcdctl -w table` print them.

use clap::ValueEnum;

/// `-o table` (the default) or `-o json`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Renders rows under a header with `+---+` borders.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line: String = widths.iter().map(|w| format!("+{}", "-".repeat(w + 2))).collect::<String>() + "+\n";
    let fmt_row = |cells: Vec<String>| -> String {
        let mut out = String::new();
        for (i, w) in widths.iter().enumerate() {
            let cell = cells.get(i).cloned().unwrap_or_default();
            let pad = w - cell.chars().count();
            out.push_str(&format!("| {cell}{} ", " ".repeat(pad)));
        }
        out + "|\n"
    };
    let mut out = line.clone();
    out.push_str(&fmt_row(header.iter().map(|h| h.to_string()).collect()));
    out.push_str(&line);
    for row in rows {
        out.push_str(&fmt_row(row.clone()));
    }
    out.push_str(&line);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns_columns() {
        let t = super::render(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "+-----+----+\n| A   | BB |\n+-----+----+\n| xyz | 1  |\n+-----+----+\n");
    }
}
