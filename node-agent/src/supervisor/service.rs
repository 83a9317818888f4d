//! One service: its registry entry and the task that drives its state machine.
//!
//! API calls never touch the process; they post a [`Request`] (with a new epoch) on the
//! entry's watch channel and, for stop and restart, wait until the runner task
//! acknowledges that epoch. The runner owns the process and is the only writer of its
//! state (the health monitor only writes the health of the process it was started for).

use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use machine_config::{HumanDuration, RestartPolicy, ServiceSpec};
use nix::sys::signal::Signal;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{info, warn};

use super::logs::LogSink;
use super::reaper::ExitStatus;
use super::status::{Health, ServiceState, ServiceStatus};
use super::workload::{self, Launched, Workload};
use super::{Shared, cgroup, health, lock};

/// A process that ran at least this many times the initial backoff is considered to have
/// started fine: its next restart waits only the initial backoff again.
const BACKOFF_RESET_FACTOR: u32 = 10;

/// What the API wants a service to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Request {
    /// Be running (no effect on a running process).
    Run,
    /// Be stopped, and stay so.
    Stop,
    /// Stop the current process if any, then run again.
    Restart,
}

#[derive(Debug, Clone, Copy)]
struct Target {
    request: Request,
    /// Incremented by every request, so that each one is seen and can be acknowledged.
    epoch: u64,
}

/// A service in the registry: its spec, its log, its status, and its runner task.
#[derive(Debug)]
pub(super) struct ServiceEntry {
    /// The spec this entry runs; a changed spec gets a new entry.
    pub(super) spec: ServiceSpec,
    /// The service's log, carried over to the new entry when the spec changes.
    pub(super) log: Arc<LogSink>,
    record: Mutex<Record>,
    target: watch::Sender<Target>,
    /// Supervisor-wide "some status changed" signal, bumped on every status change.
    changes: watch::Sender<()>,
    runner: Mutex<Option<AbortHandle>>,
}

#[derive(Debug)]
struct Record {
    status: ServiceStatus,
    /// The newest request epoch the runner has taken into account.
    acked: u64,
}

impl ServiceEntry {
    /// Creates the entry of `spec` (wanted running) and spawns its runner task.
    pub(super) fn spawn(shared: &Arc<Shared>, spec: ServiceSpec, log: Arc<LogSink>) -> Arc<Self> {
        let entry = Arc::new(ServiceEntry {
            record: Mutex::new(Record {
                status: ServiceStatus::new(&spec.name),
                acked: 0,
            }),
            spec,
            log,
            target: watch::channel(Target {
                request: Request::Run,
                epoch: 1,
            })
            .0,
            changes: shared.changed.clone(),
            runner: Mutex::new(None),
        });
        let runner = Runner {
            shared: Arc::clone(shared),
            entry: Arc::clone(&entry),
            target: entry.target.subscribe(),
            backoff: Backoff::new(shared.options.backoff_initial, shared.options.backoff_max),
            epoch: 0,
        };
        let task = tokio::spawn(runner.run());
        *lock(&entry.runner) = Some(task.abort_handle());
        entry
    }

    /// A snapshot of the status.
    pub(super) fn status(&self) -> ServiceStatus {
        lock(&self.record).status.clone()
    }

    /// Posts a request; returns its epoch, to wait for with [`Self::acked`].
    pub(super) fn request(&self, request: Request) -> u64 {
        let mut epoch = 0;
        self.target.send_modify(|target| {
            target.epoch += 1;
            target.request = request;
            epoch = target.epoch;
        });
        epoch
    }

    /// Whether the runner has handled the request of `epoch` (or a newer one): for a
    /// stop, the process is gone; for a restart, the old process is gone.
    pub(super) fn acked(&self, epoch: u64) -> bool {
        lock(&self.record).acked >= epoch
    }

    /// Changes the status; announces it supervisor-wide only if something changed.
    pub(super) fn update(&self, change: impl FnOnce(&mut ServiceStatus)) {
        let changed = {
            let mut record = lock(&self.record);
            let before = record.status.clone();
            change(&mut record.status);
            record.status != before
        };
        if changed {
            self.changes.send_replace(());
        }
    }

    /// Ends the runner task (after a stop, when the entry leaves the registry).
    pub(super) fn abort(&self) {
        if let Some(runner) = lock(&self.runner).take() {
            runner.abort();
        }
    }

    fn ack(&self, epoch: u64) {
        {
            let mut record = lock(&self.record);
            record.acked = record.acked.max(epoch);
        }
        self.changes.send_replace(());
    }
}

/// Waits for the next value of a watch channel whose sender the caller keeps alive.
async fn next<T>(rx: &mut watch::Receiver<T>) {
    if rx.changed().await.is_err() {
        // Only possible if the sender were dropped, which its owners never allow while a
        // receiver waits; waiting forever is the answer that cannot busy-loop.
        std::future::pending::<()>().await;
    }
}

