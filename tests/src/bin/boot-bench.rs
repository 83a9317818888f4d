//! Boot benchmark of the node image under QEMU: `osctl cluster create --provisioner
//! qemu --nodes 1` on the image `scripts/build-image` wrote, five times.
//!
//! Per boot:
//! - host wall time from QEMU's process start (its start time in /proc) to the
//!   create command returning, which it does once the node's API answered (probed
//!   every 100 ms);
//! - guest uptime when the agent logged `machine API ready` (`since_boot_ms`);
//! - whether containerd runs, and PID 1's resident memory, in a VM of `--memory`
//!   MiB (256 by default: the target is that a node with containerd boots and serves
//!   the API in 256 MiB).
//!
//! Prints medians and the image's sizes as a markdown table (see docs/benchmarks.md).
//! Run: `scripts/build-image && cargo build --release --workspace &&
//! target/release/boot-bench [--boots N] [--memory MIB]`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use e2e::{Home, node_image, process_start, wait_for};

/// The cluster's loopback network and name.
const CIDR: &str = "127.0.98.0/24";
const NODE: &str = "127.0.98.2";
const NAME: &str = "boot-bench";

/// Targets from the issue.
const TARGET_API_READY_S: f64 = 3.0;
const TARGET_INITRAMFS_MIB: f64 = 5.0;
const TARGET_BOOT_PAYLOAD_MIB: f64 = 60.0;

struct Boot {
    host_s: f64,
    guest_s: f64,
    containerd: bool,
    pid1_rss_mib: f64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str, default: u32| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(default)
    };
    let boots = option("--boots", 5);
    let memory = option("--memory", 256);
    let image = node_image();
    let mut results = Vec::new();
    for n in 1..=boots {
        eprintln!("boot-bench: boot {n}/{boots} ({memory} MiB)");
        match boot(&image, memory) {
            Ok(result) => results.push(result),
            Err(e) => {
                eprintln!("boot-bench: boot {n} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let median = |f: fn(&Boot) -> f64| {
        let mut values: Vec<f64> = results.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(image.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    let size = |file: &str| {
        manifest["outputs"]
            .as_array()
            .and_then(|o| o.iter().find(|o| o["file"] == file))
            .and_then(|o| o["size"].as_u64())
            .unwrap_or(0) as f64
            / (1024.0 * 1024.0)
    };
    let host = median(|b| b.host_s);
    let guest = median(|b| b.guest_s);
    let payload = size("vmlinuz") + size("initramfs.cpio.zst") + size("rootfs.squashfs");
    let verdict = |ok: bool| if ok { "pass" } else { "FAIL" };
    println!("| figure ({boots} boots, {memory} MiB, TCG) | median | target |");
    println!("|---|---|---|");
    println!(
        "| QEMU start → API answering (host wall) | {host:.2} s | ≤ {TARGET_API_READY_S} s: {} |",
        verdict(host <= TARGET_API_READY_S)
    );
    println!("| guest uptime at API ready | {guest:.2} s | |");
    println!(
        "| containerd running | {}/{} boots | all |",
        results.iter().filter(|b| b.containerd).count(),
        results.len()
    );
    println!(
        "| PID 1 (agent) RSS | {:.1} MiB | |",
        median(|b| b.pid1_rss_mib)
    );
    println!(
        "| initramfs | {:.2} MiB | ≤ {TARGET_INITRAMFS_MIB} MiB: {} |",
        size("initramfs.cpio.zst"),
        verdict(size("initramfs.cpio.zst") <= TARGET_INITRAMFS_MIB)
    );
    println!(
        "| kernel (bzImage) + initramfs + root image | {payload:.1} MiB | ≤ {TARGET_BOOT_PAYLOAD_MIB} MiB: {} |",
        verdict(payload <= TARGET_BOOT_PAYLOAD_MIB)
    );
    println!(
        "| root image (squashfs) | {:.1} MiB | |",
        size("rootfs.squashfs")
    );
    println!("| disk image (qcow2) | {:.1} MiB | |", size("disk.qcow2"));
    ExitCode::SUCCESS
}

/// One boot: create, measure, destroy.
fn boot(image: &std::path::Path, memory: u32) -> Result<Boot, String> {
    let home = Home::new();
    let memory_arg = memory.to_string();
    let run = home.osctl(&[
        "cluster",
        "create",
        "--name",
        NAME,
        "--nodes",
        "1",
        "--cidr",
        CIDR,
        "--provisioner",
        "qemu",
        "--image",
        image.to_str().ok_or("image path is not UTF-8")?,
        "--memory",
        &memory_arg,
    ]);
    let returned = std::time::SystemTime::now();
    let result = measure(&home, returned, run.code == 0, &run.stderr);
    home.osctl(&["cluster", "destroy", "--name", NAME]);
    result
}

fn measure(
    home: &Home,
    returned: std::time::SystemTime,
    created: bool,
    stderr: &str,
) -> Result<Boot, String> {
    if !created {
        return Err(format!("cluster create failed: {stderr}"));
    }
    let dir = home
        .path()
        .join(".osctl/clusters")
        .join(NAME)
        .join(format!("{NAME}-controlplane-1"));
    let pid: u32 = std::fs::read_to_string(dir.join("qemu.pid"))
        .map_err(|e| format!("qemu.pid: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("qemu.pid: {e}"))?;
    let started = process_start(pid)?;
    let host_s = returned
        .duration_since(started)
        .map_err(|e| e.to_string())?
        .as_secs_f64();

    let console = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    let guest_s = console
        .lines()
        .find(|l| l.contains("machine API ready"))
        .and_then(|l| l.split("since_boot_ms=").nth(1))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .ok_or("the console has no `machine API ready ... since_boot_ms=`")?
        / 1000.0;

    let rows = |args: &[&str]| -> serde_json::Value {
        let mut full = vec!["-e", NODE, "-n", NODE, "-o", "json"];
        full.extend_from_slice(args);
        let run = home.osctl(&full);
        serde_json::from_str(&run.stdout).unwrap_or(serde_json::Value::Null)
    };
    let containerd = {
        let deadline = Instant::now() + Duration::from_secs(60);
        wait_for("containerd", Duration::from_secs(61), || {
            let running = rows(&["services"]).as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["service"] == "containerd" && s["state"] == "running")
            });
            (running || Instant::now() > deadline).then_some(running)
        })
    };
    let processes = rows(&["processes"]);
    let pid1_rss_mib = processes
        .as_array()
        .and_then(|p| p.iter().find(|p| p["pid"] == 1))
        .and_then(|p| p["resident_bytes"].as_u64())
        .ok_or_else(|| format!("no PID 1 in the process list: {processes}"))?
        as f64
        / (1024.0 * 1024.0);
    Ok(Boot {
        host_s,
        guest_s,
        containerd,
        pid1_rss_mib,
    })
}
