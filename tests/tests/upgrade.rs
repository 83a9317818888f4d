//! A/B upgrades of a process node, as a user drives them with osctl: bundles made by
//! `image-builder bundle` (the agent binary as the payload), signed with a key from
//! `image-builder keygen` that the node's configuration trusts.
//!
//! The matrix: a bundle with a bad signature or a bad hash is refused before anything
//! is written; v1 → v2 keeps slot B once it is healthy; a manual rollback returns to
//! slot A; an install killed in the middle of the slot write (the node's power cut)
//! leaves a node that boots the old slot; v2 → v3 where v3's agent exits at start
//! comes back on v2 by itself and says why, in Version and in the events.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{LocalCluster, binary, process_alive, spawn_agent, wait_for};

const V1: &str = env!("CARGO_PKG_VERSION");
const V2: &str = "0.2.0-e2e";
const V3: &str = "0.3.0-broken";

/// Runs image-builder; returns its stdout.
fn image_builder(args: &[&str]) -> String {
    let run = Command::new(binary("image-builder"))
        .args(args)
        .output()
        .expect("image-builder runs");
    assert!(
        run.status.success(),
        "image-builder {args:?}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8(run.stdout).unwrap()
}

/// A new signing key in `dir`; returns its path and the public key.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let public = image_builder(&["keygen", "--out", key.to_str().unwrap()]);
    (key, public.trim().to_owned())
}

/// A process bundle of `agent` as `version`, signed with `key`.
fn bundle(dir: &Path, key: &Path, agent: &Path, version: &str) -> PathBuf {
    let out = dir.join(format!(
        "{version}-{}.tar",
        key.file_name().unwrap().to_string_lossy()
    ));
    image_builder(&[
        "bundle",
        "--key",
        key.to_str().unwrap(),
        "--agent",
        agent.to_str().unwrap(),
        "--version",
        version,
        "--out",
        out.to_str().unwrap(),
    ]);
    out
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
    let v2 = bundle(work.path(), &key, &agent, V2);
    let v3 = bundle(work.path(), &key, &broken_agent, V3);
    let untrusted = bundle(work.path(), &stranger, &agent, V2);
    // One byte of the agent changed after signing.
    let corrupted = work.path().join("corrupted.tar");
    let mut bytes = std::fs::read(&v2).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&corrupted, bytes).unwrap();

    let patch =
        format!("{{machine: {{upgrade: {{trustedKeys: ['{public}'], healthTimeout: 20s}}}}}}");
    let cluster = LocalCluster::create("upgrade", 31, 1, &["--config-patch", &patch]);
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

    // Refused before anything is written: the node keeps running as it was.
    for (bad, why) in [(&untrusted, "signature"), (&corrupted, "sha256")] {
        let refused = upgrade(bad, &["--wait"]);
        assert_ne!(refused.code, 0, "{} was accepted", bad.display());
        assert!(
            refused.stderr.contains("upgrade failed") && refused.stderr.contains(why),
            "{}",
            refused.stderr
        );
        assert_eq!(boot_files(&state_dir), untouched);
        assert_eq!(version(&cluster, &node)["boot_id"], first["boot_id"]);
    }

    // v1 -> v2: one reboot, slot B kept once its services are healthy.
    let upgraded = upgrade(&v2, &["--wait"]).success();
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
        let row = cluster.osctl(&["-e", &node, "-n", &node, "-o", "json", "version"]);
        let row = (row.code == 0).then(|| row.json()[0].clone())?;
        (row["slot"] == "a").then_some(row)
    });
    assert_eq!(back["os_version"], V1);
    assert_eq!(
        slots(&back),
        [format!("a:{V1}:good*"), format!("b:{V2}:good")]
    );

    // A power cut in the middle of the slot write: the node boots slot A as before.
    let loader = cluster.agent_pid(0);
    let mut install = Command::new(binary("osctl"))
        .env("HOME", cluster.home.path())
        .args([
            "-e",
            &node,
            "upgrade",
            "--image",
            v2.to_str().unwrap(),
            "--force",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let progress = BufReader::new(install.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in progress.lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.starts_with("write") {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(loader as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            break;
        }
    }
    let _ = install.wait();
    assert!(seen.iter().any(|l| l.starts_with("write")), "{seen:?}");
    wait_for(
        "the node's processes to die",
        Duration::from_secs(10),
        || (!process_alive(loader)).then_some(()),
    );
    // Power back on: the same state directory, the same address.
    let _restarted = PoweredOn(spawn_agent(
        &state_dir,
        format!("{node}:50000").parse().unwrap(),
        None,
    ));
    let after_cut = wait_for(
        "the node after the power cut",
        Duration::from_secs(60),
        || {
            let row = cluster.osctl(&["-e", &node, "-n", &node, "-o", "json", "version"]);
            (row.code == 0).then(|| row.json()[0].clone())
        },
    );
    assert_eq!(after_cut["os_version"], V1);
    assert_eq!(after_cut["slot"], "a");
    assert_eq!(
        slots(&after_cut),
        [format!("a:{V1}:good*"), "b::empty".into()]
    );

    // v1 -> v2 again, then v2 -> v3, whose agent exits at start: three failed boots,
    // then slot B's v2 again, with the reason.
    upgrade(&v2, &["--wait"]).success();
    let refused = upgrade(&v3, &["--wait"]);
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!("rolled back to {V2}")),
        "{}",
        refused.stderr
    );
    let fallen_back = version(&cluster, &node);
    assert_eq!(fallen_back["os_version"], V2);
    assert_eq!(
        slots(&fallen_back),
        [format!("a:{V3}:bad"), format!("b:{V2}:good*")]
    );
    assert_eq!(fallen_back["rolled_back"]["from_version"], V3);
    assert!(
        fallen_back["rolled_back"]["reason"]
            .as_str()
            .unwrap()
            .contains("none of its 3 boots reached the agent"),
        "{fallen_back}"
    );
    let events = cluster.rows(&node, &["events"]);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "rolled-back" && e["version"] == V3),
        "{events:?}"
    );
    // Nothing to roll back to: slot A never booted healthy.
    let nothing = cluster.osctl(&["-e", &node, "rollback"]);
    assert_ne!(nothing.code, 0);
    assert!(
        nothing.stderr.contains("never booted healthy"),
        "{}",
        nothing.stderr
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
