//! Stage 1: the Debian packages the image is made of, downloaded with `apt-get download`
//! into a cache, checked against the archive's sha256, and unpacked with `dpkg-deb -x`.
//!
//! Nothing is installed on the build host. Shared libraries come from the library
//! packages the binaries' packages depend on (`libc6`, `libseccomp2`), unpacked the
//! same way; [`super::rootfs`] copies only the ones the binaries' `DT_NEEDED` entries
//! reach.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::{BuildError, IoContext, Result};
use super::manifest::{Input, sha256_file};
use super::tool::{command, run, run_text};

/// The metapackage whose dependency is the default kernel package.
pub const KERNEL_METAPACKAGE: &str = "linux-image-amd64";

/// An unpacked package.
#[derive(Debug, Clone)]
pub struct Package {
    /// The package name.
    pub name: String,
    /// The package version.
    pub version: String,
    /// The sha256 of the `.deb`.
    pub sha256: String,
    /// Where its files are unpacked (read-only: shared by builds).
    pub root: PathBuf,
    /// The names of the packages it depends on (`Depends:`, first alternatives).
    pub depends: Vec<String>,
}

impl Package {
    /// Its manifest record.
    pub fn input(&self) -> Input {
        Input {
            name: self.name.clone(),
            version: Some(self.version.clone()),
            sha256: self.sha256.clone(),
        }
    }

    /// The dependencies that are shared-library packages (`lib*`).
    pub fn library_depends(&self) -> impl Iterator<Item = &str> {
        self.depends
            .iter()
            .map(String::as_str)
            .filter(|d| d.starts_with("lib"))
    }
}

/// What `apt-cache show` says about the candidate version of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInfo {
    /// The package name.
    pub name: String,
    /// The candidate version.
    pub version: String,
    /// The file name of the `.deb` in the archive's pool.
    pub filename: String,
    /// The sha256 of the `.deb` from the archive index.
    pub sha256: String,
    /// The names of the packages it depends on (first alternatives, no versions).
    pub depends: Vec<String>,
}

/// Parses the first stanza of `apt-cache show --no-all-versions` output.
pub fn parse_show(text: &str) -> Option<PackageInfo> {
    let stanza = text.split("\n\n").next()?;
    let field = |key: &str| {
        stanza.lines().find_map(|line| {
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        })
    };
    let filename = field("Filename")?;
    Some(PackageInfo {
        name: field("Package")?,
        version: field("Version")?,
        filename: filename.rsplit('/').next()?.to_owned(),
        sha256: field("SHA256")?,
        depends: parse_depends(&field("Depends").unwrap_or_default()),
    })
}

