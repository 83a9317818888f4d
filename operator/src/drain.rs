//! Cordon, drain and uncordon a Kubernetes Node around a reboot or OS upgrade.
//!
//! The operator calls [`cordon`] and then [`drain`] before it reboots or upgrades a machine
//! whose TalosNode names a Kubernetes Node (`spec.nodeName`), waits for [`node_ready`] once
//! the machine is back, and then calls [`uncordon`], but only when [`cordon`] answered
//! [`Cordon::Cordoned`]: a Node that someone else cordoned stays cordoned.
//!
//! Pods leave the Node through the Eviction API and are never deleted directly, so
//! PodDisruptionBudgets hold: an eviction a budget refuses now (429) is retried every
//! [`DrainOptions::retry_interval`] until [`DrainOptions::timeout`].
//!
//! **Invariant:** the requests this module sends are exactly [`REQUESTS`]; the chart's
//! ClusterRole is checked against that list, and the tests check the list against what the
//! code sends.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::time::Instant;
use tracing::{debug, info};

/// The (API group, resource, verb) triples this module requests, so the chart's ClusterRole
/// can be checked against exactly what the code sends.
pub const REQUESTS: &[(&str, &str, &str)] = &[
    ("", "nodes", "get"),
    ("", "nodes", "patch"),
    ("", "pods", "list"),
    ("", "pods/eviction", "create"),
];

/// The field manager named on the Node patches, so `managedFields` shows who cordoned.
const FIELD_MANAGER: &str = "talos-operator";

/// The annotation the kubelet puts on the mirror pod of a static pod; the API server cannot
/// evict those (the kubelet runs them from files), so a drain leaves them.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// How often [`cordon`] re-reads the Node when its conditional patch lost a race (409).
const CORDON_ATTEMPTS: usize = 5;

/// Skip reason of a pod owned by a DaemonSet (its controller would recreate it at once, and
/// it tolerates the unschedulable taint).
const SKIP_DAEMONSET: &str = "owned by a DaemonSet";
/// Skip reason of a mirror pod (see [`MIRROR_ANNOTATION`]).
const SKIP_MIRROR: &str = "mirror pod of a static pod";
/// Skip reason of a pod whose phase is Succeeded or Failed: it runs nothing any more.
const SKIP_TERMINATED: &str = "already terminated";

/// How long a [`drain`] may take and how often it asks again, so a PodDisruptionBudget that
/// refuses an eviction for now delays the reboot instead of failing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainOptions {
    /// The whole drain (evictions and waiting for the pods to go) must finish within this.
    pub timeout: Duration,
    /// The pause between retries of refused evictions and between checks for gone pods.
    pub retry_interval: Duration,
}

impl Default for DrainOptions {
    /// Five minutes in all, asking again every five seconds.
    fn default() -> Self {
        DrainOptions {
            timeout: Duration::from_secs(5 * 60),
            retry_interval: Duration::from_secs(5),
        }
    }
}

/// What [`cordon`] found, so the operator uncordons only a Node it cordoned itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cordon {
    /// The Node was schedulable and is now unschedulable: uncordon it after the reboot.
    Cordoned,
    /// The Node was already unschedulable (someone else cordoned it): leave it so.
    AlreadyUnschedulable,
}

/// What a successful [`drain`] did, for the operator's events and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// `namespace/name` of each pod evicted (or already gone when its eviction was sent), in
    /// the order the evictions were accepted.
    pub evicted: Vec<String>,
    /// `namespace/name` of each pod left on the Node, with the reason.
    pub skipped: Vec<(String, &'static str)>,
}

