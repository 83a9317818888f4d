//! Containers and their tasks: one run of a container service, the listing of a
//! namespace, and restarting a container someone else created (`k8s.io`).
//!
//! A container service run is: container record + snapshot + task, made fresh each
//! time (leftovers of a previous run, e.g. after the agent crashed, are removed first)
//! and removed when the run ends. Its stdout and stderr reach the agent through FIFOs
//! the agent creates and reads; the agent holds a write end until the task has
//! started, so the reader never sees end-of-file before the shim has opened them.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::snapshots::{
    MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetRequest, KillRequest, ListContainersRequest, ListNamespacesRequest,
    ListTasksRequest, StartRequest, WaitRequest,
};
use containerd_client::types::v1::Status;
use machine_config::ServiceSpec;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use tracing::debug;

use super::images::ResolvedImage;
use super::spec::{SPEC_TYPE_URL, runtime_spec};
use super::{Containerd, ContainerdError, RUNTIME, Result, SNAPSHOTTER, SYSTEM_NAMESPACE, request};
use crate::supervisor::ExitStatus;

/// The label that marks a container as the agent's, with the service name.
const SERVICE_LABEL: &str = "node-os.service";

/// A container as `ps` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Its namespace.
    pub namespace: String,
    /// Its id.
    pub id: String,
    /// The image it was created from.
    pub image: String,
    /// The pid of its task's main process, when it has a running task.
    pub pid: Option<u32>,
    /// `running`, `stopped`, `created`, `paused`, or `no task`.
    pub status: String,
}

/// The running task of a container service.
#[derive(Debug, Clone)]
pub struct ServiceContainer {
    containerd: Containerd,
    id: String,
    /// The host pid of the container's main process.
    pub pid: u32,
    fifos: [PathBuf; 2],
}

impl Containerd {
    /// Starts service `service` (which has an image) as container `service.name` in
    /// `system`; returns it and the read ends of its stdout and stderr.
    pub async fn start_service(
        &self,
        service: &ServiceSpec,
        cgroups_path: Option<&str>,
    ) -> Result<(ServiceContainer, [OwnedFd; 2])> {
        let name = service.image.as_deref().unwrap_or_default();
        let image = self.resolve_for_service(name).await?;
        let spec = runtime_spec(service, &image, cgroups_path)
            .map_err(|e| ContainerdError::Invalid(e.to_string()))?;
        let id = service.name.as_str();
        self.remove_container(SYSTEM_NAMESPACE, id).await?;
        let container = Container {
            id: id.to_owned(),
            labels: HashMap::from([(SERVICE_LABEL.to_owned(), id.to_owned())]),
            image: image.name.clone(),
            runtime: Some(Runtime {
                name: RUNTIME.into(),
                options: Some(prost_types::Any {
                    type_url: RuncOptions::TYPE_URL.into(),
                    value: prost::Message::encode_to_vec(&RuncOptions {
                        root: self.paths().runc_root().display().to_string(),
                    }),
                }),
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.into(),
                value: spec.to_string().into_bytes(),
            }),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: id.to_owned(),
            ..Default::default()
        };
        self.containers()
            .await?
            .create(request(
                SYSTEM_NAMESPACE,
                None,
                CreateContainerRequest {
                    container: Some(container),
                },
            ))
            .await
            .map_err(|s| ContainerdError::rpc(format!("creating container {id}"), s))?;
        let started = self.start_task(id, &image).await;
        if started.is_err() {
            let _ = self.remove_container(SYSTEM_NAMESPACE, id).await;
        }
        started
    }

    /// The image of a service, importing the node's shipped archives when it is missing.
    async fn resolve_for_service(&self, name: &str) -> Result<ResolvedImage> {
        match self.resolve(SYSTEM_NAMESPACE, name).await {
            Err(ContainerdError::NotFound(_)) => {
                self.import_shipped().await?;
                self.resolve(SYSTEM_NAMESPACE, name)
                    .await
                    .map_err(|e| match e {
                        ContainerdError::NotFound(_) => ContainerdError::NotFound(format!(
                            "image {name} is not on this node (namespace {SYSTEM_NAMESPACE}): \
                         ship it in the node image or import it with `osctl image import`"
                        )),
                        other => other,
                    })
            }
            other => other,
        }
    }

