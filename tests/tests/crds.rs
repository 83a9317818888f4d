//! The CRDs against a real Kubernetes API server (the apiserver test bed,
//! tests/testbeds/apiserver): they are accepted and become Established, valid resources
//! are stored with the schema's defaults, every CEL rule and schema constraint refuses
//! what it should (checked by its message), status goes through the status
//! subresource, and kubectl shows the printer columns, short names and category.
//!
//! The test bed must be built (`tests/testbeds/apiserver/setup`); without it this test
//! fails rather than skips. It runs the server on its own ports (16543, etcd 23890 and
//! 23891) and in its own state directory, and stops it even when the test panics.

use std::time::{Duration, Instant};

use crds::{
    ApplyMode, NodePhase, NodeUpgradeState, NodeUpgradeStatus, TalosNode, TalosNodeSpec,
    TalosNodeStatus, TalosUpgrade, TalosUpgradeStatus, UpgradePhase,
};
use e2e::apiserver::TestBed;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::{Value, json};

const PORT: u16 = 16543;
const ETCD_PORT: u16 = 23890;
const FIELD_MANAGER: &str = "crds-test";

/// Retries `f` until it succeeds or `what` times out after 30 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f().await {
            Ok(value) => return value,
            Err(error) if Instant::now() > deadline => panic!("{what}: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn apply_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for file in crds::crd_files().expect("generating the CRDs") {
        let name = file.crd.metadata.name.clone().expect("a CRD has a name");
        api.patch(&name, &params, &Patch::Apply(&file.crd))
            .await
            .unwrap_or_else(|error| panic!("applying {name}: {error}"));
        eventually(&format!("{name} Established"), || async {
            let crd = api.get(&name).await.map_err(|e| e.to_string())?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                Ok(())
            } else {
                Err("not Established yet".to_owned())
            }
        })
        .await;
    }
    // The first request to a new resource waits for its storage; wait here, once.
    let nodes: Api<TalosNode> = Api::all(client.clone());
    let upgrades: Api<TalosUpgrade> = Api::all(client.clone());
    eventually("listing TalosNodes", || async {
        nodes
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    eventually("listing TalosUpgrades", || async {
        upgrades
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())
    })
    .await;
}

/// The API of `K` for raw JSON objects, so that invalid ones can be sent.
fn raw_api<K: Resource<DynamicType = ()>>(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &ApiResource::erase::<K>(&()))
}

/// Creates a raw object of `K` with this spec.
async fn create_raw<K: Resource<DynamicType = ()>>(
    client: &Client,
    name: &str,
    spec: Value,
) -> Result<DynamicObject, kube::Error> {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a DynamicObject");
    raw_api::<K>(client)
        .create(&PostParams::default(), &object)
        .await
}

/// Asserts that the API server refuses this spec of `K`, with `message` in its reason.
async fn assert_refused<K: Resource<DynamicType = ()>>(
    client: &Client,
    case: &str,
    spec: Value,
    message: &str,
) {
    match create_raw::<K>(client, "invalid", spec).await {
        Ok(_) => panic!(
            "{case}: the API server accepted an invalid {}",
            K::kind(&())
        ),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{case}: {}", status.message);
            assert!(
                status.message.contains(message),
                "{case}: refused, but not with {message:?}: {}",
                status.message
            );
        }
        Err(error) => panic!("{case}: {error}"),
    }
}

fn release() -> Value {
    json!({"version": "1.4.0", "url": "https://releases.example/node-os-1.4.0.bundle"})
}

fn node_spec() -> Value {
    json!({"endpoints": ["127.0.0.1:50000"]})
}

fn with(mut base: Value, patch: Value) -> Value {
    json_patch::merge(&mut base, &patch);
    base
}

