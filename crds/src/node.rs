//! `TalosNode`: one machine running the node agent.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::release::Release;

/// The desired state of one machine, reconciled by the operator through the node's
/// agent (the machine API), never through SSH or the Kubernetes Node.
///
/// It exists because a node's OS (configuration, release, reboots) is managed from
/// Kubernetes: one TalosNode per machine, cluster-scoped like the Node it may back.
// Each `printcolumn(...)` repeats the keys `type_` and `json_path`, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "talos.dev",
    version = "v1alpha1",
    kind = "TalosNode",
    plural = "talosnodes",
    singular = "talosnode",
    shortname = "tn",
    category = "talos",
    status = "TalosNodeStatus",
    doc = "A machine running the node agent: how to reach it, the configuration patches and OS release it should have, and what the operator last saw of it.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "What the operator is doing with the node, or why it cannot."
    ),
    printcolumn(
        name = "OS",
        type_ = "string",
        json_path = ".status.osVersion",
        description = "The OS version the node runs."
    ),
    printcolumn(
        name = "Boot",
        type_ = "string",
        json_path = ".status.bootId",
        description = "The boot id: it changes with every boot."
    ),
    printcolumn(
        name = "Config",
        type_ = "string",
        json_path = ".status.appliedConfigHashShort",
        description = "The first 12 hex digits of the applied configuration's sha256."
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TalosNodeSpec {
    /// Addresses of the node's agent (`host` or `host:port`, port 50000 by default),
    /// tried in order.
    #[x_kube(validation = Rule::new("size(self) >= 1").message("endpoints must list at least one address of the node agent"))]
    #[schemars(length(max = 16), inner(length(min = 1, max = 261)))]
    pub endpoints: Vec<String>,
    /// The Kubernetes Node this machine backs, if it runs the kubelet; health checks
    /// then also wait for that Node to be Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub node_name: Option<String>,
    /// Patches to the node's machine configuration, applied in order. They address
    /// the MachineConfig document only: the secrets document (CA key, join token)
    /// cannot be patched from here and must never be put in a TalosNode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    #[schemars(length(max = 64))]
    pub config_patches: Vec<ConfigPatch>,
    /// How a configuration change is applied (the agent's apply modes).
    #[serde(default)]
    pub apply_mode: ApplyMode,
    /// The OS release the node should run; absent: leave the release alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Release>,
    /// Ask for one reboot: the operator reboots the node when this is later than
    /// `status.lastBootTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_requested_at: Option<Time>,
    /// Leave the node alone: no configuration change, upgrade or reboot while true.
    /// Status is still observed.
    #[serde(default)]
    pub paused: bool,
}

/// One patch to the MachineConfig document, in one of the two forms
/// `machine_config::Patch` parses: exactly one of `merge` and `jsonPatch` is set.
///
/// The schema checks the shape; the agent checks that the patched configuration is
/// valid, since only `machine-config` judges a configuration.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.merge) != has(self.jsonPatch)").message("a config patch sets exactly one of merge and jsonPatch"))]
pub struct ConfigPatch {
    /// An RFC 7386 JSON merge patch: a mapping merged into the document; `null`
    /// deletes a key, lists are replaced whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub merge: Option<Map<String, Value>>,
    /// An RFC 6902 JSON patch: operations applied in order, all or nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub json_patch: Option<Vec<JsonPatchOperation>>,
}

/// One RFC 6902 operation. Its own type, rather than free-form JSON, so that the API
/// server refuses a misspelt `op`, a bad pointer or a misplaced `from` when the
/// resource is written, not when the agent applies it.
///
/// A missing `value` (for `add`, `replace`, `test`) is refused by the agent only: CEL
/// cannot see an untyped field, and `value` may be any JSON value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.op in ['move', 'copy']) == has(self.from)").message("from is required for move and copy, and allowed for them only"))]
pub struct JsonPatchOperation {
    /// The operation.
    pub op: JsonPatchOp,
    /// The JSON pointer the operation acts on (`/machine/network/hostname`).
    #[schemars(regex(pattern = r"^(/.*)?$"), length(max = 1024))]
    pub path: String,
    /// The pointer `move` and `copy` read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(/.*)?$"), length(max = 1024))]
    pub from: Option<String>,
    /// The value `add`, `replace` and `test` use: any JSON value, `null` included.
    #[serde(
        default,
        deserialize_with = "present_value",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "any_value")]
    pub value: Option<Value>,
}

/// The RFC 6902 operations.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JsonPatchOp {
    /// Adds a value (or inserts into an array).
    Add,
    /// Removes the value at `path`.
    Remove,
    /// Replaces the value at `path`.
    Replace,
    /// Moves the value at `from` to `path`.
    Move,
    /// Copies the value at `from` to `path`.
    Copy,
    /// Fails the whole patch unless the value at `path` equals `value`.
    Test,
}

