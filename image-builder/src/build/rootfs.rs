//! Stage 4: the root image, a squashfs made by `mksquashfs -reproducible` with every
//! timestamp set to `SOURCE_DATE_EPOCH` and every file owned by root. It holds
//! containerd, its runc shim, runc, the shared libraries they load, the CA
//! certificates, `/etc/os-release`, `/etc/resolv.conf`
//! (a link to `/run/resolv.conf`, which the agent writes), the kernel's configuration
//! (`/boot/config-<release>`, which the agent's hardening report reads when the kernel
//! has no `/proc/config.gz`) and empty mount points (`/system/state` for STATE, `/var`
//! for EPHEMERAL); no shell.

use std::collections::{BTreeSet, VecDeque};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::elf;
use super::error::{BuildError, IoContext, Result};
use super::inputs::Package;
use super::tool::{command, run};

/// The file name of the root image in the outputs.
pub const FILE_NAME: &str = "rootfs.squashfs";

/// Where the libraries go, as on Debian.
const LIB_DIR: &str = "lib/x86_64-linux-gnu";

/// Empty directories: mount points and directories the agent and containerd fill.
const DIRECTORIES: &[(&str, u32)] = &[
    ("dev", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("run", 0o755),
    ("tmp", 0o1777),
    ("var", 0o755),
    ("system/state", 0o700),
    ("etc/ssl/certs", 0o755),
    ("usr/bin", 0o755),
    ("boot", 0o755),
];

/// The packages the root image is made of.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// `containerd`.
    pub containerd: &'a Package,
    /// `runc`.
    pub runc: &'a Package,
    /// `ca-certificates`.
    pub ca_certificates: &'a Package,
    /// The library packages the binaries' libraries are taken from.
    pub libraries: &'a [Package],
    /// The kernel's release and its `.config`, installed as `/boot/config-<release>`.
    pub kernel_config: (&'a str, &'a Path),
}

/// The executables of the image: (package, path in the package, path in the image).
fn executables<'a>(parts: &Parts<'a>) -> [(&'a Package, &'static str, &'static str); 3] {
    [
        (parts.containerd, "usr/bin/containerd", "usr/bin/containerd"),
        (
            parts.containerd,
            "usr/bin/containerd-shim-runc-v2",
            "usr/bin/containerd-shim-runc-v2",
        ),
        (parts.runc, "usr/sbin/runc", "usr/bin/runc"),
    ]
}

/// `/etc/os-release` of the image.
pub fn os_release(version: &str) -> String {
    format!(
        "NAME=\"node-os\"\nID=node-os\nVERSION_ID={version}\nPRETTY_NAME=\"node-os {version}\"\n"
    )
}

/// Resolves `path` inside the unpacked tree `root`, following symbolic links (absolute
/// ones relative to `root`) without ever leaving it.
pub fn resolve_in(root: &Path, path: &str) -> Option<PathBuf> {
    let mut parts: Vec<String> = Vec::new();
    let mut pending: VecDeque<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match part.as_str() {
            "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        let candidate: PathBuf = root.join(parts.iter().collect::<PathBuf>()).join(&part);
        let meta = fs::symlink_metadata(&candidate).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = fs::read_link(&candidate).ok()?;
            if target.is_absolute() {
                parts.clear();
            }
            let mut next: VecDeque<String> = target
                .components()
                .filter_map(|c| match c {
                    Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
                    Component::ParentDir => Some("..".into()),
                    _ => None,
                })
                .collect();
            next.extend(pending);
            pending = next;
        } else {
            parts.push(part);
        }
    }
    Some(root.join(parts.iter().collect::<PathBuf>()))
}

/// Copies `from` to `staging/to` with `mode`.
fn install(from: &Path, staging: &Path, to: &str, mode: u32) -> Result<()> {
    let target = staging.join(to);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).at(parent)?;
    }
    fs::copy(from, &target).at(from)?;
    fs::set_permissions(&target, fs::Permissions::from_mode(mode)).at(&target)
}