async fn talos_nodes(client: &Client) {
    let api: Api<TalosNode> = Api::all(client.clone());

    // Server-side defaults: only endpoints given.
    create_raw::<TalosNode>(client, "minimal", node_spec())
        .await
        .expect("creating a minimal TalosNode");
    // Read raw: the typed spec would fill in serde's defaults and hide missing ones.
    let minimal = raw_api::<TalosNode>(client).get("minimal").await.unwrap();
    assert_eq!(minimal.data["spec"]["applyMode"], "auto");
    assert_eq!(minimal.data["spec"]["paused"], false);
    let minimal = api.get("minimal").await.unwrap();
    assert_eq!(minimal.spec.apply_mode, ApplyMode::Auto);

    // A full, valid one, typed.
    let spec: TalosNodeSpec = serde_json::from_value(json!({
        "endpoints": ["10.5.0.2:50000", "10.5.0.3"],
        "nodeName": "worker-1",
        "configPatches": [
            {"merge": {"machine": {"network": {"hostname": "worker-1"}}}},
            {"jsonPatch": [
                {"op": "add", "path": "/machine/sysctls", "value": {"vm.max_map_count": "262144"}},
                {"op": "test", "path": "/machine/install", "value": null},
                {"op": "move", "from": "/machine/a", "path": "/machine/b"},
                {"op": "remove", "path": "/machine/c"}
            ]}
        ],
        "applyMode": "staged",
        "version": with(release(), json!({"sha256": "ab".repeat(32)})),
        "rebootRequestedAt": "2026-11-27T12:00:00Z",
        "paused": false
    }))
    .unwrap();
    let node = TalosNode::new("worker-1", spec.clone());
    api.create(&PostParams::default(), &node)
        .await
        .expect("creating a valid TalosNode");
    let stored = api.get("worker-1").await.unwrap();
    assert_eq!(
        stored.spec, spec,
        "the stored spec differs from the one sent"
    );

    let invalid = [
        (
            "no endpoints",
            json!({"endpoints": []}),
            "endpoints must list at least one address of the node agent",
        ),
        (
            "endpoints missing",
            json!({"nodeName": "x"}),
            "spec.endpoints: Required value",
        ),
        (
            "http url",
            with(
                node_spec(),
                json!({"version": with(release(), json!({"url": "http://releases.example/b"}))}),
            ),
            "url must be an https:// URL",
        ),
        (
            "bad sha256",
            with(
                node_spec(),
                json!({"version": with(release(), json!({"sha256": "ABC"}))}),
            ),
            "spec.version.sha256: Invalid value",
        ),
        (
            "merge and jsonPatch",
            with(
                node_spec(),
                json!({"configPatches": [
                    {"merge": {"machine": {}}, "jsonPatch": [{"op": "remove", "path": "/machine"}]}
                ]}),
            ),
            "a config patch sets exactly one of merge and jsonPatch",
        ),
        (
            "empty config patch",
            with(node_spec(), json!({"configPatches": [{}]})),
            "a config patch sets exactly one of merge and jsonPatch",
        ),
        (
            "merge patch not a mapping",
            with(node_spec(), json!({"configPatches": [{"merge": ["a"]}]})),
            "spec.configPatches[0].merge: Invalid value: \"array\"",
        ),
        (
            "copy without from",
            with(
                node_spec(),
                json!({"configPatches": [{"jsonPatch": [{"op": "copy", "path": "/machine/x"}]}]}),
            ),
            "from is required for move and copy, and allowed for them only",
        ),
        (
            "remove with from",
            with(
                node_spec(),
                json!({"configPatches": [{"jsonPatch": [{"op": "remove", "path": "/a", "from": "/b"}]}]}),
            ),
            "from is required for move and copy, and allowed for them only",
        ),
        (
            "unknown op",
            with(
                node_spec(),
                json!({"configPatches": [{"jsonPatch": [{"op": "frobnicate", "path": "/a"}]}]}),
            ),
            "Unsupported value: \"frobnicate\"",
        ),
        (
            "path not a pointer",
            with(
                node_spec(),
                json!({"configPatches": [{"jsonPatch": [{"op": "remove", "path": "machine"}]}]}),
            ),
            "spec.configPatches[0].jsonPatch[0].path: Invalid value",
        ),
        (
            "unknown apply mode",
            with(node_spec(), json!({"applyMode": "reboot"})),
            "Unsupported value: \"reboot\"",
        ),
    ];
    for (case, spec, message) in invalid {
        assert_refused::<TalosNode>(client, case, spec, message).await;
    }

    // Status goes through the status subresource only.
    let status = TalosNodeStatus {
        phase: Some(NodePhase::Ready),
        observed_generation: stored.metadata.generation,
        os_version: Some("1.3.0".into()),
        boot_id: Some("0b8f1c1e-7a43-4c0e-9d1f-1b7e0c8e2a11".into()),
        applied_config_hash: Some("a1b2c3d4e5f6".repeat(5) + "a1b2"),
        applied_config_hash_short: Some("a1b2c3d4e5f6".into()),
        conditions: vec![
            serde_json::from_value(json!({
                "type": "Ready", "status": "True", "reason": "Healthy", "message": "",
                "lastTransitionTime": "2026-11-27T12:00:00Z"
            }))
            .unwrap(),
        ],
        ..Default::default()
    };
    api.patch_status(
        "worker-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .expect("patching the TalosNode's status");
    assert_eq!(
        api.get_status("worker-1").await.unwrap().status,
        Some(status.clone())
    );
    api.patch(
        "worker-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Unreachable"}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api.get("worker-1").await.unwrap().status,
        Some(status),
        "status changed through the main resource: the status subresource is not in effect"
    );
}

