//! `talos-operator`: reconciles TalosNodes and TalosUpgrades (see the library).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use operator::Settings;
use operator::run::{LeaderElection, Options};

/// Reconciles TalosNodes and TalosUpgrades by talking to the node agents over
/// mutual TLS. Kubernetes access: in-cluster, or KUBECONFIG / ~/.kube/config.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Directory with the os:operator client certificate (ca.crt, tls.crt, tls.key).
    #[arg(long, default_value = "/etc/talos-operator/client")]
    client_cert_dir: PathBuf,
    /// Reconcile only while holding a Lease (for more than one replica).
    #[arg(long)]
    leader_election: bool,
    /// The Lease's name.
    #[arg(long, default_value = "talos-operator")]
    lease_name: String,
    /// The Lease's namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's name, in events and the Lease.
    #[arg(long, env = "POD_NAME", default_value = "talos-operator")]
    identity: String,
    /// How often a settled node is observed again.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    resync: Duration,
    /// How often a node or rollout in progress is looked at.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    poll: Duration,
    /// How long a node may take to reboot once asked.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    operation_timeout: Duration,
    /// How long draining a Kubernetes Node may take.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Log format: json (one object per line) or text.
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    raise_open_files_limit();
    let options = Options {
        metrics_addr: args.metrics_addr,
        client_cert_dir: args.client_cert_dir,
        leader_election: args.leader_election.then_some(LeaderElection {
            namespace: args.lease_namespace,
            lease: args.lease_name,
        }),
        settings: Settings {
            resync: args.resync,
            poll: args.poll,
            operation_timeout: args.operation_timeout,
            drain_timeout: args.drain_timeout,
            ..Settings::default()
        },
        identity: args.identity,
    };
    operator::run::run(options).await?;
    Ok(())
}

/// One connection per node agent: a fleet of more than a thousand nodes needs more
/// file descriptors than the usual soft limit of 1024, so take the hard limit.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, "could not raise the open files limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the open files limit"),
    }
}
