//! The operator process: the metrics server, leader election, and both controllers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crds::{TalosNode, TalosUpgrade};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::events::Reporter;
use kube::runtime::{Controller, watcher};
use kube_lease_manager::LeaseManagerBuilder;

use crate::agent::{AgentCredentials, AgentError, Agents};
use crate::metrics::{self, Metrics};
use crate::rollout::{self, RolloutContext};
use crate::{Context, Settings, node};

/// How the operator runs (its command line).
#[derive(Debug, Clone)]
pub struct Options {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    /// The os:operator client certificate: `ca.crt`, `tls.crt`, `tls.key`.
    pub client_cert_dir: PathBuf,
    /// Take a Lease before reconciling, so that only one replica acts.
    pub leader_election: Option<LeaderElection>,
    /// The reconcilers' tunables.
    pub settings: Settings,
    /// This replica's name (its pod), in events and the Lease.
    pub identity: String,
}

/// Where the leader Lease is.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// The Lease's namespace (the operator's own).
    pub namespace: String,
    /// The Lease's name.
    pub lease: String,
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No Kubernetes client configuration (in-cluster or kubeconfig) was found.
    #[error("kubernetes client: {0}")]
    Client(#[from] kube::Error),
    /// The agents' client certificate is unusable.
    #[error(transparent)]
    Credentials(#[from] AgentError),
    /// The metrics server could not listen.
    #[error("metrics server on {address}: {source}")]
    Metrics {
        /// `--metrics-addr`.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Leader election failed, or this replica lost the lease (it exits so that it
    /// restarts as a follower, the usual way for controllers).
    #[error("leader election: {0}")]
    Leadership(String),
}

/// Runs the operator until SIGTERM (or ctrl-c).
pub async fn run(options: Options) -> Result<(), RunError> {
    let credentials = AgentCredentials::load(&options.client_cert_dir)?;
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::new());
    let server = {
        let metrics = metrics.clone();
        let address = options.metrics_addr;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| RunError::Metrics { address, source })?;
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(listener, metrics).await {
                tracing::error!(error = %e, "metrics server stopped");
            }
        })
    };

    let mut leadership = None;
    if let Some(election) = &options.leader_election {
        // A follower is ready: it is up, and takes over when the leader goes.
        metrics.set_ready();
        let manager = LeaseManagerBuilder::new(client.clone(), &election.lease)
            .with_namespace(&election.namespace)
            .with_identity(&options.identity)
            .build()
            .await
            .map_err(|e| RunError::Leadership(e.to_string()))?;
        let (mut leader, task) = manager.watch().await;
        tracing::info!(lease = %election.lease, namespace = %election.namespace, "waiting for the leader lease");
        while !*leader.borrow_and_update() {
            leader
                .changed()
                .await
                .map_err(|_| RunError::Leadership("the lease manager stopped".into()))?;
        }
        tracing::info!("leading");
        leadership = Some((leader, task));
    }

    let reporter = Reporter {
        controller: crate::FIELD_MANAGER.into(),
        instance: Some(options.identity.clone()),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        Agents::new(credentials),
        options.settings.clone(),
        metrics.clone(),
        reporter,
    ));

    let nodes = Controller::new(
        Api::<TalosNode>::all(client.clone()),
        watcher::Config::default(),
    )
    .shutdown_on_signal();
    let store = nodes.store();
    let rollout_ctx = Arc::new(RolloutContext {
        ctx: ctx.clone(),
        nodes: store.clone(),
    });
    let node_loop = nodes
        .run(node::reconcile, node::error_policy, ctx.clone())
        .for_each(|_| async {});
    let rollouts = async {
        // One waiter only: the store's readiness wakes a single task.
        if store.wait_until_ready().await.is_err() {
            return;
        }
        metrics.set_ready();
        tracing::info!("node cache synced; reconciling rollouts");
        Controller::new(
            Api::<TalosUpgrade>::all(client.clone()),
            watcher::Config::default(),
        )
        .shutdown_on_signal()
        .run(rollout::reconcile, rollout::error_policy, rollout_ctx)
        .for_each(|_| async {})
        .await;
    };
    let controllers = async {
        tokio::join!(node_loop, rollouts);
    };
    let result = match leadership {
        Some((mut leader, _task)) => {
            tokio::select! {
                () = controllers => Ok(()),
                lost = async {
                    loop {
                        if leader.changed().await.is_err() || !*leader.borrow() {
                            return;
                        }
                    }
                } => {
                    let () = lost;
                    Err(RunError::Leadership("lost the lease".into()))
                }
            }
        }
        None => {
            controllers.await;
            Ok(())
        }
    };
    server.abort();
    result
}
