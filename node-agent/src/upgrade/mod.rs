//! A/B upgrades: a signed bundle goes into the slot that is not running, the next boot
//! tries it, and only a healthy boot keeps it.
//!
//! - [`slots`]: the two slots and their boot entries (generation and boot counter in
//!   the file name, see [`os_image::entry`]); the platform writes the payload.
//! - [`source`]: the bundle arriving: an upload in the request stream or an HTTPS
//!   download, stored on EPHEMERAL.
//! - [`trial`]: what a boot does about its slot: a trial waits for the services to be
//!   healthy, then keeps the slot or gives it up; a fallback is detected and reported.
//! - [`events`]: the node's event log.
//!
//! **Architecture Invariant:** nothing is written to a slot before the whole bundle
//! was verified (signature by a trusted key over the manifest, every part's size and
//! sha256), and the booted slot is never written. Whatever happens during an install,
//! the slot that booted last stays bootable and keeps its entry.

pub mod events;
pub mod slots;
pub mod source;
pub mod trial;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use os_image::bundle::{self, PublicKey};
use os_image::entry::EntryState;
use tokio::sync::mpsc;

use crate::agent::{Agent, Lifecycle};
use events::{EventKind, EventLog};
pub use slots::{BootSlots, Installed, SlotWriter};
pub use trial::Fallback;

/// Why an upgrade or rollback did not happen. Nothing was written to the booted slot.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The node does not boot from slots (e.g. a direct kernel boot).
    #[error("upgrades are not available on this node: {0}")]
    Unavailable(String),
    /// Another upgrade or rollback runs.
    #[error("another upgrade or rollback is in progress")]
    Busy,
    /// A pre-check failed, or the request cannot be honoured as it is.
    #[error("{0}")]
    Refused(String),
    /// The bundle failed verification.
    #[error("the bundle is refused: {0}")]
    Bundle(#[from] bundle::BundleError),
    /// The bundle could not be received or downloaded.
    #[error("{0}")]
    Transfer(String),
    /// A file or device operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The step that failed.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// What the caller asked for besides the bundle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpgradeOptions {
    /// Install only: the next reboot boots the new slot.
    pub stage: bool,
    /// Skip the pre-checks.
    pub force: bool,
    /// Keep EPHEMERAL's data.
    pub preserve: bool,
}

/// A step of an upgrade, as the API streams it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// `receive`, `verify`, `write`, `staged` or `reboot`.
    pub phase: &'static str,
    /// Bytes done in this phase.
    pub done: u64,
    /// Bytes of this phase, when known.
    pub total: u64,
    /// The version being installed, once known.
    pub version: String,
    /// The slot being written, once known.
    pub slot: String,
    /// In words.
    pub message: String,
}

impl Progress {
    /// A progress message of `phase` with no byte counts.
    pub fn step(phase: &'static str, message: impl Into<String>) -> Self {
        Self {
            phase,
            done: 0,
            total: 0,
            version: String::new(),
            slot: String::new(),
            message: message.into(),
        }
    }
}

/// Sends progress, at most every [`PROGRESS_EVERY`] bytes within a phase.
#[derive(Debug, Clone)]
pub struct ProgressSender {
    tx: mpsc::Sender<Progress>,
}

/// How many bytes pass between two progress messages of one phase.
const PROGRESS_EVERY: u64 = 4 << 20;

impl ProgressSender {
    /// A sender into `tx` (the API stream).
    pub fn new(tx: mpsc::Sender<Progress>) -> Self {
        Self { tx }
    }

    /// Sends one message (a closed stream is ignored: the install goes on).
    pub async fn send(&self, progress: Progress) {
        let _ = self.tx.send(progress).await;
    }

    /// A callback for blocking code that reports bytes of `phase`.
    pub fn bytes(&self, template: Progress) -> impl FnMut(u64) + Send + 'static {
        let tx = self.tx.clone();
        let mut last = None;
        move |done| {
            if last.is_some_and(|l| done < l + PROGRESS_EVERY && done < template.total) {
                return;
            }
            last = Some(done);
            let _ = tx.blocking_send(Progress {
                done,
                ..template.clone()
            });
        }
    }
}

