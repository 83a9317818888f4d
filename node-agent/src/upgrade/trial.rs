//! What a boot does about its slot.
//!
//! - A **trial** boot (its entry still counts tries) records that it reached the agent,
//!   waits until every service runs and passes its health checks for
//!   [`Upgrade::STABLE_FOR`] in a row, and then drops the counter (the slot is kept). When the health timeout passes first, it records why,
//!   takes the slot's last tries away and reboots: the loader boots the previous slot.
//!   A trial whose agent never gets that far (a crash, a kernel panic, a root image
//!   that fails its hash) runs out of tries in the loader without help.
//! - A boot that finds a newer entry without tries left has **fallen back**: it reports
//!   that installation's version and the reason its trial recorded, or that none of its
//!   boots reached the agent.
//!
//! Records live on the state partition (`<state>/upgrade/trial-<generation>`), so they
//! survive the reboots between a trial and the fallback.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use machine_config::Upgrade;
use os_image::entry::{EntryState, Slot};

use super::UpgradeError;
use super::events::EventKind;
use super::slots::{BootSlots, io_error, write_atomically};
use crate::agent::{Agent, Lifecycle};
use crate::supervisor::{Health, ServiceState};

/// How often a trial boot looks at its services.
const HEALTH_POLL: Duration = Duration::from_secs(1);
/// The marker asking the boot of a generation to empty EPHEMERAL.
const WIPE_MARKER: &str = "wipe-ephemeral";

/// A fallback from an installation that did not come up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// The version that did not come up.
    pub from_version: String,
    /// Its slot.
    pub from_slot: Slot,
    /// Why, as its trial recorded it.
    pub reason: String,
}

/// The fallback this boot is, if a newer entry ran out of tries.
pub fn fallback(slots: &BootSlots, records: &Path) -> Option<Fallback> {
    let entries = slots.installed().ok()?;
    let booted = entries
        .iter()
        .find(|e| e.name.slot == slots.booted_slot())?;
    let failed = entries.iter().find(|e| {
        e.name.slot != booted.name.slot
            && e.name.generation > booted.name.generation
            && e.name.state() == EntryState::Bad
    })?;
    let tries = failed.name.tries.map_or(0, |t| t.done);
    let reason = fs::read_to_string(record_path(records, failed.name.generation))
        .map(|r| r.trim().to_owned())
        .unwrap_or_else(|_| format!("none of its {tries} boots reached the agent"));
    Some(Fallback {
        from_version: failed.version.clone(),
        from_slot: failed.name.slot,
        reason,
    })
}

fn record_path(records: &Path, generation: u32) -> PathBuf {
    records.join(format!("trial-{generation}"))
}

fn record(records: &Path, generation: u32, what: &str) {
    if let Err(e) = write_atomically(&record_path(records, generation), what.as_bytes()) {
        tracing::warn!(error = %e, "recording the trial's progress");
    }
}

/// Removes the records of generations that no entry has any more.
pub fn forget_records_except(records: &Path, slots: &BootSlots) {
    let Ok(entries) = slots.installed() else {
        return;
    };
    let Ok(listing) = fs::read_dir(records) else {
        return;
    };
    for file in listing.flatten() {
        let name = file.file_name().to_string_lossy().into_owned();
        let Some(generation) = name
            .strip_prefix("trial-")
            .and_then(|g| g.parse::<u32>().ok())
        else {
            continue;
        };
        if !entries.iter().any(|e| e.name.generation == generation) {
            let _ = fs::remove_file(file.path());
        }
    }
}

/// Asks the first boot of `generation` to start with an empty EPHEMERAL.
pub fn request_wipe(records: &Path, generation: u32) -> Result<(), UpgradeError> {
    write_atomically(
        &records.join(WIPE_MARKER),
        generation.to_string().as_bytes(),
    )
}

/// True (once) when this boot, of `generation`, was asked to empty EPHEMERAL; the
/// request is removed.
pub fn take_wipe_request(state_dir: &Path, generation: u32) -> bool {
    let marker = state_dir.join("upgrade").join(WIPE_MARKER);
    let Ok(text) = fs::read_to_string(&marker) else {
        return false;
    };
    let _ = fs::remove_file(&marker);
    text.trim().parse() == Ok(generation)
}

