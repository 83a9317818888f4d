//! What the supervisor reports about a service: the types behind `list`, `status` and `stats`.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Where a service is in its life cycle (see the state machine in the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceState {
    /// Wanted, but a dependency is not running (or not healthy) yet; the message names it.
    Waiting,
    /// Its process is being spawned.
    Starting,
    /// Its process runs.
    Running,
    /// Its process group got SIGTERM and the supervisor waits for it to exit.
    Stopping,
    /// Stopped on request (or never started); stays so until started.
    Stopped,
    /// Exited with status 0 and its restart policy says not to restart.
    Finished,
    /// Exited unsuccessfully (or could not be spawned) and its policy says not to restart.
    Failed,
    /// Exited and waits for its backoff delay before the next restart.
    Backoff,
}

impl ServiceState {
    /// The lowercase name shown by the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Waiting => "waiting",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Finished => "finished",
            ServiceState::Failed => "failed",
            ServiceState::Backoff => "backoff",
        }
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a service's health checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Health {
    /// No check has completed for the current process (or the service has no health check).
    Unknown,
    /// The last check passed.
    Healthy,
    /// The last check failed; the text says why.
    Unhealthy(String),
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Unknown => f.write_str("unknown"),
            Health::Healthy => f.write_str("healthy"),
            Health::Unhealthy(why) => write!(f, "unhealthy: {why}"),
        }
    }
}

/// A snapshot of one service, as the status API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The service name from the config.
    pub name: String,
    /// Where the service is in its life cycle.
    pub state: ServiceState,
    /// The main process, while there is one.
    pub pid: Option<u32>,
    /// The outcome of the health checks of the current process.
    pub health: Health,
    /// How many times the supervisor restarted the service after it exited by itself
    /// (explicit `restart` requests are not counted).
    pub restarts: u32,
    /// How the last process ended, e.g. `exit status 1` or `signal 9 (SIGKILL)`.
    pub last_exit: Option<String>,
    /// When the current (or last) process was spawned.
    pub started_at: Option<SystemTime>,
    /// A human explanation of the state (what it waits for, why it failed, ...).
    pub message: String,
    /// The service's cgroup directory, when the supervisor runs with cgroups.
    pub cgroup: Option<PathBuf>,
}

impl ServiceStatus {
    /// The status of a service the supervisor has just been given.
    pub(super) fn new(name: &str) -> Self {
        ServiceStatus {
            name: name.to_owned(),
            state: ServiceState::Starting,
            pid: None,
            health: Health::Unknown,
            restarts: 0,
            last_exit: None,
            started_at: None,
            message: String::new(),
            cgroup: None,
        }
    }
}

/// Resource usage of a service, for the stats API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessStats {
    /// CPU time (user + system) consumed by the service's processes.
    pub cpu_time: Duration,
    /// Memory in use: the cgroup's `memory.current`, or the summed RSS of its processes.
    pub memory_bytes: u64,
}