/// How one run of the process ended.
enum Ended {
    /// It exited by itself.
    Exited {
        status: ExitStatus,
        ran_for: Duration,
    },
    /// It could not be spawned.
    SpawnFailed(String),
    /// A stop or restart request ended it.
    Interrupted,
}

/// The task that drives one service. See the state machine in the module doc.
struct Runner {
    shared: Arc<Shared>,
    entry: Arc<ServiceEntry>,
    target: watch::Receiver<Target>,
    backoff: Backoff,
    /// The epoch of the request being carried out.
    epoch: u64,
}

impl Runner {
    async fn run(mut self) {
        let _guard = RunnerGuard(Arc::clone(&self.entry));
        loop {
            let target = *self.target.borrow_and_update();
            if target.epoch != self.epoch {
                // An explicit request starts afresh.
                self.epoch = target.epoch;
                self.backoff.reset();
            }
            if target.request == Request::Stop {
                self.entry.update(|status| {
                    status.state = ServiceState::Stopped;
                    status.message.clear();
                });
                self.entry.ack(target.epoch);
                next(&mut self.target).await;
                continue;
            }
            self.entry.ack(target.epoch);
            if !self.wait_for_dependencies().await {
                continue;
            }
            let (success, ran_for, why) = match self.run_once().await {
                Ended::Interrupted => continue,
                Ended::Exited { status, ran_for } => {
                    (status.success(), ran_for, status.to_string())
                }
                Ended::SpawnFailed(why) => {
                    warn!(service = %self.entry.spec.name, %why, "cannot start service");
                    (false, Duration::ZERO, why)
                }
            };
            self.after_exit(success, ran_for, why).await;
        }
    }

    /// Waits until every dependency is running (and healthy, if it has a health check).
    /// False if a request arrived meanwhile.
    async fn wait_for_dependencies(&mut self) -> bool {
        loop {
            let mut changes = self.shared.changed.subscribe();
            let unmet = self.shared.unmet_dependencies(&self.entry.spec);
            if unmet.is_empty() {
                return true;
            }
            let message = format!("waiting for {}", unmet.join(", "));
            self.entry.update(|status| {
                status.state = ServiceState::Waiting;
                status.message = message;
            });
            tokio::select! {
                () = next(&mut changes) => {}
                () = next(&mut self.target) => return false,
            }
        }
    }

    /// Launches the process or container and supervises it until it exits or a request
    /// ends it.
    async fn run_once(&mut self) -> Ended {
        let entry = Arc::clone(&self.entry);
        let spec = &entry.spec;
        entry.update(|status| {
            status.state = ServiceState::Starting;
            status.message.clear();
        });
        let cwd = match self.working_dir() {
            Ok(cwd) => cwd,
            Err(why) => return Ended::SpawnFailed(why),
        };
        let launched = if spec.image.is_some() {
            let options = &self.shared.options;
            let launch = workload::launch_container(
                options.containerd.clone(),
                spec.clone(),
                options.cgroup_root.clone(),
            );
            tokio::select! {
                launched = launch => launched,
                () = next(&mut self.target) => {
                    // The launch was cut short: whatever it created goes.
                    if let Some(containerd) = options.containerd.clone() {
                        let id = spec.name.clone();
                        tokio::spawn(async move {
                            let _ = containerd.remove_container(crate::containerd::SYSTEM_NAMESPACE, &id).await;
                        });
                    }
                    return Ended::Interrupted;
                }
            }
        } else {
            workload::launch_process(spec, cwd.as_deref(), self.create_cgroup())
        };
        let Launched {
            pid,
            cgroup,
            output,
            mut workload,
        } = match launched {
            Ok(launched) => launched,
            Err(why) => return Ended::SpawnFailed(why),
        };
        for fd in output {
            let log = Arc::clone(&entry.log);
            // Ends at end of file, i.e. when the last process holding the pipe is gone.
            tokio::spawn(async move { log.pump(fd).await });
        }
        info!(service = %spec.name, pid, "service started");
        entry.update(|status| {
            status.state = ServiceState::Running;
            status.pid = Some(pid);
            status.started_at = Some(SystemTime::now());
            status.health = Health::Unknown;
            status.message.clear();
            if cgroup.is_some() {
                status.cgroup = cgroup;
            }
        });
        let started = Instant::now();
        let monitor = spec.health_check.clone().map(|check| {
            AbortOnDrop(tokio::spawn(health::monitor(
                Arc::clone(&entry),
                check,
                cwd,
                pid,
            )))
        });
        let (status, interrupted) = loop {
            tokio::select! {
                status = workload.exited() => break (status, false),
                () = next(&mut self.target) => {
                    if self.target.borrow().request == Request::Run {
                        continue; // already running
                    }
                    break (self.terminate(&mut workload).await, true);
                }
            }
        };
        drop(monitor);
        workload.finish().await;
        info!(service = %spec.name, pid, %status, "service exited");
        entry.update(|s| {
            s.pid = None;
            s.health = Health::Unknown;
            s.last_exit = Some(status.to_string());
        });
        if interrupted {
            Ended::Interrupted
        } else {
            Ended::Exited {
                status,
                ran_for: started.elapsed(),
            }
        }
    }