    /// Prepares the snapshot, the FIFOs and the task of container `id`, and starts it.
    async fn start_task(
        &self,
        id: &str,
        image: &ResolvedImage,
    ) -> Result<(ServiceContainer, [OwnedFd; 2])> {
        let mounts = self
            .snapshots()
            .await?
            .prepare(request(
                SYSTEM_NAMESPACE,
                None,
                PrepareSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: id.to_owned(),
                    parent: image.top_chain_id.clone(),
                    labels: HashMap::new(),
                },
            ))
            .await
            .map_err(|s| ContainerdError::rpc(format!("preparing the root of {id}"), s))?
            .into_inner()
            .mounts;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let fifos = ["stdout", "stderr"].map(|stream| {
            self.paths()
                .fifo_dir
                .join(format!("{id}-{}.{stream}", &run[..8]))
        });
        let mut ends = Vec::new();
        for fifo in &fifos {
            ends.push(open_fifo(fifo)?);
        }
        let container = ServiceContainer {
            containerd: self.clone(),
            id: id.to_owned(),
            pid: 0,
            fifos: fifos.clone(),
        };
        let pid = self
            .create_and_start_task(
                SYSTEM_NAMESPACE,
                CreateTaskRequest {
                    container_id: id.to_owned(),
                    rootfs: mounts,
                    stdout: fifos[0].display().to_string(),
                    stderr: fifos[1].display().to_string(),
                    ..Default::default()
                },
            )
            .await?;
        // The shim holds the write ends now; ours go, so the readers see end-of-file
        // when the shim closes them after the process exits.
        let readers = ends
            .into_iter()
            .map(|(reader, _writer)| reader)
            .collect::<Vec<_>>();
        let readers: [OwnedFd; 2] = readers
            .try_into()
            .map_err(|_| ContainerdError::Invalid("two FIFOs expected".into()))?;
        Ok((ServiceContainer { pid, ..container }, readers))
    }

    /// Removes container `id` of `namespace` with its task and snapshot; nothing there
    /// is fine.
    pub async fn remove_container(&self, namespace: &str, id: &str) -> Result<()> {
        if self.kill(namespace, id, Signal::SIGKILL).await.is_ok() {
            let _ = self.wait(namespace, id).await;
        }
        self.delete_task(namespace, id).await?;
        ignore_missing(
            self.containers()
                .await?
                .delete(request(
                    namespace,
                    None,
                    DeleteContainerRequest { id: id.to_owned() },
                ))
                .await
                .map(|_| ()),
            format!("deleting container {id}"),
        )?;
        ignore_missing(
            self.snapshots()
                .await?
                .remove(request(
                    namespace,
                    None,
                    RemoveSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key: id.to_owned(),
                    },
                ))
                .await
                .map(|_| ()),
            format!("removing the snapshot of {id}"),
        )
    }

    /// Waits for the task of container `id` to exit.
    pub async fn wait(&self, namespace: &str, id: &str) -> Result<ExitStatus> {
        let reply = self
            .tasks()
            .await?
            .wait(request(
                namespace,
                None,
                WaitRequest {
                    container_id: id.to_owned(),
                    exec_id: String::new(),
                },
            ))
            .await
            .map_err(|s| ContainerdError::rpc(format!("waiting for {id}"), s))?;
        Ok(exit_status(reply.into_inner().exit_status))
    }

    /// Sends `signal` to every process of container `id`'s task.
    pub async fn kill(&self, namespace: &str, id: &str, signal: Signal) -> Result<()> {
        self.tasks()
            .await?
            .kill(request(
                namespace,
                None,
                KillRequest {
                    container_id: id.to_owned(),
                    exec_id: String::new(),
                    signal: signal as u32,
                    all: true,
                },
            ))
            .await
            .map(|_| ())
            .map_err(|s| ContainerdError::rpc(format!("signalling {id}"), s))
    }

    /// The containers of `namespace` with the state of their tasks.
    pub async fn list_containers(&self, namespace: &str) -> Result<Vec<ContainerInfo>> {
        let containers = self
            .containers()
            .await?
            .list(request(namespace, None, ListContainersRequest::default()))
            .await
            .map_err(|s| ContainerdError::rpc(format!("listing containers of {namespace}"), s))?
            .into_inner()
            .containers;
        let tasks = self
            .tasks()
            .await?
            .list(request(namespace, None, ListTasksRequest::default()))
            .await
            .map_err(|s| ContainerdError::rpc(format!("listing tasks of {namespace}"), s))?
            .into_inner()
            .tasks;
        let mut listed: Vec<ContainerInfo> = containers
            .into_iter()
            .map(|container| {
                // containerd 1.6 fills the task's `id` with the container id and leaves
                // `container_id` empty; later versions set `container_id`.
                let task = tasks.iter().find(|t| {
                    t.container_id == container.id
                        || (t.container_id.is_empty() && t.id == container.id)
                });
                ContainerInfo {
                    namespace: namespace.to_owned(),
                    image: container.image,
                    pid: task.map(|t| t.pid).filter(|&pid| pid != 0),
                    status: task.map_or_else(|| "no task".to_owned(), |t| status_name(t.status)),
                    id: container.id,
                }
            })
            .collect();
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(listed)
    }

    /// Restarts container `id` of `namespace` in place: kills its task and starts a new
    /// one on the same root and output paths. Returns the new pid.
    pub async fn restart_container(&self, namespace: &str, id: &str) -> Result<u32> {
        let container = self
            .containers()
            .await?
            .get(request(
                namespace,
                None,
                containerd_client::services::v1::GetContainerRequest { id: id.to_owned() },
            ))
            .await
            .map_err(|s| ContainerdError::rpc(format!("container {id} in {namespace}"), s))?
            .into_inner()
            .container
            .ok_or_else(|| ContainerdError::NotFound(format!("container {id} in {namespace}")))?;
        let old = self
            .tasks()
            .await?
            .get(request(
                namespace,
                None,
                GetRequest {
                    container_id: id.to_owned(),
                    exec_id: String::new(),
                },
            ))
            .await
            .map_err(|s| ContainerdError::rpc(format!("the task of container {id}"), s))?
            .into_inner()
            .process
            .unwrap_or_default();
        if old.status != Status::Stopped as i32 {
            self.kill(namespace, id, Signal::SIGKILL).await?;
            self.wait(namespace, id).await?;
        }
        self.delete_task(namespace, id).await?;
        let rootfs = self
            .snapshots()
            .await?
            .mounts(request(
                namespace,
                None,
                MountsRequest {
                    snapshotter: container.snapshotter.clone(),
                    key: container.snapshot_key.clone(),
                },
            ))
            .await
            .map_err(|s| ContainerdError::rpc(format!("the root of container {id}"), s))?
            .into_inner()
            .mounts;
        self.create_and_start_task(
            namespace,
            CreateTaskRequest {
                container_id: id.to_owned(),
                rootfs,
                stdin: reusable_io(old.stdin),
                stdout: reusable_io(old.stdout),
                stderr: reusable_io(old.stderr),
                terminal: old.terminal,
                ..Default::default()
            },
        )
        .await
    }

    /// Deletes the (exited) task of container `id`; no task is fine.
    async fn delete_task(&self, namespace: &str, id: &str) -> Result<()> {
        let deleted = self
            .tasks()
            .await?
            .delete(request(
                namespace,
                None,
                DeleteTaskRequest {
                    container_id: id.to_owned(),
                },
            ))
            .await;
        ignore_missing(deleted.map(|_| ()), format!("deleting the task of {id}"))
    }

    /// Creates the task `task` describes and starts it; returns its pid.
    async fn create_and_start_task(&self, namespace: &str, task: CreateTaskRequest) -> Result<u32> {
        let id = task.container_id.clone();
        let mut tasks = self.tasks().await?;
        tasks
            .create(request(namespace, None, task))
            .await
            .map_err(|s| ContainerdError::rpc(format!("creating the task of {id}"), s))?;
        let started = tasks
            .start(request(
                namespace,
                None,
                StartRequest {
                    container_id: id.clone(),
                    exec_id: String::new(),
                },
            ))
            .await
            .map_err(|s| ContainerdError::rpc(format!("starting the task of {id}"), s))?;
        Ok(started.into_inner().pid)
    }
}

