//! The rules a configuration must follow beyond what its types enforce.
//!
//! Every rule is checked, so one error lists every problem; each problem names the
//! field path it is about (`machine.services[1].dependsOn[0]`, `secrets.token`).

use std::collections::HashSet;
use std::collections::hash_map::{Entry, HashMap};
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use crate::bundle::ConfigBundle;
use crate::error::{FieldError, ValidationErrors};
use crate::order::start_order;
use crate::types::{
    CONFIG_VERSION, Cluster, FileSpec, HealthCheck, HumanDuration, Machine, MachineSecrets,
    MachineType, Network, SECRETS_KIND, ServiceSpec, Upgrade,
};

/// The shortest join token accepted: shorter tokens can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// Checks every rule on `bundle` and reports all the broken ones.
pub fn validate(bundle: &ConfigBundle) -> Result<(), ValidationErrors> {
    let ConfigBundle { config, secrets } = bundle;
    let mut problems = Problems::default();
    problems.check("version", exactly(&config.version, CONFIG_VERSION));
    machine(&mut problems, &config.machine);
    cluster(&mut problems, &config.cluster);
    secrets_document(&mut problems, secrets, config.machine.machine_type);
    problems.finish()
}

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn fail(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError::new(path, reason));
    }

    /// Records the outcome of one rule for the field at `path`.
    fn check(&mut self, path: impl Into<String>, outcome: Result<(), String>) {
        if let Err(reason) = outcome {
            self.fail(path, reason);
        }
    }

    /// Reports every key that already appeared earlier in `keys`; `path` names the
    /// field of the item at an index.
    fn unique<'a>(
        &mut self,
        what: &str,
        keys: impl IntoIterator<Item = &'a str>,
        path: impl Fn(usize) -> String,
    ) {
        let mut first_seen = HashMap::new();
        for (index, key) in keys.into_iter().enumerate() {
            match first_seen.entry(key) {
                Entry::Vacant(entry) => {
                    entry.insert(index);
                }
                Entry::Occupied(entry) => self.fail(
                    path(index),
                    format!(
                        "duplicate {what} {key:?}, already used by {}",
                        path(*entry.get())
                    ),
                ),
            }
        }
    }

    fn finish(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors { errors: self.0 })
        }
    }
}

fn machine(problems: &mut Problems, machine: &Machine) {
    if let Some(name) = &machine.hostname {
        problems.check("machine.hostname", hostname(name));
    }
    for (i, san) in machine.cert_sans.iter().enumerate() {
        problems.check(format!("machine.certSANs[{i}]"), word(san));
    }
    network(problems, &machine.network);
    for (key, value) in &machine.sysctls {
        let path = format!("machine.sysctls[{key:?}]");
        problems.check(&path, sysctl_key(key));
        problems.check(path, word(value));
    }
    files(problems, &machine.files);
    services(problems, &machine.services);
    if let Some(install) = &machine.install {
        problems.check("machine.install.disk", absolute_path(&install.disk));
    }
    upgrade(problems, &machine.upgrade);
}

fn upgrade(problems: &mut Problems, upgrade: &Upgrade) {
    for (i, key) in upgrade.trusted_keys.iter().enumerate() {
        problems.check(
            format!("machine.upgrade.trustedKeys[{i}]"),
            key.parse::<os_image::bundle::PublicKey>()
                .map(drop)
                .map_err(|e| e.to_string()),
        );
    }
    if upgrade.health_timeout.0 <= Upgrade::STABLE_FOR {
        problems.fail(
            "machine.upgrade.healthTimeout",
            format!(
                "must be longer than {}, the time every service must stay healthy",
                HumanDuration(Upgrade::STABLE_FOR)
            ),
        );
    }
    if let Some(pem) = &upgrade.ca_certificates {
        problems.check(
            "machine.upgrade.caCertificates",
            pki::tls::certificates(pem, "CA certificate")
                .map(drop)
                .map_err(|e| e.to_string()),
        );
    }
}