/// The node's upgrade machinery.
#[derive(Debug)]
pub struct Upgrades {
    slots: Result<Arc<BootSlots>, String>,
    /// Records of trial boots (`<state>/upgrade`).
    records: PathBuf,
    /// Where bundles are stored while they are verified and written (on EPHEMERAL).
    downloads: PathBuf,
    /// What this boot fell back from, if it did.
    fallback: Option<Fallback>,
    /// Serialises upgrades and rollbacks.
    busy: Arc<tokio::sync::Mutex<()>>,
    /// The node's events.
    pub events: EventLog,
}

impl Upgrades {
    /// The upgrade machinery of a boot: `slots` (or why there are none), trial records
    /// under `state_dir`, downloads under `ephemeral_dir`.
    pub fn new(slots: Result<BootSlots, String>, state_dir: &Path, ephemeral_dir: &Path) -> Self {
        let records = state_dir.join("upgrade");
        let slots = slots.map(Arc::new);
        let fallback = match &slots {
            Ok(slots) => trial::fallback(slots, &records),
            Err(_) => None,
        };
        Self {
            slots,
            records,
            downloads: ephemeral_dir.join("lib/node-os/upgrade"),
            fallback,
            busy: Arc::default(),
            events: EventLog::default(),
        }
    }

    /// The slots, or why upgrades are unavailable.
    pub fn slots(&self) -> Result<&Arc<BootSlots>, UpgradeError> {
        self.slots
            .as_ref()
            .map_err(|why| UpgradeError::Unavailable(why.clone()))
    }

    /// What this boot fell back from.
    pub fn fallback(&self) -> Option<&Fallback> {
        self.fallback.as_ref()
    }

    /// Where bundles are stored while they are verified and written.
    pub fn download_dir(&self) -> &Path {
        &self.downloads
    }

    /// The OS version of the booted slot, when it has an entry.
    pub fn booted_version(&self) -> Option<String> {
        let slots = self.slots.as_ref().ok()?;
        slots.booted().ok().flatten().map(|e| e.version)
    }

    /// Reserves the machinery for one upgrade or rollback.
    pub fn try_begin(&self) -> Result<tokio::sync::OwnedMutexGuard<()>, UpgradeError> {
        self.busy
            .clone()
            .try_lock_owned()
            .map_err(|_| UpgradeError::Busy)
    }
}

/// Installs the bundle in `file` (already received) on `agent`'s node, then reboots
/// into it unless staged. `file` is removed at the end.
pub async fn install(
    agent: &Arc<Agent>,
    file: tempfile::TempPath,
    options: UpgradeOptions,
    progress: &ProgressSender,
) -> Result<(), UpgradeError> {
    let upgrades = &agent.upgrades;
    let slots = upgrades.slots()?.clone();
    let config = agent.config().await;
    let trusted = trusted_keys(&config.config.machine.upgrade.trusted_keys)?;

    progress
        .send(Progress::step(
            "verify",
            "checking the signature and every part's sha256",
        ))
        .await;
    let started = Instant::now();
    let path = file.to_path_buf();
    let verified = tokio::task::spawn_blocking(move || bundle::open_verified(&path, &trusted))
        .await
        .map_err(|e| UpgradeError::Transfer(format!("verification stopped: {e}")))??;
    let manifest = verified.manifest.clone();
    tracing::info!(version = %manifest.version, elapsed_ms = started.elapsed().as_millis(), "bundle verified");
    if manifest.kind != slots.kind() {
        return Err(UpgradeError::Refused(format!(
            "the bundle is for the {} platform; this node installs {} bundles",
            manifest.kind,
            slots.kind()
        )));
    }
    if !options.force {
        pre_checks(agent, &slots, &manifest.version)?;
    }

    let target = slots.booted_slot().other();
    let total: u64 = verified.manifest.parts.iter().map(|p| p.size).sum();
    let template = Progress {
        phase: "write",
        done: 0,
        total,
        version: manifest.version.clone(),
        slot: target.letter().to_string(),
        message: format!("writing {} into slot {target}", manifest.version),
    };
    progress.send(template.clone()).await;
    let mut report = progress.bytes(template);
    let writer = slots.clone();
    let installed = tokio::task::spawn_blocking(move || writer.install(&verified, &mut report))
        .await
        .map_err(|e| UpgradeError::Transfer(format!("the slot write stopped: {e}")))??;
    drop(file);
    trial::forget_records_except(&upgrades.records, &slots);
    if !options.preserve {
        trial::request_wipe(&upgrades.records, installed.name.generation)?;
    }
    upgrades.events.publish(
        EventKind::Upgrade,
        &installed.version,
        format!(
            "installed {} into slot {target} (generation {}, on trial)",
            installed.version, installed.name.generation
        ),
    );
    let versioned = |phase, message: String| Progress {
        version: installed.version.clone(),
        slot: target.letter().to_string(),
        ..Progress::step(phase, message)
    };
    if options.stage {
        progress
            .send(versioned(
                "staged",
                format!(
                    "slot {target} boots {} on the next reboot",
                    installed.version
                ),
            ))
            .await;
    } else {
        progress
            .send(versioned(
                "reboot",
                format!("rebooting into {} (slot {target})", installed.version),
            ))
            .await;
        agent.request(Lifecycle::Reboot);
    }
    Ok(())
}