/// The package names of a `Depends:` field: the first of each alternative, without
/// version constraints or architecture qualifiers.
pub fn parse_depends(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter_map(|item| {
            let first = item.split('|').next()?.trim();
            let name = first.split([' ', '(', ':']).next()?.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
        .collect()
}

/// The package cache: `debs/` holds downloaded packages, `trees/` their unpacked files.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating) the cache at `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        for sub in ["debs", "trees"] {
            fs::create_dir_all(dir.join(sub)).at(dir.join(sub))?;
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// What the archive says about `name`'s candidate version.
    pub fn show(&self, name: &str) -> Result<PackageInfo> {
        let text = match run_text(command("apt-cache").args(["show", "--no-all-versions", name])) {
            Ok(text) => text,
            // apt-cache could not even start: not an unknown package.
            Err(BuildError::Command { detail, .. }) if detail.starts_with("cannot run") => {
                return Err(BuildError::Command {
                    command: "apt-cache".into(),
                    detail,
                });
            }
            Err(_) => return Err(BuildError::UnknownPackage(name.to_owned())),
        };
        parse_show(&text).ok_or_else(|| BuildError::UnknownPackage(name.to_owned()))
    }

    /// The kernel image package `linux-image-amd64` currently depends on.
    pub fn default_kernel_package(&self) -> Result<String> {
        let info = self.show(KERNEL_METAPACKAGE)?;
        info.depends
            .into_iter()
            .find(|d| d.starts_with("linux-image-"))
            .ok_or_else(|| {
                BuildError::Missing(format!(
                    "{KERNEL_METAPACKAGE} depends on no linux-image package"
                ))
            })
    }

    /// Downloads (unless cached and intact), verifies and unpacks the candidate
    /// version of `name`.
    pub fn fetch(&self, name: &str) -> Result<Package> {
        let info = self.show(name)?;
        let deb = self.dir.join("debs").join(&info.filename);
        let cached = deb.exists() && sha256_file(&deb)?.0 == info.sha256;
        if !cached {
            self.download(&info, &deb)?;
        }
        let (sha256, _) = sha256_file(&deb)?;
        if sha256 != info.sha256 {
            return Err(BuildError::Checksum {
                name: info.name,
                expected: info.sha256,
                actual: sha256,
            });
        }
        let root = self.unpack(&deb, &sha256)?;
        Ok(Package {
            name: info.name,
            version: info.version,
            sha256,
            root,
            depends: info.depends,
        })
    }

    /// Unpacks a local `.deb` (e.g. a kernel built with `make bindeb-pkg`).
    pub fn local(&self, deb: &Path) -> Result<Package> {
        if !deb.is_file() {
            return Err(BuildError::BadInput {
                path: deb.to_owned(),
                reason: "no such file (expected a kernel image .deb)".into(),
            });
        }
        let fields = run_text(
            command("dpkg-deb")
                .arg("--field")
                .arg(deb)
                .args(["Package", "Version", "Depends"]),
        )
        .map_err(|err| BuildError::BadInput {
            path: deb.to_owned(),
            reason: format!("not a Debian package ({err})"),
        })?;
        let field = |key: &str| {
            fields
                .lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let (sha256, _) = sha256_file(deb)?;
        let root = self.unpack(deb, &sha256)?;
        Ok(Package {
            name: field("Package"),
            version: field("Version"),
            depends: parse_depends(&field("Depends")),
            sha256,
            root,
        })
    }

    /// `apt-get download` into a private directory of the cache, then moved into place.
    fn download(&self, info: &PackageInfo, deb: &Path) -> Result<()> {
        let tmp = tempfile::Builder::new()
            .prefix(".download-")
            .tempdir_in(self.dir.join("debs"))
            .at(self.dir.join("debs"))?;
        run(command("apt-get")
            .current_dir(tmp.path())
            .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
            .arg(format!("{}={}", info.name, info.version)))?;
        let fetched = fs::read_dir(tmp.path())
            .at(tmp.path())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| {
                BuildError::Missing(format!("apt-get download {} left no .deb", info.name))
            })?;
        fs::rename(&fetched, deb).at(deb)
    }

    /// Unpacks `deb` into `trees/<sha256>` unless already there.
    fn unpack(&self, deb: &Path, sha256: &str) -> Result<PathBuf> {
        let root = self.dir.join("trees").join(sha256);
        if root.is_dir() {
            return Ok(root);
        }
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(self.dir.join("trees"))
            .at(self.dir.join("trees"))?;
        run(command("dpkg-deb").arg("-x").arg(deb).arg(tmp.path()))?;
        fs::rename(tmp.keep(), &root).at(&root)?;
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "\
Package: runc
Version: 1.1.5+ds1-1+deb12u1
Installed-Size: 9000
Depends: libc6 (>= 2.34), libseccomp2 (>= 2.5.0) | libfoo, debconf:any
Filename: pool/main/r/runc/runc_1.1.5+ds1-1+deb12u1_amd64.deb
SHA256: 0123abcd
Description: Open Container Project - runtime

Package: runc
Version: 1.0
";

    #[test]
    fn show_output_gives_the_first_stanza() {
        let info = parse_show(SHOW).unwrap();
        assert_eq!(info.name, "runc");
        assert_eq!(info.version, "1.1.5+ds1-1+deb12u1");
        assert_eq!(info.filename, "runc_1.1.5+ds1-1+deb12u1_amd64.deb");
        assert_eq!(info.sha256, "0123abcd");
        assert_eq!(info.depends, ["libc6", "libseccomp2", "debconf"]);
    }

    #[test]
    fn incomplete_stanzas_are_refused() {
        assert_eq!(parse_show("Package: x\nVersion: 1\n"), None);
        assert_eq!(parse_show(""), None);
    }

    #[test]
    fn library_dependencies_are_the_lib_packages() {
        let info = parse_show(SHOW).unwrap();
        let package = Package {
            name: info.name,
            version: info.version,
            sha256: info.sha256,
            root: PathBuf::new(),
            depends: info.depends,
        };
        assert_eq!(
            package.library_depends().collect::<Vec<_>>(),
            ["libc6", "libseccomp2"]
        );
    }
}
