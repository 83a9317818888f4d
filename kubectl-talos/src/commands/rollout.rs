//! `rollout status ROLLOUT [--watch]`: where a TalosUpgrade is, and each node's part
//! in it; with `--watch`, a line per change until it Succeeded or Failed.

use std::fmt::Write;

use crds::{TalosUpgrade, TalosUpgradeStatus, UpgradePhase};
use kube::Client;

use super::{TALOSUPGRADE, get, upgrades};
use crate::cli::RolloutStatusArgs;
use crate::output::{self, Format};
use crate::wait::Deadline;
use crate::{Error, Result};

/// Prints the rollout's status once, or follows it (`--watch`): exit 0 once it
/// Succeeded, [`Error::RolloutFailed`] once it Failed; Paused is shown and waited out.
pub async fn status(client: Client, format: Format, args: &RolloutStatusArgs) -> Result<()> {
    let api = upgrades(client);
    let name = &args.rollout;
    let upgrade = get(&api, TALOSUPGRADE, name).await?;
    if !args.watch {
        let status = upgrade.status.clone().unwrap_or_default();
        let text = match output::document(format, "the rollout status", &status)? {
            Some(text) => text,
            None => render(&upgrade),
        };
        return output::print(&text);
    }
    let deadline = Deadline::after(args.timeout);
    let mut previous: Option<TalosUpgradeStatus> = None;
    let mut upgrade = upgrade;
    loop {
        let current = upgrade.status.clone().unwrap_or_default();
        if previous.as_ref() != Some(&current) {
            let text = match output::document(format, "the rollout status", &current)? {
                Some(text) if format == Format::Yaml => format!("---\n{text}"),
                Some(text) => text,
                None => watch_lines(previous.as_ref(), &current)
                    .into_iter()
                    .map(|line| line + "\n")
                    .collect(),
            };
            output::print(&text)?;
        }
        match current.phase {
            Some(UpgradePhase::Succeeded) => return Ok(()),
            Some(UpgradePhase::Failed) => {
                return Err(Error::RolloutFailed {
                    name: name.clone(),
                    message: failure(&current),
                });
            }
            _ => {}
        }
        previous = Some(current);
        deadline
            .tick(|| format!("talosupgrade {name:?} to succeed or fail"))
            .await?;
        upgrade = get(&api, TALOSUPGRADE, name).await?;
    }
}

/// Why a rollout failed: its `Failed` condition's message, else the failed nodes.
fn failure(status: &TalosUpgradeStatus) -> String {
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True" && !c.message.is_empty())
    {
        return c.message.clone();
    }
    let failed: Vec<_> = status
        .nodes
        .iter()
        .filter(|n| n.state == crds::NodeUpgradeState::Failed)
        .map(|n| match &n.message {
            Some(m) => format!("{} ({m})", n.name),
            None => n.name.clone(),
        })
        .collect();
    if failed.is_empty() {
        String::new()
    } else {
        format!("failed nodes: {}", failed.join(", "))
    }
}

fn phase_name(status: &TalosUpgradeStatus) -> String {
    status
        .phase
        .map_or_else(|| "Pending".to_owned(), |p| format!("{p:?}"))
}

fn progress(status: &TalosUpgradeStatus) -> String {
    status
        .progress
        .clone()
        .unwrap_or_else(|| format!("{}/{}", status.updated, status.total))
}

/// The text `rollout status` prints for `upgrade`.
pub fn render(upgrade: &TalosUpgrade) -> String {
    let status = upgrade.status.clone().unwrap_or_default();
    let mut text = String::new();
    let mut line = |label: &str, value: String| {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "{:<12}{value}", format!("{label}:"));
    };
    line("Rollout", upgrade.metadata.name.clone().unwrap_or_default());
    line("Version", upgrade.spec.version.version.clone());
    if upgrade.spec.paused {
        line(
            "Paused",
            "true (spec.paused: no new node starts)".to_owned(),
        );
    }
    match &status.phase {
        Some(_) => line("Phase", phase_name(&status)),
        None => line(
            "Phase",
            "- (the operator has not picked it up yet)".to_owned(),
        ),
    }
    line("Progress", progress(&status));
    line(
        "Counts",
        format!(
            "updated {}, in progress {}, failed {}, total {}",
            status.updated, status.in_progress, status.failed, status.total
        ),
    );
    if !status.conditions.is_empty() {
        text.push_str("Conditions:\n");
        let mut rows = vec![
            ["TYPE", "STATUS", "REASON", "MESSAGE"]
                .map(String::from)
                .to_vec(),
        ];
        for c in &status.conditions {
            rows.push(vec![
                c.type_.clone(),
                c.status.clone(),
                output::or_dash(Some(&c.reason)),
                output::or_dash(Some(&c.message)),
            ]);
        }
        for row in output::render_table(&rows).lines() {
            let _ = writeln!(text, "  {row}");
        }
    }
    if !status.nodes.is_empty() {
        text.push('\n');
        text.push_str(&nodes_table(&status));
    }
    text
}

