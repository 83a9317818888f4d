//! A file tree assembled in memory for a reproducible archive: the initramfs
//! ([`super::cpio`]) and the layers and layouts of OCI images ([`super::tar`]).
//!
//! Entries are kept sorted by path, every parent directory is present, and nothing of
//! the build machine is recorded (owners, times and inode numbers are the writers'
//! fixed values), so the same additions give the same bytes in any order.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::error::{BuildError, IoContext, Result};

/// What an archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Directory,
    /// A regular file with its contents.
    File(Vec<u8>),
    /// A symbolic link to the target.
    Symlink(String),
    /// A character device.
    CharDevice {
        /// The major number.
        major: u32,
        /// The minor number.
        minor: u32,
    },
}

/// One entry of an [`Archive`], as the writers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: Kind,
    /// Its permission bits (`0o7777` at most).
    pub permissions: u32,
}

/// An archive being assembled; paths are relative (`init`, `dev/console`).
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an entry with permission bits `permissions` (e.g. `0o755`),
    /// and the missing parent directories with `0o755`. Leading slashes are ignored.
    pub fn add(&mut self, path: &str, kind: Kind, permissions: u32) {
        let path = path.trim_matches('/');
        let mut parent = path;
        while let Some((dir, _)) = parent.rsplit_once('/') {
            self.entries.entry(dir.to_owned()).or_insert(Entry {
                kind: Kind::Directory,
                permissions: 0o755,
            });
            parent = dir;
        }
        self.entries.insert(
            path.to_owned(),
            Entry {
                kind,
                permissions: permissions & 0o7777,
            },
        );
    }

    /// Adds every directory, regular file and symbolic link below `dir` under the
    /// archive path `under` (`""` for the top): an unpacked Debian package becomes part
    /// of a layer as the package would install it. Permissions are normalised (see
    /// [`normal_permissions`]), so the umask of whoever unpacked the tree does not
    /// show.
    pub fn add_tree(&mut self, dir: &Path, under: &str) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .at(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .at(dir)?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let name = name.to_str().ok_or_else(|| BuildError::BadInput {
                path: path.clone(),
                reason: "the file name is not UTF-8".into(),
            })?;
            let target = match under.trim_matches('/') {
                "" => name.to_owned(),
                under => format!("{under}/{name}"),
            };
            let meta = fs::symlink_metadata(&path).at(&path)?;
            let permissions = normal_permissions(&meta);
            if meta.is_dir() {
                self.add(&target, Kind::Directory, permissions);
                self.add_tree(&path, &target)?;
            } else if meta.is_symlink() {
                let link = fs::read_link(&path).at(&path)?;
                let link = link.to_str().ok_or_else(|| BuildError::BadInput {
                    path: path.clone(),
                    reason: "the link target is not UTF-8".into(),
                })?;
                self.add(&target, Kind::Symlink(link.to_owned()), 0o777);
            } else if meta.is_file() {
                self.add(&target, Kind::File(fs::read(&path).at(&path)?), permissions);
            } else {
                return Err(BuildError::BadInput {
                    path,
                    reason: "neither a file, a directory nor a symbolic link".into(),
                });
            }
        }
        Ok(())
    }

    /// The paths in archive order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The entries in archive order: sorted by path, so every parent comes before its
    /// children (a prefix sorts first).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries
            .iter()
            .map(|(path, entry)| (path.as_str(), entry))
    }
}

/// The permissions a file of the build machine gets in an archive: `0o755` for
/// directories and executables (any execute bit), `0o644` for everything else. Only
/// the execute bit is the author's intent; the rest depends on the umask.
pub fn normal_permissions(meta: &fs::Metadata) -> u32 {
    if meta.is_dir() || meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn parents_are_added_and_sorted_first() {
        let mut archive = Archive::new();
        archive.add("/usr/bin/tool", Kind::File(vec![1]), 0o100_755);
        archive.add("bin", Kind::Symlink("usr/bin".into()), 0o777);
        let entries: Vec<_> = archive
            .entries()
            .map(|(path, entry)| (path, entry.permissions))
            .collect();
        assert_eq!(
            entries,
            [
                ("bin", 0o777),
                ("usr", 0o755),
                ("usr/bin", 0o755),
                ("usr/bin/tool", 0o755)
            ]
        );
    }

    #[test]
    fn trees_keep_their_files_links_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/busybox"), "elf").unwrap();
        fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(root.join("bin/notes"), "text").unwrap();
        fs::set_permissions(root.join("bin/notes"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(root.join("bin"), fs::Permissions::from_mode(0o750)).unwrap();
        symlink("busybox", root.join("bin/sh")).unwrap();
        let mut archive = Archive::new();
        archive.add_tree(root, "/opt/").unwrap();
        let entries: Vec<_> = archive.entries().collect();
        let get = |path: &str| entries.iter().find(|e| e.0 == path).unwrap().1.clone();
        assert_eq!(
            archive.paths().collect::<Vec<_>>(),
            [
                "opt",
                "opt/bin",
                "opt/bin/busybox",
                "opt/bin/notes",
                "opt/bin/sh"
            ]
        );
        assert_eq!(get("opt/bin").permissions, 0o755);
        assert_eq!(get("opt/bin/busybox").kind, Kind::File(b"elf".to_vec()));
        assert_eq!(get("opt/bin/busybox").permissions, 0o755);
        assert_eq!(get("opt/bin/notes").permissions, 0o644);
        assert_eq!(get("opt/bin/sh").kind, Kind::Symlink("busybox".into()));
        assert!(Archive::new().add_tree(&root.join("missing"), "").is_err());
    }
}
