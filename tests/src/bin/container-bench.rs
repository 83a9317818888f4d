//! Container benchmark: a process node with its own containerd (Debian's containerd and
//! runc, as root), and optionally a VM of the node image.
//!
//! - agent start → first container service running: the node reboots N times (its
//!   loader starts the agent again) with a container service configured; the agent's start is now minus its
//!   reported uptime, the container's start the first `ps` (polled every 50 ms) that
//!   shows it running;
//! - memory of the agent, containerd and the shims with 5 container services;
//! - `osctl ps -k` latency with 100 containers in `k8s.io` (made with `ctr run -d`);
//! - with `--vm`: QEMU start → the shipped busybox running as a container service.
//!
//! Prints a markdown table (see docs/benchmarks.md). Run: `cargo build --release
//! --workspace && target/release/container-bench [--boots N] [--containers N] [--vm]`
//! (`--vm` needs `scripts/build-image`).

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::{
    Home, LocalCluster, Spread, busybox_archive, node_image, parent_pid as parent, process_start,
    wait_for,
};

const NAME: &str = "container-bench";
/// The VM's loopback network; the process node's is 127.0.97.0/24 too (net 97).
const CIDR: &str = "127.0.97.0/24";
const NODE: &str = "127.0.97.2";
const IMAGE: &str = "node-os.local/bench/busybox:1";
const LOOP: &str = "while :; do sleep 1; done";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(default)
    };
    match run(
        option("--boots", 5),
        option("--containers", 100),
        args.iter().any(|a| a == "--vm"),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("container-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(boots: usize, containers: usize, vm: bool) -> Result<(), String> {
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let archive = busybox_archive(work.path(), IMAGE, &["sh", "sleep"]);
    let cluster = LocalCluster::create(NAME, 97, 1, &["--containerd"]);
    let node = Node {
        home: &cluster.home,
    };
    let socket = cluster.containerd_socket(0);
    let (starts, memory, ps) = measure(&node, &socket, &archive, boots, containers)?;
    drop(cluster);

    println!("| figure | median | range |");
    println!("|---|---|---|");
    let starts = Spread::of(&starts);
    println!(
        "| process node: agent start → first container service running | {:.2} s | {:.2}–{:.2} s ({boots} boots) |",
        starts.median, starts.min, starts.max
    );
    println!(
        "| agent RSS with containerd and 5 container services | {:.1} MiB | |",
        memory.agent
    );
    println!("| containerd RSS | {:.1} MiB | |", memory.containerd);
    println!("| shims (5), total RSS | {:.1} MiB | |", memory.shims);
    let ps = Spread::of(&ps);
    println!(
        "| `osctl ps -k` with {containers} containers | {:.0} ms | {:.0}–{:.0} ms (20 runs) |",
        ps.median, ps.min, ps.max
    );
    if vm {
        let seconds = vm_first_container()?;
        println!("| VM: QEMU start → shipped busybox service running | {seconds:.1} s | 1 boot |");
    }
    Ok(())
}

struct Memory {
    agent: f64,
    containerd: f64,
    shims: f64,
}

struct Node<'a> {
    home: &'a Home,
}

impl Node<'_> {
    fn osctl(&self, args: &[&str]) -> Result<String, String> {
        let run = self.home.osctl(args);
        if run.code == 0 {
            Ok(run.stdout)
        } else {
            Err(format!("osctl {}: {}", args.join(" "), run.stderr))
        }
    }

    fn rows(&self, args: &[&str]) -> Result<Vec<serde_json::Value>, String> {
        let mut full = vec!["-e", NODE, "-n", NODE, "-o", "json"];
        full.extend_from_slice(args);
        let out = self.osctl(&full)?;
        match serde_json::from_str(&out) {
            Ok(serde_json::Value::Array(rows)) => Ok(rows),
            _ => Err(format!("not rows: {out}")),
        }
    }

    fn pid_of(&self, service: &str) -> Option<u64> {
        self.rows(&["services"])
            .ok()?
            .into_iter()
            .find(|s| s["service"] == service && s["state"] == "running")?["pid"]
            .as_u64()
    }
}

