//! The commands: each takes the parsed options and does its work through the API or
//! the local provisioner.

pub mod cluster;
pub mod config;
pub mod containers;
pub mod gen_config;
pub mod node;
pub mod upgrade;

use std::path::PathBuf;

use crate::cli::{Cli, ClusterCommand, Command, GenCommand, ImageCommand, Resource};
use crate::client_config::ClientConfig;
use crate::connection::{Connection, Target};
use crate::output::Format;

/// What every API command needs: the client configuration and the global flags.
pub struct Session {
    /// Path of the client configuration.
    pub config_path: PathBuf,
    /// The client configuration as loaded.
    pub client_config: ClientConfig,
    /// `--context`.
    pub context: Option<String>,
    /// `--endpoints`.
    pub endpoints: Vec<String>,
    /// `--nodes`.
    pub nodes: Vec<String>,
    /// `-o`.
    pub format: Format,
    /// `--insecure`: maintenance mode, no client certificate.
    pub insecure: bool,
}

impl Session {
    /// Connects as the selected context, to the selected endpoints and nodes.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        self.connect_for(true).await
    }

    /// Connects for a call to the endpoint itself (an upload, which cannot be
    /// forwarded): the context's nodes are not named.
    pub async fn connect_to_endpoint(&self) -> anyhow::Result<Connection> {
        if !self.nodes.is_empty() {
            anyhow::bail!("this command goes to one node: name it with -e, not -n");
        }
        self.connect_for(false).await
    }

    async fn connect_for(&self, fan_out: bool) -> anyhow::Result<Connection> {
        if self.insecure {
            if self.endpoints.is_empty() || !self.nodes.is_empty() {
                anyhow::bail!(
                    "--insecure talks to one node in maintenance mode: name it with -e NODE (and no -n)"
                );
            }
            let target = Target {
                endpoints: Target::parse_addresses(&self.endpoints)?,
                nodes: Vec::new(),
            };
            return Ok(Connection::open_insecure(&target).await?);
        }
        let (_, context) = self.client_config.context(self.context.as_deref())?;
        let mut target = Target::new(context, &self.endpoints, &self.nodes)?;
        if !fan_out {
            target.nodes.clear();
        }
        Ok(Connection::open(context, &target).await?)
    }
}

/// Runs the command `cli` names.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(ClientConfig::default_path);
    let session = Session {
        client_config: ClientConfig::load(&config_path)?,
        config_path,
        context: cli.context,
        endpoints: cli.endpoints,
        nodes: cli.nodes,
        format: cli.output,
        insecure: cli.insecure,
    };
    match cli.command {
        Command::Gen {
            what:
                GenCommand::Config {
                    name,
                    endpoint,
                    output_dir,
                    config_patches,
                    control_plane_patches,
                    worker_patches,
                    with_secrets,
                    force,
                },
        } => gen_config::write(&gen_config::Request {
            name,
            endpoint,
            output_dir,
            patches: config_patches,
            control_plane_patches,
            worker_patches,
            with_secrets,
            force,
        }),
        Command::Config { what } => config::run(&session, what).await,
        Command::Version => node::version(&session).await,
        Command::Reboot { wait, timeout } => node::reboot(&session, wait, timeout).await,
        Command::Shutdown => node::shutdown(&session).await,
        Command::Upgrade {
            image,
            sha256,
            stage,
            preserve,
            force,
            wait,
            timeout,
        } => {
            let request = upgrade::Request {
                image,
                sha256,
                stage,
                preserve,
                force,
                wait,
                timeout,
            };
            upgrade::upgrade(&session, &request).await
        }
        Command::Rollback => upgrade::rollback(&session).await,
        Command::Events { follow } => upgrade::events(&session, follow).await,
        Command::Services => node::services(&session).await,
        Command::Service { name, action } => node::service(&session, &name, action).await,
        Command::Logs {
            service,
            kubernetes,
            follow,
            tail,
        } => node::logs(&session, &service, namespace(kubernetes), follow, tail).await,
        Command::Dmesg { follow, tail } => node::dmesg(&session, follow, tail).await,
        Command::Stats { kubernetes } => node::stats(&session, kubernetes).await,
        Command::Ps { kubernetes } => containers::ps(&session, namespace(kubernetes)).await,
        Command::Restart { id, kubernetes } => {
            containers::restart(&session, namespace(kubernetes), &id).await
        }
        Command::Image { what, kubernetes } => {
            let namespace = namespace(kubernetes);
            match what {
                ImageCommand::Ls => containers::images(&session, namespace).await,
                ImageCommand::Import { file } => {
                    containers::import(&session, namespace, &file).await
                }
                ImageCommand::Rm { name } => containers::remove(&session, namespace, &name).await,
            }
        }
        Command::Memory => node::memory(&session).await,
        Command::Processes => node::processes(&session).await,
        Command::Mounts => node::mounts(&session).await,
        Command::ApplyConfig { file, apply } => node::apply_config(&session, &file, &apply).await,
        Command::Patch { patches, apply } => node::patch(&session, &patches, &apply).await,
        Command::KernelSecurity { unmet } => node::kernel_security(&session, unmet).await,
        Command::Get {
            resource: Resource::Config,
        } => node::get_config(&session).await,
        Command::Cluster { what } => match what {
            ClusterCommand::Create(options) => cluster::create(&session, &options).await,
            ClusterCommand::Show { name } => cluster::show(&session, &name).await,
            ClusterCommand::Destroy { name } => cluster::destroy(&session, &name),
        },
        Command::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "osctl", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// The containerd namespace a `-k` flag selects: the kubelet's, or (empty) the node's
/// own `system`.
fn namespace(kubernetes: bool) -> &'static str {
    if kubernetes { "k8s.io" } else { "" }
}
