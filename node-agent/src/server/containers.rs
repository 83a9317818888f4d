//! The container and image handlers of the MachineService (Containers, Restart,
//! container Stats, ImageList, ImageImport, ImageRemove): translations between the API
//! messages and [`crate::containerd`].

use std::io::Write;
use std::time::{Duration, Instant, UNIX_EPOCH};

use api::machine::*;
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::machine::MachineApi;
use crate::containerd::{self, Containerd, ContainerdError, SYSTEM_NAMESPACE};
use crate::supervisor::ServiceState;

/// The largest image archive an upload may carry.
const MAX_IMPORT_BYTES: u64 = 4 << 30;

/// How long Restart of a container service waits for the new process.
const RESTART_WAIT: Duration = Duration::from_secs(60);

/// The gRPC status of a containerd error.
pub(super) fn containerd_status(error: ContainerdError) -> Status {
    let message = error.to_string();
    match error {
        ContainerdError::NotConfigured => Status::failed_precondition(message),
        ContainerdError::Unavailable { .. } => Status::unavailable(message),
        ContainerdError::NotFound(_) => Status::not_found(message),
        ContainerdError::Invalid(_) => Status::invalid_argument(message),
        ContainerdError::Rpc { status, .. } => Status::new(status.code(), message),
        ContainerdError::Io { .. } => Status::internal(message),
    }
}

/// The namespace a request names; empty means `system`.
fn namespace(requested: String) -> Result<String, Status> {
    let namespace = if requested.is_empty() {
        SYSTEM_NAMESPACE.to_owned()
    } else {
        requested
    };
    containerd::check_namespace(&namespace).map_err(containerd_status)?;
    Ok(namespace)
}

impl MachineApi {
    fn containerd(&self) -> Result<&Containerd, Status> {
        self.agent
            .supervisor
            .containerd()
            .ok_or_else(|| containerd_status(ContainerdError::NotConfigured))
    }

    pub(super) async fn list_containers(
        &self,
        request: Request<ContainersRequest>,
    ) -> Result<Response<ContainersResponse>, Status> {
        let namespace = namespace(request.into_inner().namespace)?;
        let containers = self
            .containerd()?
            .list_containers(&namespace)
            .await
            .map_err(containerd_status)?
            .into_iter()
            .map(|c| ContainerInfo {
                namespace: c.namespace,
                id: c.id,
                image: c.image,
                pid: c.pid.unwrap_or(0),
                status: c.status,
            })
            .collect();
        Ok(Response::new(ContainersResponse {
            messages: vec![ContainerList {
                metadata: self.metadata().await,
                containers,
            }],
        }))
    }

