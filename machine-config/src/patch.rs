//! Config patches, as given to `osctl --config-patch` (the talosctl format).
//!
//! A patch is YAML or JSON text. A mapping is an RFC 7386 JSON merge patch; a sequence
//! is an RFC 6902 JSON patch. Either addresses the MachineConfig document only
//! (`/machine/hostname`): the secrets document is never patched.

use std::path::PathBuf;

use serde_json::Value;

use crate::error::ConfigError;

/// One patch to a MachineConfig document; apply with
/// [`ConfigBundle::apply_patches`](crate::ConfigBundle::apply_patches).
#[derive(Debug, Clone, PartialEq)]
pub enum Patch {
    /// An RFC 7386 merge patch: the mapping is merged in, `null` deletes a key, and
    /// lists are replaced as a whole.
    Merge(Value),
    /// An RFC 6902 patch: operations (`add`, `remove`, `replace`, `move`, `copy`,
    /// `test`) on JSON pointers, applied in order, all or nothing.
    Json(json_patch::Patch),
}

impl Patch {
    /// Reads a patch from YAML or JSON text (JSON is YAML): a mapping is a merge patch,
    /// a sequence an RFC 6902 patch.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_yaml_ng::from_str(text)
            .map_err(|error| ConfigError::InvalidPatch(error.to_string()))?;
        match value {
            Value::Object(_) => Ok(Patch::Merge(value)),
            Value::Array(_) => serde_path_to_error::deserialize(value)
                .map(Patch::Json)
                .map_err(|error| {
                    ConfigError::InvalidPatch(format!("{}: {}", error.path(), error.inner()))
                }),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                Err(ConfigError::InvalidPatch(format!(
                    "expected a mapping (merge patch) or a sequence (RFC 6902 patch), got {value}"
                )))
            }
        }
    }

    /// Reads a `--config-patch` argument: `@path` names a file holding the patch,
    /// anything else is the patch text itself.
    pub fn load(arg: &str) -> Result<Self, ConfigError> {
        match arg.strip_prefix('@') {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|error| ConfigError::PatchFile {
                        path: PathBuf::from(path),
                        error,
                    })?;
                Self::parse(&text)
            }
            None => Self::parse(arg),
        }
    }

    /// Applies the patch to a JSON document in place; a failed RFC 6902 patch leaves
    /// the document unchanged.
    pub(crate) fn apply(&self, document: &mut Value) -> Result<(), ConfigError> {
        match self {
            Patch::Merge(patch) => {
                json_patch::merge(document, patch);
                Ok(())
            }
            Patch::Json(patch) => {
                json_patch::patch(document, patch).map_err(ConfigError::PatchOperation)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::full_bundle;
    use crate::types::RestartPolicy;

    fn patched(patches: &[&str]) -> Result<crate::ConfigBundle, ConfigError> {
        let patches = patches
            .iter()
            .map(|text| Patch::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        full_bundle().apply_patches(&patches)
    }

    fn patch_error(patches: &[&str]) -> String {
        patched(patches)
            .expect_err("the patches were accepted")
            .to_string()
    }

    #[test]
    fn parse_tells_merge_from_json_patches() {
        assert!(matches!(
            Patch::parse("machine: {hostname: x}"),
            Ok(Patch::Merge(_))
        ));
        assert!(matches!(
            Patch::parse(r#"{"machine": {"hostname": "x"}}"#),
            Ok(Patch::Merge(_))
        ));
        assert!(matches!(
            Patch::parse(r#"[{"op": "remove", "path": "/machine/hostname"}]"#),
            Ok(Patch::Json(_))
        ));
        for (text, expected) in [
            (
                "42",
                "expected a mapping (merge patch) or a sequence (RFC 6902 patch), got 42",
            ),
            ("", "got null"),
            ("[{op: remove}]", "[0]: missing field `path`"),
            (
                "[{op: delete, path: /a}]",
                "[0].op: unknown variant `delete`",
            ),
            ("machine: {", "invalid patch"),
        ] {
            let error = Patch::parse(text).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{text:?}: {error:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn load_reads_files_and_inline_text() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"machine:\n  hostname: from-file\n").unwrap();
        let from_file = Patch::load(&format!("@{}", file.path().display())).unwrap();
        assert_eq!(
            from_file,
            Patch::load("{machine: {hostname: from-file}}").unwrap()
        );

        let error = Patch::load("@/nonexistent/patch.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("reading patch file /nonexistent/patch.yaml: "),
            "{error}"
        );
    }

    #[test]
    fn merge_patch_changes_and_deletes_fields() {
        let bundle = patched(&[
            "machine: {hostname: cp-2, sysctls: {vm.swappiness: '10', kernel/panic: null}}",
        ])
        .unwrap();
        let machine = &bundle.config.machine;
        assert_eq!(machine.hostname.as_deref(), Some("cp-2"));
        assert_eq!(
            machine.sysctls.get("vm.swappiness").map(String::as_str),
            Some("10")
        );
        assert!(!machine.sysctls.contains_key("kernel/panic"));
        assert_eq!(bundle.secrets, full_bundle().secrets);
    }

    #[test]
    fn json_patches_apply_in_order() {
        let bundle = patched(&[
            "[{op: add, path: /machine/services/-, value: {name: cache, command: [/usr/bin/cache], dependsOn: [app]}}]",
            r#"[{"op": "replace", "path": "/machine/services/2/restart", "value": "never"}]"#,
        ])
        .unwrap();
        let cache = &bundle.config.machine.services[2];
        assert_eq!(cache.name, "cache");
        assert_eq!(cache.restart, RestartPolicy::Never);
    }

    #[test]
    fn failures_name_the_patch_and_the_field() {
        for (patches, expected) in [
            (
                &[
                    "machine: {hostname: ok}",
                    "machine: {hostname: Not_A_Hostname}",
                ][..],
                "patch 2: machine.hostname: ",
            ),
            (
                &["[{op: replace, path: /machine/services/0/restart, value: sometimes}]"],
                "patch 1: machine.services[0].restart: unknown variant `sometimes`",
            ),
            (
                &["[{op: test, path: /machine/hostname, value: other}]"],
                "patch 1: operation '/0' failed at path '/machine/hostname': value did not match",
            ),
        ] {
            let error = patch_error(patches);
            assert!(
                error.starts_with(expected),
                "{error:?} does not start with {expected:?}"
            );
        }
    }

    #[test]
    fn patches_cannot_reach_the_secrets() {
        for (patch, expected) in [
            (
                "{token: stolen-stolen-stolen}",
                "patch 1: token: unknown field `token`",
            ),
            (
                "{secrets: {ca: {key: null}}}",
                "patch 1: secrets: unknown field `secrets`",
            ),
            (
                "[{op: replace, path: /ca/key, value: x}]",
                "patch 1: operation '/0' failed at path '/ca/key'",
            ),
            // Making a control plane a worker cannot strip the key: the result is invalid.
            (
                "{machine: {type: worker}}",
                "patch 1: secrets.ca.key: worker nodes must not carry the CA key",
            ),
        ] {
            let error = patch_error(&[patch]);
            assert!(
                error.starts_with(expected),
                "{error:?} does not start with {expected:?}"
            );
        }
    }
}
