//! Real nodes: the image from `scripts/build-image` booted under QEMU (TCG here) by
//! `osctl cluster create --provisioner qemu`, with node-agent as PID 1. Each test
//! has its own loopback /24 (127.0.31-35.0) and cluster name, so its private
//! network (a multicast port derived from the name) is its own.

use std::path::Path;
use std::time::Duration;

use e2e::{Home, LocalCluster, node_image, process_alive, wait_for};

/// Under TCG a boot takes seconds; with other VMs on two cores, tens of seconds.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(node_image().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_node_boots_its_image_reboots_and_powers_off() {
    let cluster = LocalCluster::create_vms("vm-boot", 31, 1, &[]);
    let node = &cluster.addresses[0];

    let version = &cluster.rows(node, &["version"])[0];
    assert_eq!(version["platform"], "metal", "{version}");
    assert_eq!(version["kernel"], manifest()["kernel_release"], "{version}");
    let first_boot = version["boot_id"].as_str().unwrap().to_owned();
    assert_eq!(first_boot.len(), 36, "{version}");

    let dmesg = cluster
        .osctl(&["-e", node, "-n", node, "dmesg"])
        .success()
        .stdout;
    assert!(dmesg.contains("Linux version"), "{dmesg}");
    assert!(dmesg.contains("node.root.sha256="), "{dmesg}");

    // The boot entry carries the policy's command line for this kernel and the agent
    // applied its sysctls, so nothing the hardening policy requires is unmet.
    let kspp = cluster.osctl(&[
        "-e",
        node,
        "-n",
        node,
        "-o",
        "json",
        "kernel-security",
        "--unmet",
    ]);
    assert_eq!(kspp.code, 0, "unmet: {}{}", kspp.stdout, kspp.stderr);

    // containerd comes from the root image and is started by the agent.
    let containerd = wait_for("containerd running", BOOT_TIMEOUT, || {
        cluster
            .rows(node, &["services"])
            .into_iter()
            .find(|s| s["service"] == "containerd" && s["state"] == "running")
    });
    assert!(containerd["pid"].as_u64().unwrap() > 1, "{containerd}");

    // `/` is the read-only squashfs; STATE and EPHEMERAL are the writable mounts.
    let mounts = cluster.rows(node, &["mounts"]);
    let root = mounts.iter().find(|m| m["mount_point"] == "/").unwrap();
    assert_eq!(root["fstype"], "squashfs", "{root}");
    assert!(
        root["options"]
            .as_str()
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{root}"
    );
    for (mount_point, fstype) in [("/system/state", "ext4"), ("/var", "ext4")] {
        assert!(
            mounts
                .iter()
                .any(|m| m["mount_point"] == mount_point && m["fstype"] == fstype),
            "{mount_point} is not mounted: {mounts:?}"
        );
    }

    // Files may only go to the writable mounts; a refused change changes nothing.
    let patch_file = |path: &str| {
        let patch = format!(r#"{{"machine":{{"files":[{{"path":"{path}","content":"hi"}}]}}}}"#);
        cluster.osctl(&["-e", node, "-n", node, "patch", "-p", &patch])
    };
    let refused = patch_file("/etc/motd");
    assert_ne!(refused.code, 0);
    assert!(
        refused
            .stderr
            .contains("machine.files[0].path: /etc/motd is on the read-only root"),
        "{}",
        refused.stderr
    );
    patch_file("/var/etc/motd").success();

    // A container service from the image the root image ships (imported on first need).
    let shipped = manifest()["images"][0]["name"].as_str().unwrap().to_owned();
    let patch = format!(
        r#"{{"machine":{{"services":[{{"name":"ticker","image":"{shipped}","stopTimeout":"2s",
            "command":["sh","-c","while :; do echo vm tick; sleep 1; done"]}}]}}}}"#
    );
    cluster
        .osctl(&["-e", node, "-n", node, "patch", "-p", &patch])
        .success();
    let ticker = || {
        wait_for("the ticker container running", BOOT_TIMEOUT, || {
            cluster.rows(node, &["ps"]).into_iter().find(|c| {
                c["id"] == "ticker" && c["status"] == "running" && c["pid"].as_u64() > Some(1)
            })
        })
    };
    let row = ticker();
    assert_eq!(row["image"], shipped.as_str(), "{row}");
    wait_for("ticker output", BOOT_TIMEOUT, || {
        let logs = cluster.osctl(&["-e", node, "-n", node, "logs", "ticker"]);
        logs.stdout.contains("vm tick").then_some(())
    });
    let stats = cluster.rows(node, &["stats"]);
    let usage = stats.iter().find(|s| s["service"] == "ticker").unwrap();
    assert!(usage["memory_bytes"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(usage["source"], "cgroup", "{usage}");

    cluster
        .osctl(&["-e", node, "-n", node, "reboot", "--wait"])
        .success();
    let second_boot = cluster.boot_id(node);
    assert_ne!(second_boot, first_boot, "reboot kept the boot id");
    // The service comes back from the configuration, its image from EPHEMERAL (pids
    // of a fresh boot repeat, so the new boot id is what says it is a new process).
    ticker();

    let pid = cluster.agent_pid(0);
    cluster
        .osctl(&["-e", node, "-n", node, "shutdown"])
        .success();
    wait_for("QEMU to exit after shutdown", BOOT_TIMEOUT, || {
        (!process_alive(pid)).then_some(())
    });
    // The kernel's last words on a clean power-off (not a crash or a kill).
    let console = cluster.node_log(0);
    assert!(console.contains("reboot: Power down"), "{console}");
}

#[test]
fn maintenance_mode_takes_a_configuration_that_survives_a_reboot() {
    let cluster = LocalCluster::create_vms("vm-maint", 32, 1, &["--skip-injecting-config"]);
    let node = &cluster.addresses[0];
    let insecure = |args: &[&str]| {
        let mut full = vec!["--insecure", "-e", node];
        full.extend_from_slice(args);
        cluster.osctl(&full)
    };
    let version = insecure(&["-o", "json", "version"]).success().json();
    assert_eq!(version[0]["platform"], "metal", "{version}");
    // Nothing but Version and ApplyConfiguration without a configuration.
    let refused = insecure(&["services"]);
    assert_ne!(refused.code, 0, "{}", refused.stdout);

    let dir = cluster
        .home
        .path()
        .join(".osctl/clusters/vm-maint/vm-maint-controlplane-1");
    let config = std::fs::read_to_string(dir.join("initial-config.yaml")).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        config.replace("hostname: vm-maint-controlplane-1", "hostname: -bad-"),
    )
    .unwrap();
    let rejected = insecure(&["apply-config", "--file", bad.to_str().unwrap()]);
    assert_ne!(rejected.code, 0);
    assert!(
        rejected.stderr.contains("machine.hostname"),
        "{}",
        rejected.stderr
    );
    insecure(&["version"]).success();

    let good = dir.join("initial-config.yaml");
    insecure(&["apply-config", "--file", good.to_str().unwrap()]).success();
    let hostname = wait_for("the node out of maintenance mode", BOOT_TIMEOUT, || {
        let run = cluster.osctl(&["-e", node, "-n", node, "-o", "json", "version"]);
        (run.code == 0).then(|| run.json()[0]["node"].as_str().unwrap().to_owned())
    });
    assert_eq!(hostname, "vm-maint-controlplane-1");
    let before = cluster.boot_id(node);

    cluster
        .osctl(&["-e", node, "-n", node, "reboot", "--wait"])
        .success();
    assert_ne!(cluster.boot_id(node), before);
    // Read back from STATE: mutual TLS works and the name is the configured one.
    let after = &cluster.rows(node, &["version"])[0];
    assert_eq!(after["node"], "vm-maint-controlplane-1", "{after}");
    let console = cluster.node_log(0);
    assert_eq!(
        console
            .matches("no configuration: maintenance mode")
            .count(),
        1,
        "the second boot went into maintenance mode again:\n{console}"
    );
}