impl Containerd {
    /// Ends every task outside `system` (the kubelet's containers, anything made by
    /// hand): SIGTERM, SIGKILL after `grace`, then the task is deleted, which unmounts
    /// its root. Called when the node stops, before containerd itself; the agent's own
    /// container services are stopped by the supervisor.
    pub async fn stop_other_tasks(&self, grace: std::time::Duration) -> Result<()> {
        let namespaces = NamespacesClient::new(self.channel().await?)
            .list(request("", None, ListNamespacesRequest::default()))
            .await
            .map_err(|s| ContainerdError::rpc("listing namespaces", s))?
            .into_inner()
            .namespaces;
        for namespace in namespaces.iter().map(|n| n.name.as_str()) {
            if namespace == SYSTEM_NAMESPACE {
                continue;
            }
            let running: Vec<ContainerInfo> = self
                .list_containers(namespace)
                .await?
                .into_iter()
                .filter(|c| c.status != "no task")
                .collect();
            let stops = running.iter().map(|c| async move {
                let _ = self.kill(namespace, &c.id, Signal::SIGTERM).await;
                if tokio::time::timeout(grace, self.wait(namespace, &c.id))
                    .await
                    .is_err()
                {
                    let _ = self.kill(namespace, &c.id, Signal::SIGKILL).await;
                    let _ = self.wait(namespace, &c.id).await;
                }
                self.delete_task(namespace, &c.id).await
            });
            for stopped in futures::future::join_all(stops).await {
                stopped?;
            }
            if !running.is_empty() {
                tracing::info!(namespace, containers = running.len(), "containers stopped");
            }
        }
        Ok(())
    }
}

