//! The metal platform's slots: the ESP (mounted at [`ESP_DIR`] when the machine booted
//! through UEFI) holds systemd-boot's entries and each slot's kernel and initramfs;
//! the partitions `BOOT-A` and `BOOT-B` hold the root images.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::Path;

use os_image::bundle::{Kind, VerifiedBundle, part};
use os_image::entry::{self, Slot, SlotFiles};

use super::root;
use crate::upgrade::slots::{copy_reporting, io_error, partial_path};
use crate::upgrade::{SlotWriter, UpgradeError};

/// Where the ESP is mounted.
pub const ESP_DIR: &str = "/run/node-os/esp";
/// Present when the firmware is UEFI.
pub const EFI_FIRMWARE: &str = "/sys/firmware/efi";

/// Writes a metal bundle: kernel and initramfs to the ESP, the root image to the
/// slot's partition.
#[derive(Debug)]
pub struct DiskSlotWriter;

impl SlotWriter for DiskSlotWriter {
    fn kind(&self) -> Kind {
        Kind::Metal
    }

    fn write(
        &self,
        boot_dir: &Path,
        slot: Slot,
        bundle: &VerifiedBundle,
        progress: &mut dyn FnMut(u64),
    ) -> Result<String, UpgradeError> {
        let manifest = &bundle.manifest;
        let rootfs = bundle
            .part_info(part::ROOTFS)
            .ok_or_else(|| UpgradeError::Refused("the bundle has no root image".into()))?
            .clone();
        let device = root::find_partition(slot.partition_label())
            .map_err(|e| UpgradeError::Refused(e.to_string()))?;
        let mut done = write_device(&device, bundle, rootfs.size, progress)?;

        let dir = boot_dir.join(slot.directory());
        std::fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        for name in [part::KERNEL, part::INITRAMFS] {
            let target = dir.join(name);
            let partial = partial_path(&target);
            let mut file = File::create(&partial)
                .map_err(io_error(format!("creating {}", partial.display())))?;
            done += copy_reporting(&mut bundle.part(name)?, &mut file, done, progress)
                .and_then(|n| file.sync_all().map(|()| n))
                .map_err(io_error(format!("writing {}", partial.display())))?;
            std::fs::rename(&partial, &target)
                .map_err(io_error(format!("renaming to {}", target.display())))?;
        }
        let hardening = manifest.kernel_hardening.as_deref().unwrap_or_default();
        Ok(entry::entry_text(
            slot,
            &manifest.version,
            SlotFiles {
                kernel: part::KERNEL,
                initramfs: part::INITRAMFS,
            },
            &entry::slot_options(slot, &rootfs.sha256, hardening),
        ))
    }
}

/// Writes the bundle's root image to `device` (refused when it does not fit).
fn write_device(
    device: &Path,
    bundle: &VerifiedBundle,
    size: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, UpgradeError> {
    let what = format!("writing {}", device.display());
    let mut target = OpenOptions::new()
        .write(true)
        .open(device)
        .map_err(io_error(what.clone()))?;
    let capacity = target
        .seek(SeekFrom::End(0))
        .and_then(|end| target.seek(SeekFrom::Start(0)).map(|_| end))
        .map_err(io_error(what.clone()))?;
    if size > capacity {
        return Err(UpgradeError::Refused(format!(
            "the root image ({} MiB) does not fit {} ({} MiB)",
            size >> 20,
            device.display(),
            capacity >> 20
        )));
    }
    let written = copy_reporting(&mut bundle.part(part::ROOTFS)?, &mut target, 0, progress)
        .and_then(|n| target.sync_all().map(|()| n))
        .map_err(io_error(what))?;
    Ok(written)
}
