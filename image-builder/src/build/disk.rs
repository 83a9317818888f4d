//! Stage 5: the disk image, assembled in a regular file without root privileges or
//! loop devices.
//!
//! GPT (by `sgdisk`, fixed GUIDs):
//! - `EFI` (vfat, `mkfs.fat --offset --invariant`, filled with `mcopy -i IMG@@OFFSET`):
//!   systemd-boot as `\EFI\BOOT\BOOTX64.EFI`, `loader/loader.conf` and slot A only:
//!   its entry (`loader/entries/node-os-000001-a.conf`, generation 1, good) and its
//!   kernel and initramfs under `/slot-a/`;
//! - `BOOT-A`: slot A's root image (the squashfs, written raw); `BOOT-B` stays empty
//!   until the first upgrade writes slot B;
//! - `STATE`, `EPHEMERAL`: empty ext4 (`mkfs.ext4 -E offset=`), fixed UUIDs and hash
//!   seeds, times from `E2FSPROGS_FAKE_TIME`.
//!
//! Every timestamp is `SOURCE_DATE_EPOCH`; files are copied to the ESP in name order.

use std::fs::{self, File, FileTimes};
use std::io::{self, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, SystemTime};

use os_image::entry::{self, EntryName, LOADER_CONF, Slot, SlotFiles};

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
    /// The OS version for the boot entry.
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

    let [esp, boot_a, _boot_b, state, ephemeral] = placed.as_slice() else {
        unreachable!("the layout has five partitions")
    };
    esp_fill(esp, contents, epoch, work, out)?;
    write_at(contents.rootfs, boot_a, out)?;
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

/// The files of a fresh ESP (path, contents), sorted by path: the boot loader, its
/// configuration, and slot A's entry, kernel and initramfs. Slot B gets its files
/// from the first upgrade.
pub fn esp_files(contents: &Contents<'_>) -> Result<Vec<(String, Vec<u8>)>> {
    let slot = Slot::A;
    let slot_files = SlotFiles {
        kernel: "vmlinuz",
        initramfs: super::initramfs::FILE_NAME,
    };
    let options = entry::slot_options(slot, contents.rootfs_sha256, contents.hardening);
    let entry = entry::entry_text(slot, contents.version, slot_files, &options);
    let directory = slot.directory();
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "EFI/BOOT/BOOTX64.EFI".into(),
            fs::read(contents.systemd_boot).at(contents.systemd_boot)?,
        ),
        ("loader/loader.conf".into(), LOADER_CONF.into()),
        (
            format!("loader/entries/{}", EntryName::good(1, slot).file_name()),
            entry.into_bytes(),
        ),
        (
            format!("{directory}/{}", slot_files.kernel),
            fs::read(contents.vmlinuz).at(contents.vmlinuz)?,
        ),
        (
            format!("{directory}/{}", slot_files.initramfs),
            fs::read(contents.initramfs).at(contents.initramfs)?,
        ),
    ];
    files.sort();
    Ok(files)
}

/// Formats the ESP and copies the boot loader, entry, kernel and initramfs.
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
    let files = esp_files(contents)?;
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
    fn a_fresh_esp_boots_slot_a_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let path = dir.path().join(name);
            fs::write(&path, name).unwrap();
            path
        };
        let (vmlinuz, initramfs, rootfs, efi) = (
            file("vmlinuz"),
            file("initramfs"),
            file("rootfs"),
            file("efi"),
        );
        let contents = Contents {
            vmlinuz: &vmlinuz,
            initramfs: &initramfs,
            rootfs: &rootfs,
            rootfs_sha256: "ab12",
            hardening: "slab_nomerge pti=on",
            systemd_boot: &efi,
            version: "0.2.0",
        };
        let files = esp_files(&contents).unwrap();
        let paths: Vec<&str> = files.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "EFI/BOOT/BOOTX64.EFI",
                "loader/entries/node-os-000001-a.conf",
                "loader/loader.conf",
                "slot-a/initramfs.cpio.zst",
                "slot-a/vmlinuz",
            ]
        );
        let text = |path: &str| {
            let (_, data) = files.iter().find(|(p, _)| p == path).unwrap();
            String::from_utf8(data.clone()).unwrap()
        };
        let entry = text("loader/entries/node-os-000001-a.conf");
        assert_eq!(entry::entry_field(&entry, "version"), Some("0.2.0"));
        assert_eq!(entry::entry_field(&entry, "linux"), Some("/slot-a/vmlinuz"));
        assert!(entry.ends_with(
            "slab_nomerge pti=on panic=-1 node.slot=a node.root=PARTLABEL=BOOT-A node.root.sha256=ab12\n"
        ));
        assert!(!text("loader/loader.conf").contains("default"));
        assert_eq!(text("slot-a/vmlinuz"), "vmlinuz");
    }
}
