//! The machine API server: TLS listener, auth layer, fan-out layer and handlers.
//!
//! The layers, outermost first: the [listener](listener) (TLS 1.3, client
//! certificate verified, identity parsed once per connection), [auth] (the caller's
//! role against the [access] table), [fanout] (forwarding calls that name other
//! nodes), then the [machine] handlers.

pub mod access;
pub mod auth;
mod containers;
pub mod fanout;
pub mod listener;
pub mod machine;
pub mod maintenance;
pub mod trust;
mod upgrades;

use std::future::Future;
use std::sync::Arc;

use api::machine::machine_service_server::MachineServiceServer;
use api::machine::trust_service_server::TrustServiceServer;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tonic::transport::Server;

/// Serves the machine API on `listener` until `shutdown` completes.
pub async fn serve_machine_api(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    api: machine::MachineApi,
    forwarder: Option<fanout::Forwarder>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .layer(auth::AuthLayer::new(auth::Policy::Roles))
        .layer(fanout::FanoutLayer::new(forwarder))
        .add_service(MachineServiceServer::new(api))
        .serve_with_incoming_shutdown(listener::incoming(listener, tls), shutdown)
        .await
}

/// Serves the maintenance-mode API (Version and ApplyConfiguration, no client
/// certificates) until `shutdown` completes.
pub async fn serve_maintenance(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    api: maintenance::MaintenanceApi,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .layer(auth::AuthLayer::new(auth::Policy::Maintenance))
        .add_service(MachineServiceServer::new(api))
        .serve_with_incoming_shutdown(listener::incoming(listener, tls), shutdown)
        .await
}

/// Serves the trust service (worker certificate requests) until `shutdown` completes.
pub async fn serve_trust(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    trust: trust::TrustApi,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .add_service(TrustServiceServer::new(trust))
        .serve_with_incoming_shutdown(listener::incoming(listener, tls), shutdown)
        .await
}
