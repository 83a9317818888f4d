//! The Kubernetes custom resources of node-os: `TalosNode` and `TalosUpgrade`
//! (`talos.dev/v1alpha1`, both cluster-scoped), and their CustomResourceDefinitions.
//!
//! # Layout
//!
//! - `node`: [`TalosNode`], one per machine: how to reach its agent, the configuration
//!   patches and OS release it should have, and what the operator last saw of it.
//! - `upgrade`: [`TalosUpgrade`], a rollout of one OS release over the TalosNodes a
//!   label selector picks, in batches, inside a maintenance window.
//! - `release`: [`Release`], the upgrade bundle both of them name (version, https URL,
//!   sha256), in the form the agent's `Upgrade` RPC takes.
//! - `generate`: the CRDs as YAML, one document per CRD, as committed under
//!   `charts/talos-operator/crds/` (the `crds` binary writes them).
//!
//! The API server enforces the rules that span fields with CEL
//! (`x-kubernetes-validations`) and the rest with the OpenAPI schema; docs/crds.md lists
//! them. **Architecture Invariant:** these types know nothing about the machine API or
//! the operator's logic; the agent alone judges a machine configuration
//! (`machine-config`), so a config patch is checked here for its shape only.

#![deny(missing_docs)]

mod error;
mod generate;
mod node;
mod release;
mod upgrade;

pub use error::Error;
pub use generate::{CHART_CRDS_DIR, CrdFile, crd_files, write_crd_files};
pub use node::{
    ApplyMode, CONFIG_PREVIEW_ANNOTATION, ConfigPatch, ConfigPreview, JsonPatchOp,
    JsonPatchOperation, NodeOperation, NodePhase, OperationKind, ServiceHealth, TalosNode,
    TalosNodeSpec, TalosNodeStatus,
};
pub use release::Release;
pub use upgrade::{
    FailurePolicy, HealthChecks, MaintenanceWindow, NodeUpgradeState, NodeUpgradeStatus,
    TalosUpgrade, TalosUpgradeSpec, TalosUpgradeStatus, UpgradePhase,
};

/// The API group of both resources.
pub const GROUP: &str = "talos.dev";
