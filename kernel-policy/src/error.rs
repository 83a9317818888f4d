//! The error type of the library.

/// Everything that can go wrong reading recommendations, kernel configs and fragments.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A version string is not `MAJOR.MINOR` or `MAJOR.MINOR.PATCH`.
    #[error("invalid kernel version {0:?}: expected MAJOR.MINOR or MAJOR.MINOR.PATCH")]
    InvalidVersion(String),
    /// A compiler name is neither `gcc` nor `clang`.
    #[error("unknown compiler {0:?}: expected gcc or clang")]
    InvalidCompiler(String),
    /// A condition is not written like a .config line (`CONFIG_X=v`, `CONFIG_X is not set`).
    #[error("invalid condition {text:?}: {reason}")]
    InvalidCondition {
        /// The condition as written.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The recommendations file is not valid TOML for the schema.
    #[error("recommendations data: {0}")]
    DataSyntax(#[from] toml::de::Error),
    /// One entry of the recommendations file breaks a rule of the schema.
    #[error("recommendations data: {entry}: {reason}")]
    InvalidEntry {
        /// The entry, e.g. `kconfig CONFIG_BUG`.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A line of a kernel config is neither an option, a comment nor blank.
    #[error("kernel config line {line}: not an option, comment or blank line: {text:?}")]
    ConfigSyntax {
        /// The 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// A config fragment lacks the line naming the kernel it is for.
    #[error("config fragment: no `# target: linux SERIES COMPILER` line")]
    MissingTarget,
}
