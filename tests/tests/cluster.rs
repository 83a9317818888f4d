//! Local clusters from osctl: create and destroy from a fresh state, fan-out across
//! nodes with one of them down, and the process platform's reboot.

use std::time::Duration;

use e2e::{LocalCluster, process_alive, wait_for};

#[test]
fn a_cluster_is_created_answers_for_every_node_and_is_destroyed() {
    let mut cluster = LocalCluster::create("lifecycle", 21, 3, &[]);
    let state = cluster.home.path().join(".osctl/clusters/lifecycle");
    assert!(state.join("cluster.yaml").is_file());

    // One row per node through the control plane's fan-out.
    let rows = cluster.osctl(&["-o", "json", "version"]).success().json();
    let nodes: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        vec![
            "lifecycle-controlplane-1",
            "lifecycle-worker-1",
            "lifecycle-worker-2"
        ]
    );
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["platform"] == "process" && r["error"].is_null())
    );

    cluster.assert_all_running();
    cluster.destroy_and_assert_gone();
}

#[test]
fn fan_out_reports_a_down_node_and_still_answers_for_the_others() {
    let cluster = LocalCluster::create("fanout", 22, 3, &[]);
    let down = cluster.agent_pid(2);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(down as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the killed agent to go", Duration::from_secs(5), || {
        (!process_alive(down)).then_some(())
    });

    let nodes = cluster.addresses.join(",");
    let run = cluster.osctl(&["-n", &nodes, "version"]);
    assert_eq!(
        run.code, 1,
        "a failed node must fail the command:\n{}{}",
        run.stdout, run.stderr
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "a header and a row per node:\n{}",
        run.stdout
    );
    assert!(
        lines[1].starts_with("fanout-controlplane-1") && lines[1].contains("process"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("fanout-worker-1") && lines[2].contains("process"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with("127.0.22.4") && lines[3].contains("error: "),
        "{}",
        lines[3]
    );
    assert!(run.stderr.contains("1 node(s) failed"), "{}", run.stderr);

    // A worker is no fan-out endpoint: it refuses clearly.
    let run = cluster.osctl(&["-e", "127.0.22.3", "-n", &nodes, "version"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("go through a control-plane endpoint"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_process_mode_reboot_gives_a_new_boot_and_brings_services_back() {
    let patch = r#"{"machine":{"services":[{"name":"ticker","command":["sh","-c","while true; do echo tick; sleep 0.1; done"]}]}}"#;
    let cluster = LocalCluster::create("reboot", 23, 2, &["--config-patch", patch]);
    let worker = cluster.addresses[1].as_str();
    let before = cluster.boot_id(worker);
    let pid_before = cluster.rows(worker, &["services"])[0]["pid"]
        .as_u64()
        .unwrap();

    cluster
        .osctl(&["-e", worker, "-n", worker, "reboot", "--wait"])
        .success();

    let after = cluster.boot_id(worker);
    assert_ne!(before, after, "the boot id did not change");
    let service = wait_for("the service to come back", Duration::from_secs(10), || {
        let row = cluster.rows(worker, &["services"]).remove(0);
        (row["state"] == "running").then_some(row)
    });
    assert_ne!(
        service["pid"].as_u64().unwrap(),
        pid_before,
        "the service was not restarted"
    );
    // The configuration survived in the state directory.
    let config = cluster
        .osctl(&["-e", worker, "-n", worker, "get", "config"])
        .success();
    assert!(config.stdout.contains("ticker"), "{}", config.stdout);
    // Logs of the new boot stream.
    let logs = cluster
        .osctl(&["-e", worker, "-n", worker, "logs", "ticker", "--tail", "3"])
        .success();
    assert!(logs.stdout.contains("tick"), "{}", logs.stdout);
}
