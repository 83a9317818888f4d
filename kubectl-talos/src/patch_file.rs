//! The file of `apply-config -f`: one config patch, in YAML or JSON.
//!
//! A mapping is an RFC 7386 merge patch (`ConfigPatch { merge }`); a list is RFC 6902
//! operations (`ConfigPatch { jsonPatch }`). The shape is checked here so that a bad
//! file is refused before anything is sent; the agent judges the patched
//! configuration.

use std::io::Read;
use std::path::Path;

use crds::{ConfigPatch, JsonPatchOp, JsonPatchOperation};
use serde_json::Value;

use crate::{Error, Result};

/// Reads and parses the patch in `path` (`-`: stdin).
pub fn read(path: &Path) -> Result<ConfigPatch> {
    let name = path.display().to_string();
    let text = if name == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map(|_| text)
            .map_err(|source| Error::ReadPatch {
                path: "-".to_owned(),
                source,
            })?
    } else {
        std::fs::read_to_string(path).map_err(|source| Error::ReadPatch {
            path: name.clone(),
            source,
        })?
    };
    parse(&text, &name)
}

/// Parses a patch; `name` (the file) is what errors show.
pub fn parse(text: &str, name: &str) -> Result<ConfigPatch> {
    let fail = |reason: String| Error::BadPatch {
        path: name.to_owned(),
        reason,
    };
    // YAML is a superset of JSON, so one parser reads both.
    let value: Value =
        serde_yaml_ng::from_str(text).map_err(|e| fail(format!("not YAML or JSON: {e}")))?;
    match value {
        Value::Object(merge) if merge.is_empty() => {
            Err(fail("the merge patch is empty".to_owned()))
        }
        Value::Object(merge) => Ok(ConfigPatch {
            merge: Some(merge),
            json_patch: None,
        }),
        Value::Array(ops) if ops.is_empty() => {
            Err(fail("the list of RFC 6902 operations is empty".to_owned()))
        }
        Value::Array(ops) => {
            let mut operations = Vec::with_capacity(ops.len());
            for (i, op) in ops.into_iter().enumerate() {
                let operation: JsonPatchOperation = serde_json::from_value(op)
                    .map_err(|e| fail(format!("operation {}: {e}", i + 1)))?;
                check_operation(&operation)
                    .map_err(|e| fail(format!("operation {}: {e}", i + 1)))?;
                operations.push(operation);
            }
            Ok(ConfigPatch {
                merge: None,
                json_patch: Some(operations),
            })
        }
        other => Err(fail(format!(
            "a config patch is a mapping (a JSON merge patch) or a list (RFC 6902 operations), not {}",
            kind(&other)
        ))),
    }
}

/// The rules the CRD's schema and the agent apply to one operation, checked early.
fn check_operation(op: &JsonPatchOperation) -> Result<(), String> {
    let pointer_ok = |p: &str| p.is_empty() || p.starts_with('/');
    if !pointer_ok(&op.path) {
        return Err(format!(
            "path {:?} is not a JSON pointer (it starts with '/')",
            op.path
        ));
    }
    let needs_from = matches!(op.op, JsonPatchOp::Move | JsonPatchOp::Copy);
    match (&op.from, needs_from) {
        (None, true) => return Err("move and copy need a from".to_owned()),
        (Some(_), false) => return Err("from is allowed for move and copy only".to_owned()),
        (Some(from), true) if !pointer_ok(from) => {
            return Err(format!(
                "from {from:?} is not a JSON pointer (it starts with '/')"
            ));
        }
        _ => {}
    }
    let needs_value = matches!(
        op.op,
        JsonPatchOp::Add | JsonPatchOp::Replace | JsonPatchOp::Test
    );
    if needs_value && op.value.is_none() {
        return Err("add, replace and test need a value".to_owned());
    }
    Ok(())
}

/// What a JSON value is, for a message.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_yaml_mapping_is_a_merge_patch() {
        let patch = parse("machine:\n  network:\n    hostname: n1\n", "p.yaml").unwrap();
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!({"merge": {"machine": {"network": {"hostname": "n1"}}}})
        );
    }

    #[test]
    fn a_json_list_is_rfc_6902() {
        let text = r#"[{"op": "replace", "path": "/machine/network/mtu", "value": 9000},
                       {"op": "add", "path": "/machine/x", "value": null},
                       {"op": "move", "from": "/a", "path": "/b"},
                       {"op": "remove", "path": "/c"}]"#;
        let patch = parse(text, "p.json").unwrap();
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!({"jsonPatch": [
                {"op": "replace", "path": "/machine/network/mtu", "value": 9000},
                {"op": "add", "path": "/machine/x", "value": null},
                {"op": "move", "from": "/a", "path": "/b"},
                {"op": "remove", "path": "/c"}
            ]})
        );
    }

    #[test]
    fn a_yaml_list_is_rfc_6902_too() {
        let patch = parse("- op: remove\n  path: /machine/x\n", "p.yaml").unwrap();
        assert_eq!(patch.json_patch.unwrap()[0].op, JsonPatchOp::Remove);
    }

    #[test]
    fn bad_files_are_named() {
        let error = |text: &str| parse(text, "bad.yaml").unwrap_err().to_string();
        assert_eq!(
            error("just a string"),
            "config patch bad.yaml: a config patch is a mapping (a JSON merge patch) or a list (RFC 6902 operations), not a string"
        );
        assert_eq!(
            error(""),
            "config patch bad.yaml: a config patch is a mapping (a JSON merge patch) or a list (RFC 6902 operations), not empty"
        );
        assert!(error("a: [").starts_with("config patch bad.yaml: not YAML or JSON: "));
        assert_eq!(
            error("{}"),
            "config patch bad.yaml: the merge patch is empty"
        );
        assert_eq!(
            error("[]"),
            "config patch bad.yaml: the list of RFC 6902 operations is empty"
        );
        assert!(
            error(r#"[{"op": "frobnicate", "path": "/a"}]"#)
                .starts_with("config patch bad.yaml: operation 1: unknown variant `frobnicate`")
        );
        assert_eq!(
            error(r#"[{"op": "remove", "path": "/a"}, {"op": "add", "path": "/b"}]"#),
            "config patch bad.yaml: operation 2: add, replace and test need a value"
        );
        assert_eq!(
            error(r#"[{"op": "copy", "path": "/a"}]"#),
            "config patch bad.yaml: operation 1: move and copy need a from"
        );
        assert_eq!(
            error(r#"[{"op": "remove", "path": "a"}]"#),
            r#"config patch bad.yaml: operation 1: path "a" is not a JSON pointer (it starts with '/')"#
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = read(Path::new("/nonexistent/patch.yaml")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "reading config patch /nonexistent/patch.yaml"
        );
    }
}
