//! The client configuration file (`~/.osctl/config`): named contexts, each with the
//! endpoints to connect to, the default nodes, and the credentials (CA certificate,
//! client certificate and key, PEM). Written with mode 0600: it holds a private key.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors loading or saving a client configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    /// The file could not be read or written.
    #[error("client config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a client configuration.
    #[error("client config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No context of that name, or none selected.
    #[error("{0}")]
    Context(String),
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The context used when `--context` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// How to reach and authenticate to one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Nodes to connect to (tried in order); `host` or `host:port`.
    pub endpoints: Vec<String>,
    /// Nodes calls are for when `--nodes` is not given; empty means the endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Cluster CA certificate (PEM).
    pub ca: String,
    /// Client certificate (PEM).
    pub crt: String,
    /// Client key (PEM).
    pub key: String,
}

impl ClientConfig {
    /// The default location: `~/.osctl/config`.
    pub fn default_path() -> PathBuf {
        home().join(".osctl").join("config")
    }

    /// Loads `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Self, ClientConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_yaml_ng::from_str(&text).map_err(|e| ClientConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ClientConfigError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the configuration to `path` with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), ClientConfigError> {
        let text = serde_yaml_ng::to_string(self).map_err(|e| ClientConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        write_private(path, text.as_bytes())
    }

    /// The context named `name`, or the current one.
    pub fn context(&self, name: Option<&str>) -> Result<(&str, &Context), ClientConfigError> {
        let name = name.or(self.context.as_deref()).ok_or_else(|| {
            ClientConfigError::Context(
                "no context selected: create a cluster, `osctl config merge FILE` or pass --context".into(),
            )
        })?;
        self.contexts
            .get_key_value(name)
            .map(|(name, context)| (name.as_str(), context))
            .ok_or_else(|| {
                ClientConfigError::Context(format!(
                    "no context named {name:?} in the client config"
                ))
            })
    }

    /// Adds or replaces the contexts of `other` and selects `other`'s current one.
    pub fn merge(&mut self, other: ClientConfig) {
        self.contexts.extend(other.contexts);
        if other.context.is_some() {
            self.context = other.context;
        }
    }
}

/// Writes `data` to `path` with mode 0600, creating the directory.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), ClientConfigError> {
    let io_error = |source| ClientConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error)?;
    // An existing file keeps its mode on open; make sure it is private.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(io_error)?;
    file.write_all(data).map_err(io_error)
}

/// The user's home directory ($HOME, else the current directory).
pub fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(endpoint: &str) -> Context {
        Context {
            endpoints: vec![endpoint.into()],
            nodes: vec![],
            ca: "ca".into(),
            crt: "crt".into(),
            key: "key".into(),
        }
    }

    #[test]
    fn configs_round_trip_privately_and_merge() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/config");
        let mut config = ClientConfig {
            context: Some("a".into()),
            contexts: [("a".to_owned(), context("127.0.0.2"))].into(),
        };
        config.save(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(ClientConfig::load(&path).unwrap(), config);

        config.merge(ClientConfig {
            context: Some("b".into()),
            contexts: [("b".to_owned(), context("127.0.1.2"))].into(),
        });
        assert_eq!(config.context(None).unwrap().0, "b");
        assert!(config.context(Some("a")).is_ok());
        assert!(
            config
                .context(Some("c"))
                .unwrap_err()
                .to_string()
                .contains("no context named")
        );
    }
}
