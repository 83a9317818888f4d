//! The `process` platform: the agent as an ordinary process, for development, tests
//! and many simulated nodes on one machine.
//!
//! It runs the same code paths as `metal` except the PID-1-only steps: it mounts
//! nothing, does not touch the host's kernel parameters, and writes the config's files
//! below `<state-dir>/rootfs`. Its machine and boot loader is [`loader`]: the process
//! started as `node-agent --platform process` boots the slots of `<state-dir>/boot`
//! ([`slots`]), and a "reboot" is the agent exiting for the loader to boot again (a new
//! boot id, services started again, the configuration read back from the state
//! directory). EPHEMERAL is `<state-dir>/var`.

pub mod loader;
pub mod slots;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::SystemTime;

use super::{Platform, PlatformError};
use crate::containerd::ContainerdPaths;
use crate::upgrade::BootSlots;

/// The agent running as a normal process on a host.
#[derive(Debug)]
pub struct ProcessPlatform {
    state_dir: PathBuf,
    started: SystemTime,
    containerd: Option<ContainerdPaths>,
}

impl ProcessPlatform {
    /// A process platform keeping its state in `state_dir`; with `containerd` (the
    /// host's binary) it runs a private containerd instance under the state directory.
    pub fn new(state_dir: PathBuf, containerd: Option<PathBuf>) -> Self {
        Self {
            containerd: containerd.map(|binary| ContainerdPaths::under(&state_dir, binary)),
            state_dir,
            started: SystemTime::now(),
        }
    }
}

impl Platform for ProcessPlatform {
    fn name(&self) -> &'static str {
        "process"
    }

    fn boot_time(&self) -> SystemTime {
        self.started
    }

    fn boot_id(&self) -> String {
        // Every execution (a "reboot" re-executes) is a new boot.
        uuid::Uuid::new_v4().to_string()
    }

    fn prepare(&self) -> Result<(), PlatformError> {
        // The agent dies with its loader, as everything dies with a machine's power.
        if loader::booted_entry().is_some() {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(|e| {
                PlatformError::Io {
                    what: "tying the agent's life to its loader".into(),
                    source: e.into(),
                }
            })?;
        }
        // Orphaned grandchildren of services are re-parented to us, so the reaper
        // collects them and no zombie outlives its service.
        crate::supervisor::become_subreaper().map_err(|e| PlatformError::Io {
            what: "becoming the child subreaper".into(),
            source: e.into(),
        })
    }

    fn root(&self) -> PathBuf {
        self.state_dir.join("rootfs")
    }

    fn cgroup_root(&self) -> Option<PathBuf> {
        None
    }

    fn config_source(&self) -> Option<PathBuf> {
        None
    }

    fn containerd(&self) -> Option<ContainerdPaths> {
        self.containerd.clone()
    }

    fn configure_network<'a>(
        &'a self,
        network: &'a machine_config::Network,
        _hostname: &'a str,
    ) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + 'a>> {
        // The host's network and hostname are not the node's.
        let notes = if network.is_empty() {
            Vec::new()
        } else {
            vec!["the network section is not applied on the process platform".to_owned()]
        };
        Box::pin(std::future::ready(notes))
    }

    fn apply_sysctls(&self, sysctls: &BTreeMap<String, String>) -> Vec<String> {
        // The host's kernel is not ours to change.
        match sysctls.len() {
            0 => Vec::new(),
            n => vec![format!(
                "{n} sysctls are not applied on the process platform (the host's kernel is not the node's)"
            )],
        }
    }

    fn boot_slots(&self) -> Result<BootSlots, String> {
        let entry = loader::booted_entry().ok_or_else(|| {
            format!(
                "this agent was not started by its loader ({} is not set)",
                loader::BOOT_ENTRY_ENV
            )
        })?;
        Ok(BootSlots::new(
            slots::boot_dir(&self.state_dir),
            entry.slot,
            Box::new(slots::AgentSlotWriter),
        ))
    }

    fn ephemeral_dir(&self) -> PathBuf {
        self.state_dir.join("var")
    }

    fn wipe_ephemeral(&self) -> std::io::Result<()> {
        super::remove_contents(&self.ephemeral_dir())?;
        // The private containerd keeps its images beside, not below, `var`.
        match &self.containerd {
            Some(paths) => super::remove_contents(&paths.root),
            None => Ok(()),
        }
    }

    fn reboot(&self) -> Result<Infallible, PlatformError> {
        tracing::info!("rebooting: the loader boots again");
        std::process::exit(loader::REBOOT_EXIT_CODE)
    }

    fn shutdown(&self) -> Result<Infallible, PlatformError> {
        tracing::info!("shutting down");
        std::process::exit(0)
    }
}
