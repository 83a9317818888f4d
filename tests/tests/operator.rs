//! The operator against a real Kubernetes API server (the apiserver test bed) and
//! six real process-mode nodes on loopback, driven the way a platform engineer does:
//! `kubectl apply` and `kubectl talos`.
//!
//! In order, on one cluster: a config patch in a TalosNode reaches the agent (read
//! back with osctl) and its hash shows in status; a patch the agent refuses is named in
//! a condition and leaves the running configuration alone; `kubectl talos reboot`
//! reboots a node once; a TalosUpgrade over the six nodes with maxUnavailable 2 (the
//! operator killed and restarted mid-rollout, and paused for a while) upgrades each
//! node exactly once, never more than two at a time by the agents' own boot and
//! confirmation times; a rollout of a broken release stops at its first node, which
//! comes back on the old release by itself; a rollout outside its maintenance window
//! starts nothing and says why. Last, every request the operator made (the API
//! server's audit log) is one the chart's ClusterRole grants, and the ClusterRole
//! grants nothing else.
//!
//! The API server cannot serve Nodes, Pods or Events: cordon and drain are tested
//! against kube's mock service in `operator::drain`, and their requests are taken
//! from `operator::drain::REQUESTS` for the RBAC check.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crds::{NodePhase, NodeUpgradeState, TalosNode, TalosUpgrade, UpgradePhase};
use e2e::apiserver::TestBed;
use e2e::https::HttpsServer;
use e2e::operator::{Operator, http_get, operator_certificate};
use e2e::{LocalCluster, agent_bundle, binary, keygen};
use kube::api::Api;
use serde_json::{Value, json};

const PORT: u16 = 16544;
const ETCD_PORT: u16 = 23892;
const NET: u8 = 46;
const METRICS: &str = "127.0.46.200:18080";
const V1: &str = env!("CARGO_PKG_VERSION");
const V2: &str = "0.2.0-rollout";
const V3: &str = "0.3.0-broken";
const OPERATOR_USER: &str = "talos-operator";

