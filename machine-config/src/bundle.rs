//! The configuration file as a whole: a [`MachineConfig`] document and a
//! [`MachineSecrets`] document, parsed strictly, rendered, redacted and patched.

use serde::{Deserialize, Deserializer, Serialize};
use serde_path_to_error::Path;

use crate::error::{ConfigError, FieldError};
use crate::patch::Patch;
use crate::types::{MachineConfig, MachineSecrets, REDACTED};
use crate::validate::validate;

/// The hostname a node reports when its config sets none (the Linux convention).
pub const DEFAULT_HOSTNAME: &str = "localhost";

/// A node's whole configuration: what the node is and runs, plus the cluster secrets.
///
/// The two always travel together because validity depends on both: a control-plane
/// node must hold the CA key and a worker must not. A bundle returned by
/// [`ConfigBundle::parse`] or [`ConfigBundle::apply_patches`] has been validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigBundle {
    /// The first document.
    pub config: MachineConfig,
    /// The second document.
    pub secrets: MachineSecrets,
}

impl ConfigBundle {
    /// Parses a config file: a YAML stream holding the MachineConfig document, then
    /// `---` and the MachineSecrets document, then validates it.
    ///
    /// Parsing is strict: an unknown field, a missing required field or a value of the
    /// wrong type is an error naming the field's path. Validation errors list every
    /// broken rule at once.
    pub fn parse(yaml: &str) -> Result<Self, ConfigError> {
        let mut documents = serde_yaml_ng::Deserializer::from_str(yaml);
        let config = next_document(&mut documents)?.ok_or(ConfigError::Empty)?;
        let secrets = next_document(&mut documents)?;
        let config = Document::Config.decode(config)?;
        let secrets = secrets.ok_or(ConfigError::MissingSecrets)?;
        let secrets = Document::Secrets.decode(secrets)?;
        if next_document(&mut documents)?.is_some() {
            return Err(ConfigError::ExtraDocument);
        }
        Self::validated(config, secrets)
    }

    /// Renders both documents, `---` between them; [`ConfigBundle::parse`] reads the
    /// text back to an equal bundle.
    pub fn to_yaml(&self) -> String {
        format!(
            "{}---\n{}",
            yaml_document(&self.config),
            yaml_document(&self.secrets)
        )
    }

    /// A copy with the CA key and the join token replaced by [`REDACTED`], for readers
    /// below `os:admin` and for dry-run output. It deliberately fails validation, so it
    /// can never be applied in place of the real config.
    pub fn redacted(&self) -> Self {
        let mut redacted = self.clone();
        if let Some(key) = &mut redacted.secrets.ca.key {
            *key = REDACTED.to_owned();
        }
        redacted.secrets.token = REDACTED.to_owned();
        redacted
    }

    /// Applies `patches` in order to the MachineConfig document (patch paths such as
    /// `/machine/hostname` are relative to it; the secrets document is out of reach),
    /// strictly re-parsing and validating the result of each patch.
    ///
    /// The error names the first failing patch by its index and says why it failed.
    pub fn apply_patches(&self, patches: &[Patch]) -> Result<Self, ConfigError> {
        patches
            .iter()
            .enumerate()
            .try_fold(self.clone(), |bundle, (index, patch)| {
                bundle
                    .apply_patch(patch)
                    .map_err(|error| ConfigError::Patch {
                        number: index + 1,
                        error: Box::new(error),
                    })
            })
    }

    /// The configured hostname, or [`DEFAULT_HOSTNAME`] when the config sets none.
    pub fn hostname(&self) -> String {
        self.config
            .machine
            .hostname
            .clone()
            .unwrap_or_else(|| DEFAULT_HOSTNAME.to_owned())
    }

    fn apply_patch(&self, patch: &Patch) -> Result<Self, ConfigError> {
        let mut document = serde_json::to_value(&self.config)
            // Cannot fail: every map key is a string and every number an integer.
            .expect("a MachineConfig always converts to JSON");
        patch.apply(&mut document)?;
        let config = Document::Config.decode(document)?;
        Self::validated(config, self.secrets.clone())
    }

