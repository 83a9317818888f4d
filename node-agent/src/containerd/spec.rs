//! The OCI runtime spec of a container service, from its image and its service spec.
//!
//! Defaults are strict: a read-only root, no capabilities unless the config lists them,
//! no new privileges, masked and read-only kernel paths as in containerd's default
//! spec, its own PID, IPC, UTS and mount namespaces. The network is the node's (system
//! services such as etcd serve on the node's addresses).

use machine_config::ServiceSpec;
use serde_json::{Value, json};

use super::images::ResolvedImage;

/// The type URL containerd stores runtime specs under.
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// PATH for images whose config sets none.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Paths of /proc and /sys a container must not see.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths of /proc a container may read but not write.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Why a container's process cannot be derived from its image and spec.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(String);

/// The process arguments: the service's command if it has one, else the image's
/// entrypoint followed by its command.
pub fn args(service: &ServiceSpec, image: &ResolvedImage) -> Result<Vec<String>, SpecError> {
    let args = if service.command.is_empty() {
        let defaults = &image.config.config;
        let mut args = defaults.entrypoint.clone().unwrap_or_default();
        args.extend(defaults.cmd.clone().unwrap_or_default());
        args
    } else {
        service.command.clone()
    };
    if args.is_empty() {
        return Err(SpecError(format!(
            "image {} has no entrypoint or command, and the service sets no command",
            image.name
        )));
    }
    Ok(args)
}

/// The runtime spec of service `service` from `image`, placed in cgroup `cgroups_path`
/// when given (else runc's default for the container id).
pub fn runtime_spec(
    service: &ServiceSpec,
    image: &ResolvedImage,
    cgroups_path: Option<&str>,
) -> Result<Value, SpecError> {
    let defaults = &image.config.config;
    let mut env: Vec<String> = defaults.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    for (key, value) in &service.env {
        env.retain(|e| e.split_once('=').is_none_or(|(k, _)| k != key));
        env.push(format!("{key}={value}"));
    }
    let cwd = service
        .working_dir
        .clone()
        .or_else(|| defaults.working_dir.clone().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".to_owned());
    let (uid, gid) = user(defaults.user.as_deref().unwrap_or(""))?;
    let capabilities = &service.capabilities;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}),
    ];
    for mount in &service.mounts {
        let mode = if mount.read_only { "ro" } else { "rw" };
        mounts.push(json!({
            "destination": mount.destination,
            "type": "bind",
            "source": mount.source,
            "options": ["rbind", "rprivate", mode],
        }));
    }
    let mut linux = json!({
        "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        "resources": {"devices": [{"allow": false, "access": "rwm"}]},
    });
    if let Some(path) = cgroups_path {
        linux["cgroupsPath"] = json!(path);
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": args(service, image)?,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities,
                "permitted": capabilities,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": service.name,
        "mounts": mounts,
        "linux": linux,
    }))
}

/// A numeric `uid[:gid]` from an image config's `User` (empty: root). Names would need
/// the image's /etc/passwd; they are refused rather than guessed.
fn user(user: &str) -> Result<(u32, u32), SpecError> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    match (uid.parse(), gid.parse()) {
        (Ok(uid), Ok(gid)) => Ok((uid, gid)),
        _ => Err(SpecError(format!(
            "the image's user {user:?} is not numeric (uid[:gid]); named users are not supported"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd::oci::{ImageConfig, ProcessDefaults};

    fn image(entrypoint: &[&str], cmd: &[&str], user: Option<&str>) -> ResolvedImage {
        let strings = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect());
        ResolvedImage {
            name: "node-os.local/busybox:1.35".into(),
            config: ImageConfig {
                config: ProcessDefaults {
                    entrypoint: strings(entrypoint),
                    cmd: strings(cmd),
                    env: strings(&["PATH=/bin", "MODE=image"]),
                    working_dir: None,
                    user: user.map(str::to_owned),
                },
                ..Default::default()
            },
            top_chain_id: "sha256:0".into(),
        }
    }

    fn service(yaml: &str) -> ServiceSpec {
        serde_yaml_ng::from_str(yaml).expect("service")
    }

    #[test]
    fn command_replaces_entrypoint_and_cmd() {
        let image = image(&["/bin/busybox"], &["sleep", "1"], None);
        let plain = service("{name: web, image: busybox}");
        assert_eq!(
            args(&plain, &image).unwrap(),
            ["/bin/busybox", "sleep", "1"]
        );
        let own = service("{name: web, image: busybox, command: [/bin/busybox, httpd, -f]}");
        assert_eq!(args(&own, &image).unwrap(), ["/bin/busybox", "httpd", "-f"]);
        let empty = self::image(&[], &[], None);
        assert!(
            args(&plain, &empty)
                .unwrap_err()
                .to_string()
                .contains("no entrypoint")
        );
    }

    #[test]
    fn spec_is_locked_down_and_carries_the_config() {
        let image = image(&["/bin/busybox"], &[], Some("1000:1000"));
        let spec = runtime_spec(
            &service(
                "{name: web, image: busybox, env: {MODE: config}, capabilities: [CAP_NET_BIND_SERVICE],
                  mounts: [{source: /var/lib/web, destination: /www, readOnly: true}]}",
            ),
            &image,
            Some("/system/web"),
        )
        .unwrap();
        assert_eq!(spec["root"]["readonly"], true);
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(spec["process"]["user"], json!({"uid": 1000, "gid": 1000}));
        assert_eq!(spec["process"]["env"], json!(["PATH=/bin", "MODE=config"]));
        assert_eq!(
            spec["process"]["capabilities"]["effective"],
            json!(["CAP_NET_BIND_SERVICE"])
        );
        assert_eq!(spec["linux"]["cgroupsPath"], "/system/web");
        let www = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/www")
            .expect("bind mount");
        assert_eq!(www["options"], json!(["rbind", "rprivate", "ro"]));

        let none = runtime_spec(&service("{name: web, image: busybox}"), &image, None).unwrap();
        assert_eq!(none["process"]["capabilities"]["bounding"], json!([]));
        assert!(none["linux"].get("cgroupsPath").is_none());
    }

    #[test]
    fn named_users_are_refused() {
        let image = image(&["/bin/true"], &[], Some("nobody"));
        let err = runtime_spec(&service("{name: web, image: busybox}"), &image, None).unwrap_err();
        assert!(err.to_string().contains("not numeric"), "{err}");
    }
}
