//! The `image-builder oci` command as a user runs it, and its output imported and run
//! by a real containerd.
//!
//! The usage errors run offline. The busybox tests build from Debian's
//! `busybox-static` (apt-get, into the package cache, like `build.rs`). The containerd
//! test starts a private containerd (its own root, state and socket in a temporary
//! directory), imports the layout with `ctr image import` and runs it with `ctr run`;
//! it needs root and Debian's `containerd` and `runc`, and says so when it skips.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const NAME: &str = "node-os.local/test/busybox:1.0";

fn oci(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .arg("oci")
        .args(args)
        .output()
        .unwrap()
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Builds the busybox test image into `out`; returns what it printed (NAME@DIGEST).
fn busybox(out: &Path) -> String {
    let output = oci(&[
        "--name",
        NAME,
        "--package",
        "busybox-static",
        "--link",
        "/bin/sh=busybox",
        "--link",
        "/bin/echo=busybox",
        "--env",
        "GREETING=hello from the layout",
        "--out",
        out.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo \"$GREETING\"",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn usage_errors_are_one_line_and_write_nothing() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("image.tar");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--name", "busybox:1", "--link", "/a=b"],
            "no registry host",
        ),
        (&["--name", "x.local/a:1"], "the image would be empty"),
        (
            &["--name", "x.local/a:1", "--file", "a/../b"],
            "expected SRC=DEST",
        ),
        (
            &["--name", "x.local/a:1", "--file", "/nonexistent=/x"],
            "/nonexistent: cannot read it for /x",
        ),
    ];
    for (args, needle) in cases {
        let mut args = args.to_vec();
        args.extend(["--out", out.to_str().unwrap()]);
        let output = oci(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "{args:?}");
    }
}

#[test]
fn busybox_layouts_are_byte_identical() {
    if !have("apt-cache") {
        eprintln!("skipped: apt-cache is not installed");
        return;
    }
    let dir = TempDir::new().unwrap();
    let one = busybox(&dir.path().join("one.tar"));
    let two = busybox(&dir.path().join("two.tar"));
    assert!(one.starts_with(&format!("{NAME}@sha256:")), "{one}");
    assert_eq!(one, two);
    let one = fs::read(dir.path().join("one.tar")).unwrap();
    let two = fs::read(dir.path().join("two.tar")).unwrap();
    assert!(one == two, "the two layouts differ");
}

/// A containerd of the test's own, stopped when dropped.
struct Containerd {
    child: Child,
    socket: PathBuf,
}

impl Containerd {
    fn start(dir: &Path) -> Self {
        let config = dir.join("config.toml");
        let path = |name: &str| dir.join(name).display().to_string();
        fs::write(
            &config,
            format!(
                "version = 2\nroot = {root:?}\nstate = {state:?}\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {grpc:?}\n[ttrpc]\n  address = {ttrpc:?}\n",
                root = path("root"),
                state = path("state"),
                grpc = path("containerd.sock"),
                ttrpc = path("containerd.sock.ttrpc"),
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let containerd = Self {
            child,
            socket: dir.join("containerd.sock"),
        };
        let started = Instant::now();
        while !containerd.ctr(&["version"]).status.success() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "containerd did not answer: {}",
                fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        containerd
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "image-builder-test"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs ctr and returns its stdout, failing the test with its stderr.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.ctr(args);
        assert!(
            output.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn containerd_imports_and_runs_the_layout() {
    // The owner of /proc/self is the effective user.
    let root = fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let missing: Vec<_> = ["containerd", "ctr", "runc", "apt-cache"]
        .into_iter()
        .filter(|tool| !have(tool))
        .collect();
    if !root || !missing.is_empty() {
        eprintln!(
            "skipped: needs root and containerd, ctr, runc, apt-cache (missing: {missing:?}, root: {root})"
        );
        return;
    }
    let dir = TempDir::new().unwrap();
    let layout = dir.path().join("busybox.tar");
    let printed = busybox(&layout);
    let digest = printed.rsplit_once('@').unwrap().1;

    let containerd = Containerd::start(dir.path());
    let imported = containerd.ok(&["image", "import", layout.to_str().unwrap()]);
    assert!(imported.contains(NAME), "{imported}");
    let listed = containerd.ok(&["image", "ls"]);
    let row = listed
        .lines()
        .find(|l| l.starts_with(NAME))
        .unwrap_or_else(|| panic!("{NAME} not listed: {listed}"));
    assert!(row.contains(digest), "{row}");
    assert!(row.contains("linux/amd64"), "{row}");

    // The image's command (Cmd and Env), then a command of our own.
    let greeting = containerd.ok(&["run", "--rm", NAME, "greet"]);
    assert_eq!(greeting.trim(), "hello from the layout");
    let listing = containerd.ok(&["run", "--rm", NAME, "list", "sh", "-c", "ls -ln /bin"]);
    for line in listing.lines().filter(|l| !l.starts_with("total")) {
        let fields: Vec<_> = line.split_whitespace().collect();
        assert_eq!(fields[2..4], ["0", "0"], "owner in {line:?}");
        assert_eq!(fields[5..8], ["Jan", "1", "2025"], "mtime in {line:?}");
    }
    assert!(listing.contains("sh -> busybox"), "{listing}");
}
