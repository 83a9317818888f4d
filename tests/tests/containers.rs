//! Containers as a user sees them through osctl, on a process node with its own
//! containerd (Debian's containerd and runc, as root): an image imported over the API,
//! a service running from it, `ps`, `stats`, `logs -f`, `restart`, recovery after its
//! process is killed, a container made in `k8s.io` by someone else, bad input, and no
//! containerd or container left once the cluster is destroyed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{LocalCluster, binary, busybox_archive, process_alive, wait_for};

const IMAGE: &str = "node-os.local/e2e/busybox:1";

/// The `ps` row of container `id` (`-k` for k8s.io), if listed.
fn container(cluster: &LocalCluster, node: &str, id: &str, k8s: bool) -> Option<serde_json::Value> {
    let mut args = vec!["ps"];
    if k8s {
        args.push("-k");
    }
    cluster
        .rows(node, &args)
        .into_iter()
        .find(|row| row["id"] == id)
}

/// The pid of container `id` once it runs.
fn running_pid(cluster: &LocalCluster, node: &str, id: &str, k8s: bool, not: Option<u64>) -> u64 {
    wait_for(&format!("{id} running"), Duration::from_secs(30), || {
        let row = container(cluster, node, id, k8s)?;
        let pid = row["pid"].as_u64()?;
        (row["status"] == "running" && Some(pid) != not).then_some(pid)
    })
}

