//! Stage 2: the kernel. `vmlinuz` is copied as is (it boots through UEFI and
//! bootloaders); `vmlinux`, the uncompressed ELF QEMU can boot directly through its
//! PVH entry point, is decompressed from the bzImage's payload.
//!
//! Like the kernel's `scripts/extract-vmlinux`, the payload is handed to the matching
//! decompressor (`gzip`, `xz` or `zstd`), but it is located exactly through the boot
//! protocol's setup header (`payload_offset`, `payload_length`) instead of by searching
//! for magic numbers, and the result must be an ELF file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use kernel_policy::{KernelConfig, Recommendations};

use super::error::{BuildError, IoContext, Result};
use super::tool::{command, last_line};

/// The kernel of an unpacked kernel image package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The release (`uname -r`), e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The bzImage.
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` in the unpacked package.
    pub modules: PathBuf,
    /// Its configuration, `boot/config-<release>`.
    pub config: PathBuf,
}

impl Kernel {
    /// Finds the one kernel in an unpacked package (`boot/vmlinuz-R` and
    /// `lib/modules/R` or `usr/lib/modules/R`).
    pub fn locate(root: &Path) -> Result<Self> {
        let boot = root.join("boot");
        let mut releases: Vec<String> = fs::read_dir(&boot)
            .map_err(|_| BuildError::Missing("the kernel package has no /boot".into()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| name.strip_prefix("vmlinuz-").map(str::to_owned))
            .collect();
        releases.sort();
        let [release] = releases.as_slice() else {
            return Err(BuildError::Missing(format!(
                "the kernel package must hold exactly one /boot/vmlinuz-*, found {}",
                releases.len()
            )));
        };
        let modules = ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|dir| root.join(dir).join(release))
            .find(|dir| dir.is_dir())
            .ok_or_else(|| {
                BuildError::Missing(format!("the kernel package has no modules for {release}"))
            })?;
        Ok(Self {
            release: release.clone(),
            vmlinuz: boot.join(format!("vmlinuz-{release}")),
            modules,
            config: boot.join(format!("config-{release}")),
        })
    }

    /// The KSPP command-line parameters this kernel should boot with, space-separated:
    /// those of the built-in policy that apply to its configuration
    /// ([`Recommendations::cmdline_for`]), e.g. `init_on_alloc=1 slab_nomerge pti=on`.
    pub fn hardening_options(&self) -> Result<String> {
        let text = fs::read_to_string(&self.config).map_err(|_| {
            BuildError::Missing(format!(
                "the kernel package has no /boot/config-{} (the hardening parameters of \
                 the command line depend on it)",
                self.release
            ))
        })?;
        let bad = |reason: String| BuildError::BadInput {
            path: self.config.clone(),
            reason,
        };
        let config = KernelConfig::parse(&text).map_err(|err| bad(err.to_string()))?;
        let policy = Recommendations::embedded().map_err(|err| bad(err.to_string()))?;
        let params: Vec<String> = policy
            .cmdline_for(&config)
            .iter()
            .map(|param| param.as_arg())
            .collect();
        Ok(params.join(" "))
    }

    /// Makes sure `modules.dep` exists (Debian generates it at install time, so an
    /// unpacked package lacks it) by running `depmod -b` on the unpacked tree, and
    /// returns its text.
    pub fn modules_dep(&self, root: &Path) -> Result<String> {
        let path = self.modules.join("modules.dep");
        if !path.exists() {
            super::tool::run(
                command("depmod")
                    .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
                    .arg("-b")
                    .arg(root)
                    .arg(&self.release),
            )?;
        }
        fs::read_to_string(&path).at(path)
    }
}

/// The compression of a bzImage payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (`CONFIG_KERNEL_GZIP`).
    Gzip,
    /// xz (`CONFIG_KERNEL_XZ`).
    Xz,
    /// zstd (`CONFIG_KERNEL_ZSTD`).
    Zstd,
}

impl Compression {
    /// The decompressor command line, reading stdin and writing stdout.
    fn decompressor(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Self::Gzip => ("gzip", &["-dc"]),
            // The payload ends with the decompressed size, which is not an xz stream.
            Self::Xz => ("xz", &["-dc", "--single-stream"]),
            Self::Zstd => ("zstd", &["-dcq"]),
        }
    }
}

/// Locates the compressed kernel in a bzImage: its compression and byte range.
pub fn payload(bzimage: &[u8]) -> Result<(Compression, &[u8]), String> {
    if bzimage.get(0x202..0x206) != Some(b"HdrS") {
        return Err("not a bzImage (no HdrS setup header)".into());
    }
    let u32_at = |at: usize| {
        bzimage
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    };
    let setup_sects = match bzimage[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let (Some(offset), Some(length)) = (u32_at(0x248), u32_at(0x24c)) else {
        return Err("truncated setup header".into());
    };
    let start = (setup_sects + 1) * 512 + offset;
    let data = bzimage
        .get(start..start + length)
        .ok_or("payload_offset/payload_length point past the end of the file")?;
    let compression = if data.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if data.starts_with(b"\xfd7zXZ\0") {
        Compression::Xz
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        return Err("the payload is not gzip, xz or zstd compressed".into());
    };
    Ok((compression, data))
}

/// Decompresses the bzImage at `vmlinuz` to the ELF `vmlinux` at `out`; `work` is a
/// scratch directory.
pub fn extract_vmlinux(vmlinuz: &Path, work: &Path, out: &Path) -> Result<()> {
    let bzimage = fs::read(vmlinuz).at(vmlinuz)?;
    let (compression, data) = payload(&bzimage).map_err(|reason| BuildError::BadInput {
        path: vmlinuz.to_owned(),
        reason,
    })?;
    let compressed = work.join("vmlinux.payload");
    fs::write(&compressed, data).at(&compressed)?;
    let (program, args) = compression.decompressor();
    let output = command(program)
        .args(args)
        .stdin(fs::File::open(&compressed).at(&compressed)?)
        .stdout(fs::File::create(out).at(out)?)
        .stderr(Stdio::piped())
        .output()
        .map_err(|err| BuildError::Command {
            command: program.into(),
            detail: format!("cannot run: {err}"),
        })?;
    fs::remove_file(&compressed).at(&compressed)?;
    // gzip complains about the trailing size word but decompresses everything; the
    // ELF magic decides.
    let mut magic = [0u8; 4];
    let read = std::io::Read::read(&mut fs::File::open(out).at(out)?, &mut magic).at(out)?;
    if read < 4 || &magic != b"\x7fELF" {
        return Err(BuildError::Command {
            command: program.into(),
            detail: last_line(&output.stderr)
                .unwrap_or_else(|| "the decompressed kernel is not an ELF file".into()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bzimage(setup_sects: u8, payload: &[u8]) -> Vec<u8> {
        let mut image = vec![0u8; (usize::from(setup_sects) + 1) * 512 + 16];
        image[0x1f1] = setup_sects;
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        image.extend_from_slice(payload);
        image.extend_from_slice(b"trailer");
        image
    }

    #[test]
    fn the_payload_is_found_through_the_setup_header() {
        let image = bzimage(27, b"\xfd7zXZ\0rest");
        let (compression, data) = payload(&image).unwrap();
        assert_eq!(compression, Compression::Xz);
        assert_eq!(data, b"\xfd7zXZ\0rest");
        assert_eq!(
            payload(&bzimage(1, &[0x1f, 0x8b, 8])).unwrap().0,
            Compression::Gzip
        );
        assert_eq!(
            payload(&bzimage(1, &[0x28, 0xb5, 0x2f, 0xfd])).unwrap().0,
            Compression::Zstd
        );
    }

    #[test]
    fn other_files_and_compressions_are_refused() {
        assert!(payload(&[0u8; 4096]).unwrap_err().contains("not a bzImage"));
        assert!(
            payload(&bzimage(1, b"BZh91AY"))
                .unwrap_err()
                .contains("not gzip, xz or zstd")
        );
        let mut image = bzimage(1, b"\xfd7zXZ\0");
        image[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(payload(&image).unwrap_err().contains("past the end"));
    }

    #[test]
    fn a_gzip_payload_decompresses_to_the_elf() {
        let dir = tempfile::tempdir().unwrap();
        let elf = crate::build::elf::tests::crafted(None, &[]);
        let raw = dir.path().join("elf");
        fs::write(&raw, &elf).unwrap();
        let gz = super::super::tool::run(command("gzip").arg("-9nc").arg(&raw)).unwrap();
        let vmlinuz = dir.path().join("vmlinuz");
        fs::write(&vmlinuz, bzimage(4, &gz)).unwrap();
        let out = dir.path().join("vmlinux");
        extract_vmlinux(&vmlinuz, dir.path(), &out).unwrap();
        assert_eq!(fs::read(out).unwrap(), elf);
    }
}