/// The table of the rollout's nodes: NODE, STATE, FROM, STARTED, MESSAGE.
pub fn nodes_table(status: &TalosUpgradeStatus) -> String {
    let mut rows = vec![
        ["NODE", "STATE", "FROM", "STARTED", "MESSAGE"]
            .map(String::from)
            .to_vec(),
    ];
    for node in &status.nodes {
        rows.push(vec![
            node.name.clone(),
            format!("{:?}", node.state),
            output::or_dash(node.from_version.as_deref()),
            output::time(node.started_at.as_ref()),
            output::or_dash(node.message.as_deref()),
        ]);
    }
    output::render_table(&rows)
}

/// The lines `--watch` prints when the status goes from `previous` to `current`: the
/// rollout's line when its phase or counts changed, and a line per node that is new or
/// changed state or message.
pub fn watch_lines(
    previous: Option<&TalosUpgradeStatus>,
    current: &TalosUpgradeStatus,
) -> Vec<String> {
    let mut lines = Vec::new();
    let counts = |s: &TalosUpgradeStatus| (s.phase, s.total, s.updated, s.in_progress, s.failed);
    if previous.is_none_or(|p| counts(p) != counts(current)) {
        lines.push(format!(
            "{}: {} updated, {} in progress, {} failed",
            phase_name(current),
            progress(current),
            current.in_progress,
            current.failed
        ));
    }
    for node in &current.nodes {
        let before = previous.and_then(|p| p.nodes.iter().find(|n| n.name == node.name));
        if before.is_none_or(|b| b.state != node.state || b.message != node.message) {
            lines.push(match &node.message {
                Some(message) => format!("  {}: {:?}: {message}", node.name, node.state),
                None => format!("  {}: {:?}", node.name, node.state),
            });
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn upgrade(status: Value) -> TalosUpgrade {
        serde_json::from_value(json!({
            "apiVersion": "talos.dev/v1alpha1",
            "kind": "TalosUpgrade",
            "metadata": {"name": "upgrade-1-4-0-1764244800"},
            "spec": {"version": {"version": "1.4.0", "url": "https://r.example/1.4.0.bundle"}},
            "status": status
        }))
        .unwrap()
    }

    fn progressing() -> Value {
        json!({
            "phase": "Progressing",
            "nodes": [
                {"name": "worker-1", "state": "Updated", "fromVersion": "1.3.0",
                 "startedAt": "2026-11-27T02:00:00Z", "completedAt": "2026-11-27T02:06:00Z"},
                {"name": "worker-2", "state": "Upgrading", "fromVersion": "1.3.0",
                 "startedAt": "2026-11-27T02:11:00Z", "message": "installing"},
                {"name": "worker-3", "state": "Pending"}
            ],
            "total": 3, "updated": 1, "inProgress": 1, "failed": 0, "progress": "1/3",
            "conditions": [{"type": "Progressing", "status": "True", "reason": "Batch",
                            "message": "batch 2 of 3", "lastTransitionTime": "2026-11-27T02:11:00Z"}]
        })
    }

    #[test]
    fn status_shows_counts_conditions_and_nodes() {
        assert_eq!(
            render(&upgrade(progressing())),
            "\
Rollout:    upgrade-1-4-0-1764244800
Version:    1.4.0
Phase:      Progressing
Progress:   1/3
Counts:     updated 1, in progress 1, failed 0, total 3
Conditions:
  TYPE          STATUS   REASON   MESSAGE
  Progressing   True     Batch    batch 2 of 3

NODE       STATE       FROM    STARTED                MESSAGE
worker-1   Updated     1.3.0   2026-11-27T02:00:00Z   -
worker-2   Upgrading   1.3.0   2026-11-27T02:11:00Z   installing
worker-3   Pending     -       -                      -
"
        );
    }

    #[test]
    fn a_new_rollout_says_the_operator_has_not_seen_it() {
        let mut new = upgrade(json!({}));
        new.status = None;
        assert!(render(&new).contains("Phase:      - (the operator has not picked it up yet)\n"));
    }

    #[test]
    fn watching_prints_what_changed() {
        let before: TalosUpgradeStatus = serde_json::from_value(progressing()).unwrap();
        assert_eq!(
            watch_lines(None, &before),
            [
                "Progressing: 1/3 updated, 1 in progress, 0 failed",
                "  worker-1: Updated",
                "  worker-2: Upgrading: installing",
                "  worker-3: Pending"
            ]
        );
        let mut after = before.clone();
        after.nodes[1].state = crds::NodeUpgradeState::Verifying;
        after.nodes[1].message = None;
        assert_eq!(
            watch_lines(Some(&before), &after),
            ["  worker-2: Verifying"]
        );
        after.phase = Some(UpgradePhase::Paused);
        assert_eq!(
            watch_lines(Some(&before), &after),
            [
                "Paused: 1/3 updated, 1 in progress, 0 failed",
                "  worker-2: Verifying"
            ]
        );
    }

    #[test]
    fn a_failure_names_the_failed_nodes() {
        let mut status: TalosUpgradeStatus = serde_json::from_value(progressing()).unwrap();
        status.nodes[1].state = crds::NodeUpgradeState::Failed;
        assert_eq!(failure(&status), "failed nodes: worker-2 (installing)");
    }
}
