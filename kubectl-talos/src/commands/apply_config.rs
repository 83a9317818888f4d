//! `apply-config NODE -f PATCH_FILE [--mode M] [--dry-run] [--timeout DUR]`: adds one
//! config patch to a node, showing the agent's diff before anything changes.
//!
//! The flow:
//! 1. Preview: annotate the node with `talos.dev/config-preview` = the JSON of the
//!    whole new patch list; the operator has the agent dry-run it and answers in
//!    `status.configPreview`, tagged with the sha256 of that exact string.
//! 2. Remove the annotation (its own field manager, so applying without it removes it).
//! 3. Unless `--dry-run` or refused (or the patches changed meanwhile): set `spec.applyMode` (when `--mode` is given) and
//!    `spec.configPatches`, then wait for the operator to observe that generation and
//!    report the `ConfigApplied` condition.

use crds::{ConfigPatch, ConfigPreview, TalosNode};
use kube::{Api, Client};

use super::{TALOSNODE, apply, get, nodes};
use crate::cli::ApplyConfigArgs;
use crate::wait::Deadline;
use crate::{Error, Result, apply as bodies, output, patch_file};

/// The condition the operator sets once it has applied (or failed to apply) a
/// configuration.
pub const CONFIG_APPLIED: &str = "ConfigApplied";

/// Runs the flow above.
pub async fn run(client: Client, args: &ApplyConfigArgs) -> Result<()> {
    let patch = patch_file::read(&args.file)?;
    let api = nodes(client);
    let name = args.node.as_str();
    let node = get(&api, TALOSNODE, name).await?;
    let list = new_patch_list(&node.spec.config_patches, patch);
    let (annotation, request) = preview_request(&list)?;

    apply(
        &api,
        TALOSNODE,
        name,
        bodies::PREVIEW_MANAGER,
        &bodies::preview(name, &annotation),
    )
    .await?;
    let preview = wait_for_preview(&api, name, &request, Deadline::after(Some(args.timeout))).await;
    let cleared = apply(
        &api,
        TALOSNODE,
        name,
        bodies::PREVIEW_MANAGER,
        &bodies::clear_preview(name),
    )
    .await;
    let preview = preview?;
    cleared?;
    if let Some(reason) = preview.error {
        return Err(Error::PreviewRefused {
            node: name.to_owned(),
            reason,
        });
    }
    if preview.diff.is_empty() {
        output::line(format_args!("no change"))?;
    } else {
        output::print(&preview.diff)?;
        if !preview.diff.ends_with('\n') {
            output::print("\n")?;
        }
    }
    if args.dry_run {
        output::line(format_args!("dry run: talosnode {name:?} not changed"))?;
        return Ok(());
    }

    // The list was built from the patches read before the preview: refuse to
    // overwrite a change someone made meanwhile.
    let now = get(&api, TALOSNODE, name).await?;
    if now.spec.config_patches != node.spec.config_patches {
        return Err(Error::ConcurrentChange {
            node: name.to_owned(),
        });
    }
    if let Some(mode) = args.mode {
        apply(
            &api,
            TALOSNODE,
            name,
            bodies::APPLY_MODE_MANAGER,
            &bodies::apply_mode(name, mode.into()),
        )
        .await?;
    }
    let updated = apply(
        &api,
        TALOSNODE,
        name,
        bodies::CONFIG_MANAGER,
        &bodies::config_patches(name, &list),
    )
    .await?;
    let generation = updated.metadata.generation.unwrap_or_default();
    let deadline = Deadline::after(Some(args.timeout));
    loop {
        let node = get(&api, TALOSNODE, name).await?;
        match applied(&node, generation) {
            Applied::Yes(hash) => {
                output::line(format_args!("applied, config {hash}"))?;
                return Ok(());
            }
            Applied::No(message) => {
                return Err(Error::ConfigNotApplied {
                    node: name.to_owned(),
                    message,
                });
            }
            Applied::NotYet => {}
        }
        deadline
            .tick(|| {
                format!(
                    "talosnode {name:?} to apply its configuration (status.observedGeneration >= {generation} and condition {CONFIG_APPLIED} True or False)"
                )
            })
            .await?;
    }
}

/// The node's patches with `patch` appended, unless an equal patch is already there
/// (applying a file twice adds it once).
pub fn new_patch_list(current: &[ConfigPatch], patch: ConfigPatch) -> Vec<ConfigPatch> {
    let mut list = current.to_vec();
    if !list.contains(&patch) {
        list.push(patch);
    }
    list
}

