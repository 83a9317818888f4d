//! Output: `-o table` (aligned columns, as kubectl prints them), `json` or `yaml`;
//! and the small renderings tables share (ages, short ids, timestamps).

use std::io::Write;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use crate::{Error, Result};

/// The output formats of `-o`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns (or text) for people.
    #[default]
    Table,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// `value` as a JSON or YAML document ending in a newline; `None` for the table
/// format, which each command renders itself.
pub fn document<T: Serialize>(
    format: Format,
    what: &'static str,
    value: &T,
) -> Result<Option<String>> {
    match format {
        Format::Table => Ok(None),
        Format::Json => {
            let mut text = serde_json::to_string_pretty(value)
                .map_err(|source| Error::Json { what, source })?;
            text.push('\n');
            Ok(Some(text))
        }
        Format::Yaml => serde_yaml_ng::to_string(value)
            .map(Some)
            .map_err(|source| Error::Yaml { what, source }),
    }
}

/// Writes `text` to stdout.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}

/// Writes `line` and a newline to stdout (an error, not a panic, when the reader has
/// gone away).
pub fn line(line: impl std::fmt::Display) -> Result<()> {
    print(&format!("{line}\n"))
}

/// Aligns cells into columns three spaces apart, as kubectl does; the last cell of a
/// row is not padded (so a message may run past the columns).
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
                text.push_str(&format!("{cell:<width$}   ", width = widths[c]));
            }
        }
        text.push('\n');
    }
    text
}

/// The time since `created`, the way kubectl's AGE column shows it (`45s`, `5m30s`,
/// `3h`, `2d5h`); `<unknown>` without a timestamp.
pub fn age(created: Option<&Time>, now: Timestamp) -> String {
    let Some(created) = created else {
        return "<unknown>".to_owned();
    };
    let seconds = (now.as_second() - created.0.as_second()).max(0);
    human_duration(seconds)
}

/// kubectl's `HumanDuration`: two units while the larger is small, then one.
pub fn human_duration(seconds: i64) -> String {
    let minutes = seconds / 60;
    let hours = seconds / 3600;
    let days = hours / 24;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 3 * 60 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 8 * 24 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if days < 2 * 365 {
        format!("{days}d")
    } else {
        let years = days / 365;
        match days % 365 {
            d if d == 0 || years >= 8 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        }
    }
}

/// A boot id cut to its first 8 characters, enough to tell boots apart in a column.
pub fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}

/// An optional value, or `-` (a table cell is never empty, so columns stay aligned).
pub fn or_dash(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => "-".to_owned(),
    }
}

/// A timestamp in RFC 3339 (UTC, seconds), or `-`.
pub fn time(value: Option<&Time>) -> String {
    value.map_or_else(|| "-".to_owned(), |t| t.0.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_leave_the_last_cell_free() {
        let rows = vec![
            vec!["NODE".into(), "MESSAGE".into()],
            vec!["n1".into(), "ok".into()],
            vec!["longer-node".into(), "connection refused".into()],
        ];
        assert_eq!(
            render_table(&rows),
            "NODE          MESSAGE\nn1            ok\nlonger-node   connection refused\n"
        );
    }

    #[test]
    fn ages_read_like_kubectls() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(330), "5m30s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(5 * 3600 + 60), "5h1m");
        assert_eq!(human_duration(20 * 3600), "20h");
        assert_eq!(human_duration(3 * 86400 + 7200), "3d2h");
        assert_eq!(human_duration(30 * 86400), "30d");
        assert_eq!(human_duration(3 * 365 * 86400), "3y");
        let now: Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
        let created = Time("2026-11-27T11:58:00Z".parse().unwrap());
        assert_eq!(age(Some(&created), now), "2m");
        assert_eq!(age(None, now), "<unknown>");
    }

    #[test]
    fn ids_and_dashes() {
        assert_eq!(short_id("1a2b3c4d-5e6f"), "1a2b3c4d");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(or_dash(None), "-");
        assert_eq!(or_dash(Some("")), "-");
        assert_eq!(or_dash(Some("1.4.0")), "1.4.0");
    }
}