    /// CPU and memory of each running container of `namespace`.
    pub(super) async fn container_stats(
        &self,
        namespace: String,
    ) -> Result<Vec<ServiceStat>, Status> {
        let namespace = self::namespace(namespace)?;
        let containers = self
            .containerd()?
            .list_containers(&namespace)
            .await
            .map_err(containerd_status)?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let usage = containerd::stats::usage(c.pid?).ok()?;
                Some(ServiceStat {
                    name: c.id,
                    cpu_time_nanos: usage.cpu_time.as_nanos() as u64,
                    memory_bytes: usage.memory_bytes,
                    source: "cgroup".into(),
                })
            })
            .collect())
    }

    pub(super) async fn restart_container(
        &self,
        request: Request<RestartRequest>,
    ) -> Result<Response<RestartResponse>, Status> {
        let RestartRequest { namespace, id } = request.into_inner();
        let namespace = self::namespace(namespace)?;
        let pid = if namespace == SYSTEM_NAMESPACE {
            self.restart_service_container(&id).await?
        } else {
            self.containerd()?
                .restart_container(&namespace, &id)
                .await
                .map_err(containerd_status)?
        };
        Ok(Response::new(RestartResponse {
            messages: vec![RestartResult {
                metadata: self.metadata().await,
                pid,
            }],
        }))
    }

    /// Restarts container service `id` through the supervisor (so its policy, logs
    /// and dependencies stay in charge) and waits for the new process.
    async fn restart_service_container(&self, id: &str) -> Result<u32, Status> {
        let supervisor = &self.agent.supervisor;
        let before = supervisor
            .status(id)
            .map_err(|e| Status::not_found(e.to_string()))?;
        let old_pid = before.pid;
        supervisor
            .restart(id)
            .await
            .map_err(|e| Status::not_found(e.to_string()))?;
        let deadline = Instant::now() + RESTART_WAIT;
        loop {
            let status = supervisor
                .status(id)
                .map_err(|e| Status::not_found(e.to_string()))?;
            match (status.state, status.pid) {
                (ServiceState::Running, Some(pid)) if Some(pid) != old_pid => return Ok(pid),
                (ServiceState::Failed | ServiceState::Backoff | ServiceState::Stopped, _)
                    if !status.message.is_empty() =>
                {
                    return Err(Status::aborted(format!(
                        "{id} did not start again: {}",
                        status.message
                    )));
                }
                _ if Instant::now() >= deadline => {
                    return Err(Status::deadline_exceeded(format!(
                        "{id} is {} after {}s",
                        status.state,
                        RESTART_WAIT.as_secs()
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub(super) async fn list_images(
        &self,
        request: Request<ImageListRequest>,
    ) -> Result<Response<ImageListResponse>, Status> {
        let namespace = namespace(request.into_inner().namespace)?;
        let images = self
            .containerd()?
            .list_images(&namespace)
            .await
            .map_err(containerd_status)?
            .into_iter()
            .map(|image| ImageInfo {
                name: image.name,
                digest: image.digest,
                size: image.size,
                created_at: image
                    .created
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs() as i64),
            })
            .collect();
        Ok(Response::new(ImageListResponse {
            messages: vec![ImageList {
                metadata: self.metadata().await,
                namespace,
                images,
            }],
        }))
    }

    pub(super) async fn import_image(
        &self,
        request: Request<Streaming<ImageImportRequest>>,
    ) -> Result<Response<ImageImportResponse>, Status> {
        let containerd = self.containerd()?.clone();
        let mut chunks = request.into_inner();
        let work_dir = &containerd.paths().work_dir;
        let mut archive = tempfile::Builder::new()
            .prefix("upload-")
            .suffix(".tar")
            .tempfile_in(work_dir)
            .map_err(|e| Status::internal(format!("creating the upload file: {e}")))?;
        let mut namespace_name = None;
        let mut received = 0u64;
        while let Some(message) = chunks.next().await {
            let message = message?;
            if namespace_name.is_none() {
                namespace_name = Some(namespace(message.namespace)?);
            }
            received += message.chunk.len() as u64;
            if received > MAX_IMPORT_BYTES {
                return Err(Status::invalid_argument(format!(
                    "the archive is larger than {} GiB",
                    MAX_IMPORT_BYTES >> 30
                )));
            }
            archive
                .write_all(&message.chunk)
                .map_err(|e| Status::internal(format!("storing the upload: {e}")))?;
        }
        let namespace =
            namespace_name.ok_or_else(|| Status::invalid_argument("the upload was empty"))?;
        if received == 0 {
            return Err(Status::invalid_argument("the upload was empty"));
        }
        let images = containerd
            .import(&namespace, archive.path())
            .await
            .map_err(containerd_status)?;
        Ok(Response::new(ImageImportResponse {
            messages: vec![ImageImportResult {
                metadata: self.metadata().await,
                images,
            }],
        }))
    }

    pub(super) async fn remove_image(
        &self,
        request: Request<ImageRemoveRequest>,
    ) -> Result<Response<ImageRemoveResponse>, Status> {
        let ImageRemoveRequest { namespace, name } = request.into_inner();
        let namespace = self::namespace(namespace)?;
        if name.is_empty() {
            return Err(Status::invalid_argument("name the image to remove"));
        }
        self.containerd()?
            .remove_image(&namespace, &name)
            .await
            .map_err(containerd_status)?;
        Ok(Response::new(ImageRemoveResponse {
            messages: vec![ImageRemoveResult {
                metadata: self.metadata().await,
            }],
        }))
    }
}