    /// SIGTERM to the process group (or container), then SIGKILL after the spec's stop
    /// timeout.
    async fn terminate(&self, workload: &mut Workload) -> ExitStatus {
        self.entry.update(|status| {
            status.state = ServiceState::Stopping;
            status.message.clear();
        });
        workload.signal(Signal::SIGTERM).await;
        let timeout = self.entry.spec.stop_timeout.0;
        match tokio::time::timeout(timeout, workload.exited()).await {
            Ok(status) => status,
            Err(_) => {
                warn!(service = %self.entry.spec.name, timeout = %HumanDuration(timeout), "service ignored SIGTERM; sending SIGKILL");
                workload.signal(Signal::SIGKILL).await;
                workload.exited().await
            }
        }
    }

    /// Applies the restart policy after the process ended by itself (or failed to spawn).
    async fn after_exit(&mut self, success: bool, ran_for: Duration, why: String) {
        let restart = match self.entry.spec.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !success,
            RestartPolicy::Never => false,
        };
        if !restart {
            self.entry.update(|status| {
                status.state = if success {
                    ServiceState::Finished
                } else {
                    ServiceState::Failed
                };
                status.message = why;
            });
            // Stay put until the API asks for something.
            next(&mut self.target).await;
            return;
        }
        let delay = self.backoff.delay(ran_for);
        info!(service = %self.entry.spec.name, delay = %HumanDuration(delay), "restarting service after backoff");
        self.entry.update(|status| {
            status.state = ServiceState::Backoff;
            status.message = format!("{why}; restarting in {}", HumanDuration(delay));
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {
                self.entry.update(|status| status.restarts = status.restarts.saturating_add(1));
            }
            () = next(&mut self.target) => {}
        }
    }

    /// The spec's working directory, else `<state_dir>/<name>` (created), else none
    /// (the agent's own).
    fn working_dir(&self) -> Result<Option<PathBuf>, String> {
        let spec = &self.entry.spec;
        if let Some(dir) = &spec.working_dir {
            return Ok(Some(PathBuf::from(dir)));
        }
        let Some(state_dir) = &self.shared.options.state_dir else {
            return Ok(None);
        };
        let dir = state_dir.join(&spec.name);
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(Some(dir))
    }

    /// The service's cgroup, when the supervisor uses cgroups and it can be created.
    fn create_cgroup(&self) -> Option<PathBuf> {
        let root = self.shared.options.cgroup_root.as_ref()?;
        match cgroup::create(root, &self.entry.spec.name) {
            Ok(dir) => Some(dir),
            Err(e) => {
                warn!(service = %self.entry.spec.name, error = %e, "cannot create the service's cgroup");
                None
            }
        }
    }
}

/// Aborts a task when dropped (the health monitor of a process that ended).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs when a runner task ends (aborted, or panicked): releases anyone waiting for an
/// acknowledgement, and reports a panic in the status rather than hiding it.
struct RunnerGuard(Arc<ServiceEntry>);

impl Drop for RunnerGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.update(|status| {
                status.state = ServiceState::Failed;
                status.pid = None;
                status.message = "the supervisor task of this service panicked".into();
            });
        }
        self.0.ack(u64::MAX);
    }
}

/// Exponential restart backoff: initial, doubled after every restart, capped at max,
/// back to initial after a run of at least `BACKOFF_RESET_FACTOR` x initial.
#[derive(Debug)]
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The delay before restarting a process that ran for `ran_for`.
    fn delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.initial.saturating_mul(BACKOFF_RESET_FACTOR) {
            self.reset();
        }
        let delay = self.next.min(self.max);
        self.next = delay.saturating_mul(2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_after_a_long_run() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(700));
        let quick = ms(5);
        let delays: Vec<Duration> = (0..5).map(|_| backoff.delay(quick)).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(700), ms(700)]);
        // Ran for 10 x initial: back to the start.
        assert_eq!(backoff.delay(ms(1000)), ms(100));
        assert_eq!(backoff.delay(quick), ms(200));
        backoff.reset();
        assert_eq!(backoff.delay(quick), ms(100));
    }
}
