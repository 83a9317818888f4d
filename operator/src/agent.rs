//! The operator's side of the machine API: an os:operator client for each node's
//! agent, over mutual TLS 1.3.
//!
//! Only the RPCs the reconcilers need are wrapped here, each returning what the
//! operator reads from it; the operator never calls one that returns secrets
//! (`GetConfiguration` answers an os:operator caller with secrets redacted, and only
//! its hash is kept).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::machine::machine_service_client::MachineServiceClient;
use api::machine::{
    ApplyMode, GetConfigurationRequest, PatchConfigurationRequest, RebootRequest,
    ServiceListRequest, UpgradeOptions, UpgradeRequest, VersionInfo, VersionRequest,
};
use api::transport::NodeAddress;
use futures::StreamExt;
use rustls::ClientConfig;
use tonic::transport::Channel;

/// How long connecting to an agent (TCP, TLS) may take before the next endpoint is
/// tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one unary RPC may take; upgrades stream for as long as the download does.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// What can go wrong talking to an agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The client certificate directory is missing a file or holds a bad one.
    #[error("client certificate in {dir}: {reason}")]
    Credentials {
        /// The directory (`--client-cert-dir`).
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A TalosNode endpoint is not `host[:port]`.
    #[error("endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as written in the TalosNode.
        endpoint: String,
        /// Why it does not parse.
        reason: String,
    },
    /// No endpoint answered.
    #[error("no endpoint of the node answered: {0}")]
    Unreachable(String),
    /// The agent refused or failed a request; `message` is its reason.
    #[error("{rpc} on {endpoint}: {message}")]
    Rpc {
        /// The RPC.
        rpc: &'static str,
        /// The endpoint that answered.
        endpoint: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The agent's message.
        message: String,
    },
}

impl AgentError {
    /// True when the agent is already doing what was asked (an upgrade under way).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            AgentError::Rpc {
                code: tonic::Code::Aborted,
                ..
            }
        )
    }

    /// True when the agent judged the request itself wrong (a config patch it cannot
    /// apply, a bundle it refuses): retrying the same request cannot help.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            AgentError::Rpc {
                code: tonic::Code::InvalidArgument
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::PermissionDenied,
                ..
            }
        )
    }
}

/// The os:operator identity the operator presents to every agent: `ca.crt`,
/// `tls.crt` and `tls.key` in one directory (the chart mounts them from a Secret).
#[derive(Clone)]
pub struct AgentCredentials {
    tls: Arc<ClientConfig>,
}

impl AgentCredentials {
    /// Reads the three PEM files from `dir`.
    pub fn load(dir: &Path) -> Result<Self, AgentError> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| AgentError::Credentials {
                dir: dir.to_path_buf(),
                reason: format!("reading {name}: {e}"),
            })
        };
        let (ca, cert, key) = (read("ca.crt")?, read("tls.crt")?, read("tls.key")?);
        let tls = pki::tls::client_config(&ca, Some((&cert, &key))).map_err(|e| {
            AgentError::Credentials {
                dir: dir.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self { tls })
    }
}