/// Why cordoning, draining or uncordoning a Node failed, naming the Node or pod.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The Node does not exist (or the API server does not serve Nodes).
    #[error("node {node} not found")]
    NodeNotFound {
        /// The Node's name.
        node: String,
    },
    /// Reading the Node failed.
    #[error("reading node {node}: {source}")]
    GetNode {
        /// The Node's name.
        node: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Patching `spec.unschedulable` of the Node failed.
    #[error("setting spec.unschedulable={unschedulable} on node {node}: {source}")]
    PatchNode {
        /// The Node's name.
        node: String,
        /// The value the patch set.
        unschedulable: bool,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Listing the pods on the Node failed.
    #[error("listing the pods on node {node}: {source}")]
    ListPods {
        /// The Node's name.
        node: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A listed pod lacked a field the drain needs (a broken API server answer).
    #[error("a pod on node {node} has no {field}")]
    MissingField {
        /// The Node's name.
        node: String,
        /// The missing field, e.g. `.metadata.namespace`.
        field: &'static str,
    },
    /// The API server refused an eviction for a reason other than a disruption budget
    /// (429), or the request failed.
    #[error("evicting pod {pod}: {source}")]
    Evict {
        /// `namespace/name` of the pod.
        pod: String,
        /// The client's error; its status says why the eviction was refused.
        #[source]
        source: kube::Error,
    },
    /// The drain did not finish within [`DrainOptions::timeout`].
    #[error("draining node {node} timed out; still there: {}", remaining.join(", "))]
    Timeout {
        /// The Node's name.
        node: String,
        /// `namespace/name` of the pods still on the Node: those whose eviction was still
        /// refused (by a PodDisruptionBudget), or, once all were evicted, those not yet gone.
        remaining: Vec<String>,
    },
}

/// The HTTP status of an API error, whether or not the body was a JSON `Status`.
///
/// `Status::is_not_found` is not used: in kube-core 5.0.0 it falls back to the code only for
/// an unknown *expected* reason, so the plain-text `404 page not found` of a resource the API
/// server does not serve would not count.
fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Why the API server refused a request, for the logs.
fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

/// Reads the Node; a 404 is [`DrainError::NodeNotFound`].
async fn get_node(nodes: &Api<Node>, node: &str) -> Result<Node, DrainError> {
    nodes.get(node).await.map_err(|source| {
        if api_code(&source) == Some(404) {
            DrainError::NodeNotFound {
                node: node.to_owned(),
            }
        } else {
            DrainError::GetNode {
                node: node.to_owned(),
                source,
            }
        }
    })
}

fn patch_error(node: &str, unschedulable: bool, source: kube::Error) -> DrainError {
    if api_code(&source) == Some(404) {
        DrainError::NodeNotFound {
            node: node.to_owned(),
        }
    } else {
        DrainError::PatchNode {
            node: node.to_owned(),
            unschedulable,
            source,
        }
    }
}

/// Marks the Node unschedulable before a reboot or upgrade, so no new pods land on it, and
/// says whether it already was, so the operator uncordons only what it cordoned.
///
/// The merge patch carries the `resourceVersion` that was read, so a Node cordoned by
/// someone else between the read and the patch is not mistaken for one cordoned here: the
/// API server answers 409 and the Node is read again.
pub async fn cordon(client: &kube::Client, node: &str) -> Result<Cordon, DrainError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut attempt = 1;
    loop {
        let current = get_node(&nodes, node).await?;
        if current.spec.as_ref().and_then(|spec| spec.unschedulable) == Some(true) {
            info!(node, "node already unschedulable; leaving it cordoned");
            return Ok(Cordon::AlreadyUnschedulable);
        }
        let mut patch = json!({ "spec": { "unschedulable": true } });
        if let Some(version) = &current.metadata.resource_version {
            patch["metadata"] = json!({ "resourceVersion": version });
        }
        match nodes
            .patch(node, &patch_params(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                info!(node, "cordoned node");
                return Ok(Cordon::Cordoned);
            }
            Err(err) if api_code(&err) == Some(409) && attempt < CORDON_ATTEMPTS => {
                debug!(
                    node,
                    attempt, "node changed while cordoning; reading it again"
                );
                attempt += 1;
            }
            Err(err) => return Err(patch_error(node, true, err)),
        }
    }
}

/// Marks the Node schedulable again once the machine is back; call it only after
/// [`cordon`] answered [`Cordon::Cordoned`].
pub async fn uncordon(client: &kube::Client, node: &str) -> Result<(), DrainError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({ "spec": { "unschedulable": false } });
    nodes
        .patch(node, &patch_params(), &Patch::Merge(&patch))
        .await
        .map_err(|err| patch_error(node, false, err))?;
    info!(node, "uncordoned node");
    Ok(())
}

