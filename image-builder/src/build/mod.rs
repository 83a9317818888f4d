//! `image-builder build`: node images from Debian packages and the node agent.
//!
//! Unlike the rest of the crate this module does I/O and runs tools (`apt-get`,
//! `dpkg-deb`, `depmod`, `zstd`, `mksquashfs`, `sgdisk`, `mkfs.fat`, `mcopy`,
//! `mkfs.ext4`, `qemu-img`); none needs root. The stages, each in its module:
//! 1. [`inputs`]: packages downloaded and unpacked into a cache;
//! 2. [`kernel`]: `vmlinuz` and the extracted `vmlinux`;
//! 3. [`initramfs`]: the agent as `/init` and the early modules ([`cpio`], [`modules`]);
//! 4. [`rootfs`]: the squashfs root image, with the OCI images of [`images`];
//! 5. [`disk`]: the GPT disk image, raw and optionally qcow2;
//! 6. [`manifest`]: inputs and outputs with their sha256.
//!
//! Everything is written into a temporary directory next to the output directory and
//! renamed to it at the end, so a failed build leaves nothing behind.

pub mod archive;
pub mod cpio;
pub mod disk;
pub mod elf;
pub mod error;
pub mod images;
pub mod initramfs;
pub mod inputs;
pub mod kernel;
pub mod manifest;
pub mod modules;
pub mod rootfs;
pub mod tar;
pub mod tool;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use error::IoContext;
pub use error::{BuildError, Result};
use inputs::{Cache, Package};
use manifest::{Input, Manifest};
use os_image::entry::{self, Slot};

/// The default `SOURCE_DATE_EPOCH` (2025-01-01T00:00:00Z).
pub const DEFAULT_SOURCE_DATE_EPOCH: u64 = 1_735_689_600;

/// The default package cache.
pub const DEFAULT_CACHE: &str = "/var/cache/node-os/image-builder";

/// The default OS version written into `/etc/os-release`, the boot entry and the
/// manifest: image-builder's own.
pub const OS_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSource {
    /// The package `linux-image-amd64` depends on.
    Default,
    /// A kernel image package of the archive.
    Package(String),
    /// A local kernel image `.deb` (e.g. from `make bindeb-pkg`).
    Deb(PathBuf),
}

/// The image formats of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiskFormat {
    /// `disk.raw`.
    Raw,
    /// `disk.qcow2` (converted from the raw disk, which is kept).
    Qcow2,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Options {
    /// The kernel.
    pub kernel: KernelSource,
    /// The static node agent binary.
    pub agent: PathBuf,
    /// The OS version ([`OS_VERSION`] unless a release says otherwise).
    pub os_version: String,
    /// The output directory; must not exist or be empty.
    pub out: PathBuf,
    /// The disk formats.
    pub formats: Vec<DiskFormat>,
    /// The package cache.
    pub cache: PathBuf,
    /// The timestamp of every file.
    pub source_date_epoch: u64,
}

/// The packages of an image, unpacked.
#[derive(Debug, Clone)]
pub struct Packages {
    /// The kernel image package.
    pub kernel: Package,
    /// `containerd`.
    pub containerd: Package,
    /// `runc`.
    pub runc: Package,
    /// `ca-certificates`.
    pub ca_certificates: Package,
    /// `systemd-boot-efi`.
    pub systemd_boot: Package,
    /// The library packages `containerd` and `runc` depend on, by name.
    pub libraries: Vec<Package>,
    /// The packages of the shipped OCI images, in [`images::WORKLOADS`] order.
    pub workloads: Vec<Package>,
}

impl Packages {
    /// Fetches (or finds in the cache) and unpacks every package.
    pub fn fetch(cache: &Cache, kernel: &KernelSource) -> Result<Self> {
        let kernel = match kernel {
            KernelSource::Default => cache.fetch(&cache.default_kernel_package()?)?,
            KernelSource::Package(name) => cache.fetch(name)?,
            KernelSource::Deb(path) => cache.local(path)?,
        };
        let containerd = cache.fetch("containerd")?;
        let runc = cache.fetch("runc")?;
        let mut library_names: Vec<&str> = containerd
            .library_depends()
            .chain(runc.library_depends())
            .collect();
        library_names.sort_unstable();
        library_names.dedup();
        let libraries = library_names
            .into_iter()
            .map(|name| cache.fetch(name))
            .collect::<Result<Vec<Package>>>()?;
        let workloads = images::WORKLOADS
            .iter()
            .map(|workload| cache.fetch(workload.package))
            .collect::<Result<Vec<Package>>>()?;
        Ok(Self {
            ca_certificates: cache.fetch("ca-certificates")?,
            systemd_boot: cache.fetch("systemd-boot-efi")?,
            kernel,
            containerd,
            runc,
            libraries,
            workloads,
        })
    }

    /// Every package.
    pub fn all(&self) -> impl Iterator<Item = &Package> {
        [
            &self.kernel,
            &self.containerd,
            &self.runc,
            &self.ca_certificates,
            &self.systemd_boot,
        ]
        .into_iter()
        .chain(&self.libraries)
        .chain(&self.workloads)
    }
}

/// Prints a stage's progress on stderr.
fn progress(stage: u8, what: &str) {
    eprintln!("image-builder: [{stage}/6] {what}");
}

