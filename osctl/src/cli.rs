//! The command line of osctl (clap definitions only; the work is in `commands`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::Format;

/// osctl: manage nodes through their machine API (mutual TLS; no shell, no SSH).
#[derive(Debug, Parser)]
#[command(name = "osctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Client configuration file [default: ~/.osctl/config].
    #[arg(long, global = true, env = "OSCTL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Context to use instead of the file's current one.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Endpoints to connect to (overrides the context), comma-separated; given before
    /// the command (`osctl -e 10.0.0.2 version`).
    #[arg(short = 'e', long, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Nodes the command is for (overrides the context), comma-separated, given before
    /// the command; the endpoint forwards to each and merges the replies.
    #[arg(short = 'n', long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Talk to a node in maintenance mode (no configuration yet): no client
    /// certificate, and the node's certificate is not verified. Needs -e.
    #[arg(short = 'i', long)]
    pub insecure: bool,
    /// Output format of data commands.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t)]
    pub output: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What `osctl image` does.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List the images.
    #[command(alias = "list")]
    Ls,
    /// Import an OCI image archive (an OCI layout tarball, as `image-builder oci`
    /// writes) into one node (-e or the context's first endpoint; not -n).
    Import {
        /// The archive.
        file: PathBuf,
    },
    /// Remove an image.
    #[command(alias = "remove")]
    Rm {
        /// The image name, e.g. node-os.local/busybox:1.35.
        name: String,
    },
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate configurations.
    Gen {
        /// What to generate.
        #[command(subcommand)]
        what: GenCommand,
    },
    /// Manage the client configuration (contexts, endpoints, nodes, credentials).
    Config {
        /// What to do with it.
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Show the agent version, kernel, platform and boot of each node.
    Version,
    /// Reboot the nodes.
    Reboot {
        /// Wait until each node is back with a new boot id.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Stop all services and power the nodes off.
    Shutdown,
    /// Install a signed upgrade bundle into the node's other slot and reboot into it
    /// on trial; the node keeps it only if it comes up healthy.
    Upgrade {
        /// The bundle: a file (uploaded) or an https:// URL (downloaded by the node).
        #[arg(long, value_name = "FILE|URL")]
        image: String,
        /// The bundle file's sha256 (hex): the node refuses a bundle with another.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Install only: the next reboot boots it.
        #[arg(long)]
        stage: bool,
        /// Keep EPHEMERAL's data (containerd's images, /var).
        #[arg(long)]
        preserve: bool,
        /// Skip the node's pre-checks (booted slot confirmed, services healthy, a
        /// different version).
        #[arg(long)]
        force: bool,
        /// Wait until the new slot is confirmed healthy; fail if the node rolls back.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Reboot into the other slot's installation (it must have booted healthy).
    Rollback,
    /// Show the node's events: boots, upgrades, confirmations, rollbacks.
    Events {
        /// Keep streaming new events.
        #[arg(short, long)]
        follow: bool,
    },
    /// List the services and their state.
    Services,
    /// Start, stop or restart a service.
    Service {
        /// The service.
        name: String,
        /// The action.
        #[arg(value_enum)]
        action: ServiceAction,
    },
    /// Show a service's log (a container service's output too).
    Logs {
        /// The service (or container id).
        service: String,
        /// A container of Kubernetes (namespace k8s.io) rather than a service.
        #[arg(short = 'k', long)]
        kubernetes: bool,
        /// Keep streaming new lines.
        #[arg(short, long)]
        follow: bool,
        /// Show the last N lines (all that is kept when negative).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        tail: i32,
    },
    /// Show the kernel log.
    Dmesg {
        /// Keep streaming new messages.
        #[arg(short, long)]
        follow: bool,
        /// Show the last N messages (all the kernel holds when negative).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        tail: i32,
    },
    /// CPU time and memory of each service (with -k: of each Kubernetes container).
    Stats {
        /// Kubernetes' containers (namespace k8s.io) instead of the services.
        #[arg(short = 'k', long)]
        kubernetes: bool,
    },
    /// List the containers: the node's container services (namespace system), or with
    /// -k Kubernetes' (namespace k8s.io).
    Ps {
        /// Kubernetes' containers (namespace k8s.io).
        #[arg(short = 'k', long)]
        kubernetes: bool,
    },
    /// Restart a container: a container service (through its supervisor), or with -k a
    /// Kubernetes container (its task is killed and started again).
    Restart {
        /// The container id (a container service's id is its name).
        id: String,
        /// A Kubernetes container (namespace k8s.io).
        #[arg(short = 'k', long)]
        kubernetes: bool,
    },
    /// Manage the container images of a node.
    Image {
        /// What to do.
        #[command(subcommand)]
        what: ImageCommand,
        /// Kubernetes' images (namespace k8s.io) instead of the node's (system).
        #[arg(short = 'k', long, global = true)]
        kubernetes: bool,
    },
    /// Memory of the nodes.
    Memory,
    /// Processes of the nodes.
    Processes,
    /// Mounted filesystems of the nodes.
    Mounts,
    /// Apply a whole configuration file.
    ApplyConfig {
        /// The configuration file (config and secrets documents).
        #[arg(short, long)]
        file: PathBuf,
        /// Apply options.
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Patch the running configuration (JSON merge or RFC 6902 patches).
    Patch {
        /// A patch, inline or `@FILE`; repeatable, applied in order.
        #[arg(short, long = "patch", required = true)]
        patches: Vec<String>,
        /// Apply options.
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Check the running kernel against the hardening policy (KSPP command line and
    /// sysctls).
    KernelSecurity {
        /// Show only what is not met.
        #[arg(long)]
        unmet: bool,
    },
    /// Read a resource from the nodes.
    Get {
        /// The resource.
        #[arg(value_enum)]
        resource: Resource,
    },
    /// Create, show and destroy local clusters.
    Cluster {
        /// What to do.
        #[command(subcommand)]
        what: ClusterCommand,
    },
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `osctl gen ...`.
#[derive(Debug, Subcommand)]
pub enum GenCommand {
    /// Write secrets.yaml, controlplane.yaml, worker.yaml and osctlconfig (mode 0600).
    Config {
        /// Cluster name.
        name: String,
        /// The control plane's machine API: `https://HOST:PORT`, `HOST:PORT` or `HOST`.
        endpoint: String,
        /// Output directory.
        #[arg(long, default_value = ".")]
        output_dir: PathBuf,
        /// Patch both configurations (inline or `@FILE`); repeatable.
        #[arg(long = "config-patch")]
        config_patches: Vec<String>,
        /// Patch the control-plane configuration only.
        #[arg(long = "config-patch-control-plane")]
        control_plane_patches: Vec<String>,
        /// Patch the worker configuration only.
        #[arg(long = "config-patch-worker")]
        worker_patches: Vec<String>,
        /// Reuse a secrets file instead of generating new secrets.
        #[arg(long)]
        with_secrets: Option<PathBuf>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

/// `osctl config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// List the contexts.
    Contexts,
    /// Select the current context.
    Context {
        /// The context.
        name: String,
    },
    /// Set the current context's endpoints.
    Endpoint {
        /// Endpoints.
        #[arg(required = true)]
        endpoints: Vec<String>,
    },
    /// Set the current context's default nodes.
    Node {
        /// Nodes (none to clear).
        nodes: Vec<String>,
    },
    /// Merge the contexts of another client configuration file.
    Merge {
        /// The file.
        file: PathBuf,
    },
    /// Ask a control-plane node for a new client certificate and write a client
    /// configuration with it (the current context's endpoints and nodes).
    New {
        /// The role of the new certificate.
        #[arg(long = "roles", value_parser = ["os:admin", "os:operator", "os:reader"])]
        role: String,
        /// Lifetime of the certificate.
        #[arg(long = "crt-ttl", default_value = "8760h", value_parser = humantime::parse_duration)]
        crt_ttl: Duration,
        /// Where to write it.
        file: PathBuf,
    },
}

/// Service actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceAction {
    /// Start a stopped service.
    Start,
    /// Stop it (it stays stopped).
    Stop,
    /// Stop and start it.
    Restart,
}

/// Resources of `osctl get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Resource {
    /// The running configuration (secrets redacted below os:admin).
    Config,
}

/// How a configuration change is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Mode {
    /// Live when possible, else reboot.
    #[default]
    Auto,
    /// Live only; refused when a change needs a reboot.
    NoReboot,
    /// Write and reboot.
    Reboot,
    /// Write for the next boot.
    Staged,
    /// Live, reverted after --try-timeout unless confirmed by another apply.
    Try,
}

/// Options shared by apply-config and patch.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// How to apply.
    #[arg(long, value_enum, default_value_t)]
    pub mode: Mode,
    /// Show the diff and what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long a `--mode try` configuration lasts unless confirmed.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub try_timeout: Duration,
}

/// `osctl cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Create a local cluster and add a context for it.
    Create(ClusterCreate),
    /// Show a local cluster's nodes.
    Show {
        /// Cluster name.
        #[arg(long, default_value = "osctl-default")]
        name: String,
    },
    /// Stop a local cluster's nodes and remove its state and context.
    Destroy {
        /// Cluster name.
        #[arg(long, default_value = "osctl-default")]
        name: String,
    },
}

/// Options of `osctl cluster create`.
#[derive(Debug, Clone, Args)]
pub struct ClusterCreate {
    /// Cluster name.
    #[arg(long, default_value = "osctl-default")]
    pub name: String,
    /// How nodes are made.
    #[arg(long, value_enum, default_value_t)]
    pub provisioner: Provisioner,
    /// Number of nodes in all.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// How many of them are control-plane nodes.
    #[arg(long, default_value_t = 1)]
    pub controlplanes: usize,
    /// Loopback network of the nodes; the first node gets its second address.
    #[arg(long, default_value = "127.0.0.0/24")]
    pub cidr: ipnet::Ipv4Net,
    /// Machine API port of every node.
    #[arg(long, default_value_t = api::DEFAULT_API_PORT)]
    pub port: u16,
    /// The node-agent binary [default: next to osctl, then PATH].
    #[arg(long)]
    pub agent_binary: Option<PathBuf>,
    /// How long to wait for every node's API.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
    /// Patch every node's configuration (inline or `@FILE`); repeatable.
    #[arg(long = "config-patch")]
    pub config_patches: Vec<String>,
    /// qemu: the image directory image-builder wrote (manifest.json, vmlinux,
    /// initramfs, disk).
    #[arg(long, env = "OSCTL_IMAGE")]
    pub image: Option<PathBuf>,
    /// qemu: virtual CPUs per node.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// qemu: memory per node, in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    /// qemu: hardware acceleration (auto: KVM when usable, else TCG emulation).
    #[arg(long, value_enum, default_value_t)]
    pub accel: Accel,
    /// qemu: how the VMs boot.
    #[arg(long, value_enum, default_value_t)]
    pub boot: BootPath,
    /// qemu: boot without a configuration, into maintenance mode; each node's
    /// configuration is left in its directory for `osctl --insecure apply-config`.
    #[arg(long)]
    pub skip_injecting_config: bool,
    /// process: give each node a private containerd (the host's `containerd`, with
    /// runc), so that services can run images. QEMU nodes always have one.
    #[arg(long)]
    pub containerd: bool,
}

/// How QEMU boots a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum BootPath {
    /// The image's vmlinux straight from QEMU (PVH on the microvm machine): fastest.
    #[default]
    Direct,
    /// Firmware (OVMF) → systemd-boot → slot A, as on a real machine.
    Uefi,
}

/// QEMU accelerators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Accel {
    /// KVM when /dev/kvm is usable and this machine is not a VM itself, else TCG.
    #[default]
    Auto,
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation (slower, works everywhere).
    Tcg,
}

/// Provisioners of local clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Provisioner {
    /// Node agents as processes on this machine, one loopback address each.
    #[default]
    Process,
    /// One QEMU VM per node, booting the image (`--image`) with the agent as PID 1.
    Qemu,
}