#[test]
fn a_corrupted_root_image_is_refused_at_boot() {
    // A copy of the image whose slot A root image has one block overwritten.
    let home = Home::new();
    let image = home.path().join("corrupted-image");
    std::fs::create_dir(&image).unwrap();
    let original = node_image();
    for file in [
        "manifest.json",
        "vmlinux",
        "initramfs.cpio.zst",
        "disk.qcow2",
    ] {
        std::fs::copy(original.join(file), image.join(file)).unwrap();
    }
    // BOOT-A starts at 65 MiB (after 1 MiB of GPT and the 64 MiB ESP).
    let corrupted = std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x5a 70M 4k"])
        .arg(image.join("disk.qcow2"))
        .output()
        .expect("qemu-io runs");
    assert!(corrupted.status.success(), "{corrupted:?}");

    let run = home.osctl(&[
        "cluster",
        "create",
        "--name",
        "vm-corrupt",
        "--nodes",
        "1",
        "--cidr",
        "127.0.33.0/24",
        "--provisioner",
        "qemu",
        "--image",
        image.to_str().unwrap(),
        "--wait-timeout",
        "30s",
    ]);
    let console_path = Path::new(home.path())
        .join(".osctl/clusters/vm-corrupt/vm-corrupt-controlplane-1/console.log");
    let console = std::fs::read_to_string(&console_path).unwrap_or_default();
    home.osctl(&["cluster", "destroy", "--name", "vm-corrupt"])
        .success();
    assert_ne!(run.code, 0, "a corrupted node answered:\n{}", run.stdout);
    assert!(
        console.contains("BOOT FAILED: root image refused") && console.contains("sha256"),
        "{console}"
    );
    assert!(!console.contains("machine API ready"), "{console}");
}

#[test]
fn three_vms_form_a_cluster_and_reach_each_other() {
    let mut cluster = LocalCluster::create_vms("vm-three", 34, 3, &[]);

    // The context's nodes are the private addresses: the control plane forwards
    // to the workers over the cluster network, with certificates the workers got
    // from the control plane's trust service over that same network.
    let rows = cluster.osctl(&["-o", "json", "version"]).success().json();
    let rows = rows.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["node"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "vm-three-controlplane-1",
            "vm-three-worker-1",
            "vm-three-worker-2"
        ]
    );
    assert!(
        rows.iter()
            .all(|r| r["platform"] == "metal" && r["error"].is_null()),
        "{rows:?}"
    );
    cluster.assert_all_running();
    cluster.destroy_and_assert_gone();
}

#[test]
fn the_uefi_path_boots_slot_a_through_systemd_boot() {
    let cluster = LocalCluster::create_vms("vm-uefi", 35, 1, &["--boot", "uefi"]);
    let node = &cluster.addresses[0];
    assert_eq!(cluster.rows(node, &["version"])[0]["platform"], "metal");
    let dmesg = cluster
        .osctl(&["-e", node, "-n", node, "dmesg"])
        .success()
        .stdout;
    // The firmware handed over, and the boot entry's command line is slot A's.
    assert!(dmesg.contains("efi: EFI v"), "{dmesg}");
    let command_line = dmesg
        .lines()
        .find(|l| l.contains("Command line:"))
        .unwrap_or_default();
    assert!(
        command_line.contains("node.slot=a") && command_line.contains("BOOT-A"),
        "{command_line}"
    );
}
