//! The `image-builder build` command as a user runs it.
//!
//! The failure cases run offline. The reproducibility test builds two full images from
//! Debian's packages (about a minute and a half) with the static agent that
//! `scripts/build-image` builds (the README's test command runs it first), or the one
//! `IMAGE_BUILDER_AGENT` names.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

fn build(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .arg("build")
        .args(args)
        .output()
        .unwrap()
}

/// The smallest file the static check accepts: an x86_64 ELF header, no segments.
fn static_agent(dir: &Path) -> PathBuf {
    let mut header = vec![0u8; 64];
    header[..6].copy_from_slice(b"\x7fELF\x02\x01");
    header[16] = 2;
    header[18] = 62;
    header[54] = 56;
    let path = dir.join("agent");
    fs::write(&path, header).unwrap();
    path
}

/// Asserts a one-line error mentioning `needle`, and nothing left next to `out`.
fn assert_clean_failure(output: &Output, needle: &str, out: &Path) {
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<_> = stderr.lines().filter(|l| !l.contains("] ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(needle), "{stderr}");
    assert!(!out.exists(), "{} was created", out.display());
    let leftovers: Vec<_> = fs::read_dir(out.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".image-builder-")
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary directories left: {leftovers:?}"
    );
}

#[test]
fn a_dynamically_linked_agent_is_refused_before_anything_is_written() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    let agent = env!("CARGO_BIN_EXE_image-builder");
    let output = build(&[
        "--agent".as_ref(),
        agent.as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--cache".as_ref(),
        dir.path().join("cache").as_os_str(),
    ]);
    assert_clean_failure(&output, "the agent is dynamically linked", &out);
    assert!(!dir.path().join("cache").exists());
}

#[test]
fn a_missing_kernel_deb_fails_clearly() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    let agent = static_agent(dir.path());
    let output = build(&[
        "--kernel".as_ref(),
        dir.path().join("missing.deb").as_os_str(),
        "--agent".as_ref(),
        agent.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--cache".as_ref(),
        dir.path().join("cache").as_os_str(),
    ]);
    assert_clean_failure(&output, "missing.deb: no such file", &out);
}

#[test]
fn an_unknown_kernel_package_fails_clearly() {
    if Command::new("apt-cache").arg("--version").output().is_err() {
        eprintln!("skipped: apt-cache is not installed");
        return;
    }
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    let agent = static_agent(dir.path());
    let output = build(&[
        "--kernel-package".as_ref(),
        "linux-image-no-such-flavour".as_ref(),
        "--agent".as_ref(),
        agent.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--cache".as_ref(),
        dir.path().join("cache").as_os_str(),
    ]);
    assert_clean_failure(
        &output,
        "\"linux-image-no-such-flavour\" is not in the Debian archive",
        &out,
    );
}

#[test]
fn a_non_empty_output_directory_is_not_overwritten() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("keep"), "mine").unwrap();
    let agent = static_agent(dir.path());
    let output = build(&[
        "--agent".as_ref(),
        agent.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("exists and is not empty"));
    assert_eq!(fs::read_to_string(out.join("keep")).unwrap(), "mine");
}

/// Two builds from the same inputs are byte-identical.
#[test]
fn builds_are_reproducible() {
    let agent = std::env::var_os("IMAGE_BUILDER_AGENT").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/static-agent/x86_64-unknown-linux-gnu/release/node-agent")
        },
        PathBuf::from,
    );
    assert!(
        agent.is_file(),
        "no static agent at {}: run scripts/build-image first (the README's test command does) \
         or set IMAGE_BUILDER_AGENT",
        agent.display()
    );
    let dir = TempDir::new().unwrap();
    let mut manifests = Vec::new();
    for name in ["one", "two"] {
        let out = dir.path().join(name);
        let output = build(&[
            "--agent".as_ref(),
            agent.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--format".as_ref(),
            "raw,qcow2".as_ref(),
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        manifests.push(fs::read_to_string(out.join("manifest.json")).unwrap());
    }
    assert_eq!(manifests[0], manifests[1]);
    let names: Vec<_> = fs::read_dir(dir.path().join("one"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    for name in names {
        let one = fs::read(dir.path().join("one").join(&name)).unwrap();
        let two = fs::read(dir.path().join("two").join(&name)).unwrap();
        assert!(one == two, "{name:?} differs between the builds");
    }
    let initramfs = fs::metadata(dir.path().join("one/initramfs.cpio.zst")).unwrap();
    assert!(
        initramfs.len() <= 5 << 20,
        "initramfs is {} bytes",
        initramfs.len()
    );
}

#[test]
fn an_os_version_that_is_not_one_word_is_refused_before_anything_is_written() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    let agent = static_agent(dir.path());
    let output = build(&[
        "--agent".as_ref(),
        agent.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--os-version".as_ref(),
        "0.2.0\nEVIL=1".as_ref(),
    ]);
    assert_clean_failure(&output, "must be one word", &out);
}
