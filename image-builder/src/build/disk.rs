//! Stage 5: the disk image, assembled in a regular file without root privileges or
//! loop devices.
//!
//! GPT (by `sgdisk`, fixed GUIDs):
//! - `EFI` (vfat, `mkfs.fat --offset --invariant`, filled with `mcopy -i IMG@@OFFSET`):
//!   systemd-boot as `\EFI\BOOT\BOOTX64.EFI`, `loader/loader.conf`, one entry per slot
//!   (`loader/entries/slot-a.conf`, `slot-b.conf`) and each slot's kernel and
//!   initramfs under `/slot-a/`, `/slot-b/`;
//! - `BOOT-A`, `BOOT-B`: each slot's root image (the squashfs, written raw);
//! - `STATE`, `EPHEMERAL`: empty ext4 (`mkfs.ext4 -E offset=`), fixed UUIDs and hash
//!   seeds, times from `E2FSPROGS_FAKE_TIME`.
//!
//! Every timestamp is `SOURCE_DATE_EPOCH`; files are copied to the ESP in name order.

use std::fs::{self, File, FileTimes};
use std::io::{self, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::error::{BuildError, IoContext, Result};
use super::tool::{command, run};

/// The file name of the raw disk image in the outputs.
pub const RAW: &str = "disk.raw";
/// The file name of the qcow2 disk image in the outputs.
pub const QCOW2: &str = "disk.qcow2";

const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
/// The disk's GUID.
pub const DISK_GUID: &str = "4e4f4445-4f53-4000-8000-000000000000";

/// One partition of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// The GPT partition name (`PARTLABEL`), also the filesystem label.
    pub label: &'static str,
    /// The `sgdisk` type code.
    pub type_code: &'static str,
    /// The partition's unique GUID (also the ext4 UUID).
    pub guid: &'static str,
    /// The size in MiB.
    pub size_mib: u64,
}

/// The partitions, in order.
pub const LAYOUT: [Partition; 5] = [
    Partition {
        label: "EFI",
        type_code: "ef00",
        guid: "4e4f4445-4f53-4000-8000-000000000001",
        size_mib: 64,
    },
    Partition {
        label: "BOOT-A",
        type_code: "8300",
        guid: "4e4f4445-4f53-4000-8000-00000000000a",
        size_mib: 128,
    },
    Partition {
        label: "BOOT-B",
        type_code: "8300",
        guid: "4e4f4445-4f53-4000-8000-00000000000b",
        size_mib: 128,
    },
    Partition {
        label: "STATE",
        type_code: "8300",
        guid: "4e4f4445-4f53-4000-8000-000000000005",
        size_mib: 64,
    },
    Partition {
        label: "EPHEMERAL",
        type_code: "8300",
        guid: "4e4f4445-4f53-4000-8000-000000000006",
        size_mib: 256,
    },
];

/// A partition placed on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// The partition.
    pub partition: Partition,
    /// The first sector.
    pub start: u64,
    /// The number of sectors.
    pub sectors: u64,
}

impl Placed {
    /// The byte offset of the partition.
    pub fn offset(&self) -> u64 {
        self.start * SECTOR
    }

    /// The size in bytes.
    pub fn bytes(&self) -> u64 {
        self.sectors * SECTOR
    }
}

/// Places `partitions` one after another from 1 MiB on, and returns them with the disk
/// size (1 MiB more at the end for the backup GPT).
pub fn place(partitions: &[Partition]) -> (Vec<Placed>, u64) {
    let mut next = MIB / SECTOR;
    let placed = partitions
        .iter()
        .map(|&partition| {
            let sectors = partition.size_mib * MIB / SECTOR;
            let placed = Placed {
                partition,
                start: next,
                sectors,
            };
            next += sectors;
            placed
        })
        .collect();
    (placed, next * SECTOR + MIB)
}

/// The node's kernel parameters for a slot (`a` or `b`): the hardening parameters
/// (`hardening`, see [`Kernel::hardening_options`](super::kernel::Kernel::hardening_options)),
/// which slot, where its root image is and the image's sha256, which the agent checks
/// before mounting it. Direct kernel boots (the QEMU provisioner) pass the same words.
pub fn slot_options(slot: char, rootfs_sha256: &str, hardening: &str) -> String {
    let upper = slot.to_ascii_uppercase();
    let slot = format!(
        "node.slot={slot} node.root=PARTLABEL=BOOT-{upper} node.root.sha256={rootfs_sha256}"
    );
    if hardening.is_empty() {
        slot
    } else {
        format!("{hardening} {slot}")
    }
}

