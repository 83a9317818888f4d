//! The formats of the OS image that `image-builder` writes and the node agent reads
//! for A/B upgrades.
//!
//! # Layout
//! - [`entry`]: the boot entries of the two slots: their file names (which carry the
//!   generation and systemd-boot's boot-counting suffix), their contents, and the
//!   order in which a boot loader tries them.
//!
//! **Architecture Invariant:** a boot entry's file name alone decides whether and
//! when its slot boots; the agent and systemd-boot read the same names the same way,
//! so the process platform's loader and a real machine choose the same slot.
#![deny(missing_docs)]

pub mod entry;