/// Boots the other slot again.
pub async fn roll_back(agent: &Arc<Agent>) -> Result<Installed, UpgradeError> {
    let upgrades = &agent.upgrades;
    let _busy = upgrades.try_begin()?;
    let slots = upgrades.slots()?.clone();
    let previous = tokio::task::spawn_blocking(move || slots.roll_back())
        .await
        .map_err(|e| UpgradeError::Transfer(format!("the rollback stopped: {e}")))??;
    upgrades.events.publish(
        EventKind::Rollback,
        &previous.version,
        format!(
            "rolling back to {} (slot {})",
            previous.version, previous.name.slot
        ),
    );
    agent.request(Lifecycle::Reboot);
    Ok(previous)
}

/// The machine config's trusted keys (validated when the config was accepted).
fn trusted_keys(keys: &[String]) -> Result<Vec<PublicKey>, UpgradeError> {
    if keys.is_empty() {
        return Err(UpgradeError::Refused(
            "machine.upgrade.trustedKeys is empty: this node trusts no bundle signer".into(),
        ));
    }
    keys.iter()
        .map(|key| {
            key.parse().map_err(|e| {
                UpgradeError::Refused(format!("machine.upgrade.trustedKeys: {key}: {e}"))
            })
        })
        .collect()
}

/// What must hold before an install (unless forced): the booted slot is confirmed, no
/// service has failed, and the bundle is not what already runs.
fn pre_checks(agent: &Agent, slots: &BootSlots, version: &str) -> Result<(), UpgradeError> {
    if let Some(booted) = slots.booted()? {
        if booted.name.state() != EntryState::Good {
            return Err(UpgradeError::Refused(format!(
                "slot {} ({}) is still on trial; wait until it is confirmed (or force)",
                booted.name.slot, booted.version
            )));
        }
        if booted.version == version {
            return Err(UpgradeError::Refused(format!(
                "{version} is what slot {} runs already (force reinstalls it)",
                booted.name.slot
            )));
        }
    }
    let failed: Vec<String> = agent
        .supervisor
        .list()
        .into_iter()
        .filter(|s| {
            matches!(
                s.state,
                crate::supervisor::ServiceState::Failed | crate::supervisor::ServiceState::Backoff
            )
        })
        .map(|s| format!("{} ({})", s.name, s.state))
        .collect();
    if !failed.is_empty() {
        return Err(UpgradeError::Refused(format!(
            "services are failing: {}; fix them first (or force)",
            failed.join(", ")
        )));
    }
    Ok(())
}
