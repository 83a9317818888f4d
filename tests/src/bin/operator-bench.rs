//! Operator benchmark: the operator against the real API server (the apiserver test
//! bed) at fleet scale.
//!
//! 1. `--nodes` (1,000) TalosNodes whose agents are simulated in this process: one
//!    TLS 1.3 machine API per node on its own port of 127.0.0.1, answering Version,
//!    ServiceList, GetConfiguration and PatchConfiguration (merge patches on a JSON
//!    document, with a real hash) with mutual TLS, as a real agent does. Measured:
//!    how long until every node is Ready (reconcile throughput), the operator's API
//!    requests per node per minute at steady state (from the API server's audit log)
//!    and its agent calls per node per minute, and how long a config patch on every
//!    TalosNode takes to be applied everywhere.
//! 2. `--process` (100) real process-mode nodes (`osctl cluster create`): how long a
//!    config patch on every TalosNode takes to converge, and how long a TalosUpgrade
//!    with maxUnavailable 10 takes to upgrade them all.
//!
//! Prints a markdown table (see docs/benchmarks.md). Run: `cargo build --release
//! --workspace && target/release/operator-bench [--nodes N] [--process N]` (the
//! apiserver test bed must be built: tests/testbeds/apiserver/setup).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::machine::machine_service_server::{MachineService, MachineServiceServer};
use api::machine::{
    ApplyConfigurationResponse, ApplyMode, Configuration, GetConfigurationRequest,
    GetConfigurationResponse, PatchConfigurationRequest, ServiceInfo, ServiceList,
    ServiceListRequest, ServiceListResponse, SlotInfo, VersionInfo, VersionRequest,
    VersionResponse,
};
use crds::{NodePhase, TalosNode, TalosUpgrade, UpgradePhase};
use e2e::apiserver::TestBed;
use e2e::https::HttpsServer;
use e2e::operator::{Operator, http_get, operator_certificate};
use e2e::{LocalCluster, agent_bundle, binary, keygen};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

const PORT: u16 = 16545;
const ETCD_PORT: u16 = 23894;
const FIRST_AGENT_PORT: u16 = 41000;
const USER: &str = "talos-operator";
const STEADY: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let number = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(default)
    };
    // A listener and a connection per simulated agent: more than the usual 1024.
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(number("--nodes", 1000), number("--process", 100))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("operator-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One simulated agent: its boot, configuration and call count.
struct SimAgent {
    boot_id: String,
    boot_time: i64,
    config: Mutex<Value>,
    calls: Arc<AtomicU64>,
}

impl SimAgent {
    fn hash(config: &Value) -> String {
        operator::node::sha256_hex(config.to_string().as_bytes())
    }
}

#[tonic::async_trait]
impl MachineService for SimAgent {
    async fn version(
        &self,
        _: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(VersionResponse {
            messages: vec![VersionInfo {
                agent_version: "sim".into(),
                os_version: "1.0.0".into(),
                kernel: "sim".into(),
                boot_id: self.boot_id.clone(),
                boot_time: self.boot_time,
                slot: "a".into(),
                slots: vec![SlotInfo {
                    slot: "a".into(),
                    version: "1.0.0".into(),
                    state: "good".into(),
                    generation: 1,
                    booted: true,
                }],
                ..VersionInfo::default()
            }],
        }))
    }

    async fn service_list(
        &self,
        _: Request<ServiceListRequest>,
    ) -> Result<Response<ServiceListResponse>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(ServiceListResponse {
            messages: vec![ServiceList {
                services: vec![ServiceInfo {
                    name: "kubelet".into(),
                    state: "running".into(),
                    health: "healthy".into(),
                    ..ServiceInfo::default()
                }],
                ..ServiceList::default()
            }],
        }))
    }

    async fn get_configuration(
        &self,
        _: Request<GetConfigurationRequest>,
    ) -> Result<Response<GetConfigurationResponse>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let config = self.config.lock().unwrap().clone();
        Ok(Response::new(GetConfigurationResponse {
            messages: vec![Configuration {
                config_hash: Self::hash(&config),
                redacted: true,
                ..Configuration::default()
            }],
        }))
    }

    async fn patch_configuration(
        &self,
        request: Request<PatchConfigurationRequest>,
    ) -> Result<Response<ApplyConfigurationResponse>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let request = request.into_inner();
        let mut config = self.config.lock().unwrap();
        let mut patched = config.clone();
        for text in &request.patches {
            let patch: Value =
                serde_json::from_str(text).map_err(|e| Status::invalid_argument(e.to_string()))?;
            json_patch::merge(&mut patched, &patch);
        }
        let diff = if patched == *config {
            String::new()
        } else {
            format!("-{}\n+{}\n", *config, patched)
        };
        let hash = Self::hash(&patched);
        if !request.dry_run {
            *config = patched;
        }
        Ok(Response::new(ApplyConfigurationResponse {
            messages: vec![api::machine::ApplyConfiguration {
                mode: ApplyMode::NoReboot.into(),
                mode_details: "applied live".into(),
                diff,
                config_hash: if request.dry_run { String::new() } else { hash },
                ..Default::default()
            }],
        }))
    }
}

