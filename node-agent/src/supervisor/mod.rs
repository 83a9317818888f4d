//! The service supervisor: runs the services of the machine config as real processes.
//!
//! [`Supervisor::reconcile`] brings the running set to the configured set (start new
//! services, stop removed ones, restart changed ones, leave the rest alone). Each service
//! has one runner task that owns its process; the API only posts requests to it (start,
//! stop, restart) and reads the status it publishes.
//!
//! # State machine of a service
//!
//! ```text
//!              start / restart / reconcile
//!   Stopped ──────────────────────────────► Waiting ──(dependencies ready)──► Starting
//!      ▲                                       ▲                                 │ spawned
//!      │                                       │ delay over                      ▼
//!      │                                    Backoff ◄──── exited, restart ──── Running
//!      │                                                                      │  │
//!      └── exited ── Stopping ◄── stop: SIGTERM to the group, SIGKILL after ──┘  │
//!                                 stop_timeout                                   │
//!                   Finished (exit 0) / Failed ◄──────── exited, no restart ─────┘
//! ```
//!
//! A spawn failure counts as a failed exit. `stop` works from every state and leads to
//! Stopped; `restart` stops the process if there is one and starts again; `start` on a
//! Finished, Failed or Backoff service starts it at once.
//!
//! * **Waiting**: a service starts only when each of its `depends_on` is Running and, if
//!   that dependency has a health check, Healthy; the message names what is missing.
//! * **Restart policy**: `always`, `on-failure` (non-zero exit, signal, spawn failure),
//!   `never`. Restarts wait an exponential backoff: initial, doubled each time, capped at
//!   the maximum, and back to the initial delay once a process ran for 10 x the initial
//!   delay (or after any explicit request). `restarts` counts these automatic restarts.
//! * **Stopped stays stopped**: a stopped service is never restarted automatically; a
//!   Finished or Failed one waits for `start`/`restart` as well.
//! * **Health**: Unknown until the first check of the current process, then Healthy or
//!   Unhealthy with the reason; reset to Unknown when the process ends.
//! * **A service is its process group**: each process leads a new group; stopping signals
//!   the whole group, and when the main process exits whatever is left of its group is
//!   killed, so a restart never runs next to leftovers of the previous run. With a cgroup
//!   root configured, each service also gets `<root>/<name>`, joined right after spawn.
//!
//! # The reaper invariant
//!
//! There is ONE reaper for the whole agent ([`start_reaper`]): a thread that, on
//! SIGCHLD, collects every exited child with `waitid(P_ALL, ...)`, delivers the status
//! of processes started with [`spawn_process`] to their [`ExitWaiter`], and simply reaps
//! anything else. Together with [`become_subreaper`] (or running as PID 1) this means
//! orphaned grandchildren of services are collected too: no zombies, ever.
//!
//! The price: **nothing else in the agent may wait for a child**. No `tokio::process`,
//! no `std::process::Child::wait`/`output`/`status`: the reaper would steal their exit
//! statuses (and std panics when it cannot collect a child whose `exec` failed). Every
//! child process of the agent must be started with [`spawn_process`] and awaited through
//! its [`ExitWaiter`].
//!
//! # Logs
//!
//! Each service's stdout and stderr lines go, undecorated, to `<log_dir>/<name>.log` and
//! to a broadcast channel for followers ([`Supervisor::follow`]). The file is rotated to
//! `<name>.log.1`, `.2`, ... before it would exceed the size limit, keeping
//! `log_files_kept` old files, so a service uses at most
//! `log_max_bytes * (log_files_kept + 1)` bytes of disk, plus at most one line (a single
//! line longer than the limit; lines are cut at 16 KiB).

mod cgroup;
mod error;
mod health;
mod logs;
mod order;
mod process;
mod procfs;
mod reaper;
mod service;
mod status;
#[cfg(test)]
mod tests;
mod workload;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::join_all;
use machine_config::ServiceSpec;
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};

pub(crate) use cgroup::usage as cgroup_usage;
pub use error::{Error, Result};
pub use reaper::{ExitStatus, ExitWaiter, Spawned, become_subreaper, spawn_process, start_reaper};
pub use status::{Health, ProcessStats, ServiceState, ServiceStatus};

