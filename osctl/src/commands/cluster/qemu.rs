//! The QEMU provisioner: one VM per node, booted straight into the image's kernel
//! (PVH `vmlinux` on the `microvm` machine, the fastest boot under TCG) with a
//! copy-on-write overlay of the image's disk, so slots, STATE and EPHEMERAL are the
//! real ones.
//!
//! Networks: the first NIC is QEMU's user network (DHCP from QEMU; the node's API is
//! forwarded from its loopback address on this machine); the second joins the
//! cluster's private network (a QEMU multicast socket on loopback, one group port per
//! cluster), where node N has `10.5.0.(N+2)`. The node's configuration reaches it
//! through fw_cfg (`opt/org.node-os/config`), read by the agent on first boot.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use super::{NodeSpec, Started, find_in_path};
use crate::cli::{Accel, BootPath, ClusterCreate};

/// The private network's prefix; node N is `.N+2`.
const CLUSTER_NETWORK: [u8; 3] = [10, 5, 0];
/// The multicast group of the private networks (one UDP port per cluster).
const MULTICAST_GROUP: &str = "230.0.0.1";
/// Timer parameters that keep microvm from hanging early under TCG.
const TCG_TIMER_OPTIONS: &str = "tsc_early_khz=2600000 no_timer_check";
/// Debian's OVMF (package `ovmf`): the firmware, and the variable store each VM
/// gets a copy of.
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The fw_cfg name the agent reads its first configuration from.
const FW_CFG_CONFIG: &str = "opt/org.node-os/config";

/// The node's address on the cluster's private network.
pub(super) fn cluster_address(index: usize) -> Ipv4Addr {
    let [a, b, c] = CLUSTER_NETWORK;
    Ipv4Addr::new(a, b, c, u8::try_from(index + 2).unwrap_or(u8::MAX))
}

/// The node's settings: name, the names its certificate must carry, and the two
/// interfaces (DHCP on QEMU's user network, static on the private one).
pub(super) fn node_patch(node: &NodeSpec) -> String {
    let private = cluster_address(node.index);
    format!(
        "machine:\n  hostname: {name}\n  certSANs: [\"{host}\", \"{private}\"]\n  network:\n    \
         interfaces:\n      - {{name: eth0, dhcp: true}}\n      - {{name: eth1, addresses: [\"{private}/24\"]}}\n",
        name = node.name,
        host = node.address,
    )
}

/// The parts of image-builder's `manifest.json` a VM boots from.
#[derive(Debug, Deserialize)]
struct Manifest {
    kernel_options: String,
    outputs: Vec<ManifestOutput>,
}

#[derive(Debug, Deserialize)]
struct ManifestOutput {
    file: String,
}

/// Starts the VMs of one cluster.
pub(super) struct Launcher {
    qemu: PathBuf,
    vmlinux: PathBuf,
    initramfs: PathBuf,
    /// The image's disk and its format (`qcow2` or `raw`).
    disk: (PathBuf, &'static str),
    kernel_options: String,
    accel: &'static str,
    cpus: u32,
    memory_mib: u32,
    boot: BootPath,
    inject_config: bool,
    port: u16,
    multicast_port: u16,
}

impl Launcher {
    pub(super) fn new(options: &ClusterCreate) -> anyhow::Result<Self> {
        let image = options.image.as_deref().context(
            "--provisioner qemu needs --image DIR, an image built by image-builder \
             (scripts/build-image builds one)",
        )?;
        let image = std::path::absolute(image)?;
        let manifest_path = image.join("manifest.json");
        let manifest: Manifest = serde_json::from_str(
            &std::fs::read_to_string(&manifest_path)
                .with_context(|| format!("{} is not an image directory", image.display()))?,
        )
        .with_context(|| format!("reading {}", manifest_path.display()))?;
        let has = |file: &str| manifest.outputs.iter().any(|o| o.file == file);
        for file in ["vmlinux", "initramfs.cpio.zst"] {
            if !has(file) {
                bail!("the image {} has no {file}", image.display());
            }
        }
        let disk = if has("disk.qcow2") {
            (image.join("disk.qcow2"), "qcow2")
        } else if has("disk.raw") {
            (image.join("disk.raw"), "raw")
        } else {
            bail!(
                "the image {} has no disk (disk.qcow2 or disk.raw)",
                image.display()
            );
        };
        let qemu = find_in_path("qemu-system-x86_64").context(
            "qemu-system-x86_64 not found: install Debian's qemu-system-x86 (apt-get install qemu-system-x86)",
        )?;
        Ok(Self {
            qemu,
            vmlinux: image.join("vmlinux"),
            initramfs: image.join("initramfs.cpio.zst"),
            disk,
            kernel_options: manifest.kernel_options,
            accel: accelerator(options.accel),
            cpus: options.cpus,
            memory_mib: options.memory,
            boot: options.boot,
            inject_config: !options.skip_injecting_config,
            port: options.port,
            multicast_port: multicast_port(&options.name),
        })
    }

