//! osctl: the command-line client of the machine API, and the local cluster
//! provisioner.
//!
//! # Layout
//! - [`cli`]: the command line (clap definitions only).
//! - [`client_config`]: the client configuration file and its contexts.
//! - [`connection`]: connecting to endpoints, fan-out metadata, and turning
//!   transport failures into one clear line.
//! - [`output`]: `-o table|json|yaml`.
//! - [`commands`]: one module per group of commands.
//!
//! osctl never reaches into the agent: it speaks the machine API, and the local
//! provisioner only spawns the agent's binary.
#![deny(missing_docs)]

pub mod cli;
pub mod client_config;
pub mod commands;
pub mod connection;
pub mod output;
