//! Rendering a [`Report`] as a table for people or JSON for programs.

use std::fmt::Write as _;

use serde::Serialize;

use crate::check::{Report, RuleResult, Score, Status};
use crate::data::Stance;

/// How to render a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One row per recommendation, an explanation under every row that is not plainly
    /// met, and the score line.
    Table,
    /// One JSON document with the kernel, every result and the score.
    Json,
}

/// Renders `report` in `format`; the text ends with a newline.
pub fn render(report: &Report<'_>, format: Format) -> String {
    match format {
        Format::Table => table(report),
        Format::Json => json(report),
    }
}

/// The score line: met of total, met of applicable, exceptions, the rest.
pub fn score_line(score: &Score) -> String {
    format!(
        "score: met {} of {} total, {} of {} applicable; {} exceptions, {} not met, {} not applicable",
        score.met,
        score.total,
        score.met,
        score.applicable,
        score.exceptions,
        score.not_met,
        score.not_applicable
    )
}

fn table(report: &Report<'_>) -> String {
    const HEADERS: [&str; 5] = ["STATUS", "OPTION", "EXPECTED", "FOUND", "CATEGORY"];
    let rows: Vec<[String; 5]> = report
        .results
        .iter()
        .map(|r| {
            [
                r.status.name().to_owned(),
                r.rule.option.clone(),
                r.rule.expected.to_string(),
                r.found.to_string(),
                r.rule.category.to_string(),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let indent = " ".repeat(widths[0] + 2);
    let mut out = format!("kernel: {}\n", report.target);
    out.push_str(&table_row(&HEADERS, &widths));
    for (row, result) in rows.iter().zip(&report.results) {
        out.push_str(&table_row(&row.each_ref().map(String::as_str), &widths));
        if let Some(detail) = result.detail() {
            let _ = writeln!(out, "{indent}{detail}");
        }
    }
    out.push_str(&score_line(&report.score()));
    out.push('\n');
    out
}

/// One line of the table: every cell but the last padded to its column's width.
fn table_row(cells: &[&str], widths: &[usize]) -> String {
    let mut text = String::new();
    for (cell, width) in cells.iter().zip(widths) {
        let _ = write!(text, "{cell:<width$}  ");
    }
    let mut line = text.trim_end().to_owned();
    line.push('\n');
    line
}

#[derive(Serialize)]
struct JsonReport<'a> {
    kernel: JsonKernel,
    results: Vec<JsonResult<'a>>,
    score: Score,
}

#[derive(Serialize)]
struct JsonKernel {
    version: Option<String>,
    compiler: Option<&'static str>,
}

#[derive(Serialize)]
struct JsonResult<'a> {
    option: &'a str,
    status: &'static str,
    expected: String,
    found: String,
    found_as: &'a str,
    category: &'static str,
    reason: &'a str,
    stance: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl<'a> From<&RuleResult<'a>> for JsonResult<'a> {
    fn from(r: &RuleResult<'a>) -> Self {
        Self {
            option: &r.rule.option,
            status: match r.status {
                Status::Met => "met",
                Status::NotMet => "not-met",
                Status::Exception => "exception",
                Status::NotApplicable => "not-applicable",
            },
            expected: r.rule.expected.to_string(),
            found: r.found.to_string(),
            found_as: r.found_as,
            category: r.rule.category.name(),
            reason: &r.rule.reason,
            stance: match r.rule.stance {
                Stance::Require => "require",
                Stance::Exception { .. } => "exception",
            },
            detail: r.detail(),
        }
    }
}

fn json(report: &Report<'_>) -> String {
    let document = JsonReport {
        kernel: JsonKernel {
            version: report.target.version.map(|v| v.to_string()),
            compiler: report.target.compiler.map(|c| c.name()),
        },
        results: report.results.iter().map(JsonResult::from).collect(),
        score: report.score(),
    };
    let mut text = serde_json::to_string_pretty(&document).expect("a report serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check;
    use crate::config::KernelConfig;
    use crate::data::Recommendations;

    const DATA: &str = r#"
[[kconfig]]
option = "CONFIG_BUG"
value = "y"
category = "crash-handling"
reason = "stop on bugs"
stance = "require"

[[kconfig]]
option = "CONFIG_INET_DIAG"
value = "is not set"
category = "attack-surface"
reason = "no sock_diag"
stance = "exception"
stance_reason = "cilium needs it"

[[kconfig]]
option = "CONFIG_LIST_HARDENED"
value = "y"
category = "data-integrity"
reason = "list checks"
stance = "require"
since = "6.6"
"#;

    const CONFIG: &str =
        "# Linux/x86 6.1.192 Kernel Configuration\nCONFIG_CC_IS_GCC=y\nCONFIG_INET_DIAG=m\n";

    fn rendered(format: Format) -> String {
        let data = Recommendations::parse(DATA).unwrap();
        let config = KernelConfig::parse(CONFIG).unwrap();
        render(&check(&data, &config), format)
    }

    #[test]
    fn table_shows_rows_details_and_score() {
        let expected = "\
kernel: Linux 6.1.192, gcc
STATUS     OPTION                EXPECTED    FOUND       CATEGORY
not met    CONFIG_BUG            y           is not set  crash-handling
           why: stop on bugs
exception  CONFIG_INET_DIAG      is not set  m           attack-surface
           exception: cilium needs it
n/a        CONFIG_LIST_HARDENED  y           is not set  data-integrity
           added in 6.6; this kernel is 6.1.192
score: met 0 of 3 total, 0 of 2 applicable; 1 exceptions, 1 not met, 1 not applicable
";
        assert_eq!(rendered(Format::Table), expected);
    }

    #[test]
    fn json_has_kernel_results_and_score() {
        let value: serde_json::Value = serde_json::from_str(&rendered(Format::Json)).unwrap();
        assert_eq!(value["kernel"]["version"], "6.1.192");
        assert_eq!(value["kernel"]["compiler"], "gcc");
        assert_eq!(value["results"][1]["status"], "exception");
        assert_eq!(value["results"][1]["found"], "m");
        assert_eq!(value["results"][1]["detail"], "exception: cilium needs it");
        assert_eq!(value["results"][2]["status"], "not-applicable");
        assert_eq!(value["score"]["applicable"], 2);
        assert_eq!(value["score"]["exceptions"], 1);
    }
}