    pub(super) fn start(&self, node: &NodeSpec, config: &Path) -> anyhow::Result<Started> {
        let state = std::path::absolute(&node.state_dir)?;
        let disk = state.join("disk.qcow2");
        let created = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", self.disk.1, "-b"])
            .arg(&self.disk.0)
            .arg(&disk)
            .output()
            .context("running qemu-img (Debian's qemu-utils)")?;
        if !created.status.success() {
            bail!(
                "qemu-img create {}: {}",
                disk.display(),
                String::from_utf8_lossy(&created.stderr).trim()
            );
        }
        let console = state.join("console.log");
        let pidfile = state.join("qemu.pid");
        let mut qemu = self.command(node, &disk, &std::path::absolute(config)?)?;
        qemu.arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-daemonize")
            .arg("-pidfile")
            .arg(&pidfile);
        let output = qemu
            .output()
            .with_context(|| format!("starting {}", self.qemu.display()))?;
        if !output.status.success() {
            bail!(
                "QEMU did not start {}: {}",
                node.name,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let pid = std::fs::read_to_string(&pidfile)
            .with_context(|| format!("reading {}", pidfile.display()))?
            .trim()
            .parse()
            .with_context(|| format!("{} holds no pid", pidfile.display()))?;
        Ok(Started {
            pid,
            log: console,
            cluster_address: Some(cluster_address(node.index)),
        })
    }

    /// The QEMU command line of a node, without the console and daemon options.
    fn command(&self, node: &NodeSpec, disk: &Path, config: &Path) -> anyhow::Result<Command> {
        let index = u8::try_from(node.index).unwrap_or(u8::MAX);
        let [p1, p2] = self.multicast_port.to_be_bytes();
        let mut qemu = Command::new(&self.qemu);
        qemu.args(["-accel", self.accel, "-cpu", "max"])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-m", &format!("{}M", self.memory_mib)])
            .args(["-no-user-config", "-nodefaults", "-display", "none"]);
        // microvm has virtio-mmio devices, q35 PCI ones.
        let bus = match self.boot {
            BootPath::Direct => {
                qemu.args(["-machine", "microvm,rtc=on,acpi=on"])
                    .arg("-kernel")
                    .arg(&self.vmlinux)
                    .arg("-initrd")
                    .arg(&self.initramfs)
                    .arg("-append")
                    .arg(format!(
                        "console=ttyS0 quiet panic=5 {TCG_TIMER_OPTIONS} {}",
                        self.kernel_options
                    ));
                "device"
            }
            BootPath::Uefi => {
                let vars = node.state_dir.join("OVMF_VARS.fd");
                std::fs::copy(OVMF_VARS, &vars)
                    .with_context(|| format!("copying {OVMF_VARS} (Debian's ovmf package)"))?;
                qemu.args(["-machine", "q35"])
                    .arg("-drive")
                    .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,file={}",
                        std::path::absolute(vars)?.display()
                    ));
                "pci"
            }
        };
        qemu.arg("-drive")
            .arg(format!(
                "file={},format=qcow2,if=none,id=disk,cache=unsafe",
                disk.display()
            ))
            .args(["-device", &format!("virtio-blk-{bus},drive=disk")])
            .arg("-netdev")
            .arg(format!(
                "user,id=host,hostfwd=tcp:{}:{}-:{}",
                node.address,
                self.port,
                api::DEFAULT_API_PORT
            ))
            .arg("-device")
            .arg(format!(
                "virtio-net-{bus},netdev=host,mac=52:54:00:{p1:02x}:{p2:02x}:{index:02x}"
            ))
            .arg("-netdev")
            .arg(format!(
                "socket,id=cluster,mcast={MULTICAST_GROUP}:{},localaddr=127.0.0.1",
                self.multicast_port
            ))
            .arg("-device")
            .arg(format!(
                "virtio-net-{bus},netdev=cluster,mac=52:54:01:{p1:02x}:{p2:02x}:{index:02x}"
            ));
        if self.inject_config {
            qemu.arg("-fw_cfg")
                .arg(format!("name={FW_CFG_CONFIG},file={}", config.display()));
        }
        Ok(qemu)
    }
}

/// One multicast port per cluster name, so that two clusters' private networks
/// do not see each other.
fn multicast_port(name: &str) -> u16 {
    // FNV-1a: stable across releases, unlike the standard library's hasher.
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    20_000 + u16::try_from(hash % 10_000).expect("below 10000")
}

/// KVM when asked for, or (auto) when /dev/kvm is usable and this machine is not
/// itself a VM (nested virtualisation is rarely there); TCG otherwise.
fn accelerator(accel: Accel) -> &'static str {
    let kvm_usable = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
            && !std::fs::read_to_string("/proc/cpuinfo")
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"))
    };
    match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
        Accel::Auto if kvm_usable() => "kvm",
        Accel::Auto => "tcg",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_consecutive_private_addresses() {
        assert_eq!(cluster_address(0), Ipv4Addr::new(10, 5, 0, 2));
        assert_eq!(cluster_address(2), Ipv4Addr::new(10, 5, 0, 4));
    }

    #[test]
    fn the_node_patch_is_a_valid_configuration_patch() {
        let node = NodeSpec {
            name: "c-worker-1".into(),
            index: 1,
            address: Ipv4Addr::new(127, 0, 31, 3),
            state_dir: PathBuf::from("/tmp/x"),
        };
        let patch = machine_config::Patch::parse(&node_patch(&node)).unwrap();
        let generated =
            crate::commands::gen_config::generate("c", "10.5.0.2:50000", None, &[], &[]).unwrap();
        let bundle = generated.worker.apply_patches(&[patch]).unwrap();
        let machine = &bundle.config.machine;
        assert_eq!(machine.hostname.as_deref(), Some("c-worker-1"));
        assert_eq!(machine.cert_sans, ["127.0.31.3", "10.5.0.3"]);
        assert!(machine.network.interfaces[0].dhcp);
        assert_eq!(
            machine.network.interfaces[1].addresses[0].to_string(),
            "10.5.0.3/24"
        );
    }

    #[test]
    fn clusters_get_their_own_multicast_port() {
        assert_ne!(multicast_port("a"), multicast_port("b"));
        assert_eq!(multicast_port("a"), multicast_port("a"));
        assert!((20_000..30_000).contains(&multicast_port("osctl-default")));
    }
}