/// The agents' connections, one lazily connected HTTP/2 channel per endpoint, shared
/// by all reconciles (tonic reconnects a channel whose connection broke).
pub struct Agents {
    credentials: AgentCredentials,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Agents {
    /// A pool that authenticates with `credentials`.
    pub fn new(credentials: AgentCredentials) -> Self {
        Self {
            credentials,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Reaches the node at the first of `endpoints` that answers `Version`, and
    /// returns the agent together with what that call said.
    pub async fn reach(&self, endpoints: &[String]) -> Result<(Agent, VersionInfo), AgentError> {
        let mut failures = Vec::new();
        for endpoint in endpoints {
            let address =
                NodeAddress::parse(endpoint, api::DEFAULT_API_PORT).map_err(|reason| {
                    AgentError::Endpoint {
                        endpoint: endpoint.clone(),
                        reason,
                    }
                })?;
            let mut agent = Agent {
                client: MachineServiceClient::new(self.channel(&address)),
                endpoint: address.to_string(),
            };
            match agent.version().await {
                Ok(version) => return Ok((agent, version)),
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(AgentError::Unreachable(failures.join("; ")))
    }

    fn channel(&self, address: &NodeAddress) -> Channel {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(address.to_string())
            .or_insert_with(|| {
                api::transport::connect_lazy(address, self.credentials.tls.clone(), CONNECT_TIMEOUT)
            })
            .clone()
    }
}

/// One node's agent, reached on `endpoint`.
pub struct Agent {
    client: MachineServiceClient<Channel>,
    endpoint: String,
}

/// What a configuration patch did, or would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchOutcome {
    /// The unified diff, secrets redacted; empty when nothing changes.
    pub diff: String,
    /// True when the change reboots the node (the mode resolved to REBOOT).
    pub reboots: bool,
    /// The agent's words on how it applied (or would apply) the change.
    pub details: String,
    /// The hash of the configuration written; empty for a dry run.
    pub config_hash: String,
}

/// A service's health, as much as the status summary needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    /// The service's name.
    pub name: String,
    /// Running, healthy (or without a health check), and not in back-off.
    pub healthy: bool,
}

impl Agent {
    /// The endpoint this agent answered on.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn failed(&self, rpc: &'static str) -> impl Fn(tonic::Status) -> AgentError + '_ {
        move |status| AgentError::Rpc {
            rpc,
            endpoint: self.endpoint.clone(),
            code: status.code(),
            message: api::transport::explain_status(&status),
        }
    }

    /// The node's versions, boot id and boot time, slots and last rollback.
    pub async fn version(&mut self) -> Result<VersionInfo, AgentError> {
        let reply = self
            .client
            .version(timed(VersionRequest {}))
            .await
            .map_err(self.failed("Version"))?;
        first(reply.into_inner().messages, "Version", &self.endpoint)
    }

    /// Every service's name and health.
    pub async fn services(&mut self) -> Result<Vec<ServiceState>, AgentError> {
        let reply = self
            .client
            .service_list(timed(ServiceListRequest {}))
            .await
            .map_err(self.failed("ServiceList"))?;
        let list = first(reply.into_inner().messages, "ServiceList", &self.endpoint)?;
        Ok(list
            .services
            .into_iter()
            .map(|s| ServiceState {
                healthy: s.state == "running" && s.health != "unhealthy",
                name: s.name,
            })
            .collect())
    }

    /// The sha256 of the node's running configuration (the document itself, redacted
    /// for the operator's role, is dropped).
    pub async fn config_hash(&mut self) -> Result<String, AgentError> {
        let reply = self
            .client
            .get_configuration(timed(GetConfigurationRequest {}))
            .await
            .map_err(self.failed("GetConfiguration"))?;
        let config = first(
            reply.into_inner().messages,
            "GetConfiguration",
            &self.endpoint,
        )?;
        Ok(config.config_hash)
    }

    /// Applies `patches` (JSON texts, in order) to the running configuration on the
    /// node, or only computes the change with `dry_run`.
    pub async fn patch_config(
        &mut self,
        patches: Vec<String>,
        mode: ApplyMode,
        dry_run: bool,
    ) -> Result<PatchOutcome, AgentError> {
        let request = PatchConfigurationRequest {
            patches,
            mode: mode.into(),
            dry_run,
            try_timeout_seconds: 0,
        };
        let reply = self
            .client
            .patch_configuration(timed(request))
            .await
            .map_err(self.failed("PatchConfiguration"))?;
        let applied = first(
            reply.into_inner().messages,
            "PatchConfiguration",
            &self.endpoint,
        )?;
        Ok(PatchOutcome {
            reboots: applied.mode() == ApplyMode::Reboot,
            diff: applied.diff,
            details: applied.mode_details,
            config_hash: applied.config_hash,
        })
    }

    /// Asks the node to reboot; returns the boot id it had when it accepted.
    pub async fn reboot(&mut self) -> Result<String, AgentError> {
        let reply = self
            .client
            .reboot(timed(RebootRequest {}))
            .await
            .map_err(self.failed("Reboot"))?;
        Ok(first(reply.into_inner().messages, "Reboot", &self.endpoint)?.boot_id)
    }

    /// Has the node download, verify and install the bundle at `url` and reboot into
    /// it on trial; returns once the node reports its reboot (or staging).
    pub async fn upgrade(&mut self, url: &str, sha256: Option<&str>) -> Result<(), AgentError> {
        let request = UpgradeRequest {
            options: Some(UpgradeOptions {
                url: url.to_owned(),
                sha256: sha256.unwrap_or_default().to_owned(),
                ..UpgradeOptions::default()
            }),
            chunk: Vec::new(),
        };
        let mut progress = self
            .client
            .upgrade(futures::stream::iter([request]))
            .await
            .map_err(self.failed("Upgrade"))?
            .into_inner();
        let mut phase = String::new();
        while let Some(step) = progress.next().await {
            let step = step.map_err(self.failed("Upgrade"))?;
            if step.phase != phase {
                tracing::info!(endpoint = %self.endpoint, phase = %step.phase, version = %step.version, "upgrade");
                phase = step.phase;
            }
        }
        Ok(())
    }
}

/// A unary request that fails after [`RPC_TIMEOUT`].
fn timed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(RPC_TIMEOUT);
    request
}

/// The one item of a unary reply (the operator never fans out).
fn first<T>(items: Vec<T>, rpc: &'static str, endpoint: &str) -> Result<T, AgentError> {
    items.into_iter().next().ok_or_else(|| AgentError::Rpc {
        rpc,
        endpoint: endpoint.to_owned(),
        code: tonic::Code::Internal,
        message: "the reply was empty".into(),
    })
}
