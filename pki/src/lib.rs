//! Public-key infrastructure of the machine API.
//!
//! # Layout
//! - [`authority`]: the cluster CA; it issues node (server) certificates, signs worker
//!   certificate requests and mints client certificates that carry roles.
//! - [`role`]: the roles (`os:admin`, `os:operator`, `os:reader`, and the internal
//!   `os:impersonator` used for fan-out) and how they are read from a certificate's
//!   Organization field.
//! - [`identity`]: what a peer certificate says about its holder.
//! - [`tls`]: rustls configurations, TLS 1.3 only, ring as the crypto provider.
//!
//! This crate knows nothing of the agent, the CLI or gRPC; it only makes and reads
//! certificates and TLS configurations.
#![deny(missing_docs)]

pub mod authority;
mod error;
pub mod identity;
pub mod role;
pub mod tls;

pub use authority::{CertificateAuthority, CertifiedKey, generate_csr, generate_token};
pub use error::Error;
pub use identity::PeerIdentity;
pub use role::Role;
