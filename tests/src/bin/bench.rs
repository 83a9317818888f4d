//! Benchmarks of the machine API and the node agent, on the real `node-agent` and
//! `osctl` binaries over loopback (127.0.99.2-4, port 50000).
//!
//! What it measures:
//! 0. the floor, live: a bare server with the same security in this process
//!    (established `Version` latency and streaming), which the targets of 1. and 3.
//!    are ratios to (p50 ≤ 1.5 ×, throughput ≥ 0.5 ×);
//! 1. `Version` RPC latency (p50/p99) and rate over one established mTLS connection,
//!    and with a new TCP + TLS 1.3 + HTTP/2 connection per call (full handshake, and
//!    with TLS session resumption for comparison);
//! 2. wall time of a whole `osctl --config FILE version` process;
//! 3. `Logs` streaming throughput (the whole retained log of a chatty service, over
//!    one connection) and the time to its first message;
//! 4. the agent's resident memory (VmRSS, and its anonymous part) when idle with 5
//!    services and with none, and after the load of 1. to 3.;
//! 5. cold start: from spawning the agent to its API answering.
//!
//! Each latency and throughput figure is the median of 3 runs (the run with the
//! median p50 or rate), next to the agent's CPU time per call or per MB over all
//! runs, which depends much less than wall time on what else the machine runs. Cold
//! start is the median of 5 starts.
//!
//! Run it on a release build: `cargo build --release --workspace && target/release/bench`
//! (`--quick` for a smoke run with fewer iterations). The binaries are found next to
//! this one (or in `E2E_BIN_DIR`). Progress goes to stderr, the results to stdout as a
//! markdown table with the target and the reference floor of each figure; see
//! docs/benchmarks.md.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::machine::machine_service_client::MachineServiceClient;
use api::machine::{LogsRequest, ServiceListRequest, VersionRequest};
use api::transport::NodeAddress;
use e2e::{Node, binary, wait_for};
use osctl::client_config::{ClientConfig, Context};
use pki::Role;
use tokio::runtime::Runtime;
use tonic::transport::Channel;

/// Size of the floor's log: about what the agent retains for a chatty service.
const FLOOR_LOG_BYTES: usize = 2_900_000;

/// Node with 5 idle services: RPC latency, osctl, memory with services.
const SERVICES_NODE: &str = "127.0.99.2:50000";
/// Node with one service that printed a lot: log streaming.
const LOGS_NODE: &str = "127.0.99.3:50000";
/// Node without services: memory without services, cold start.
const EMPTY_NODE: &str = "127.0.99.4:50000";

/// Idle services of [`SERVICES_NODE`].
const IDLE_SERVICES: usize = 5;
/// The chatty service of [`LOGS_NODE`] and what it prints: 4 MB of 71-byte lines, more
/// than the agent keeps (1 MiB per file, 2 rotated files), so a whole-log read streams
/// the most the agent retains.
const LOG_SERVICE: &str = "chatty";
const LOG_COMMAND: &str = "yes 0123456789012345678901234567890123456789012345678901234567890123456789 \
                           | head -c 4000000; exec sleep 100000";

/// Longest wait for an agent or its services to get somewhere.
const WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Reference floor: a bare tonic + rustls server with the same security, measured on
/// a machine like this one when the targets were set. RPC latency and streaming are
/// measured live instead (see [`live_floor`]), since this machine's speed varies.
mod floor {
    pub const NEW_CONNECTION_P50_MS: f64 = 0.68;
    pub const ONE_SHOT_CLIENT_MS: f64 = 2.5;
    pub const IDLE_RSS_MIB: f64 = 5.4;
}

/// Targets of the agent: absolute, or relative to the live floor.
mod target {
    pub const OSCTL_VERSION_MS: f64 = 10.0;
    pub const RSS_WITH_SERVICES_MIB: f64 = 16.0;
    /// Established-connection p50 at most this many times the floor's.
    pub const RPC_P50_VS_FLOOR: f64 = 1.5;
    /// Streaming throughput at least this fraction of the floor's.
    pub const STREAM_VS_FLOOR: f64 = 0.5;
}

