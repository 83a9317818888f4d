//! A/B upgrades as a user drives them with osctl, on a process node (bundles of the
//! agent binary) and on a VM booted through OVMF and systemd-boot (bundles of the
//! images `scripts/build-test-images` builds), signed with a key from
//! `image-builder keygen` that the node's configuration trusts.
//!
//! The matrix, on both: a bundle with a bad signature or a bad hash is refused before
//! anything is written; v1 → v2 keeps slot B once it is healthy; an install cut off in
//! the middle of the slot write (SIGKILL to the node's loader or to QEMU: a power cut)
//! leaves a node that boots the old slot; v2 → v3 where v3's agent (process) or init
//! (VM) exits at start comes back on v2 by itself and says why, in Version and in the
//! events. The process node also rolls back by hand.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::https::HttpsServer;
use e2e::{
    LocalCluster, agent_bundle, binary, image_bundle, keygen, process_alive, spawn_agent,
    upgrade_image, wait_for,
};

const V1: &str = env!("CARGO_PKG_VERSION");
const V2: &str = "0.2.0-e2e";
const V3: &str = "0.3.0-broken";
const V4: &str = "0.4.0-unhealthy";

/// A copy of `bundle` with one byte in its middle (inside the largest part) flipped.
fn corrupted(dir: &Path, bundle: &Path) -> PathBuf {
    let out = dir.join("corrupted.tar");
    let mut bytes = std::fs::read(bundle).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&out, bytes).unwrap();
    out
}

/// The trust and health settings of the nodes under test; `ca_pem` signs the HTTPS
/// server bundles are downloaded from.
fn upgrade_patch(public_key: &str, ca_pem: Option<&str>) -> String {
    let mut upgrade = serde_json::json!({"trustedKeys": [public_key], "healthTimeout": "60s"});
    if let Some(pem) = ca_pem {
        upgrade["caCertificates"] = pem.into();
    }
    serde_json::json!({"machine": {"upgrade": upgrade}}).to_string()
}

/// Runs `osctl upgrade` for `node` and sends SIGKILL to `pid` once the write phase
/// reports bytes written (and not all of them); returns the progress lines seen.
fn cut_power_during_write(
    cluster: &LocalCluster,
    node: &str,
    bundle: &Path,
    pid: u32,
) -> Vec<String> {
    let mut install = Command::new(binary("osctl"))
        .env("HOME", cluster.home.path())
        .args(["-e", node, "upgrade", "--image", bundle.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let progress = BufReader::new(install.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in progress.lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        let percent = line
            .split_whitespace()
            .find_map(|word| word.strip_suffix('%')?.parse::<u32>().ok());
        if line.starts_with("write") && percent.is_some_and(|p| (1..100).contains(&p)) {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            break;
        }
    }
    let _ = install.wait();
    assert!(
        seen.last().is_some_and(|l| l.starts_with("write")),
        "the write phase was not cut: {seen:?}"
    );
    wait_for(
        "the node's processes to die",
        Duration::from_secs(10),
        || (!process_alive(pid)).then_some(()),
    );
    seen
}

/// The node's Version row once it answers (after a reboot or a power cut).
fn version_when_up(cluster: &LocalCluster, node: &str, timeout: Duration) -> serde_json::Value {
    wait_for("the node to answer", timeout, || {
        let row = cluster.osctl(&["-e", node, "-n", node, "-o", "json", "version"]);
        (row.code == 0).then(|| row.json()[0].clone())
    })
}

/// Asserts that `bad` bundles are refused for `why` with nothing written and no reboot.
fn assert_refused(cluster: &LocalCluster, node: &str, bad: &[(&Path, &str)]) {
    let before = version(cluster, node);
    for (bundle, why) in bad {
        let refused = cluster.osctl(&[
            "-e",
            node,
            "upgrade",
            "--image",
            bundle.to_str().unwrap(),
            "--wait",
        ]);
        assert_ne!(refused.code, 0, "{} was accepted", bundle.display());
        assert!(
            refused.stderr.contains("upgrade failed") && refused.stderr.contains(why),
            "{}",
            refused.stderr
        );
        let after = version(cluster, node);
        assert_eq!(after["boot_id"], before["boot_id"]);
        assert_eq!(slots(&after), slots(&before));
    }
}

/// Asserts that the node came back on `good` after `broken` failed, with the reason.
fn assert_fell_back(
    cluster: &LocalCluster,
    node: &str,
    refused: &e2e::Run,
    broken: &str,
    good: &str,
) {
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!("rolled back to {good}")),
        "{}",
        refused.stderr
    );
    let fallen_back = version(cluster, node);
    assert_eq!(fallen_back["os_version"], good);
    assert_eq!(
        slots(&fallen_back),
        [format!("a:{broken}:bad"), format!("b:{good}:good*")]
    );
    assert_eq!(fallen_back["rolled_back"]["from_version"], broken);
    assert!(
        fallen_back["rolled_back"]["reason"]
            .as_str()
            .unwrap()
            .contains("none of its 3 boots reached the agent"),
        "{fallen_back}"
    );
    let events = cluster.rows(node, &["events"]);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "rolled-back" && e["version"] == broken),
        "{events:?}"
    );
}

