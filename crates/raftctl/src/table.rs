//! How commands print: the output formats (`-o`, and `-f/--format` where patronictl
//! has `--format`) and one printer for tabular results in all of them, shaped as
//! patronictl's `print_output`: `pretty` an aligned table with an optional title in
//! its top border, `tsv` a header line and one line per row, `json` an array of
//! objects (keys in column order, as Python's `json.dumps`), `yaml` the same list with
//! sorted keys (as PyYAML's `safe_dump`).

use clap::ValueEnum;
use serde_json::Value;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// An aligned table (patronictl's `pretty`).
    #[value(alias = "table")]
    Pretty,
    /// Tab (or `--delimiter`) separated values with a header line.
    Tsv,
    Json,
    #[value(alias = "yml")]
    Yaml,
}

impl Output {
    /// The command's own `-f/--format`, else the global `-o`, else the command's default.
    pub fn pick(local: Option<Output>, global: Option<Output>, default: Output) -> Output {
        local.or(global).unwrap_or(default)
    }
}

/// A result to print: named columns and rows of cells. Cells are JSON values so that
/// `json`/`yaml` keep numbers and nulls; in text a null prints as Python's `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Printed in the top border of a `pretty` table (`+ Cluster: demo (7301...) ---+`).
    pub title: Option<String>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// `json`/`yaml` leave out empty cells (patronictl does so for titled tables).
    pub omit_empty: bool,
}

/// A cell as text: strings as they are, null as `None`, numbers and booleans in JSON.
pub fn text(cell: &Value) -> String {
    match cell {
        Value::String(s) => s.clone(),
        Value::Null => "None".to_string(),
        other => other.to_string(),
    }
}

/// `value` as Python's `json.dumps` writes it: `", "` between items, `": "` after keys.
fn python_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let pairs: Vec<String> = map.iter().map(|(k, v)| format!("{}: {}", Value::String(k.clone()), python_json(v))).collect();
            format!("{{{}}}", pairs.join(", "))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(python_json).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

fn is_empty(cell: &Value) -> bool {
    cell.is_null() || cell.as_str() == Some("")
}

/// `table` in `output`, ending with a newline; `delimiter` separates `tsv` columns.
pub fn format(output: Output, table: &Table, delimiter: &str) -> anyhow::Result<String> {
    let kept = |row: &[Value]| -> Vec<(String, Value)> {
        table.columns.iter().cloned().zip(row.iter().cloned()).filter(|(_, v)| !(table.omit_empty && is_empty(v))).collect()
    };
    Ok(match output {
        Output::Json => {
            let objects: Vec<String> = table
                .rows
                .iter()
                .map(|row| {
                    let pairs: Vec<String> =
                        kept(row).iter().map(|(k, v)| format!("{}: {}", Value::String(k.clone()), python_json(v))).collect();
                    format!("{{{}}}", pairs.join(", "))
                })
                .collect();
            format!("[{}]\n", objects.join(", "))
        }
        Output::Yaml => {
            let objects: Vec<std::collections::BTreeMap<String, Value>> =
                table.rows.iter().map(|row| kept(row).into_iter().collect()).collect();
            serde_norway::to_string(&objects)?
        }
        Output::Tsv => {
            let mut out = String::new();
            for line in std::iter::once(table.columns.clone()).chain(table.rows.iter().map(|r| r.iter().map(text).collect())) {
                out.push_str(&line.join(delimiter));
                out.push('\n');
            }
            out
        }
        Output::Pretty => {
            let header: Vec<&str> = table.columns.iter().map(String::as_str).collect();
            let cells: Vec<Vec<String>> = table.rows.iter().map(|r| r.iter().map(text).collect()).collect();
            let body = render(&header, &cells);
            match &table.title {
                Some(title) => with_title(&body, title),
                None => body,
            }
        }
    })
}

/// For commands whose JSON is their own records (`members`, `events`): `value` as
/// pretty JSON or YAML, or None for the text formats.
pub fn structured(output: Output, value: &impl serde::Serialize) -> anyhow::Result<Option<String>> {
    Ok(match output {
        Output::Json => Some(serde_json::to_string_pretty(value)? + "\n"),
        Output::Yaml => Some(serde_norway::to_string(value)?),
        Output::Pretty | Output::Tsv => None,
    })
}