fn network(problems: &mut Problems, network: &Network) {
    let path = |i| format!("machine.network.interfaces[{i}]");
    for (i, interface) in network.interfaces.iter().enumerate() {
        problems.check(format!("{}.name", path(i)), interface_name(&interface.name));
        if let Some(mtu) = interface.mtu {
            problems.check(format!("{}.mtu", path(i)), self::mtu(mtu));
        }
        for (j, route) in interface.routes.iter().enumerate() {
            if let Some(gateway) = route.gateway {
                problems.check(
                    format!("{}.routes[{j}].gateway", path(i)),
                    same_family(route.network, gateway),
                );
            }
        }
    }
    problems.unique(
        "interface",
        network
            .interfaces
            .iter()
            .map(|interface| interface.name.as_str()),
        |i| format!("{}.name", path(i)),
    );
}

fn files(problems: &mut Problems, files: &[FileSpec]) {
    for (i, file) in files.iter().enumerate() {
        problems.check(
            format!("machine.files[{i}].path"),
            absolute_path(&file.path),
        );
        problems.check(
            format!("machine.files[{i}].permissions"),
            permissions(file.permissions),
        );
    }
    problems.unique("file", files.iter().map(|file| file.path.as_str()), |i| {
        format!("machine.files[{i}].path")
    });
}

fn services(problems: &mut Problems, services: &[ServiceSpec]) {
    let names: HashSet<&str> = services
        .iter()
        .map(|service| service.name.as_str())
        .collect();
    for (i, service) in services.iter().enumerate() {
        let path = format!("machine.services[{i}]");
        problems.check(format!("{path}.name"), dns_label(&service.name));
        match &service.image {
            None => {
                problems.check(format!("{path}.command"), command(&service.command));
                for field in container_only_fields(service) {
                    problems.fail(
                        format!("{path}.{field}"),
                        "only a container service (one with an image) has this",
                    );
                }
            }
            Some(image) => {
                problems.check(format!("{path}.image"), image_reference(image));
                if !service.command.is_empty() {
                    problems.check(format!("{path}.command"), command(&service.command));
                }
                for (j, mount) in service.mounts.iter().enumerate() {
                    let at = format!("{path}.mounts[{j}]");
                    problems.check(format!("{at}.source"), absolute_path(&mount.source));
                    problems.check(
                        format!("{at}.destination"),
                        absolute_path(&mount.destination).and_then(|()| {
                            if mount.destination.trim_end_matches('/').is_empty() {
                                Err("cannot be / (the image is the root)".to_owned())
                            } else {
                                Ok(())
                            }
                        }),
                    );
                }
                for (j, capability) in service.capabilities.iter().enumerate() {
                    problems.check(
                        format!("{path}.capabilities[{j}]"),
                        known_capability(capability),
                    );
                }
            }
        }
        for key in service.env.keys() {
            problems.check(format!("{path}.env[{key:?}]"), env_key(key));
        }
        if let Some(dir) = &service.working_dir {
            problems.check(format!("{path}.workingDir"), absolute_path(dir));
        }
        for (j, dependency) in service.depends_on.iter().enumerate() {
            problems.check(
                format!("{path}.dependsOn[{j}]"),
                known_dependency(dependency, &service.name, &names),
            );
        }
        if let Some(check) = &service.health_check {
            health_check(problems, &format!("{path}.healthCheck"), check);
        }
        problems.check(
            format!("{path}.stopTimeout"),
            positive(service.stop_timeout),
        );
    }
    problems.unique(
        "service",
        services.iter().map(|service| service.name.as_str()),
        |i| format!("machine.services[{i}].name"),
    );
    if let Err(cycle) = start_order(services) {
        problems.fail("machine.services", cycle.to_string());
    }
}

fn health_check(problems: &mut Problems, path: &str, check: &HealthCheck) {
    match (&check.exec, &check.tcp) {
        (Some(exec), None) => problems.check(format!("{path}.exec"), command(exec)),
        (None, Some(tcp)) => problems.check(format!("{path}.tcp"), host_port(tcp)),
        (Some(_), Some(_)) => problems.fail(path, "set exactly one of exec and tcp, not both"),
        (None, None) => problems.fail(path, "set one of exec and tcp"),
    }
    problems.check(format!("{path}.interval"), positive(check.interval));
    problems.check(
        format!("{path}.timeout"),
        positive(check.timeout).and_then(|()| {
            if check.timeout <= check.interval {
                Ok(())
            } else {
                Err(format!(
                    "{} is longer than the interval ({})",
                    check.timeout, check.interval
                ))
            }
        }),
    );
}

