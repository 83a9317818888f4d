//! Where the agent runs: everything that differs between PID 1 on a machine (`metal`)
//! and a normal process on a host (`process`) sits behind [`Platform`].
//!
//! **Architecture Invariant:** the supervisor, the configuration logic and the API
//! layer never ask which platform they run on; they call this trait. A new platform
//! plugs in here without touching them.

pub mod metal;
mod process;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::time::SystemTime;

pub use process::ProcessPlatform;

/// Errors of platform steps.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The step that failed.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The platform-specific steps of the agent's life.
pub trait Platform: Send + Sync + 'static {
    /// `metal` or `process`, as reported by Version.
    fn name(&self) -> &'static str;

    /// When this boot began (process platform: when the agent was executed).
    fn boot_time(&self) -> SystemTime;

    /// Early set-up before anything else runs (PID 1: mounts, modules; everywhere:
    /// becoming the reaper of orphaned service processes).
    fn prepare(&self) -> Result<(), PlatformError>;

    /// The directory that stands for `/` when writing the config's files.
    fn root(&self) -> PathBuf;

    /// The cgroup v2 directory services are placed under, when the platform has one.
    fn cgroup_root(&self) -> Option<PathBuf>;

    /// Applies the node-level settings that are live-applicable (sysctls); returns a
    /// note for each setting this platform does not apply.
    fn apply_sysctls(&self, sysctls: &BTreeMap<String, String>) -> Vec<String>;

    /// Reboots: never returns on success. Services are already stopped.
    fn reboot(&self) -> Result<Infallible, PlatformError>;

    /// Powers off: never returns on success. Services are already stopped.
    fn shutdown(&self) -> Result<Infallible, PlatformError>;
}
