//! `osctl cluster create|show|destroy`: local clusters.
//!
//! Every node gets its own loopback address for its machine API and its state under
//! `~/.osctl/clusters/NAME/NODE`. Provisioners ([`process`], [`qemu`]) only start a
//! node from its configuration file; everything after that is the machine API, as
//! for any client. The cluster's record (`cluster.yaml`: nodes, addresses, pids) is
//! written as soon as each node is started, so `destroy` can clean up after a failed
//! `create`.

mod process;
mod qemu;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use api::machine::VersionRequest;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cli::{ClusterCreate, Provisioner};
use crate::client_config::{ClientConfig, Context, home, write_private};
use crate::connection::{Connection, Target};
use crate::output::{self, NodeRow, Row};

use super::Session;
use super::gen_config::generate;

/// One readiness probe's limit. QEMU's user network accepts a connection before the
/// guest listens and then retries only about 3 s later, so probes get stuck; and a
/// handshake with a VM still booting under emulation can take a second.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a new readiness probe starts.
const READY_PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// At most this many probes at once.
const MAX_READY_PROBES: usize = 25;

/// How long destroy waits for a node to stop after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The record of a local cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClusterRecord {
    name: String,
    provisioner: String,
    nodes: Vec<NodeRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NodeRecord {
    name: String,
    /// The loopback address this machine reaches the node's API on.
    address: Ipv4Addr,
    port: u16,
    /// The node's address on the cluster's own network, when it has one (VMs):
    /// what the other nodes and fan-out (`-n`) use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster_address: Option<Ipv4Addr>,
    role: String,
    /// The agent's or the VM's process.
    pid: u32,
    state_dir: PathBuf,
    /// The agent's log or the VM's console.
    log: PathBuf,
}

impl NodeRecord {
    fn endpoint(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }

    /// How the context names the node for fan-out.
    fn target(&self) -> String {
        match self.cluster_address {
            Some(address) => address.to_string(),
            None => self.endpoint(),
        }
    }

    fn running(&self) -> bool {
        process_alive(self.pid)
    }
}

fn clusters_dir() -> PathBuf {
    home().join(".osctl").join("clusters")
}

fn record_path(dir: &Path) -> PathBuf {
    dir.join("cluster.yaml")
}

fn save_record(dir: &Path, record: &ClusterRecord) -> anyhow::Result<()> {
    write_private(
        &record_path(dir),
        serde_yaml_ng::to_string(record)?.as_bytes(),
    )?;
    Ok(())
}

fn load_record(name: &str) -> anyhow::Result<(PathBuf, ClusterRecord)> {
    let dir = clusters_dir().join(name);
    let path = record_path(&dir);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no local cluster {name:?} ({})", path.display()))?;
    Ok((
        dir,
        serde_yaml_ng::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
    ))
}

/// A process exists with this pid and is not a zombie.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name's closing parenthesis.
    !matches!(
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next()),
        Some("Z") | None
    )
}

/// The first `program` in PATH.
fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[derive(Debug, Serialize)]
struct ClusterNodeRow {
    address: String,
    role: String,
    status: String,
    version: String,
    boot_time: String,
}

impl Row for ClusterNodeRow {
    fn headers() -> &'static [&'static str] {
        &["ADDRESS", "ROLE", "STATUS", "VERSION", "BOOT TIME"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.address.clone(),
            self.role.clone(),
            self.status.clone(),
            self.version.clone(),
            self.boot_time.clone(),
        ]
    }
}

/// How `create` and `show` reach the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// The cluster's client certificate (mutual TLS).
    Authenticated,
    /// Maintenance mode: server TLS only (nodes booted without a configuration).
    Maintenance,
}

/// Asks one node for its version directly (no fan-out).
async fn node_version(
    context: &Context,
    node: &NodeRecord,
    reach: Reach,
) -> anyhow::Result<api::machine::VersionInfo> {
    let target = Target::new(context, &[node.endpoint()], &[])?;
    let conn = match reach {
        Reach::Authenticated => Connection::open(context, &target).await?,
        Reach::Maintenance => Connection::open_insecure(&target).await?,
    };
    let reply = conn
        .client
        .clone()
        .version(VersionRequest {})
        .await
        .map_err(|s| anyhow::anyhow!(api::transport::explain_status(&s)))?;
    reply
        .into_inner()
        .messages
        .into_iter()
        .next()
        .context("empty reply")
}

