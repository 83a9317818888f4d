//! What one run of a service is: a process spawned through the reaper, or a container
//! task in containerd. The runner drives both alike: launch, wait for the exit, signal,
//! finish.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use machine_config::ServiceSpec;
use nix::sys::signal::Signal;

use super::process::{self, ProcessGroup};
use super::reaper::{self, ExitStatus, ExitWaiter};
use crate::containerd::Containerd;
use crate::containerd::task::ServiceContainer;

/// Where cgroup v2 is mounted; container cgroup paths are relative to it.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// A launched run: its main pid, cgroup, output and the handle to drive it.
pub(super) struct Launched {
    /// The main process (for a container, its init process on the host).
    pub(super) pid: u32,
    /// The cgroup it runs in, when the supervisor placed it in one.
    pub(super) cgroup: Option<PathBuf>,
    /// Read ends of its stdout and stderr.
    pub(super) output: Vec<OwnedFd>,
    /// How to wait for it and stop it.
    pub(super) workload: Workload,
}

/// The thing that runs.
pub(super) enum Workload {
    /// A process group led by the service's process.
    Process {
        group: ProcessGroup,
        exit: ExitWaiter,
    },
    /// A containerd task; a task of its own waits for its exit.
    Container {
        container: ServiceContainer,
        exit: tokio::task::JoinHandle<ExitStatus>,
    },
}

impl Workload {
    /// Resolves when the main process has exited; may be polled again after a cancelled
    /// poll (the runner selects on it).
    pub(super) async fn exited(&mut self) -> ExitStatus {
        match self {
            Workload::Process { exit, .. } => exit.await,
            Workload::Container { exit, .. } => exit.await.unwrap_or(ExitStatus::Unknown),
        }
    }

    /// Signals every process of the run.
    pub(super) async fn signal(&self, signal: Signal) {
        match self {
            Workload::Process { group, .. } => group.signal(signal),
            Workload::Container { container, .. } => container.signal(signal).await,
        }
    }

    /// Cleans up after the main process exited: kills what is left of the process
    /// group, or removes the container's task, container and snapshot.
    pub(super) async fn finish(self) {
        match self {
            Workload::Process { group, .. } => group.finish(),
            Workload::Container { container, exit } => {
                exit.abort();
                container.remove().await;
            }
        }
    }
}

/// Spawns the process of `spec` (its command) with piped output, in `cgroup` if given.
pub(super) fn launch_process(
    spec: &ServiceSpec,
    cwd: Option<&Path>,
    cgroup: Option<PathBuf>,
) -> Result<Launched, String> {
    let mut cmd = process::command(spec, &spec.command, cwd)?;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let spawned = reaper::spawn_process(&mut cmd)
        // `command` accepted the argv, so it has a first element.
        .map_err(|e| format!("spawning {:?}: {e}", spec.command[0]))?;
    let pid = spawned.pid;
    let group = ProcessGroup::new(pid);
    let cgroup = cgroup.and_then(|dir| match super::cgroup::attach(&dir, pid) {
        Ok(()) => Some(dir),
        Err(e) => {
            tracing::warn!(service = %spec.name, cgroup = %dir.display(), error = %e, "cannot move service into its cgroup");
            None
        }
    });
    let output = [
        spawned.stdout.map(OwnedFd::from),
        spawned.stderr.map(OwnedFd::from),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(Launched {
        pid,
        cgroup,
        output,
        workload: Workload::Process {
            group,
            exit: spawned.exit,
        },
    })
}

/// Starts `spec` (which has an image) as a container, under `cgroup_root` if given.
pub(super) async fn launch_container(
    containerd: Option<Containerd>,
    spec: ServiceSpec,
    cgroup_root: Option<PathBuf>,
) -> Result<Launched, String> {
    let containerd = containerd.ok_or_else(|| {
        "this node runs no containerd, so it cannot run an image (a process node needs \
         node-agent --containerd)"
            .to_owned()
    })?;
    let cgroup = cgroup_root.map(|root| root.join(&spec.name));
    let cgroups_path = cgroup.as_deref().and_then(cgroups_path);
    let (container, output) = containerd
        .start_service(&spec, cgroups_path.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let waiter = container.clone();
    Ok(Launched {
        pid: container.pid,
        cgroup: cgroups_path.and(cgroup),
        output: output.into(),
        workload: Workload::Container {
            container,
            exit: tokio::spawn(async move { waiter.wait().await }),
        },
    })
}

/// The OCI `cgroupsPath` of cgroup directory `dir` (relative to the cgroup v2 mount).
fn cgroups_path(dir: &Path) -> Option<String> {
    let relative = dir.strip_prefix(CGROUP_MOUNT).ok()?;
    Some(format!("/{}", relative.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_are_relative_to_the_mount() {
        assert_eq!(
            cgroups_path(Path::new("/sys/fs/cgroup/system/web")).as_deref(),
            Some("/system/web")
        );
        assert_eq!(cgroups_path(Path::new("/tmp/cgroups/web")), None);
    }
}
