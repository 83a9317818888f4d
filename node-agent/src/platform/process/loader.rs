//! The process platform's machine and boot loader.
//!
//! `node-agent --platform process` first runs as this loader: it plays the firmware
//! and systemd-boot for the slots in `<state>/boot`. Each boot it picks an entry in
//! the loader order of [`os_image::entry`], counts a try on a trial entry (renaming
//! it, as systemd-boot does), and runs that slot's agent as its child with the same
//! arguments and the entry's file name in [`BOOT_ENTRY_ENV`]. The child's exit says
//! what comes next:
//! - [`REBOOT_EXIT_CODE`]: a reboot, so the loader picks an entry again;
//! - 0: a shutdown, so the loader exits;
//! - anything else (a crash, an agent that cannot start): a failed boot, like a
//!   kernel panic with `panic=-1`: the loader boots again, and a trial runs out of
//!   tries and falls back by itself.
//!
//! SIGTERM and SIGINT are passed to the agent (a shutdown); the agent dies with the
//! loader (SIGKILL on the loader is a power cut).
//!
//! The loader never runs the supervisor, so the agent's reaper invariant does not
//! apply to it: it waits for its one child itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use os_image::entry::{EntryName, Slot, entry_field};
use tokio::signal::unix::{SignalKind, signal};

use super::slots::{boot_dir, entry_text};
use crate::platform::PlatformError;
use crate::upgrade::slots::{read_entries, write_atomically};

/// The environment variable that tells an agent which entry booted it (and that a
/// loader runs it).
pub const BOOT_ENTRY_ENV: &str = "NODE_OS_BOOT_ENTRY";

/// The exit status with which an agent asks its loader for a reboot.
pub const REBOOT_EXIT_CODE: i32 = 75;

/// How long a failed boot waits before the next (a crash loop stays slow enough to
/// read its log).
const FAILED_BOOT_DELAY: Duration = Duration::from_secs(1);

/// The entry that booted this agent, when a loader runs it.
pub fn booted_entry() -> Option<EntryName> {
    EntryName::parse(&std::env::var(BOOT_ENTRY_ENV).ok()?)
}

/// Boots the node's slots until an agent shuts down (or a signal asks for it).
pub async fn run(state_dir: &Path) -> Result<(), PlatformError> {
    let boot_dir = boot_dir(state_dir);
    let (mut term, mut int) = (
        signal(SignalKind::terminate()).map_err(io("handling SIGTERM"))?,
        signal(SignalKind::interrupt()).map_err(io("handling SIGINT"))?,
    );
    loop {
        let (entry, agent) = choose(&boot_dir)?;
        tracing::info!(entry = %entry.file_name(), agent = %agent.display(), "loader: booting slot {}", entry.slot);
        let spawned = tokio::process::Command::new(&agent)
            .args(std::env::args_os().skip(1))
            .env(BOOT_ENTRY_ENV, entry.file_name())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(agent = %agent.display(), error = %e, "loader: the slot's agent cannot start: boot failed");
                tokio::time::sleep(FAILED_BOOT_DELAY).await;
                continue;
            }
        };
        let status = tokio::select! {
            status = child.wait() => status,
            _ = term.recv() => return shut_down(child).await,
            _ = int.recv() => return shut_down(child).await,
        }
        .map_err(io("waiting for the agent"))?;
        match status.code() {
            Some(0) => return Ok(()),
            Some(REBOOT_EXIT_CODE) => {}
            _ => {
                tracing::error!(%status, "loader: the agent of slot {} ended: boot failed, booting again", entry.slot);
                tokio::time::sleep(FAILED_BOOT_DELAY).await;
            }
        }
    }
}

/// Picks the entry to boot (installing the first one, for this binary, on a new
/// node) and counts the try; returns the entry as renamed and its agent.
fn choose(boot_dir: &Path) -> Result<(EntryName, PathBuf), PlatformError> {
    let mut entries = read_entries(boot_dir).map_err(boot)?;
    if entries.is_empty() {
        install_first(boot_dir)?;
        entries = read_entries(boot_dir).map_err(boot)?;
    }
    let chosen = entries
        .first()
        .ok_or_else(|| PlatformError::Boot(format!("no boot entry in {}", boot_dir.display())))?;
    let tried = chosen.name.tried();
    if tried != chosen.name {
        let dir = boot_dir.join("loader/entries");
        std::fs::rename(
            dir.join(chosen.name.file_name()),
            dir.join(tried.file_name()),
        )
        .map_err(io("counting a try of a trial entry"))?;
    }
    let agent = entry_field(&chosen.text, "agent").ok_or_else(|| {
        PlatformError::Boot(format!(
            "boot entry {} names no agent",
            chosen.name.file_name()
        ))
    })?;
    Ok((tried, boot_dir.join(agent)))
}

/// A new node boots the binary that was started, as generation 1 in slot A.
fn install_first(boot_dir: &Path) -> Result<(), PlatformError> {
    let exe = std::env::current_exe().map_err(io("finding the agent's executable"))?;
    let name = EntryName::good(1, Slot::A);
    let text = entry_text(Slot::A, env!("CARGO_PKG_VERSION"), &exe.to_string_lossy());
    write_atomically(
        &boot_dir.join("loader/entries").join(name.file_name()),
        text.as_bytes(),
    )
    .map_err(boot)
}

/// Passes a shutdown request to the agent and waits for it.
async fn shut_down(mut child: tokio::process::Child) -> Result<(), PlatformError> {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    child.wait().await.map_err(io("waiting for the agent"))?;
    Ok(())
}

fn boot(error: crate::upgrade::UpgradeError) -> PlatformError {
    PlatformError::Boot(error.to_string())
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> PlatformError {
    move |source| PlatformError::Io {
        what: what.into(),
        source,
    }
}
