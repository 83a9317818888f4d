//! Which configuration changes the agent applies live, and which need a reboot.
//!
//! Services, files and sysctls are reconciled live. Everything else (the machine type,
//! hostname, certificate SANs, network, install target and cluster settings) is read
//! once at boot: the server certificate, the network and the cluster identity are set
//! up from it, so a change takes effect only after a reboot.

use crate::types::{Cluster, Machine, MachineConfig};

/// The field paths whose change from `old` to `new` needs a reboot; empty when the
/// whole change can be applied live.
pub fn reboot_required(old: &MachineConfig, new: &MachineConfig) -> Vec<String> {
    // Exhaustive destructuring (no `..`): a field added to the schema fails to compile
    // here until it is classified.
    let MachineConfig {
        version,
        machine,
        cluster,
    } = old;
    let Machine {
        machine_type,
        hostname,
        cert_sans,
        network,
        install,
        // Applied live.
        sysctls: _,
        files: _,
        services: _,
        upgrade: _,
    } = machine;
    let Cluster { name, endpoint } = cluster;
    [
        ("version", *version != new.version),
        ("machine.type", *machine_type != new.machine.machine_type),
        ("machine.hostname", *hostname != new.machine.hostname),
        ("machine.certSANs", *cert_sans != new.machine.cert_sans),
        ("machine.network", *network != new.machine.network),
        ("machine.install", *install != new.machine.install),
        ("cluster.name", *name != new.cluster.name),
        ("cluster.endpoint", *endpoint != new.cluster.endpoint),
    ]
    .into_iter()
    .filter(|&(_, changed)| changed)
    .map(|(path, _)| path.to_owned())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Patch;
    use crate::test_support::full_bundle;

    fn reboots_for(patch: &str) -> Vec<String> {
        let old = full_bundle();
        let new = old.apply_patches(&[Patch::parse(patch).unwrap()]).unwrap();
        reboot_required(&old.config, &new.config)
    }

    #[test]
    fn live_changes_need_no_reboot() {
        for patch in [
            "machine: {sysctls: {vm.swappiness: '10'}}",
            "machine: {files: [{path: /etc/new, content: x}]}",
            "[{op: replace, path: /machine/services/1/restart, value: never}]",
            "machine: {hostname: cp-1}",
        ] {
            assert_eq!(reboots_for(patch), Vec::<String>::new(), "{patch}");
        }
    }

    #[test]
    fn boot_time_changes_are_listed() {
        for (patch, expected) in [
            ("machine: {hostname: cp-2}", &["machine.hostname"][..]),
            (
                "machine: {certSANs: [api.example.com]}",
                &["machine.certSANs"],
            ),
            (
                "machine: {network: {nameservers: [9.9.9.9]}}",
                &["machine.network"],
            ),
            ("machine: {install: {disk: /dev/sda}}", &["machine.install"]),
            (
                "{machine: {hostname: cp-2, sysctls: {vm.swappiness: '10'}}, cluster: {endpoint: 'https://cp:50000'}}",
                &["machine.hostname", "cluster.endpoint"],
            ),
        ] {
            assert_eq!(reboots_for(patch), expected, "{patch}");
        }
    }
}