async fn node_rows(
    context: &Context,
    record: &ClusterRecord,
    reach: Reach,
) -> Vec<NodeRow<ClusterNodeRow>> {
    let mut rows = Vec::new();
    for node in &record.nodes {
        let status = if node.running() { "running" } else { "stopped" };
        let (version, boot_time, error) = match node_version(context, node, reach).await {
            Ok(v) => (
                v.agent_version,
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_secs(v.boot_time.max(0) as u64),
                )
                .to_string(),
                None,
            ),
            Err(e) if node.running() => (String::new(), String::new(), Some(format!("{e:#}"))),
            Err(_) => ("-".into(), "-".into(), None),
        };
        rows.push(NodeRow {
            node: node.name.clone(),
            error,
            data: Some(ClusterNodeRow {
                address: node.endpoint(),
                role: node.role.clone(),
                status: status.into(),
                version,
                boot_time,
            }),
        });
    }
    rows
}

/// A node about to be started.
struct NodeSpec {
    /// `NAME-controlplane-1`.
    name: String,
    /// 0-based position in the cluster.
    index: usize,
    /// Its loopback address.
    address: Ipv4Addr,
    state_dir: PathBuf,
}

/// What a provisioner reports about a node it started.
struct Started {
    pid: u32,
    log: PathBuf,
    cluster_address: Option<Ipv4Addr>,
}

/// The provisioner of one `create`.
enum Launcher {
    Process(process::Launcher),
    Qemu(qemu::Launcher),
}

impl Launcher {
    fn name(&self) -> &'static str {
        match self {
            Launcher::Process(_) => "process",
            Launcher::Qemu(_) => "qemu",
        }
    }

    /// The control plane's address as the other nodes reach it.
    fn cluster_endpoint(&self, addresses: &[Ipv4Addr], port: u16) -> String {
        match self {
            Launcher::Process(_) => format!("{}:{port}", addresses[0]),
            Launcher::Qemu(_) => format!("{}:{}", qemu::cluster_address(0), api::DEFAULT_API_PORT),
        }
    }

    /// The node's own settings, as a configuration patch.
    fn node_patch(&self, node: &NodeSpec) -> String {
        match self {
            Launcher::Process(_) => format!(
                "machine: {{hostname: {}, certSANs: [\"{}\"]}}",
                node.name, node.address
            ),
            Launcher::Qemu(_) => qemu::node_patch(node),
        }
    }

    fn start(&self, node: &NodeSpec, config: &Path) -> anyhow::Result<Started> {
        match self {
            Launcher::Process(launcher) => launcher.start(node, config),
            Launcher::Qemu(launcher) => launcher.start(node, config),
        }
    }
}

