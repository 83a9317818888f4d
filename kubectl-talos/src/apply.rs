//! The server-side apply bodies the plugin sends, and the field managers they are
//! sent under.
//!
//! Each body holds `apiVersion`, `kind`, `metadata.name` and only the fields being
//! set. Server-side apply removes a field its manager set before and omits now, so
//! each concern has its own field manager that always sends the same fields: a reboot
//! then never drops the config patches `apply-config` set, and `pause` never drops the
//! spec `upgrade` wrote. Every manager name starts with [`FIELD_MANAGER`], so
//! `managedFields` show what the plugin set and why. Applies are forced: the plugin
//! is asked to set these fields, whoever set them before.

use crds::{ApplyMode, ConfigPatch, Release, TalosNode, TalosUpgrade};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use serde_json::{Value, json};

/// The plugin's field manager: `upgrade` writes a TalosUpgrade's spec under it, and
/// the other managers are named after it.
pub const FIELD_MANAGER: &str = "kubectl-talos";
/// Owns `TalosNode.spec.rebootRequestedAt` (`reboot`).
pub const REBOOT_MANAGER: &str = "kubectl-talos-reboot";
/// Owns `TalosNode.spec.configPatches` (`apply-config`).
pub const CONFIG_MANAGER: &str = "kubectl-talos-config";
/// Owns `TalosNode.spec.applyMode` (`apply-config --mode`).
pub const APPLY_MODE_MANAGER: &str = "kubectl-talos-apply-mode";
/// Owns the `talos.dev/config-preview` annotation while `apply-config` previews;
/// applying without it removes it.
pub const PREVIEW_MANAGER: &str = "kubectl-talos-preview";
/// Owns `TalosUpgrade.spec.paused` (`pause`, `resume`).
pub const PAUSE_MANAGER: &str = "kubectl-talos-pause";

/// The skeleton every TalosNode body starts from.
fn node(name: &str) -> Value {
    json!({
        "apiVersion": TalosNode::api_version(&()),
        "kind": TalosNode::kind(&()),
        "metadata": {"name": name},
    })
}

/// The skeleton every TalosUpgrade body starts from.
fn upgrade_object(name: &str) -> Value {
    json!({
        "apiVersion": TalosUpgrade::api_version(&()),
        "kind": TalosUpgrade::kind(&()),
        "metadata": {"name": name},
    })
}

/// Asks for one reboot: `spec.rebootRequestedAt = at` (RFC 3339, seconds).
pub fn reboot(name: &str, at: &str) -> Value {
    let mut body = node(name);
    body["spec"] = json!({"rebootRequestedAt": at});
    body
}

/// Asks the operator for a dry run of `patches` (the JSON of the whole list, exactly
/// the string whose sha256 the preview answers).
pub fn preview(name: &str, patches: &str) -> Value {
    let mut body = node(name);
    body["metadata"]["annotations"] = json!({crds::CONFIG_PREVIEW_ANNOTATION: patches});
    body
}

/// Removes the preview annotation: [`PREVIEW_MANAGER`] set it and now omits it.
pub fn clear_preview(name: &str) -> Value {
    node(name)
}

/// Sets the node's whole list of config patches.
pub fn config_patches(name: &str, patches: &[ConfigPatch]) -> Value {
    let mut body = node(name);
    body["spec"] = json!({"configPatches": patches});
    body
}

/// Sets how the node applies configuration changes.
pub fn apply_mode(name: &str, mode: ApplyMode) -> Value {
    let mut body = node(name);
    body["spec"] = json!({"applyMode": mode});
    body
}

/// What `upgrade` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct UpgradeRequest {
    /// The TalosUpgrade's name.
    pub name: String,
    /// The release to roll out.
    pub release: Release,
    /// The nodes by name (empty: not by name).
    pub nodes: Vec<String>,
    /// The nodes by label (absent: not by label).
    pub selector: Option<LabelSelector>,
    /// Nodes upgrading at once (absent: the CRD's default, 1).
    pub max_unavailable: Option<IntOrString>,
}

/// A TalosUpgrade with the release, the targets and `maxUnavailable`; the rest is
/// left to the CRD's defaults.
pub fn upgrade(request: &UpgradeRequest) -> Value {
    let mut spec = json!({"version": request.release});
    if !request.nodes.is_empty() {
        spec["nodes"] = json!(request.nodes);
    }
    if let Some(selector) = &request.selector {
        spec["nodeSelector"] = json!(selector);
    }
    if let Some(max) = &request.max_unavailable {
        spec["maxUnavailable"] = json!(max);
    }
    let mut body = upgrade_object(&request.name);
    body["spec"] = spec;
    body
}

