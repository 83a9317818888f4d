//! `TalosUpgrade`: a rollout of one OS release over many TalosNodes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::release::Release;

/// Go's duration syntax (`90s`, `1h30m`), which the API server's CEL `duration()`
/// and the operator both read.
const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// A rollout of one release over the TalosNodes a selector picks: a few nodes at a
/// time, healthy before the next batch, inside a maintenance window.
///
/// It exists so that upgrading a cluster is one object to create, watch and pause,
/// rather than one edit per TalosNode; the operator sets each picked node's
/// `spec.version` batch by batch.
// Each `printcolumn(...)` repeats the keys `type_` and `json_path`, which clippy takes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "talos.dev",
    version = "v1alpha1",
    kind = "TalosUpgrade",
    plural = "talosupgrades",
    singular = "talosupgrade",
    shortname = "tu",
    category = "talos",
    status = "TalosUpgradeStatus",
    doc = "A rollout of one OS release over the TalosNodes a label selector picks, in batches, inside a maintenance window.",
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.version.version",
        description = "The release being rolled out."
    ),
    printcolumn(
        name = "Progress",
        type_ = "string",
        json_path = ".status.progress",
        description = "Nodes updated / nodes picked."
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the rollout is."
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.failureBudget) || self.failurePolicy == 'continue'").message("failureBudget is allowed only with failurePolicy: continue"))]
pub struct TalosUpgradeSpec {
    /// The release every picked node should run.
    pub version: Release,
    /// Which TalosNodes to upgrade, by their labels; absent or empty: all of them
    /// (or all of `nodes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// Which TalosNodes to upgrade, by name (`kubectl talos upgrade NODE...`); when set
    /// with `nodeSelector`, a node must be listed and match it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 5000), inner(length(min = 1, max = 253)))]
    pub nodes: Vec<String>,
    /// How many picked nodes may be upgrading (or unhealthy) at once: a count of at
    /// least 1, or a percentage from 1% to 100% of the picked nodes, rounded down but
    /// at least one node.
    #[serde(default = "default_max_unavailable")]
    #[schemars(schema_with = "int_or_string")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 1 : self.matches('^([1-9][0-9]?|100)%$')").message("maxUnavailable must be an integer of at least 1 or a percentage from 1% to 100%"))]
    pub max_unavailable: IntOrString,
    /// When nodes may be upgraded; absent: at any time. A batch that has started is
    /// finished even when the window closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<MaintenanceWindow>,
    /// How long a batch must stay healthy before the next one starts (Go duration).
    #[serde(default = "default_soak_time")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub soak_time: String,
    /// What counts as a healthy upgraded node.
    #[serde(default)]
    pub health_checks: HealthChecks,
    /// What a failed node does to the rollout.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// With `failurePolicy: continue`, how many nodes may fail before the rollout
    /// stops anyway; absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub failure_budget: Option<i32>,
    /// The kill switch: no new node is started while true; nodes already upgrading
    /// finish.
    #[serde(default)]
    pub paused: bool,
}

/// One node at a time unless asked otherwise.
fn default_max_unavailable() -> IntOrString {
    IntOrString::Int(1)
}

/// An int-or-string that is not nullable. kube marks every optional int-or-string
/// `nullable` unless the schema says otherwise, and the API server would then store a
/// `null` instead of applying the default.
fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-int-or-string": true, "nullable": false })
}

/// Long enough for a node's services to settle and its health checks to fail if
/// they are going to.
fn default_soak_time() -> String {
    "5m".to_owned()
}

/// A recurring window in which upgrades may start.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.start) == has(self.duration)").message("maintenanceWindow.duration is required when maintenanceWindow.start is set (and only then)"))]
pub struct MaintenanceWindow {
    /// When the window opens: a cron expression of five fields (minute hour
    /// day-of-month month day-of-week), e.g. `0 2 * * 6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\S+(\s+\S+){4}$"), length(max = 128))]
    pub start: Option<String>,
    /// How long the window stays open (Go duration, e.g. `4h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub duration: Option<String>,
    /// The IANA time zone `start` is in.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
}

/// Cron without a time zone is ambiguous; UTC is the one that does not move.
fn default_time_zone() -> String {
    "UTC".to_owned()
}

/// What a node must show after its upgrade before it counts as updated.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HealthChecks {
    /// Every service the agent runs is healthy.
    #[serde(default = "yes")]
    pub agent_services: bool,
    /// The Kubernetes Node (when the TalosNode names one) is Ready.
    #[serde(default = "yes")]
    pub node_ready: bool,
    /// How long a node may take to pass the checks before it counts as failed (Go
    /// duration).
    #[serde(default = "default_health_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub timeout: String,
}

impl Default for HealthChecks {
    fn default() -> Self {
        Self {
            agent_services: true,
            node_ready: true,
            timeout: default_health_timeout(),
        }
    }
}

/// Health checks are on unless switched off.
fn yes() -> bool {
    true
}

/// A reboot plus image pulls and service start-up, with room to spare.
fn default_health_timeout() -> String {
    "15m".to_owned()
}

