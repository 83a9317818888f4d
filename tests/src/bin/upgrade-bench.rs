//! Upgrade benchmark: how long an A/B upgrade takes, split into its phases, on a
//! process node and (with `--vm`) on a UEFI VM of the node image, and how big bundles
//! are.
//!
//! Each upgrade is `osctl upgrade --image BUNDLE --wait`; the phases are timed from
//! its progress lines as they arrive (osctl prints one per phase when stderr is not a
//! terminal): receive (the upload), verify (signature and every part's sha256), write
//! (the other slot), reboot → healthy (from the reboot to the new slot confirmed).
//! Upgrades alternate between two versions, so each one is a real install.
//!
//! Prints a markdown table (see docs/benchmarks.md). Run: `cargo build --release
//! --workspace && target/release/upgrade-bench [--upgrades N] [--vm]` (`--vm` needs
//! `scripts/build-image` and `scripts/build-test-images`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use e2e::{
    LocalCluster, Spread, agent_bundle, binary, image_bundle, keygen, node_image, upgrade_image,
};

/// The phases, in the order osctl reports them, and the line that ends the last.
const PHASES: [&str; 4] = ["receive", "verify", "write", "reboot"];
const HEALTHY: &str = "is healthy in slot";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let upgrades = args
        .iter()
        .position(|a| a == "--upgrades")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(4);
    match run(upgrades, args.iter().any(|a| a == "--vm")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upgrade-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(upgrades: usize, vm: bool) -> Result<(), String> {
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (key, public) = keygen(work.path(), "bench.key");
    let patch = format!("{{machine: {{upgrade: {{trustedKeys: ['{public}']}}}}}}");
    let agent = binary("node-agent");
    let process_bundles = [
        agent_bundle(work.path(), &key, &agent, "0.2.0-bench"),
        agent_bundle(work.path(), &key, &agent, "0.3.0-bench"),
    ];
    println!("| figure | median | range |");
    println!("|---|---|---|");
    let cluster = LocalCluster::create("upgrade-bench", 98, 1, &["--config-patch", &patch]);
    let phases = measure(&cluster, &process_bundles, upgrades)?;
    report("process node", &phases, &process_bundles[0]);
    drop(cluster);

    if vm {
        let vm_bundles = [
            image_bundle(work.path(), &key, &upgrade_image("v2")),
            image_bundle(work.path(), &key, &node_image()),
        ];
        let cluster = LocalCluster::create_vms(
            "upgrade-bench-vm",
            98,
            1,
            &["--boot", "uefi", "--config-patch", &patch],
        );
        let phases = measure(&cluster, &vm_bundles, upgrades)?;
        report("UEFI VM (TCG, 1 vCPU)", &phases, &vm_bundles[0]);
    }
    Ok(())
}

/// Seconds of each phase (and their total) per upgrade.
type Phases = Vec<[f64; 5]>;

fn measure(
    cluster: &LocalCluster,
    bundles: &[PathBuf; 2],
    upgrades: usize,
) -> Result<Phases, String> {
    let node = &cluster.addresses[0];
    let mut all = Vec::new();
    for n in 0..upgrades {
        let bundle = &bundles[n % 2];
        eprintln!(
            "upgrade-bench: upgrade {}/{upgrades}: {}",
            n + 1,
            bundle.display()
        );
        let mut osctl = Command::new(binary("osctl"))
            .env("HOME", cluster.home.path())
            .args(["-e", node, "upgrade", "--image", path(bundle), "--wait"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut marks = Vec::new();
        let mut seen = Vec::new();
        let stderr = BufReader::new(osctl.stderr.take().ok_or("no stderr")?);
        // The reboot wait prints dots on one line; the verdict ends it.
        for line in stderr.split(b'\n') {
            let line = String::from_utf8_lossy(&line.map_err(|e| e.to_string())?).into_owned();
            let at = started.elapsed().as_secs_f64();
            if let Some(phase) = PHASES.iter().position(|p| line.starts_with(p)) {
                marks.push((phase, at));
            }
            if line.contains(HEALTHY) {
                marks.push((PHASES.len(), at));
            }
            seen.push(line);
        }
        let status = osctl.wait().map_err(|e| e.to_string())?;
        let times: Vec<f64> = (0..=PHASES.len())
            .map(|phase| marks.iter().find(|(p, _)| *p == phase).map(|(_, at)| *at))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                format!(
                    "upgrade {} ({status}) did not report every phase: {seen:?}",
                    n + 1
                )
            })?;
        all.push([
            times[1] - times[0],
            times[2] - times[1],
            times[3] - times[2],
            times[4] - times[3],
            times[4],
        ]);
    }
    Ok(all)
}

fn report(platform: &str, phases: &Phases, bundle: &Path) {
    let size = std::fs::metadata(bundle).map(|m| m.len()).unwrap_or(0);
    let names = [
        "receive (upload)",
        "verify",
        "write",
        "reboot → healthy",
        "total",
    ];
    for (i, name) in names.iter().enumerate() {
        let samples: Vec<f64> = phases.iter().map(|p| p[i]).collect();
        let spread = Spread::of(&samples);
        println!(
            "| {platform}: {name} | {:.2} s | {:.2}–{:.2} s ({} upgrades) |",
            spread.median,
            spread.min,
            spread.max,
            samples.len()
        );
    }
    println!(
        "| {platform}: bundle size | {:.1} MiB | |",
        size as f64 / f64::from(1 << 20)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