impl ServiceContainer {
    /// Waits for the container's main process to exit.
    pub async fn wait(&self) -> ExitStatus {
        match self.containerd.wait(SYSTEM_NAMESPACE, &self.id).await {
            Ok(status) => status,
            Err(e) => {
                debug!(container = %self.id, error = %e, "waiting for the task failed");
                ExitStatus::Unknown
            }
        }
    }

    /// Signals every process of the container.
    pub async fn signal(&self, signal: Signal) {
        if let Err(e) = self
            .containerd
            .kill(SYSTEM_NAMESPACE, &self.id, signal)
            .await
        {
            debug!(container = %self.id, %signal, error = %e, "cannot signal the container");
        }
    }

    /// Removes the task, container and snapshot of this run, and its FIFOs.
    pub async fn remove(self) {
        if let Err(e) = self
            .containerd
            .remove_container(SYSTEM_NAMESPACE, &self.id)
            .await
        {
            tracing::warn!(container = %self.id, error = %e, "cannot remove the container");
        }
        for fifo in &self.fifos {
            let _ = fs::remove_file(fifo);
        }
    }
}

/// The options of the runc shim (`containerd.runc.v1.Options`) the agent sets: runc's
/// state directory. The default, `/run/containerd/runc`, is shared by every containerd
/// of a host, so two process nodes' containers of the same name would collide there.
#[derive(Clone, PartialEq, prost::Message)]
struct RuncOptions {
    /// runc's `--root`.
    #[prost(string, tag = "7")]
    root: String,
}

impl RuncOptions {
    const TYPE_URL: &str = "containerd.runc.v1.Options";
}

/// Makes FIFO `path`; returns its read end (non-blocking) and a write end.
fn open_fifo(path: &PathBuf) -> Result<(OwnedFd, File)> {
    let what = || format!("creating FIFO {}", path.display());
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600))
        .map_err(|e| ContainerdError::io(what(), e.into()))?;
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| ContainerdError::io(what(), e))?;
    let writer = OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| ContainerdError::io(what(), e))?;
    Ok((reader.into(), writer))
}

/// containerd's exit status: the shim reports death by signal N as 128 + N.
fn exit_status(status: u32) -> ExitStatus {
    match status {
        129..=159 => ExitStatus::Signaled(status as i32 - 128),
        _ => ExitStatus::Exited(i32::try_from(status).unwrap_or(i32::MAX)),
    }
}

fn status_name(status: i32) -> String {
    match Status::try_from(status).unwrap_or(Status::Unknown) {
        Status::Created => "created",
        Status::Running => "running",
        Status::Stopped => "stopped",
        Status::Paused => "paused",
        Status::Pausing => "pausing",
        Status::Unknown => "unknown",
    }
    .to_owned()
}

/// The stdio of a task, for its replacement: log URIs (`file://`, `binary://`) are
/// reused; FIFO paths are not, since their reader (the client that created the task)
/// went with the old task and the shim would wait for one forever, so the new task's
/// stream is discarded instead.
fn reusable_io(path: String) -> String {
    if path.contains("://") {
        path
    } else {
        String::new()
    }
}

/// Treats NotFound as done (removing what is already gone).
fn ignore_missing(result: Result<(), tonic::Status>, what: String) -> Result<()> {
    match result {
        Err(s) if s.code() != tonic::Code::NotFound => Err(ContainerdError::rpc(what, s)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_log_uris_are_reused_by_a_restart() {
        assert_eq!(
            reusable_io("file:///var/log/x.log".into()),
            "file:///var/log/x.log"
        );
        assert_eq!(reusable_io("/run/containerd/fifo/1/x-stdout".into()), "");
        assert_eq!(reusable_io(String::new()), "");
    }

    #[test]
    fn signals_are_decoded_from_exit_codes() {
        assert_eq!(exit_status(0), ExitStatus::Exited(0));
        assert_eq!(exit_status(3), ExitStatus::Exited(3));
        assert_eq!(exit_status(137), ExitStatus::Signaled(9));
        assert_eq!(exit_status(143), ExitStatus::Signaled(15));
    }

    #[test]
    fn fifo_readers_wait_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (reader, writer) = open_fifo(&dir.path().join("out")).unwrap();
        use std::io::{Read, Write};
        let mut writer = writer;
        writer.write_all(b"hello\n").unwrap();
        drop(writer);
        let mut text = String::new();
        File::from(reader).read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello\n");
    }
}
