//! The `apply-config` flow against a mock API server (tower-test): which requests, in
//! which order, under which field managers, with which bodies. The real API server and
//! operator are the e2e suite's part.

use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use kubectl_talos::cli::{ApplyConfigArgs, Mode};
use kubectl_talos::commands::apply_config;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

type Mock = Handle<Request<Body>, Response<Body>>;

const NODE_PATH: &str = "/apis/talos.dev/v1alpha1/talosnodes/n1";

/// One request: its method, its URI (path and query) and its JSON body.
struct Seen {
    method: Method,
    uri: String,
    body: Value,
    send: SendResponse<Response<Body>>,
}

async fn next(mock: &mut Mock) -> Seen {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), mock.next_request())
        .await
        .expect("the plugin sends another request")
        .expect("the client is alive");
    let method = request.method().clone();
    let uri = request.uri().to_string();
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Seen {
        method,
        uri,
        body,
        send,
    }
}

fn respond(send: SendResponse<Response<Body>>, value: &Value) {
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(serde_json::to_vec(value).unwrap()))
            .unwrap(),
    );
}

fn node(generation: i64, patches: Value, status: Value) -> Value {
    json!({
        "apiVersion": "talos.dev/v1alpha1",
        "kind": "TalosNode",
        "metadata": {"name": "n1", "generation": generation},
        "spec": {"endpoints": ["10.5.0.2"], "configPatches": patches},
        "status": status
    })
}

fn existing() -> Value {
    json!([{"merge": {"machine": {"network": {"hostname": "n1"}}}}])
}

fn args(file: &std::path::Path, mode: Option<Mode>, dry_run: bool) -> ApplyConfigArgs {
    ApplyConfigArgs {
        node: "n1".into(),
        file: file.to_owned(),
        mode,
        dry_run,
        timeout: Duration::from_secs(10),
    }
}

fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Expects a GET of the node and answers `value`.
async fn expect_get(mock: &mut Mock, value: &Value) {
    let seen = next(mock).await;
    assert_eq!((seen.method, seen.uri.as_str()), (Method::GET, NODE_PATH));
    respond(seen.send, value);
}

/// Expects a forced apply by `manager`, answers `answer`, returns the body.
async fn expect_apply(mock: &mut Mock, manager: &str, answer: &Value) -> Value {
    let seen = next(mock).await;
    assert_eq!(seen.method, Method::PATCH);
    assert!(seen.uri.starts_with(NODE_PATH), "{}", seen.uri);
    assert!(
        seen.uri.contains(&format!("fieldManager={manager}")),
        "{}",
        seen.uri
    );
    assert!(seen.uri.contains("force=true"), "{}", seen.uri);
    respond(seen.send, answer);
    seen.body
}

fn patch_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "machine:\n  network:\n    mtu: 9000\n").unwrap();
    file
}

#[tokio::test]
async fn previews_then_applies_and_waits_for_config_applied() {
    let (service, mut mock) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let file = patch_file();
    let args = args(file.path(), Some(Mode::NoReboot), false);
    let plugin = tokio::spawn(async move { apply_config::run(client, &args).await });

    let before = node(1, existing(), json!({}));
    expect_get(&mut mock, &before).await;
    let new_list = json!([
        {"merge": {"machine": {"network": {"hostname": "n1"}}}},
        {"merge": {"machine": {"network": {"mtu": 9000}}}}
    ]);
    let annotation = serde_json::to_string(&new_list).unwrap();
    let body = expect_apply(&mut mock, "kubectl-talos-preview", &before).await;
    assert_eq!(
        body,
        json!({
            "apiVersion": "talos.dev/v1alpha1", "kind": "TalosNode",
            "metadata": {"name": "n1", "annotations": {"talos.dev/config-preview": annotation}}
        })
    );
    // The operator has not answered yet, then answers.
    expect_get(&mut mock, &before).await;
    let previewed = node(
        1,
        existing(),
        json!({"configPreview": {"request": sha256_hex(&annotation), "diff": "+    mtu: 9000\n"}}),
    );
    expect_get(&mut mock, &previewed).await;
    let body = expect_apply(&mut mock, "kubectl-talos-preview", &previewed).await;
    assert_eq!(
        body,
        json!({"apiVersion": "talos.dev/v1alpha1", "kind": "TalosNode", "metadata": {"name": "n1"}})
    );
    expect_get(&mut mock, &previewed).await;
    let body = expect_apply(&mut mock, "kubectl-talos-apply-mode", &previewed).await;
    assert_eq!(body["spec"], json!({"applyMode": "no-reboot"}));
    let body = expect_apply(
        &mut mock,
        "kubectl-talos-config",
        &node(3, new_list.clone(), json!({})),
    )
    .await;
    assert_eq!(body["spec"], json!({"configPatches": new_list}));
    assert_eq!(body["metadata"], json!({"name": "n1"}));
    // Generation 3 is observed, and the condition says applied.
    let condition = |status: &str| {
        json!([{"type": "ConfigApplied", "status": status, "reason": "Applied", "message": "",
                "lastTransitionTime": "2026-11-27T12:00:00Z"}])
    };
    expect_get(
        &mut mock,
        &node(
            3,
            new_list.clone(),
            json!({"observedGeneration": 2, "conditions": condition("True")}),
        ),
    )
    .await;
    expect_get(
        &mut mock,
        &node(
            3,
            new_list,
            json!({"observedGeneration": 3, "appliedConfigHashShort": "a1b2c3d4e5f6",
                                  "conditions": condition("True")}),
        ),
    )
    .await;
    plugin.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_refused_preview_changes_nothing() {
    let (service, mut mock) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let file = patch_file();
    let args = args(file.path(), None, false);
    let plugin = tokio::spawn(async move { apply_config::run(client, &args).await });

    let before = node(1, existing(), json!({}));
    expect_get(&mut mock, &before).await;
    let body = expect_apply(&mut mock, "kubectl-talos-preview", &before).await;
    let annotation = body["metadata"]["annotations"]["talos.dev/config-preview"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = node(
        1,
        existing(),
        json!({"configPreview": {"request": sha256_hex(&annotation), "error": "mtu 9000 exceeds the link's maximum"}}),
    );
    expect_get(&mut mock, &refused).await;
    expect_apply(&mut mock, "kubectl-talos-preview", &refused).await;
    let error = plugin.await.unwrap().unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"the config patches of talosnode "n1" were refused (spec not changed): mtu 9000 exceeds the link's maximum"#
    );
    drop(mock);
}

#[tokio::test]
async fn a_dry_run_stops_after_the_preview() {
    let (service, mut mock) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let file = patch_file();
    let args = args(file.path(), Some(Mode::Staged), true);
    let plugin = tokio::spawn(async move { apply_config::run(client, &args).await });

    let before = node(1, existing(), json!({}));
    expect_get(&mut mock, &before).await;
    let body = expect_apply(&mut mock, "kubectl-talos-preview", &before).await;
    let annotation = body["metadata"]["annotations"]["talos.dev/config-preview"]
        .as_str()
        .unwrap()
        .to_owned();
    let previewed = node(
        1,
        existing(),
        json!({"configPreview": {"request": sha256_hex(&annotation)}}),
    );
    expect_get(&mut mock, &previewed).await;
    expect_apply(&mut mock, "kubectl-talos-preview", &previewed).await;
    plugin.await.unwrap().unwrap();
    // No further request: the spec is left alone.
    assert!(mock.next_request().await.is_none());
}
