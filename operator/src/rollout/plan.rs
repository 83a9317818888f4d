//! The rollout's decisions, from its spec, its status and what the TalosNodes say:
//! which node moves to which state, and which nodes start now. No I/O, so that every
//! rule is tested here, and so that a restarted operator (which has only the status)
//! decides exactly what the one before it would have.

use std::collections::BTreeMap;
use std::time::Duration;

use crds::{
    FailurePolicy, NodeUpgradeState, NodeUpgradeStatus, TalosUpgradeSpec, TalosUpgradeStatus,
    UpgradePhase,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::conditions;

/// What the rollout needs to know of one picked TalosNode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The TalosNode's name.
    pub name: String,
    /// `spec.paused`: the node is left out.
    pub paused: bool,
    /// The OS version it runs (`status.osVersion`).
    pub running: Option<String>,
    /// Its phase is Ready: reached, in sync, services healthy.
    pub ready: bool,
    /// Its services are all healthy (the agentServices check).
    pub services_healthy: bool,
    /// Its Kubernetes Node's readiness: None when it names none or the Node is
    /// missing (the nodeReady check then passes).
    pub kubernetes_ready: Option<bool>,
    /// Why its upgrade to the current `spec.version` failed (the TalosNode's Upgraded
    /// condition is False for its current generation).
    pub upgrade_failed: Option<String>,
    /// An operation (reboot, upgrade) is under way on it.
    pub busy: bool,
}

/// The rollout's settings, parsed once.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How many picked nodes may be down at once.
    pub max_unavailable: usize,
    /// How long a finished batch must stay healthy before the next one starts.
    pub soak: Duration,
    /// How long a node may take from its start to passing the health checks.
    pub health_timeout: Duration,
}

impl Limits {
    /// Reads the limits from `spec` for `picked` nodes.
    pub fn from_spec(spec: &TalosUpgradeSpec, picked: usize) -> Result<Self, String> {
        let max_unavailable = match &spec.max_unavailable {
            IntOrString::Int(n) if *n >= 1 => *n as usize,
            IntOrString::String(text) => {
                let percent: usize = text
                    .strip_suffix('%')
                    .and_then(|p| p.parse().ok())
                    .filter(|p| (1..=100).contains(p))
                    .ok_or_else(|| format!("maxUnavailable {text:?} is not a percentage"))?;
                (picked * percent / 100).max(1)
            }
            IntOrString::Int(n) => return Err(format!("maxUnavailable {n} is below 1")),
        };
        let duration = |what: &str, text: &str| {
            crate::duration::parse(text).map_err(|e| format!("{what}: {e}"))
        };
        Ok(Self {
            max_unavailable,
            soak: duration("soakTime", &spec.soak_time)?,
            health_timeout: duration("healthChecks.timeout", &spec.health_checks.timeout)?,
        })
    }
}

/// Whether new nodes may start now, as far as the maintenance window goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// No window, or inside one.
    Open,
    /// Outside the window; the message says when it opens next.
    Closed(String),
}

/// The plan: the new status, and the nodes whose `spec.version` is to be set now.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The status to write.
    pub status: TalosUpgradeStatus,
    /// Nodes that start now (their state is already Upgrading in `status`).
    pub start: Vec<String>,
}

/// Condition types of a TalosUpgrade.
mod condition {
    /// Nodes are being upgraded, or may be; False with the reason when not.
    pub const PROGRESSING: &str = "Progressing";
    /// The rollout stopped because nodes failed.
    pub const FAILED: &str = "Failed";
}

