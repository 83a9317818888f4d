//! node-agent: PID 1 of a node and the machine API server.
//!
//! # Layout
//! - [`platform`]: what differs between PID 1 on a machine and a process on a host.
//! - [`config_store`]: the configuration files of the state directory, written atomically.
//! - [`agent`]: the running agent and the rules for changing its configuration.
//! - [`supervisor`]: services as supervised processes or containers, their logs and
//!   health.
//! - [`containerd`]: the node's containerd: its config, images, containers.
//! - [`digest`]: sha256 and hex, as every part of the agent writes them.
//! - [`identity`]: the node's certificates (issued locally or requested from the
//!   control plane).
//! - [`server`]: the TLS listener, the auth and fan-out layers, the API handlers.
//! - [`system`]: read-only views of /proc and the kernel log.
//! - [`files`]: the config's files, written below the platform's root.
//! - [`kernel_security`]: the KSPP command line and sysctls, checked and applied.
//! - [`upgrade`]: A/B slots, signed bundles, trial boots and rollbacks, the event log.
//!
//! [`run`] is the boot sequence: platform set-up, configuration, identity, services,
//! API; then it waits for a reboot or shutdown request and stops everything in order.
#![deny(missing_docs)]

pub mod agent;
pub mod config_store;
pub mod containerd;
pub mod digest;
pub mod files;
pub mod identity;
pub mod kernel_security;
pub mod platform;
pub mod server;
pub mod supervisor;
pub mod system;
pub mod upgrade;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use agent::{Agent, Lifecycle};
use platform::{MetalPlatform, Platform, ProcessPlatform};

/// The git revision this agent was built from.
pub const GIT_REVISION: &str = env!("NODE_AGENT_GIT_REVISION");

/// How long containers outside `system` get between SIGTERM and SIGKILL at shutdown.
const CONTAINER_STOP_GRACE: Duration = Duration::from_secs(10);

/// How long servers get to finish in-flight calls before the agent moves on.
const SERVER_STOP_GRACE: Duration = Duration::from_secs(3);

/// The platform the agent runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlatformKind {
    /// A normal process on a host (development, tests, simulated fleets).
    Process,
    /// PID 1 of a machine or VM.
    Metal,
}

/// Command-line options of the agent.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "node-agent",
    version,
    about = "PID 1 and machine API of a node"
)]
pub struct Options {
    /// Where the agent runs.
    #[arg(long, value_enum)]
    pub platform: PlatformKind,
    /// Directory for the configuration, certificates and service logs.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Configuration for the first boot; later boots use the one in --state-dir.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address of the machine API; control-plane nodes also serve the trust service
    /// on the next port.
    #[arg(long, default_value = "0.0.0.0:50000")]
    pub listen: SocketAddr,
    /// Process platform: run a private containerd (this binary, looked up in PATH; the
    /// host's package) with its socket and data under --state-dir, so that services
    /// can run images. The metal platform always runs the root image's containerd.
    #[arg(long, value_name = "BINARY", num_args = 0..=1, default_missing_value = "containerd")]
    pub containerd: Option<PathBuf>,
}

impl Options {
    /// The options of PID 1, which the kernel starts without arguments.
    pub fn pid1() -> Self {
        Self {
            platform: PlatformKind::Metal,
            state_dir: PathBuf::from(platform::metal::STATE_DIR),
            config: None,
            listen: SocketAddr::from(([0, 0, 0, 0], api::DEFAULT_API_PORT)),
            containerd: None,
        }
    }
}