/// Settles the booted slot (see the module documentation); runs once the services
/// were started.
pub async fn settle(agent: Arc<Agent>) {
    let upgrades = &agent.upgrades;
    let Ok(slots) = upgrades.slots() else {
        return;
    };
    let booted = match slots.booted() {
        Ok(Some(booted)) => booted,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "reading the boot entries");
            return;
        }
    };
    upgrades.events.publish(
        EventKind::Boot,
        &booted.version,
        format!(
            "booted {} from slot {} ({})",
            booted.version,
            booted.name.slot,
            booted.name.state()
        ),
    );
    if let Some(fallback) = upgrades.fallback() {
        upgrades.events.publish(
            EventKind::RolledBack,
            &fallback.from_version,
            format!(
                "rolled back from {} (slot {}): {}",
                fallback.from_version, fallback.from_slot, fallback.reason
            ),
        );
    }
    if booted.name.state() != EntryState::Trial {
        return;
    }
    let records = upgrades.records.clone();
    let generation = booted.name.generation;
    record(
        &records,
        generation,
        &format!(
            "its agent started (boot {}) but the trial ended before a verdict",
            agent.boot.id
        ),
    );
    let timeout = agent.config().await.config.machine.upgrade.health_timeout.0;
    let verdict = wait_for_health(&agent, timeout).await;
    let slots = slots.clone();
    match verdict {
        Ok(()) => match slots.confirm(&booted) {
            Ok(()) => {
                let _ = fs::remove_file(record_path(&records, generation));
                upgrades.events.publish(
                    EventKind::Confirmed,
                    &booted.version,
                    format!(
                        "{} in slot {} is healthy: kept",
                        booted.version, booted.name.slot
                    ),
                );
            }
            Err(e) => tracing::error!(error = %e, "confirming the booted slot"),
        },
        Err(why) => {
            let reason = format!(
                "its services were not healthy within {}: {why}",
                humantime::format_duration(timeout)
            );
            record(&records, generation, &reason);
            if let Err(e) = slots.give_up(&booted) {
                tracing::error!(error = %e, "marking the trial slot bad");
            }
            upgrades.events.publish(
                EventKind::TrialFailed,
                &booted.version,
                format!(
                    "{} in slot {}: {reason}; rebooting into the previous slot",
                    booted.version, booted.name.slot
                ),
            );
            agent.request(Lifecycle::Reboot);
        }
    }
}

/// Waits until every service runs (or finished well) and passes its health checks for
/// [`Upgrade::STABLE_FOR`] in a row without a restart; on timeout, says which did not.
async fn wait_for_health(agent: &Agent, timeout: Duration) -> Result<(), String> {
    let started = Instant::now();
    // Since when every service has been fine, and their restart counts then.
    let mut stable: Option<(Instant, BTreeMap<String, u32>)> = None;
    loop {
        let (unhealthy, restarts) = service_health(agent).await;
        stable = match stable {
            Some((since, before)) if unhealthy.is_empty() && before == restarts => {
                if since.elapsed() >= Upgrade::STABLE_FOR {
                    return Ok(());
                }
                Some((since, before))
            }
            _ if unhealthy.is_empty() => Some((Instant::now(), restarts)),
            _ => None,
        };
        if started.elapsed() >= timeout {
            return Err(if unhealthy.is_empty() {
                format!(
                    "they did not stay healthy for {} in a row (a service restarted)",
                    humantime::format_duration(Upgrade::STABLE_FOR)
                )
            } else {
                unhealthy.join(", ")
            });
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}

/// The services that are not fine now (each with its state and why), and every
/// service's restart count.
async fn service_health(agent: &Agent) -> (Vec<String>, BTreeMap<String, u32>) {
    let config = agent.config().await;
    let checked: Vec<&str> = config
        .config
        .machine
        .services
        .iter()
        .filter(|s| s.health_check.is_some())
        .map(|s| s.name.as_str())
        .collect();
    let services = agent.supervisor.list();
    let restarts = services
        .iter()
        .map(|s| (s.name.clone(), s.restarts))
        .collect();
    let unhealthy = services
        .into_iter()
        .filter_map(|s| {
            let fine = match s.state {
                ServiceState::Finished | ServiceState::Stopped => true,
                ServiceState::Running => {
                    s.health == Health::Healthy
                        || (s.health == Health::Unknown && !checked.contains(&s.name.as_str()))
                }
                _ => false,
            };
            (!fine).then(|| match &s.health {
                Health::Unhealthy(why) => format!("{} ({}, {why})", s.name, s.state),
                _ if s.message.is_empty() => format!("{} ({})", s.name, s.state),
                _ => format!("{} ({}: {})", s.name, s.state, s.message),
            })
        })
        .collect();
    (unhealthy, restarts)
}

/// Empties EPHEMERAL when this boot is the first of an upgrade that asked for it.
pub fn wipe_if_requested(
    state_dir: &Path,
    slots: Option<&BootSlots>,
    wipe: impl FnOnce() -> std::io::Result<()>,
) -> Result<(), UpgradeError> {
    let Some(Ok(Some(booted))) = slots.map(BootSlots::booted) else {
        return Ok(());
    };
    if !take_wipe_request(state_dir, booted.name.generation) {
        return Ok(());
    }
    tracing::info!(
        generation = booted.name.generation,
        "first boot of an upgrade: emptying EPHEMERAL"
    );
    wipe().map_err(io_error("emptying EPHEMERAL".into()))
}
