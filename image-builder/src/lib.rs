//! The image builder's library. For now it holds the kernel hardening check: KSPP's
//! recommendations for x86_64 with our stance on each (`kernel/kspp.toml`), a parser for
//! kernel configs, the check and its score, and the agreement between the data and our
//! kconfig fragment (`kernel/config-fragment`).
//!
//! # Layout
//! The policy itself (recommendations, kernel config model, targets) is the
//! `kernel-policy` crate, re-exported here as [`config`], [`data`], [`target`] and
//! [`error`].
//! - [`check`]: one result per recommendation, and the [`Score`].
//! - [`report`]: the table and JSON renderings.
//! - [`fragment`]: whether the fragment states every requirement.
//! - [`build`]: `image-builder build`, the node image (kernel, initramfs, root image,
//!   disk) from Debian packages and the agent; see docs/image.md.
//! - [`oci`]: `image-builder oci`, OCI image layouts from Debian packages and files,
//!   which the root image ships for containerd.
//! - [`bundle`]: `image-builder keygen` and `image-builder bundle`, the signing key and
//!   signed upgrade bundles (format: `os_image::bundle`) from a [`build`] output or an
//!   agent binary.
//!
//! Apart from [`build`], which downloads packages and runs tools, [`oci`], which
//! reads packages and files and writes a layout, and [`bundle`], which reads an image
//! and writes a key or bundle, the library does no I/O; the
//! `image-builder` binary reads the files.
#![deny(missing_docs)]

pub mod build;
pub mod bundle;
pub mod check;
pub mod fragment;
pub mod oci;
pub mod report;

pub use kernel_policy::{config, data, error, target};

pub use check::{Report, Score, Status, check};
pub use config::{KernelConfig, Value};
pub use data::{Recommendations, Stance};
pub use error::Error;
pub use report::{Format, render};
pub use target::{Compiler, KernelVersion, Target};
