//! The error type of the OCI image module's parsers (names and command-line specs);
//! reading files and packages fails with [`crate::build::BuildError`].

/// A name or a specification that cannot be used. Every message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An image name that is not a fully qualified reference.
    #[error("image name {reference:?}: {reason}")]
    InvalidReference {
        /// The name as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `SRC=DEST`, `PATH=TARGET` or `KEY=VALUE` argument that cannot be used.
    #[error("{spec:?}: {reason}")]
    InvalidSpec {
        /// The argument as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
}