/// Pauses (`true`) or resumes (`false`) a rollout.
pub fn pause(name: &str, paused: bool) -> Value {
    let mut body = upgrade_object(name);
    body["spec"] = json!({"paused": paused});
    body
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    #[test]
    fn a_reboot_sets_only_reboot_requested_at() {
        assert_eq!(
            reboot("n1", "2026-11-27T12:00:00Z"),
            json!({
                "apiVersion": "talos.dev/v1alpha1",
                "kind": "TalosNode",
                "metadata": {"name": "n1"},
                "spec": {"rebootRequestedAt": "2026-11-27T12:00:00Z"}
            })
        );
    }

    #[test]
    fn the_preview_is_an_annotation_and_clearing_omits_it() {
        let list = r#"[{"merge":{"machine":{"network":{"mtu":9000}}}}]"#;
        assert_eq!(
            preview("n1", list),
            json!({
                "apiVersion": "talos.dev/v1alpha1",
                "kind": "TalosNode",
                "metadata": {"name": "n1", "annotations": {"talos.dev/config-preview": list}}
            })
        );
        assert_eq!(
            clear_preview("n1"),
            json!({"apiVersion": "talos.dev/v1alpha1", "kind": "TalosNode", "metadata": {"name": "n1"}})
        );
    }

    #[test]
    fn config_patches_and_apply_mode() {
        let mut merge = Map::new();
        merge.insert("machine".into(), json!({"network": {"mtu": 9000}}));
        let patches = vec![ConfigPatch {
            merge: Some(merge),
            json_patch: None,
        }];
        assert_eq!(
            config_patches("n1", &patches),
            json!({
                "apiVersion": "talos.dev/v1alpha1",
                "kind": "TalosNode",
                "metadata": {"name": "n1"},
                "spec": {"configPatches": [{"merge": {"machine": {"network": {"mtu": 9000}}}}]}
            })
        );
        assert_eq!(
            apply_mode("n1", ApplyMode::NoReboot),
            json!({
                "apiVersion": "talos.dev/v1alpha1",
                "kind": "TalosNode",
                "metadata": {"name": "n1"},
                "spec": {"applyMode": "no-reboot"}
            })
        );
    }

    fn release() -> Release {
        Release {
            version: "1.4.0".into(),
            url: "https://releases.example/1.4.0.bundle".into(),
            sha256: None,
        }
    }

    #[test]
    fn an_upgrade_by_name() {
        let request = UpgradeRequest {
            name: "upgrade-1-4-0-1764244800".into(),
            release: release(),
            nodes: vec!["n1".into(), "n2".into()],
            selector: None,
            max_unavailable: None,
        };
        assert_eq!(
            upgrade(&request),
            json!({
                "apiVersion": "talos.dev/v1alpha1",
                "kind": "TalosUpgrade",
                "metadata": {"name": "upgrade-1-4-0-1764244800"},
                "spec": {
                    "version": {"version": "1.4.0", "url": "https://releases.example/1.4.0.bundle"},
                    "nodes": ["n1", "n2"]
                }
            })
        );
    }

    #[test]
    fn an_upgrade_by_selector_with_a_percentage() {
        let request = UpgradeRequest {
            name: "u".into(),
            release: Release {
                sha256: Some("ab".repeat(32)),
                ..release()
            },
            nodes: vec![],
            selector: Some(crate::selector::parse("pool=workers,!drain").unwrap()),
            max_unavailable: Some(IntOrString::String("25%".into())),
        };
        assert_eq!(
            upgrade(&request),
            json!({
                "apiVersion": "talos.dev/v1alpha1",
                "kind": "TalosUpgrade",
                "metadata": {"name": "u"},
                "spec": {
                    "version": {"version": "1.4.0", "url": "https://releases.example/1.4.0.bundle",
                                "sha256": "ab".repeat(32)},
                    "nodeSelector": {
                        "matchLabels": {"pool": "workers"},
                        "matchExpressions": [{"key": "drain", "operator": "DoesNotExist"}]
                    },
                    "maxUnavailable": "25%"
                }
            })
        );
        let counted = UpgradeRequest {
            max_unavailable: Some(IntOrString::Int(2)),
            ..request
        };
        assert_eq!(upgrade(&counted)["spec"]["maxUnavailable"], json!(2));
    }

    #[test]
    fn pause_and_resume() {
        assert_eq!(
            pause("u", true),
            json!({
                "apiVersion": "talos.dev/v1alpha1",
                "kind": "TalosUpgrade",
                "metadata": {"name": "u"},
                "spec": {"paused": true}
            })
        );
        assert_eq!(pause("u", false)["spec"], json!({"paused": false}));
    }
}