    fn validated(config: MachineConfig, secrets: MachineSecrets) -> Result<Self, ConfigError> {
        let bundle = Self { config, secrets };
        validate(&bundle)?;
        Ok(bundle)
    }
}

/// Which of the two documents is being decoded; it decides how field paths are named.
#[derive(Debug, Clone, Copy)]
enum Document {
    /// Paths are unprefixed: `machine.hostname`.
    Config,
    /// Paths start with `secrets.`: `secrets.ca.key`.
    Secrets,
}

impl Document {
    /// Strictly decodes one document (YAML or JSON), naming the failing field.
    fn decode<'de, T: Deserialize<'de>>(
        self,
        document: impl Deserializer<'de>,
    ) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(document).map_err(|error| {
            let path = self.path(error.path());
            ConfigError::Field(FieldError::new(path, error.into_inner().to_string()))
        })
    }

    fn path(self, path: &Path) -> String {
        let is_root = path.iter().next().is_none();
        match (self, is_root) {
            (Document::Config, true) => "config".to_owned(),
            (Document::Config, false) => path.to_string(),
            (Document::Secrets, true) => "secrets".to_owned(),
            (Document::Secrets, false) => format!("secrets.{path}"),
        }
    }
}

/// Reads the next document of a YAML stream into a tree; `None` when the stream has
/// no more documents or the next one is empty (as after a trailing `---`).
///
/// Syntax errors surface here, with their line; schema errors are left to
/// [`Document::decode`], which knows the field path.
fn next_document(
    documents: &mut serde_yaml_ng::Deserializer<'_>,
) -> Result<Option<serde_yaml_ng::Value>, ConfigError> {
    let Some(document) = documents.next() else {
        return Ok(None);
    };
    let value = serde_yaml_ng::Value::deserialize(document).map_err(ConfigError::Syntax)?;
    Ok(Some(value).filter(|value| !value.is_null()))
}

