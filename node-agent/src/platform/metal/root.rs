//! The immutable root: the slot's squashfs image, found by partition name, checked
//! against the sha256 the boot entry carries, mounted read-only and made `/` so that
//! container runtimes can pivot_root (they cannot while `/` is the initramfs).
//! STATE and EPHEMERAL are mounted below it by partition name.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};

use crate::platform::PlatformError;

/// Where the new root is assembled before the switch.
pub const NEW_ROOT: &str = "/newroot";

/// How long block devices get to appear after their driver loaded.
const DEVICE_WAIT: Duration = Duration::from_secs(10);

/// squashfs superblock: magic `hsqs` at 0, `bytes_used` (u64 LE) at 40.
const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
const SQUASHFS_BYTES_USED: usize = 40;
/// mksquashfs pads images to 4 KiB, and image-builder hashes the padded file.
const SQUASHFS_PADDING: u64 = 4096;

/// Finds the block device of the GPT partition named `label`, waiting for it to
/// appear (`/sys/class/block/*/uevent` carries `PARTNAME=`).
pub fn find_partition(label: &str) -> Result<PathBuf, PlatformError> {
    let started = Instant::now();
    loop {
        if let Some(device) = partition_by_label(Path::new("/sys/class/block"), label) {
            return Ok(Path::new("/dev").join(device));
        }
        if started.elapsed() > DEVICE_WAIT {
            return Err(PlatformError::Boot(format!(
                "no partition named {label} appeared within {}s (is the disk attached?)",
                DEVICE_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The device name of the partition named `label` under a `/sys/class/block`-like
/// directory.
fn partition_by_label(class_block: &Path, label: &str) -> Option<String> {
    let mut entries: Vec<_> = fs::read_dir(class_block).ok()?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    entries.into_iter().find_map(|entry| {
        let uevent = fs::read_to_string(entry.path().join("uevent")).ok()?;
        let mut name = None;
        let mut devname = None;
        for line in uevent.lines() {
            if let Some(v) = line.strip_prefix("PARTNAME=") {
                name = Some(v);
            } else if let Some(v) = line.strip_prefix("DEVNAME=") {
                devname = Some(v.to_owned());
            }
        }
        (name == Some(label)).then_some(devname).flatten()
    })
}

/// Checks that the squashfs image on `device` has the sha256 `expected` (hex); the
/// error is the console message that explains the refusal.
pub fn verify(device: &Path, expected: &str) -> Result<(), PlatformError> {
    let io = |what: &str| {
        let what = format!("{what} {}", device.display());
        move |source| PlatformError::Io { what, source }
    };
    let mut file = File::open(device).map_err(io("opening"))?;
    let mut superblock = [0u8; 96];
    file.read_exact(&mut superblock).map_err(io("reading"))?;
    if &superblock[..4] != SQUASHFS_MAGIC {
        return Err(PlatformError::Boot(format!(
            "root image refused: {} holds no squashfs image",
            device.display()
        )));
    }
    let used = u64::from_le_bytes(
        superblock[SQUASHFS_BYTES_USED..SQUASHFS_BYTES_USED + 8]
            .try_into()
            .expect("8 bytes"),
    );
    let length = used.div_ceil(SQUASHFS_PADDING) * SQUASHFS_PADDING;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(&superblock);
    let mut remaining = length.saturating_sub(superblock.len() as u64);
    let mut buffer = vec![0u8; 1 << 20];
    while remaining > 0 {
        let want = remaining.min(buffer.len() as u64) as usize;
        file.read_exact(&mut buffer[..want])
            .map_err(io("reading"))?;
        context.update(&buffer[..want]);
        remaining -= want as u64;
    }
    let actual = crate::digest::hex(context.finish().as_ref());
    if actual != expected {
        return Err(PlatformError::Boot(format!(
            "root image refused: {} has sha256 {actual}, the boot entry expects {expected} \
             (the image is corrupted or not the one this slot was installed with)",
            device.display()
        )));
    }
    Ok(())
}

/// Mounts `source` of type `fstype` at `target` (created if missing).
pub fn mount_at(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), PlatformError> {
    fs::create_dir_all(target).map_err(|source| PlatformError::Io {
        what: format!("creating mount point {}", target.display()),
        source,
    })?;
    mount(Some(source), target, Some(fstype), flags, data).map_err(|errno| PlatformError::Io {
        what: format!("mounting {source} ({fstype}) at {}", target.display()),
        source: errno.into(),
    })
}

/// Moves the mounts of the initramfs (`/dev`, `/proc`, ...) under the new root and
/// makes the new root `/` (what `switch_root` does: move it over `/`, chroot).
pub fn switch_root(new_root: &Path, carried: &[&str]) -> Result<(), PlatformError> {
    let errno = |what: String| {
        move |e: nix::errno::Errno| PlatformError::Io {
            what,
            source: e.into(),
        }
    };
    for mount_point in carried {
        let target = new_root.join(mount_point.trim_start_matches('/'));
        mount(
            Some(*mount_point),
            &target,
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(errno(format!(
            "moving {mount_point} to {}",
            target.display()
        )))?;
    }
    nix::unistd::chdir(new_root).map_err(errno(format!("entering {}", new_root.display())))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(errno("moving the new root over /".into()))?;
    nix::unistd::chroot(".").map_err(errno("chroot into the new root".into()))?;
    nix::unistd::chdir("/").map_err(errno("entering /".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn partitions_are_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (dev, uevent) in [
            ("vda", "MAJOR=254\nDEVNAME=vda\nDEVTYPE=disk\n"),
            (
                "vda2",
                "DEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=BOOT-A\n",
            ),
            ("vda4", "DEVNAME=vda4\nPARTNAME=STATE\n"),
        ] {
            fs::create_dir(dir.path().join(dev)).unwrap();
            fs::write(dir.path().join(dev).join("uevent"), uevent).unwrap();
        }
        assert_eq!(
            partition_by_label(dir.path(), "STATE").as_deref(),
            Some("vda4")
        );
        assert_eq!(
            partition_by_label(dir.path(), "BOOT-A").as_deref(),
            Some("vda2")
        );
        assert_eq!(partition_by_label(dir.path(), "BOOT-B"), None);
    }

    /// A fake squashfs: the magic, `bytes_used`, padding to 4 KiB, then garbage that
    /// a partition holds after the image.
    fn image(bytes_used: u64) -> (Vec<u8>, String) {
        let mut data = vec![7u8; bytes_used as usize];
        data[..4].copy_from_slice(SQUASHFS_MAGIC);
        data[40..48].copy_from_slice(&bytes_used.to_le_bytes());
        data.resize(bytes_used.div_ceil(4096) as usize * 4096, 0);
        let hash = crate::digest::sha256_hex(&data);
        data.extend_from_slice(&[0xee; 8192]);
        (data, hash)
    }

    #[test]
    fn the_image_hash_covers_the_padded_image_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        let (data, hash) = image(10_000);
        fs::write(&path, &data).unwrap();
        verify(&path, &hash).unwrap();

        let mut corrupted = data.clone();
        corrupted[5000] ^= 1;
        fs::File::create(&path)
            .unwrap()
            .write_all(&corrupted)
            .unwrap();
        let err = verify(&path, &hash).unwrap_err().to_string();
        assert!(err.contains("root image refused"), "{err}");
        assert!(err.contains(&hash), "{err}");

        fs::write(&path, vec![0u8; 8192]).unwrap();
        let err = verify(&path, &hash).unwrap_err().to_string();
        assert!(err.contains("no squashfs image"), "{err}");
    }
}
