//! The agent's state while it runs, and the rules for changing the configuration.
//!
//! One [`Agent`] is shared by the API handlers. Configuration changes are serialised
//! by a lock, validated before anything is written, and then applied in the mode the
//! caller asked for:
//! - `no-reboot`: written, then applied live (files, sysctls, services); refused when
//!   a changed field needs a reboot, and then nothing changes.
//! - `reboot`: written, then the node reboots.
//! - `auto`: `no-reboot` when possible, else `reboot`.
//! - `staged`: written as the staged configuration; the next boot promotes it.
//! - `try`: applied live but not written; reverted after the timeout unless a later
//!   apply (in any other mode) confirms it. A reboot during the try boots the old one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use machine_config::ConfigBundle;
use tokio::sync::{Mutex, RwLock, mpsc};
use tokio::task::JoinHandle;

use crate::config_store::{ConfigStore, StoreError};
use crate::platform::Platform;
use crate::supervisor::Supervisor;
use crate::upgrade::Upgrades;

/// A request to end this boot, sent by the API to the main loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Stop services and reboot.
    Reboot,
    /// Stop services and power off.
    Shutdown,
}

/// How a configuration is to be applied (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Live if possible, else reboot.
    Auto,
    /// Live only.
    NoReboot,
    /// Write and reboot.
    Reboot,
    /// Write for the next boot.
    Staged,
    /// Live, reverted after the timeout unless confirmed.
    Try(Duration),
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The mode used (`Auto` resolved).
    pub mode: ApplyMode,
    /// What happened, in words.
    pub details: String,
    /// Running vs new configuration, secrets redacted.
    pub diff: String,
    /// Hash of the configuration written; `None` for dry runs.
    pub config_hash: Option<String>,
}

/// Why an apply was refused; the running configuration is untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The new configuration does not parse, validate or patch.
    #[error("{0}")]
    Invalid(#[from] machine_config::ConfigError),
    /// A live-only mode was asked for a change that needs a reboot.
    #[error("these changes need a reboot: {}; use mode auto, reboot or staged", .0.join(", "))]
    NeedsReboot(Vec<String>),
    /// Storing the configuration failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The configuration asks for what this platform cannot do.
    #[error("{}", .0.join("; "))]
    Unsupported(Vec<String>),
}

/// Identity of the current boot.
#[derive(Debug, Clone)]
pub struct Boot {
    /// Random id, new on every boot (and every process-platform reboot).
    pub id: String,
    /// When this boot began.
    pub time: SystemTime,
}

impl Boot {
    /// A new boot of `platform`, with a fresh id.
    pub fn new(platform: &dyn Platform) -> Self {
        Self {
            id: platform.boot_id(),
            time: platform.boot_time(),
        }
    }
}

