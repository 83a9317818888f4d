//! The `image-builder kernel-check` command as a user runs it.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use tempfile::TempDir;

fn scratch(dir: &TempDir, name: &str, contents: &str) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, contents).unwrap();
    path
}

fn kernel_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .arg("kernel-check")
        .args(args)
        .output()
        .unwrap()
}

const DATA: &str = r#"
[[kconfig]]
option = "CONFIG_BUG"
value = "y"
category = "crash-handling"
reason = "stop on bugs"
stance = "require"
"#;

#[test]
fn met_config_exits_zero_and_prints_the_score() {
    let dir = TempDir::new().unwrap();
    let data = scratch(&dir, "met.toml", DATA);
    let config = scratch(&dir, "met.config", "CONFIG_BUG=y\n");
    let out = kernel_check(&[config.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.ends_with(
        "score: met 1 of 1 total, 1 of 1 applicable; 0 exceptions, 0 not met, 0 not applicable\n"
    ));
}

#[test]
fn unmet_requirements_exit_one_and_json_is_valid() {
    let dir = TempDir::new().unwrap();
    let data = scratch(&dir, "unmet.toml", DATA);
    let config = scratch(&dir, "unmet.config", "# CONFIG_BUG is not set\n");
    let out = kernel_check(&[
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["results"][0]["status"], "not-met");
    assert_eq!(json["score"]["not_met"], 1);
}

#[test]
fn the_built_in_data_is_used_by_default() {
    let dir = TempDir::new().unwrap();
    let config = scratch(
        &dir,
        "empty.config",
        "# Linux/x86 6.1.192 Kernel Configuration\n",
    );
    let out = kernel_check(&[config.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("CONFIG_LIST_HARDENED"), "{stdout}");
    assert!(stdout.contains("of 131 total"), "{stdout}");
}

#[test]
fn errors_name_the_file_and_exit_two() {
    let out = kernel_check(&["/nonexistent/config"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("image-builder: cannot read /nonexistent/config"),
        "{stderr}"
    );
}