/// Renders one document.
fn yaml_document(document: &impl Serialize) -> String {
    serde_yaml_ng::to_string(document)
        // Cannot fail: the schema types have string keys only and no untagged enums.
        .expect("the config schema always serialises to YAML")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{FULL_CONFIG, full_bundle, rejects};

    #[test]
    fn full_config_round_trips() {
        let bundle = full_bundle();
        assert_eq!(ConfigBundle::parse(&bundle.to_yaml()).unwrap(), bundle);
        assert_eq!(
            bundle.config.machine.cert_sans,
            ["api.example.com", "10.5.0.2"]
        );
        assert_eq!(bundle.config.machine.files[0].permissions, 0o600);
    }

    #[test]
    fn redaction_hides_key_and_token_only() {
        let bundle = full_bundle();
        let redacted = bundle.redacted();
        assert_eq!(redacted.secrets.ca.key.as_deref(), Some(REDACTED));
        assert_eq!(redacted.secrets.token, REDACTED);
        assert_eq!(redacted.secrets.ca.crt, bundle.secrets.ca.crt);
        assert_eq!(redacted.config, bundle.config);
        let text = redacted.to_yaml();
        assert!(!text.contains("PRIVATE KEY") && !text.contains(&bundle.secrets.token));
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let bundle = full_bundle();
        let debug = format!("{bundle:?}");
        assert!(!debug.contains("PRIVATE KEY") && !debug.contains(&bundle.secrets.token));
    }

    #[test]
    fn hostname_falls_back_to_default() {
        let mut bundle = full_bundle();
        assert_eq!(bundle.hostname(), "cp-1");
        bundle.config.machine.hostname = None;
        assert_eq!(bundle.hostname(), DEFAULT_HOSTNAME);
    }

    #[test]
    fn document_structure_is_enforced() {
        let (config, _) = FULL_CONFIG.split_once("---\n").unwrap();
        for (text, expected) in [
            ("", "the config is empty"),
            ("# nothing yet\n", "the config is empty"),
            (config, "missing the MachineSecrets document"),
            (
                &format!("{config}---\n"),
                "missing the MachineSecrets document",
            ),
            (
                &format!("{FULL_CONFIG}---\n{config}"),
                "unexpected third YAML document",
            ),
            ("machine: [unclosed", "invalid YAML"),
            (
                "- not\n- a mapping\n",
                "config: invalid type: sequence, expected struct MachineConfig",
            ),
            (
                &format!("{config}---\n[]\n"),
                "secrets: invalid type: sequence",
            ),
        ] {
            let error = ConfigBundle::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
    }

    /// Schema errors (strict parsing), each named by its field path.
    #[test]
    fn rejects_schema_errors() {
        for (mutation, expected) in [
            ("{config: {extra: 1}}", "extra: unknown field `extra`"),
            (
                "{config: {machine: {hostnmae: x}}}",
                "machine.hostnmae: unknown field `hostnmae`",
            ),
            (
                "{secrets: {ca: {pem: x}}}",
                "secrets.ca.pem: unknown field `pem`",
            ),
            (
                "{secrets: {extra: 1}}",
                "secrets.extra: unknown field `extra`",
            ),
            (
                "{config: {machine: {certSANs: api.example.com}}}",
                "machine.certSANs: invalid type: string \"api.example.com\", expected a sequence",
            ),
            (
                "{config: {cluster: {endpoint: 50000}}}",
                "cluster.endpoint: invalid type: integer `50000`, expected a string",
            ),
            (
                "[{op: remove, path: /config/machine/type}]",
                "machine: missing field `type`",
            ),
            (
                "[{op: remove, path: /config/cluster/endpoint}]",
                "cluster: missing field `endpoint`",
            ),
            (
                "[{op: remove, path: /secrets/token}]",
                "secrets: missing field `token`",
            ),
            (
                "{config: {machine: {type: router}}}",
                "machine.type: unknown variant `router`",
            ),
            (
                "{config: {machine: {network: {interfaces: [{name: eth0, mtu: big}]}}}}",
                "machine.network.interfaces[0].mtu: invalid type: string \"big\", expected u32",
            ),
            (
                "[{op: replace, path: /config/machine/network/interfaces/0/addresses/1, value: 10.5.0.300/24}]",
                "machine.network.interfaces[0].addresses[1]: invalid CIDR \"10.5.0.300/24\"",
            ),
            (
                "[{op: replace, path: /config/machine/network/interfaces/0/routes/0/network, value: 10.0.0.1}]",
                "machine.network.interfaces[0].routes[0].network: invalid CIDR \"10.0.0.1\": expected ADDRESS/PREFIX-LENGTH",
            ),
            (
                "{config: {machine: {network: {nameservers: [1.1.1.1, dns.example.com]}}}}",
                "machine.network.nameservers[1]: invalid IP address syntax",
            ),
            (
                "[{op: add, path: /config/machine/services/1/restart, value: sometimes}]",
                "machine.services[1].restart: unknown variant `sometimes`, expected one of `always`, `on-failure`, `never`",
            ),
            (
                "[{op: add, path: /config/machine/services/0/stopTimeout, value: 5 parsecs}]",
                "machine.services[0].stopTimeout: invalid duration \"5 parsecs\"",
            ),
            (
                "[{op: replace, path: /config/machine/files/0/permissions, value: rw-r--r--}]",
                "machine.files[0].permissions: invalid type: string \"rw-r--r--\", expected u32",
            ),
            (
                "[{op: add, path: /config/machine/services/0/command, value: /bin/true}]",
                "machine.services[0].command: invalid type: string \"/bin/true\", expected a sequence",
            ),
        ] {
            rejects(mutation, expected);
        }
    }
}