/// Fills `staging` with the root image's files.
pub fn stage(parts: &Parts<'_>, staging: &Path, version: &str) -> Result<()> {
    for (dir, mode) in DIRECTORIES {
        let path = staging.join(dir);
        fs::create_dir_all(&path).at(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).at(&path)?;
    }
    // Executables, then the closure of their DT_NEEDED libraries and loaders.
    let mut queue: VecDeque<(PathBuf, String)> = VecDeque::new();
    for (package, from, to) in executables(parts) {
        let source = resolve_in(&package.root, from)
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                BuildError::Missing(format!("package {} has no /{from}", package.name))
            })?;
        install(&source, staging, to, 0o755)?;
        queue.push_back((source, to.to_owned()));
    }
    let mut installed = BTreeSet::new();
    while let Some((source, name)) = queue.pop_front() {
        let data = fs::read(&source).at(&source)?;
        let linkage = elf::linkage(&data).map_err(|reason| BuildError::BadInput {
            path: source.clone(),
            reason,
        })?;
        let wanted = linkage
            .interpreter
            .iter()
            .map(|interp| (interp.trim_start_matches('/').to_owned(), interp.clone()))
            .chain(
                linkage
                    .needed
                    .iter()
                    .map(|lib| (format!("{LIB_DIR}/{lib}"), lib.clone())),
            );
        for (target, lookup) in wanted {
            if !installed.insert(target.clone()) {
                continue;
            }
            let found = parts
                .libraries
                .iter()
                .flat_map(|p| {
                    let relative = if lookup.starts_with('/') {
                        vec![lookup.clone()]
                    } else {
                        vec![
                            format!("{LIB_DIR}/{lookup}"),
                            format!("usr/{LIB_DIR}/{lookup}"),
                        ]
                    };
                    relative.into_iter().filter_map(|r| resolve_in(&p.root, &r))
                })
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    BuildError::Missing(format!(
                        "{lookup} (needed by /{name}) is in none of the library packages"
                    ))
                })?;
            install(&found, staging, &target, 0o755)?;
            queue.push_back((found, target));
        }
    }
    // CA certificates: the bundle update-ca-certificates would generate, from the
    // package's certificates in name order.
    let ca_dir = parts.ca_certificates.root.join("usr/share/ca-certificates");
    let mut certificates = Vec::new();
    collect_crt(&ca_dir, &mut certificates)?;
    certificates.sort();
    if certificates.is_empty() {
        return Err(BuildError::Missing(
            "ca-certificates holds no certificates".into(),
        ));
    }
    let mut bundle = Vec::new();
    for certificate in &certificates {
        let pem = fs::read(certificate).at(certificate)?;
        bundle.extend_from_slice(&pem);
        if !pem.ends_with(b"\n") {
            bundle.push(b'\n');
        }
    }
    write_file(staging, "etc/ssl/certs/ca-certificates.crt", &bundle)?;
    write_file(staging, "etc/os-release", os_release(version).as_bytes())?;
    let (release, config) = parts.kernel_config;
    write_file(
        staging,
        &format!("boot/config-{release}"),
        &fs::read(config).at(config)?,
    )?;
    let resolv = staging.join("etc/resolv.conf");
    std::os::unix::fs::symlink("../run/resolv.conf", &resolv).at(&resolv)
}

fn write_file(staging: &Path, to: &str, data: &[u8]) -> Result<()> {
    let path = staging.join(to);
    fs::write(&path, data).at(&path)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).at(&path)
}

fn collect_crt(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        if path.is_dir() {
            collect_crt(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "crt") {
            out.push(path);
        }
    }
    Ok(())
}

/// Makes the squashfs `out` from `staging` with every timestamp `epoch`.
pub fn squash(staging: &Path, out: &Path, epoch: u64) -> Result<()> {
    let epoch = epoch.to_string();
    run(command("mksquashfs")
        .arg(staging)
        .arg(out)
        .args([
            "-noappend",
            "-reproducible",
            "-all-root",
            "-no-xattrs",
            "-comp",
            "zstd",
            "-quiet",
            "-no-progress",
        ])
        .args(["-mkfs-time", &epoch, "-all-time", &epoch]))?;
    // The agent hashes the image up to its size rounded to 4 KiB (a partition holds
    // more than the image), which is the file's size only while mksquashfs pads.
    let size = fs::metadata(out).at(out)?.len();
    if size % SQUASHFS_PADDING != 0 {
        return Err(BuildError::Missing(format!(
            "mksquashfs wrote {size} bytes, not a multiple of {SQUASHFS_PADDING}: the agent could not verify it"
        )));
    }
    Ok(())
}

/// The padding mksquashfs applies by default.
const SQUASHFS_PADDING: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("lib/x86_64-linux-gnu")).unwrap();
        fs::create_dir_all(root.join("lib64")).unwrap();
        fs::write(root.join("lib/x86_64-linux-gnu/ld-2.36.so"), "ld").unwrap();
        symlink(
            "/lib/x86_64-linux-gnu/ld-2.36.so",
            root.join("lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        symlink("ld-2.36.so", root.join("lib/x86_64-linux-gnu/ld.so")).unwrap();
        assert_eq!(
            resolve_in(root, "/lib64/ld-linux-x86-64.so.2").unwrap(),
            root.join("lib/x86_64-linux-gnu/ld-2.36.so")
        );
        assert_eq!(
            resolve_in(root, "lib/x86_64-linux-gnu/ld.so").unwrap(),
            root.join("lib/x86_64-linux-gnu/ld-2.36.so")
        );
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(resolve_in(root, "loop"), None);
    }

    #[test]
    fn os_release_names_the_version() {
        assert!(os_release("0.1.0").contains("VERSION_ID=0.1.0\n"));
    }
}