/// Whether the Node's `Ready` condition is `True`, so the operator knows the machine came
/// back from a reboot or upgrade.
///
/// `None` when the Node does not exist or the API server does not serve Nodes at all (both
/// answer 404), so a cluster without that Node is not an error. A Node without a `Ready`
/// condition is not ready.
pub async fn node_ready(client: &kube::Client, node: &str) -> Result<Option<bool>, DrainError> {
    let nodes: Api<Node> = Api::all(client.clone());
    match get_node(&nodes, node).await {
        Ok(current) => {
            let ready = current
                .status
                .as_ref()
                .and_then(|status| status.conditions.as_ref())
                .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|condition| condition.status == "True");
            Ok(Some(ready))
        }
        Err(DrainError::NodeNotFound { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// A pod the drain evicts, remembered by uid so a new pod of the same name counts as the
/// old one gone.
#[derive(Debug, Clone)]
struct PodRef {
    namespace: String,
    name: String,
    uid: Option<String>,
}

impl PodRef {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn of(pod: &Pod, node: &str) -> Result<Self, DrainError> {
        let missing = |field| DrainError::MissingField {
            node: node.to_owned(),
            field,
        };
        Ok(PodRef {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .ok_or_else(|| missing(".metadata.namespace"))?,
            name: pod
                .metadata
                .name
                .clone()
                .ok_or_else(|| missing(".metadata.name"))?,
            uid: pod.metadata.uid.clone(),
        })
    }

    /// Whether `pod` is this very pod (same name and, when both are known, same uid).
    fn is(&self, pod: &Pod) -> bool {
        pod.metadata.namespace.as_deref() == Some(self.namespace.as_str())
            && pod.metadata.name.as_deref() == Some(self.name.as_str())
            && (self.uid.is_none() || pod.metadata.uid.is_none() || pod.metadata.uid == self.uid)
    }
}

/// Why a pod stays on the Node, or `None` when it must be evicted.
fn skip_reason(pod: &Pod) -> Option<&'static str> {
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| annotations.contains_key(MIRROR_ANNOTATION));
    if mirror {
        return Some(SKIP_MIRROR);
    }
    let daemonset = pod
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|owners| owners.iter().any(|owner| owner.kind == "DaemonSet"));
    if daemonset {
        return Some(SKIP_DAEMONSET);
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|status| status.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return Some(SKIP_TERMINATED);
    }
    None
}

/// The pods the API server lists on the Node.
async fn list_pods(pods: &Api<Pod>, node: &str) -> Result<Vec<Pod>, DrainError> {
    let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
    pods.list(&params)
        .await
        .map(|list| list.items)
        .map_err(|source| DrainError::ListPods {
            node: node.to_owned(),
            source,
        })
}

/// What one eviction request came to.
enum Eviction {
    /// Accepted: the pod is being deleted.
    Accepted,
    /// The pod no longer exists (404).
    Gone,
    /// Refused for now (429, a PodDisruptionBudget); the API server's message says why.
    Refused(String),
}

async fn evict(client: &kube::Client, pod: &PodRef) -> Result<Eviction, DrainError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    match pods.evict(&pod.name, &EvictParams::default()).await {
        Ok(_) => Ok(Eviction::Accepted),
        Err(err) => match api_code(&err) {
            Some(404) => Ok(Eviction::Gone),
            Some(429) => Ok(Eviction::Refused(api_message(&err))),
            _ => Err(DrainError::Evict {
                pod: pod.key(),
                source: err,
            }),
        },
    }
}

/// Sleeps one retry interval, or until the deadline if that comes first.
async fn pause(options: &DrainOptions, deadline: Instant) {
    tokio::time::sleep_until(deadline.min(Instant::now() + options.retry_interval)).await;
}

