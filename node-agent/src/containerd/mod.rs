//! containerd: the node's container runtime, driven over its gRPC API.
//!
//! The agent runs its own containerd (a supervised system service with a generated
//! config, [`config`]) and talks to it through the `containerd-client` bindings, never
//! by shelling out to `ctr`. Two namespaces matter:
//!
//! * [`SYSTEM_NAMESPACE`]: the agent's own container services ([`task`]), from images
//!   shipped in the node image or imported over the API ([`images`]).
//! * [`K8S_NAMESPACE`]: what the kubelet (CRI) creates; the agent only lists, measures
//!   and restarts those containers.
//!
//! **Invariant:** a container service's container id is its service name, and the
//! supervisor is the only one that creates or deletes containers in `system`.

pub mod config;
pub mod images;
mod oci;
pub mod spec;
pub mod stats;
pub mod task;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::version_client::VersionClient;
use tokio::sync::OnceCell;
use tonic::transport::Channel;

pub use config::ContainerdPaths;

/// The namespace of the agent's container services.
pub const SYSTEM_NAMESPACE: &str = "system";
/// The namespace the kubelet's CRI plugin uses.
pub const K8S_NAMESPACE: &str = "k8s.io";
/// The snapshotter every container of the agent uses.
pub const SNAPSHOTTER: &str = "overlayfs";
/// The runtime (shim) every container of the agent uses.
pub const RUNTIME: &str = "io.containerd.runc.v2";

/// How long a call waits for containerd's socket to answer before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of containerd operations, each naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    /// This node runs no containerd (process platform without `--containerd`).
    #[error("this node runs no containerd")]
    NotConfigured,
    /// containerd did not answer on its socket.
    #[error("containerd is not answering on {socket}: {why}")]
    Unavailable {
        /// The socket.
        socket: PathBuf,
        /// The last connection error.
        why: String,
    },
    /// Something the caller named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller's input is wrong (a malformed image archive, a bad name).
    #[error("{0}")]
    Invalid(String),
    /// containerd refused or failed a call.
    #[error("{what}: {status}", status = .status.message())]
    Rpc {
        /// The step that failed.
        what: String,
        /// containerd's answer.
        status: tonic::Status,
    },
    /// A local file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The step that failed.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ContainerdError {
    /// A failed RPC; NotFound answers become [`ContainerdError::NotFound`].
    fn rpc(what: impl Into<String>, status: tonic::Status) -> Self {
        let what = what.into();
        if status.code() == tonic::Code::NotFound {
            ContainerdError::NotFound(format!("{what}: {}", status.message()))
        } else {
            ContainerdError::Rpc { what, status }
        }
    }

    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ContainerdError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Result of containerd operations.
pub type Result<T, E = ContainerdError> = std::result::Result<T, E>;

/// A handle on the node's containerd: its paths, and a connection made on first use.
/// Cheap to clone; shared by the supervisor and the API.
#[derive(Debug, Clone)]
pub struct Containerd {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    paths: ContainerdPaths,
    channel: OnceCell<Channel>,
    /// Set once the shipped image archives have been imported this boot.
    shipped: OnceCell<()>,
}

impl Containerd {
    /// A handle for the containerd that runs with `paths`; nothing is connected yet.
    pub fn new(paths: ContainerdPaths) -> Self {
        Containerd {
            inner: Arc::new(Inner {
                paths,
                channel: OnceCell::new(),
                shipped: OnceCell::new(),
            }),
        }
    }

    /// Where this containerd keeps its socket, state and the agent's FIFOs.
    pub fn paths(&self) -> &ContainerdPaths {
        &self.inner.paths
    }

    /// The channel to containerd, waiting (up to 30 s) for the socket to answer.
    pub async fn channel(&self) -> Result<Channel> {
        self.inner
            .channel
            .get_or_try_init(|| connect(&self.inner.paths.socket))
            .await
            .cloned()
    }

    /// The containers service.
    async fn containers(&self) -> Result<ContainersClient<Channel>> {
        Ok(ContainersClient::new(self.channel().await?))
    }

    /// The tasks service.
    async fn tasks(&self) -> Result<TasksClient<Channel>> {
        Ok(TasksClient::new(self.channel().await?))
    }

    /// The images service.
    async fn images(&self) -> Result<ImagesClient<Channel>> {
        Ok(ImagesClient::new(self.channel().await?))
    }

    /// The content store.
    async fn content(&self) -> Result<ContentClient<Channel>> {
        Ok(ContentClient::new(self.channel().await?))
    }

    /// The snapshotters.
    async fn snapshots(&self) -> Result<SnapshotsClient<Channel>> {
        Ok(SnapshotsClient::new(self.channel().await?))
    }

    /// The differ (layer unpacking).
    async fn diff(&self) -> Result<DiffClient<Channel>> {
        Ok(DiffClient::new(self.channel().await?))
    }

    /// The leases service.
    async fn leases(&self) -> Result<LeasesClient<Channel>> {
        Ok(LeasesClient::new(self.channel().await?))
    }
}

/// Connects to containerd's socket, retrying while containerd starts.
async fn connect(socket: &Path) -> Result<Channel> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        let attempt = async {
            let channel = containerd_client::connect(socket)
                .await
                .map_err(|e| format!("{e}: {}", error_chain(&e)))?;
            VersionClient::new(channel.clone())
                .version(())
                .await
                .map_err(|status| status.message().to_owned())?;
            Ok::<_, String>(channel)
        };
        match attempt.await {
            Ok(channel) => return Ok(channel),
            Err(why) if Instant::now() >= deadline => {
                return Err(ContainerdError::Unavailable {
                    socket: socket.to_owned(),
                    why,
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The sources of an error, joined (tonic's transport errors hide the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.join(": ")
}

/// A request to containerd in `namespace` (and, for imports, under `lease`).
fn request<T>(namespace: &str, lease: Option<&str>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    // Namespaces and lease ids are plain ASCII names checked by their callers.
    if let Ok(value) = namespace.parse() {
        metadata.insert("containerd-namespace", value);
    }
    if let Some(lease) = lease.and_then(|lease| lease.parse().ok()) {
        metadata.insert("containerd-lease", lease);
    }
    request
}

/// Checks a namespace name given by an API caller.
pub fn check_namespace(namespace: &str) -> Result<()> {
    let valid = !namespace.is_empty()
        && namespace.len() <= 76
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ContainerdError::Invalid(format!(
            "{namespace:?} is not a containerd namespace"
        )))
    }
}