/// Keeps an explicit `"value": null` as `Some(Value::Null)`: for `add`, `replace` and
/// `test` a null value is a value, unlike an absent one.
fn present_value<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// A mapping of any content: the merge patch is free-form, and the agent judges it.
fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Any JSON value, `null` included (structural schemas allow an untyped field only
/// with `x-kubernetes-preserve-unknown-fields`).
fn any_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// How the agent applies a configuration change; the modes of its
/// `ApplyConfiguration` RPC.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyMode {
    /// Without a reboot when the change allows it, with one when it needs one.
    #[default]
    Auto,
    /// Only changes that need no reboot; the agent refuses others.
    NoReboot,
    /// Stored and applied at the next boot.
    Staged,
    /// Applied without a reboot and rolled back unless confirmed in time.
    Try,
}

/// What the operator last saw of the node, written through the status subresource.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TalosNodeStatus {
    /// The node's state as the operator sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NodePhase>,
    /// The spec generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The OS version the node runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// The node agent's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The running kernel's release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// The current boot's id (`/proc/sys/kernel/random/boot_id`); a new one proves a
    /// reboot happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// When the node last booted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_boot_time: Option<Time>,
    /// The sha256 (hex) of the configuration the node runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_config_hash: Option<String>,
    /// The first 12 hex digits of `appliedConfigHash`, for the Config column (printer
    /// columns cannot shorten a value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_config_hash_short: Option<String>,
    /// The change the spec would make, from the agent's dry run; absent when none.
    /// Secrets are redacted by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_config_diff: Option<String>,
    /// The disruptive operation (reboot, upgrade, or a configuration change that
    /// reboots) the operator started and waits to see finish: recorded before the
    /// request is sent, so that a restarted operator neither repeats nor forgets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<NodeOperation>,
    /// The agent's dry run of the patches in the `talos.dev/config-preview` annotation
    /// (`kubectl talos apply-config` shows it before it changes the spec); absent
    /// when the annotation is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_preview: Option<ConfigPreview>,
    /// The health of the node's services, as the agent reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceHealth>,
    /// Standard conditions (e.g. `Ready`, `ConfigApplied`, `Reachable`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The last error the operator met with this node, for people; cleared on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A reboot the operator asked a node for, and waits for: done when the node's boot id
/// differs from `fromBootId`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeOperation {
    /// Why the node reboots.
    pub kind: OperationKind,
    /// The boot id when the operation was started.
    pub from_boot_id: String,
    /// When the operation was started; it fails when the node has not rebooted after
    /// the operator's timeout.
    pub started_at: Time,
    /// For an upgrade: the version being installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// True when the operator cordoned the Kubernetes Node for this operation, so it
    /// uncordons it afterwards (and leaves alone a Node someone else cordoned).
    #[serde(default)]
    pub cordoned: bool,
}

/// Why a node is rebooting.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// `spec.rebootRequestedAt` asked for it.
    Reboot,
    /// A new OS release was installed (`spec.version`).
    Upgrade,
    /// A configuration change that needs a reboot.
    Config,
}

/// The annotation that asks the operator for a dry run: its value is a JSON list of
/// [`ConfigPatch`]es, the whole list the spec would have.
pub const CONFIG_PREVIEW_ANNOTATION: &str = "talos.dev/config-preview";

/// The agent's verdict on the patches of [`CONFIG_PREVIEW_ANNOTATION`], so that a
/// client sees the diff (or the refusal) before it changes `spec.configPatches`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigPreview {
    /// The sha256 (hex) of the annotation's value this preview answers, so that a
    /// client knows the preview is of its request.
    pub request: String,
    /// The unified diff the patches would make, secrets redacted; empty when none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub diff: String,
    /// Why the agent (or the operator) refused the patches; absent when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the operator is doing with a node, or why it cannot.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodePhase {
    /// Not yet reached.
    Pending,
    /// Reached, running the desired configuration and release, services healthy.
    Ready,
    /// A configuration change is being applied.
    Applying,
    /// Rebooting, by request or for a change.
    Rebooting,
    /// Installing a new release.
    Upgrading,
    /// Reached, but a service is unhealthy or the last change failed.
    Degraded,
    /// The agent does not answer on any endpoint.
    Unreachable,
}

