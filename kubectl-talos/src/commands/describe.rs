//! `describe NODE`: one TalosNode for people, spec then status, the way
//! `kubectl describe` lays objects out.

use std::fmt::Write;

use crds::TalosNode;
use kube::Client;

use super::{TALOSNODE, get, nodes};
use crate::Result;
use crate::output::{self, Format};

/// Prints the node (`-o json|yaml`: the object, as `get` does).
pub async fn run(client: Client, format: Format, name: &str) -> Result<()> {
    let node = get(&nodes(client), TALOSNODE, name).await?;
    let text = match output::document(
        format,
        "a talosnode",
        &super::get::objects(std::slice::from_ref(&node), true)?,
    )? {
        Some(text) => text,
        None => render(&node),
    };
    output::print(&text)
}

/// Width of the labels (the longest, indented, with its colon), so that values line
/// up one space after it.
const LABEL: usize = 22;

fn line(text: &mut String, indent: usize, label: &str, value: impl std::fmt::Display) {
    let label = format!("{}{label}:", " ".repeat(indent));
    // Writing to a String cannot fail.
    let _ = writeln!(text, "{label:<LABEL$} {value}");
}

/// The text `describe` prints for `node`.
pub fn render(node: &TalosNode) -> String {
    let spec = &node.spec;
    let mut text = String::new();
    line(
        &mut text,
        0,
        "Name",
        node.metadata.name.as_deref().unwrap_or_default(),
    );
    line(
        &mut text,
        0,
        "Created",
        output::time(node.metadata.creation_timestamp.as_ref()),
    );
    text.push_str("Spec:\n");
    line(&mut text, 2, "Endpoints", spec.endpoints.join(", "));
    line(
        &mut text,
        2,
        "Node Name",
        output::or_dash(spec.node_name.as_deref()),
    );
    line(
        &mut text,
        2,
        "Apply Mode",
        serde_json::to_value(spec.apply_mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    );
    line(&mut text, 2, "Paused", spec.paused);
    let version = spec.version.as_ref().map_or_else(
        || "- (release left alone)".to_owned(),
        |v| match &v.sha256 {
            Some(sha) => format!("{} from {} (sha256 {sha})", v.version, v.url),
            None => format!("{} from {}", v.version, v.url),
        },
    );
    line(&mut text, 2, "Desired Version", version);
    line(
        &mut text,
        2,
        "Reboot Requested At",
        output::time(spec.reboot_requested_at.as_ref()),
    );
    line(&mut text, 2, "Config Patches", spec.config_patches.len());
    let Some(status) = &node.status else {
        line(
            &mut text,
            0,
            "Status",
            "<none> (the operator has not seen the node yet)",
        );
        return text;
    };
    text.push_str("Status:\n");
    line(
        &mut text,
        2,
        "Phase",
        status
            .phase
            .map_or_else(|| "-".to_owned(), |p| format!("{p:?}")),
    );
    line(
        &mut text,
        2,
        "Observed Generation",
        status
            .observed_generation
            .map_or_else(|| "-".to_owned(), |g| g.to_string()),
    );
    line(
        &mut text,
        2,
        "OS Version",
        output::or_dash(status.os_version.as_deref()),
    );
    line(
        &mut text,
        2,
        "Agent Version",
        output::or_dash(status.agent_version.as_deref()),
    );
    line(
        &mut text,
        2,
        "Kernel",
        output::or_dash(status.kernel.as_deref()),
    );
    line(
        &mut text,
        2,
        "Boot ID",
        output::or_dash(status.boot_id.as_deref()),
    );
    line(
        &mut text,
        2,
        "Last Boot Time",
        output::time(status.last_boot_time.as_ref()),
    );
    line(
        &mut text,
        2,
        "Applied Config Hash",
        output::or_dash(status.applied_config_hash.as_deref()),
    );
    let services = status.services.as_ref().map_or_else(
        || "-".to_owned(),
        |s| {
            if s.unhealthy.is_empty() {
                format!("{}/{} healthy", s.healthy, s.total)
            } else {
                format!(
                    "{}/{} healthy; unhealthy: {}",
                    s.healthy,
                    s.total,
                    s.unhealthy.join(", ")
                )
            }
        },
    );
    line(&mut text, 2, "Services", services);
    line(
        &mut text,
        2,
        "Last Error",
        output::or_dash(status.last_error.as_deref()),
    );
    if status.conditions.is_empty() {
        line(&mut text, 0, "Conditions", "<none>");
    } else {
        text.push_str("Conditions:\n");
        let mut rows = vec![
            ["TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"]
                .map(String::from)
                .to_vec(),
        ];
        for c in &status.conditions {
            rows.push(vec![
                c.type_.clone(),
                c.status.clone(),
                output::or_dash(Some(&c.reason)),
                c.last_transition_time.0.to_string(),
                output::or_dash(Some(&c.message)),
            ]);
        }
        for row in output::render_table(&rows).lines() {
            let _ = writeln!(text, "  {row}");
        }
    }
    match status.pending_config_diff.as_deref() {
        Some(diff) if !diff.is_empty() => {
            text.push_str("Pending Config Diff:\n");
            text.push_str(diff);
            if !diff.ends_with('\n') {
                text.push('\n');
            }
        }
        _ => line(&mut text, 0, "Pending Config Diff", "<none>"),
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::commands::get::tests::node;

    #[test]
    fn a_node_with_everything() {
        let node = node(
            "worker-1",
            json!({
                "endpoints": ["10.5.0.2:50000", "10.6.0.2"],
                "nodeName": "worker-1",
                "applyMode": "no-reboot",
                "version": {"version": "1.4.0", "url": "https://r.example/1.4.0.bundle"},
                "rebootRequestedAt": "2026-11-27T11:00:00Z",
                "configPatches": [{"merge": {"machine": {}}}]
            }),
            json!({
                "phase": "Degraded",
                "observedGeneration": 2,
                "osVersion": "1.3.0",
                "agentVersion": "0.1.0",
                "kernel": "6.12.0",
                "bootId": "0b8f1c1e-7a43-4c0e-9d1f-1b7e0c8e2a11",
                "lastBootTime": "2026-11-27T11:01:00Z",
                "appliedConfigHash": "a1b2",
                "pendingConfigDiff": "-  mtu: 1500\n+  mtu: 9000",
                "services": {"total": 4, "healthy": 3, "unhealthy": ["kubelet"]},
                "conditions": [{
                    "type": "Ready", "status": "False", "reason": "ServiceUnhealthy",
                    "message": "kubelet is not healthy", "lastTransitionTime": "2026-11-27T11:05:00Z"
                }],
                "lastError": "kubelet: health check failed"
            }),
        );
        assert_eq!(
            render(&node),
            "\
Name:                  worker-1
Created:               2026-11-27T10:00:00Z
Spec:
  Endpoints:           10.5.0.2:50000, 10.6.0.2
  Node Name:           worker-1
  Apply Mode:          no-reboot
  Paused:              false
  Desired Version:     1.4.0 from https://r.example/1.4.0.bundle
  Reboot Requested At: 2026-11-27T11:00:00Z
  Config Patches:      1
Status:
  Phase:               Degraded
  Observed Generation: 2
  OS Version:          1.3.0
  Agent Version:       0.1.0
  Kernel:              6.12.0
  Boot ID:             0b8f1c1e-7a43-4c0e-9d1f-1b7e0c8e2a11
  Last Boot Time:      2026-11-27T11:01:00Z
  Applied Config Hash: a1b2
  Services:            3/4 healthy; unhealthy: kubelet
  Last Error:          kubelet: health check failed
Conditions:
  TYPE    STATUS   REASON             LAST TRANSITION        MESSAGE
  Ready   False    ServiceUnhealthy   2026-11-27T11:05:00Z   kubelet is not healthy
Pending Config Diff:
-  mtu: 1500
+  mtu: 9000
"
        );
    }

    #[test]
    fn a_node_the_operator_has_not_seen() {
        let mut node = node("new", json!({"endpoints": ["10.5.0.3"]}), json!({}));
        node.status = None;
        let text = render(&node);
        assert!(
            text.contains("  Desired Version:     - (release left alone)\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "Status:                <none> (the operator has not seen the node yet)\n"
            ),
            "{text}"
        );
    }
}