fn cluster(problems: &mut Problems, cluster: &Cluster) {
    problems.check("cluster.name", dns_label(&cluster.name));
    problems.check("cluster.endpoint", endpoint(&cluster.endpoint));
}

fn secrets_document(problems: &mut Problems, secrets: &MachineSecrets, machine_type: MachineType) {
    problems.check("secrets.version", exactly(&secrets.version, CONFIG_VERSION));
    problems.check("secrets.kind", exactly(&secrets.kind, SECRETS_KIND));
    problems.check(
        "secrets.ca.crt",
        match pem_label(&secrets.ca.crt) {
            Some("CERTIFICATE") => Ok(()),
            _ => Err("must be a PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned()),
        },
    );
    problems.check(
        "secrets.ca.key",
        ca_key(secrets.ca.key.as_deref(), machine_type),
    );
    if secrets.token.chars().count() < MIN_TOKEN_LEN {
        problems.fail(
            "secrets.token",
            format!("must be at least {MIN_TOKEN_LEN} characters long"),
        );
    }
}

// The rules. Each returns why its value is wrong; the caller knows which field it is.

fn exactly(value: &str, expected: &str) -> Result<(), String> {
    if value == expected {
        Ok(())
    } else {
        Err(format!("must be {expected:?}, not {value:?}"))
    }
}

/// Non-empty, without whitespace: a name, an address, a sysctl value.
fn word(value: &str) -> Result<(), String> {
    if value.is_empty() || value.contains(char::is_whitespace) {
        Err(format!(
            "{value:?} must be non-empty and contain no whitespace"
        ))
    } else {
        Ok(())
    }
}

/// A lowercase RFC 1123 label: what Kubernetes accepts as a name.
fn dns_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > 63 {
        Err(format!("{label:?} must be 1 to 63 characters long"))
    } else if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Err(format!("{label:?} may contain only a-z, 0-9 and '-'"))
    } else if label.starts_with('-') || label.ends_with('-') {
        Err(format!(
            "{label:?} must start and end with a letter or a digit"
        ))
    } else {
        Ok(())
    }
}

/// A lowercase RFC 1123 hostname: dot-separated labels, at most 253 characters.
fn hostname(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err(format!("{name:?} is longer than 253 characters"));
    }
    name.split('.')
        .try_for_each(dns_label)
        .map_err(|reason| format!("{name:?} is not a valid hostname: {reason}"))
}

/// What the kernel accepts as a link name (`dev_valid_name`).
fn interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        Err(format!("{name:?} must be 1 to 15 characters long"))
    } else if name == "." || name == ".." || name.contains(['/', ':']) {
        Err(format!(
            "{name:?} must not be '.' or '..' nor contain '/' or ':'"
        ))
    } else {
        word(name)
    }
}

fn mtu(mtu: u32) -> Result<(), String> {
    if (68..=65535).contains(&mtu) {
        Ok(())
    } else {
        Err(format!("{mtu} is outside 68..=65535"))
    }
}

fn same_family(network: IpNet, gateway: IpAddr) -> Result<(), String> {
    if network.addr().is_ipv4() == gateway.is_ipv4() {
        Ok(())
    } else {
        Err(format!(
            "{gateway} is not in the address family of {network}"
        ))
    }
}

/// A sysctl name such as `net.ipv4.ip_forward` or `kernel/panic`.
fn sysctl_key(key: &str) -> Result<(), String> {
    let allowed = key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-./".contains(&b));
    if allowed && key.contains(['.', '/']) && key.split(['.', '/']).all(|part| !part.is_empty()) {
        Ok(())
    } else {
        Err(format!(
            "{key:?} is not a sysctl name like net.ipv4.ip_forward \
             (a-z, 0-9, '_' and '-' in parts separated by '.' or '/')"
        ))
    }
}

fn absolute_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        Err(format!("{path:?} must be an absolute path"))
    } else if path.split('/').any(|part| part == "..") {
        Err(format!("{path:?} must not contain '..'"))
    } else {
        Ok(())
    }
}

fn permissions(mode: u32) -> Result<(), String> {
    if mode <= 0o7777 {
        Ok(())
    } else {
        Err(format!("{mode:#o} has bits beyond 0o7777"))
    }
}