/// Evicts the pods on the Node (after [`cordon`]) and waits until they are gone, so the
/// machine can reboot without killing workloads behind their PodDisruptionBudgets' backs.
///
/// Pods owned by a DaemonSet, mirror pods of static pods and pods already Succeeded or
/// Failed stay (see [`DrainReport::skipped`]). Every other pod is evicted; evictions a
/// PodDisruptionBudget refuses (429) are asked again every retry interval. Once all are
/// accepted, the pods are listed every retry interval until none of the evicted ones is left
/// (a pod of the same name with a new uid counts as gone). Both phases share one
/// [`DrainOptions::timeout`]; past it the answer is [`DrainError::Timeout`] naming the pods
/// still there. Any other eviction failure stops the drain with [`DrainError::Evict`].
pub async fn drain(
    client: &kube::Client,
    node: &str,
    options: &DrainOptions,
) -> Result<DrainReport, DrainError> {
    let deadline = Instant::now() + options.timeout;
    let all_pods: Api<Pod> = Api::all(client.clone());
    let mut report = DrainReport::default();

    let mut pending = Vec::new();
    for pod in list_pods(&all_pods, node).await? {
        let pod_ref = PodRef::of(&pod, node)?;
        match skip_reason(&pod) {
            Some(reason) => {
                debug!(node, pod = %pod_ref.key(), reason, "leaving pod on the node");
                report.skipped.push((pod_ref.key(), reason));
            }
            None => pending.push(pod_ref),
        }
    }

    // Evict in rounds: each round asks once for every pod not yet evicted, so one pod that a
    // budget holds back does not hold back the others.
    let mut evicted = Vec::new();
    loop {
        let mut refused = Vec::new();
        for pod in pending {
            match evict(client, &pod).await? {
                Eviction::Accepted => {
                    info!(node, pod = %pod.key(), "evicted pod");
                    report.evicted.push(pod.key());
                    evicted.push(pod);
                }
                Eviction::Gone => {
                    debug!(node, pod = %pod.key(), "pod already gone");
                    report.evicted.push(pod.key());
                }
                Eviction::Refused(why) => {
                    debug!(node, pod = %pod.key(), why, "eviction refused; retrying");
                    refused.push(pod);
                }
            }
        }
        pending = refused;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(DrainError::Timeout {
                node: node.to_owned(),
                remaining: pending.iter().map(PodRef::key).collect(),
            });
        }
        pause(options, deadline).await;
    }

    // Wait until the evicted pods are gone (their grace periods can be long).
    while !evicted.is_empty() {
        let listed = list_pods(&all_pods, node).await?;
        evicted.retain(|pod| listed.iter().any(|other| pod.is(other)));
        if evicted.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(DrainError::Timeout {
                node: node.to_owned(),
                remaining: evicted.iter().map(PodRef::key).collect(),
            });
        }
        debug!(
            node,
            remaining = evicted.len(),
            "waiting for evicted pods to go"
        );
        pause(options, deadline).await;
    }
    info!(
        node,
        evicted = report.evicted.len(),
        skipped = report.skipped.len(),
        "drained node"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    use http::{Method, Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::Value;
    use tower_test::mock::{Handle, SendResponse};

    const NODE: &str = "node-1";
    const LIST_PODS: &str = "/api/v1/pods?&fieldSelector=spec.nodeName%3Dnode-1";
    const NODE_PATH: &str = "/api/v1/nodes/node-1";
    const PATCH_NODE: &str = "/api/v1/nodes/node-1?&fieldManager=talos-operator";

    /// An entry of [`REQUESTS`].
    type Triple = (&'static str, &'static str, &'static str);

    /// The (group, resource, verb) of a request to the core API, as RBAC sees it.
    fn rbac_triple(method: &Method, path: &str, query: &str) -> (String, String, String) {
        let rest = path
            .strip_prefix("/api/v1/")
            .unwrap_or_else(|| panic!("not a core API path: {path}"));
        let mut segments: Vec<&str> = rest.split('/').collect();
        if segments.len() > 2 && segments[0] == "namespaces" {
            segments.drain(..2);
        }
        let (resource, name) = match segments.as_slice() {
            [resource] => (resource.to_string(), None),
            [resource, name] => (resource.to_string(), Some(*name)),
            [resource, name, sub] => (format!("{resource}/{sub}"), Some(*name)),
            _ => panic!("unexpected path {path}"),
        };
        let verb = match (method.as_str(), name) {
            ("GET", None) if query.contains("watch=true") => "watch",
            ("GET", None) => "list",
            ("GET", Some(_)) => "get",
            ("POST", _) => "create",
            ("PATCH", _) => "patch",
            ("PUT", _) => "update",
            ("DELETE", None) => "deletecollection",
            ("DELETE", Some(_)) => "delete",
            (other, _) => panic!("unexpected method {other}"),
        };
        (String::new(), resource, verb.to_owned())
    }

    /// The fake API server's side of the mock: checks each request against what the test
    /// expects and against [`REQUESTS`], and remembers which entries it saw.
    struct ApiServer {
        handle: Handle<Request<Body>, Response<Body>>,
        seen: Vec<Triple>,
    }

    /// A request the fake API server received.
    struct Received {
        method: Method,
        path: String,
        content_type: Option<String>,
        body: Value,
        respond: SendResponse<Response<Body>>,
    }

    impl Received {
        fn path_and_query(&self) -> &str {
            &self.path
        }

        fn reply(self, status: u16, body: Value) {
            self.reply_raw(status, serde_json::to_vec(&body).expect("JSON serialises"));
        }

        fn reply_raw(self, status: u16, body: Vec<u8>) {
            let response = Response::builder()
                .status(StatusCode::from_u16(status).expect("a valid status code"))
                .body(Body::from(body))
                .expect("a valid response");
            self.respond.send_response(response);
        }
    }

    impl ApiServer {
        /// A client wired to a fresh fake API server.
        fn new() -> (kube::Client, Self) {
            let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
            let client = kube::Client::new(service, "default");
            (
                client,
                ApiServer {
                    handle,
                    seen: Vec::new(),
                },
            )
        }

        /// The next request, or `None` once the client is gone.
        async fn next(&mut self) -> Option<Received> {
            let (request, respond) = self.handle.next_request().await?;
            let (parts, body) = request.into_parts();
            let path = parts
                .uri
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default();
            let query = parts.uri.query().unwrap_or_default();
            let (group, resource, verb) = rbac_triple(&parts.method, parts.uri.path(), query);
            let triple = REQUESTS
                .iter()
                .find(|(g, r, v)| *g == group && *r == resource && *v == verb)
                .unwrap_or_else(|| {
                    panic!(
                        "{} {path} is ({group:?}, {resource}, {verb}), not in REQUESTS",
                        parts.method
                    )
                });
            self.seen.push(*triple);
            let bytes = body.collect_bytes().await.expect("request body");
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("a JSON request body")
            };
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|value| value.to_str().expect("ASCII header").to_owned());
            Some(Received {
                method: parts.method,
                path,
                content_type,
                body,
                respond,
            })
        }

        /// The next request, which must be `method path_and_query`.
        async fn expect(&mut self, method: Method, path_and_query: &str) -> Received {
            let received = self
                .next()
                .await
                .unwrap_or_else(|| panic!("expected {method} {path_and_query}, got nothing"));
            assert_eq!(
                (&received.method, received.path_and_query()),
                (&method, path_and_query)
            );
            received
        }

        /// Checks that the client sends nothing more, once the test dropped it.
        async fn done(mut self) -> Vec<Triple> {
            if let Some(extra) = self.next().await {
                panic!("unexpected request {} {}", extra.method, extra.path);
            }
            self.seen
        }
    }

    fn node(unschedulable: Option<bool>, ready: Option<&str>) -> Value {
        let mut node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": { "name": NODE, "resourceVersion": "7" },
            "spec": {},
            "status": { "conditions": [
                { "type": "MemoryPressure", "status": "False" },
            ] },
        });
        if let Some(unschedulable) = unschedulable {
            node["spec"]["unschedulable"] = json!(unschedulable);
        }
        if let Some(ready) = ready {
            node["status"]["conditions"]
                .as_array_mut()
                .expect("conditions is an array")
                .push(json!({ "type": "Ready", "status": ready }));
        }
        node
    }

    fn pod(namespace: &str, name: &str, uid: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "namespace": namespace, "name": name, "uid": uid },
            "spec": { "nodeName": NODE, "containers": [{ "name": "main", "image": "busybox" }] },
            "status": { "phase": "Running" },
        })
    }

    fn daemonset_pod() -> Value {
        let mut pod = pod("kube-system", "cilium-x7k2p", "uid-ds");
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "name": "cilium",
            "uid": "uid-cilium",
            "controller": true,
        }]);
        pod
    }

    fn mirror_pod() -> Value {
        let mut pod = pod("kube-system", "kube-apiserver-node-1", "uid-mirror");
        pod["metadata"]["annotations"] = json!({ MIRROR_ANNOTATION: "3f1c" });
        pod
    }

    fn completed_pod() -> Value {
        let mut pod = pod("default", "migrate-db-2j4rq", "uid-job");
        pod["status"]["phase"] = json!("Succeeded");
        pod
    }

    fn pod_list(items: Vec<Value>) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": { "resourceVersion": "42" },
            "items": items,
        })
    }

    fn status(code: u16, reason: &str, message: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": if code < 400 { "Success" } else { "Failure" },
            "code": code,
            "reason": reason,
            "message": message,
        })
    }

    fn evicted() -> Value {
        status(201, "", "")
    }

    fn pdb_refusal() -> Value {
        status(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
        )
    }

    fn not_found(what: &str) -> Value {
        status(404, "NotFound", &format!("{what} not found"))
    }

    fn eviction_path(namespace: &str, name: &str) -> String {
        format!("/api/v1/namespaces/{namespace}/pods/{name}/eviction?")
    }

    /// Answers one eviction request for `namespace/name`, checking its body names the pod.
    async fn expect_eviction(api: &mut ApiServer, namespace: &str, name: &str, code: u16) {
        let request = api
            .expect(Method::POST, &eviction_path(namespace, name))
            .await;
        assert_eq!(request.body["metadata"]["name"], name);
        let body = if code == 429 {
            pdb_refusal()
        } else {
            evicted()
        };
        request.reply(code, body);
    }

    /// Options for drains that must not time out: retries come at once, and the timeout is
    /// long enough for a loaded test machine.
    fn fast() -> DrainOptions {
        DrainOptions {
            timeout: Duration::from_millis(2000),
            retry_interval: Duration::from_millis(10),
        }
    }

    /// Waits for the fake API server's task, failing the test rather than hanging it.
    async fn join<T>(server: tokio::task::JoinHandle<T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the fake API server finished")
            .expect("the fake API server's assertions held")
    }

    #[test]
    fn default_options_are_five_minutes_every_five_seconds() {
        let options = DrainOptions::default();
        assert_eq!(options.timeout, Duration::from_secs(300));
        assert_eq!(options.retry_interval, Duration::from_secs(5));
    }

    #[tokio::test]
    async fn cordon_of_a_schedulable_node_patches_unschedulable_true() {
        let (client, mut api) = ApiServer::new();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, NODE_PATH)
                .await
                .reply(200, node(None, Some("True")));
            let patch = api.expect(Method::PATCH, PATCH_NODE).await;
            assert_eq!(
                patch.content_type.as_deref(),
                Some("application/merge-patch+json")
            );
            assert_eq!(
                patch.body,
                json!({ "metadata": { "resourceVersion": "7" }, "spec": { "unschedulable": true } })
            );
            patch.reply(200, node(Some(true), Some("True")));
            api.done().await
        });
        assert_eq!(cordon(&client, NODE).await.unwrap(), Cordon::Cordoned);
        drop(client);
        join(server).await;
    }

    #[tokio::test]
    async fn cordon_of_an_unschedulable_node_changes_nothing() {
        let (client, mut api) = ApiServer::new();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, NODE_PATH)
                .await
                .reply(200, node(Some(true), Some("True")));
            api.done().await
        });
        assert_eq!(
            cordon(&client, NODE).await.unwrap(),
            Cordon::AlreadyUnschedulable
        );
        drop(client);
        join(server).await;
    }

    #[tokio::test]
    async fn cordon_that_loses_a_race_reads_the_node_again() {
        let (client, mut api) = ApiServer::new();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, NODE_PATH)
                .await
                .reply(200, node(Some(false), Some("True")));
            api.expect(Method::PATCH, PATCH_NODE)
                .await
                .reply(409, status(409, "Conflict", "the object has been modified"));
            // Someone else cordoned it in between: it is theirs to uncordon.
            api.expect(Method::GET, NODE_PATH)
                .await
                .reply(200, node(Some(true), Some("True")));
            api.done().await
        });
        assert_eq!(
            cordon(&client, NODE).await.unwrap(),
            Cordon::AlreadyUnschedulable
        );
        drop(client);
        join(server).await;
    }

    #[tokio::test]
    async fn cordon_of_a_missing_node_is_node_not_found() {
        let (client, mut api) = ApiServer::new();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, NODE_PATH)
                .await
                .reply(404, not_found("nodes \"node-1\""));
            api.done().await
        });
        let err = cordon(&client, NODE).await.unwrap_err();
        assert!(
            matches!(&err, DrainError::NodeNotFound { node } if node == NODE),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "node node-1 not found");
        drop(client);
        join(server).await;
    }

    #[tokio::test]
    async fn uncordon_patches_unschedulable_false() {
        let (client, mut api) = ApiServer::new();
        let server = tokio::spawn(async move {
            let patch = api.expect(Method::PATCH, PATCH_NODE).await;
            assert_eq!(
                patch.content_type.as_deref(),
                Some("application/merge-patch+json")
            );
            assert_eq!(patch.body, json!({ "spec": { "unschedulable": false } }));
            patch.reply(200, node(Some(false), Some("True")));
            api.done().await
        });
        uncordon(&client, NODE).await.unwrap();
        drop(client);
        join(server).await;
    }

    #[tokio::test]
    async fn node_ready_reads_the_ready_condition() {
        let (client, mut api) = ApiServer::new();
        let server = tokio::spawn(async move {
            for answer in [
                node(None, Some("True")),
                node(None, Some("False")),
                node(None, Some("Unknown")),
                node(None, None),
            ] {
                api.expect(Method::GET, NODE_PATH).await.reply(200, answer);
            }
            api.done().await
        });
        assert_eq!(node_ready(&client, NODE).await.unwrap(), Some(true));
        assert_eq!(node_ready(&client, NODE).await.unwrap(), Some(false));
        assert_eq!(node_ready(&client, NODE).await.unwrap(), Some(false));
        assert_eq!(node_ready(&client, NODE).await.unwrap(), Some(false));
        drop(client);
        join(server).await;
    }

    #[tokio::test]
    async fn node_ready_is_none_without_the_node_or_without_nodes_at_all() {
        let (client, mut api) = ApiServer::new();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, NODE_PATH)
                .await
                .reply(404, not_found("nodes \"node-1\""));
            // An API server that does not serve the resource answers in plain text.
            api.expect(Method::GET, NODE_PATH)
                .await
                .reply_raw(404, b"404 page not found\n".to_vec());
            api.expect(Method::GET, NODE_PATH).await.reply(
                500,
                status(500, "InternalError", "etcdserver: request timed out"),
            );
            api.done().await
        });
        assert_eq!(node_ready(&client, NODE).await.unwrap(), None);
        assert_eq!(node_ready(&client, NODE).await.unwrap(), None);
        let err = node_ready(&client, NODE).await.unwrap_err();
        assert!(matches!(err, DrainError::GetNode { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("reading node node-1: "),
            "{err}"
        );
        drop(client);
        join(server).await;
    }

    #[tokio::test]
    async fn drain_skips_daemonset_mirror_and_finished_pods_and_retries_a_refused_eviction() {
        let (client, mut api) = ApiServer::new();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, LIST_PODS).await.reply(
                200,
                pod_list(vec![
                    daemonset_pod(),
                    pod("shop", "web-0", "uid-web"),
                    mirror_pod(),
                    pod("shop", "api-5d9c-abcde", "uid-api"),
                    completed_pod(),
                ]),
            );
            // First round: the budget refuses web-0 for now, api goes.
            expect_eviction(&mut api, "shop", "web-0", 429).await;
            expect_eviction(&mut api, "shop", "api-5d9c-abcde", 201).await;
            // Next round: web-0 is let go.
            expect_eviction(&mut api, "shop", "web-0", 201).await;
            // web-0 is still terminating; a new api pod of the same name is not the old one.
            let mut new_api = pod("shop", "api-5d9c-abcde", "uid-api-2");
            new_api["status"]["phase"] = json!("Pending");
            api.expect(Method::GET, LIST_PODS).await.reply(
                200,
                pod_list(vec![
                    daemonset_pod(),
                    pod("shop", "web-0", "uid-web"),
                    mirror_pod(),
                    new_api.clone(),
                    completed_pod(),
                ]),
            );
            api.expect(Method::GET, LIST_PODS).await.reply(
                200,
                pod_list(vec![
                    daemonset_pod(),
                    mirror_pod(),
                    new_api,
                    completed_pod(),
                ]),
            );
            api.done().await
        });
        let report = drain(&client, NODE, &fast()).await.unwrap();
        assert_eq!(
            report,
            DrainReport {
                evicted: vec!["shop/api-5d9c-abcde".into(), "shop/web-0".into()],
                skipped: vec![
                    ("kube-system/cilium-x7k2p".into(), SKIP_DAEMONSET),
                    ("kube-system/kube-apiserver-node-1".into(), SKIP_MIRROR),
                    ("default/migrate-db-2j4rq".into(), SKIP_TERMINATED),
                ],
            }
        );
        drop(client);
        join(server).await;
    }

    #[tokio::test]
    async fn drain_times_out_naming_the_pod_a_budget_keeps() {
        let (client, mut api) = ApiServer::new();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, LIST_PODS).await.reply(
                200,
                pod_list(vec![
                    pod("shop", "web-0", "uid-web"),
                    pod("shop", "api-1", "uid-api"),
                ]),
            );
            expect_eviction(&mut api, "shop", "web-0", 429).await;
            expect_eviction(&mut api, "shop", "api-1", 201).await;
            // Until the drain gives up, the budget refuses web-0 on every retry.
            let mut retries = 0;
            while let Some(request) = api.next().await {
                assert_eq!(
                    (&request.method, request.path_and_query()),
                    (&Method::POST, eviction_path("shop", "web-0").as_str())
                );
                request.reply(429, pdb_refusal());
                retries += 1;
            }
            assert!(retries >= 1, "the refused eviction was never retried");
            api.seen
        });
        let options = DrainOptions {
            timeout: Duration::from_millis(100),
            retry_interval: Duration::from_millis(10),
        };
        let err = drain(&client, NODE, &options).await.unwrap_err();
        match &err {
            DrainError::Timeout { node, remaining } => {
                assert_eq!(node, NODE);
                assert_eq!(remaining, &["shop/web-0"]);
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "draining node node-1 timed out; still there: shop/web-0"
        );
        drop(client);
        join(server).await;
    }

    #[tokio::test]
    async fn drain_times_out_naming_evicted_pods_that_do_not_go() {
        let (client, mut api) = ApiServer::new();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, LIST_PODS)
                .await
                .reply(200, pod_list(vec![pod("shop", "slow-0", "uid-slow")]));
            expect_eviction(&mut api, "shop", "slow-0", 201).await;
            // Its grace period outlasts the drain.
            while let Some(request) = api.next().await {
                assert_eq!(
                    (&request.method, request.path_and_query()),
                    (&Method::GET, LIST_PODS)
                );
                request.reply(200, pod_list(vec![pod("shop", "slow-0", "uid-slow")]));
            }
            api.seen
        });
        let options = DrainOptions {
            timeout: Duration::from_millis(60),
            retry_interval: Duration::from_millis(10),
        };
        let err = drain(&client, NODE, &options).await.unwrap_err();
        assert!(
            matches!(&err, DrainError::Timeout { remaining, .. } if remaining == &["shop/slow-0"]),
            "{err:?}"
        );
        drop(client);
        join(server).await;
    }

    #[tokio::test]
    async fn drain_counts_a_pod_gone_before_its_eviction_and_stops_on_other_refusals() {
        let (client, mut api) = ApiServer::new();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, LIST_PODS).await.reply(
                200,
                pod_list(vec![
                    pod("shop", "gone-0", "uid-gone"),
                    pod("shop", "locked-0", "uid-locked"),
                ]),
            );
            api.expect(Method::POST, &eviction_path("shop", "gone-0"))
                .await
                .reply(404, not_found("pods \"gone-0\""));
            api.expect(Method::POST, &eviction_path("shop", "locked-0"))
                .await
                .reply(
                    500,
                    status(
                        500,
                        "InternalError",
                        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                    ),
                );
            api.done().await
        });
        let err = drain(&client, NODE, &fast()).await.unwrap_err();
        assert!(
            matches!(&err, DrainError::Evict { pod, .. } if pod == "shop/locked-0"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with("evicting pod shop/locked-0: "),
            "{message}"
        );
        assert!(
            message.contains("more than one PodDisruptionBudget"),
            "{message}"
        );
        drop(client);
        join(server).await;
    }

    #[tokio::test]
    async fn drain_of_an_empty_node_only_lists() {
        let (client, mut api) = ApiServer::new();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, LIST_PODS)
                .await
                .reply(200, pod_list(vec![daemonset_pod()]));
            api.done().await
        });
        let report = drain(&client, NODE, &fast()).await.unwrap();
        assert!(report.evicted.is_empty());
        assert_eq!(report.skipped.len(), 1);
        drop(client);
        join(server).await;
    }

    /// The whole cycle the operator runs sends exactly the requests in [`REQUESTS`]: every
    /// request is in the list (checked by [`ApiServer::next`]) and every entry is used.
    #[tokio::test]
    async fn a_reboot_cycle_sends_exactly_the_listed_requests() {
        let (client, mut api) = ApiServer::new();
        let server = tokio::spawn(async move {
            api.expect(Method::GET, NODE_PATH)
                .await
                .reply(200, node(None, Some("True")));
            api.expect(Method::PATCH, PATCH_NODE)
                .await
                .reply(200, node(Some(true), Some("True")));
            api.expect(Method::GET, LIST_PODS)
                .await
                .reply(200, pod_list(vec![pod("shop", "web-0", "uid-web")]));
            expect_eviction(&mut api, "shop", "web-0", 201).await;
            api.expect(Method::GET, LIST_PODS)
                .await
                .reply(200, pod_list(vec![]));
            api.expect(Method::GET, NODE_PATH)
                .await
                .reply(200, node(Some(true), Some("True")));
            api.expect(Method::PATCH, PATCH_NODE)
                .await
                .reply(200, node(Some(false), Some("True")));
            api.done().await
        });
        assert_eq!(cordon(&client, NODE).await.unwrap(), Cordon::Cordoned);
        let report = drain(&client, NODE, &fast()).await.unwrap();
        assert_eq!(report.evicted, ["shop/web-0"]);
        assert_eq!(node_ready(&client, NODE).await.unwrap(), Some(true));
        uncordon(&client, NODE).await.unwrap();
        drop(client);
        let seen = join(server).await;
        for entry in REQUESTS {
            assert!(
                seen.contains(entry),
                "{entry:?} is in REQUESTS but never sent"
            );
        }
    }
}