use logs::LogSink;
use service::{Request, ServiceEntry};

/// How the supervisor runs services: where logs go, how big they may grow, restart
/// backoff, cgroups, the container runtime. Build it with [`SupervisorOptions::new`]
/// and adjust fields.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// Directory of the service logs (`<log_dir>/<name>.log`); created when needed.
    pub log_dir: PathBuf,
    /// Size at which a service's log file is rotated, in bytes (default 1 MiB).
    pub log_max_bytes: u64,
    /// Rotated log files kept per service (default 2).
    pub log_files_kept: usize,
    /// First restart delay (default 500 ms).
    pub backoff_initial: Duration,
    /// Longest restart delay (default 30 s).
    pub backoff_max: Duration,
    /// A cgroup v2 directory under which each service gets `<root>/<name>`; `None` runs
    /// services without cgroups (process platform on a cgroup v1 host, tests).
    pub cgroup_root: Option<PathBuf>,
    /// Where services without a `workingDir` get their own `<state_dir>/<name>` directory
    /// as working directory; `None` leaves them in the agent's working directory.
    pub state_dir: Option<PathBuf>,
    /// The containerd that runs services with an image; `None` refuses them.
    pub containerd: Option<crate::containerd::Containerd>,
}

impl SupervisorOptions {
    /// The defaults, with logs in `log_dir`.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        SupervisorOptions {
            log_dir: log_dir.into(),
            log_max_bytes: 1024 * 1024,
            log_files_kept: 2,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            cgroup_root: None,
            state_dir: None,
            containerd: None,
        }
    }
}

/// The service supervisor: a cheaply cloneable handle shared by the boot sequence, the
/// config controller and the API server.
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

/// State shared by the handle and the runner tasks.
struct Shared {
    options: SupervisorOptions,
    registry: Mutex<Registry>,
    /// Bumped whenever any service status changes; dependents and waiters watch it.
    changed: watch::Sender<()>,
    /// Serialises `reconcile` and `stop_all`.
    reconciling: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Registry {
    /// Service names in config order.
    order: Vec<String>,
    services: HashMap<String, Arc<ServiceEntry>>,
}

impl Registry {
    fn in_order(&self) -> impl Iterator<Item = &Arc<ServiceEntry>> {
        self.order.iter().filter_map(|name| self.services.get(name))
    }
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("options", &self.shared.options)
            .field("services", &lock(&self.shared.registry).order)
            .finish()
    }
}

