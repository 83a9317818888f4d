//! What every reconcile shares: the Kubernetes client, the agents' connections, the
//! settings, per-object back-off and the metrics.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::NodeOperation;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder, Reporter};

use crate::agent::Agents;
use crate::metrics::Metrics;

/// The operator's tunables (flags of `talos-operator`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often a settled node is observed again (drift, reboots, health).
    pub resync: Duration,
    /// How often a node or rollout in progress is looked at.
    pub poll: Duration,
    /// How long a node may take to reboot after the operator asked it to.
    pub operation_timeout: Duration,
    /// The longest back-off after repeated failures.
    pub max_backoff: Duration,
    /// How long a drain may take before the operation fails.
    pub drain_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(30),
            poll: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(600),
            max_backoff: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(300),
        }
    }
}

fn operation_key(node: &str, operation: &NodeOperation) -> String {
    format!("{node}/{:?}/{}", operation.kind, operation.started_at.0)
}

/// Shared by every reconcile of both controllers.
pub struct Context {
    /// The Kubernetes API.
    pub client: kube::Client,
    /// The node agents.
    pub agents: Agents,
    /// The tunables.
    pub settings: Settings,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
    sent: Mutex<HashSet<String>>,
}

impl Context {
    /// A context for reconciles made as `reporter` (the operator's pod).
    pub fn new(
        client: kube::Client,
        agents: Agents,
        settings: Settings,
        metrics: Arc<Metrics>,
        reporter: Reporter,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            agents,
            settings,
            metrics,
            failures: Mutex::new(HashMap::new()),
            sent: Mutex::new(HashSet::new()),
        }
    }

    /// Publishes a Kubernetes Event about `object`. Events are for people: a server
    /// without the events API (or a refusal) is logged, never an error.
    pub async fn publish(&self, object: &ObjectReference, event: Event) {
        if let Err(e) = self.recorder.publish(&event, object).await {
            tracing::debug!(reason = %event.reason, error = %e, "event not recorded");
        }
    }

    /// The delay before retrying `key` after one more failure: 1 s, doubling up to
    /// `max_backoff`.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        let delay = Duration::from_secs(1u64 << (*count - 1).min(20));
        delay.min(self.settings.max_backoff)
    }

    /// Remembers that this process sent `operation`'s request to `node`.
    pub fn sent(&self, node: &str, operation: &NodeOperation) {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.insert(operation_key(node, operation));
    }

    /// Forgets `operation` once it is over.
    pub fn finished(&self, node: &str, operation: &NodeOperation) {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.remove(&operation_key(node, operation));
    }

    /// Whether this process sent `operation`'s request. A restarted operator has sent
    /// nothing yet: it cannot know whether its predecessor's request got out, so it
    /// sends it again.
    pub fn was_sent(&self, node: &str, operation: &NodeOperation) -> bool {
        let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.contains(&operation_key(node, operation))
    }

    /// Forgets `key`'s failures after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}
