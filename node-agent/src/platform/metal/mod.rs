//! The `metal` platform: the agent as PID 1 of a machine (or VM).
//!
//! Boot, in [`MetalPlatform::prepare`]: the kernel filesystems, the kernel modules of
//! the initramfs, the slot's root image (checked against the boot entry's sha256,
//! mounted read-only), STATE and EPHEMERAL by partition name, then the switch into
//! the new root and cgroup v2. Network, hostname and resolv.conf follow once the
//! configuration is known ([`network`]). Reboot and power-off unmount the disks and
//! call reboot(2).
//!
//! **Architecture Invariant:** `/` is the read-only root image; everything writable
//! is a named mount: `/system/state` (STATE: config, certificates), `/var`
//! (EPHEMERAL: containerd, logs), `/run` and `/tmp` (memory).

mod cmdline;
mod modules;
pub mod network;
mod root;
mod slots;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use nix::mount::{MntFlags, MsFlags, umount2};
use nix::sys::reboot::{RebootMode, reboot};

use super::{Platform, PlatformError};
use crate::containerd::ContainerdPaths;
use crate::upgrade::BootSlots;
use cmdline::BootParameters;
use os_image::entry::Slot;

/// The state directory on metal: the STATE partition's mount point.
pub const STATE_DIR: &str = "/system/state";
/// Where EPHEMERAL is mounted.
const EPHEMERAL_DIR: &str = "/var";
/// The module list image-builder writes into the initramfs.
const MODULES_ORDER: &str = "/etc/modules.order";
/// Where services' cgroups live.
const CGROUP_ROOT: &str = "/sys/fs/cgroup/system";
/// The controllers delegated to services' cgroups.
const CGROUP_CONTROLLERS: &str = "+cpu +memory +pids +io";
/// resolv.conf is written to memory; the root image's `/etc/resolv.conf` links here.
const RESOLV_CONF: &str = "/run/resolv.conf";
/// QEMU's fw_cfg entry the provisioner passes the configuration in
/// (`-fw_cfg name=opt/org.node-os/config,file=...`).
const FW_CFG_CONFIG: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/org.node-os/config/raw";
/// Where the configuration's files may go: everything else is the read-only root.
const WRITABLE_FILE_ROOTS: &[&str] = &["/var", "/run"];
/// How long the first DHCP lease may take before the boot goes on without it.
const DHCP_WAIT: Duration = Duration::from_secs(10);
/// How long a failed boot shows its error before the machine restarts (so that a
/// bad slot counts as a failed try and the boot loader falls back).
pub const FAILED_BOOT_RESTART: Duration = Duration::from_secs(10);

/// The agent as PID 1.
#[derive(Default)]
pub struct MetalPlatform {
    /// The network's background work (DHCP renewals), kept for the agent's life.
    network: Mutex<Option<network::Configured>>,
    /// The booted slot and the mounted ESP, or why this boot has no slots.
    slots: OnceLock<Result<Slot, String>>,
}

impl std::fmt::Debug for MetalPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetalPlatform").finish_non_exhaustive()
    }
}

impl MetalPlatform {
    /// The metal platform (nothing happens until [`Platform::prepare`]).
    pub fn new() -> Self {
        Self::default()
    }
}

/// The kernel filesystems of the initramfs, carried into the new root.
const KERNEL_MOUNTS: &[(&str, &str, &str, MsFlags, Option<&str>)] = &[
    (
        "proc",
        "/proc",
        "proc",
        MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        Some("hidepid=0"),
    ),
    (
        "sysfs",
        "/sys",
        "sysfs",
        MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        None,
    ),
    (
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    ),
    (
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        Some("mode=0755"),
    ),
    (
        "tmpfs",
        "/tmp",
        "tmpfs",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        Some("mode=1777"),
    ),
];

/// Filesystems mounted inside `/dev` and `/sys` once they exist.
const SUB_MOUNTS: &[(&str, &str, &str, MsFlags, Option<&str>)] = &[
    (
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        Some("ptmxmode=0666,mode=0620"),
    ),
    (
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        Some("mode=1777"),
    ),
];

