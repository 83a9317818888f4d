//! Prometheus metrics and the HTTP server for `/metrics`, `/healthz` and `/readyz`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use crds::NodePhase;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Every phase a TalosNode can be in, so that the gauge has a series for each (a
/// phase no node is in reads 0 instead of vanishing).
const PHASES: [NodePhase; 7] = [
    NodePhase::Pending,
    NodePhase::Ready,
    NodePhase::Applying,
    NodePhase::Rebooting,
    NodePhase::Upgrading,
    NodePhase::Degraded,
    NodePhase::Unreachable,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    rollout: String,
    state: &'static str,
}

/// The operator's metrics; cheap to update from every reconcile.
pub struct Metrics {
    registry: Registry,
    nodes: Family<PhaseLabels, Gauge>,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ControllerLabels, Counter>,
    durations: Family<ControllerLabels, Histogram>,
    rollouts: Family<RolloutLabels, Gauge>,
    phases: Mutex<HashMap<String, NodePhase>>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("talos_operator");
        let nodes = Family::<PhaseLabels, Gauge>::default();
        registry.register("nodes", "TalosNodes by phase", nodes.clone());
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let errors = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed (and are retried with back-off)",
            errors.clone(),
        );
        let durations = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0,
            ])
        });
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles take",
            durations.clone(),
        );
        let rollouts = Family::<RolloutLabels, Gauge>::default();
        registry.register(
            "rollout_nodes",
            "Nodes of each TalosUpgrade by state (total, updated, in_progress, failed)",
            rollouts.clone(),
        );
        for phase in PHASES {
            nodes.get_or_create(&phase_labels(phase)).set(0);
        }
        Self {
            registry,
            nodes,
            reconciles,
            errors,
            durations,
            rollouts,
            phases: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
        }
    }

    /// Counts one reconcile of `controller` that took `took`.
    pub fn reconciled(&self, controller: &'static str, took: Duration, failed: bool) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.errors.get_or_create(&labels).inc();
        }
    }

    /// Records the phase of the TalosNode `name` (None: the node is gone).
    pub fn node_phase(&self, name: &str, phase: Option<NodePhase>) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        match phase {
            Some(phase) => phases.insert(name.to_owned(), phase),
            None => phases.remove(name),
        };
        for phase in PHASES {
            let count = phases.values().filter(|p| **p == phase).count();
            self.nodes
                .get_or_create(&phase_labels(phase))
                .set(count as i64);
        }
    }

    /// Records a rollout's counts.
    pub fn rollout(&self, name: &str, total: i32, updated: i32, in_progress: i32, failed: i32) {
        for (state, value) in [
            ("total", total),
            ("updated", updated),
            ("in_progress", in_progress),
            ("failed", failed),
        ] {
            self.rollouts
                .get_or_create(&RolloutLabels {
                    rollout: name.to_owned(),
                    state,
                })
                .set(value.into());
        }
    }

    /// Marks the operator ready (`/readyz` answers 200): its caches are synced, or it
    /// stands by for the leader lease.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn phase_labels(phase: NodePhase) -> PhaseLabels {
    PhaseLabels {
        phase: format!("{phase:?}"),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness))
        .with_state(metrics);
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving /metrics, /healthz and /readyz");
    }
    axum::serve(listener, app).await
}

async fn metrics_page(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

async fn readiness(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_by_phase_follow_the_latest_phase_of_each_node() {
        let metrics = Metrics::new();
        metrics.node_phase("n1", Some(NodePhase::Ready));
        metrics.node_phase("n2", Some(NodePhase::Ready));
        metrics.node_phase("n2", Some(NodePhase::Upgrading));
        metrics.node_phase("n3", Some(NodePhase::Unreachable));
        metrics.node_phase("n3", None);
        metrics.reconciled("node", Duration::from_millis(3), true);
        let text = metrics.encode();
        assert!(
            text.contains("talos_operator_nodes{phase=\"Ready\"} 1"),
            "{text}"
        );
        assert!(text.contains("talos_operator_nodes{phase=\"Upgrading\"} 1"));
        assert!(text.contains("talos_operator_nodes{phase=\"Unreachable\"} 0"));
        assert!(text.contains("talos_operator_reconcile_errors_total{controller=\"node\"} 1"));
    }
}
