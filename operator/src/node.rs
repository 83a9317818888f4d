//! The TalosNode reconciler: observe the node through its agent, then make at most
//! one change (configuration, reboot or upgrade), and write what it saw to status.
//!
//! A disruptive change (anything that reboots the node) is recorded in
//! `status.operation` before its request is sent, and the reconciler does nothing else
//! to the node until that operation is over: the node's boot id changed (done) or the
//! operation timed out (failed). This is what keeps one `rebootRequestedAt` to one
//! reboot, and a restarted operator from repeating an upgrade.

use std::sync::Arc;

use api::machine::VersionInfo;
use crds::{
    ApplyMode, CONFIG_PREVIEW_ANNOTATION, ConfigPatch, ConfigPreview, NodeOperation, NodePhase,
    OperationKind, ServiceHealth, TalosNode, TalosNodeStatus,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::agent::{Agent, AgentError};
use crate::drain::{self, Cordon, DrainOptions};
use crate::{Context, Error, FIELD_MANAGER, conditions};

/// Condition types the reconciler sets.
mod condition {
    /// The agent answered.
    pub const REACHABLE: &str = "Reachable";
    /// The spec's configuration patches are applied (or nothing to apply).
    pub const CONFIG_APPLIED: &str = "ConfigApplied";
    /// The last requested reboot happened.
    pub const REBOOTED: &str = "Rebooted";
    /// The node runs `spec.version`.
    pub const UPGRADED: &str = "Upgraded";
    /// The node is reached, in sync and its services are healthy.
    pub const READY: &str = "Ready";
}

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "node";

/// Reconciles one TalosNode; the controller calls it on every change and when the
/// returned action's requeue time comes.
pub async fn reconcile(node: Arc<TalosNode>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let name = node.name_any();
    let result = Reconcile::new(&node, &ctx).run().await;
    ctx.metrics
        .reconciled(CONTROLLER, started.elapsed(), result.is_err());
    if result.is_ok() {
        ctx.succeeded(&name);
    }
    result
}

/// Retries a failed reconcile after the node's back-off.
pub fn error_policy(node: Arc<TalosNode>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = node.name_any();
    let delay = ctx.backoff(&name);
    tracing::warn!(node = %name, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// One reconcile: the node, the status being built, and what it needs.
struct Reconcile<'a> {
    node: &'a TalosNode,
    ctx: &'a Context,
    name: String,
    generation: Option<i64>,
    old: TalosNodeStatus,
    status: TalosNodeStatus,
    now: Timestamp,
}

/// Where a reconcile ended up: how soon to look again.
enum Next {
    /// Nothing under way: observe again after the resync period.
    Settled,
    /// Something is under way: look again soon.
    Soon,
}

impl<'a> Reconcile<'a> {
    fn new(node: &'a TalosNode, ctx: &'a Context) -> Self {
        let old = node.status.clone().unwrap_or_default();
        Self {
            node,
            ctx,
            name: node.name_any(),
            generation: node.metadata.generation,
            status: old.clone(),
            old,
            now: Timestamp::now(),
        }
    }

    async fn run(mut self) -> Result<Action, Error> {
        self.status.observed_generation = self.generation;
        let (mut agent, version) = match self.ctx.agents.reach(&self.node.spec.endpoints).await {
            Ok(reached) => reached,
            Err(error) => return self.unreachable(error).await,
        };
        self.observe(&mut agent, &version).await?;
        self.status.config_preview = self.preview(&mut agent).await?;

        let next = if let Some(operation) = self.old.operation.clone() {
            match self.follow(&mut agent, &operation, &version).await? {
                Some(next) => next,
                None => self.converge(&mut agent, &version).await?,
            }
        } else if self.node.spec.paused {
            self.settle("Paused", "spec.paused is set: no change is made");
            Next::Settled
        } else {
            self.converge(&mut agent, &version).await?
        };
        self.write_status().await?;
        Ok(match next {
            Next::Settled => Action::requeue(self.ctx.settings.resync),
            Next::Soon => Action::requeue(self.ctx.settings.poll),
        })
    }

    /// Records what the agent says: versions, boot, services, configuration hash.
    async fn observe(&mut self, agent: &mut Agent, version: &VersionInfo) -> Result<(), Error> {
        let services = agent.services().await?;
        let status = &mut self.status;
        status.os_version = Some(version.os_version.clone()).filter(|v| !v.is_empty());
        status.agent_version = Some(version.agent_version.clone());
        status.kernel = Some(version.kernel.clone()).filter(|k| !k.is_empty());
        status.boot_id = Some(version.boot_id.clone());
        status.last_boot_time = Timestamp::from_second(version.boot_time).ok().map(Time);
        status.services = Some(ServiceHealth {
            total: services.len() as i32,
            healthy: services.iter().filter(|s| s.healthy).count() as i32,
            unhealthy: services
                .iter()
                .filter(|s| !s.healthy)
                .map(|s| s.name.clone())
                .collect(),
        });
        conditions::set(
            &mut status.conditions,
            condition::REACHABLE,
            true,
            "Answered",
            format!("the agent answers on {}", agent.endpoint()),
            self.generation,
        );
        Ok(())
    }

    /// No endpoint answered: say so, and retry with back-off. An operation under way
    /// stays recorded (the node is probably rebooting).
    async fn unreachable(mut self, error: AgentError) -> Result<Action, Error> {
        let message = error.to_string();
        tracing::debug!(node = %self.name, error = %message, "unreachable");
        if self.old.operation.is_none() {
            self.status.phase = Some(NodePhase::Unreachable);
        }
        conditions::set(
            &mut self.status.conditions,
            condition::REACHABLE,
            false,
            "Unreachable",
            message.clone(),
            self.generation,
        );
        self.status.last_error = Some(message);
        self.write_status().await?;
        Ok(Action::requeue(if self.old.operation.is_some() {
            self.ctx.settings.poll
        } else {
            self.ctx.backoff(&self.name)
        }))
    }

    /// The dry run `kubectl talos apply-config` asked for with the preview
    /// annotation, answered once per annotation value.
    async fn preview(&mut self, agent: &mut Agent) -> Result<Option<ConfigPreview>, Error> {
        let Some(request) = self.node.annotations().get(CONFIG_PREVIEW_ANNOTATION) else {
            return Ok(None);
        };
        let hash = sha256_hex(request.as_bytes());
        if let Some(done) = &self.old.config_preview
            && done.request == hash
        {
            return Ok(Some(done.clone()));
        }
        let patches = match serde_json::from_str::<Vec<ConfigPatch>>(request) {
            Ok(patches) => patches,
            Err(e) => {
                return Ok(Some(ConfigPreview {
                    request: hash,
                    diff: String::new(),
                    error: Some(format!(
                        "annotation {CONFIG_PREVIEW_ANNOTATION} is not a list of config patches: {e}"
                    )),
                }));
            }
        };
        let outcome = agent
            .patch_config(patch_texts(&patches), self.apply_mode(), true)
            .await;
        Ok(Some(match outcome {
            Ok(outcome) => ConfigPreview {
                request: hash,
                diff: outcome.diff,
                error: None,
            },
            Err(e) if e.is_refusal() => ConfigPreview {
                request: hash,
                diff: String::new(),
                error: Some(e.to_string()),
            },
            Err(e) => return Err(e.into()),
        }))
    }

    /// Follows the operation under way. Returns `None` when it is over (the
    /// reconcile goes on as if there had been none), `Some` while it is not.
    async fn follow(
        &mut self,
        agent: &mut Agent,
        operation: &NodeOperation,
        version: &VersionInfo,
    ) -> Result<Option<Next>, Error> {
        if version.boot_id == operation.from_boot_id {
            let installed = operation.kind == OperationKind::Upgrade
                && version.slots.iter().any(|slot| {
                    !slot.booted
                        && slot.state == "trial"
                        && Some(&slot.version) == operation.version.as_ref()
                });
            if !installed && !self.ctx.was_sent(&self.name, operation) {
                return self.send(agent, operation).await.map(Some);
            }
            let waited = self.now.duration_since(operation.started_at.0);
            let timeout = self.ctx.settings.operation_timeout;
            if waited.as_secs() < timeout.as_secs() as i64 {
                tracing::debug!(node = %self.name, kind = ?operation.kind, "waiting for the reboot");
                return Ok(Some(Next::Soon));
            }
            let message = format!(
                "the node did not reboot within {} of the {:?} request",
                humantime::format_duration(timeout),
                operation.kind
            );
            self.finish(operation, false, "Timeout", message).await?;
            return Ok(None);
        }
        match operation.kind {
            OperationKind::Upgrade => {
                let wanted = operation.version.clone().unwrap_or_default();
                let on_trial = version
                    .slots
                    .iter()
                    .any(|slot| slot.booted && slot.state == "trial");
                if version.os_version == wanted && on_trial {
                    // The agent keeps the new slot only once its services stayed
                    // healthy; until then it may still fall back.
                    tracing::debug!(node = %self.name, "waiting for the trial boot's verdict");
                    return Ok(Some(Next::Soon));
                }
                if version.os_version == wanted {
                    let message = format!("the node runs {wanted}");
                    self.finish(operation, true, "Upgraded", message).await?;
                } else {
                    let why = version
                        .rolled_back
                        .as_ref()
                        .map(|r| r.reason.clone())
                        .filter(|r| !r.is_empty())
                        .unwrap_or_else(|| "the node came back on another version".into());
                    let message = format!(
                        "{wanted} did not stay: the node runs {} ({why})",
                        version.os_version
                    );
                    self.finish(operation, false, "RolledBack", message).await?;
                }
            }
            OperationKind::Reboot => {
                let message = format!("rebooted (boot {})", short(&version.boot_id));
                self.finish(operation, true, "Rebooted", message).await?;
            }
            OperationKind::Config => {
                let message = "configuration applied with a reboot".to_owned();
                self.finish(operation, true, "Applied", message).await?;
            }
        }
        Ok(None)
    }

    /// Ends `operation`: its condition, an event, and the Node uncordoned if the
    /// operator cordoned it.
    async fn finish(
        &mut self,
        operation: &NodeOperation,
        succeeded: bool,
        reason: &str,
        message: String,
    ) -> Result<(), Error> {
        if operation.cordoned
            && let Some(node_name) = &self.node.spec.node_name
        {
            drain::uncordon(&self.ctx.client, node_name).await?;
        }
        let type_ = match operation.kind {
            OperationKind::Upgrade => condition::UPGRADED,
            OperationKind::Reboot => condition::REBOOTED,
            OperationKind::Config => condition::CONFIG_APPLIED,
        };
        conditions::set(
            &mut self.status.conditions,
            type_,
            succeeded,
            reason,
            message.clone(),
            self.generation,
        );
        self.status.operation = None;
        self.ctx.finished(&self.name, operation);
        self.status.last_error = (!succeeded).then(|| message.clone());
        self.event(succeeded, reason, message, &format!("{:?}", operation.kind))
            .await;
        Ok(())
    }

    /// Brings the node towards its spec, one disruptive step at most.
    async fn converge(&mut self, agent: &mut Agent, version: &VersionInfo) -> Result<Next, Error> {
        if let Some(next) = self.converge_config(agent, version).await? {
            return Ok(next);
        }
        if let Some(requested) = &self.node.spec.reboot_requested_at
            && self
                .status
                .last_boot_time
                .as_ref()
                .is_none_or(|boot| requested.0 > boot.0)
            && !conditions::failed_at(
                &self.status.conditions,
                condition::REBOOTED,
                self.generation,
            )
        {
            return self.disrupt(agent, version, OperationKind::Reboot).await;
        }
        if let Some(release) = &self.node.spec.version
            && release.version != version.os_version
            && !conditions::failed_at(
                &self.status.conditions,
                condition::UPGRADED,
                self.generation,
            )
        {
            return self.disrupt(agent, version, OperationKind::Upgrade).await;
        }
        if let Some(release) = &self.node.spec.version
            && release.version == version.os_version
        {
            conditions::set(
                &mut self.status.conditions,
                condition::UPGRADED,
                true,
                "Upgraded",
                format!("the node runs {}", release.version),
                self.generation,
            );
        }
        self.settle("InSync", "the node runs its spec");
        Ok(Next::Settled)
    }

    /// Applies the spec's configuration patches when the agent's dry run shows a
    /// change. Returns `Some` when it started a reboot.
    async fn converge_config(
        &mut self,
        agent: &mut Agent,
        version: &VersionInfo,
    ) -> Result<Option<Next>, Error> {
        let running_hash = agent.config_hash().await?;
        let patches = &self.node.spec.config_patches;
        if patches.is_empty() {
            self.config_in_sync(
                running_hash,
                "NoPatches",
                "the spec has no configuration patches",
            );
            return Ok(None);
        }
        let texts = patch_texts(patches);
        let mode = self.apply_mode();
        let dry_run = match agent.patch_config(texts.clone(), mode, true).await {
            Ok(outcome) => outcome,
            Err(e) if e.is_refusal() => {
                self.config_refused(e.to_string()).await;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if dry_run.diff.is_empty() {
            self.config_in_sync(
                running_hash,
                "InSync",
                "the node runs the patched configuration",
            );
            return Ok(None);
        }
        self.status.pending_config_diff = Some(dry_run.diff.clone());
        // Applied at this generation, and nothing changed the node's configuration
        // since: the patches do not converge (say an RFC 6902 `add` to a list), or a
        // staged change waits for a reboot. Applying again would only repeat them.
        let applied = conditions::get(&self.status.conditions, condition::CONFIG_APPLIED)
            .is_some_and(|c| c.status == "True" && c.observed_generation == self.generation);
        if applied && self.old.applied_config_hash.as_deref() == Some(running_hash.as_str()) {
            return Ok(None);
        }
        if dry_run.reboots {
            return self
                .disrupt(agent, version, OperationKind::Config)
                .await
                .map(Some);
        }
        match agent.patch_config(texts, mode, false).await {
            Ok(outcome) => {
                self.status.applied_config_hash = Some(outcome.config_hash.clone());
                self.status.applied_config_hash_short = Some(short(&outcome.config_hash));
                self.status.pending_config_diff = None;
                conditions::set(
                    &mut self.status.conditions,
                    condition::CONFIG_APPLIED,
                    true,
                    "Applied",
                    outcome.details.clone(),
                    self.generation,
                );
                self.event(true, "ConfigApplied", outcome.details, "ApplyConfig")
                    .await;
                Ok(None)
            }
            Err(e) if e.is_refusal() => {
                self.config_refused(e.to_string()).await;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn config_in_sync(&mut self, running_hash: String, reason: &str, message: &str) {
        self.status.applied_config_hash_short = Some(short(&running_hash));
        self.status.applied_config_hash = Some(running_hash);
        self.status.pending_config_diff = None;
        conditions::set(
            &mut self.status.conditions,
            condition::CONFIG_APPLIED,
            true,
            reason,
            message,
            self.generation,
        );
    }

    /// The agent refused the patches: the running configuration is untouched.
    async fn config_refused(&mut self, reason: String) {
        let already = conditions::failed_at(
            &self.status.conditions,
            condition::CONFIG_APPLIED,
            self.generation,
        );
        conditions::set(
            &mut self.status.conditions,
            condition::CONFIG_APPLIED,
            false,
            "Invalid",
            reason.clone(),
            self.generation,
        );
        self.status.pending_config_diff = None;
        self.status.last_error = Some(reason.clone());
        if !already {
            self.event(false, "ConfigRefused", reason, "ApplyConfig")
                .await;
        }
    }

    /// Starts a reboot, an upgrade, or a configuration change that reboots: drains
    /// the Kubernetes Node if one is named, records the operation in status, then
    /// sends the request.
    async fn disrupt(
        &mut self,
        agent: &mut Agent,
        version: &VersionInfo,
        kind: OperationKind,
    ) -> Result<Next, Error> {
        let cordoned = match &self.node.spec.node_name {
            Some(node_name) => self.drain(node_name).await?,
            None => false,
        };
        let release = self.node.spec.version.clone();
        let operation = NodeOperation {
            kind,
            from_boot_id: version.boot_id.clone(),
            started_at: Time(self.now),
            version: (kind == OperationKind::Upgrade)
                .then(|| release.as_ref().map(|r| r.version.clone()))
                .flatten(),
            cordoned,
        };
        self.status.operation = Some(operation.clone());
        self.status.phase = Some(match kind {
            OperationKind::Upgrade => NodePhase::Upgrading,
            OperationKind::Reboot | OperationKind::Config => NodePhase::Rebooting,
        });
        self.write_status().await?;
        self.old = self.status.clone();

        self.send(agent, &operation).await
    }

    /// Sends the request of `operation` (again, after an operator restart: the
    /// previous process may have died between recording it and sending it). Every
    /// request is safe to repeat: an upgrade under way answers busy, a reboot under
    /// way is the same reboot, and configuration patches converge.
    async fn send(&mut self, agent: &mut Agent, operation: &NodeOperation) -> Result<Next, Error> {
        let sent = match operation.kind {
            OperationKind::Reboot => agent.reboot().await.map(drop),
            OperationKind::Upgrade => match &self.node.spec.version {
                Some(release) => agent.upgrade(&release.url, release.sha256.as_deref()).await,
                None => Ok(()),
            },
            OperationKind::Config => {
                let texts = patch_texts(&self.node.spec.config_patches);
                agent
                    .patch_config(texts, self.apply_mode(), false)
                    .await
                    .map(drop)
            }
        };
        match sent {
            Ok(()) => {
                tracing::info!(node = %self.name, kind = ?operation.kind, "operation started");
                self.ctx.sent(&self.name, operation);
                Ok(Next::Soon)
            }
            Err(e) if e.is_busy() => {
                tracing::info!(node = %self.name, kind = ?operation.kind, "operation already under way");
                self.ctx.sent(&self.name, operation);
                Ok(Next::Soon)
            }
            Err(e) => {
                let reason = if e.is_refusal() { "Refused" } else { "Failed" };
                self.finish(operation, false, reason, e.to_string()).await?;
                self.status.phase = Some(NodePhase::Degraded);
                Ok(Next::Soon)
            }
        }
    }

    /// Cordons and drains the Kubernetes Node `node_name`; returns whether the
    /// operator cordoned it (and so must uncordon it). A Node that does not exist, or
    /// a cluster without Nodes, is nothing to drain.
    async fn drain(&mut self, node_name: &str) -> Result<bool, Error> {
        let client = &self.ctx.client;
        let cordon = match drain::cordon(client, node_name).await {
            Ok(cordon) => cordon,
            Err(drain::DrainError::NodeNotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let options = DrainOptions {
            timeout: self.ctx.settings.drain_timeout,
            ..DrainOptions::default()
        };
        if let Err(e) = drain::drain(client, node_name, &options).await {
            if cordon == Cordon::Cordoned {
                let _ = drain::uncordon(client, node_name).await;
            }
            return Err(e.into());
        }
        Ok(cordon == Cordon::Cordoned)
    }

    /// Nothing under way: Ready when the node's services are healthy and its spec
    /// applied, Degraded otherwise.
    fn settle(&mut self, reason: &str, message: &str) {
        let unhealthy = self
            .status
            .services
            .as_ref()
            .map(|s| s.unhealthy.clone())
            .unwrap_or_default();
        let failed: Vec<String> = self
            .status
            .conditions
            .iter()
            .filter(|c| c.status == "False" && c.type_ != condition::READY)
            .map(|c| format!("{}: {}", c.type_, c.message))
            .collect();
        let (ready, reason, message) = if !unhealthy.is_empty() {
            (
                false,
                "ServicesUnhealthy",
                format!("unhealthy services: {}", unhealthy.join(", ")),
            )
        } else if !failed.is_empty() {
            (false, "ChangeFailed", failed.join("; "))
        } else {
            (true, reason, message.to_owned())
        };
        if ready {
            self.status.last_error = None;
        }
        self.status.phase = Some(if ready {
            NodePhase::Ready
        } else {
            NodePhase::Degraded
        });
        conditions::set(
            &mut self.status.conditions,
            condition::READY,
            ready,
            reason,
            message,
            self.generation,
        );
    }

    fn apply_mode(&self) -> api::machine::ApplyMode {
        match self.node.spec.apply_mode {
            ApplyMode::Auto => api::machine::ApplyMode::Auto,
            ApplyMode::NoReboot => api::machine::ApplyMode::NoReboot,
            ApplyMode::Staged => api::machine::ApplyMode::Staged,
            ApplyMode::Try => api::machine::ApplyMode::Try,
        }
    }

    async fn event(&self, normal: bool, reason: &str, note: String, action: &str) {
        let event = Event {
            type_: if normal {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        self.ctx.publish(&self.node.object_ref(&()), event).await;
    }

    /// Writes status with server-side apply, unless nothing changed.
    async fn write_status(&mut self) -> Result<(), Error> {
        self.ctx.metrics.node_phase(&self.name, self.status.phase);
        if self.status == self.old {
            return Ok(());
        }
        let patch = json!({
            "apiVersion": TalosNode::api_version(&()),
            "kind": TalosNode::kind(&()),
            "status": self.status,
        });
        Api::<TalosNode>::all(self.ctx.client.clone())
            .patch_status(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        Ok(())
    }
}

/// The patches as the agent's `PatchConfiguration` takes them: JSON texts, a mapping
/// for a merge patch and a list for RFC 6902 operations.
pub fn patch_texts(patches: &[ConfigPatch]) -> Vec<String> {
    patches
        .iter()
        .map(|patch| match (&patch.merge, &patch.json_patch) {
            (Some(merge), _) => serde_json::to_string(merge),
            (None, Some(ops)) => serde_json::to_string(ops),
            // The CRD's CEL rule requires exactly one form; an empty patch is a no-op.
            (None, None) => Ok("{}".to_owned()),
        })
        .map(|text| text.unwrap_or_else(|e| unreachable!("JSON values serialize: {e}")))
        .collect()
}

/// Lowercase hex sha256, as the agent writes configuration hashes.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The first 12 characters of a hash or boot id, as columns show them.
fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patches_become_the_texts_machine_config_parses() {
        let patches: Vec<ConfigPatch> = serde_json::from_value(json!([
            {"merge": {"machine": {"network": {"hostname": "n1"}}}},
            {"jsonPatch": [{"op": "remove", "path": "/machine/install"}]}
        ]))
        .unwrap();
        let texts = patch_texts(&patches);
        assert_eq!(
            texts,
            [
                r#"{"machine":{"network":{"hostname":"n1"}}}"#,
                r#"[{"op":"remove","path":"/machine/install"}]"#
            ]
        );
        for text in &texts {
            machine_config::Patch::parse(text).unwrap();
        }
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