/// Decides the rollout's next step.
pub fn plan(
    spec: &TalosUpgradeSpec,
    generation: Option<i64>,
    old: &TalosUpgradeStatus,
    nodes: &[NodeView],
    limits: &Limits,
    window: &Window,
    now: Timestamp,
) -> Plan {
    let target = &spec.version.version;
    let mut states: BTreeMap<String, NodeUpgradeStatus> = old
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.clone()))
        .collect();
    let views: BTreeMap<&str, &NodeView> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();

    // Newly picked nodes join as Pending, or Skipped when they already run the target.
    for node in nodes {
        states.entry(node.name.clone()).or_insert_with(|| {
            let skipped = node.running.as_deref() == Some(target.as_str());
            NodeUpgradeStatus {
                name: node.name.clone(),
                state: if skipped {
                    NodeUpgradeState::Skipped
                } else {
                    NodeUpgradeState::Pending
                },
                from_version: node.running.clone(),
                started_at: None,
                completed_at: None,
                message: skipped.then(|| format!("already runs {target}")),
            }
        });
    }
    // A node no longer picked (relabelled, deleted) that has not started leaves the
    // rollout; one that has started stays, so that it is still accounted for.
    states.retain(|name, state| {
        views.contains_key(name.as_str()) || state.state != NodeUpgradeState::Pending
    });

    for state in states.values_mut() {
        advance(
            state,
            views.get(state.name.as_str()).copied(),
            target,
            spec,
            limits,
            now,
        );
    }

    let count = |wanted: &[NodeUpgradeState]| {
        states
            .values()
            .filter(|s| wanted.contains(&s.state))
            .count()
    };
    let in_flight = count(&[NodeUpgradeState::Upgrading, NodeUpgradeState::Verifying]);
    let failed = count(&[NodeUpgradeState::Failed]);
    let stopped_by_failures = match spec.failure_policy {
        FailurePolicy::Stop => failed > 0,
        FailurePolicy::Continue => spec
            .failure_budget
            .is_some_and(|budget| failed > budget.max(0) as usize),
    };

    let mut status = TalosUpgradeStatus {
        observed_generation: generation,
        conditions: old.conditions.clone(),
        started_at: old.started_at.clone(),
        completed_at: old.completed_at.clone(),
        ..TalosUpgradeStatus::default()
    };
    let mut start = Vec::new();
    let pending: Vec<String> = states
        .values()
        .filter(|s| s.state == NodeUpgradeState::Pending)
        .map(|s| s.name.clone())
        .collect();

    let (phase, progressing, reason, message) = if stopped_by_failures {
        let message = format!(
            "stopped: {failed} node(s) failed ({})",
            failed_names(&states)
        );
        if in_flight > 0 {
            (
                UpgradePhase::Progressing,
                true,
                "Stopping",
                format!("{message}; waiting for {in_flight} node(s) under way"),
            )
        } else {
            (UpgradePhase::Failed, false, "Stopped", message)
        }
    } else if pending.is_empty() && in_flight == 0 {
        if failed > 0 {
            let message = format!("done; {failed} node(s) failed ({})", failed_names(&states));
            (UpgradePhase::Failed, false, "Complete", message)
        } else {
            (
                UpgradePhase::Succeeded,
                false,
                "Complete",
                format!("every picked node runs {target}"),
            )
        }
    } else if in_flight > 0 {
        let message = format!("{in_flight} node(s) upgrading or being checked");
        (UpgradePhase::Progressing, true, "Batch", message)
    } else if spec.paused {
        (
            UpgradePhase::Paused,
            false,
            "Paused",
            "spec.paused is set: no new node is started".to_owned(),
        )
    } else if let Window::Closed(why) = window {
        (UpgradePhase::Waiting, false, "OutsideWindow", why.clone())
    } else if let Some(until) = soak_until(&states, limits.soak, now) {
        let message = format!("soaking the last batch until {until}");
        (UpgradePhase::Progressing, true, "Soaking", message)
    } else {
        let unavailable = states
            .values()
            .filter(|s| {
                matches!(
                    s.state,
                    NodeUpgradeState::Pending
                        | NodeUpgradeState::Updated
                        | NodeUpgradeState::Skipped
                ) && views
                    .get(s.name.as_str())
                    .is_some_and(|v| !v.ready && !v.paused)
            })
            .count();
        let room = limits.max_unavailable.saturating_sub(unavailable);
        for name in &pending {
            let view = views.get(name.as_str());
            let state = states
                .get_mut(name)
                .unwrap_or_else(|| unreachable!("pending comes from states"));
            if view.is_some_and(|v| v.paused) {
                state.state = NodeUpgradeState::Skipped;
                state.message = Some("the TalosNode is paused".into());
                state.completed_at = Some(Time(now));
                continue;
            }
            if start.len() == room {
                continue;
            }
            state.state = NodeUpgradeState::Upgrading;
            state.started_at = Some(Time(now));
            state.message = None;
            start.push(name.clone());
        }
        if start.is_empty() && room == 0 {
            let message = format!(
                "{unavailable} picked node(s) are not Ready: waiting for them before starting more"
            );
            (
                UpgradePhase::Progressing,
                true,
                "WaitingForHealthyNodes",
                message,
            )
        } else if start.is_empty() {
            // Every pending node was paused: the next reconcile sees the rollout done.
            (
                UpgradePhase::Progressing,
                true,
                "Batch",
                "skipped paused nodes".to_owned(),
            )
        } else {
            (
                UpgradePhase::Progressing,
                true,
                "Batch",
                format!("started {}", start.join(", ")),
            )
        }
    };

    if !start.is_empty() && status.started_at.is_none() {
        status.started_at = Some(Time(now));
    }
    let finished = matches!(phase, UpgradePhase::Succeeded | UpgradePhase::Failed);
    if finished && status.completed_at.is_none() {
        status.completed_at = Some(Time(now));
    }
    if !finished {
        status.completed_at = None;
    }
    conditions::set(
        &mut status.conditions,
        condition::PROGRESSING,
        progressing,
        reason,
        message,
        generation,
    );
    conditions::set(
        &mut status.conditions,
        condition::FAILED,
        phase == UpgradePhase::Failed,
        if phase == UpgradePhase::Failed {
            "NodesFailed"
        } else {
            "NoFailures"
        },
        if failed > 0 {
            failed_names(&states)
        } else {
            String::new()
        },
        generation,
    );

    status.phase = Some(phase);
    status.nodes = states.into_values().collect();
    status.total = status.nodes.len() as i32;
    status.updated = status
        .nodes
        .iter()
        .filter(|n| {
            matches!(
                n.state,
                NodeUpgradeState::Updated | NodeUpgradeState::Skipped
            )
        })
        .count() as i32;
    status.in_progress = (in_flight + start.len()) as i32;
    status.failed = failed as i32;
    status.progress = Some(format!("{}/{}", status.updated, status.total));
    Plan { status, start }
}

