//! Errors of the supervisor API.

use std::io;

/// What can go wrong when the API asks the supervisor about or for a service.
///
/// Every variant names the service so that an API reply is self-explanatory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name is not in the current service set (never configured, or removed).
    #[error("unknown service {0:?}")]
    UnknownService(String),
    /// The request needs a running process (e.g. stats without a cgroup) and there is none.
    #[error("service {0:?} is not running")]
    NotRunning(String),
    /// Reading the service's logs or statistics failed.
    #[error("service {name:?}: {what}: {source}")]
    Io {
        /// The service concerned.
        name: String,
        /// What was being done, e.g. `reading /var/log/x.log`.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the service name and what was being done.
    pub(crate) fn io(name: &str, what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            name: name.to_owned(),
            what: what.into(),
            source,
        }
    }
}

/// The supervisor's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