#[test]
fn container_services_run_are_listed_measured_restarted_and_cleaned_up() {
    let work = tempfile::tempdir().unwrap();
    let archive = busybox_archive(work.path(), IMAGE, &["sh", "echo", "sleep", "cat"]);
    // A long name: the node's state directory is too deep for a socket path there, so
    // the agent puts containerd's socket in a short directory of its own.
    let mut cluster = LocalCluster::create("containers-e2e", 40, 1, &["--containerd"]);
    let node = cluster.addresses[0].clone();
    let sock = cluster.containerd_socket(0);
    assert!(sock.len() + ".ttrpc".len() <= 107, "{sock}");

    // Bad input: not an archive, an OCI archive without its blobs, an unknown id.
    let junk = work.path().join("junk.tar");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    let refused = cluster.osctl(&["-e", &node, "image", "import", junk.to_str().unwrap()]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("is not a readable tar archive"),
        "{}",
        refused.stderr
    );
    let partial = work.path().join("partial.tar");
    let layout = work.path().join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    for tar in [
        vec![
            "-xf",
            archive.to_str().unwrap(),
            "-C",
            layout.to_str().unwrap(),
            "index.json",
        ],
        vec![
            "-cf",
            partial.to_str().unwrap(),
            "-C",
            layout.to_str().unwrap(),
            "index.json",
        ],
    ] {
        assert!(Command::new("tar").args(&tar).status().unwrap().success());
    }
    let refused = cluster.osctl(&["-e", &node, "image", "import", partial.to_str().unwrap()]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("lacks blob"), "{}", refused.stderr);
    assert!(
        cluster.rows(&node, &["image", "ls"]).is_empty(),
        "a refused import left an image"
    );
    let unknown = cluster.osctl(&["-e", &node, "restart", "nope"]);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("unknown service \"nope\""),
        "{}",
        unknown.stderr
    );

    // Import over the API, then a service from the image, and one whose image is missing.
    let imported = cluster
        .osctl(&["-e", &node, "image", "import", archive.to_str().unwrap()])
        .success();
    assert!(imported.stdout.contains(IMAGE), "{}", imported.stdout);
    let images = cluster.rows(&node, &["image", "ls"]);
    assert_eq!(images[0]["name"], IMAGE);
    assert!(images[0]["size_bytes"].as_u64().unwrap() > 500_000);
    let patch = format!(
        "[{{op: add, path: /machine/services, value: [
            {{name: ticker, image: '{IMAGE}', restart: always, stopTimeout: 2s,
              command: [sh, -c, 'i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done']}},
            {{name: ghost, image: 'node-os.local/e2e/none:1', restart: never}}]}}]"
    );
    cluster
        .osctl(&["-e", &node, "-n", &node, "patch", "--patch", &patch])
        .success();
    let pid = running_pid(&cluster, &node, "ticker", false, None);
    let row = container(&cluster, &node, "ticker", false).unwrap();
    assert_eq!(row["image"], IMAGE);
    assert_eq!(row["namespace"], "system");
    let ghost = wait_for("ghost to fail", Duration::from_secs(30), || {
        let services = cluster.rows(&node, &["services"]);
        services
            .into_iter()
            .find(|s| s["service"] == "ghost" && s["state"] == "failed")
    });
    assert!(
        ghost["message"]
            .as_str()
            .unwrap()
            .contains("is not on this node"),
        "{ghost}"
    );

    // Stats from the container's cgroup; logs, then a live follow.
    let stats = cluster.rows(&node, &["stats"]);
    let ticker = stats
        .iter()
        .find(|s| s["service"] == "ticker")
        .expect("ticker stats");
    assert!(ticker["memory_bytes"].as_u64().unwrap() > 0, "{ticker}");
    assert_eq!(ticker["source"], "cgroup");
    wait_for("ticker output", Duration::from_secs(10), || {
        let logs = cluster.osctl(&["-e", &node, "logs", "ticker", "--tail", "3"]);
        logs.stdout.contains("tick").then_some(())
    });
    let mut follow = Command::new(binary("osctl"))
        .args(["-e", &node, "logs", "-f", "ticker", "--tail", "0"])
        .env("HOME", cluster.home.path())
        .env_remove("OSCTL_CONFIG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with("tick ") && second.starts_with("tick "),
        "{first} / {second}"
    );
    assert_ne!(first, second, "follow repeated a line");
    follow.kill().unwrap();
    follow.wait().unwrap();

    // restart gives a new process; killing the process makes the supervisor restart it.
    let restarted = cluster.rows(&node, &["restart", "ticker"]);
    let new_pid = restarted[0]["pid"].as_u64().unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(
        running_pid(&cluster, &node, "ticker", false, Some(pid)),
        new_pid
    );
    let killed = Command::new("kill")
        .args(["-KILL", &new_pid.to_string()])
        .status();
    assert!(killed.unwrap().success());
    let after_kill = running_pid(&cluster, &node, "ticker", false, Some(new_pid));
    let services = cluster.rows(&node, &["services"]);
    let ticker = services.iter().find(|s| s["service"] == "ticker").unwrap();
    assert!(ticker["restarts"].as_u64().unwrap() >= 1, "{ticker}");
    assert!(after_kill != new_pid);

    // A container someone else made in k8s.io: listed with -k, measured, restarted.
    cluster
        .osctl(&[
            "-e",
            &node,
            "image",
            "import",
            "-k",
            archive.to_str().unwrap(),
        ])
        .success();
    // runc's state of k8s.io containers made by ctr is host-wide: a name of our own.
    let kube = format!("kube-{}", std::process::id());
    let kube = kube.as_str();
    let log = work.path().join("kube.log");
    let made = Command::new("ctr")
        .arg("-a")
        .arg(&sock)
        .args(["-n", "k8s.io", "run", "-d", "--log-uri"])
        .arg(format!("file://{}", log.display()))
        .args([
            IMAGE,
            kube,
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do echo kube; sleep 0.2; done",
        ])
        .output()
        .expect("ctr runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let kube_pid = running_pid(&cluster, &node, kube, true, None);
    assert!(
        container(&cluster, &node, "ticker", true).is_none(),
        "-k listed a system container"
    );
    let kube_stats = cluster.rows(&node, &["stats", "-k"]);
    assert!(
        kube_stats
            .iter()
            .any(|s| s["service"] == kube && s["memory_bytes"].as_u64() > Some(0)),
        "{kube_stats:?}"
    );
    let restarted = cluster.rows(&node, &["restart", "-k", kube]);
    let new_kube_pid = restarted[0]["pid"].as_u64().unwrap();
    assert_ne!(new_kube_pid, kube_pid);
    assert_eq!(
        running_pid(&cluster, &node, kube, true, Some(kube_pid)),
        new_kube_pid
    );
    let no_logs = cluster.osctl(&["-e", &node, "logs", "-k", kube]);
    assert_ne!(no_logs.code, 0);
    assert!(no_logs.stderr.contains("kubelet"), "{}", no_logs.stderr);

    // Removing an image: gone from the listing; removing it again names it.
    cluster
        .osctl(&["-e", &node, "image", "rm", "-k", IMAGE])
        .success();
    assert!(cluster.rows(&node, &["image", "ls", "-k"]).is_empty());
    let again = cluster.osctl(&["-e", &node, "image", "rm", "-k", IMAGE]);
    assert!(
        again.stderr.contains(IMAGE) && again.stderr.contains("not found"),
        "{}",
        again.stderr
    );

    // Destroy: the agent, its containerd and every container process are gone.
    let containerd_pid = cluster
        .rows(&node, &["services"])
        .iter()
        .find(|s| s["service"] == "containerd")
        .and_then(|s| s["pid"].as_u64())
        .unwrap();
    cluster.destroy_and_assert_gone();
    for pid in [containerd_pid, after_kill, new_kube_pid] {
        assert!(!process_alive(pid as u32), "process {pid} survived destroy");
    }
}
