//! The machine configuration: its schema, strict parsing, validation, patches, diffs,
//! reboot classification and generation.
//!
//! A node's config file is a YAML stream of two documents: the [`MachineConfig`] (what
//! the node is and runs), then `---` and the [`MachineSecrets`] (cluster CA and join
//! token). [`ConfigBundle`] holds both.
//!
//! # Layout
//! - [`types`]: the serde schema of both documents.
//! - [`bundle`]: [`ConfigBundle`]: strict parsing (errors name the field path),
//!   rendering, redaction, and applying patches.
//! - [`validate`](mod@validate): the rules beyond the types; every broken rule is
//!   reported at once.
//! - `order`: the services' start order ([`MachineConfig::service_order`]).
//! - [`patch`]: [`Patch`], the `--config-patch` format (JSON merge patch or RFC 6902).
//! - [`diff`](mod@diff): redacted unified diffs for dry runs.
//! - [`reboot`]: which changes need a reboot and which apply live.
//! - [`generate`]: secrets and node configs for a new cluster.
//! - [`error`]: the error types.
//!
//! This crate does no I/O beyond reading `@file` patches: the node agent and osctl
//! read, write and transport configs.
#![deny(missing_docs)]

pub mod bundle;
pub mod diff;
pub mod error;
pub mod generate;
mod order;
pub mod patch;
pub mod reboot;
pub mod types;
pub mod validate;

#[cfg(test)]
mod test_support;

pub use bundle::{ConfigBundle, DEFAULT_HOSTNAME};
pub use diff::{REDACTED_CHANGED, diff};
pub use error::{ConfigError, DependencyCycle, FieldError, ValidationErrors};
pub use generate::{GenerateInput, generate_config, generate_secrets};
pub use patch::Patch;
pub use reboot::reboot_required;
pub use types::*;
pub use validate::{MIN_TOKEN_LEN, validate};
