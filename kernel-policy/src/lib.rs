//! The kernel hardening policy: KSPP's recommendations for x86_64 with our stance on
//! each (`kernel/kspp.toml`, built in), and the model of a kernel config it is judged
//! against. image-builder checks `.config` files with it; the node agent checks the
//! running kernel's command line and sysctls with it.
//!
//! # Layout
//! - [`target`]: kernel versions and compilers, which decide what applies.
//! - [`config`]: `.config` files and fragments, values and conditions.
//! - [`data`]: the recommendations and their validation; [`data::EMBEDDED`] is the
//!   repository's data file, built in.
//! - [`error`]: the error type.
//!
//! The crate does no I/O.
#![deny(missing_docs)]

pub mod config;
pub mod data;
pub mod error;
pub mod target;

pub use config::{KernelConfig, Value};
pub use data::{Recommendations, Stance};
pub use error::Error;
pub use target::{Compiler, KernelVersion, Target};
