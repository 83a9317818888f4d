//! Kernel modules the node loads from the initramfs, and their load order from
//! `modules.dep` (which `depmod` writes; every module lists all it depends on, the
//! ones to load first last).

use std::collections::{BTreeMap, BTreeSet};

/// The modules the node needs before its root image is mounted: virtio devices,
/// the filesystems of the disk's partitions, overlayfs for containers, efivarfs, and
/// QEMU's fw_cfg (the provisioner's configuration source).
/// Names as in `modinfo` (`-` and `_` are the same).
pub const EARLY_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_mmio",
    "virtio_net",
    "virtio_blk",
    "crc32c_generic",
    "crc32c_intel",
    "crc16",
    "mbcache",
    "jbd2",
    "ext4",
    "overlay",
    "squashfs",
    "fat",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "efivarfs",
    "qemu_fw_cfg",
];

/// A module's name from its path: `kernel/arch/x86/crypto/crc32c-intel.ko` is
/// `crc32c_intel`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The parsed `modules.dep`: each module's path and the paths it depends on.
#[derive(Debug, Default, Clone)]
pub struct ModulesDep {
    by_name: BTreeMap<String, (String, Vec<String>)>,
}

impl ModulesDep {
    /// Parses `modules.dep` text (`path: dep dep ...` lines).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_name = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (path, deps) = line
                .split_once(':')
                .ok_or_else(|| format!("modules.dep line {}: no ':'", number + 1))?;
            let deps = deps.split_whitespace().map(str::to_owned).collect();
            by_name.insert(module_name(path), (path.trim().to_owned(), deps));
        }
        Ok(Self { by_name })
    }

    /// The paths to load, in an order where every module comes after its dependencies,
    /// for the modules `wanted` (in that order otherwise). Names in `builtin` (parsed
    /// from `modules.builtin` with [`module_name`]) are skipped; any other unknown name
    /// is an error.
    pub fn load_order(
        &self,
        wanted: &[&str],
        builtin: &BTreeSet<String>,
    ) -> Result<Vec<String>, String> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in wanted {
            let name = name.replace('-', "_");
            if builtin.contains(&name) {
                continue;
            }
            let (path, deps) = self.by_name.get(&name).ok_or_else(|| {
                format!("kernel module {name} is neither built in nor in modules.dep")
            })?;
            // modules.dep lists the transitive dependencies; modprobe loads them from
            // the last to the first.
            for dep in deps.iter().rev().chain(std::iter::once(path)) {
                if seen.insert(dep.clone()) {
                    order.push(dep.clone());
                }
            }
        }
        Ok(order)
    }
}

/// The module names of a `modules.builtin` file.
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(module_name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
";

    #[test]
    fn names_drop_directories_suffixes_and_dashes() {
        assert_eq!(
            module_name("kernel/arch/x86/crypto/crc32c-intel.ko"),
            "crc32c_intel"
        );
        assert_eq!(module_name("kernel/fs/ext4/ext4.ko.xz"), "ext4");
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let dep = ModulesDep::parse(DEP).unwrap();
        let order = dep
            .load_order(
                &["virtio_pci", "virtio_blk", "crc32c-intel", "ext4"],
                &BTreeSet::new(),
            )
            .unwrap();
        assert_eq!(
            order,
            [
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
                "kernel/drivers/virtio/virtio_pci.ko",
                "kernel/drivers/block/virtio_blk.ko",
                "kernel/arch/x86/crypto/crc32c-intel.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/mbcache.ko",
                "kernel/lib/crc16.ko",
                "kernel/fs/ext4/ext4.ko",
            ]
        );
    }

    #[test]
    fn builtin_modules_are_skipped_and_unknown_ones_refused() {
        let dep = ModulesDep::parse(DEP).unwrap();
        let builtin = parse_builtin("kernel/fs/overlayfs/overlay.ko\n");
        assert_eq!(
            dep.load_order(&["overlay"], &builtin).unwrap(),
            Vec::<String>::new()
        );
        let err = dep.load_order(&["squashfs"], &builtin).unwrap_err();
        assert!(err.contains("squashfs"), "{err}");
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert!(ModulesDep::parse("kernel/fs/ext4.ko\n").is_err());
    }
}
