//! The configuration as kept in the state directory.
//!
//! Layout: `config.yaml` (running), `config.staged.yaml` (applied at the next boot).
//! **Architecture Invariant:** a configuration file is only ever replaced by an atomic
//! write (write a temporary file, fsync, rename, fsync the directory), after the new
//! configuration has been parsed and validated; a crash leaves the old or the new file,
//! never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use machine_config::ConfigBundle;

/// Errors reading or writing the stored configuration.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory has no configuration and none was given.
    #[error("no configuration in {0} and no --config given")]
    NoConfig(PathBuf),
    /// A stored or given configuration does not parse or validate.
    #[error("configuration {path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why it was rejected.
        #[source]
        source: machine_config::ConfigError,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The configuration files of one node's state directory.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    dir: PathBuf,
}

impl ConfigStore {
    /// The store inside `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.to_path_buf(),
        }
    }

    fn running_path(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    fn staged_path(&self) -> PathBuf {
        self.dir.join("config.staged.yaml")
    }

    /// The configuration this boot runs with: a staged one is promoted first; else the
    /// stored one; else `initial` (the `--config` flag), which is then stored.
    pub fn load_for_boot(&self, initial: Option<&Path>) -> Result<ConfigBundle, StoreError> {
        let staged = self.staged_path();
        if staged.exists() {
            match read_bundle(&staged) {
                Ok(bundle) => {
                    rename(&staged, &self.running_path())?;
                    tracing::info!("staged configuration promoted at boot");
                    return Ok(bundle);
                }
                Err(e) => {
                    // A bad staged file must not keep the node from booting on the
                    // configuration it already had.
                    tracing::error!(error = %e, "staged configuration rejected; booting on the running one");
                    fs::remove_file(&staged).map_err(io_error(&staged))?;
                }
            }
        }
        let running = self.running_path();
        if running.exists() {
            return read_bundle(&running);
        }
        let initial = initial.ok_or_else(|| StoreError::NoConfig(self.dir.clone()))?;
        let bundle = read_bundle(initial)?;
        self.write_running(&bundle)?;
        Ok(bundle)
    }

    /// Replaces the running configuration.
    pub fn write_running(&self, bundle: &ConfigBundle) -> Result<(), StoreError> {
        write_atomic(&self.running_path(), bundle.to_yaml().as_bytes(), 0o600)
    }

    /// Stores a configuration for the next boot.
    pub fn write_staged(&self, bundle: &ConfigBundle) -> Result<(), StoreError> {
        write_atomic(&self.staged_path(), bundle.to_yaml().as_bytes(), 0o600)
    }

    /// Drops a staged configuration (a later live apply supersedes it).
    pub fn clear_staged(&self) -> Result<(), StoreError> {
        let staged = self.staged_path();
        match fs::remove_file(&staged) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(&staged)(e)),
            _ => Ok(()),
        }
    }
}

fn read_bundle(path: &Path) -> Result<ConfigBundle, StoreError> {
    let text = fs::read_to_string(path).map_err(io_error(path))?;
    ConfigBundle::parse(&text).map_err(|source| StoreError::Invalid {
        path: path.to_path_buf(),
        source,
    })
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    fs::rename(from, to).map_err(io_error(to))?;
    sync_parent(to)
}

fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(parent))
}

/// Writes `data` to `path` atomically with permission bits `mode`: a temporary file in
/// the same directory, fsync, rename over `path`, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StoreError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_error(parent))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{file_name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(io_error(&tmp))?;
    rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_with_the_given_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_missing_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = ConfigStore::new(dir.path())
            .load_for_boot(None)
            .unwrap_err();
        assert!(err.to_string().contains("no configuration"), "{err}");
    }
}