fn mount_all(table: &[(&str, &str, &str, MsFlags, Option<&str>)]) -> Result<(), PlatformError> {
    for (source, target, fstype, flags, data) in table {
        root::mount_at(source, Path::new(target), fstype, *flags, *data)?;
    }
    Ok(())
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PlatformError {
    let what = what.into();
    move |source| PlatformError::Io { what, source }
}

impl MetalPlatform {
    /// Mounts the ESP when the machine booted through UEFI from slot `slot`, and
    /// returns the slot.
    fn mount_esp(&self, slot: Option<&str>) -> Result<Slot, String> {
        let slot = slot
            .and_then(Slot::from_letter)
            .ok_or_else(|| "the kernel command line names no slot (node.slot=a or b)".to_owned())?;
        if !Path::new(slots::EFI_FIRMWARE).exists() {
            return Err("the kernel was booted directly, without UEFI and its boot loader".into());
        }
        let esp = root::find_partition("EFI").map_err(|e| e.to_string())?;
        root::mount_at(
            &esp.to_string_lossy(),
            Path::new(slots::ESP_DIR),
            "vfat",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("fmask=0177,dmask=0077"),
        )
        .map_err(|e| format!("mounting the ESP: {e}"))?;
        Ok(slot)
    }
}

impl Platform for MetalPlatform {
    fn name(&self) -> &'static str {
        "metal"
    }

    fn boot_time(&self) -> SystemTime {
        // /proc/uptime's first number is the time since boot.
        let uptime = fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        SystemTime::now() - Duration::from_secs_f64(uptime)
    }

    fn boot_id(&self) -> String {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| id.trim().to_owned())
            .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string())
    }

    fn prepare(&self) -> Result<(), PlatformError> {
        mount_all(KERNEL_MOUNTS)?;
        mount_all(SUB_MOUNTS)?;
        let cmdline = fs::read_to_string("/proc/cmdline").map_err(io("reading /proc/cmdline"))?;
        let parameters = BootParameters::parse(&cmdline).map_err(PlatformError::Boot)?;
        let loaded = modules::load_all(Path::new(MODULES_ORDER), &parameters)?;
        tracing::info!(loaded, "kernel modules loaded");

        let label = parameters.root_label().map_err(PlatformError::Boot)?;
        let device = root::find_partition(label)?;
        match &parameters.root_sha256 {
            Some(expected) => {
                root::verify(&device, expected)?;
                tracing::info!(device = %device.display(), "root image verified");
            }
            None => tracing::warn!(
                device = %device.display(),
                "the boot entry carries no node.root.sha256: the root image is not verified"
            ),
        }
        let new_root = Path::new(root::NEW_ROOT);
        root::mount_at(
            &device.to_string_lossy(),
            new_root,
            "squashfs",
            MsFlags::MS_RDONLY | MsFlags::MS_NODEV,
            None,
        )?;
        for (label, mount_point, flags) in [
            (
                "STATE",
                STATE_DIR,
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            ),
            (
                "EPHEMERAL",
                EPHEMERAL_DIR,
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            ),
        ] {
            let device = root::find_partition(label)?;
            root::mount_at(
                &device.to_string_lossy(),
                &new_root.join(mount_point.trim_start_matches('/')),
                "ext4",
                flags,
                None,
            )?;
        }
        let carried: Vec<&str> = KERNEL_MOUNTS.iter().map(|m| m.1).collect();
        root::switch_root(new_root, &carried)?;
        tracing::info!(
            slot = parameters.slot.as_deref().unwrap_or("?"),
            "switched into the root image"
        );

        let slots = self.mount_esp(parameters.slot.as_deref());
        if let Err(why) = &slots {
            tracing::warn!("no A/B slots this boot: {why}");
        }
        let _ = self.slots.set(slots);

        root::mount_at(
            "cgroup2",
            Path::new("/sys/fs/cgroup"),
            "cgroup2",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("nsdelegate"),
        )?;
        fs::write("/sys/fs/cgroup/cgroup.subtree_control", CGROUP_CONTROLLERS)
            .map_err(io("enabling cgroup controllers"))?;
        fs::create_dir_all(CGROUP_ROOT).map_err(io(format!("creating {CGROUP_ROOT}")))?;
        fs::write(
            Path::new(CGROUP_ROOT).join("cgroup.subtree_control"),
            CGROUP_CONTROLLERS,
        )
        .map_err(io("enabling cgroup controllers for services"))
    }

    fn root(&self) -> PathBuf {
        PathBuf::from("/")
    }

    fn cgroup_root(&self) -> Option<PathBuf> {
        Some(PathBuf::from(CGROUP_ROOT))
    }

    fn config_source(&self) -> Option<PathBuf> {
        Path::new(FW_CFG_CONFIG)
            .exists()
            .then(|| PathBuf::from(FW_CFG_CONFIG))
    }

    fn check(&self, machine: &machine_config::Machine) -> Vec<String> {
        let mut problems = super::default_check(self, machine);
        for (i, file) in machine.files.iter().enumerate() {
            if !WRITABLE_FILE_ROOTS
                .iter()
                .any(|root| Path::new(&file.path).starts_with(root))
            {
                problems.push(format!(
                    "machine.files[{i}].path: {} is on the read-only root image; files may only go under {}",
                    file.path,
                    WRITABLE_FILE_ROOTS.join(" or ")
                ));
            }
        }
        problems
    }

    fn containerd(&self) -> Option<ContainerdPaths> {
        Some(ContainerdPaths::metal())
    }

    fn configure_network<'a>(
        &'a self,
        config: &'a machine_config::Network,
        hostname: &'a str,
    ) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + 'a>> {
        Box::pin(async move {
            let mut notes = Vec::new();
            if let Err(e) = nix::unistd::sethostname(hostname) {
                notes.push(format!("setting the hostname {hostname}: {e}"));
            }
            match network::configure(config, Path::new(RESOLV_CONF), DHCP_WAIT).await {
                Ok(configured) => {
                    notes.extend(configured.notes.iter().cloned());
                    *self.network.lock().unwrap_or_else(|p| p.into_inner()) = Some(configured);
                }
                Err(e) => notes.push(format!("network: {e}")),
            }
            notes
        })
    }

    fn apply_sysctls(&self, sysctls: &BTreeMap<String, String>) -> Vec<String> {
        sysctls
            .iter()
            .filter_map(|(name, value)| {
                let path = format!("/proc/sys/{}", name.replace('.', "/"));
                fs::write(&path, value)
                    .err()
                    .map(|e| format!("sysctl {name}={value}: {e}"))
            })
            .collect()
    }

    fn boot_slots(&self) -> Result<BootSlots, String> {
        let slot = self
            .slots
            .get()
            .cloned()
            .unwrap_or_else(|| Err("the platform was not prepared".into()))?;
        Ok(BootSlots::new(
            PathBuf::from(slots::ESP_DIR),
            slot,
            Box::new(slots::DiskSlotWriter),
        ))
    }

    fn ephemeral_dir(&self) -> PathBuf {
        PathBuf::from(EPHEMERAL_DIR)
    }

    fn reboot(&self) -> Result<Infallible, PlatformError> {
        power(RebootMode::RB_AUTOBOOT)
    }

    fn shutdown(&self) -> Result<Infallible, PlatformError> {
        power(RebootMode::RB_POWER_OFF)
    }
}