/// The annotation's value (the list's JSON) and its sha256 in hex, which
/// `status.configPreview.request` repeats once the preview answers it.
pub fn preview_request(list: &[ConfigPatch]) -> Result<(String, String)> {
    let annotation = serde_json::to_string(list).map_err(|source| Error::Json {
        what: "the config patches",
        source,
    })?;
    let digest = ring::digest::digest(&ring::digest::SHA256, annotation.as_bytes());
    let hex = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok((annotation, hex))
}

/// Polls until `status.configPreview` answers `request`.
async fn wait_for_preview(
    api: &Api<TalosNode>,
    name: &str,
    request: &str,
    deadline: Deadline,
) -> Result<ConfigPreview> {
    loop {
        let node = get(api, TALOSNODE, name).await?;
        if let Some(preview) = node
            .status
            .and_then(|s| s.config_preview)
            .filter(|p| p.request == request)
        {
            return Ok(preview);
        }
        deadline
            .tick(|| {
                format!(
                    "the operator's preview of the config patches of talosnode {name:?} (status.configPreview.request {request}); is the operator running?"
                )
            })
            .await?;
    }
}

/// Where the node is with the configuration of `generation`.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Applied; the short hash of the configuration.
    Yes(String),
    /// Not applied; why.
    No(String),
    /// The operator has not observed the generation or not judged it yet.
    NotYet,
}

/// Judges `node`'s status against the spec `generation` that carries the new patches.
pub fn applied(node: &TalosNode, generation: i64) -> Applied {
    let Some(status) = &node.status else {
        return Applied::NotYet;
    };
    if status.observed_generation.unwrap_or_default() < generation {
        return Applied::NotYet;
    }
    let Some(condition) = status.conditions.iter().find(|c| c.type_ == CONFIG_APPLIED) else {
        return Applied::NotYet;
    };
    match condition.status.as_str() {
        "True" => Applied::Yes(
            status
                .applied_config_hash_short
                .clone()
                .unwrap_or_else(|| "-".to_owned()),
        ),
        "False" => Applied::No(
            match (condition.reason.is_empty(), condition.message.is_empty()) {
                (_, true) => condition.reason.clone(),
                (true, false) => condition.message.clone(),
                (false, false) => format!("{}: {}", condition.reason, condition.message),
            },
        ),
        _ => Applied::NotYet,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::commands::get::tests::node;

    fn merge(value: serde_json::Value) -> ConfigPatch {
        crate::patch_file::parse(&value.to_string(), "p.json").unwrap()
    }

    #[test]
    fn a_new_patch_is_appended_once() {
        let first = merge(json!({"machine": {"network": {"hostname": "n1"}}}));
        let second = merge(json!({"machine": {"network": {"mtu": 9000}}}));
        let list = new_patch_list(std::slice::from_ref(&first), second.clone());
        assert_eq!(list, [first.clone(), second.clone()]);
        assert_eq!(new_patch_list(&list, second), list);
    }

    #[test]
    fn the_request_is_the_sha256_of_the_annotation() {
        let list = [merge(json!({"machine": {"network": {"mtu": 9000}}}))];
        let (annotation, request) = preview_request(&list).unwrap();
        assert_eq!(
            annotation,
            r#"[{"merge":{"machine":{"network":{"mtu":9000}}}}]"#
        );
        let (_, empty) = preview_request(&[]).unwrap();
        // sha256("[]")
        assert_eq!(
            empty,
            "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
        );
        assert_eq!(request.len(), 64);
        assert_ne!(request, empty);
    }

    fn with_status(status: serde_json::Value) -> TalosNode {
        node("n1", json!({"endpoints": ["10.5.0.2"]}), status)
    }

    fn condition(status: &str, message: &str) -> serde_json::Value {
        json!([{"type": "ConfigApplied", "status": status, "reason": "Applied",
                "message": message, "lastTransitionTime": "2026-11-27T12:00:00Z"}])
    }

    #[test]
    fn applied_waits_for_the_generation_and_the_condition() {
        let old =
            with_status(json!({"observedGeneration": 2, "conditions": condition("True", "")}));
        assert_eq!(applied(&old, 3), Applied::NotYet);
        let no_condition = with_status(json!({"observedGeneration": 3}));
        assert_eq!(applied(&no_condition, 3), Applied::NotYet);
        let done = with_status(json!({
            "observedGeneration": 3, "appliedConfigHashShort": "a1b2c3d4e5f6",
            "conditions": condition("True", "")
        }));
        assert_eq!(applied(&done, 3), Applied::Yes("a1b2c3d4e5f6".into()));
        let failed = with_status(
            json!({"observedGeneration": 4, "conditions": condition("False", "mtu out of range")}),
        );
        assert_eq!(
            applied(&failed, 3),
            Applied::No("Applied: mtu out of range".into())
        );
    }
}
