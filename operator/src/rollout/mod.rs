//! The TalosUpgrade reconciler: upgrades the picked TalosNodes batch by batch by
//! setting their `spec.version`; the TalosNode reconciler does each upgrade.
//!
//! Each reconcile reads the rollout's status and the TalosNodes (from the node
//! controller's cache), lets [`plan::plan`] decide, writes the new status, and only
//! then sets `spec.version` on the nodes the plan started: a restarted operator finds
//! those nodes Upgrading in status and finishes setting their version, so no node is
//! started twice or skipped.

pub mod plan;
pub mod window;

use std::sync::Arc;

use crds::{
    NodePhase, NodeUpgradeState, TalosNode, TalosUpgrade, TalosUpgradeStatus, UpgradePhase,
};
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::{Context, Error, FIELD_MANAGER, conditions, drain};
use plan::{Limits, NodeView, Window};

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "rollout";

/// The field manager under which the rollout sets TalosNodes' `spec.version`, apart
/// from the operator's status writes so that `managedFields` shows who set it.
const ROLLOUT_FIELD_MANAGER: &str = "talos-operator-rollout";

/// What a rollout reconcile needs besides the shared context: the TalosNodes, as
/// the node controller's reflector has them. The rollout controller starts only once
/// that cache is filled: before, every node would look gone (and fail).
pub struct RolloutContext {
    /// Shared with the node controller.
    pub ctx: Arc<Context>,
    /// Every TalosNode.
    pub nodes: Store<TalosNode>,
}

/// Reconciles one TalosUpgrade.
pub async fn reconcile(
    upgrade: Arc<TalosUpgrade>,
    rc: Arc<RolloutContext>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(&upgrade, &rc).await;
    rc.ctx
        .metrics
        .reconciled(CONTROLLER, started.elapsed(), result.is_err());
    if result.is_ok() {
        rc.ctx.succeeded(&rollout_key(&upgrade));
    }
    result
}

