//! Errors of CRD generation.

use std::path::PathBuf;

/// Why the CRD YAML could not be produced or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CRD did not serialise to YAML (a bug in the types, not in the input).
    #[error("serialising the CRD {name} to YAML: {source}")]
    Serialize {
        /// The CRD's name, e.g. `talosnodes.talos.dev`.
        name: String,
        /// What serde_yaml_ng reported.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A CRD file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