impl Supervisor {
    /// A supervisor with no services yet. Services run on the tokio runtime of the
    /// first `reconcile` call; the process-wide reaper starts with the first spawn.
    pub fn new(options: SupervisorOptions) -> Self {
        Supervisor {
            shared: Arc::new(Shared {
                options,
                registry: Mutex::new(Registry::default()),
                changed: watch::channel(()).0,
                reconciling: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Brings the running set to `services`: starts new services, stops removed ones
    /// (dependents first), restarts changed ones, leaves unchanged ones alone. Returns
    /// once removed and changed services are stopped; new ones start in the background
    /// as their dependencies become ready. Duplicate names after the first are ignored.
    pub async fn reconcile(&self, services: &[ServiceSpec]) {
        let _one_at_a_time = self.shared.reconciling.lock().await;
        let mut desired: Vec<&ServiceSpec> = Vec::new();
        for spec in services {
            if desired.iter().any(|d| d.name == spec.name) {
                warn!(service = %spec.name, "duplicate service name; ignoring the later one");
            } else {
                desired.push(spec);
            }
        }
        let outgoing: Vec<Arc<ServiceEntry>> = lock(&self.shared.registry)
            .in_order()
            .filter(|entry| !desired.iter().any(|spec| **spec == entry.spec))
            .cloned()
            .collect();
        self.shared.stop_in_reverse_order(&outgoing).await;

        let (mut started, mut removed) = (0, Vec::new());
        {
            let mut registry = lock(&self.shared.registry);
            let mut services = HashMap::new();
            for spec in &desired {
                let entry = match registry.services.remove(&spec.name) {
                    Some(old) if old.spec == **spec => old,
                    old => {
                        started += 1;
                        let log = match old {
                            Some(old) => {
                                old.abort();
                                Arc::clone(&old.log)
                            }
                            None => Arc::new(self.shared.new_log(&spec.name)),
                        };
                        ServiceEntry::spawn(&self.shared, (*spec).clone(), log)
                    }
                };
                services.insert(spec.name.clone(), entry);
            }
            removed.extend(registry.services.drain().map(|(_, entry)| entry));
            registry.order = desired.iter().map(|spec| spec.name.clone()).collect();
            registry.services = services;
        }
        for entry in &removed {
            entry.abort();
            if let Some(dir) = entry.status().cgroup
                && let Err(e) = cgroup::remove(&dir)
            {
                debug!(cgroup = %dir.display(), error = %e, "cannot remove the cgroup of a removed service");
            }
        }
        // Dependents of removed services now wait for an unknown service: tell them.
        self.shared.changed.send_replace(());
        info!(
            services = desired.len(),
            started,
            removed = removed.len(),
            "services reconciled"
        );
    }

    /// The containerd that runs this supervisor's container services, if the node has one.
    pub fn containerd(&self) -> Option<&crate::containerd::Containerd> {
        self.shared.options.containerd.as_ref()
    }

    /// Whether service `name` runs as a container.
    pub fn is_container(&self, name: &str) -> bool {
        self.shared
            .entry(name)
            .is_ok_and(|entry| entry.spec.image.is_some())
    }

    /// Asks service `name` to run (after its dependencies); no effect if it runs.
    /// Returns at once: watch [`Supervisor::status`] for progress.
    pub async fn start(&self, name: &str) -> Result<()> {
        self.shared.entry(name)?.request(Request::Run);
        Ok(())
    }

    /// Stops service `name` (SIGTERM, then SIGKILL after its stop timeout) and keeps it
    /// stopped until started again. Returns once its process is gone.
    pub async fn stop(&self, name: &str) -> Result<()> {
        let entry = self.shared.entry(name)?;
        self.shared.stop_entry(&entry).await;
        Ok(())
    }

    /// Stops the process of service `name` (if any) and starts it again. Returns once
    /// the old process is gone; the new one starts as its dependencies allow.
    pub async fn restart(&self, name: &str) -> Result<()> {
        let entry = self.shared.entry(name)?;
        let epoch = entry.request(Request::Restart);
        self.shared.wait_acked(&entry, epoch).await;
        Ok(())
    }

    /// Stops every service, dependents before their dependencies (independent services
    /// in parallel); used at shutdown and reboot. They stay stopped.
    pub async fn stop_all(&self) {
        let _one_at_a_time = self.shared.reconciling.lock().await;
        let entries: Vec<Arc<ServiceEntry>> =
            lock(&self.shared.registry).in_order().cloned().collect();
        self.shared.stop_in_reverse_order(&entries).await;
        info!(services = entries.len(), "all services stopped");
    }

    /// The status of every service, in config order.
    pub fn list(&self) -> Vec<ServiceStatus> {
        lock(&self.shared.registry)
            .in_order()
            .map(|entry| entry.status())
            .collect()
    }

    /// The status of service `name`.
    pub fn status(&self, name: &str) -> Result<ServiceStatus> {
        Ok(self.shared.entry(name)?.status())
    }

    /// The current log file of service `name` (rotated ones have `.1`, `.2`, ... appended).
    pub fn log_path(&self, name: &str) -> Result<PathBuf> {
        Ok(self.shared.entry(name)?.log.path())
    }

    /// The last `lines` lines of service `name`'s log, across rotated files, oldest first.
    pub async fn tail(&self, name: &str, lines: usize) -> Result<Vec<u8>> {
        self.read_log(name, move |log| log.tail(lines)).await
    }

    /// The last `lines` lines of service `name`'s log (as [`Supervisor::tail`]) and a
    /// live feed of every line it prints after them, with nothing lost or repeated in
    /// between (a lagging receiver gets `RecvError::Lagged` and continues with newer
    /// lines).
    pub async fn follow(
        &self,
        name: &str,
        lines: usize,
    ) -> Result<(Vec<u8>, broadcast::Receiver<String>)> {
        self.read_log(name, move |log| log.tail_and_follow(lines))
            .await
    }

    /// Runs `read` on service `name`'s log on a blocking thread (it reads files).
    async fn read_log<T: Send + 'static>(
        &self,
        name: &str,
        read: impl FnOnce(&LogSink) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let log = Arc::clone(&self.shared.entry(name)?.log);
        let what = format!("reading {}", log.path().display());
        tokio::task::spawn_blocking(move || read(&log))
            .await
            .map_err(io::Error::other)
            .and_then(|read| read)
            .map_err(|e| Error::io(name, what, e))
    }

    /// CPU time and memory of service `name`: from its cgroup when it has one (a
    /// container always has), else summed over its main process, descendants and
    /// process group from `/proc`.
    pub fn stats(&self, name: &str) -> Result<ProcessStats> {
        let entry = self.shared.entry(name)?;
        let status = entry.status();
        if entry.spec.image.is_some() {
            let pid = status
                .pid
                .ok_or_else(|| Error::NotRunning(name.to_owned()))?;
            return crate::containerd::stats::usage(pid)
                .map_err(|e| Error::io(name, "reading the container's cgroup", e));
        }
        if let Some(dir) = &status.cgroup {
            match cgroup::usage(dir) {
                Ok(stats) => return Ok(stats),
                Err(e) => {
                    debug!(service = name, error = %e, "cgroup stats unavailable; using /proc");
                }
            }
        }
        let pid = status
            .pid
            .ok_or_else(|| Error::NotRunning(name.to_owned()))?;
        procfs::usage(pid).map_err(|e| Error::io(name, "reading /proc", e))
    }
}

impl Shared {
    fn entry(&self, name: &str) -> Result<Arc<ServiceEntry>> {
        lock(&self.registry)
            .services
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownService(name.to_owned()))
    }

    fn new_log(&self, name: &str) -> LogSink {
        LogSink::new(
            &self.options.log_dir,
            name,
            self.options.log_max_bytes,
            self.options.log_files_kept,
        )
    }

    /// What `spec` still waits for, e.g. `"db" (stopped)`; empty when it may start.
    fn unmet_dependencies(&self, spec: &ServiceSpec) -> Vec<String> {
        let registry = lock(&self.registry);
        spec.depends_on
            .iter()
            .filter_map(|dep| {
                let Some(entry) = registry.services.get(dep) else {
                    return Some(format!("{dep:?} (unknown service)"));
                };
                let status = entry.status();
                if status.state != ServiceState::Running {
                    Some(format!("{dep:?} ({})", status.state))
                } else if entry.spec.health_check.is_some() && status.health != Health::Healthy {
                    Some(format!("{dep:?} (not healthy)"))
                } else {
                    None
                }
            })
            .collect()
    }

    async fn stop_entry(&self, entry: &ServiceEntry) {
        let epoch = entry.request(Request::Stop);
        self.wait_acked(entry, epoch).await;
    }

    /// Waits until the runner of `entry` has handled request `epoch`.
    async fn wait_acked(&self, entry: &ServiceEntry, epoch: u64) {
        loop {
            let mut changes = self.changed.subscribe();
            if entry.acked(epoch) {
                return;
            }
            // `self` owns the sender, so the channel cannot close while we wait.
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stops `entries`, each only after those of them that depend on it.
    async fn stop_in_reverse_order(&self, entries: &[Arc<ServiceEntry>]) {
        let specs: Vec<&ServiceSpec> = entries.iter().map(|entry| &entry.spec).collect();
        for level in order::levels(&specs).iter().rev() {
            join_all(level.iter().map(|&i| self.stop_entry(&entries[i]))).await;
        }
    }
}

/// Locks a std mutex, ignoring poisoning: every critical section of the supervisor
/// leaves its data consistent, so a panic elsewhere does not make the data unusable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