/// Syncs, unmounts the disks (or leaves them read-only when something still holds
/// them) and restarts or powers off.
fn power(mode: RebootMode) -> Result<Infallible, PlatformError> {
    nix::unistd::sync();
    // vfat has no journal: a clean unmount keeps it from being left dirty. It is not
    // mounted on direct kernel boots.
    let _ = umount2(slots::ESP_DIR, MntFlags::empty());
    for mount_point in [EPHEMERAL_DIR, STATE_DIR] {
        if let Err(e) = unmount_tree(Path::new(mount_point)) {
            tracing::warn!(mount_point, error = %e, "unmounting; remounting read-only instead");
            let _ = nix::mount::mount(
                None::<&str>,
                mount_point,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            );
        }
    }
    nix::unistd::sync();
    tracing::info!(?mode, "reboot(2)");
    reboot(mode).map_err(|errno| PlatformError::Io {
        what: format!("reboot(2) {mode:?}"),
        source: errno.into(),
    })
}

/// Unmounts the mounts below `mount_point` (deepest first), then it.
fn unmount_tree(mount_point: &Path) -> nix::Result<()> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut below: Vec<String> = crate::system::mounts::parse(&mountinfo)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| Path::new(p).starts_with(mount_point) && Path::new(p) != mount_point)
        .collect();
    below.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in below {
        let _ = umount2(path.as_str(), MntFlags::MNT_DETACH);
    }
    umount2(mount_point, MntFlags::empty())
}

/// Ends a boot that cannot go on: the error stays on the console for
/// [`FAILED_BOOT_RESTART`], then the machine restarts.
pub fn failed_boot(message: &str) -> ! {
    eprintln!("node-agent: BOOT FAILED: {message}");
    eprintln!(
        "node-agent: restarting in {}s",
        FAILED_BOOT_RESTART.as_secs()
    );
    std::thread::sleep(FAILED_BOOT_RESTART);
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_AUTOBOOT);
    // reboot(2) only returns on failure; PID 1 must never exit.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(yaml: &str) -> machine_config::Machine {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn files_must_land_on_a_writable_mount() {
        let platform = MetalPlatform::new();
        let problems = platform.check(&machine(
            "type: worker\nfiles: [{path: /etc/motd, content: x}, {path: /var/lib/app.conf, content: y}, {path: /run/x, content: z}]",
        ));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("machine.files[0].path: /etc/motd is on the read-only root"),
            "{problems:?}"
        );
        // `/variable` is not below `/var`.
        let problems = platform.check(&machine(
            "type: worker\nfiles: [{path: /variable, content: x}]",
        ));
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn services_cannot_take_a_system_service_name() {
        let problems = MetalPlatform::new().check(&machine(
            "type: worker\nservices: [{name: web, command: [/bin/true]}, {name: containerd, command: [/bin/true]}]",
        ));
        assert_eq!(
            problems,
            ["machine.services[1].name: containerd is a system service of the metal platform"]
        );
    }
}
