//! The talos-operator: reconciles TalosNodes and TalosUpgrades by talking to each
//! node's agent over mutual TLS with an os:operator certificate.
//!
//! # Layout
//!
//! - `agent`: the machine API client (the RPCs the reconcilers use, nothing else).
//! - `node`: the TalosNode reconciler: observes the agent, applies configuration
//!   patches on the agent, reboots and upgrades, and writes status.
//! - `rollout`: the TalosUpgrade reconciler: picks nodes and sets their
//!   `spec.version` batch by batch (`plan` decides, from status alone; `window` reads
//!   the maintenance window).
//! - `drain`: cordon, drain (Eviction API) and uncordon a Kubernetes Node.
//! - `conditions`, `duration`: helpers for status conditions and Go durations.
//! - `metrics`: Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` server.
//! - `context`: what every reconcile shares (clients, settings, back-off, metrics).
//! - `run`: wires the controllers, leader election and the metrics server together.
//!
//! **Architecture Invariants:**
//! - All of the operator's memory is in the resources' status (a disruptive
//!   operation is recorded in status before its request is sent), so a restarted
//!   operator neither repeats nor forgets a reboot, upgrade or rollout batch.
//! - The operator never reads a node's secrets: configuration changes are sent as
//!   patches the agent applies (`PatchConfiguration`), and of the running configuration
//!   only the hash is read.
//! - Every write is a server-side apply under the field manager [`FIELD_MANAGER`];
//!   status goes through the status subresource.

#![deny(missing_docs)]

pub mod agent;
pub mod conditions;
pub mod context;
pub mod drain;
pub mod duration;
pub mod metrics;
pub mod node;
pub mod rollout;
pub mod run;

pub use context::{Context, Settings};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "talos-operator";

/// Requests the operator makes that the CRD-only test API server cannot serve, so the
/// e2e audit log never shows them (the drain's are in [`drain::REQUESTS`]): Events
/// are created, and patched to count a repeat into a series.
pub const UNSERVED_REQUESTS: &[(&str, &str, &str)] = &[
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
];

/// What a reconcile can fail with; the controller retries with per-object back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The node's agent failed a request.
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
    /// Cordoning, draining or uncordoning the Kubernetes Node failed.
    #[error(transparent)]
    Drain(#[from] drain::DrainError),
    /// A resource's spec holds a value the operator cannot use (the CRD schema lets
    /// through something it should not have).
    #[error("{0}")]
    InvalidSpec(String),
}