/// Errors that stop the agent from booting.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A platform step failed.
    #[error("{0}")]
    Platform(#[from] platform::PlatformError),
    /// The configuration could not be loaded.
    #[error("{0}")]
    Config(#[from] config_store::StoreError),
    /// The node's certificates could not be set up.
    #[error("node identity: {0}")]
    Identity(#[from] identity::IdentityError),
    /// The TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(#[from] pki::Error),
    /// A listening socket could not be opened.
    #[error("listening on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Boots the node and serves until a reboot or shutdown; returns only on errors (a
/// reboot re-executes or restarts, a shutdown exits).
pub async fn run(options: Options) -> Result<(), BootError> {
    if options.platform == PlatformKind::Process
        && platform::process::loader::booted_entry().is_none()
    {
        // Started as a process node: be its machine and boot loader first.
        return Ok(platform::process::loader::run(&options.state_dir).await?);
    }
    let platform: Arc<dyn Platform> = match options.platform {
        PlatformKind::Process => Arc::new(ProcessPlatform::new(
            options.state_dir.clone(),
            options.containerd.clone(),
        )),
        PlatformKind::Metal => Arc::new(MetalPlatform::new()),
    };
    platform.prepare()?;
    // One reaper for the whole agent, before any child process exists.
    supervisor::start_reaper().map_err(|source| {
        BootError::Platform(platform::PlatformError::Io {
            what: "starting the child reaper".into(),
            source,
        })
    })?;
    let slots = platform.boot_slots();
    if let Err(e) =
        upgrade::trial::wipe_if_requested(&options.state_dir, slots.as_ref().ok(), || {
            platform.wipe_ephemeral()
        })
    {
        tracing::error!(error = %e, "the upgrade asked for an empty EPHEMERAL");
    }
    let upgrades = upgrade::Upgrades::new(slots, &options.state_dir, &platform.ephemeral_dir());
    let store = config_store::ConfigStore::new(&options.state_dir);
    let boot = agent::Boot::new(platform.as_ref());
    let initial = options.config.clone().or_else(|| platform.config_source());
    let bundle = match store.load_for_boot(initial.as_deref()) {
        Ok(bundle) => bundle,
        Err(config_store::StoreError::NoConfig(_)) => {
            // Maintenance mode must be reachable: the default network (DHCP).
            log_notes(
                platform
                    .configure_network(&Default::default(), "maintenance")
                    .await,
            );
            maintenance(&options, &store, &platform, &boot).await?
        }
        Err(e) => return Err(e.into()),
    };
    for problem in platform.check(&bundle.config.machine) {
        tracing::error!("the configuration asks for what this platform cannot do: {problem}");
    }
    log_notes(
        platform
            .configure_network(&bundle.config.machine.network, &bundle.hostname())
            .await,
    );
    let identity = identity::establish(&bundle, options.listen.ip(), &options.state_dir).await?;
    let server_tls = pki::tls::server_config(
        &identity.ca_pem,
        &identity.server.cert_pem,
        &identity.server.key_pem,
    )?;

    let containerd = platform.containerd().map(|paths| {
        if let Err(e) = paths.prepare() {
            tracing::error!(error = %e, "preparing containerd; container services will fail");
        }
        containerd::Containerd::new(paths)
    });
    let supervisor = supervisor::Supervisor::new(supervisor::SupervisorOptions {
        state_dir: Some(options.state_dir.join("services")),
        cgroup_root: platform.cgroup_root(),
        containerd,
        ..supervisor::SupervisorOptions::new(options.state_dir.join("logs"))
    });
    let (lifecycle_tx, mut lifecycle_rx) = mpsc::unbounded_channel();
    let agent = Agent::new(
        platform.clone(),
        boot,
        store,
        bundle.clone(),
        supervisor,
        upgrades,
        lifecycle_tx,
    );
    tracing::info!(boot_id = %agent.boot.id, hostname = %bundle.hostname(), "booting");
    match agent.apply_live(&bundle).await {
        Ok(notes) => log_notes(notes),
        Err(e) => tracing::error!(error = %e, "applying the configuration at boot"),
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let mut servers = tokio::task::JoinSet::new();
    let api_listener = bind(options.listen).await?;
    let forwarder = match &identity.authority {
        Some(authority) => {
            let cert = identity::forwarding_certificate(authority, &bundle.hostname())?;
            Some(server::fanout::Forwarder {
                tls: pki::tls::client_config(
                    &identity.ca_pem,
                    Some((&cert.cert_pem, &cert.key_pem)),
                )?,
                default_port: options.listen.port(),
            })
        }
        None => None,
    };
    let api = server::machine::MachineApi::new(agent.clone(), identity.authority.clone());
    servers.spawn(server::serve_machine_api(
        api_listener,
        server_tls,
        api,
        forwarder,
        stopped(),
    ));
    if let Some(authority) = &identity.authority {
        let address = SocketAddr::new(
            options.listen.ip(),
            options.listen.port() + api::TRUST_PORT_OFFSET,
        );
        let trust_tls = pki::tls::server_config_without_client_auth(
            &identity.server.cert_pem,
            &identity.server.key_pem,
        )?;
        let trust = server::trust::TrustApi::new(authority.clone(), bundle.secrets.token.clone());
        servers.spawn(server::serve_trust(
            bind(address).await?,
            trust_tls,
            trust,
            stopped(),
        ));
    }
    let since_boot = std::time::SystemTime::now()
        .duration_since(agent.boot.time)
        .unwrap_or_default();
    tracing::info!(
        listen = %options.listen,
        platform = platform.name(),
        since_boot_ms = since_boot.as_millis(),
        "machine API ready"
    );
    tokio::spawn(upgrade::trial::settle(agent.clone()));

    let what = wait_for_end(&mut lifecycle_rx).await;
    tracing::info!(?what, "stopping services and servers");
    let _ = stop_tx.send(true);
    if tokio::time::timeout(SERVER_STOP_GRACE, async {
        while servers.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        servers.abort_all();
    }
    let runtime_up = agent
        .supervisor
        .status(containerd::config::SERVICE_NAME)
        .is_ok_and(|status| status.state == supervisor::ServiceState::Running);
    if let Some(containerd) = agent.supervisor.containerd().filter(|_| runtime_up) {
        // Containers the supervisor does not own end with the node too.
        if let Err(e) = containerd.stop_other_tasks(CONTAINER_STOP_GRACE).await {
            tracing::warn!(error = %e, "stopping the containers of other namespaces");
        }
    }
    agent.supervisor.stop_all().await;
    match what {
        Lifecycle::Reboot => platform.reboot()?,
        Lifecycle::Shutdown => platform.shutdown()?,
    };
    Ok(())
}

/// Serves maintenance mode until a valid configuration arrives, and returns it; a
/// SIGTERM or SIGINT meanwhile shuts the node down.
async fn maintenance(
    options: &Options,
    store: &config_store::ConfigStore,
    platform: &Arc<dyn Platform>,
    boot: &agent::Boot,
) -> Result<machine_config::ConfigBundle, BootError> {
    let certificate = server::maintenance::certificate(options.listen)?;
    let tls =
        pki::tls::server_config_without_client_auth(&certificate.cert_pem, &certificate.key_pem)?;
    let (accepted_tx, mut accepted_rx) = watch::channel(None);
    let api = server::maintenance::MaintenanceApi::new(
        platform.clone(),
        boot.clone(),
        store.clone(),
        options.listen,
        accepted_tx,
    );
    let mut received = accepted_rx.clone();
    let served = server::serve_maintenance(bind(options.listen).await?, tls, api, async move {
        let _ = received.wait_for(Option::is_some).await;
    });
    tracing::warn!(listen = %options.listen, "no configuration: maintenance mode, waiting for one (osctl --insecure apply-config)");
    let (_never, mut no_requests) = mpsc::unbounded_channel();
    tokio::select! {
        result = served => {
            if let Err(e) = result {
                tracing::error!(error = %e, "maintenance server failed");
            }
        }
        _ = wait_for_end(&mut no_requests) => {
            platform.shutdown()?;
        }
    }
    // The server only stops once a configuration was accepted.
    let bundle = accepted_rx.borrow_and_update().clone();
    bundle.ok_or_else(|| {
        BootError::Config(config_store::StoreError::NoConfig(
            options.state_dir.clone(),
        ))
    })
}

fn log_notes(notes: Vec<String>) {
    notes.iter().for_each(|note| tracing::info!("{note}"));
}

async fn bind(address: SocketAddr) -> Result<TcpListener, BootError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| BootError::Listen { address, source })
}

/// Waits for a reboot or shutdown request from the API, or SIGTERM/SIGINT (shutdown).
async fn wait_for_end(requests: &mut mpsc::UnboundedReceiver<Lifecycle>) -> Lifecycle {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers only API requests can end the boot.
        return requests.recv().await.unwrap_or(Lifecycle::Shutdown);
    };
    tokio::select! {
        request = requests.recv() => request.unwrap_or(Lifecycle::Shutdown),
        _ = term.recv() => Lifecycle::Shutdown,
        _ = int.recv() => Lifecycle::Shutdown,
    }
}