/// `osctl cluster create`.
pub async fn create(session: &Session, options: &ClusterCreate) -> anyhow::Result<()> {
    if options.nodes == 0 || options.controlplanes == 0 || options.controlplanes > options.nodes {
        bail!("--nodes must be at least 1 and --controlplanes between 1 and --nodes");
    }
    let dir = clusters_dir().join(&options.name);
    if record_path(&dir).exists() {
        bail!(
            "cluster {:?} already exists: destroy it first with `osctl cluster destroy --name {}`",
            options.name,
            options.name
        );
    }
    let addresses: Vec<Ipv4Addr> = options.cidr.hosts().skip(1).take(options.nodes).collect();
    if addresses.len() < options.nodes {
        bail!(
            "{} has room for only {} nodes",
            options.cidr,
            addresses.len()
        );
    }
    let launcher = match options.provisioner {
        Provisioner::Process => Launcher::Process(process::Launcher::new(options)?),
        Provisioner::Qemu => Launcher::Qemu(qemu::Launcher::new(options)?),
    };
    let generated = generate(
        &options.name,
        &launcher.cluster_endpoint(&addresses, options.port),
        None,
        &options.config_patches,
        &options.config_patches,
    )?;

    let mut record = ClusterRecord {
        name: options.name.clone(),
        provisioner: launcher.name().into(),
        nodes: Vec::new(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_private(
        &dir.join("secrets.yaml"),
        serde_yaml_ng::to_string(&generated.secrets)?.as_bytes(),
    )?;
    for (index, address) in addresses.iter().enumerate() {
        let (role, template, ordinal) = if index < options.controlplanes {
            ("controlplane", &generated.control_plane, index + 1)
        } else {
            (
                "worker",
                &generated.worker,
                index + 1 - options.controlplanes,
            )
        };
        let node = NodeSpec {
            name: format!("{}-{role}-{ordinal}", options.name),
            index,
            address: *address,
            state_dir: dir.join(format!("{}-{role}-{ordinal}", options.name)),
        };
        let bundle = template
            .apply_patches(&[machine_config::Patch::parse(&launcher.node_patch(&node))?])?;
        std::fs::create_dir_all(&node.state_dir)?;
        let config_path = node.state_dir.join("initial-config.yaml");
        write_private(&config_path, bundle.to_yaml().as_bytes())?;
        let started = launcher.start(&node, &config_path)?;
        eprintln!(
            "started {} on {}:{} (pid {})",
            node.name, node.address, options.port, started.pid
        );
        record.nodes.push(NodeRecord {
            name: node.name,
            address: node.address,
            port: options.port,
            cluster_address: started.cluster_address,
            role: role.into(),
            pid: started.pid,
            state_dir: node.state_dir,
            log: started.log,
        });
        save_record(&dir, &record)?;
    }

    let mut admin = generated.admin;
    admin.endpoints = vec![record.nodes[0].endpoint()];
    admin.nodes = record.nodes.iter().map(NodeRecord::target).collect();
    let mut client = session.client_config.clone();
    client.merge(ClientConfig {
        context: Some(options.name.clone()),
        contexts: [(options.name.clone(), admin.clone())].into(),
    });
    client.save(&session.config_path)?;
    eprintln!(
        "context {:?} written to {}",
        options.name,
        session.config_path.display()
    );

    let reach = if options.skip_injecting_config {
        Reach::Maintenance
    } else {
        Reach::Authenticated
    };
    wait_until_ready(&admin, &record, options.wait_timeout, reach).await?;
    let rows = node_rows(&admin, &record, reach).await;
    output::print(session.format, &rows)?;
    Ok(())
}

async fn wait_until_ready(
    context: &Context,
    record: &ClusterRecord,
    timeout: Duration,
    reach: Reach,
) -> anyhow::Result<()> {
    let started = Instant::now();
    for node in &record.nodes {
        eprint!("waiting for {} ({})", node.name, node.endpoint());
        // Probes overlap: a new one starts every interval while older ones may still
        // be stuck (see READY_PROBE_TIMEOUT) or in a slow handshake; the first answer wins.
        let mut probes = tokio::task::JoinSet::new();
        let mut ticks = tokio::time::interval(READY_PROBE_INTERVAL);
        loop {
            tokio::select! {
                Some(Ok(Ok(Ok(_)))) = probes.join_next(), if !probes.is_empty() => {
                    eprintln!(" ready after {:.1}s", started.elapsed().as_secs_f64());
                    break;
                }
                _ = ticks.tick() => {}
            }
            if !node.running() || started.elapsed() > timeout {
                eprintln!();
                let log = &node.log;
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                bail!(
                    "{} {}; its log {} ends with:\n{}",
                    node.name,
                    if node.running() {
                        "did not answer in time"
                    } else {
                        "exited"
                    },
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            if probes.len() < MAX_READY_PROBES {
                let (context, node) = (context.clone(), node.clone());
                probes.spawn(async move {
                    tokio::time::timeout(READY_PROBE_TIMEOUT, node_version(&context, &node, reach))
                        .await
                });
            }
            eprint!(".");
        }
    }
    Ok(())
}

/// `osctl cluster show`.
pub async fn show(session: &Session, name: &str) -> anyhow::Result<()> {
    let (_, record) = load_record(name)?;
    let (_, context) = session.client_config.context(Some(name))?;
    output::print(
        session.format,
        &node_rows(context, &record, Reach::Authenticated).await,
    )?;
    Ok(())
}

/// `osctl cluster destroy`: SIGTERM (services stop in order), SIGKILL after a grace
/// period, then the state and the context are removed.
pub fn destroy(session: &Session, name: &str) -> anyhow::Result<()> {
    let (dir, record) = load_record(name)?;
    for node in &record.nodes {
        stop_node(node)?;
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    let mut client = session.client_config.clone();
    if client.contexts.remove(name).is_some() {
        if client.context.as_deref() == Some(name) {
            client.context = None;
        }
        client.save(&session.config_path)?;
    }
    eprintln!("cluster {name:?} destroyed");
    Ok(())
}

fn stop_node(node: &NodeRecord) -> anyhow::Result<()> {
    if !node.running() {
        return Ok(());
    }
    let pid = Pid::from_raw(i32::try_from(node.pid).context("pid out of range")?);
    eprint!("stopping {} (pid {})", node.name, node.pid);
    kill(pid, Signal::SIGTERM).with_context(|| format!("signalling {}", node.name))?;
    let started = Instant::now();
    while node.running() {
        if started.elapsed() > STOP_TIMEOUT {
            eprint!(" killing");
            let _ = kill(pid, Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(200));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(" stopped");
    Ok(())
}