/// The boot entry of a slot (`a` or `b`), passing `options` (its [`slot_options`])
/// after the console.
pub fn boot_entry(slot: char, version: &str, files: (&str, &str), options: &str) -> String {
    let upper = slot.to_ascii_uppercase();
    let (kernel_file, initramfs_file) = files;
    format!(
        "title node-os {version} (slot {upper})\n\
         linux /slot-{slot}/{kernel_file}\n\
         initrd /slot-{slot}/{initramfs_file}\n\
         options console=ttyS0,115200 console=tty0 {options}\n"
    )
}

/// `loader/loader.conf`: a fresh disk boots slot A (entries sort by name in reverse,
/// so without a default slot B would win). The default names the exact entry, never
/// a glob that could match a boot-counting trial entry (`slot-b+1.conf`), which
/// would defeat the fallback; upgrades change it through the `LoaderEntryDefault`
/// EFI variable, which takes precedence over this file.
pub const LOADER_CONF: &str = "timeout 3\neditor no\ndefault slot-a.conf\n";

/// What goes on the disk.
#[derive(Debug, Clone, Copy)]
pub struct Contents<'a> {
    /// The kernel (bzImage).
    pub vmlinuz: &'a Path,
    /// The compressed initramfs.
    pub initramfs: &'a Path,
    /// The root image.
    pub rootfs: &'a Path,
    /// The root image's sha256, for the boot entries.
    pub rootfs_sha256: &'a str,
    /// The hardening parameters of the boot entries.
    pub hardening: &'a str,
    /// systemd-boot's EFI binary.
    pub systemd_boot: &'a Path,
    /// The OS version for the boot entries' titles.
    pub version: &'a str,
}

/// Builds the raw disk at `out`; `work` is a scratch directory.
pub fn build(contents: &Contents<'_>, epoch: u64, work: &Path, out: &Path) -> Result<()> {
    let (placed, size) = place(&LAYOUT);
    let file = File::create(out).at(out)?;
    file.set_len(size).at(out)?;
    drop(file);

    let mut sgdisk = command("sgdisk");
    sgdisk.args(["-U", DISK_GUID]);
    for (index, p) in placed.iter().enumerate() {
        let n = index + 1;
        sgdisk
            .arg(format!("-n{n}:{}:{}", p.start, p.start + p.sectors - 1))
            .arg(format!("-t{n}:{}", p.partition.type_code))
            .arg(format!("-c{n}:{}", p.partition.label))
            .arg(format!("-u{n}:{}", p.partition.guid));
    }
    run(sgdisk.arg(out))?;

    let [esp, boot_a, boot_b, state, ephemeral] = placed.as_slice() else {
        unreachable!("the layout has five partitions")
    };
    esp_fill(esp, contents, epoch, work, out)?;
    for slot in [boot_a, boot_b] {
        write_at(contents.rootfs, slot, out)?;
    }
    for part in [state, ephemeral] {
        ext4(part, epoch, out)?;
    }
    Ok(())
}

/// Converts the raw disk to qcow2.
pub fn qcow2(raw: &Path, out: &Path) -> Result<()> {
    run(command("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(out))?;
    Ok(())
}

/// Formats the ESP and copies the boot loader, entries, kernels and initramfs.
fn esp_fill(
    esp: &Placed,
    contents: &Contents<'_>,
    epoch: u64,
    work: &Path,
    disk: &Path,
) -> Result<()> {
    run(command("mkfs.fat")
        .args([
            "--invariant",
            "-F",
            "32",
            "-s",
            "1",
            "-i",
            "4e4f4445",
            "-n",
            esp.partition.label,
        ])
        .arg(format!("--offset={}", esp.start))
        .arg(disk)
        .arg((esp.bytes() / 1024).to_string()))?;

    let staging = work.join("esp");
    let kernel_file = "vmlinuz";
    let initramfs_file = super::initramfs::FILE_NAME;
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "EFI/BOOT/BOOTX64.EFI".into(),
            fs::read(contents.systemd_boot).at(contents.systemd_boot)?,
        ),
        ("loader/loader.conf".into(), LOADER_CONF.into()),
    ];
    for slot in ['a', 'b'] {
        files.push((
            format!("loader/entries/slot-{slot}.conf"),
            boot_entry(
                slot,
                contents.version,
                (kernel_file, initramfs_file),
                &slot_options(slot, contents.rootfs_sha256, contents.hardening),
            )
            .into_bytes(),
        ));
        files.push((
            format!("slot-{slot}/{kernel_file}"),
            fs::read(contents.vmlinuz).at(contents.vmlinuz)?,
        ));
        files.push((
            format!("slot-{slot}/{initramfs_file}"),
            fs::read(contents.initramfs).at(contents.initramfs)?,
        ));
    }
    files.sort();
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch);
    let image = format!("{}@@{}", disk.display(), esp.offset());
    let mtools = |args: &[&std::ffi::OsStr]| {
        run(command("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-m", "-i", &image])
            .args(args))
    };
    let mut created = std::collections::BTreeSet::new();
    for (path, data) in &files {
        // Directories: copy an empty directory of the same name with -s so the
        // directory entry carries the fixed mtime (mmd would use the clock).
        for (end, _) in path.match_indices('/') {
            let dir = &path[..end];
            if !created.insert(dir) {
                continue;
            }
            let (parent, name) = dir.rsplit_once('/').unwrap_or(("", dir));
            let scratch = work.join("esp-dir");
            let empty = scratch.join(name);
            fs::create_dir_all(&empty).at(&empty)?;
            set_mtime(&empty, mtime)?;
            let target = format!("::/{parent}");
            mtools(&["-s".as_ref(), empty.as_os_str(), target.as_ref()])?;
            fs::remove_dir_all(&scratch).at(&scratch)?;
        }
        let source = staging.join(path);
        fs::create_dir_all(source.parent().expect("a file has a parent")).at(&source)?;
        fs::write(&source, data).at(&source)?;
        set_mtime(&source, mtime)?;
        let target = format!("::/{path}");
        mtools(&[source.as_os_str(), target.as_ref()])?;
    }
    fs::remove_dir_all(&staging).at(&staging)
}

