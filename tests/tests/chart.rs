//! The operator's Helm chart, linted with Helm's own Go library (helm-sdkpy, in a cached
//! venv; `tests/testbeds/helm/lint`): clean with the default and the high-availability
//! values, and refusing an empty client certificate Secret, several replicas without
//! leader election, and a misspelled key. See docs/chart.md for what the lint cannot see.

use std::path::Path;
use std::process::Command;

#[test]
fn the_chart_lints_clean_and_refuses_bad_values() {
    let lint = Path::new(env!("CARGO_MANIFEST_DIR")).join("testbeds/helm/lint");
    let run = Command::new(&lint).output().expect("the lint script runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}{stderr}");
    // Every case ran: three that must pass, five that must be refused.
    assert!(stdout.contains("8 passed, 0 failed"), "{stdout}");
}
