//! The process platform's slots: `<state>/boot` holds `loader/entries/` and one
//! directory per slot with that slot's agent binary. [`super::loader`] boots them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use os_image::bundle::{Kind, VerifiedBundle, part};
use os_image::entry::Slot;

use crate::upgrade::slots::{copy_reporting, io_error, partial_path};
use crate::upgrade::{SlotWriter, UpgradeError};

/// The agent's file name in a slot's directory.
const AGENT_FILE: &str = "node-agent";

/// The boot directory of a process node.
pub fn boot_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("boot")
}

/// The text of a process slot's entry: like a systemd-boot entry, with the agent
/// binary in place of kernel and initramfs (a relative path is below the boot
/// directory).
pub fn entry_text(slot: Slot, version: &str, agent: &str) -> String {
    format!("title node-os {version} (slot {slot})\nversion {version}\nagent {agent}\n")
}

/// Writes a process bundle's agent into a slot.
#[derive(Debug)]
pub struct AgentSlotWriter;

impl SlotWriter for AgentSlotWriter {
    fn kind(&self) -> Kind {
        Kind::Process
    }

    fn write(
        &self,
        boot_dir: &Path,
        slot: Slot,
        bundle: &VerifiedBundle,
        progress: &mut dyn FnMut(u64),
    ) -> Result<String, UpgradeError> {
        let dir = boot_dir.join(slot.directory());
        std::fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let target = dir.join(AGENT_FILE);
        let partial = partial_path(&target);
        let mut source = bundle.part(part::AGENT)?;
        let mut file = std::fs::File::create(&partial)
            .map_err(io_error(format!("creating {}", partial.display())))?;
        copy_reporting(&mut source, &mut file, 0, progress)
            .map_err(io_error(format!("writing {}", partial.display())))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o755))
            .and_then(|()| file.sync_all())
            .map_err(io_error(format!("writing {}", partial.display())))?;
        std::fs::rename(&partial, &target)
            .map_err(io_error(format!("renaming to {}", target.display())))?;
        let relative = format!("{}/{AGENT_FILE}", slot.directory());
        Ok(entry_text(slot, &bundle.manifest.version, &relative))
    }
}