/// A summary of the node's services, enough for a column or an alert; the agent's
/// `ServiceList` has the details.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealth {
    /// How many services the node runs.
    pub total: i32,
    /// How many of them are healthy.
    pub healthy: i32,
    /// The names of the unhealthy ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unhealthy: Vec<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec_json() -> Value {
        json!({
            "endpoints": ["10.5.0.2:50000"],
            "nodeName": "worker-1",
            "configPatches": [
                {"merge": {"machine": {"network": {"hostname": "worker-1"}}}},
                {"jsonPatch": [
                    {"op": "add", "path": "/machine/sysctls/vm.max_map_count", "value": "262144"},
                    {"op": "test", "path": "/machine/network/mtu", "value": null},
                    {"op": "copy", "from": "/machine/a", "path": "/machine/b"},
                    {"op": "remove", "path": "/machine/install"}
                ]}
            ],
            "applyMode": "no-reboot",
            "version": {"version": "1.4.0", "url": "https://releases.example/1.4.0.bundle"},
            "rebootRequestedAt": "2026-11-27T12:00:00Z",
            "paused": true
        })
    }

    #[test]
    fn spec_round_trips() {
        let spec: TalosNodeSpec = serde_json::from_value(spec_json()).unwrap();
        assert_eq!(spec.apply_mode, ApplyMode::NoReboot);
        assert_eq!(spec.config_patches.len(), 2);
        let ops = spec.config_patches[1].json_patch.as_ref().unwrap();
        assert_eq!(
            ops[1].value,
            Some(Value::Null),
            "an explicit null is a value"
        );
        assert_eq!(ops[3].value, None);
        assert_eq!(serde_json::to_value(&spec).unwrap(), spec_json());
    }

    #[test]
    fn spec_defaults() {
        let spec: TalosNodeSpec = serde_json::from_value(json!({"endpoints": ["n1"]})).unwrap();
        assert_eq!(spec.apply_mode, ApplyMode::Auto);
        assert!(!spec.paused);
        assert!(spec.config_patches.is_empty());
        assert_eq!(spec.version, None);
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({"endpoints": ["n1"], "applyMode": "auto", "paused": false})
        );
    }

    #[test]
    fn config_patches_are_what_machine_config_parses() {
        let spec: TalosNodeSpec = serde_json::from_value(spec_json()).unwrap();
        for patch in &spec.config_patches {
            let text = match (&patch.merge, &patch.json_patch) {
                (Some(merge), None) => serde_json::to_string(merge).unwrap(),
                (None, Some(ops)) => serde_json::to_string(ops).unwrap(),
                _ => unreachable!("the fixture sets exactly one form"),
            };
            let parsed = machine_config::Patch::parse(&text).unwrap();
            match parsed {
                machine_config::Patch::Merge(_) => assert!(patch.merge.is_some()),
                machine_config::Patch::Json(ops) => {
                    assert_eq!(ops.0.len(), patch.json_patch.as_ref().unwrap().len())
                }
            }
        }
    }

    /// The one shape rule the API server cannot check (CEL cannot see the untyped
    /// `value`) is the agent's: `machine_config::Patch::parse` refuses it.
    #[test]
    fn machine_config_refuses_add_without_value() {
        let ops = vec![JsonPatchOperation {
            op: JsonPatchOp::Add,
            path: "/machine/x".into(),
            from: None,
            value: None,
        }];
        let text = serde_json::to_string(&ops).unwrap();
        let error = machine_config::Patch::parse(&text).unwrap_err().to_string();
        assert!(error.contains("value"), "{error}");
    }

    #[test]
    fn status_round_trips() {
        let status = json!({
            "phase": "Degraded",
            "observedGeneration": 3,
            "osVersion": "1.4.0",
            "agentVersion": "0.1.0",
            "kernel": "6.12.0",
            "bootId": "0b8f1c1e-7a43-4c0e-9d1f-1b7e0c8e2a11",
            "lastBootTime": "2026-11-27T11:00:00Z",
            "appliedConfigHash": "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "appliedConfigHashShort": "a1b2c3d4e5f6",
            "pendingConfigDiff": "-  mtu: 1500\n+  mtu: 9000\n",
            "services": {"total": 4, "healthy": 3, "unhealthy": ["kubelet"]},
            "conditions": [{
                "type": "Ready", "status": "False", "reason": "ServiceUnhealthy",
                "message": "kubelet is not healthy", "lastTransitionTime": "2026-11-27T11:05:00Z"
            }],
            "lastError": "kubelet: health check failed"
        });
        let parsed: TalosNodeStatus = serde_json::from_value(status.clone()).unwrap();
        assert_eq!(parsed.phase, Some(NodePhase::Degraded));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), status);
        assert_eq!(
            serde_json::to_value(TalosNodeStatus::default()).unwrap(),
            json!({})
        );
    }
}
