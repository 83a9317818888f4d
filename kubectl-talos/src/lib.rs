//! `kubectl talos`: the kubectl plugin for TalosNodes and TalosUpgrades.
//!
//! It exists so that the usual node chores (see a node, reboot it, patch its
//! configuration, roll out a release and follow it) are one command each, with the
//! waiting and the checks done for the user, rather than hand-written patches and
//! `kubectl get -w`. It only talks to the Kubernetes API server; the operator does the
//! work.
//!
//! # Layout
//!
//! - `cli`: the command line (clap).
//! - `kube_client`: a client from the kubeconfig (`--kubeconfig`, `--context`,
//!   `KUBECONFIG`).
//! - `commands`: one module per command; `commands::run` dispatches.
//! - `apply`: the server-side apply bodies every write sends, and their field managers.
//! - `selector`: the kubectl label-selector syntax, parsed into a `LabelSelector`.
//! - `patch_file`: the `apply-config -f` file, a merge patch or RFC 6902 operations.
//! - `output`: `-o table|json|yaml`, tables and ages.
//! - `wait`: deadlines for the commands that wait for the operator.
//!
//! **Architecture Invariant:** every write is a server-side apply of only the fields
//! being set, each concern under its own field manager (see `apply`), so one command
//! never undoes what another set.

#![deny(missing_docs)]

pub mod apply;
pub mod cli;
pub mod commands;
mod error;
pub mod kube_client;
pub mod output;
pub mod patch_file;
pub mod selector;
pub mod wait;

pub use error::Error;

/// The result of the plugin's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