/// Starts `count` simulated agents on consecutive ports; returns their call counter.
async fn start_agents(
    count: usize,
    ca: &pki::CertificateAuthority,
) -> Result<Arc<AtomicU64>, String> {
    let server = ca
        .issue_server("sim", &["127.0.0.1".to_owned()], Duration::from_secs(86400))
        .map_err(|e| e.to_string())?;
    let tls = pki::tls::server_config(ca.cert_pem(), &server.cert_pem, &server.key_pem)
        .map_err(|e| e.to_string())?;
    let calls = Arc::new(AtomicU64::new(0));
    let boot_time = jiff::Timestamp::now().as_second() - 60;
    for i in 0..count {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", FIRST_AGENT_PORT + i as u16))
            .await
            .map_err(|e| format!("port {}: {e}", FIRST_AGENT_PORT + i as u16))?;
        let agent = SimAgent {
            boot_id: format!("{i:08x}-sim"),
            boot_time,
            config: Mutex::new(json!({"machine": {"sysctls": {}}})),
            calls: calls.clone(),
        };
        let incoming = node_agent::server::listener::incoming(listener, tls.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(MachineServiceServer::new(agent))
                .serve_with_incoming(incoming),
        );
    }
    Ok(calls)
}

fn talos_node(name: &str, endpoint: &str) -> TalosNode {
    serde_json::from_value(json!({
        "apiVersion": "talos.dev/v1alpha1",
        "kind": "TalosNode",
        "metadata": {"name": name, "labels": {"bench": "yes"}},
        "spec": {"endpoints": [endpoint]},
    }))
    .expect("a valid TalosNode")
}

/// Creates the nodes, 16 requests at a time.
async fn create_nodes(api: &Api<TalosNode>, nodes: Vec<TalosNode>) -> Result<(), String> {
    let results: Vec<_> = futures::stream::iter(nodes)
        .map(|node| async move { api.create(&PostParams::default(), &node).await })
        .buffer_unordered(16)
        .collect()
        .await;
    first_error(results)
}

/// The first failure of a batch of requests, if any.
fn first_error<T>(results: Vec<Result<T, kube::Error>>) -> Result<(), String> {
    results
        .into_iter()
        .try_for_each(|r| r.map(drop).map_err(|e| e.to_string()))
}