/// The running agent, shared by the API handlers.
pub struct Agent {
    /// Platform-specific steps.
    pub platform: Arc<dyn Platform>,
    /// This boot.
    pub boot: Boot,
    /// The services.
    pub supervisor: Supervisor,
    /// The slots, upgrades and the node's events.
    pub upgrades: Upgrades,
    store: ConfigStore,
    running: RwLock<ConfigBundle>,
    lifecycle: mpsc::UnboundedSender<Lifecycle>,
    /// Serialises configuration changes.
    apply_lock: Mutex<()>,
    /// The revert timer of a `try` apply, while one is pending.
    pending_try: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Agent {
    /// An agent running `config`; lifecycle requests go to `lifecycle`.
    pub fn new(
        platform: Arc<dyn Platform>,
        boot: Boot,
        store: ConfigStore,
        config: ConfigBundle,
        supervisor: Supervisor,
        upgrades: Upgrades,
        lifecycle: mpsc::UnboundedSender<Lifecycle>,
    ) -> Arc<Self> {
        Arc::new(Self {
            boot,
            platform,
            supervisor,
            upgrades,
            store,
            running: RwLock::new(config),
            lifecycle,
            apply_lock: Mutex::new(()),
            pending_try: std::sync::Mutex::new(None),
        })
    }

    /// The running configuration.
    pub async fn config(&self) -> ConfigBundle {
        self.running.read().await.clone()
    }

    /// Control plane or worker.
    pub async fn machine_type(&self) -> machine_config::MachineType {
        self.running.read().await.config.machine.machine_type
    }

    /// The name every reply carries.
    pub async fn hostname(&self) -> String {
        self.running.read().await.hostname()
    }

    /// Asks the main loop to end this boot.
    pub fn request(&self, what: Lifecycle) {
        // The main loop holds the receiver for the agent's whole life.
        let _ = self.lifecycle.send(what);
    }

    /// Applies what can be applied live: files, sysctls (the hardened ones and the
    /// config's), services. Returns notes on settings the platform does not apply.
    pub async fn apply_live(&self, bundle: &ConfigBundle) -> Result<Vec<String>, StoreError> {
        let machine = &bundle.config.machine;
        crate::files::write_all(&self.platform.root(), &machine.files)?;
        let sysctls = crate::kernel_security::boot_sysctls(
            crate::kernel_security::policy(),
            &machine.sysctls,
        );
        let notes = self.platform.apply_sysctls(&sysctls);
        let mut services = self.platform.system_services();
        let runtime = crate::containerd::config::SERVICE_NAME;
        let has_runtime = services.iter().any(|s| s.name == runtime);
        services.extend(machine.services.iter().cloned().map(|mut service| {
            // Container services start after containerd and stop before it.
            if has_runtime
                && service.image.is_some()
                && !service.depends_on.iter().any(|d| d == runtime)
            {
                service.depends_on.push(runtime.to_owned());
            }
            service
        }));
        self.supervisor.reconcile(&services).await;
        Ok(notes)
    }

    /// Applies `patches` to the running configuration (see [`Agent::apply`]).
    pub async fn patch(
        self: &Arc<Self>,
        patches: &[machine_config::Patch],
        mode: ApplyMode,
        dry_run: bool,
    ) -> Result<ApplyOutcome, ApplyError> {
        let new = self.running.read().await.apply_patches(patches)?;
        self.apply(new, mode, dry_run).await
    }

    /// Applies a validated configuration in `mode`; a dry run only reports.
    pub async fn apply(
        self: &Arc<Self>,
        new: ConfigBundle,
        mode: ApplyMode,
        dry_run: bool,
    ) -> Result<ApplyOutcome, ApplyError> {
        let problems = self.platform.check(&new.config.machine);
        if !problems.is_empty() {
            return Err(ApplyError::Unsupported(problems));
        }
        let _serialised = self.apply_lock.lock().await;
        let running = self.running.read().await.clone();
        let diff = machine_config::diff(&running, &new);
        let needs_reboot = machine_config::reboot_required(&running.config, &new.config);
        let mode = match mode {
            ApplyMode::Auto if needs_reboot.is_empty() => ApplyMode::NoReboot,
            ApplyMode::Auto => ApplyMode::Reboot,
            ApplyMode::NoReboot | ApplyMode::Try(_) if !needs_reboot.is_empty() => {
                return Err(ApplyError::NeedsReboot(needs_reboot));
            }
            other => other,
        };
        let hash = config_hash(&new);
        if dry_run {
            return Ok(ApplyOutcome {
                mode,
                details: "dry run: nothing was changed".into(),
                diff,
                config_hash: None,
            });
        }
        let details = match mode {
            ApplyMode::Staged => {
                self.store.write_staged(&new)?;
                "staged: applied at the next reboot".to_owned()
            }
            ApplyMode::Reboot => {
                self.store.write_running(&new)?;
                self.store.clear_staged()?;
                self.cancel_try();
                self.request(Lifecycle::Reboot);
                "written: rebooting to apply".to_owned()
            }
            ApplyMode::Try(timeout) => {
                let notes = self.replace_running(new).await?;
                self.schedule_revert(running, timeout);
                with_notes(
                    format!(
                        "applied live for {}; reverted then unless confirmed by another apply",
                        humantime::format_duration(timeout)
                    ),
                    &notes,
                )
            }
            ApplyMode::NoReboot | ApplyMode::Auto => {
                self.store.write_running(&new)?;
                self.store.clear_staged()?;
                self.cancel_try();
                let notes = self.replace_running(new).await?;
                with_notes("applied live".to_owned(), &notes)
            }
        };
        Ok(ApplyOutcome {
            mode,
            details,
            diff,
            config_hash: Some(hash),
        })
    }

    async fn replace_running(&self, new: ConfigBundle) -> Result<Vec<String>, StoreError> {
        let notes = self.apply_live(&new).await?;
        *self.running.write().await = new;
        Ok(notes)
    }

    fn cancel_try(&self) {
        if let Some(timer) = self.lock_pending_try().take() {
            timer.abort();
            tracing::info!("tried configuration confirmed");
        }
    }

    fn schedule_revert(self: &Arc<Self>, previous: ConfigBundle, timeout: Duration) {
        let agent = Arc::clone(self);
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let _serialised = agent.apply_lock.lock().await;
            tracing::info!("try timeout reached: reverting the configuration");
            if let Err(e) = agent.replace_running(previous).await {
                tracing::error!(error = %e, "reverting the tried configuration failed");
            }
            agent.lock_pending_try().take();
        });
        if let Some(earlier) = self.lock_pending_try().replace(timer) {
            earlier.abort();
        }
    }

    fn lock_pending_try(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        // The lock is never held across a panic-prone call; a poisoned lock still
        // holds a valid Option.
        self.pending_try
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn with_notes(details: String, notes: &[String]) -> String {
    if notes.is_empty() {
        details
    } else {
        format!("{details} ({})", notes.join("; "))
    }
}

/// sha256 (hex) of a configuration's canonical YAML: what "applied hash" means.
pub fn config_hash(bundle: &ConfigBundle) -> String {
    crate::digest::sha256_hex(bundle.to_yaml().as_bytes())
}