/// What a failed node does to the rollout.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Stop at the first failed node (nodes already upgrading finish).
    #[default]
    Stop,
    /// Go on with the other nodes, up to `failureBudget` failures.
    Continue,
}

/// Where the rollout is, written by the operator through the status subresource.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TalosUpgradeStatus {
    /// Where the rollout is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<UpgradePhase>,
    /// The spec generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Each picked node's state, by TalosNode name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub nodes: Vec<NodeUpgradeStatus>,
    /// How many nodes the selector picked.
    #[serde(default)]
    pub total: i32,
    /// How many run the release and passed the health checks.
    #[serde(default)]
    pub updated: i32,
    /// How many are being upgraded or checked now.
    #[serde(default)]
    pub in_progress: i32,
    /// How many failed.
    #[serde(default)]
    pub failed: i32,
    /// `updated/total`, for the Progress column (printer columns cannot join values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Standard conditions (e.g. `Progressing`, `Complete`, `Failed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// When the first node started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the last node finished (or the rollout stopped for good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}

/// Where a rollout is.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradePhase {
    /// Not started.
    Pending,
    /// Waiting for the maintenance window to open.
    Waiting,
    /// Upgrading a batch, or soaking one.
    Progressing,
    /// Stopped by `spec.paused`.
    Paused,
    /// Every picked node is updated.
    Succeeded,
    /// Stopped by failures (the failure policy or budget).
    Failed,
}

/// One picked node's part in the rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeUpgradeStatus {
    /// The TalosNode's name.
    pub name: String,
    /// Where the node is.
    pub state: NodeUpgradeState,
    /// The version the node ran before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    /// When its upgrade started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it finished (updated or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Why it failed, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where one node is in a rollout.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeUpgradeState {
    /// Not started.
    Pending,
    /// Installing the release (the agent's `Upgrade` RPC) and rebooting.
    Upgrading,
    /// Running the release; waiting for the health checks and the soak time.
    Verifying,
    /// Running the release and healthy.
    Updated,
    /// The upgrade or the health checks failed.
    Failed,
    /// Already ran the release when the rollout reached it.
    Skipped,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn release() -> Value {
        json!({"version": "1.4.0", "url": "https://releases.example/1.4.0.bundle"})
    }

    #[test]
    fn spec_defaults() {
        let spec: TalosUpgradeSpec = serde_json::from_value(json!({"version": release()})).unwrap();
        assert_eq!(spec.max_unavailable, IntOrString::Int(1));
        assert_eq!(spec.soak_time, "5m");
        assert_eq!(spec.health_checks, HealthChecks::default());
        assert!(spec.health_checks.agent_services && spec.health_checks.node_ready);
        assert_eq!(spec.failure_policy, FailurePolicy::Stop);
        assert_eq!(spec.failure_budget, None);
        assert!(!spec.paused);
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({
                "version": release(),
                "maxUnavailable": 1,
                "soakTime": "5m",
                "healthChecks": {"agentServices": true, "nodeReady": true, "timeout": "15m"},
                "failurePolicy": "stop",
                "paused": false
            })
        );
        let window: MaintenanceWindow = serde_json::from_value(json!({})).unwrap();
        assert_eq!(window.time_zone, "UTC");
    }

    #[test]
    fn spec_round_trips() {
        let spec = json!({
            "version": {"version": "1.4.0", "url": "https://releases.example/1.4.0.bundle",
                        "sha256": "0".repeat(64)},
            "nodeSelector": {"matchLabels": {"pool": "workers"}},
            "maxUnavailable": "25%",
            "maintenanceWindow": {"start": "0 2 * * 6", "duration": "4h", "timeZone": "Europe/Paris"},
            "soakTime": "10m",
            "healthChecks": {"agentServices": true, "nodeReady": false, "timeout": "20m"},
            "failurePolicy": "continue",
            "failureBudget": 2,
            "paused": true
        });
        let parsed: TalosUpgradeSpec = serde_json::from_value(spec.clone()).unwrap();
        assert_eq!(parsed.max_unavailable, IntOrString::String("25%".into()));
        assert_eq!(parsed.failure_policy, FailurePolicy::Continue);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), spec);
    }

    #[test]
    fn status_round_trips() {
        let status = json!({
            "phase": "Progressing",
            "observedGeneration": 1,
            "nodes": [
                {"name": "worker-1", "state": "Updated", "fromVersion": "1.3.0",
                 "startedAt": "2026-11-27T02:00:00Z", "completedAt": "2026-11-27T02:06:00Z"},
                {"name": "worker-2", "state": "Upgrading", "startedAt": "2026-11-27T02:11:00Z"}
            ],
            "total": 3, "updated": 1, "inProgress": 1, "failed": 0,
            "progress": "1/3",
            "startedAt": "2026-11-27T02:00:00Z"
        });
        let parsed: TalosUpgradeStatus = serde_json::from_value(status.clone()).unwrap();
        assert_eq!(parsed.nodes[1].state, NodeUpgradeState::Upgrading);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), status);
    }
}
