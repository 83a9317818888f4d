//! Stage 4, continued: the OCI images the root image ships, as layout tar files in
//! [`IMAGES_DIR`], for the node agent to import into containerd. Each is made from one
//! Debian package by [`crate::oci`], named `<repository>:<the package's upstream
//! version>`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::error::{BuildError, IoContext, Result};
use super::inputs::Package;
use super::manifest::{ShippedImage, sha256_bytes};
use crate::oci::contents::{Contents, LinkSpec, upstream_tag};
use crate::oci::{Config, Image, Reference};

/// Where the layouts are in the root image (relative to `/`).
pub const IMAGES_DIR: &str = "usr/share/node-os/images";

/// An image the root image ships.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// The Debian package its files come from.
    pub package: &'static str,
    /// Its name without the tag; the tag is the package's upstream version.
    pub repository: &'static str,
    /// Its file in [`IMAGES_DIR`].
    pub file: &'static str,
    /// The executable the package must hold.
    pub executable: &'static str,
    /// Names linked to the executable in its directory (busybox's applets).
    pub applets: &'static [&'static str],
    /// The default command.
    pub cmd: &'static [&'static str],
}

/// The images every root image ships. busybox is the test workload: a static
/// shell and tools in 1 MB, enough for a container service that prints and sleeps.
pub const WORKLOADS: &[Workload] = &[Workload {
    package: "busybox-static",
    repository: "node-os.local/busybox",
    file: "busybox.tar",
    executable: "bin/busybox",
    applets: &[
        "cat", "cp", "date", "echo", "env", "false", "grep", "head", "hostname", "id", "kill",
        "ln", "ls", "mkdir", "mv", "ps", "pwd", "rm", "sh", "sleep", "tail", "test", "touch",
        "true", "uname", "wc",
    ],
    cmd: &["sh"],
}];

impl Workload {
    /// The image, from its package (unpacked).
    pub fn image(&self, package: &Package) -> Result<Image> {
        let reference = upstream_tag(&package.version)
            .and_then(|tag| {
                format!("{}:{tag}", self.repository)
                    .parse::<Reference>()
                    .ok()
            })
            .ok_or_else(|| {
                BuildError::Missing(format!(
                    "package {} version {} gives no image tag",
                    package.name, package.version
                ))
            })?;
        if !package.root.join(self.executable).is_file() {
            return Err(BuildError::Missing(format!(
                "package {} has no /{}",
                package.name, self.executable
            )));
        }
        let (dir, name) = self
            .executable
            .rsplit_once('/')
            .unwrap_or(("", self.executable));
        let links: Vec<LinkSpec> = self
            .applets
            .iter()
            .map(|applet| LinkSpec {
                path: format!("{dir}/{applet}"),
                target: name.to_owned(),
            })
            .collect();
        let layer = Contents {
            packages: std::slice::from_ref(package),
            files: &[],
            links: &links,
        }
        .layer()?;
        Ok(Image {
            reference,
            config: Config {
                cmd: self.cmd.iter().map(|&arg| arg.to_owned()).collect(),
                ..Config::default()
            },
            layer,
        })
    }
}

/// Writes every workload's layout into `staging`'s [`IMAGES_DIR`], every file with
/// the mtime `epoch`; `packages` holds each workload's package, in [`WORKLOADS`]
/// order. Returns the manifest's records.
pub fn stage(packages: &[Package], staging: &Path, epoch: u64) -> Result<Vec<ShippedImage>> {
    // Every directory of the path, with its mode set: the build's umask must not show.
    let mut dir = staging.to_owned();
    for component in IMAGES_DIR.split('/') {
        dir.push(component);
        fs::create_dir_all(&dir).at(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).at(&dir)?;
    }
    WORKLOADS
        .iter()
        .zip(packages)
        .map(|(workload, package)| {
            let image = workload.image(package)?;
            let layout = image.layout(epoch);
            let path = dir.join(workload.file);
            fs::write(&path, &layout.tar).at(&path)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).at(&path)?;
            Ok(ShippedImage {
                name: image.reference.to_string(),
                path: format!("/{IMAGES_DIR}/{}", workload.file),
                digest: layout.manifest.digest,
                size: layout.tar.len() as u64,
                sha256: sha256_bytes(&layout.tar),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tar::read;
    use std::path::PathBuf;

    fn busybox_package(dir: &Path) -> Package {
        let root = dir.join("tree");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/busybox"), "\x7fELF").unwrap();
        fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
        Package {
            name: "busybox-static".into(),
            version: "1:1.35.0-4+deb12u1+b1".into(),
            sha256: "00".into(),
            root,
            depends: Vec::new(),
        }
    }

    #[test]
    fn busybox_is_named_by_its_upstream_version_with_applets() {
        let dir = tempfile::tempdir().unwrap();
        let image = WORKLOADS[0].image(&busybox_package(dir.path())).unwrap();
        assert_eq!(image.reference.to_string(), "node-os.local/busybox:1.35.0");
        assert_eq!(image.config.cmd, ["sh"]);
        let entries = read::entries(&crate::build::tar::write(&image.layer, 0));
        let sh = entries.iter().find(|e| e.path == "bin/sh").unwrap();
        assert_eq!((sh.typeflag, sh.link.as_str()), (b'2', "busybox"));
        assert!(entries.iter().any(|e| e.path == "bin/sleep"));
    }

    #[test]
    fn a_package_without_the_executable_is_refused() {
        let package = Package {
            name: "busybox-static".into(),
            version: "1.35.0-1".into(),
            sha256: "00".into(),
            root: PathBuf::from("/nonexistent"),
            depends: Vec::new(),
        };
        let err = WORKLOADS[0].image(&package).unwrap_err().to_string();
        assert_eq!(err, "package busybox-static has no /bin/busybox");
    }

    #[test]
    fn staged_layouts_are_recorded_and_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let packages = [busybox_package(dir.path())];
        let mut staged = Vec::new();
        for name in ["one", "two"] {
            let staging = dir.path().join(name);
            let records = stage(&packages, &staging, 1_735_689_600).unwrap();
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].name, "node-os.local/busybox:1.35.0");
            assert_eq!(records[0].path, "/usr/share/node-os/images/busybox.tar");
            let tar = fs::read(staging.join("usr/share/node-os/images/busybox.tar")).unwrap();
            assert_eq!(records[0].sha256, sha256_bytes(&tar));
            assert_eq!(records[0].size, tar.len() as u64);
            staged.push((records, tar));
        }
        assert!(staged[0] == staged[1], "two stagings differ");
    }
}
