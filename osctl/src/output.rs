//! Output of data commands: `-o table` (aligned columns), `json` or `yaml`.
//!
//! Every data command produces rows that implement [`Row`]; a row per node (or per
//! item of a node) names the node first. A node that failed gives a row with its
//! error instead of data, so fan-out output shows every node.

use std::io::Write;

use serde::Serialize;

/// The output formats of `-o`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document (an array of rows).
    Json,
    /// One YAML document (a list of rows).
    Yaml,
}

/// A row of a data command's output.
pub trait Row: Serialize {
    /// Column headings of the table format.
    fn headers() -> &'static [&'static str];
    /// The cells of this row, in heading order.
    fn cells(&self) -> Vec<String>;
}

/// A node's row, or its error.
#[derive(Debug, Serialize)]
pub struct NodeRow<T> {
    /// The node's name (or address, when it could not answer).
    pub node: String,
    /// Why the node could not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The data, when it answered.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

/// Prints `rows` in `format` to stdout.
pub fn print<T: Row>(format: Format, rows: &[NodeRow<T>]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, rows).map_err(std::io::Error::other)?;
            writeln!(out)
        }
        Format::Yaml => {
            let text = serde_yaml_ng::to_string(rows).map_err(std::io::Error::other)?;
            out.write_all(text.as_bytes())
        }
        Format::Table => {
            let mut table = vec![
                std::iter::once("NODE")
                    .chain(T::headers().iter().copied())
                    .map(String::from)
                    .collect(),
            ];
            for row in rows {
                let mut cells = vec![row.node.clone()];
                match (&row.data, &row.error) {
                    (_, Some(error)) => cells.push(format!("error: {error}")),
                    (Some(data), None) => cells.extend(data.cells()),
                    (None, None) => {}
                }
                table.push(cells);
            }
            out.write_all(render_table(&table).as_bytes())
        }
    }
}

/// Aligns cells into columns two spaces apart; the last cell of a row is not padded
/// (so an error message may run past the columns).
pub fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter(|r| r.len() > c + 1)
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (c, cell) in row.iter().enumerate() {
            if c == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        text.push('\n');
    }
    text
}

/// Bytes in binary units, as people read them (`12.5 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_leave_the_last_cell_free() {
        let rows = vec![
            vec!["NODE".into(), "VERSION".into()],
            vec!["n1".into(), "0.1.0".into()],
            vec!["longer-node".into(), "error: connection refused".into()],
        ];
        assert_eq!(
            render_table(&rows),
            "NODE         VERSION\nn1           0.1.0\nlonger-node  error: connection refused\n"
        );
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(5 * 1024 * 1024 + 512 * 1024), "5.5 MiB");
    }
}