/// A command line: a non-empty program, then its arguments.
fn command(command: &[String]) -> Result<(), String> {
    match command.first() {
        None => Err("must not be empty: the first element is the program".to_owned()),
        Some(program) if program.trim().is_empty() => {
            Err("the program (first element) must not be empty".to_owned())
        }
        Some(_) => Ok(()),
    }
}

/// The container-only fields a process service sets (by their config names).
fn container_only_fields(service: &ServiceSpec) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if !service.mounts.is_empty() {
        fields.push("mounts");
    }
    if !service.capabilities.is_empty() {
        fields.push("capabilities");
    }
    fields
}

/// An image reference as containerd names images: `[host[:port]/]path[:tag][@digest]`,
/// lowercase path components.
fn image_reference(reference: &str) -> Result<(), String> {
    let invalid = |why: &str| Err(format!("{reference:?} is not an image reference: {why}"));
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return invalid("the digest must be sha256: and 64 hex digits");
        }
    }
    // A tag follows the last ':' that comes after the last '/' (a port does not).
    let (path, tag) = match name.rfind(':') {
        Some(colon) if colon > name.rfind('/').unwrap_or(0) => {
            (&name[..colon], Some(&name[colon + 1..]))
        }
        _ => (name, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            return invalid("a tag is 1 to 128 of A-Z, a-z, 0-9, '.', '_' and '-'");
        }
    }
    let mut components = path.split('/').peekable();
    let first = components.next().unwrap_or("");
    // The first component is a registry host when more follow and it looks like one.
    let is_host = components.peek().is_some()
        && (first.contains('.') || first.contains(':') || first == "localhost");
    let rest: Vec<&str> = if is_host {
        components.collect()
    } else {
        std::iter::once(first).chain(components).collect()
    };
    let component_ok = |c: &&str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.as_bytes()[0].is_ascii_alphanumeric()
    };
    if rest.is_empty() || !rest.iter().all(component_ok) {
        return invalid("path components are lowercase letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// The Linux capabilities a container may keep.
const CAPABILITIES: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYSLOG",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_WAKE_ALARM",
];

/// A capability name as the OCI runtime spec writes it.
fn known_capability(capability: &str) -> Result<(), String> {
    if CAPABILITIES.contains(&capability) {
        Ok(())
    } else {
        Err(format!(
            "{capability:?} is not a Linux capability (names look like CAP_NET_BIND_SERVICE)"
        ))
    }
}

/// A POSIX environment variable name.
fn env_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let valid = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{key:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
        ))
    }
}

fn known_dependency(dependency: &str, service: &str, names: &HashSet<&str>) -> Result<(), String> {
    if dependency == service {
        Err("a service cannot depend on itself".to_owned())
    } else if !names.contains(dependency) {
        Err(format!("unknown service {dependency:?}"))
    } else {
        Ok(())
    }
}

fn positive(duration: HumanDuration) -> Result<(), String> {
    if duration.0.is_zero() {
        Err("must be greater than zero".to_owned())
    } else {
        Ok(())
    }
}

/// `HOST:PORT`, the host a hostname, an IPv4 address or a bracketed IPv6 address.
fn host_port(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} is not HOST:PORT"))?;
    let valid_host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ipv6) => ipv6.parse::<Ipv6Addr>().is_ok(),
        None => hostname(host).is_ok(),
    };
    if !valid_host {
        return Err(format!(
            "{host:?} is not a hostname, an IPv4 address or a bracketed IPv6 address"
        ));
    }
    match port.parse::<u16>() {
        Ok(port) if port != 0 => Ok(()),
        _ => Err(format!("port {port:?} is not a number from 1 to 65535")),
    }
}

/// `https://HOST:PORT`, nothing more.
fn endpoint(url: &str) -> Result<(), String> {
    let authority = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url:?} must start with https://"))?;
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{url:?} must be https://HOST:PORT, without user, path, query or fragment"
        ));
    }
    host_port(authority)
}

/// The label of a PEM text's first block (`CERTIFICATE`, `PRIVATE KEY`, ...).
fn pem_label(text: &str) -> Option<&str> {
    text.trim_start()
        .lines()
        .next()?
        .trim_end()
        .strip_prefix("-----BEGIN ")?
        .strip_suffix("-----")
}

