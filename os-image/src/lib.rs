//! The formats of the OS image that `image-builder` writes and the node agent reads
//! for A/B upgrades.
//!
//! # Layout
//! - [`entry`]: the boot entries of the two slots: their file names (which carry the
//!   generation and systemd-boot's boot-counting suffix), their contents, and the
//!   order in which a boot loader tries them.
//! - [`bundle`]: signed upgrade bundles: the manifest, the tar file that carries it,
//!   its signature and the parts, the keys, and the verification the agent runs
//!   before it writes anything.
//!
//! **Architecture Invariant:** a boot entry's file name alone decides whether and
//! when its slot boots; the agent and systemd-boot read the same names the same way,
//! so the process platform's loader and a real machine choose the same slot.
#![deny(missing_docs)]

pub mod bundle;
pub mod entry;