/// kubectl apply of one object (JSON).
fn apply(bed: &TestBed, object: &Value) -> std::process::Output {
    let mut child = Command::new(e2e::apiserver::cache().join("bin/kubectl"))
        .arg("--kubeconfig")
        .arg(&bed.kubeconfig)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(object.to_string().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn apply_ok(bed: &TestBed, object: &Value) {
    let output = apply(bed, object);
    assert!(
        output.status.success(),
        "kubectl apply {object}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `kubectl talos ARGS` (the plugin found on PATH, as kubectl does).
fn kubectl_talos(bed: &TestBed, args: &[&str]) -> std::process::Output {
    let path = format!(
        "{}:{}",
        binary("kubectl-talos").parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(e2e::apiserver::cache().join("bin/kubectl"))
        .args(["talos", "--kubeconfig"])
        .arg(&bed.kubeconfig)
        .args(args)
        .env("PATH", path)
        .output()
        .expect("running kubectl talos")
}

fn talos_node(name: &str, address: &str, extra: Value) -> Value {
    let mut spec = json!({"endpoints": [format!("{address}:50000")]});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({
        "apiVersion": "talos.dev/v1alpha1",
        "kind": "TalosNode",
        "metadata": {"name": name, "labels": {"pool": "workers"}},
        "spec": spec,
    })
}

fn rollout(name: &str, version: &str, url: &str, extra: Value) -> Value {
    let mut spec = json!({
        "version": {"version": version, "url": url},
        "nodeSelector": {"matchLabels": {"pool": "workers"}},
        "soakTime": "2s",
        "healthChecks": {"timeout": "3m"},
    });
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({
        "apiVersion": "talos.dev/v1alpha1",
        "kind": "TalosUpgrade",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// Polls `check` on the API server every 300 ms until it returns Some.
fn eventually<T>(
    runtime: &tokio::runtime::Runtime,
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = runtime.block_on(check()) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The version row of every node, by node name (n1..n6).
fn versions(cluster: &LocalCluster) -> BTreeMap<String, Value> {
    cluster
        .addresses
        .iter()
        .enumerate()
        .map(|(i, address)| {
            let row = cluster.rows(address, &["version"]).remove(0);
            (format!("n{}", i + 1), row)
        })
        .collect()
}

/// The generation of the slot a node booted (each install takes the next one).
fn booted_generation(version: &Value) -> u64 {
    version["slots"]
        .as_array()
        .and_then(|slots| slots.iter().find(|s| s["booted"] == true))
        .and_then(|s| s["generation"].as_u64())
        .unwrap_or_else(|| panic!("no booted slot in {version}"))
}

/// Each node's time down for its upgrade, by its own clock: from its new boot (the
/// agent's boot time, whole seconds, rounded down, so the interval can only grow)
/// to its `confirmed` event (milliseconds).
fn upgrade_intervals(cluster: &LocalCluster) -> Vec<(String, f64, f64)> {
    cluster
        .addresses
        .iter()
        .map(|address| {
            let version = cluster.rows(address, &["version"]).remove(0);
            let booted = seconds(&version["boot_time"]) - 1.0;
            let events = cluster.rows(address, &["events"]);
            let confirmed = events
                .iter()
                .find(|e| e["kind"] == "confirmed")
                .map(|e| seconds(&e["time"]))
                .unwrap_or_else(|| panic!("{address}: no confirmed event in {events:?}"));
            (address.clone(), booted, confirmed)
        })
        .collect()
}

/// An RFC 3339 time (as osctl prints them) in Unix seconds.
fn seconds(time: &Value) -> f64 {
    let text = time
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {time}"));
    let stamp: jiff::Timestamp = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
    stamp.as_millisecond() as f64 / 1000.0
}

/// The most intervals that overlap at any instant.
fn max_overlap(intervals: &[(String, f64, f64)]) -> usize {
    intervals
        .iter()
        .map(|(_, start, _)| {
            intervals
                .iter()
                .filter(|(_, s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// The (group, resource, verb) the ClusterRole of the chart grants.
fn cluster_role_grants() -> BTreeSet<(String, String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/talos-operator/templates/clusterrole.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let role = text.split("\n---").next().unwrap();
    // The rules are plain YAML; only the metadata uses templates.
    let plain: String = role
        .lines()
        .filter(|l| !l.contains("{{"))
        .map(|l| format!("{l}\n"))
        .collect();
    let role: Value = serde_yaml_ng::from_str(&plain).unwrap();
    let mut grants = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    grants.insert((
                        group.as_str().unwrap().to_owned(),
                        resource.as_str().unwrap().to_owned(),
                        verb.as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
    }
    grants
}

/// The (group, resource, verb) of every request `user` made, from the audit log.
fn audited_requests(log: &Path, user: &str) -> BTreeSet<(String, String, String)> {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["user"]["username"] == user && e["stage"] == "ResponseComplete")
        .filter_map(|e| {
            let object = &e["objectRef"];
            let resource = object["resource"].as_str()?;
            let resource = match object["subresource"].as_str() {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.to_owned(),
            };
            Some((
                object["apiGroup"].as_str().unwrap_or_default().to_owned(),
                resource,
                e["verb"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[test]
fn operator_drives_config_reboots_and_rollouts() {
    let runtime = e2e::runtime();
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path(), "release.key");
    let broken_agent = work.path().join("broken-agent");
    std::fs::write(
        &broken_agent,
        "#!/bin/sh\necho 'v3 agent: giving up' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&broken_agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let downloads_dir = work.path().join("downloads");
    std::fs::create_dir_all(&downloads_dir).unwrap();
    let v2 = agent_bundle(work.path(), &key, &binary("node-agent"), V2);
    let v3 = agent_bundle(work.path(), &key, &broken_agent, V3);
    std::fs::copy(&v2, downloads_dir.join("v2.bundle")).unwrap();
    std::fs::copy(&v3, downloads_dir.join("v3.bundle")).unwrap();
    let downloads = HttpsServer::start(&downloads_dir, "127.0.46.201", 8443);
    let url = |name: &str| format!("https://127.0.46.201:8443/{name}");

    let patch = json!({"machine": {"upgrade": {
        "trustedKeys": [public], "healthTimeout": "60s", "caCertificates": downloads.ca_pem,
    }}})
    .to_string();
    let cluster = LocalCluster::create("operator", NET, 6, &["--config-patch", &patch]);
    let cert_dir = operator_certificate(&cluster, work.path());

    let bed = TestBed::start(PORT, ETCD_PORT, &[OPERATOR_USER], true);
    bed.install_crds();
    let client = runtime.block_on(bed.client());
    let nodes: Api<TalosNode> = Api::all(client.clone());
    let upgrades: Api<TalosUpgrade> = Api::all(client.clone());
    eventually(
        &runtime,
        "TalosNodes served",
        Duration::from_secs(30),
        async || nodes.list(&Default::default()).await.ok(),
    );

    let operator_log = work.path().join("operator.log");
    let mut operator = Operator::start(
        &bed.kubeconfig_of(OPERATOR_USER),
        &cert_dir,
        &operator_log,
        METRICS,
        &["--poll", "1s", "--resync", "5s"],
    );
    for (i, address) in cluster.addresses.iter().enumerate() {
        apply_ok(
            &bed,
            &talos_node(&format!("n{}", i + 1), address, json!({})),
        );
    }
    let node = async |name: &str| nodes.get(name).await.ok();
    let status_of = async |name: &str| node(name).await.and_then(|n| n.status);
    eventually(
        &runtime,
        "six Ready TalosNodes on the first release",
        Duration::from_secs(90),
        async || {
            let list = nodes.list(&Default::default()).await.ok()?;
            let ready = list.items.iter().filter(|n| {
                n.status.as_ref().is_some_and(|s| {
                    s.phase == Some(NodePhase::Ready) && s.os_version.as_deref() == Some(V1)
                })
            });
            (ready.count() == 6).then_some(())
        },
    );

    // --- A config patch reaches the agent; status shows its hash. ---
    let n1 = cluster.addresses[0].clone();
    let hash_before = cluster.rows(&n1, &["get", "config"])[0]["config_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let swappiness = json!({"merge": {"machine": {"sysctls": {"vm.swappiness": "10"}}}});
    apply_ok(
        &bed,
        &talos_node("n1", &n1, json!({"configPatches": [swappiness]})),
    );
    let applied = eventually(
        &runtime,
        "n1's patch applied",
        Duration::from_secs(60),
        async || {
            let status = status_of("n1").await?;
            let hash = status.applied_config_hash.clone()?;
            (hash != hash_before && status.pending_config_diff.is_none()).then_some(hash)
        },
    );
    let config = cluster.rows(&n1, &["get", "config"]).remove(0);
    assert_eq!(
        config["config_hash"],
        applied.as_str(),
        "status shows the hash the agent runs"
    );
    assert!(
        config["config"].as_str().unwrap().contains("vm.swappiness"),
        "{config}"
    );

    // --- A patch the agent refuses: named in a condition, the running config kept. ---
    let too_short = json!({"merge": {"machine": {"upgrade": {"healthTimeout": "1s"}}}});
    apply_ok(
        &bed,
        &talos_node("n1", &n1, json!({"configPatches": [swappiness, too_short]})),
    );
    let refused = eventually(
        &runtime,
        "n1's bad patch refused",
        Duration::from_secs(60),
        async || {
            let status = status_of("n1").await?;
            let condition = status
                .conditions
                .iter()
                .find(|c| c.type_ == "ConfigApplied")?;
            (condition.status == "False").then(|| (condition.clone(), status.phase))
        },
    );
    assert_eq!(refused.0.reason, "Invalid");
    assert!(
        refused.0.message.contains("healthTimeout"),
        "{}",
        refused.0.message
    );
    assert_eq!(refused.1, Some(NodePhase::Degraded));
    assert_eq!(
        cluster.rows(&n1, &["get", "config"])[0]["config_hash"],
        applied.as_str(),
        "the refused patch left the running configuration alone"
    );
    // The CRD schema refuses a malformed patch before the operator sees it.
    let bad_op = json!({"jsonPatch": [{"op": "frobnicate", "path": "/machine"}]});
    let output = apply(
        &bed,
        &talos_node("n1", &n1, json!({"configPatches": [bad_op]})),
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("frobnicate"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    apply_ok(
        &bed,
        &talos_node("n1", &n1, json!({"configPatches": [swappiness]})),
    );
    eventually(
        &runtime,
        "n1 Ready again",
        Duration::from_secs(60),
        async || (status_of("n1").await?.phase == Some(NodePhase::Ready)).then_some(()),
    );

    // --- kubectl talos reboot: one reboot, status follows. ---
    let n2 = cluster.addresses[1].clone();
    let boot_before = cluster.boot_id(&n2);
    let output = kubectl_talos(&bed, &["reboot", "n2"]);
    assert!(
        output.status.success(),
        "kubectl talos reboot: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let new_boot = eventually(
        &runtime,
        "n2 rebooted and Ready",
        Duration::from_secs(90),
        async || {
            let status = status_of("n2").await?;
            let boot = status.boot_id.clone()?;
            (boot != boot_before
                && status.phase == Some(NodePhase::Ready)
                && status.operation.is_none())
            .then_some(boot)
        },
    );
    assert_eq!(cluster.boot_id(&n2), new_boot);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        cluster.boot_id(&n2),
        new_boot,
        "the node rebooted a second time"
    );

    // --- kubectl talos apply-config: the agent's diff first, then the change. ---
    let n3 = cluster.addresses[2].clone();
    let patch_file = work.path().join("dirty-ratio.yaml");
    std::fs::write(
        &patch_file,
        "machine:\n  sysctls:\n    vm.dirty_ratio: \"15\"\n",
    )
    .unwrap();
    let patch_arg = patch_file.to_str().unwrap();
    let hash_before = cluster.rows(&n3, &["get", "config"])[0]["config_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let dry = kubectl_talos(&bed, &["apply-config", "n3", "-f", patch_arg, "--dry-run"]);
    let dry_out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        dry_out.contains("+") && dry_out.contains("vm.dirty_ratio"),
        "the agent's diff: {dry_out}"
    );
    assert_eq!(
        cluster.rows(&n3, &["get", "config"])[0]["config_hash"],
        hash_before.as_str(),
        "a dry run changes nothing"
    );
    let applied_n3 = kubectl_talos(
        &bed,
        &["apply-config", "n3", "-f", patch_arg, "--timeout", "60s"],
    );
    let applied_out = String::from_utf8_lossy(&applied_n3.stdout);
    assert!(
        applied_n3.status.success(),
        "{}",
        String::from_utf8_lossy(&applied_n3.stderr)
    );
    assert!(applied_out.contains("applied, config"), "{applied_out}");
    let config = cluster.rows(&n3, &["get", "config"]).remove(0);
    assert!(
        config["config"]
            .as_str()
            .unwrap()
            .contains("vm.dirty_ratio"),
        "{config}"
    );
    let table = String::from_utf8_lossy(&kubectl_talos(&bed, &["get"]).stdout).into_owned();
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header[..3], ["NODE", "PHASE", "OS"], "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains("Ready")).count(),
        6,
        "{table}"
    );

    // --- A rollout over six nodes, two at a time, with an operator restart and a pause. ---
    let generations: BTreeMap<String, u64> = versions(&cluster)
        .iter()
        .map(|(n, v)| (n.clone(), booted_generation(v)))
        .collect();
    apply_ok(
        &bed,
        &rollout("to-v2", V2, &url("v2.bundle"), json!({"maxUnavailable": 2})),
    );
    let rollout_status = async |name: &str| upgrades.get(name).await.ok().and_then(|u| u.status);
    eventually(
        &runtime,
        "the first batch started",
        Duration::from_secs(60),
        async || {
            let status = rollout_status("to-v2").await?;
            (status.in_progress == 2).then_some(())
        },
    );
    operator.kill();
    std::thread::sleep(Duration::from_secs(3));
    let mut operator = Operator::start(
        &bed.kubeconfig_of(OPERATOR_USER),
        &cert_dir,
        &operator_log,
        METRICS,
        &["--poll", "1s", "--resync", "5s"],
    );
    eventually(
        &runtime,
        "the second batch started",
        Duration::from_secs(120),
        async || {
            let status = rollout_status("to-v2").await?;
            (status.updated >= 2 && status.in_progress > 0).then_some(())
        },
    );
    apply_ok(
        &bed,
        &rollout(
            "to-v2",
            V2,
            &url("v2.bundle"),
            json!({"maxUnavailable": 2, "paused": true}),
        ),
    );
    let paused = eventually(
        &runtime,
        "the rollout paused",
        Duration::from_secs(120),
        async || {
            let status = rollout_status("to-v2").await?;
            (status.phase == Some(UpgradePhase::Paused)).then_some(status)
        },
    );
    assert_eq!(
        paused.updated, 4,
        "the batch under way finished; no new one started"
    );
    std::thread::sleep(Duration::from_secs(4));
    let still = runtime.block_on(rollout_status("to-v2")).unwrap();
    assert_eq!(
        (still.updated, still.in_progress),
        (4, 0),
        "paused: nothing new started"
    );
    apply_ok(
        &bed,
        &rollout("to-v2", V2, &url("v2.bundle"), json!({"maxUnavailable": 2})),
    );
    let done = eventually(
        &runtime,
        "the rollout done",
        Duration::from_secs(180),
        async || {
            let status = rollout_status("to-v2").await?;
            matches!(
                status.phase,
                Some(UpgradePhase::Succeeded | UpgradePhase::Failed)
            )
            .then_some(status)
        },
    );
    assert_eq!(done.phase, Some(UpgradePhase::Succeeded), "{done:?}");
    assert_eq!(done.progress.as_deref(), Some("6/6"));
    for (name, version) in versions(&cluster) {
        assert_eq!(version["os_version"], V2, "{name}");
        assert_eq!(
            booted_generation(&version),
            generations[&name] + 1,
            "{name} was upgraded exactly once (not repeated, not skipped)"
        );
    }
    let intervals = upgrade_intervals(&cluster);
    assert!(
        max_overlap(&intervals) <= 2,
        "more than two nodes down at once: {intervals:?}"
    );

    // --- A broken release: the rollout stops at its first node, which comes back. ---
    apply_ok(
        &bed,
        &rollout("to-v3", V3, &url("v3.bundle"), json!({"maxUnavailable": 1})),
    );
    let failed = eventually(
        &runtime,
        "the broken rollout stopped",
        Duration::from_secs(180),
        async || {
            let status = rollout_status("to-v3").await?;
            (status.phase == Some(UpgradePhase::Failed)).then_some(status)
        },
    );
    let states: Vec<NodeUpgradeState> = failed.nodes.iter().map(|n| n.state).collect();
    assert_eq!(states[0], NodeUpgradeState::Failed, "{failed:?}");
    assert!(
        states[1..].iter().all(|s| *s == NodeUpgradeState::Pending),
        "{failed:?}"
    );
    let after = versions(&cluster);
    assert_eq!(
        after["n1"]["os_version"], V2,
        "n1 came back on the release it had"
    );
    assert!(after["n1"]["rolled_back"].is_object(), "{}", after["n1"]);
    for name in ["n2", "n3", "n4", "n5", "n6"] {
        assert_eq!(after[name]["os_version"], V2, "{name} was not touched");
    }

    // --- Outside its window, a rollout starts nothing and says why. ---
    let window =
        json!({"maintenanceWindow": {"start": "0 0 1 1 *", "duration": "1m"}, "nodes": ["n2"]});
    apply_ok(&bed, &rollout("windowed", V1, &url("v2.bundle"), window));
    let waiting = eventually(
        &runtime,
        "the windowed rollout waiting",
        Duration::from_secs(60),
        async || {
            let status = rollout_status("windowed").await?;
            (status.phase == Some(UpgradePhase::Waiting)).then_some(status)
        },
    );
    let progressing = waiting
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert!(
        progressing
            .message
            .contains("outside the maintenance window"),
        "{progressing:?}"
    );
    assert_eq!(waiting.in_progress, 0);
    assert!(
        runtime
            .block_on(node("n2"))
            .unwrap()
            .spec
            .version
            .as_ref()
            .is_some_and(|v| v.version == V2)
    );

    // --- Metrics. ---
    let metrics = http_get(METRICS, "/metrics");
    assert!(
        metrics.contains("talos_operator_nodes{phase=\"Ready\"}"),
        "{metrics}"
    );
    assert!(http_get(METRICS, "/readyz").contains("ok"));
    operator.kill();

    // --- RBAC: the operator's requests against the chart's ClusterRole. ---
    let used = audited_requests(bed.audit_log.as_ref().unwrap(), OPERATOR_USER);
    let grants = cluster_role_grants();
    let not_granted: Vec<_> = used.difference(&grants).collect();
    assert!(
        not_granted.is_empty(),
        "the operator made requests its ClusterRole does not grant: {not_granted:?}"
    );
    let unserved: BTreeSet<(String, String, String)> = operator::drain::REQUESTS
        .iter()
        .chain(operator::UNSERVED_REQUESTS)
        .map(|(g, r, v)| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned()))
        .collect();
    let unused: Vec<_> = grants
        .iter()
        .filter(|g| !used.contains(*g) && !unserved.contains(*g))
        .collect();
    assert!(
        unused.is_empty(),
        "the ClusterRole grants what the operator never uses: {unused:?}"
    );
}