async fn talos_upgrades(client: &Client) {
    let api: Api<TalosUpgrade> = Api::all(client.clone());

    // Server-side defaults: only the release given.
    create_raw::<TalosUpgrade>(client, "minimal", json!({"version": release()}))
        .await
        .expect("creating a minimal TalosUpgrade");
    let raw = raw_api::<TalosUpgrade>(client)
        .get("minimal")
        .await
        .unwrap();
    assert_eq!(
        raw.data["spec"],
        json!({
            "version": release(),
            "maxUnavailable": 1,
            "soakTime": "5m",
            "healthChecks": {"agentServices": true, "nodeReady": true, "timeout": "15m"},
            "failurePolicy": "stop",
            "paused": false
        }),
        "the schema's defaults"
    );
    let minimal = api.get("minimal").await.unwrap();
    assert_eq!(minimal.spec.max_unavailable, IntOrString::Int(1));
    assert_eq!(minimal.spec.soak_time, "5m");
    assert_eq!(minimal.spec.health_checks.timeout, "15m");
    assert!(minimal.spec.health_checks.agent_services && minimal.spec.health_checks.node_ready);
    assert_eq!(minimal.spec.failure_policy, crds::FailurePolicy::Stop);
    // An explicit null is dropped and defaulted, not stored (the operator could not read it).
    create_raw::<TalosUpgrade>(
        client,
        "null-max-unavailable",
        json!({"version": release(), "maxUnavailable": null}),
    )
    .await
    .expect("creating a TalosUpgrade with maxUnavailable: null");
    let defaulted = raw_api::<TalosUpgrade>(client)
        .get("null-max-unavailable")
        .await
        .unwrap();
    assert_eq!(defaulted.data["spec"]["maxUnavailable"], 1);

    let valid = json!({
        "version": release(),
        "nodeSelector": {"matchLabels": {"pool": "workers"}},
        "maxUnavailable": "25%",
        "maintenanceWindow": {"start": "0 2 * * 6", "duration": "4h", "timeZone": "Europe/Paris"},
        "soakTime": "10m",
        "healthChecks": {"agentServices": true, "nodeReady": false, "timeout": "20m"},
        "failurePolicy": "continue",
        "failureBudget": 2,
        "paused": false
    });
    let upgrade = TalosUpgrade::new("to-1.4.0", serde_json::from_value(valid.clone()).unwrap());
    api.create(&PostParams::default(), &upgrade)
        .await
        .expect("creating a valid TalosUpgrade");
    for (max_unavailable, name) in [
        (json!(3), "count"),
        (json!("100%"), "all"),
        (json!("1%"), "one-percent"),
    ] {
        create_raw::<TalosUpgrade>(
            client,
            name,
            with(valid.clone(), json!({"maxUnavailable": max_unavailable})),
        )
        .await
        .unwrap_or_else(|error| panic!("maxUnavailable {max_unavailable} refused: {error}"));
    }

    let max_unavailable =
        "maxUnavailable must be an integer of at least 1 or a percentage from 1% to 100%";
    let window = "maintenanceWindow.duration is required when maintenanceWindow.start is set";
    let invalid = [
        (
            "maxUnavailable 0",
            with(valid.clone(), json!({"maxUnavailable": 0})),
            max_unavailable,
        ),
        (
            "maxUnavailable -1",
            with(valid.clone(), json!({"maxUnavailable": -1})),
            max_unavailable,
        ),
        (
            "maxUnavailable 0%",
            with(valid.clone(), json!({"maxUnavailable": "0%"})),
            max_unavailable,
        ),
        (
            "maxUnavailable 101%",
            with(valid.clone(), json!({"maxUnavailable": "101%"})),
            max_unavailable,
        ),
        (
            "maxUnavailable \"3\"",
            with(valid.clone(), json!({"maxUnavailable": "3"})),
            max_unavailable,
        ),
        (
            "window start without duration",
            with(
                valid.clone(),
                json!({"maintenanceWindow": {"start": "0 2 * * 6", "duration": null}}),
            ),
            window,
        ),
        (
            "window duration without start",
            with(
                valid.clone(),
                json!({"maintenanceWindow": {"start": null, "duration": "4h"}}),
            ),
            window,
        ),
        (
            "window start not cron",
            with(
                valid.clone(),
                json!({"maintenanceWindow": {"start": "every saturday"}}),
            ),
            "spec.maintenanceWindow.start: Invalid value",
        ),
        (
            "failureBudget with stop",
            with(valid.clone(), json!({"failurePolicy": "stop"})),
            "failureBudget is allowed only with failurePolicy: continue",
        ),
        (
            "failureBudget with the default policy",
            with(valid.clone(), json!({"failurePolicy": null})),
            "failureBudget is allowed only with failurePolicy: continue",
        ),
        (
            "failureBudget 0",
            with(valid.clone(), json!({"failureBudget": 0})),
            "spec.failureBudget: Invalid value: 0",
        ),
        (
            "unknown failurePolicy",
            with(valid.clone(), json!({"failurePolicy": "retry"})),
            "Unsupported value: \"retry\"",
        ),
        (
            "http url",
            with(
                valid.clone(),
                json!({"version": {"url": "http://releases.example/b"}}),
            ),
            "url must be an https:// URL",
        ),
        (
            "soakTime not a duration",
            with(valid.clone(), json!({"soakTime": "5 minutes"})),
            "spec.soakTime: Invalid value",
        ),
        (
            "version missing",
            json!({"maxUnavailable": 1}),
            "spec.version: Required value",
        ),
    ];
    for (case, spec, message) in invalid {
        assert_refused::<TalosUpgrade>(client, case, spec, message).await;
    }

    // Status by server-side apply on the status subresource, as the operator writes it.
    let status = TalosUpgradeStatus {
        phase: Some(UpgradePhase::Progressing),
        nodes: vec![NodeUpgradeStatus {
            name: "worker-1".into(),
            state: NodeUpgradeState::Upgrading,
            from_version: Some("1.3.0".into()),
            started_at: None,
            completed_at: None,
            message: None,
        }],
        total: 3,
        updated: 1,
        in_progress: 1,
        progress: Some("1/3".into()),
        ..Default::default()
    };
    let applied = json!({
        "apiVersion": TalosUpgrade::api_version(&()),
        "kind": TalosUpgrade::kind(&()),
        "status": status,
    });
    api.patch_status(
        "to-1.4.0",
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(&applied),
    )
    .await
    .expect("applying the TalosUpgrade's status");
    assert_eq!(
        api.get_status("to-1.4.0").await.unwrap().status,
        Some(status)
    );
}