/// The floor measured now: a bare server (the agent's TLS listener, tonic, a role
/// check in an interceptor, handlers that only return canned data) in this process, on
/// its own two-thread runtime.
mod live_floor {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use api::machine::machine_service_server::{MachineService, MachineServiceServer};
    use api::machine::{Data, LogsRequest, VersionInfo, VersionRequest, VersionResponse};
    use bytes::Bytes;
    use futures::stream::BoxStream;
    use node_agent::server::listener::{PeerInfo, incoming};
    use pki::Role;
    use tonic::{Request, Response, Status};

    /// Where the bare server listens.
    pub const ADDRESS: &str = "127.0.99.5:50000";

    /// Size of a stream message, as the agent sends.
    const CHUNK: usize = 64 * 1024;

    struct BareApi {
        log: Bytes,
    }

    #[tonic::async_trait]
    impl MachineService for BareApi {
        async fn version(
            &self,
            _: Request<VersionRequest>,
        ) -> Result<Response<VersionResponse>, Status> {
            Ok(Response::new(VersionResponse {
                messages: vec![VersionInfo {
                    agent_version: "floor".into(),
                    ..VersionInfo::default()
                }],
            }))
        }

        async fn logs(
            &self,
            _: Request<LogsRequest>,
        ) -> Result<Response<BoxStream<'static, Result<Data, Status>>>, Status> {
            let log = self.log.clone();
            let chunks = (0..log.len()).step_by(CHUNK).map(move |start| {
                Ok(Data {
                    metadata: None,
                    bytes: log.slice(start..(start + CHUNK).min(log.len())),
                })
            });
            Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
        }
    }

    fn role_check(request: Request<()>) -> Result<Request<()>, Status> {
        let role = request
            .extensions()
            .get::<PeerInfo>()
            .and_then(|peer| peer.identity.as_ref()?.highest_role());
        match role {
            Some(role) if role.satisfies(Role::Reader) => Ok(request),
            _ => Err(Status::permission_denied("no role")),
        }
    }

    /// Starts the bare server serving a log of `log_bytes` bytes; returns the client
    /// TLS configuration (admin certificate of its own CA).
    pub fn start(log_bytes: usize) -> Arc<rustls::ClientConfig> {
        let authority = pki::CertificateAuthority::generate("floor").expect("a CA");
        let address: SocketAddr = ADDRESS.parse().expect("a valid address");
        let server = authority
            .issue_server(
                "floor",
                &[address.ip().to_string()],
                Duration::from_secs(3600),
            )
            .expect("a server certificate");
        let admin = authority
            .issue_client("admin", Role::Admin, Duration::from_secs(3600))
            .expect("a client certificate");
        let server_tls =
            pki::tls::server_config(authority.cert_pem(), &server.cert_pem, &server.key_pem)
                .expect("server TLS");
        let line = b"0123456789012345678901234567890123456789012345678901234567890123456789\n";
        let log: Bytes = line
            .iter()
            .copied()
            .cycle()
            .take(log_bytes)
            .collect::<Vec<u8>>()
            .into();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .expect("the floor address is free");
                let _ = ready_tx.send(());
                tonic::transport::Server::builder()
                    .add_service(MachineServiceServer::with_interceptor(
                        BareApi { log },
                        role_check,
                    ))
                    .serve_with_incoming(incoming(listener, server_tls))
                    .await
                    .expect("the floor server runs");
            });
        });
        ready_rx.recv().expect("the floor server starts");
        pki::tls::client_config(
            authority.cert_pem(),
            Some((&admin.cert_pem, &admin.key_pem)),
        )
        .expect("client TLS")
    }
}

/// What the floor achieved in this run.
struct Floor {
    rpc_p50_ms: f64,
    stream_mb_per_s: f64,
}

