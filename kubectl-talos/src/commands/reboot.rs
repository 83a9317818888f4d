//! `reboot NODE... [--wait] [--timeout DUR]`: sets `spec.rebootRequestedAt` to now on
//! each node; the operator reboots a node whose request is later than its
//! `status.lastBootTime`.

use std::collections::BTreeMap;

use crds::{NodePhase, TalosNode};
use jiff::Timestamp;
use kube::Client;

use super::{TALOSNODE, apply, get, nodes, now_seconds};
use crate::cli::RebootArgs;
use crate::output;
use crate::wait::Deadline;
use crate::{Error, Result, apply as bodies};

/// Requests the reboots (after checking that every node exists, so a typo reboots
/// nothing), then with `--wait` follows them.
pub async fn run(client: Client, args: &RebootArgs) -> Result<()> {
    let api = nodes(client);
    let mut missing = Vec::new();
    let mut found = Vec::new();
    for name in &args.nodes {
        match get(&api, TALOSNODE, name).await {
            Ok(node) => found.push(node),
            Err(e @ Error::NotFound { .. }) => missing.push(e),
            Err(e) => return Err(e),
        }
    }
    if let Some(error) = Error::from_many(missing) {
        return Err(error);
    }
    let at = now_seconds();
    let mut phases = BTreeMap::new();
    for node in &found {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if node.spec.paused {
            eprintln!(
                "warning: talosnode {name:?} is paused: the operator reboots it only once it is unpaused"
            );
        }
        apply(
            &api,
            TALOSNODE,
            name,
            bodies::REBOOT_MANAGER,
            &bodies::reboot(name, &at.to_string()),
        )
        .await?;
        output::line(format_args!("{name}: reboot requested at {at}"))?;
        phases.insert(name.to_owned(), phase(node));
    }
    if !args.wait {
        return Ok(());
    }
    let deadline = Deadline::after(Some(args.timeout));
    // Each waiting node and the phase last shown for it.
    let mut waiting: BTreeMap<String, Option<NodePhase>> = phases;
    for (name, phase) in &waiting {
        if let Some(phase) = phase.filter(|p| *p != NodePhase::Ready) {
            output::line(format_args!("{name}: {phase:?}"))?;
        }
    }
    loop {
        let mut done = Vec::new();
        for (name, shown) in waiting.iter_mut() {
            let node = get(&api, TALOSNODE, name).await?;
            match progress(&node, at, *shown) {
                Progress::Rebooted(line) => {
                    output::line(&line)?;
                    done.push(name.clone());
                }
                Progress::Changed(phase, line) => {
                    output::line(&line)?;
                    *shown = Some(phase);
                }
                Progress::Same => {}
            }
        }
        for name in done {
            waiting.remove(&name);
        }
        if waiting.is_empty() {
            return Ok(());
        }
        deadline
            .tick(|| {
                let names: Vec<_> = waiting.keys().map(String::as_str).collect();
                format!(
                    "{} to reboot and be Ready (status.lastBootTime >= {at}, status.phase Ready)",
                    names.join(", ")
                )
            })
            .await?;
    }
}

fn phase(node: &TalosNode) -> Option<NodePhase> {
    node.status.as_ref().and_then(|s| s.phase)
}

/// What one look at a waiting node shows.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Booted since the request and Ready: the line to print, and the node is done.
    Rebooted(String),
    /// Another phase than the one last shown: the line to print.
    Changed(NodePhase, String),
    /// Nothing new.
    Same,
}

/// Judges `node` against the request made `at`, `shown` being the phase last printed.
pub fn progress(node: &TalosNode, at: Timestamp, shown: Option<NodePhase>) -> Progress {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let status = node.status.clone().unwrap_or_default();
    let booted = status.last_boot_time.as_ref().is_some_and(|t| t.0 >= at);
    match status.phase {
        Some(NodePhase::Ready) if booted => Progress::Rebooted(format!(
            "{name}: Ready (boot {})",
            output::short_id(status.boot_id.as_deref().unwrap_or("unknown"))
        )),
        // Ready but not yet rebooted is the phase before the operator acts: not news.
        Some(phase) if Some(phase) != shown && phase != NodePhase::Ready => {
            Progress::Changed(phase, format!("{name}: {phase:?}"))
        }
        _ => Progress::Same,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::commands::get::tests::node;

    fn at() -> Timestamp {
        "2026-11-27T12:00:00Z".parse().unwrap()
    }

    fn with_status(status: serde_json::Value) -> TalosNode {
        node("n1", json!({"endpoints": ["10.5.0.2"]}), status)
    }

    #[test]
    fn ready_before_the_reboot_is_not_done() {
        let before = with_status(json!({"phase": "Ready", "lastBootTime": "2026-11-27T08:00:00Z"}));
        assert_eq!(progress(&before, at(), None), Progress::Same);
    }

    #[test]
    fn a_new_phase_is_shown_once() {
        let rebooting =
            with_status(json!({"phase": "Rebooting", "lastBootTime": "2026-11-27T08:00:00Z"}));
        assert_eq!(
            progress(&rebooting, at(), None),
            Progress::Changed(NodePhase::Rebooting, "n1: Rebooting".into())
        );
        assert_eq!(
            progress(&rebooting, at(), Some(NodePhase::Rebooting)),
            Progress::Same
        );
    }

    #[test]
    fn booted_since_and_ready_is_done() {
        let rebooted = with_status(json!({
            "phase": "Ready", "lastBootTime": "2026-11-27T12:00:40Z", "bootId": "1a2b3c4d-5e6f"
        }));
        assert_eq!(
            progress(&rebooted, at(), Some(NodePhase::Rebooting)),
            Progress::Rebooted("n1: Ready (boot 1a2b3c4d)".into())
        );
        let unreachable =
            with_status(json!({"phase": "Unreachable", "lastBootTime": "2026-11-27T12:00:40Z"}));
        assert_eq!(
            progress(&unreachable, at(), Some(NodePhase::Rebooting)),
            Progress::Changed(NodePhase::Unreachable, "n1: Unreachable".into())
        );
    }
}