#[tokio::test]
async fn crds_on_a_real_api_server() {
    let bed = TestBed::start(PORT, ETCD_PORT, &[], false);
    let client = bed.client().await;
    apply_crds(&client).await;
    // Applying again changes nothing and is accepted (idempotent, as the chart's upgrade).
    apply_crds(&client).await;

    talos_nodes(&client).await;
    talos_upgrades(&client).await;

    // Short names, the category and the printer columns, as kubectl shows them.
    let table = bed.kubectl_ok(&["get", "tn", "worker-1"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "OS", "BOOT", "CONFIG", "AGE"],
        "{table}"
    );
    assert!(
        table.contains("Ready") && table.contains("1.3.0") && table.contains("a1b2c3d4e5f6 "),
        "{table}"
    );
    let table = bed.kubectl_ok(&["get", "tu", "to-1.4.0"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "VERSION", "PROGRESS", "PHASE", "AGE"],
        "{table}"
    );
    assert!(
        table.contains("1.4.0") && table.contains("1/3") && table.contains("Progressing"),
        "{table}"
    );
    let all = bed.kubectl_ok(&["get", "talos", "-o", "name"]);
    assert!(
        all.contains("talosnode.talos.dev/worker-1")
            && all.contains("talosupgrade.talos.dev/to-1.4.0"),
        "kubectl get talos (the category): {all}"
    );
    drop(bed);
}
