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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::BootSlots;
    use crate::upgrade::slots::write_atomically;
    use os_image::bundle::{self, Release, SigningKey};
    use os_image::entry::EntryState;

    /// A verified process bundle of a small file as `version`.
    fn verified(dir: &Path, version: &str) -> VerifiedBundle {
        let (key, _) = SigningKey::generate().unwrap();
        let agent = dir.join("agent");
        std::fs::write(&agent, format!("#!/bin/sh\necho {version}\n")).unwrap();
        let out = dir.join(format!("{version}.bundle"));
        let release = Release {
            version: version.into(),
            kind: Kind::Process,
            kernel_release: None,
            kernel_hardening: None,
        };
        bundle::write(&out, &release, &[(part::AGENT, &agent)], &key).unwrap();
        bundle::open_verified(&out, &[key.public_key()]).unwrap()
    }

    fn names(slots: &BootSlots) -> Vec<String> {
        slots
            .installed()
            .unwrap()
            .iter()
            .map(|e| format!("{} {}", e.name.file_name(), e.version))
            .collect()
    }

    #[test]
    fn installs_go_to_the_other_slot_as_trials_and_rollbacks_need_a_good_slot() {
        let work = tempfile::tempdir().unwrap();
        let boot = boot_dir(work.path());
        write_atomically(
            &boot.join("loader/entries/node-os-000001-a.conf"),
            entry_text(Slot::A, "1", "/usr/bin/node-agent").as_bytes(),
        )
        .unwrap();
        let slots = BootSlots::new(boot.clone(), Slot::A, Box::new(AgentSlotWriter));
        // Nothing good in slot B yet: no rollback.
        assert!(slots.roll_back().is_err());

        let mut reported = 0;
        let installed = slots
            .install(&verified(work.path(), "2"), &mut |n| reported = n)
            .unwrap();
        assert_eq!(installed.name.file_name(), "node-os-000002-b+3.conf");
        assert!(reported > 0);
        let agent = std::fs::read_to_string(boot.join("slot-b/node-agent")).unwrap();
        assert!(agent.contains("echo 2"));
        // The trial sorts first; the booted slot's entry is untouched.
        assert_eq!(
            names(&slots),
            ["node-os-000002-b+3.conf 2", "node-os-000001-a.conf 1"]
        );
        // A trial is no rollback target either.
        assert!(slots.roll_back().is_err());

        // Installing again replaces slot B's entry, with the next generation.
        slots
            .install(&verified(work.path(), "3"), &mut |_| {})
            .unwrap();
        assert_eq!(
            names(&slots),
            ["node-os-000003-b+3.conf 3", "node-os-000001-a.conf 1"]
        );

        // Booted from B: confirmed, it is a rollback target from A's point of view.
        let on_b = BootSlots::new(boot.clone(), Slot::B, Box::new(AgentSlotWriter));
        let trial = on_b.booted().unwrap().unwrap();
        on_b.confirm(&trial).unwrap();
        assert_eq!(
            on_b.booted().unwrap().unwrap().name.state(),
            EntryState::Good
        );
        let back = slots.roll_back().unwrap();
        assert_eq!(back.name.file_name(), "node-os-000004-b.conf");
        assert_eq!(
            names(&slots),
            ["node-os-000004-b.conf 3", "node-os-000001-a.conf 1"]
        );

        // Given up: no tries left, so it sorts after the good entry.
        let on_b = BootSlots::new(boot, Slot::B, Box::new(AgentSlotWriter));
        on_b.give_up(&on_b.booted().unwrap().unwrap()).unwrap();
        assert_eq!(
            names(&slots),
            ["node-os-000001-a.conf 1", "node-os-000004-b+0.conf 3"]
        );
    }
}