/// Builds the image and returns its manifest.
pub fn build(options: &Options) -> Result<Manifest> {
    let started = Instant::now();
    let epoch = options.source_date_epoch;
    let epoch32 = u32::try_from(epoch).map_err(|_| {
        BuildError::InvalidOption(
            "SOURCE_DATE_EPOCH must be below 2^32 (cpio mtimes are 32-bit)".into(),
        )
    })?;
    // Cheap checks first: a bad agent or output directory fails before any download.
    check_os_version(&options.os_version)?;
    let agent = initramfs::check_agent(&options.agent)?;
    let agent_sha256 = manifest::sha256_bytes(&agent);
    if fs::read_dir(&options.out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BuildError::OutputExists(options.out.clone()));
    }
    let parent = parent_dir(&options.out);
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempdir_in(parent)
        .at(parent)?;
    let out = tmp.path().join("out");
    let work = tmp.path().join("work");
    for dir in [&out, &work] {
        fs::create_dir(dir).at(dir)?;
    }

    progress(1, "inputs: downloading and unpacking packages");
    let packages = Packages::fetch(&Cache::open(&options.cache)?, &options.kernel)?;
    for package in packages.all() {
        eprintln!("image-builder:       {} {}", package.name, package.version);
    }

    progress(2, "kernel: vmlinuz and vmlinux");
    let kernel = kernel::Kernel::locate(&packages.kernel.root)?;
    let vmlinuz = out.join("vmlinuz");
    fs::copy(&kernel.vmlinuz, &vmlinuz).at(&vmlinuz)?;
    kernel::extract_vmlinux(&vmlinuz, &work, &out.join("vmlinux"))?;
    let hardening = kernel.hardening_options()?;
    eprintln!("image-builder:       {} {hardening}", kernel.release);

    progress(3, "initramfs: agent and early modules");
    let order = initramfs::module_order(&kernel, &packages.kernel.root)?;
    let archive = initramfs::assemble(agent, &kernel, &order)?;
    let initramfs_path = out.join(initramfs::FILE_NAME);
    initramfs::write(&archive, epoch32, &work, &initramfs_path)?;

    progress(
        4,
        "root image: containerd, runc, libraries, certificates, OCI images",
    );
    let staging = work.join("rootfs");
    rootfs::stage(
        &rootfs::Parts {
            containerd: &packages.containerd,
            runc: &packages.runc,
            ca_certificates: &packages.ca_certificates,
            libraries: &packages.libraries,
            kernel_config: (&kernel.release, &kernel.config),
        },
        &staging,
        &options.os_version,
    )?;
    let shipped = images::stage(&packages.workloads, &staging, epoch)?;
    let rootfs_path = out.join(rootfs::FILE_NAME);
    rootfs::squash(&staging, &rootfs_path, epoch)?;
    let (rootfs_sha256, _) = manifest::sha256_file(&rootfs_path)?;

    progress(5, "disk image");
    let systemd_boot_efi = packages
        .systemd_boot
        .root
        .join("usr/lib/systemd/boot/efi/systemd-bootx64.efi");
    let raw = out.join(disk::RAW);
    disk::build(
        &disk::Contents {
            vmlinuz: &vmlinuz,
            initramfs: &initramfs_path,
            rootfs: &rootfs_path,
            rootfs_sha256: &rootfs_sha256,
            hardening: &hardening,
            systemd_boot: &systemd_boot_efi,
            version: &options.os_version,
        },
        epoch,
        &work,
        &raw,
    )?;
    if options.formats.contains(&DiskFormat::Qcow2) {
        disk::qcow2(&raw, &out.join(disk::QCOW2))?;
    }
    if !options.formats.contains(&DiskFormat::Raw) {
        fs::remove_file(&raw).at(&raw)?;
    }

    progress(6, "manifest");
    let mut inputs: Vec<Input> = packages.all().map(Package::input).collect();
    inputs.push(Input {
        name: "node-agent".into(),
        version: None,
        sha256: agent_sha256,
    });
    let mut names: Vec<String> = fs::read_dir(&out)
        .at(&out)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .at(&out)?;
    names.sort();
    let outputs = names
        .iter()
        .map(|name| manifest::output(&out, name))
        .collect::<Result<Vec<_>>>()?;
    let manifest = Manifest {
        source_date_epoch: epoch,
        os_version: options.os_version.clone(),
        kernel_release: kernel.release.clone(),
        kernel_options: entry::slot_options(Slot::A, &rootfs_sha256, &hardening),
        kernel_hardening: hardening,
        inputs,
        outputs,
        images: shipped,
    }
    .sorted();
    let manifest_path = out.join("manifest.json");
    fs::write(&manifest_path, manifest.to_json()).at(&manifest_path)?;

    publish(&out, &options.out)?;
    eprintln!(
        "image-builder: done in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        options.out.display()
    );
    Ok(manifest)
}

/// Refuses an OS version that cannot go into `/etc/os-release` and a boot entry's
/// `version` line as one word: empty, or with spaces, quotes or control characters.
pub fn check_os_version(version: &str) -> Result<()> {
    if version.is_empty()
        || !version
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\' | '`' | '$'))
    {
        return Err(BuildError::InvalidOption(format!(
            "OS version {version:?}: must be one word of printable ASCII without quotes, \
             e.g. 0.2.0"
        )));
    }
    Ok(())
}

/// The prefix of the temporary files and directories written next to an output
/// until it is complete.
pub(crate) const TEMP_PREFIX: &str = ".image-builder-";

/// The directory an output path is in (`.` for a bare file name): where its temporary
/// twin is written, so the final rename stays on one filesystem.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Moves the finished output directory into place (an empty directory there is
/// replaced).
fn publish(built: &Path, target: &Path) -> Result<()> {
    if target.is_dir() {
        fs::remove_dir(target).at(target)?;
    }
    fs::rename(built, target).at(target)
}
