//! `get [NODE...]`: TalosNodes as a table (NODE, PHASE, OS, WANT, BOOT, CONFIG, AGE),
//! or as objects (`-o json|yaml`: the object for one name, a `List` otherwise).

use crds::TalosNode;
use jiff::Timestamp;
use kube::Client;
use kube::api::ListParams;
use serde_json::{Value, json};

use super::{TALOSNODE, get, nodes};
use crate::output::{self, Format};
use crate::{Error, Result};

/// Prints the named TalosNodes (all when none is named). Missing names are reported
/// after the others are printed, and make the command fail.
pub async fn run(client: Client, format: Format, names: &[String]) -> Result<()> {
    let api = nodes(client);
    let mut found = Vec::new();
    let mut missing = Vec::new();
    if names.is_empty() {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::api("listing talosnodes", e))?;
        found = list.items;
    } else {
        for name in names {
            match get(&api, TALOSNODE, name).await {
                Ok(node) => found.push(node),
                Err(e @ Error::NotFound { .. }) => missing.push(e),
                Err(e) => return Err(e),
            }
        }
    }
    let single = names.len() == 1;
    let text = if found.is_empty() && !missing.is_empty() {
        String::new()
    } else {
        match output::document(format, "talosnodes", &objects(&found, single)?)? {
            Some(text) => text,
            None if found.is_empty() => {
                eprintln!("No talosnodes found.");
                String::new()
            }
            None => table(&found, Timestamp::now()),
        }
    };
    output::print(&text)?;
    match Error::from_many(missing) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The table of `nodes`, ages counted to `now`.
pub fn table(nodes: &[TalosNode], now: Timestamp) -> String {
    let mut rows = vec![
        ["NODE", "PHASE", "OS", "WANT", "BOOT", "CONFIG", "AGE"]
            .map(String::from)
            .to_vec(),
    ];
    for node in nodes {
        let status = node.status.clone().unwrap_or_default();
        rows.push(vec![
            node.metadata.name.clone().unwrap_or_default(),
            status
                .phase
                .map_or_else(|| "-".to_owned(), |p| format!("{p:?}")),
            output::or_dash(status.os_version.as_deref()),
            output::or_dash(node.spec.version.as_ref().map(|v| v.version.as_str())),
            output::or_dash(status.boot_id.as_deref().map(output::short_id).as_deref()),
            output::or_dash(status.applied_config_hash_short.as_deref()),
            output::age(node.metadata.creation_timestamp.as_ref(), now),
        ]);
    }
    output::render_table(&rows)
}

/// The objects as `-o json|yaml` prints them: without `managedFields` (as kubectl
/// prints them by default), one object alone or a `v1` `List`.
pub fn objects(nodes: &[TalosNode], single: bool) -> Result<Value> {
    let mut items = Vec::with_capacity(nodes.len());
    for node in nodes {
        let mut node = node.clone();
        node.metadata.managed_fields = None;
        items.push(serde_json::to_value(&node).map_err(|source| Error::Json {
            what: "a talosnode",
            source,
        })?);
    }
    if single && items.len() == 1 {
        return Ok(items.remove(0));
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": items,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A TalosNode as the API server returns it, with the given status.
    pub(crate) fn node(name: &str, spec: Value, status: Value) -> TalosNode {
        serde_json::from_value(json!({
            "apiVersion": "talos.dev/v1alpha1",
            "kind": "TalosNode",
            "metadata": {
                "name": name,
                "creationTimestamp": "2026-11-27T10:00:00Z",
                "generation": 2,
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": spec,
            "status": status
        }))
        .unwrap()
    }

    fn two_nodes() -> Vec<TalosNode> {
        vec![
            node(
                "worker-1",
                json!({"endpoints": ["10.5.0.2"],
                       "version": {"version": "1.4.0", "url": "https://r.example/1.4.0.bundle"}}),
                json!({"phase": "Upgrading", "osVersion": "1.3.0",
                       "bootId": "1a2b3c4d-7a43-4c0e-9d1f-1b7e0c8e2a11",
                       "appliedConfigHashShort": "a1b2c3d4e5f6"}),
            ),
            node("new", json!({"endpoints": ["10.5.0.3"]}), json!({})),
        ]
    }

    #[test]
    fn the_table_has_a_row_per_node() {
        let now: Timestamp = "2026-11-27T12:30:00Z".parse().unwrap();
        assert_eq!(
            table(&two_nodes(), now),
            "\
NODE       PHASE       OS      WANT    BOOT       CONFIG         AGE
worker-1   Upgrading   1.3.0   1.4.0   1a2b3c4d   a1b2c3d4e5f6   150m
new        -           -       -       -          -              150m
"
        );
    }

    #[test]
    fn one_name_prints_the_object_several_a_list() {
        let nodes = two_nodes();
        let one = objects(&nodes[..1], true).unwrap();
        assert_eq!(one["kind"], "TalosNode");
        assert_eq!(one["metadata"]["name"], "worker-1");
        assert!(one["metadata"].get("managedFields").is_none());
        let list = objects(&nodes, false).unwrap();
        assert_eq!(list["kind"], "List");
        assert_eq!(list["apiVersion"], "v1");
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
        assert_eq!(list["items"][1]["metadata"]["name"], "new");
        assert_eq!(objects(&[], false).unwrap()["items"], json!([]));
    }
}
