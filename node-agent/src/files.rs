//! Writing the machine config's `files` below the platform's root.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use machine_config::{FileOp, FileSpec};

use crate::config_store::{StoreError, write_atomic};

/// Where a config path lands below `root` (validation already refused `..`).
fn target(root: &Path, path: &str) -> PathBuf {
    let relative: PathBuf = Path::new(path)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    root.join(relative)
}

/// Writes every file: `create` atomically replaces, `append` appends.
pub fn write_all(root: &Path, files: &[FileSpec]) -> Result<(), StoreError> {
    for file in files {
        let path = target(root, &file.path);
        let io_error = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        match file.op {
            FileOp::Create => write_atomic(&path, file.content.as_bytes(), file.permissions)?,
            FileOp::Append => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io_error)?;
                }
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(file.permissions)
                    .open(&path)
                    .and_then(|mut f| f.write_all(file.content.as_bytes()))
                    .map_err(io_error)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_land_below_the_root() {
        let root = tempfile::tempdir().unwrap();
        let files = [
            FileSpec {
                path: "/etc/motd".into(),
                content: "hello\n".into(),
                permissions: 0o644,
                op: FileOp::Create,
            },
            FileSpec {
                path: "/etc/motd".into(),
                content: "again\n".into(),
                permissions: 0o644,
                op: FileOp::Append,
            },
        ];
        write_all(root.path(), &files).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("etc/motd")).unwrap(),
            "hello\nagain\n"
        );
    }
}