fn set_mtime(path: &Path, mtime: SystemTime) -> Result<()> {
    File::open(path)
        .and_then(|f| f.set_times(FileTimes::new().set_modified(mtime).set_accessed(mtime)))
        .at(path)
}

/// Writes the file `image` raw into the partition.
fn write_at(image: &Path, partition: &Placed, disk: &Path) -> Result<()> {
    let size = fs::metadata(image).at(image)?.len();
    if size > partition.bytes() {
        return Err(BuildError::DoesNotFit {
            file: image
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            size_mib: size.div_ceil(MIB),
            partition: partition.partition.label,
            partition_mib: partition.partition.size_mib,
        });
    }
    let mut source = File::open(image).at(image)?;
    let mut target = fs::OpenOptions::new().write(true).open(disk).at(disk)?;
    target.seek(SeekFrom::Start(partition.offset())).at(disk)?;
    io::copy(&mut source, &mut target).at(disk)?;
    Ok(())
}

/// Makes an empty ext4 filesystem in the partition.
fn ext4(partition: &Placed, epoch: u64, disk: &Path) -> Result<()> {
    let guid = partition.partition.guid;
    run(command("mkfs.ext4")
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .args(["-q", "-F", "-L", partition.partition.label, "-U", guid])
        .arg(format!(
            "-Eoffset={},hash_seed={guid},root_owner=0:0,nodiscard",
            partition.offset()
        ))
        .arg(disk)
        .arg(format!("{}k", partition.bytes() / 1024)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_each_other_from_one_mib() {
        let (placed, size) = place(&LAYOUT);
        assert_eq!(placed[0].start, 2048);
        assert_eq!(placed[0].bytes(), 64 * MIB);
        for pair in placed.windows(2) {
            assert_eq!(pair[0].start + pair[0].sectors, pair[1].start);
        }
        let last = placed.last().unwrap();
        assert_eq!(size, last.offset() + last.bytes() + MIB);
        assert_eq!(size, (1 + 64 + 128 + 128 + 64 + 256 + 1) * MIB);
    }

    #[test]
    fn guids_and_labels_are_unique() {
        let mut guids: Vec<_> = LAYOUT.iter().map(|p| p.guid).chain([DISK_GUID]).collect();
        guids.sort();
        guids.dedup();
        assert_eq!(guids.len(), LAYOUT.len() + 1);
        assert!(LAYOUT.iter().all(|p| p.label.len() <= 11));
    }

    #[test]
    fn entries_name_their_slot() {
        let options = slot_options('b', "ab12", "slab_nomerge pti=on");
        let entry = boot_entry('b', "0.1.0", ("vmlinuz", "initramfs.cpio.zst"), &options);
        assert!(entry.contains("linux /slot-b/vmlinuz\n"));
        assert!(entry.contains("initrd /slot-b/initramfs.cpio.zst\n"));
        assert!(entry.contains(
            "options console=ttyS0,115200 console=tty0 slab_nomerge pti=on node.slot=b "
        ));
        assert!(entry.contains("node.root=PARTLABEL=BOOT-B node.root.sha256=ab12\n"));
        assert_eq!(
            slot_options('a', "ab12", ""),
            "node.slot=a node.root=PARTLABEL=BOOT-A node.root.sha256=ab12"
        );
        assert!(LOADER_CONF.contains("\ndefault slot-a.conf\n"));
    }
}
