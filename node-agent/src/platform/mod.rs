//! Where the agent runs: everything that differs between PID 1 on a machine (`metal`)
//! and a normal process on a host (`process`) sits behind [`Platform`].
//!
//! **Architecture Invariant:** the supervisor, the configuration logic and the API
//! layer never ask which platform they run on; they call this trait. A new platform
//! plugs in here without touching them.

pub mod metal;
pub mod process;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::SystemTime;

use machine_config::ServiceSpec;

use crate::containerd::ContainerdPaths;
use crate::upgrade::BootSlots;

pub use metal::MetalPlatform;
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
    /// The machine cannot boot as it is (no root image, a corrupted one, a bad
    /// kernel command line); the message is what the console shows.
    #[error("{0}")]
    Boot(String),
}

/// The platform-specific steps of the agent's life.
pub trait Platform: Send + Sync + 'static {
    /// `metal` or `process`, as reported by Version.
    fn name(&self) -> &'static str;

    /// When this boot began (process platform: when the agent was executed).
    fn boot_time(&self) -> SystemTime;

    /// The id of this boot, different after every reboot.
    fn boot_id(&self) -> String;

    /// Early set-up before anything else runs (PID 1: mounts, modules; everywhere:
    /// becoming the reaper of orphaned service processes).
    fn prepare(&self) -> Result<(), PlatformError>;

    /// The directory that stands for `/` when writing the config's files.
    fn root(&self) -> PathBuf;

    /// The cgroup v2 directory services are placed under, when the platform has one.
    fn cgroup_root(&self) -> Option<PathBuf>;

    /// A configuration the platform offers for the first boot (QEMU fw_cfg on metal),
    /// used when the state directory holds none.
    fn config_source(&self) -> Option<PathBuf>;

    /// The containerd this platform runs, if any (always on metal; on a process node
    /// when asked for, from the host's packages).
    fn containerd(&self) -> Option<ContainerdPaths>;

    /// Services the platform itself runs, before the configuration's: containerd.
    fn system_services(&self) -> Vec<ServiceSpec> {
        self.containerd()
            .map(|paths| paths.service())
            .into_iter()
            .collect()
    }

    /// What in `machine` this platform cannot honour, one `field: why` line each (a
    /// file on the read-only root, a service named like a system service). A
    /// configuration with problems is refused before anything is written.
    fn check(&self, machine: &machine_config::Machine) -> Vec<String> {
        default_check(self, machine)
    }

    /// Sets the hostname and applies the network section (addresses, routes, DHCP,
    /// resolv.conf); returns a note for each setting not applied. Called at boot:
    /// network changes need a reboot.
    fn configure_network<'a>(
        &'a self,
        network: &'a machine_config::Network,
        hostname: &'a str,
    ) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + 'a>>;

    /// Applies the node-level settings that are live-applicable (sysctls); returns a
    /// note for each setting this platform does not apply.
    fn apply_sysctls(&self, sysctls: &BTreeMap<String, String>) -> Vec<String>;

    /// The node's slots and their boot entries, or why this boot has none (a direct
    /// kernel boot, no boot loader): upgrades need them.
    fn boot_slots(&self) -> Result<BootSlots, String>;

    /// EPHEMERAL: the data an upgrade drops unless asked to preserve it (containerd's
    /// images and containers, `/var`), and where bundles are stored while installed.
    fn ephemeral_dir(&self) -> PathBuf;

    /// Empties EPHEMERAL; called at the first boot of an upgrade, before any service.
    fn wipe_ephemeral(&self) -> std::io::Result<()> {
        remove_contents(&self.ephemeral_dir())
    }

    /// Reboots: never returns on success. Services are already stopped.
    fn reboot(&self) -> Result<Infallible, PlatformError>;

    /// Powers off: never returns on success. Services are already stopped.
    fn shutdown(&self) -> Result<Infallible, PlatformError>;
}

/// Removes everything inside `dir` (not `dir` itself, which may be a mount point).
pub fn remove_contents(dir: &std::path::Path) -> std::io::Result<()> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in listing {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The checks every platform makes: no service of the configuration may take the name
/// of one of the platform's own, and services with an image need containerd.
pub fn default_check(
    platform: &(impl Platform + ?Sized),
    machine: &machine_config::Machine,
) -> Vec<String> {
    let system = platform.system_services();
    let has_containerd = platform.containerd().is_some();
    let mut problems = Vec::new();
    for (i, service) in machine.services.iter().enumerate() {
        if system.iter().any(|own| own.name == service.name) {
            problems.push(format!(
                "machine.services[{i}].name: {} is a system service of the {} platform",
                service.name,
                platform.name()
            ));
        }
        if service.image.is_some() && !has_containerd {
            problems.push(format!(
                "machine.services[{i}].image: this node runs no containerd (start a process \
                 node's agent with --containerd)"
            ));
        }
    }
    problems
}