/// Sets one config patch on every node, 16 requests at a time.
async fn patch_all(api: &Api<TalosNode>, names: &[String], patch: &Value) -> Result<(), String> {
    let body = json!({"apiVersion": "talos.dev/v1alpha1", "kind": "TalosNode", "spec": {"configPatches": [{"merge": patch}]}});
    let params = PatchParams::apply("operator-bench").force();
    let results: Vec<_> = futures::stream::iter(names)
        .map(|name| {
            let (body, params) = (&body, &params);
            async move { api.patch(name, params, &Patch::Apply(body)).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    first_error(results)
}

/// Waits until `done` holds for every listed TalosNode; returns how long it took.
async fn until_all(
    api: &Api<TalosNode>,
    count: usize,
    what: &str,
    timeout: Duration,
    done: impl Fn(&TalosNode) -> bool,
) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        let list = api
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let ready = list.items.iter().filter(|n| done(n)).count();
        if ready >= count {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            return Err(format!("{what}: {ready} of {count} after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ready(node: &TalosNode) -> bool {
    node.status
        .as_ref()
        .is_some_and(|s| s.phase == Some(NodePhase::Ready))
}

fn config_applied(node: &TalosNode) -> bool {
    node.status.as_ref().is_some_and(|s| {
        s.pending_config_diff.is_none()
            && s.conditions.iter().any(|c| {
                c.type_ == "ConfigApplied"
                    && c.status == "True"
                    && c.observed_generation == node.metadata.generation
            })
            && s.phase == Some(NodePhase::Ready)
    })
}

/// The operator's requests in the audit log, between two times (RFC 3339 strings
/// compare in order).
fn audited(log: &Path, from: &str, to: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["user"]["username"] == USER && e["stage"] == "ResponseComplete")
        .filter(|e| {
            let at = e["requestReceivedTimestamp"].as_str().unwrap_or_default();
            at >= from && at < to
        })
        .count()
}

fn metric(address: &str, name: &str) -> f64 {
    http_get(address, "/metrics")
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn row(figure: &str, value: String) {
    println!("| {figure} | {value} |");
}

async fn run(count: usize, process: usize) -> Result<(), String> {
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let bed = TestBed::start(PORT, ETCD_PORT, &[USER], true);
    bed.install_crds();
    let client = bed.client().await;
    let nodes: Api<TalosNode> = Api::all(client.clone());
    println!("| figure | value |");
    println!("|---|---|");

    // --- Simulated agents. ---
    let ca = pki::CertificateAuthority::generate("bench").map_err(|e| e.to_string())?;
    let calls = start_agents(count, &ca).await?;
    let cert_dir = work.path().join("sim-cert");
    std::fs::create_dir_all(&cert_dir).map_err(|e| e.to_string())?;
    let client_cert = ca
        .issue_client("operator", pki::Role::Operator, Duration::from_secs(86400))
        .map_err(|e| e.to_string())?;
    for (name, pem) in [
        ("ca.crt", ca.cert_pem()),
        ("tls.crt", &client_cert.cert_pem),
        ("tls.key", &client_cert.key_pem),
    ] {
        std::fs::write(cert_dir.join(name), pem).map_err(|e| e.to_string())?;
    }
    let metrics = "127.0.0.1:18081";
    let operator = Operator::start(
        &bed.kubeconfig_of(USER),
        &cert_dir,
        &work.path().join("sim.log"),
        metrics,
        &[],
    );
    let names: Vec<String> = (0..count).map(|i| format!("sim-{i:04}")).collect();
    let started = Instant::now();
    create_nodes(
        &nodes,
        names
            .iter()
            .enumerate()
            .map(|(i, n)| talos_node(n, &format!("127.0.0.1:{}", FIRST_AGENT_PORT + i as u16)))
            .collect(),
    )
    .await?;
    let created = started.elapsed();
    let all_ready = until_all(
        &nodes,
        count,
        "simulated nodes Ready",
        Duration::from_secs(900),
        ready,
    )
    .await?;
    let reconciles = metric(metrics, "talos_operator_reconciles_total");
    row(
        &format!("{count} simulated nodes: created (16 at a time)"),
        format!("{:.1} s", created.as_secs_f64()),
    );
    row(
        &format!("{count} simulated nodes: all Ready after creation started"),
        format!(
            "{:.1} s ({:.0} nodes/s)",
            all_ready.as_secs_f64() + created.as_secs_f64(),
            count as f64 / (all_ready + created).as_secs_f64()
        ),
    );
    row("reconciles until then", format!("{reconciles:.0}"));

    // --- Steady state. ---
    tokio::time::sleep(Duration::from_secs(10)).await;
    let from = jiff::Timestamp::now().to_string();
    let calls_before = calls.load(Ordering::Relaxed);
    let reconciles_before = metric(metrics, "talos_operator_reconciles_total");
    tokio::time::sleep(STEADY).await;
    let to = jiff::Timestamp::now().to_string();
    let requests = audited(bed.audit_log.as_ref().unwrap(), &from, &to);
    let agent_calls = calls.load(Ordering::Relaxed) - calls_before;
    let steady_reconciles = metric(metrics, "talos_operator_reconciles_total") - reconciles_before;
    let minutes = STEADY.as_secs_f64() / 60.0;
    row(
        "steady state: API requests per node per minute",
        format!(
            "{:.3} ({requests} in {}s)",
            requests as f64 / count as f64 / minutes,
            STEADY.as_secs()
        ),
    );
    row(
        "steady state: agent RPCs per node per minute",
        format!("{:.1}", agent_calls as f64 / count as f64 / minutes),
    );
    row(
        "steady state: reconciles per second",
        format!("{:.1}", steady_reconciles / STEADY.as_secs_f64()),
    );

    // --- A config change on every simulated node. ---
    let started = Instant::now();
    patch_all(
        &nodes,
        &names,
        &json!({"machine": {"sysctls": {"vm.swappiness": "10"}}}),
    )
    .await?;
    let patched = started.elapsed();
    let converged = until_all(
        &nodes,
        count,
        "config applied on simulated nodes",
        Duration::from_secs(900),
        config_applied,
    )
    .await?;
    row(
        &format!("{count} simulated nodes: config patch applied everywhere"),
        format!(
            "{:.1} s (spec writes {:.1} s)",
            (patched + converged).as_secs_f64(),
            patched.as_secs_f64()
        ),
    );
    drop(operator);
    nodes
        .delete_collection(&Default::default(), &Default::default())
        .await
        .map_err(|e| e.to_string())?;

    if process > 0 {
        process_nodes(&bed, &nodes, &client, work.path(), process).await?;
    }
    Ok(())
}

/// Config change and rollout convergence on real process nodes.
async fn process_nodes(
    bed: &TestBed,
    nodes: &Api<TalosNode>,
    client: &kube::Client,
    dir: &Path,
    count: usize,
) -> Result<(), String> {
    let (key, public) = keygen(dir, "bench.key");
    let downloads_dir = dir.join("downloads");
    std::fs::create_dir_all(&downloads_dir).map_err(|e| e.to_string())?;
    let bundle = agent_bundle(dir, &key, &binary("node-agent"), "0.2.0-bench");
    std::fs::copy(&bundle, downloads_dir.join("v2.bundle")).map_err(|e| e.to_string())?;
    let downloads = HttpsServer::start(&downloads_dir, "127.0.49.250", 8443);
    let patch = json!({"machine": {"upgrade": {"trustedKeys": [public], "healthTimeout": "120s", "caCertificates": downloads.ca_pem}}}).to_string();
    let started = Instant::now();
    let cluster = LocalCluster::create("operator-bench", 49, count, &["--config-patch", &patch]);
    row(
        &format!("{count} process nodes: cluster created"),
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );
    let cert_dir = operator_certificate(&cluster, dir);
    let metrics = "127.0.0.1:18082";
    let _operator = Operator::start(
        &bed.kubeconfig_of(USER),
        &cert_dir,
        &dir.join("process.log"),
        metrics,
        &[],
    );
    let names: Vec<String> = (1..=count).map(|i| format!("p-{i:03}")).collect();
    let started = Instant::now();
    create_nodes(
        nodes,
        names
            .iter()
            .zip(&cluster.addresses)
            .map(|(n, a)| talos_node(n, &format!("{a}:50000")))
            .collect(),
    )
    .await?;
    until_all(
        nodes,
        count,
        "process nodes Ready",
        Duration::from_secs(900),
        ready,
    )
    .await?;
    row(
        &format!("{count} process nodes: all Ready after creation started"),
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );

    let started = Instant::now();
    patch_all(
        nodes,
        &names,
        &json!({"machine": {"sysctls": {"vm.swappiness": "10"}}}),
    )
    .await?;
    until_all(
        nodes,
        count,
        "config applied on process nodes",
        Duration::from_secs(900),
        config_applied,
    )
    .await?;
    row(
        &format!("{count} process nodes: config patch converged"),
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );

    let upgrades: Api<TalosUpgrade> = Api::all(client.clone());
    let rollout: TalosUpgrade = serde_json::from_value(json!({
        "apiVersion": "talos.dev/v1alpha1", "kind": "TalosUpgrade", "metadata": {"name": "bench"},
        "spec": {"version": {"version": "0.2.0-bench", "url": "https://127.0.49.250:8443/v2.bundle"},
                 "nodeSelector": {"matchLabels": {"bench": "yes"}}, "maxUnavailable": 10, "soakTime": "0s",
                 "healthChecks": {"timeout": "5m"}},
    }))
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    upgrades
        .create(&PostParams::default(), &rollout)
        .await
        .map_err(|e| e.to_string())?;
    let mut phases = BTreeMap::new();
    loop {
        let status = upgrades
            .get("bench")
            .await
            .map_err(|e| e.to_string())?
            .status
            .unwrap_or_default();
        phases.insert(format!("{:?}", status.phase), status.progress.clone());
        match status.phase {
            Some(UpgradePhase::Succeeded) => break,
            Some(UpgradePhase::Failed) => {
                return Err(format!("the rollout failed: {:?}", status.conditions));
            }
            _ if started.elapsed() > Duration::from_secs(1800) => {
                return Err(format!("the rollout took over 30 min: {phases:?}"));
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    row(
        &format!("{count} process nodes: TalosUpgrade, maxUnavailable 10, soak 0s"),
        format!(
            "{:.1} s ({:.1} s per batch of 10)",
            started.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64() / count.div_ceil(10) as f64
        ),
    );
    drop(cluster);
    // The download server owns a runtime, which must not be dropped inside this one.
    tokio::task::spawn_blocking(move || drop(downloads))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
