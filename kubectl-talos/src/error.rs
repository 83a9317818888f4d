//! The plugin's errors.

use std::time::Duration;

/// Why a command failed. Messages are lowercase and name what is wrong (the object,
/// the file, the flag); the binary adds the `kubectl-talos: ` prefix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or has no usable context.
    #[error("loading the kubeconfig{}", path.as_deref().map(|p| format!(" {p}")).unwrap_or_default())]
    Kubeconfig {
        /// The file given with `--kubeconfig`; absent for `KUBECONFIG` or the default.
        path: Option<String>,
        /// What kube reported.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The client could not be built from the kubeconfig.
    #[error("creating the Kubernetes client")]
    Client(#[source] kube::Error),
    /// The named object does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// The resource, as kubectl names it (`talosnode`).
        kind: &'static str,
        /// The object's name.
        name: String,
    },
    /// A request to the API server failed.
    ///
    /// The message is the API server's own (or the transport's chain), not kube's
    /// debug rendering, so the kube error is kept but not exposed as the source.
    #[error("{action}: {message}")]
    Api {
        /// What was being done (`applying talosnode "n1"`).
        action: String,
        /// The API server's message, or the transport error's chain.
        message: String,
        /// The error itself, for callers that look at it.
        error: Box<kube::Error>,
    },
    /// The config patch file could not be read.
    #[error("reading config patch {path}")]
    ReadPatch {
        /// The file (`-` for stdin).
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config patch file is not a patch.
    #[error("config patch {path}: {reason}")]
    BadPatch {
        /// The file (`-` for stdin).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `--selector` is not a label selector.
    #[error("label selector {selector:?}: {reason}")]
    Selector {
        /// The selector as given.
        selector: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A flag's value is not acceptable (checked before anything is written).
    #[error("{flag}: {reason}")]
    InvalidArgument {
        /// The flag or argument (`--url`).
        flag: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Something awaited from the operator did not happen in time.
    #[error("timed out after {} waiting for {what}", humantime::format_duration(*after))]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        after: Duration,
    },
    /// The operator's dry run refused the new config patches; nothing was changed.
    #[error("the config patches of talosnode {node:?} were refused (spec not changed): {reason}")]
    PreviewRefused {
        /// The node.
        node: String,
        /// `status.configPreview.error`.
        reason: String,
    },
    /// The node's config patches changed between the preview and the apply.
    #[error(
        "the config patches of talosnode {node:?} changed while the preview ran (spec not changed); run the command again"
    )]
    ConcurrentChange {
        /// The node.
        node: String,
    },
    /// The node reports that its new configuration was not applied.
    #[error("talosnode {node:?} did not apply its configuration: {message}")]
    ConfigNotApplied {
        /// The node.
        node: String,
        /// The `ConfigApplied` condition's reason and message.
        message: String,
    },
    /// The rollout reached the phase Failed.
    #[error("talosupgrade {name:?} failed{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    RolloutFailed {
        /// The TalosUpgrade.
        name: String,
        /// The `Failed` condition's message, if any.
        message: String,
    },
    /// Output could not be serialised to JSON.
    #[error("serialising {what} to JSON")]
    Json {
        /// What was serialised.
        what: &'static str,
        /// What serde_json reported.
        #[source]
        source: serde_json::Error,
    },
    /// Output could not be serialised to YAML.
    #[error("serialising {what} to YAML")]
    Yaml {
        /// What was serialised.
        what: &'static str,
        /// What serde_yaml_ng reported.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// Writing to stdout failed (a closed pipe included: the binary exits 0 then).
    #[error("writing output")]
    Output(#[source] std::io::Error),
    /// Several independent failures (e.g. several nodes not found), reported together.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<Error>),
}

impl Error {
    /// Wraps a kube error met while doing `action` (`getting talosnode "n1"`).
    pub fn api(action: impl Into<String>, error: kube::Error) -> Self {
        Error::Api {
            action: action.into(),
            message: kube_message(&error),
            error: Box::new(error),
        }
    }

    /// One error for several, or the only one, or none.
    pub fn from_many(mut errors: Vec<Error>) -> Option<Self> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::Several(errors)),
        }
    }
}

/// The part of a kube error a person needs: the API server's message, or the chain of
/// a transport error (kube's own `Display` of an API error is its debug form).
fn kube_message(error: &kube::Error) -> String {
    if let kube::Error::Api(status) = error {
        // A missing object is a Status of reason NotFound; a missing resource type is
        // the server's plain "404 page not found".
        if status.code == 404 && status.message.contains("page not found") {
            return format!(
                "{}: the API server does not know the resource; are the node-os CRDs (talosnodes.talos.dev, talosupgrades.talos.dev) installed?",
                status.message
            );
        }
        if !status.message.is_empty() {
            return status.message.clone();
        }
        return format!("{} ({})", status.reason, status.code);
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_object() {
        let error = Error::NotFound {
            kind: "talosnode",
            name: "n9".into(),
        };
        assert_eq!(error.to_string(), r#"talosnode "n9" not found"#);
    }

    #[test]
    fn api_errors_show_the_servers_message() {
        let status =
            kube::core::Status::failure("talosnodes.talos.dev \"n1\" is invalid", "Invalid")
                .with_code(422);
        let error = Error::api(
            "applying talosnode \"n1\"",
            kube::Error::Api(Box::new(status)),
        );
        assert_eq!(
            error.to_string(),
            r#"applying talosnode "n1": talosnodes.talos.dev "n1" is invalid"#
        );
    }

    #[test]
    fn a_missing_crd_is_suggested() {
        let status = kube::core::Status::failure("404 page not found", "NotFound").with_code(404);
        let error = Error::api("listing talosnodes", kube::Error::Api(Box::new(status)));
        assert!(
            error.to_string().ends_with(
                "are the node-os CRDs (talosnodes.talos.dev, talosupgrades.talos.dev) installed?"
            ),
            "{error}"
        );
    }

    #[test]
    fn timeouts_say_what_was_awaited() {
        let error = Error::Timeout {
            what: "n1 to reboot".into(),
            after: Duration::from_secs(600),
        };
        assert_eq!(
            error.to_string(),
            "timed out after 10m waiting for n1 to reboot"
        );
    }
}
