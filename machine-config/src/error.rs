//! The errors of this crate.
//!
//! Every message names what was wrong and where: a field path such as
//! `machine.services[1].restart` (secrets paths start with `secrets.`), a patch index,
//! or a file. Messages include their cause instead of chaining it through `source()`,
//! so that printing an error once says everything.

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be parsed, patched or generated.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not well-formed YAML.
    #[error("invalid YAML: {0}")]
    Syntax(serde_yaml_ng::Error),
    /// A field is unknown, missing, or of the wrong type.
    #[error(transparent)]
    Field(FieldError),
    /// The text holds no document at all.
    #[error(
        "the config is empty: expected a MachineConfig document, then `---` and a MachineSecrets document"
    )]
    Empty,
    /// Only the MachineConfig document is present.
    #[error(
        "missing the MachineSecrets document: expected `---` and a document with `kind: MachineSecrets` after the MachineConfig"
    )]
    MissingSecrets,
    /// More than the two expected documents.
    #[error(
        "unexpected third YAML document: a config holds exactly a MachineConfig and a MachineSecrets document"
    )]
    ExtraDocument,
    /// The configuration parsed but breaks one or more rules.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    /// A patch text is neither a YAML/JSON mapping (merge patch) nor a valid sequence of
    /// RFC 6902 operations.
    #[error("invalid patch: {0}")]
    InvalidPatch(String),
    /// A `@file` patch could not be read.
    #[error("reading patch file {}: {error}", path.display())]
    PatchFile {
        /// The file named after `@`.
        path: PathBuf,
        /// Why it could not be read.
        error: std::io::Error,
    },
    /// An RFC 6902 operation could not be applied (missing path, failed `test`, ...).
    #[error("{0}")]
    PatchOperation(json_patch::PatchError),
    /// Applying the patch at `number` (1-based, as people count, in the order given)
    /// failed.
    #[error("patch {number}: {error}")]
    Patch {
        /// Position of the failing patch in the list, counting from 1.
        number: usize,
        /// Why it failed: a failed operation, or the patched config does not parse or
        /// validate.
        error: Box<ConfigError>,
    },
    /// The cluster CA could not be generated.
    #[error("generating the cluster CA: {0}")]
    Pki(pki::Error),
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FieldError {
    /// Where: `machine.services[2].dependsOn[0]`, `secrets.ca.key`, ...
    pub path: String,
    /// What is wrong, and what is expected instead.
    pub reason: String,
}

impl FieldError {
    /// A problem with the field at `path`.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Every rule a configuration breaks, so that one round of editing can fix them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors {
    /// The problems, section by section; never empty.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Services that depend on each other in a loop and so can never start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dependency cycle {}", .0.join(" -> "))]
pub struct DependencyCycle(
    /// The service names along the cycle; the first name is repeated at the end.
    pub Vec<String>,
);