/// Text cells under `header` as a table in `output` (`pretty` or `tsv`).
pub fn text_table(output: Output, header: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<String> {
    let rows = rows.into_iter().map(|r| r.into_iter().map(Value::from).collect()).collect();
    format(output, &Table { title: None, columns: header.iter().map(|h| h.to_string()).collect(), rows, omit_empty: false }, "\t")
}

/// Puts `title` into the table's top border, as patronictl does: `+ Cluster: x -----+`.
fn with_title(body: &str, title: &str) -> String {
    let (border, rest) = body.split_once('\n').unwrap_or((body, ""));
    let title = format!("+ {title} ");
    // The border is ASCII, so a char count of the title is a valid byte index into it.
    let title_len = title.chars().count();
    let top = if title_len + 1 < border.len() { format!("{title}{}", &border[title_len..]) } else { format!("{title}-+") };
    format!("{top}\n{rest}")
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
    use super::*;
    use serde_json::json;

    #[test]
    fn aligns_columns() {
        let t = super::render(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "+-----+----+\n| A   | BB |\n+-----+----+\n| xyz | 1  |\n+-----+----+\n");
    }

    fn sample(omit_empty: bool) -> Table {
        Table {
            title: Some("Cluster: demo (7301)".into()),
            columns: vec!["Member".into(), "TL".into(), "Lag".into()],
            rows: vec![vec![json!("node1"), json!(2), json!("")], vec![json!("node2"), json!(2), json!(16)]],
            omit_empty,
        }
    }

    #[test]
    fn prints_every_format_as_patronictl() {
        let t = sample(true);
        assert_eq!(
            format(Output::Json, &t, "\t").expect("json"),
            "[{\"Member\": \"node1\", \"TL\": 2}, {\"Member\": \"node2\", \"TL\": 2, \"Lag\": 16}]\n"
        );
        assert_eq!(format(Output::Yaml, &t, "\t").expect("yaml"), "- Member: node1\n  TL: 2\n- Lag: 16\n  Member: node2\n  TL: 2\n");
        assert_eq!(format(Output::Tsv, &t, "\t").expect("tsv"), "Member\tTL\tLag\nnode1\t2\t\nnode2\t2\t16\n");
        assert_eq!(format(Output::Tsv, &t, ";").expect("tsv").lines().next(), Some("Member;TL;Lag"));
        let pretty = format(Output::Pretty, &t, "\t").expect("pretty");
        assert_eq!(
            pretty,
            "+ Cluster: demo (7301) -+\n| Member | TL | Lag |\n+--------+----+-----+\n| node1  | 2  |     |\n| node2  | 2  | 16  |\n+--------+----+-----+\n"
        );
    }

    #[test]
    fn untitled_tables_keep_empty_cells_and_print_null_as_none() {
        let t = Table { title: None, rows: vec![vec![json!("x"), Value::Null, json!("")]], ..sample(false) };
        assert_eq!(format(Output::Json, &t, "\t").expect("json"), "[{\"Member\": \"x\", \"TL\": null, \"Lag\": \"\"}]\n");
        assert_eq!(format(Output::Tsv, &t, "\t").expect("tsv"), "Member\tTL\tLag\nx\tNone\t\n");
        assert!(format(Output::Pretty, &t, "\t").expect("pretty").starts_with("+--------+------+-----+\n"));
        assert_eq!(format(Output::Json, &Table { rows: vec![], ..t.clone() }, "\t").expect("json"), "[]\n");
        let nested = Table { rows: vec![vec![json!({"b": [1, 2], "a": {"c": null}}), json!(1), json!(2)]], ..t };
        assert!(format(Output::Json, &nested, "\t").expect("json").starts_with("[{\"Member\": {\"a\": {\"c\": null}, \"b\": [1, 2]}, "));
    }

    #[test]
    fn a_long_title_widens_the_border() {
        let t = Table { title: Some("Cluster: a-very-long-cluster-name (uninitialized)".into()), ..sample(false) };
        let pretty = format(Output::Pretty, &t, "\t").expect("pretty");
        assert!(pretty.starts_with("+ Cluster: a-very-long-cluster-name (uninitialized) -+\n"), "{pretty}");
    }

    #[test]
    fn the_command_flag_wins_over_the_global_one() {
        assert_eq!(Output::pick(Some(Output::Yaml), Some(Output::Json), Output::Pretty), Output::Yaml);
        assert_eq!(Output::pick(None, Some(Output::Json), Output::Tsv), Output::Json);
        assert_eq!(Output::pick(None, None, Output::Tsv), Output::Tsv);
    }
}