/// Retries a failed reconcile after the rollout's back-off.
pub fn error_policy(upgrade: Arc<TalosUpgrade>, error: &Error, rc: Arc<RolloutContext>) -> Action {
    let delay = rc.ctx.backoff(&rollout_key(&upgrade));
    tracing::warn!(rollout = %upgrade.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn rollout_key(upgrade: &TalosUpgrade) -> String {
    format!("talosupgrade/{}", upgrade.name_any())
}

async fn reconcile_inner(upgrade: &TalosUpgrade, rc: &RolloutContext) -> Result<Action, Error> {
    let ctx = &rc.ctx;
    let name = upgrade.name_any();
    let generation = upgrade.metadata.generation;
    let old = upgrade.status.clone().unwrap_or_default();
    let finished = matches!(
        old.phase,
        Some(UpgradePhase::Succeeded | UpgradePhase::Failed)
    );
    if finished && old.observed_generation == generation {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let picked = picked_nodes(upgrade, &rc.nodes)?;
    let limits = match Limits::from_spec(&upgrade.spec, picked.len()) {
        Ok(limits) => limits,
        Err(why) => return refuse(upgrade, ctx, &old, why).await,
    };
    let window = match &upgrade.spec.maintenance_window {
        None => Window::Open,
        Some(window) => match window::check(window, now) {
            Ok(window) => window,
            Err(why) => return refuse(upgrade, ctx, &old, why).await,
        },
    };
    let target = upgrade.spec.version.version.clone();
    let mut views = Vec::with_capacity(picked.len());
    for node in &picked {
        let in_flight = old.nodes.iter().any(|n| {
            n.name == node.name_any()
                && matches!(
                    n.state,
                    NodeUpgradeState::Upgrading | NodeUpgradeState::Verifying
                )
        });
        views.push(
            node_view(
                node,
                ctx,
                in_flight && upgrade.spec.health_checks.node_ready,
            )
            .await?,
        );
    }
    let plan = plan::plan(
        &upgrade.spec,
        generation,
        &old,
        &views,
        &limits,
        &window,
        now,
    );

    if plan.status != old {
        write_status(ctx, &name, &plan.status).await?;
    }
    // Every node the status says is upgrading gets the target version, not only the
    // ones started now: a restarted operator finishes what its predecessor recorded.
    let nodes = Api::<TalosNode>::all(ctx.client.clone());
    for state in plan
        .status
        .nodes
        .iter()
        .filter(|n| n.state == NodeUpgradeState::Upgrading)
    {
        let current = picked.iter().find(|n| n.name_any() == state.name);
        if current.is_some_and(|n| n.spec.version.as_ref() == Some(&upgrade.spec.version)) {
            continue;
        }
        let patch = json!({
            "apiVersion": TalosNode::api_version(&()),
            "kind": TalosNode::kind(&()),
            "spec": {"version": upgrade.spec.version},
        });
        nodes
            .patch(
                &state.name,
                &PatchParams::apply(ROLLOUT_FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        tracing::info!(rollout = %name, node = %state.name, version = %target, "node started");
    }

    let status = &plan.status;
    ctx.metrics.rollout(
        &name,
        status.total,
        status.updated,
        status.in_progress,
        status.failed,
    );
    announce(upgrade, ctx, &old, status, &plan.start).await;
    Ok(match status.phase {
        Some(UpgradePhase::Succeeded | UpgradePhase::Failed) => Action::await_change(),
        Some(UpgradePhase::Waiting) => Action::requeue(ctx.settings.resync),
        _ => Action::requeue(ctx.settings.poll),
    })
}

/// The TalosNodes the rollout picks: listed in `spec.nodes` (if any) and matching
/// `spec.nodeSelector` (if any), sorted by name.
fn picked_nodes(
    upgrade: &TalosUpgrade,
    store: &Store<TalosNode>,
) -> Result<Vec<Arc<TalosNode>>, Error> {
    let selector = match &upgrade.spec.node_selector {
        Some(selector) => Some(
            Selector::try_from(selector.clone())
                .map_err(|e| Error::InvalidSpec(format!("nodeSelector: {e}")))?,
        ),
        None => None,
    };
    let names = &upgrade.spec.nodes;
    let mut picked: Vec<Arc<TalosNode>> = store
        .state()
        .into_iter()
        .filter(|n| names.is_empty() || names.contains(&n.name_any()))
        .filter(|n| selector.as_ref().is_none_or(|s| s.matches(n.labels())))
        .collect();
    picked.sort_by_key(|n| n.name_any());
    Ok(picked)
}

/// What the plan needs of a TalosNode; the Kubernetes Node's readiness is asked only
/// for nodes under way.
async fn node_view(
    node: &TalosNode,
    ctx: &Context,
    ask_kubernetes: bool,
) -> Result<NodeView, Error> {
    let status = node.status.clone().unwrap_or_default();
    let kubernetes_ready = match (&node.spec.node_name, ask_kubernetes) {
        (Some(node_name), true) => drain::node_ready(&ctx.client, node_name).await?,
        _ => None,
    };
    let upgrade_failed = conditions::get(&status.conditions, "Upgraded")
        .filter(|c| c.status == "False" && c.observed_generation == node.metadata.generation)
        .map(|c| c.message.clone());
    Ok(NodeView {
        name: node.name_any(),
        paused: node.spec.paused,
        running: status.os_version.clone(),
        ready: status.phase == Some(NodePhase::Ready),
        services_healthy: status
            .services
            .as_ref()
            .is_some_and(|s| s.unhealthy.is_empty()),
        kubernetes_ready,
        upgrade_failed,
        busy: status.operation.is_some(),
    })
}

/// A spec the operator cannot follow (the CRD schema lets a few such through, e.g. an
/// unknown time zone): say why in status and wait for a new spec.
async fn refuse(
    upgrade: &TalosUpgrade,
    ctx: &Context,
    old: &TalosUpgradeStatus,
    why: String,
) -> Result<Action, Error> {
    let mut status = old.clone();
    status.observed_generation = upgrade.metadata.generation;
    conditions::set(
        &mut status.conditions,
        "Progressing",
        false,
        "InvalidSpec",
        why,
        upgrade.metadata.generation,
    );
    write_status(ctx, &upgrade.name_any(), &status).await?;
    Ok(Action::await_change())
}

async fn write_status(ctx: &Context, name: &str, status: &TalosUpgradeStatus) -> Result<(), Error> {
    let patch = json!({
        "apiVersion": TalosUpgrade::api_version(&()),
        "kind": TalosUpgrade::kind(&()),
        "status": status,
    });
    Api::<TalosUpgrade>::all(ctx.client.clone())
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Events for people: a batch started, the rollout finished or stopped.
async fn announce(
    upgrade: &TalosUpgrade,
    ctx: &Context,
    old: &TalosUpgradeStatus,
    new: &TalosUpgradeStatus,
    started: &[String],
) {
    let mut events = Vec::new();
    if !started.is_empty() {
        events.push((
            EventType::Normal,
            "BatchStarted",
            format!("upgrading {}", started.join(", ")),
        ));
    }
    if new.phase != old.phase {
        match new.phase {
            Some(UpgradePhase::Succeeded) => events.push((
                EventType::Normal,
                "Succeeded",
                format!(
                    "{} node(s) run {}",
                    new.updated, upgrade.spec.version.version
                ),
            )),
            Some(UpgradePhase::Failed) => {
                let message = conditions::get(&new.conditions, "Failed")
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                events.push((EventType::Warning, "Failed", message))
            }
            Some(UpgradePhase::Paused) => {
                events.push((EventType::Normal, "Paused", "spec.paused is set".into()))
            }
            _ => {}
        }
    }
    for (type_, reason, note) in events {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Rollout".into(),
            secondary: None,
        };
        ctx.publish(&upgrade.object_ref(&()), event).await;
    }
}