/// Moves one node along: Upgrading → Verifying → Updated, or to Failed.
fn advance(
    state: &mut NodeUpgradeStatus,
    view: Option<&NodeView>,
    target: &str,
    spec: &TalosUpgradeSpec,
    limits: &Limits,
    now: Timestamp,
) {
    if !matches!(
        state.state,
        NodeUpgradeState::Upgrading | NodeUpgradeState::Verifying
    ) {
        return;
    }
    let fail = |state: &mut NodeUpgradeStatus, message: String| {
        state.state = NodeUpgradeState::Failed;
        state.message = Some(message);
        state.completed_at = Some(Time(now));
    };
    let Some(view) = view else {
        return fail(state, "the TalosNode is gone, or no longer picked".into());
    };
    if let Some(why) = &view.upgrade_failed {
        return fail(state, why.clone());
    }
    let elapsed = state
        .started_at
        .as_ref()
        .map(|t| now.duration_since(t.0).as_secs_f64())
        .unwrap_or(0.0);
    let timed_out = elapsed > limits.health_timeout.as_secs_f64();
    if state.state == NodeUpgradeState::Upgrading {
        if view.running.as_deref() == Some(target) && !view.busy {
            state.state = NodeUpgradeState::Verifying;
        } else if timed_out {
            return fail(
                state,
                format!(
                    "did not run {target} within healthChecks.timeout ({})",
                    spec.health_checks.timeout
                ),
            );
        } else {
            return;
        }
    }
    let services_ok = !spec.health_checks.agent_services || (view.services_healthy && view.ready);
    let kubernetes_ok = !spec.health_checks.node_ready || view.kubernetes_ready != Some(false);
    if services_ok && kubernetes_ok {
        state.state = NodeUpgradeState::Updated;
        state.completed_at = Some(Time(now));
        state.message = None;
    } else if timed_out {
        let what = if services_ok {
            "its Kubernetes Node is not Ready"
        } else {
            "its services are not healthy"
        };
        fail(
            state,
            format!(
                "runs {target} but {what} after healthChecks.timeout ({})",
                spec.health_checks.timeout
            ),
        );
    } else {
        state.message = Some(
            if services_ok {
                "waiting for the Kubernetes Node to be Ready"
            } else {
                "waiting for healthy services"
            }
            .into(),
        );
    }
}

/// When the last batch's soak ends, if it has not yet.
fn soak_until(
    states: &BTreeMap<String, NodeUpgradeStatus>,
    soak: Duration,
    now: Timestamp,
) -> Option<Timestamp> {
    let last = states
        .values()
        .filter(|s| s.state == NodeUpgradeState::Updated)
        .filter_map(|s| s.completed_at.as_ref().map(|t| t.0))
        .max()?;
    let until = last
        .checked_add(jiff::SignedDuration::try_from(soak).ok()?)
        .ok()?;
    (until > now).then_some(until)
}

