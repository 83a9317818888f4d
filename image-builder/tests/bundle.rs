//! `image-builder keygen` and `image-builder bundle` as a user runs them, with the
//! bundles checked by the agent's verification (`os_image::bundle::open_verified`).

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image_builder::build::manifest::{self, Manifest};
use os_image::bundle::{self, BundleError, Kind, PublicKey, part};
use tempfile::TempDir;

fn image_builder(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-builder"))
        .args(args)
        .output()
        .unwrap()
}

fn path(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs `keygen` into `dir/key` and returns the key's path and the printed public key.
fn keygen(dir: &TempDir) -> (PathBuf, PublicKey) {
    let key = path(dir, "key");
    let out = image_builder(&["keygen", "--out", text(&key)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8(out.stdout).unwrap();
    (key, public.trim_end().parse().unwrap())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites_one() {
    let dir = TempDir::new().unwrap();
    let (key, _) = keygen(&dir);
    let pem = fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let again = image_builder(&["keygen", "--out", text(&key)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("exists; refusing to overwrite a signing key"),
        "{}",
        stderr(&again)
    );
    assert_eq!(fs::read_to_string(&key).unwrap(), pem);
}

#[test]
fn an_agent_becomes_a_process_bundle_the_agent_verifies() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let agent = path(&dir, "node-agent");
    fs::write(&agent, b"not really an agent").unwrap();
    let out = path(&dir, "agent.bundle");
    let run = image_builder(&[
        "bundle",
        "--key",
        text(&key),
        "--out",
        text(&out),
        "--agent",
        text(&agent),
        "--version",
        "0.2.0",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let stdout = String::from_utf8(run.stdout.clone()).unwrap();
    let size = fs::metadata(&out).unwrap().len();
    assert!(
        stdout.starts_with(&format!("bundle {}\n", out.display())),
        "{stdout}"
    );
    assert!(stdout.contains("version 0.2.0 (process)\n"), "{stdout}");
    assert!(stdout.contains(&format!("size {size}\n")), "{stdout}");
    let sha256 = manifest::sha256_bytes(b"not really an agent");
    assert!(
        stdout.ends_with(&format!("part node-agent 19 {sha256}\n")),
        "{stdout}"
    );
    assert!(
        stderr(&run).starts_with("image-builder: bundle: "),
        "{}",
        stderr(&run)
    );

    let verified = bundle::open_verified(&out, &[public]).unwrap();
    assert_eq!(verified.manifest.kind, Kind::Process);
    let mut data = String::new();
    verified
        .part(part::AGENT)
        .unwrap()
        .read_to_string(&mut data)
        .unwrap();
    assert_eq!(data, "not really an agent");
    // Another key's bundle is not trusted.
    let stranger = TempDir::new().unwrap();
    let (_, other) = keygen(&stranger);
    assert!(matches!(
        bundle::open_verified(&out, &[other]),
        Err(BundleError::Signature { .. })
    ));
}

/// A fake `build` output directory: the three boot files and a manifest listing them.
fn fake_image(dir: &TempDir) -> PathBuf {
    let image = path(dir, "image");
    fs::create_dir(&image).unwrap();
    let files = ["vmlinuz", "initramfs.cpio.zst", "rootfs.squashfs"];
    for file in files {
        fs::write(image.join(file), format!("the {file}")).unwrap();
    }
    let manifest = Manifest {
        source_date_epoch: 0,
        os_version: "0.3.0".into(),
        kernel_release: "6.1.0-56-amd64".into(),
        kernel_hardening: "slab_nomerge pti=on".into(),
        kernel_options: "slab_nomerge pti=on panic=-1 node.slot=a".into(),
        inputs: vec![],
        outputs: files
            .iter()
            .map(|f| manifest::output(&image, f).unwrap())
            .collect(),
        images: vec![],
    };
    fs::write(image.join("manifest.json"), manifest.to_json()).unwrap();
    image
}

#[test]
fn an_image_directory_becomes_a_metal_bundle() {
    let dir = TempDir::new().unwrap();
    let (key, public) = keygen(&dir);
    let image = fake_image(&dir);
    let out = path(&dir, "metal.bundle");
    let run = image_builder(&[
        "bundle",
        "--key",
        text(&key),
        "--out",
        text(&out),
        "--image",
        text(&image),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(stdout.contains("version 0.3.0 (metal)\n"), "{stdout}");

    let verified = bundle::open_verified(&out, &[public]).unwrap();
    let manifest = &verified.manifest;
    assert_eq!(manifest.kernel_release.as_deref(), Some("6.1.0-56-amd64"));
    assert_eq!(
        manifest.kernel_hardening.as_deref(),
        Some("slab_nomerge pti=on")
    );
    let mut rootfs = String::new();
    verified
        .part(part::ROOTFS)
        .unwrap()
        .read_to_string(&mut rootfs)
        .unwrap();
    assert_eq!(rootfs, "the rootfs.squashfs");

    // A file changed after the build is not bundled under the build's version.
    fs::write(image.join("rootfs.squashfs"), "edited").unwrap();
    let changed = path(&dir, "changed.bundle");
    let run = image_builder(&[
        "bundle",
        "--key",
        text(&key),
        "--out",
        text(&changed),
        "--image",
        text(&image),
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("rootfs.squashfs: has sha256 "),
        "{}",
        stderr(&run)
    );
    assert!(!changed.exists());
}

#[test]
fn bad_bundle_arguments_fail_clearly_and_write_nothing() {
    let dir = TempDir::new().unwrap();
    let (key, _) = keygen(&dir);
    let agent = path(&dir, "node-agent");
    fs::write(&agent, b"agent").unwrap();
    let out = path(&dir, "x.bundle");
    let (nothing, absent) = (path(&dir, "nothing"), path(&dir, "absent"));
    let (key, agent, out_text) = (text(&key), text(&agent), text(&out));
    let cases: [(&[&str], &str); 5] = [
        (&["--agent", agent], "--version"),
        (
            &["--agent", agent, "--version", "0.2.0", "--image", "."],
            "cannot be used with",
        ),
        (
            &["--agent", agent, "--version", "0 2"],
            "OS version \"0 2\": must be one word",
        ),
        (&["--image", text(&nothing)], "nothing/manifest.json: "),
        (&["--agent", text(&absent), "--version", "1"], "absent: "),
    ];
    for (args, needle) in cases {
        let run = image_builder(&[&["bundle", "--key", key, "--out", out_text], args].concat());
        assert_eq!(run.status.code(), Some(2), "{args:?}");
        assert!(stderr(&run).contains(needle), "{args:?}: {}", stderr(&run));
        assert!(!out.exists(), "{args:?}");
    }
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with(".bundle-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
