//! The machine API, `machine.v1alpha1`: generated messages, clients and servers.
//!
//! The `.proto` file under `proto/` is the contract; everything here is generated from
//! it at build time. Two conventions of that file matter to code that merges replies
//! from many nodes: every unary reply is `repeated Item messages = 1`, and every item
//! and stream message begins with `NodeMetadata metadata = 1` (see [`wire`]).
#![deny(missing_docs)]

/// Generated types and services of `machine.v1alpha1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod machine {
    tonic::include_proto!("machine.v1alpha1");
}

pub mod wire;

/// The encoded `FileDescriptorSet` of the machine API, for checks that must cover
/// every method (and, later, for gRPC reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/machine_descriptor.bin"));
pub mod transport;

/// The metadata key naming the nodes a call is for (comma-separated addresses); the
/// node that receives such a call forwards it to each and merges the replies.
pub const NODES_METADATA: &str = "nodes";

/// The metadata key in which a forwarding control-plane node passes the original
/// caller's role; only honoured from a peer whose certificate carries os:impersonator.
pub const FORWARDED_ROLE_METADATA: &str = "x-forwarded-role";

/// The default port of the machine API.
pub const DEFAULT_API_PORT: u16 = 50000;

/// The trust service (worker certificate requests) listens on the API port plus this.
pub const TRUST_PORT_OFFSET: u16 = 1;
