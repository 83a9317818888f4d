//! The error type of `image-builder build`.

use std::io;
use std::path::PathBuf;

/// What can go wrong while building an image. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file or directory could not be read or written (this includes a full disk).
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },
    /// An external tool could not be run or exited with an error.
    #[error("{command}: {detail}")]
    Command {
        /// The tool and its first argument, e.g. `mksquashfs`.
        command: String,
        /// The tool's last line on stderr, or why it could not be started.
        detail: String,
    },
    /// The Debian archive has no package of that name.
    #[error("package {0:?} is not in the Debian archive (see apt-cache policy {0})")]
    UnknownPackage(String),
    /// A downloaded package does not have the checksum the archive index states.
    #[error("package {name}: downloaded .deb has sha256 {actual}, the archive says {expected}")]
    Checksum {
        /// The package.
        name: String,
        /// The checksum from `apt-cache show`.
        expected: String,
        /// The checksum of the file.
        actual: String,
    },
    /// An input file is not what it must be (e.g. a dynamically linked agent).
    #[error("{}: {reason}", path.display())]
    BadInput {
        /// The input file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Something the build needs is missing from the extracted packages.
    #[error("{0}")]
    Missing(String),
    /// An option has a value the build cannot use.
    #[error("{0}")]
    InvalidOption(String),
    /// A file is larger than the partition it goes to.
    #[error(
        "{file} is {size_mib} MiB, larger than the {partition} partition ({partition_mib} MiB)"
    )]
    DoesNotFit {
        /// The file name.
        file: String,
        /// Its size, rounded up.
        size_mib: u64,
        /// The partition's label.
        partition: &'static str,
        /// The partition's size.
        partition_mib: u64,
    },
    /// The output directory exists and is not empty.
    #[error("{}: exists and is not empty; refusing to overwrite it", .0.display())]
    OutputExists(PathBuf),
}

/// The result type of the build.
pub type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    /// Converts the error to [`BuildError::Io`] with `path`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|error| BuildError::Io {
            path: path.into(),
            error,
        })
    }
}