/// The node's Version row.
fn version(cluster: &LocalCluster, node: &str) -> serde_json::Value {
    cluster.rows(node, &["version"]).remove(0)
}

/// `SLOT:VERSION:STATE` of both slots, `*` after the booted one.
fn slots(row: &serde_json::Value) -> Vec<String> {
    row["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|s| {
            format!(
                "{}:{}:{}{}",
                s["slot"].as_str().unwrap(),
                s["version"].as_str().unwrap(),
                s["state"].as_str().unwrap(),
                if s["booted"] == true { "*" } else { "" }
            )
        })
        .collect()
}

/// Files of the node's boot directory (entries and slot directories).
fn boot_files(state_dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["boot/loader/entries", "boot/slot-a", "boot/slot-b"] {
        if let Ok(listing) = std::fs::read_dir(state_dir.join(dir)) {
            for file in listing.flatten() {
                files.push(format!("{dir}/{}", file.file_name().to_string_lossy()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn process_nodes_upgrade_roll_back_and_survive_bad_bundles() {
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path(), "release.key");
    let (stranger, _) = keygen(work.path(), "stranger.key");
    let agent = binary("node-agent");
    let broken_agent = work.path().join("broken-agent");
    std::fs::write(
        &broken_agent,
        "#!/bin/sh\necho 'v3 agent: giving up' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&broken_agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let v2 = agent_bundle(work.path(), &key, &agent, V2);
    let v3 = agent_bundle(work.path(), &key, &broken_agent, V3);
    let untrusted = agent_bundle(work.path(), &stranger, &agent, V2);
    let corrupted = corrupted(work.path(), &v2);
    let downloads = HttpsServer::start(work.path(), "127.0.37.9", 8443);

    let patch = upgrade_patch(&public, Some(&downloads.ca_pem));
    let cluster = LocalCluster::create("upgrade", 37, 1, &["--config-patch", &patch]);
    let node = cluster.addresses[0].clone();
    let state_dir = cluster
        .home
        .path()
        .join(".osctl/clusters/upgrade/upgrade-controlplane-1");
    let upgrade = |bundle: &Path, extra: &[&str]| {
        let mut args = vec!["-e", &node, "upgrade", "--image", bundle.to_str().unwrap()];
        args.extend_from_slice(extra);
        cluster.osctl(&args)
    };

    let first = version(&cluster, &node);
    assert_eq!(first["os_version"], V1);
    assert_eq!(slots(&first), [format!("a:{V1}:good*"), "b::empty".into()]);
    let untouched = boot_files(&state_dir);
    assert_refused(
        &cluster,
        &node,
        &[(&untrusted, "signature"), (&corrupted, "sha256")],
    );
    assert_eq!(boot_files(&state_dir), untouched);

    // v1 -> v2: one reboot, slot B kept once its services are healthy; EPHEMERAL
    // (`<state>/var` on a process node) starts empty.
    let ephemeral = state_dir.join("var/kept-or-not");
    std::fs::write(&ephemeral, "v1 data").unwrap();
    let upgraded = upgrade(&v2, &["--wait"]).success();
    assert!(!ephemeral.exists(), "EPHEMERAL was not emptied");
    for phase in ["receive", "verify", "write", "reboot"] {
        assert!(
            upgraded.stderr.contains(phase),
            "no {phase} progress:\n{}",
            upgraded.stderr
        );
    }
    let second = version(&cluster, &node);
    assert_eq!(second["os_version"], V2);
    assert_ne!(second["boot_id"], first["boot_id"]);
    assert_eq!(
        slots(&second),
        [format!("a:{V1}:good"), format!("b:{V2}:good*")]
    );
    let events = cluster.rows(&node, &["events"]);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "confirmed" && e["version"] == V2),
        "{events:?}"
    );
    // The same version again is refused by the pre-checks.
    let again = upgrade(&v2, &[]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already"), "{}", again.stderr);

    // A manual rollback boots slot A's v1 again.
    cluster.osctl(&["-e", &node, "rollback"]).success();
    let back = wait_for("the node back on slot A", Duration::from_secs(60), || {
        let row = version_when_up(&cluster, &node, Duration::from_secs(60));
        (row["slot"] == "a").then_some(row)
    });
    assert_eq!(back["os_version"], V1);
    assert_eq!(
        slots(&back),
        [format!("a:{V1}:good*"), format!("b:{V2}:good")]
    );

    // A power cut in the middle of the slot write: the node boots slot A as before.
    cut_power_during_write(&cluster, &node, &v2, cluster.agent_pid(0));
    // Power back on: the same state directory, the same address.
    let _restarted = PoweredOn(spawn_agent(
        &state_dir,
        format!("{node}:50000").parse().unwrap(),
        None,
    ));
    let after_cut = version_when_up(&cluster, &node, Duration::from_secs(60));
    assert_eq!(after_cut["os_version"], V1);
    assert_eq!(
        slots(&after_cut),
        [format!("a:{V1}:good*"), "b::empty".into()]
    );

    // v1 -> v2 again, downloaded by the node over HTTPS (a missing file is a clear
    // error); then v2 -> v3, whose agent exits at start: three failed boots, then
    // slot B's v2 again, with the reason.
    let url = |file: &Path| {
        format!(
            "https://127.0.37.9:8443/{}",
            file.file_name().unwrap().to_string_lossy()
        )
    };
    let missing = cluster.osctl(&[
        "-e",
        &node,
        "upgrade",
        "--image",
        "https://127.0.37.9:8443/nope.tar",
    ]);
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("404"), "{}", missing.stderr);
    // A bundle whose file hash is not the published one is refused before it is read.
    let zeros = "0".repeat(64);
    let mismatch = cluster.osctl(&[
        "-e",
        &node,
        "upgrade",
        "--image",
        &url(&v2),
        "--sha256",
        &zeros,
    ]);
    assert_ne!(mismatch.code, 0);
    assert!(
        mismatch
            .stderr
            .contains(&format!("not the expected {zeros}")),
        "{}",
        mismatch.stderr
    );
    // Staged, with EPHEMERAL preserved: nothing changes until the next reboot.
    std::fs::write(&ephemeral, "v1 data").unwrap();
    let downloaded = cluster
        .osctl(&[
            "-e",
            &node,
            "upgrade",
            "--image",
            &url(&v2),
            "--stage",
            "--preserve",
        ])
        .success();
    assert!(
        downloaded.stderr.contains("receive") && downloaded.stdout.contains("staged"),
        "{}{}",
        downloaded.stdout,
        downloaded.stderr
    );
    let staged = version(&cluster, &node);
    assert_eq!(staged["os_version"], V1);
    assert_eq!(
        slots(&staged),
        [format!("a:{V1}:good*"), format!("b:{V2}:trial")]
    );
    cluster
        .osctl(&["-e", &node, "-n", &node, "reboot", "--wait"])
        .success();
    let confirmed = wait_for("the staged slot confirmed", Duration::from_secs(60), || {
        let row = version_when_up(&cluster, &node, Duration::from_secs(60));
        (slots(&row) == [format!("a:{V1}:good"), format!("b:{V2}:good*")]).then_some(row)
    });
    assert_eq!(confirmed["os_version"], V2);
    assert!(
        ephemeral.exists(),
        "EPHEMERAL was emptied despite --preserve"
    );
    let refused = upgrade(&v3, &["--wait"]);
    assert_fell_back(&cluster, &node, &refused, V3, V2);
    // Nothing to roll back to: slot A never booted healthy.
    let nothing = cluster.osctl(&["-e", &node, "rollback"]);
    assert_ne!(nothing.code, 0);
    assert!(
        nothing.stderr.contains("never booted healthy"),
        "{}",
        nothing.stderr
    );

    // v2 -> v4, whose agent starts but whose services do not come up (a service that
    // fails when its agent runs from slot A, a moment after it started): the trial
    // gives up after the health timeout and the node goes back to slot B, naming the
    // service.
    let canary = "case $(readlink /proc/$PPID/exe) in */slot-a/*) exit 1;; esac; exec sleep 3600";
    let patch = serde_json::json!({"machine": {
        "upgrade": {"healthTimeout": "10s"},
        "services": [{"name": "canary", "command": ["/bin/sh", "-c", canary], "restart": "never"}],
    }})
    .to_string();
    cluster
        .osctl(&["-e", &node, "-n", &node, "patch", "-p", &patch])
        .success();
    let v4 = agent_bundle(work.path(), &key, &agent, V4);
    let refused = upgrade(&v4, &["--wait"]);
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    let unhealthy = version(&cluster, &node);
    assert_eq!(unhealthy["os_version"], V2);
    assert_eq!(
        slots(&unhealthy),
        [format!("a:{V4}:bad"), format!("b:{V2}:good*")]
    );
    let reason = unhealthy["rolled_back"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("its services were not healthy within 10s") && reason.contains("canary"),
        "{unhealthy}"
    );
    assert!(refused.stderr.contains(reason), "{}", refused.stderr);
}

#[test]
fn vms_upgrade_through_systemd_boot_and_fall_back_by_themselves() {
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path(), "release.key");
    let (stranger, _) = keygen(work.path(), "stranger.key");
    let (image_v2, image_v3) = (upgrade_image("v2"), upgrade_image("v3"));
    let v2 = image_bundle(work.path(), &key, &image_v2);
    let v3 = image_bundle(work.path(), &key, &image_v3);
    let untrusted = image_bundle(work.path(), &stranger, &image_v2);
    let corrupted = corrupted(work.path(), &v2);
    let version_of = |image: &Path| {
        let text = std::fs::read_to_string(image.join("manifest.json")).unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
        manifest["os_version"].as_str().unwrap().to_owned()
    };
    let (v2_version, v3_version) = (version_of(&image_v2), version_of(&image_v3));

    let patch = upgrade_patch(&public, None);
    let cluster = LocalCluster::create_vms(
        "vm-upgrade",
        36,
        1,
        &["--boot", "uefi", "--config-patch", &patch],
    );
    let node = cluster.addresses[0].clone();
    let boot = Duration::from_secs(300);

    let first = version(&cluster, &node);
    assert_eq!(first["platform"], "metal");
    assert_eq!(slots(&first), [format!("a:{V1}:good*"), "b::empty".into()]);
    assert_refused(
        &cluster,
        &node,
        &[(&untrusted, "signature"), (&corrupted, "sha256")],
    );

    // v1 -> v2 through systemd-boot's boot counting.
    cluster
        .osctl(&[
            "-e",
            &node,
            "upgrade",
            "--image",
            v2.to_str().unwrap(),
            "--wait",
        ])
        .success();
    let second = version(&cluster, &node);
    assert_eq!(second["os_version"], v2_version.as_str());
    assert_eq!(
        slots(&second),
        [format!("a:{V1}:good"), format!("b:{v2_version}:good*")]
    );
    let dmesg = cluster
        .osctl(&["-e", &node, "-n", &node, "dmesg"])
        .success()
        .stdout;
    assert!(dmesg.contains("node.slot=b"), "{dmesg}");

    // A power cut while slot A is written: QEMU killed, then started again on the same
    // disk, boots slot B.
    let qemu = cluster.agent_pid(0);
    let command_line: Vec<String> = std::fs::read(format!("/proc/{qemu}/cmdline"))
        .unwrap()
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8(arg.to_vec()).unwrap())
        .collect();
    cut_power_during_write(&cluster, &node, &v3, qemu);
    let started = Command::new(&command_line[0])
        .args(&command_line[1..])
        .status()
        .unwrap();
    assert!(started.success(), "QEMU did not start again");
    let pidfile = command_line
        .iter()
        .position(|a| a == "-pidfile")
        .map(|i| command_line[i + 1].clone())
        .unwrap();
    let _restarted = PoweredOnVm(pidfile);
    let after_cut = version_when_up(&cluster, &node, boot);
    assert_eq!(after_cut["os_version"], v2_version.as_str());
    assert_eq!(
        slots(&after_cut),
        ["a::empty".to_owned(), format!("b:{v2_version}:good*")]
    );

    // v2 -> v3, whose init exits at start: the kernel panics and restarts three times,
    // then systemd-boot boots slot B again.
    let refused = cluster.osctl(&[
        "-e",
        &node,
        "upgrade",
        "--image",
        v3.to_str().unwrap(),
        "--wait",
        "--timeout",
        "10m",
    ]);
    assert_fell_back(&cluster, &node, &refused, &v3_version, &v2_version);
    let console = cluster.node_log(0);
    assert_eq!(
        console
            .matches("exiting-init: this image's init exits at start")
            .count(),
        3,
        "{console}"
    );
}

/// A node started by the test after a power cut: the cluster record does not know
/// it, so it is stopped here (its agent dies with its loader).
struct PoweredOn(std::process::Child);

impl Drop for PoweredOn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A VM started again by the test (QEMU daemonised, its pid in this file), stopped
/// here for the same reason.
struct PoweredOnVm(String);

impl Drop for PoweredOnVm {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