fn main() -> ExitCode {
    let plan = match Plan::from_args(std::env::args().skip(1)) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("{message}\nusage: bench [--quick]");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let load_before = load_average();
    let mut table = Table::default();
    let floor = bench_floor(&runtime, &plan, &mut table);
    bench_api(&runtime, &plan, &floor, &mut table);
    bench_logs(&runtime, &plan, &floor, &mut table);
    bench_boot(&runtime, &plan, &mut table);
    println!("{}", plan.caption());
    println!();
    println!(
        "_1-minute load average {load_before:.2} at the start, {:.2} at the end._",
        load_average()
    );
    println!();
    print!("{}", table.markdown());
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------
// The plan

/// How much to measure.
struct Plan {
    quick: bool,
    /// Runs of each latency or throughput measurement; the median is reported.
    runs: usize,
    /// Untimed calls before the timed ones.
    warmup: usize,
    /// Timed calls over one connection, per run.
    calls: usize,
    /// Timed calls with a new connection each, per run.
    connections: usize,
    /// osctl processes, per run.
    osctl_runs: usize,
    /// Whole-log `Logs` calls, per run.
    log_reads: usize,
    /// Agent starts; the median is reported.
    cold_starts: usize,
    /// Time an agent is left alone before its memory is read.
    settle: Duration,
}

impl Plan {
    fn from_args(args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut quick = false;
        for arg in args {
            match arg.as_str() {
                "--quick" => quick = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(if quick { Self::quick() } else { Self::full() })
    }

    fn full() -> Self {
        Self {
            quick: false,
            runs: 3,
            warmup: 200,
            calls: 5_000,
            connections: 500,
            osctl_runs: 50,
            log_reads: 30,
            cold_starts: 5,
            settle: Duration::from_secs(5),
        }
    }

    fn quick() -> Self {
        Self {
            quick: true,
            runs: 1,
            warmup: 20,
            calls: 300,
            connections: 30,
            osctl_runs: 5,
            log_reads: 3,
            cold_starts: 3,
            settle: Duration::from_secs(1),
        }
    }

    fn caption(&self) -> String {
        let mode = if self.quick {
            "quick (smoke) run"
        } else {
            "full run"
        };
        format!(
            "_{mode}: median of {} run(s); per run {} calls over one connection (after {} warm-up), \
             {} with a new connection each, {} osctl processes, {} whole-log reads; {} cold starts. \
             MB = 10^6 bytes, MiB = 2^20 bytes._",
            self.runs,
            self.calls,
            self.warmup,
            self.connections,
            self.osctl_runs,
            self.log_reads,
            self.cold_starts,
        )
    }
}

// ---------------------------------------------------------------------------------
// The measurements

/// Version RPCs, osctl, and memory of a node with idle services.
/// The bare server's established-connection latency and streaming throughput.
fn bench_floor(runtime: &Runtime, plan: &Plan, table: &mut Table) -> Floor {
    progress("the floor: a bare tonic + rustls server");
    let tls = live_floor::start(FLOOR_LOG_BYTES);
    let address = NodeAddress::parse(live_floor::ADDRESS, 50000).expect("a valid address");
    let (latency, throughput) = runtime.block_on(async {
        let channel = api::transport::connect(&address, tls, WAIT_TIMEOUT)
            .await
            .expect("the floor answers");
        let mut client = MachineServiceClient::new(channel);
        for _ in 0..plan.warmup {
            version(&mut client).await;
        }
        let timings = repeat(plan.runs, async || {
            time_calls(plan.calls, async || version(&mut client).await).await
        })
        .await;
        let latency = median_by(timings, |timing| timing.p50.as_secs_f64());
        let runs = repeat(plan.runs, async || {
            let started = Instant::now();
            let mut reads = Vec::with_capacity(plan.log_reads);
            for _ in 0..plan.log_reads {
                reads.push(read_log(&mut client).await);
            }
            Throughput::of(&reads, started.elapsed())
        })
        .await;
        (latency, median_by(runs, |run| run.mb_per_second))
    });
    table.push(Row::plain(
        "Floor (bare server, this run): `Version` p50",
        millis(latency.p50),
        Unit::Millis,
    ));
    table.push(Row::plain(
        "Floor (bare server, this run): streaming throughput",
        throughput.mb_per_second,
        Unit::MegabytesPerSecond,
    ));
    Floor {
        rpc_p50_ms: millis(latency.p50),
        stream_mb_per_s: throughput.mb_per_second,
    }
}

fn bench_api(runtime: &Runtime, plan: &Plan, floor: &Floor, table: &mut Table) {
    let services: Vec<_> = (1..=IDLE_SERVICES)
        .map(|i| service(&format!("idle{i}"), &["sleep", "100000"]))
        .collect();
    let node = start_node(SERVICES_NODE, &services);
    wait_services_running(runtime, &node, IDLE_SERVICES);
    settle(plan);
    table.memory(
        &format!("Agent memory, idle, {IDLE_SERVICES} services"),
        &node,
        Some(Goal::AtMost(target::RSS_WITH_SERVICES_MIB)),
    );

    progress("Version over one established connection");
    let established = runtime.block_on(established_calls(&node, plan));
    table.latency(
        "`Version`, one established connection",
        &established,
        Some(target::RPC_P50_VS_FLOOR * floor.rpc_p50_ms),
        Some(floor.rpc_p50_ms),
    );

    progress("Version with a new connection per call (full handshake)");
    let tls = node.tls(Some(&node.credentials(Role::Admin)));
    let fresh = runtime.block_on(new_connection_calls(&node, without_resumption(&tls), plan));
    table.latency(
        "`Version`, new connection per call",
        &fresh,
        None,
        Some(floor::NEW_CONNECTION_P50_MS),
    );

    progress("Version with a new connection per call (TLS resumption)");
    let resumed = runtime.block_on(new_connection_calls(&node, tls, plan));
    table.latency(
        "`Version`, new connection per call, TLS resumed",
        &resumed,
        None,
        None,
    );

    progress("osctl version processes");
    let osctl = runtime.block_on(osctl_version(&node, plan));
    table.latency(
        "`osctl version` process",
        &osctl,
        Some(target::OSCTL_VERSION_MS),
        Some(floor::ONE_SHOT_CLIENT_MS),
    );

    table.memory(
        &format!("Agent memory after the calls above, {IDLE_SERVICES} services"),
        &node,
        None,
    );
}

/// Logs streaming from a node whose one service filled its log.
fn bench_logs(runtime: &Runtime, plan: &Plan, floor: &Floor, table: &mut Table) {
    let node = start_node(
        LOGS_NODE,
        &[service(LOG_SERVICE, &["sh", "-c", LOG_COMMAND])],
    );
    let retained = wait_log_written(&node);
    progress(&format!(
        "Logs streaming ({:.1} MiB retained)",
        mib(retained)
    ));
    let streaming = runtime.block_on(stream_logs(&node, plan));
    let median = streaming.median;
    assert_eq!(
        median.bytes_per_read, retained,
        "a whole-log read returns the retained log"
    );
    table.push(Row {
        goal: Some(Goal::AtLeast(
            target::STREAM_VS_FLOOR * floor.stream_mb_per_s,
        )),
        floor: Some(floor.stream_mb_per_s),
        ..Row::plain(
            "`Logs` (whole retained log), one connection: throughput",
            median.mb_per_second,
            Unit::MegabytesPerSecond,
        )
    });
    table.push(Row::plain(
        "`Logs`: time to first message, p50",
        millis(median.first_message),
        Unit::Millis,
    ));
    table.push(Row::plain(
        "`Logs`: agent CPU per MB streamed",
        millis(streaming.agent_cpu_per_mb),
        Unit::Millis,
    ));
    table.push(Row::plain(
        "`Logs`: retained log, streamed per call",
        mib(retained),
        Unit::Mebibytes,
    ));
    table.memory("Agent memory after log streaming, 1 service", &node, None);
}

/// Memory without services, and cold starts.
fn bench_boot(runtime: &Runtime, plan: &Plan, table: &mut Table) {
    let mut node = start_node(EMPTY_NODE, &[]);
    settle(plan);
    table.memory("Agent memory, idle, no services", &node, None);

    let tls = node.tls(Some(&node.credentials(Role::Admin)));
    let starts: Vec<Duration> = (1..=plan.cold_starts)
        .map(|i| {
            progress(&format!("cold start {i}/{}", plan.cold_starts));
            cold_start(runtime, &mut node, &tls)
        })
        .collect();
    let slowest = starts.iter().max().copied().unwrap_or_default();
    let count = starts.len();
    table.push(Row::plain(
        format!("Cold start to API answering, median of {count}"),
        millis(median_by(starts, Duration::as_secs_f64)),
        Unit::Millis,
    ));
    table.push(Row::plain(
        format!("Cold start, slowest of {count}"),
        millis(slowest),
        Unit::Millis,
    ));
}

/// `plan.calls` Version calls over one connection, after `plan.warmup` untimed ones.
async fn established_calls(node: &Node, plan: &Plan) -> Latency {
    let mut client = node.client(Role::Admin).await.expect("an admin connection");
    for _ in 0..plan.warmup {
        version(&mut client).await;
    }
    latency_runs(node, plan.runs, plan.calls, async || {
        version(&mut client).await
    })
    .await
}

/// `plan.connections` Version calls, each on its own new connection made with `tls`.
async fn new_connection_calls(node: &Node, tls: Arc<rustls::ClientConfig>, plan: &Plan) -> Latency {
    let call = async || {
        let mut client = node
            .client_with(tls.clone())
            .await
            .expect("a new connection");
        version(&mut client).await;
    };
    latency_runs(node, plan.runs, plan.connections, call).await
}

/// `plan.osctl_runs` runs of `osctl --config FILE version`, FILE holding an admin
/// context for `node`.
async fn osctl_version(node: &Node, plan: &Plan) -> Latency {
    let dir = tempfile::tempdir().expect("a directory for the client config");
    let config = dir.path().join("config");
    write_client_config(node, &config);
    let osctl = binary("osctl");
    let run = async || {
        let output = tokio::process::Command::new(&osctl)
            .arg("--config")
            .arg(&config)
            .arg("version")
            .env_remove("OSCTL_CONFIG")
            .output()
            .await
            .expect("osctl runs");
        assert!(
            output.status.success(),
            "osctl version failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    latency_runs(node, plan.runs, plan.osctl_runs, run).await
}

/// `plan.log_reads` whole-log `Logs` calls over one connection, per run.
async fn stream_logs(node: &Node, plan: &Plan) -> Streaming {
    let mut client = node.client(Role::Admin).await.expect("an admin connection");
    read_log(&mut client).await; // warm-up
    let one_run = async || {
        let mut reads = Vec::with_capacity(plan.log_reads);
        let started = Instant::now();
        for _ in 0..plan.log_reads {
            reads.push(read_log(&mut client).await);
        }
        Throughput::of(&reads, started.elapsed())
    };
    let (runs, cpu) = with_agent_cpu(node, repeat(plan.runs, one_run)).await;
    let streamed: u64 = runs.iter().map(|run| run.bytes).sum();
    Streaming {
        median: median_by(runs, |run| run.mb_per_second),
        agent_cpu_per_mb: cpu.div_f64(streamed.max(1) as f64 / 1e6),
    }
}

/// Stops the agent and starts it again with the same command line (a reboot of the
/// process platform, minus the service stops); returns the time from spawn to the
/// first answered Version call.
fn cold_start(runtime: &Runtime, node: &mut Node, tls: &Arc<rustls::ClientConfig>) -> Duration {
    let command_line = command_line(node.child.id());
    terminate(&mut node.child);
    let log = OpenOptions::new()
        .append(true)
        .open(node.state_dir.path().join("agent.log"))
        .expect("the agent log");
    let started = Instant::now();
    node.child = Command::new(&command_line[0])
        .args(&command_line[1..])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the agent log"))
        .stderr(log)
        .spawn()
        .expect("node-agent starts again");
    runtime.block_on(wait_api(node, tls));
    started.elapsed()
}

// ---------------------------------------------------------------------------------
// Timing and statistics

/// Latency of one run of calls, and their rate.
#[derive(Debug, Clone, Copy)]
struct Timing {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

/// A latency measurement: its median run, and the agent's CPU time per call over
/// all runs.
#[derive(Debug, Clone, Copy)]
struct Latency {
    median: Timing,
    agent_cpu_per_call: Duration,
}

/// One whole-log read: bytes received and when the first message came.
#[derive(Debug, Clone, Copy)]
struct LogRead {
    bytes: u64,
    first_message: Duration,
}

/// Throughput of a run of whole-log reads.
#[derive(Debug, Clone, Copy)]
struct Throughput {
    mb_per_second: f64,
    /// p50 of the time from request to first message.
    first_message: Duration,
    /// Bytes of the run.
    bytes: u64,
    /// Bytes of the last read.
    bytes_per_read: u64,
}

impl Throughput {
    /// The throughput of `reads`, done one after the other in `elapsed`.
    fn of(reads: &[LogRead], elapsed: Duration) -> Self {
        let mut firsts: Vec<Duration> = reads.iter().map(|read| read.first_message).collect();
        firsts.sort_unstable();
        let bytes: u64 = reads.iter().map(|read| read.bytes).sum();
        Self {
            mb_per_second: bytes as f64 / 1e6 / elapsed.as_secs_f64(),
            first_message: percentile(&firsts, 50.0),
            bytes,
            bytes_per_read: reads.last().map_or(0, |read| read.bytes),
        }
    }
}

/// A streaming measurement: its median run, and the agent's CPU time per MB over all
/// runs.
#[derive(Debug, Clone, Copy)]
struct Streaming {
    median: Throughput,
    agent_cpu_per_mb: Duration,
}

/// Times `runs` runs of `count` calls of `call`: the run with the median p50, and the
/// agent's CPU time per call.
async fn latency_runs(
    node: &Node,
    runs: usize,
    count: usize,
    mut call: impl AsyncFnMut(),
) -> Latency {
    let timed = repeat(runs, async || time_calls(count, &mut call).await);
    let (timings, cpu) = with_agent_cpu(node, timed).await;
    Latency {
        median: median_by(timings, |timing| timing.p50.as_secs_f64()),
        agent_cpu_per_call: cpu.div_f64((runs * count).max(1) as f64),
    }
}

/// Times `count` sequential calls of `call`.
async fn time_calls(count: usize, mut call: impl AsyncFnMut()) -> Timing {
    let mut samples = Vec::with_capacity(count);
    let started = Instant::now();
    for _ in 0..count {
        let call_started = Instant::now();
        call().await;
        samples.push(call_started.elapsed());
    }
    let elapsed = started.elapsed();
    samples.sort_unstable();
    Timing {
        p50: percentile(&samples, 50.0),
        p99: percentile(&samples, 99.0),
        per_second: samples.len() as f64 / elapsed.as_secs_f64(),
    }
}

/// The nearest-rank `p`th percentile of sorted samples (zero when there are none).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

/// The results of `runs` sequential runs of `run`.
async fn repeat<T>(runs: usize, mut run: impl AsyncFnMut() -> T) -> Vec<T> {
    let mut results = Vec::with_capacity(runs);
    for _ in 0..runs {
        results.push(run().await);
    }
    results
}

/// The element with the median `key` (the upper one of an even count).
fn median_by<T>(mut values: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    assert!(!values.is_empty(), "a median needs at least one value");
    values.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = values.len() / 2;
    values.swap_remove(middle)
}

/// Awaits `work`, and the CPU time the agent used meanwhile.
async fn with_agent_cpu<T>(node: &Node, work: impl Future<Output = T>) -> (T, Duration) {
    let before = agent_cpu(node);
    let result = work.await;
    (result, agent_cpu(node).saturating_sub(before))
}

// ---------------------------------------------------------------------------------
// Nodes and clients

/// A service running `command`, as a machine-config `ServiceSpec`.
fn service(name: &str, command: &[&str]) -> serde_json::Value {
    serde_json::json!({ "name": name, "command": command })
}

/// Starts a control-plane agent on `address` running `services`.
fn start_node(address: &str, services: &[serde_json::Value]) -> Node {
    progress(&format!(
        "starting an agent on {address} with {} service(s)",
        services.len()
    ));
    let address: SocketAddr = address.parse().expect("a valid bench address");
    let patch = serde_json::json!({ "machine": { "services": services } }).to_string();
    Node::start_control_plane(address, &[&patch])
}

/// Waits until `count` services of `node` are running.
fn wait_services_running(runtime: &Runtime, node: &Node, count: usize) {
    wait_for("the services to run", WAIT_TIMEOUT, || {
        let running = runtime.block_on(async {
            let mut client = node.client(Role::Reader).await.ok()?;
            let reply = client
                .service_list(ServiceListRequest {})
                .await
                .ok()?
                .into_inner();
            let services = reply.messages.into_iter().flat_map(|list| list.services);
            Some(
                services
                    .filter(|s| s.state.eq_ignore_ascii_case("running"))
                    .count(),
            )
        });
        (running == Some(count)).then_some(())
    });
}

/// Waits until the log of [`LOG_SERVICE`] stops growing; returns its size in bytes.
fn wait_log_written(node: &Node) -> u64 {
    const QUIET: Duration = Duration::from_millis(500);
    let mut last = (0, Instant::now());
    wait_for("the service log to be written", WAIT_TIMEOUT, || {
        let size = log_size(&node.state_dir.path().join("logs"));
        if size != last.0 {
            last = (size, Instant::now());
        }
        (size > 0 && last.1.elapsed() >= QUIET).then_some(size)
    })
}

/// Bytes in the current and rotated log files of [`LOG_SERVICE`] in `dir`.
fn log_size(dir: &Path) -> u64 {
    let prefix = format!("{LOG_SERVICE}.log");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len())
        .sum()
}

/// Lets an agent finish whatever it does after booting.
fn settle(plan: &Plan) {
    progress(&format!("settling for {:?}", plan.settle));
    std::thread::sleep(plan.settle);
}

/// One Version call, which must succeed.
async fn version(client: &mut MachineServiceClient<Channel>) {
    client
        .version(VersionRequest {})
        .await
        .expect("Version answers");
}

/// Reads the whole log of [`LOG_SERVICE`].
async fn read_log(client: &mut MachineServiceClient<Channel>) -> LogRead {
    let request = LogsRequest {
        service: LOG_SERVICE.into(),
        tail_lines: -1,
        follow: false,
        namespace: String::new(),
    };
    let started = Instant::now();
    let mut stream = client
        .logs(request)
        .await
        .expect("Logs answers")
        .into_inner();
    let mut read = LogRead {
        bytes: 0,
        first_message: Duration::ZERO,
    };
    while let Some(data) = stream.message().await.expect("the log streams") {
        if read.bytes == 0 {
            read.first_message = started.elapsed();
        }
        read.bytes += data.bytes.len() as u64;
    }
    read
}

/// `tls` without TLS session resumption, so every connection makes a full handshake
/// (as a new osctl process does).
fn without_resumption(tls: &rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    let mut tls = tls.clone();
    tls.resumption = rustls::client::Resumption::disabled();
    Arc::new(tls)
}

/// Writes an osctl client configuration with one admin context for `node`.
fn write_client_config(node: &Node, path: &Path) {
    let credentials = node.credentials(Role::Admin);
    let context = Context {
        endpoints: vec![node.address.to_string()],
        nodes: vec![],
        ca: node.authority.cert_pem().to_owned(),
        crt: credentials.cert_pem,
        key: credentials.key_pem,
    };
    let config = ClientConfig {
        context: Some("bench".into()),
        contexts: [("bench".to_owned(), context)].into(),
    };
    config.save(path).expect("the client config is written");
}

/// Polls until the agent answers a Version call, failing if it exits or takes longer
/// than [`WAIT_TIMEOUT`].
async fn wait_api(node: &mut Node, tls: &Arc<rustls::ClientConfig>) {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        if let Ok(mut client) = node.client_with(tls.clone()).await
            && client.version(VersionRequest {}).await.is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = node.child.try_wait() {
            panic!(
                "the agent exited ({status}) while starting:\n{}",
                node.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not answer in {WAIT_TIMEOUT:?}:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The command line of process `pid`.
fn command_line(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the agent's command line");
    raw.split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// Stops an agent with SIGTERM (its shutdown path), killing it if it takes too long.
fn terminate(child: &mut std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // An error means it has already exited; waiting below reaps it either way.
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    if !wait_for_exit(child, Duration::from_secs(15)) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Whether `child` exited within `timeout` (and was reaped).
fn wait_for_exit(child: &mut std::process::Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

// ---------------------------------------------------------------------------------
// The machine and the agent process

/// A memory field of the agent's /proc status (`VmRSS`, `RssAnon`...), in MiB.
fn status_mib(node: &Node, field: &str) -> f64 {
    let path = format!("/proc/{}/status", node.child.id());
    let status = std::fs::read_to_string(&path).expect("the agent's /proc status");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} line in kB in {path}"));
    kib / 1024.0
}

/// CPU time (user and system, all threads) the agent process has used so far.
fn agent_cpu(node: &Node) -> Duration {
    // /proc counts in USER_HZ ticks, 100 per second on Linux whatever the kernel's HZ.
    const TICKS_PER_SECOND: u64 = 100;
    let path = format!("/proc/{}/stat", node.child.id());
    let stat = std::fs::read_to_string(&path).expect("the agent's /proc stat");
    // The command name (field 2) may hold spaces, so count from its closing ')':
    // utime and stime (fields 14 and 15) are the 12th and 13th fields after it.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| field.parse::<u64>().expect("utime and stime are numbers"))
        .sum();
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

/// The 1-minute load average of the machine (NaN if unknown).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn progress(what: &str) {
    eprintln!("bench: {what}");
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

// ---------------------------------------------------------------------------------
// The results table

/// Units of the figures.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Millis,
    PerSecond,
    MegabytesPerSecond,
    Mebibytes,
}

impl Unit {
    fn format(self, value: f64) -> String {
        match self {
            Unit::Millis if value < 1.0 => format!("{value:.3} ms"),
            Unit::Millis if value < 10.0 => format!("{value:.2} ms"),
            Unit::Millis => format!("{value:.1} ms"),
            Unit::PerSecond => format!("{value:.0} /s"),
            Unit::MegabytesPerSecond => format!("{value:.0} MB/s"),
            Unit::Mebibytes => format!("{value:.1} MiB"),
        }
    }
}

/// A bound a figure should respect.
#[derive(Debug, Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    fn met(self, value: f64) -> bool {
        match self {
            Goal::AtMost(bound) => value <= bound,
            Goal::AtLeast(bound) => value >= bound,
        }
    }

    fn describe(self, unit: Unit) -> String {
        match self {
            Goal::AtMost(bound) => format!("≤ {}", unit.format(bound)),
            Goal::AtLeast(bound) => format!("≥ {}", unit.format(bound)),
        }
    }
}

/// One line of the results.
struct Row {
    what: String,
    value: f64,
    unit: Unit,
    goal: Option<Goal>,
    floor: Option<f64>,
}

impl Row {
    fn plain(what: impl Into<String>, value: f64, unit: Unit) -> Self {
        Self {
            what: what.into(),
            value,
            unit,
            goal: None,
            floor: None,
        }
    }

    fn verdict(&self) -> &'static str {
        match self.goal {
            Some(goal) if goal.met(self.value) => "pass",
            Some(_) => "**miss**",
            None => "",
        }
    }
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

impl Table {
    fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// The agent's resident memory (with its target and the floor) and the anonymous
    /// part of it (heap and stacks; the rest is mostly the mapped executable).
    fn memory(&mut self, what: &str, node: &Node, goal: Option<Goal>) {
        self.push(Row {
            goal,
            floor: Some(floor::IDLE_RSS_MIB),
            ..Row::plain(
                format!("{what}: VmRSS"),
                status_mib(node, "VmRSS"),
                Unit::Mebibytes,
            )
        });
        self.push(Row::plain(
            format!("{what}: RssAnon"),
            status_mib(node, "RssAnon"),
            Unit::Mebibytes,
        ));
    }

    /// p50 (with its target and floor), p99, rate and agent CPU per call of a latency
    /// measurement.
    fn latency(
        &mut self,
        what: &str,
        latency: &Latency,
        target_p50: Option<f64>,
        floor_p50: Option<f64>,
    ) {
        let median = &latency.median;
        self.push(Row {
            goal: target_p50.map(Goal::AtMost),
            floor: floor_p50,
            ..Row::plain(format!("{what}: p50"), millis(median.p50), Unit::Millis)
        });
        self.push(Row::plain(
            format!("{what}: p99"),
            millis(median.p99),
            Unit::Millis,
        ));
        self.push(Row::plain(
            format!("{what}: rate"),
            median.per_second,
            Unit::PerSecond,
        ));
        self.push(Row::plain(
            format!("{what}: agent CPU per call"),
            millis(latency.agent_cpu_per_call),
            Unit::Millis,
        ));
    }

    fn markdown(&self) -> String {
        let mut out = String::from(
            "| Measurement | Result | Target | Floor | Verdict |\n|---|---:|---:|---:|---|\n",
        );
        for row in &self.rows {
            let goal = row
                .goal
                .map(|goal| goal.describe(row.unit))
                .unwrap_or_default();
            let floor = row
                .floor
                .map(|floor| row.unit.format(floor))
                .unwrap_or_default();
            out.push_str(&format!(
                "| {} | {} | {goal} | {floor} | {} |\n",
                row.what,
                row.unit.format(row.value),
                row.verdict()
            ));
        }
        out
    }
}