fn ca_key(key: Option<&str>, machine_type: MachineType) -> Result<(), String> {
    match (machine_type, key) {
        (MachineType::Controlplane, Some(key)) => match pem_label(key) {
            Some(label) if label.ends_with("PRIVATE KEY") => Ok(()),
            _ => Err("must be a PEM private key (-----BEGIN PRIVATE KEY-----)".to_owned()),
        },
        (MachineType::Controlplane, None) => Err("control-plane nodes need the CA key".to_owned()),
        (MachineType::Worker, Some(_)) => Err("worker nodes must not carry the CA key".to_owned()),
        (MachineType::Worker, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{accepts, full_bundle, rejects};

    /// One broken rule per case, each named by its field path.
    #[test]
    fn rejects_rule_violations() {
        for (mutation, expected) in [
            (
                "{config: {version: v1}}",
                r#"version: must be "v1alpha1", not "v1""#,
            ),
            (
                "{secrets: {version: v2}}",
                r#"secrets.version: must be "v1alpha1""#,
            ),
            (
                "{secrets: {kind: Secrets}}",
                r#"secrets.kind: must be "MachineSecrets""#,
            ),
            (
                "{config: {machine: {hostname: -cp}}}",
                r#"machine.hostname: "-cp" is not a valid hostname"#,
            ),
            (
                "{config: {machine: {hostname: cp_1}}}",
                r#"machine.hostname: "cp_1" is not a valid hostname"#,
            ),
            (
                "{config: {machine: {certSANs: [ok, '']}}}",
                "machine.certSANs[1]: \"\" must be non-empty",
            ),
            (
                "[{op: replace, path: /config/machine/network/interfaces/1/name, value: eth0}]",
                r#"machine.network.interfaces[1].name: duplicate interface "eth0", already used by machine.network.interfaces[0].name"#,
            ),
            (
                "[{op: replace, path: /config/machine/network/interfaces/1/name, value: ''}]",
                "machine.network.interfaces[1].name: \"\" must be 1 to 15 characters long",
            ),
            (
                "[{op: replace, path: /config/machine/network/interfaces/0/mtu, value: 65536}]",
                "machine.network.interfaces[0].mtu: 65536 is outside 68..=65535",
            ),
            (
                "[{op: replace, path: /config/machine/network/interfaces/0/routes/1/gateway, value: 10.5.0.1}]",
                "machine.network.interfaces[0].routes[1].gateway: 10.5.0.1 is not in the address family of ::/0",
            ),
            (
                "{config: {machine: {sysctls: {forward: '1'}}}}",
                r#"machine.sysctls["forward"]: "forward" is not a sysctl name"#,
            ),
            (
                "{config: {machine: {sysctls: {NET.ipv4.x: '1'}}}}",
                r#"machine.sysctls["NET.ipv4.x"]: "#,
            ),
            (
                "{config: {machine: {sysctls: {vm.swappiness: ''}}}}",
                r#"machine.sysctls["vm.swappiness"]: "" must be non-empty"#,
            ),
            (
                "[{op: add, path: /config/machine/services/0/mounts, value: [{source: /a, destination: /b}]}]",
                "machine.services[0].mounts: only a container service (one with an image) has this",
            ),
            (
                "[{op: add, path: /config/machine/services/0/image, value: 'Busybox:1'}]",
                r#"machine.services[0].image: "Busybox:1" is not an image reference: path components are lowercase"#,
            ),
            (
                "[{op: add, path: /config/machine/services/0/image, value: 'busybox:'}]",
                r#"machine.services[0].image: "busybox:" is not an image reference: a tag is"#,
            ),
            (
                "[{op: add, path: /config/machine/services/0/image, value: 'busybox@sha256:12'}]",
                "the digest must be sha256: and 64 hex digits",
            ),
            (
                "[{op: add, path: /config/machine/services/0/image, value: busybox}, {op: add, path: /config/machine/services/0/capabilities, value: [NET_ADMIN]}]",
                r#"machine.services[0].capabilities[0]: "NET_ADMIN" is not a Linux capability"#,
            ),
            (
                "[{op: add, path: /config/machine/services/0/image, value: busybox}, {op: add, path: /config/machine/services/0/mounts, value: [{source: /data, destination: /}]}]",
                "machine.services[0].mounts[0].destination: cannot be / (the image is the root)",
            ),
            (
                "[{op: add, path: /config/machine/services/0/image, value: busybox}, {op: add, path: /config/machine/services/0/mounts, value: [{source: data, destination: /d}]}]",
                r#"machine.services[0].mounts[0].source: "data" must be an absolute path"#,
            ),
            (
                "[{op: replace, path: /config/machine/files/0/path, value: etc/app.conf}]",
                r#"machine.files[0].path: "etc/app.conf" must be an absolute path"#,
            ),
            (
                "[{op: replace, path: /config/machine/files/0/path, value: /etc/../root/x}]",
                r#"machine.files[0].path: "/etc/../root/x" must not contain '..'"#,
            ),
            (
                "[{op: replace, path: /config/machine/files/1/path, value: /etc/app/app.conf}]",
                r#"machine.files[1].path: duplicate file "/etc/app/app.conf", already used by machine.files[0].path"#,
            ),
            (
                "[{op: replace, path: /config/machine/files/0/permissions, value: 0o17777}]",
                "machine.files[0].permissions: 0o17777 has bits beyond 0o7777",
            ),
            (
                "[{op: replace, path: /config/machine/services/1/name, value: db}]",
                r#"machine.services[1].name: duplicate service "db", already used by machine.services[0].name"#,
            ),
            (
                "[{op: replace, path: /config/machine/services/0/name, value: Db}]",
                r#"machine.services[0].name: "Db" may contain only a-z, 0-9 and '-'"#,
            ),
            (
                "[{op: replace, path: /config/machine/services/0/command, value: []}]",
                "machine.services[0].command: must not be empty",
            ),
            (
                "[{op: replace, path: /config/machine/services/0/command, value: ['', --flag]}]",
                "machine.services[0].command: the program (first element) must not be empty",
            ),
            (
                "[{op: add, path: /config/machine/services/0/env/1BAD, value: x}]",
                r#"machine.services[0].env["1BAD"]: "1BAD" is not a variable name"#,
            ),
            (
                "[{op: add, path: /config/machine/services/0/workingDir, value: data}]",
                r#"machine.services[0].workingDir: "data" must be an absolute path"#,
            ),
            (
                "[{op: replace, path: /config/machine/services/1/dependsOn/0, value: cache}]",
                r#"machine.services[1].dependsOn[0]: unknown service "cache""#,
            ),
            (
                "[{op: replace, path: /config/machine/services/1/dependsOn/0, value: app}]",
                "machine.services[1].dependsOn[0]: a service cannot depend on itself",
            ),
            (
                "[{op: add, path: /config/machine/services/0/dependsOn, value: [app]}]",
                "machine.services: dependency cycle db -> app -> db",
            ),
            (
                "[{op: add, path: /config/machine/services/1/healthCheck/tcp, value: 'localhost:80'}]",
                "machine.services[1].healthCheck: set exactly one of exec and tcp, not both",
            ),
            (
                "[{op: remove, path: /config/machine/services/1/healthCheck/exec}]",
                "machine.services[1].healthCheck: set one of exec and tcp",
            ),
            (
                "[{op: replace, path: /config/machine/services/0/healthCheck/tcp, value: '127.0.0.1:0'}]",
                r#"machine.services[0].healthCheck.tcp: port "0" is not a number from 1 to 65535"#,
            ),
            (
                "[{op: replace, path: /config/machine/services/0/healthCheck/tcp, value: '127.0.0.1'}]",
                r#"machine.services[0].healthCheck.tcp: "127.0.0.1" is not HOST:PORT"#,
            ),
            (
                "[{op: replace, path: /config/machine/services/0/healthCheck/interval, value: 0s}]",
                "machine.services[0].healthCheck.interval: must be greater than zero",
            ),
            (
                "[{op: replace, path: /config/machine/services/0/healthCheck/timeout, value: 10s}]",
                "machine.services[0].healthCheck.timeout: 10s is longer than the interval (5s)",
            ),
            (
                "[{op: replace, path: /config/machine/services/1/stopTimeout, value: 0s}]",
                "machine.services[1].stopTimeout: must be greater than zero",
            ),
            (
                "{config: {machine: {upgrade: {trustedKeys: [not-a-key]}}}}",
                "machine.upgrade.trustedKeys[0]: ",
            ),
            (
                "{config: {machine: {upgrade: {trustedKeys: [AAAA]}}}}",
                "machine.upgrade.trustedKeys[0]: ",
            ),
            (
                "{config: {machine: {upgrade: {healthTimeout: 5s}}}}",
                "machine.upgrade.healthTimeout: must be longer than 5s, the time every service must stay healthy",
            ),
            (
                "{config: {machine: {upgrade: {caCertificates: 'hello'}}}}",
                "machine.upgrade.caCertificates: ",
            ),
            (
                "{config: {machine: {install: {disk: vda}}}}",
                r#"machine.install.disk: "vda" must be an absolute path"#,
            ),
            (
                "{config: {cluster: {name: Demo}}}",
                r#"cluster.name: "Demo" may contain only a-z, 0-9 and '-'"#,
            ),
            (
                "{config: {cluster: {endpoint: 'http://10.5.0.2:50000'}}}",
                "cluster.endpoint: \"http://10.5.0.2:50000\" must start with https://",
            ),
            (
                "{config: {cluster: {endpoint: 'https://10.5.0.2:50000/api'}}}",
                "cluster.endpoint: \"https://10.5.0.2:50000/api\" must be https://HOST:PORT, without user, path, query or fragment",
            ),
            (
                "{config: {cluster: {endpoint: 'https://10.5.0.2'}}}",
                r#"cluster.endpoint: "10.5.0.2" is not HOST:PORT"#,
            ),
            (
                "{secrets: {ca: {crt: not a certificate}}}",
                "secrets.ca.crt: must be a PEM certificate",
            ),
            (
                "{secrets: {ca: {key: not a key}}}",
                "secrets.ca.key: must be a PEM private key",
            ),
            (
                "{secrets: {ca: {key: null}}}",
                "secrets.ca.key: control-plane nodes need the CA key",
            ),
            (
                "{config: {machine: {type: worker}}}",
                "secrets.ca.key: worker nodes must not carry the CA key",
            ),
            (
                "{secrets: {token: short}}",
                "secrets.token: must be at least 16 characters long",
            ),
        ] {
            rejects(mutation, expected);
        }
    }

    #[test]
    fn accepts_boundary_values() {
        for mutation in [
            "{config: {cluster: {endpoint: 'https://[fd00::2]:50000'}}}",
            "{config: {cluster: {endpoint: 'https://cp.example.com:443'}}}",
            "{config: {machine: {type: worker}}, secrets: {ca: {key: null}}}",
            "{config: {machine: {hostname: null, sysctls: {net.core.somaxconn: '65535'}}}}",
            "[{op: replace, path: /config/machine/network/interfaces/0/mtu, value: 68}]",
            "[{op: replace, path: /config/machine/files/0/permissions, value: 0o7777}]",
            "[{op: replace, path: /config/machine/services/0/healthCheck/timeout, value: 5s}]",
            "{config: {machine: {upgrade: {trustedKeys: ['AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='], healthTimeout: 6s}}}}",
            // A container service: the image's entrypoint when there is no command.
            "[{op: add, path: /config/machine/services/0/image, value: 'localhost:5000/tools/busybox:1.35'}, {op: remove, path: /config/machine/services/0/command}]",
            "[{op: add, path: /config/machine/services/0/image, value: 'busybox@sha256:0123456789012345678901234567890123456789012345678901234567890123'}, {op: add, path: /config/machine/services/0/capabilities, value: [CAP_NET_BIND_SERVICE]}, {op: add, path: /config/machine/services/0/mounts, value: [{source: /var/lib/web, destination: /www, readOnly: true}]}]",
        ] {
            accepts(mutation);
        }
    }

    #[test]
    fn reports_every_problem_at_once() {
        let mut bundle = full_bundle();
        bundle.config.machine.hostname = Some("Bad".to_owned());
        bundle.config.cluster.name = "-".to_owned();
        bundle.secrets.token = String::new();
        let paths: Vec<_> = validate(&bundle)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|error| error.path)
            .collect();
        assert_eq!(paths, ["machine.hostname", "cluster.name", "secrets.token"]);
    }

    #[test]
    fn display_joins_problems() {
        let errors = ValidationErrors {
            errors: vec![FieldError::new("a", "x"), FieldError::new("b.c", "y")],
        };
        assert_eq!(errors.to_string(), "a: x; b.c: y");
    }
}