fn measure(
    node: &Node<'_>,
    sock: &str,
    archive: &Path,
    boots: usize,
    containers: usize,
) -> Result<(Vec<f64>, Memory, Vec<f64>), String> {
    node.osctl(&["-e", NODE, "image", "import", archive.to_str().unwrap()])?;
    let services: Vec<String> = (1..=5)
        .map(|i| {
            format!(
                "{{name: c{i}, image: '{IMAGE}', stopTimeout: 1s, command: [sh, -c, '{LOOP}']}}"
            )
        })
        .collect();
    let patch = format!(
        "[{{op: add, path: /machine/services, value: [{}]}}]",
        services.join(", ")
    );
    node.osctl(&["-e", NODE, "-n", NODE, "patch", "--patch", &patch])?;
    for i in 1..=5 {
        wait_for("container services", Duration::from_secs(60), || {
            node.pid_of(&format!("c{i}"))
        });
    }

    let containerd = node
        .pid_of("containerd")
        .ok_or("containerd is not running")?;
    let agent = parent(containerd as u32)?;
    let shims: f64 = (1..=5)
        .filter_map(|i| node.pid_of(&format!("c{i}")))
        .filter_map(|pid| parent(pid as u32).ok())
        .map(rss_mib)
        .sum();
    let memory = Memory {
        agent: rss_mib(agent),
        containerd: rss_mib(containerd as u32),
        shims,
    };

    let mut starts = Vec::new();
    for n in 1..=boots {
        eprintln!("container-bench: reboot {n}/{boots}");
        let before = node.pid_of("c1");
        node.osctl(&["-e", NODE, "-n", NODE, "reboot"])?;
        let seen = wait_for("c1 after the reboot", Duration::from_secs(120), || {
            let pid = node.pid_of("c1")?;
            (Some(pid) != before).then(SystemTime::now)
        });
        let version = node.rows(&["version"])?;
        let asked = SystemTime::now();
        let uptime = version[0]["uptime_seconds"].as_f64().ok_or("no uptime")?;
        let agent_start = seconds(asked) - uptime;
        starts.push(seconds(seen) - agent_start);
    }

    node.osctl(&[
        "-e",
        NODE,
        "image",
        "import",
        "-k",
        archive.to_str().unwrap(),
    ])?;
    eprintln!("container-bench: starting {containers} containers in k8s.io");
    for i in 0..containers {
        let id = format!("bench-{}-{i}", std::process::id());
        let made = Command::new("ctr")
            .arg("-a")
            .arg(sock)
            .args([
                "-n",
                "k8s.io",
                "run",
                "-d",
                "--null-io",
                IMAGE,
                &id,
                "sh",
                "-c",
                LOOP,
            ])
            .output()
            .map_err(|e| format!("ctr: {e}"))?;
        if !made.status.success() {
            return Err(format!(
                "ctr run: {}",
                String::from_utf8_lossy(&made.stderr)
            ));
        }
    }
    let mut ps = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let rows = node.rows(&["ps", "-k"])?;
        ps.push(started.elapsed().as_secs_f64() * 1000.0);
        if rows.len() != containers {
            return Err(format!(
                "ps -k listed {} containers, not {containers}",
                rows.len()
            ));
        }
    }
    Ok((starts, memory, ps))
}

/// QEMU start → the shipped busybox running as a container service, one VM.
fn vm_first_container() -> Result<f64, String> {
    let home = Home::new();
    let node = Node { home: &home };
    let image = node_image();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(image.join("manifest.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let shipped = manifest["images"][0]["name"]
        .as_str()
        .ok_or("no shipped image")?;
    let patch = format!(
        r#"{{"machine":{{"services":[{{"name":"c1","image":"{shipped}","command":["sh","-c","{LOOP}"]}}]}}}}"#
    );
    let created = node.osctl(&[
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
        image.to_str().unwrap(),
        "--config-patch",
        &patch,
    ]);
    let result = created.and_then(|_| {
        let dir = home
            .path()
            .join(format!(".osctl/clusters/{NAME}/{NAME}-controlplane-1"));
        let pid: u32 = std::fs::read_to_string(dir.join("qemu.pid"))
            .map_err(|e| e.to_string())?
            .trim()
            .parse()
            .map_err(|e| format!("qemu.pid: {e}"))?;
        let started = process_start(pid)?;
        let seen = wait_for("c1 in the VM", Duration::from_secs(180), || {
            node.pid_of("c1").map(|_| SystemTime::now())
        });
        Ok(seconds(seen) - seconds(started))
    });
    let _ = node.osctl(&["cluster", "destroy", "--name", NAME]);
    result
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}