fn failed_names(states: &BTreeMap<String, NodeUpgradeStatus>) -> String {
    states
        .values()
        .filter(|s| s.state == NodeUpgradeState::Failed)
        .map(|s| format!("{}: {}", s.name, s.message.as_deref().unwrap_or("failed")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(extra: serde_json::Value) -> TalosUpgradeSpec {
        let mut value = json!({
            "version": {"version": "2", "url": "https://r.example/2"},
            "maxUnavailable": 2,
            "soakTime": "0s",
            "healthChecks": {"timeout": "10m"}
        });
        value
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(value).unwrap()
    }

    fn node(name: &str, running: &str) -> NodeView {
        NodeView {
            name: name.into(),
            paused: false,
            running: Some(running.into()),
            ready: true,
            services_healthy: true,
            kubernetes_ready: None,
            upgrade_failed: None,
            busy: false,
        }
    }

    fn fleet(n: usize) -> Vec<NodeView> {
        (1..=n).map(|i| node(&format!("n{i}"), "1")).collect()
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn step(
        spec: &TalosUpgradeSpec,
        old: &TalosUpgradeStatus,
        nodes: &[NodeView],
        now: Timestamp,
    ) -> Plan {
        let limits = Limits::from_spec(spec, nodes.len()).unwrap();
        plan(spec, Some(1), old, nodes, &limits, &Window::Open, now)
    }

    fn states(plan: &Plan) -> Vec<(String, NodeUpgradeState)> {
        plan.status
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.state))
            .collect()
    }

    /// Marks `names` as upgraded and healthy in `nodes`.
    fn upgraded(nodes: &mut [NodeView], names: &[String]) {
        for n in nodes.iter_mut().filter(|n| names.contains(&n.name)) {
            n.running = Some("2".into());
        }
    }

    #[test]
    fn batches_never_exceed_max_unavailable() {
        let spec = spec(json!({}));
        let mut nodes = fleet(5);
        let mut status = TalosUpgradeStatus::default();
        let mut batches = Vec::new();
        for t in 0..20 {
            let plan = step(&spec, &status, &nodes, at(t));
            assert!(plan.status.in_progress <= 2, "{:?}", states(&plan));
            if !plan.start.is_empty() {
                batches.push(plan.start.clone());
            }
            let in_flight: Vec<String> = plan
                .status
                .nodes
                .iter()
                .filter(|n| n.state == NodeUpgradeState::Upgrading)
                .map(|n| n.name.clone())
                .collect();
            status = plan.status;
            upgraded(&mut nodes, &in_flight);
        }
        assert_eq!(batches, [vec!["n1", "n2"], vec!["n3", "n4"], vec!["n5"]]);
        assert_eq!(status.phase, Some(UpgradePhase::Succeeded));
        assert_eq!(status.progress.as_deref(), Some("5/5"));
        assert!(status.completed_at.is_some());
    }

    #[test]
    fn a_failure_stops_new_batches_with_the_stop_policy() {
        let spec = spec(json!({}));
        let mut nodes = fleet(4);
        let first = step(&spec, &TalosUpgradeStatus::default(), &nodes, at(0));
        assert_eq!(first.start, ["n1", "n2"]);
        nodes[0].upgrade_failed = Some("2 did not stay: rolled back".into());
        upgraded(&mut nodes, &["n2".into()]);
        let second = step(&spec, &first.status, &nodes, at(1));
        assert!(second.start.is_empty());
        assert_eq!(second.status.phase, Some(UpgradePhase::Failed));
        assert_eq!(
            states(&second)[..2],
            [
                ("n1".into(), NodeUpgradeState::Failed),
                ("n2".into(), NodeUpgradeState::Updated)
            ]
        );
        let third = step(&spec, &second.status, &nodes, at(2));
        assert!(third.start.is_empty(), "a stopped rollout starts nothing");
        let failed = conditions::get(&third.status.conditions, "Failed").unwrap();
        assert_eq!(failed.status, "True");
        assert!(
            failed.message.contains("n1: 2 did not stay"),
            "{}",
            failed.message
        );
    }

    #[test]
    fn the_continue_policy_goes_on_within_the_budget() {
        let spec =
            spec(json!({"failurePolicy": "continue", "failureBudget": 1, "maxUnavailable": 1}));
        let mut nodes = fleet(3);
        let first = step(&spec, &TalosUpgradeStatus::default(), &nodes, at(0));
        nodes[0].upgrade_failed = Some("refused".into());
        let second = step(&spec, &first.status, &nodes, at(1));
        assert_eq!(second.start, ["n2"], "one failure is within the budget");
        nodes[1].upgrade_failed = Some("refused".into());
        let third = step(&spec, &second.status, &nodes, at(2));
        assert!(
            third.start.is_empty(),
            "two failures exceed a budget of one"
        );
        assert_eq!(third.status.phase, Some(UpgradePhase::Failed));
    }

    #[test]
    fn pausing_starts_nothing_but_lets_nodes_under_way_finish() {
        let mut spec = spec(json!({}));
        let mut nodes = fleet(4);
        let first = step(&spec, &TalosUpgradeStatus::default(), &nodes, at(0));
        spec.paused = true;
        upgraded(&mut nodes, &["n1".into(), "n2".into()]);
        let second = step(&spec, &first.status, &nodes, at(1));
        assert!(second.start.is_empty());
        assert_eq!(second.status.updated, 2);
        assert_eq!(second.status.phase, Some(UpgradePhase::Paused));
        spec.paused = false;
        let third = step(&spec, &second.status, &nodes, at(2));
        assert_eq!(third.start, ["n3", "n4"]);
    }

    #[test]
    fn outside_the_window_nothing_starts_and_status_says_why() {
        let spec = spec(json!({}));
        let nodes = fleet(2);
        let limits = Limits::from_spec(&spec, 2).unwrap();
        let closed = Window::Closed(
            "outside the maintenance window; it opens at 2026-11-28T02:00:00Z".into(),
        );
        let plan = plan(
            &spec,
            Some(1),
            &TalosUpgradeStatus::default(),
            &nodes,
            &limits,
            &closed,
            at(0),
        );
        assert!(plan.start.is_empty());
        assert_eq!(plan.status.phase, Some(UpgradePhase::Waiting));
        let progressing = conditions::get(&plan.status.conditions, "Progressing").unwrap();
        assert_eq!(progressing.reason, "OutsideWindow");
        assert!(progressing.message.contains("opens at"));
        assert!(plan.status.started_at.is_none());
    }

    #[test]
    fn paused_nodes_are_skipped_and_current_ones_too() {
        let spec = spec(json!({}));
        let mut nodes = fleet(3);
        nodes[0].paused = true;
        nodes[1].running = Some("2".into());
        let plan = step(&spec, &TalosUpgradeStatus::default(), &nodes, at(0));
        assert_eq!(plan.start, ["n3"]);
        assert_eq!(
            states(&plan),
            [
                ("n1".into(), NodeUpgradeState::Skipped),
                ("n2".into(), NodeUpgradeState::Skipped),
                ("n3".into(), NodeUpgradeState::Upgrading)
            ]
        );
    }

    #[test]
    fn a_restart_reads_the_same_plan_from_status() {
        let spec = spec(json!({}));
        let nodes = fleet(4);
        let first = step(&spec, &TalosUpgradeStatus::default(), &nodes, at(0));
        // The operator restarts: only the stored status (JSON) survives.
        let stored: TalosUpgradeStatus =
            serde_json::from_value(serde_json::to_value(&first.status).unwrap()).unwrap();
        let again = step(&spec, &stored, &nodes, at(5));
        assert!(
            again.start.is_empty(),
            "n1 and n2 are under way; nothing new starts"
        );
        assert_eq!(again.status.in_progress, 2);
    }

    #[test]
    fn soak_time_separates_batches_and_health_timeout_fails_a_node() {
        let spec = spec(json!({"soakTime": "1m", "maxUnavailable": 1}));
        let mut nodes = fleet(2);
        let first = step(&spec, &TalosUpgradeStatus::default(), &nodes, at(0));
        upgraded(&mut nodes, &["n1".into()]);
        let second = step(&spec, &first.status, &nodes, at(10));
        assert!(second.start.is_empty());
        assert_eq!(
            conditions::get(&second.status.conditions, "Progressing")
                .unwrap()
                .reason,
            "Soaking"
        );
        let third = step(&spec, &second.status, &nodes, at(71));
        assert_eq!(third.start, ["n2"]);
        let fourth = step(&spec, &third.status, &nodes, at(71 + 601));
        assert_eq!(states(&fourth)[1].1, NodeUpgradeState::Failed);
    }

    #[test]
    fn percentages_round_down_to_at_least_one() {
        let limits = |value: serde_json::Value, picked| {
            Limits::from_spec(&spec(json!({"maxUnavailable": value})), picked)
                .unwrap()
                .max_unavailable
        };
        assert_eq!(limits(json!("25%"), 10), 2);
        assert_eq!(limits(json!("10%"), 3), 1);
        assert_eq!(limits(json!(3), 10), 3);
    }
}
