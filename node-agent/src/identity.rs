//! The node's own TLS identity: its server certificate, and on control-plane nodes
//! the forwarding (os:impersonator) client certificate.
//!
//! A control-plane node issues its server certificate with the CA key from its
//! secrets at every boot. A worker has no CA key: it makes a key and a certificate
//! request, sends it with the join token to the control plane's trust service, and
//! keeps the result in `<state-dir>/pki` for later boots.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use api::machine::SignCertificateRequest;
use api::machine::trust_service_client::TrustServiceClient;
use api::transport::NodeAddress;
use machine_config::{ConfigBundle, MachineType};
use pki::{CertificateAuthority, CertifiedKey, Role};

use crate::config_store::write_atomic;
use crate::server::trust::NODE_CERT_TTL;

/// First and longest wait between a worker's attempts to reach the trust service
/// (the control plane often starts at the same moment).
const RETRY_INITIAL: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Errors establishing the node's identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The CA in the secrets could not be used.
    #[error("cluster CA: {0}")]
    Authority(#[from] pki::Error),
    /// The cluster endpoint could not be parsed.
    #[error("cluster.endpoint {0:?}: expected https://HOST:PORT")]
    Endpoint(String),
    /// Storing the worker's certificate failed.
    #[error("{0}")]
    Store(#[from] crate::config_store::StoreError),
}

/// What the node presents and trusts.
pub struct NodeIdentity {
    /// The server certificate and key of the API.
    pub server: CertifiedKey,
    /// The cluster CA certificate (PEM).
    pub ca_pem: String,
    /// The CA, on control-plane nodes.
    pub authority: Option<Arc<CertificateAuthority>>,
}

/// The names the server certificate must carry: the config's certSANs, the hostname,
/// the listen address when it is a specific one, and the static addresses.
pub fn server_names(bundle: &ConfigBundle, listen: IpAddr) -> Vec<String> {
    let machine = &bundle.config.machine;
    let mut names = machine.cert_sans.clone();
    names.push(bundle.hostname());
    if !listen.is_unspecified() {
        names.push(listen.to_string());
    }
    names.extend(
        machine
            .network
            .interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(|a| a.addr().to_string())),
    );
    names.sort();
    names.dedup();
    names
}

/// Establishes the node's identity (see the module documentation). A worker retries
/// until the control plane answers, logging each failure.
pub async fn establish(
    bundle: &ConfigBundle,
    listen: IpAddr,
    state_dir: &Path,
) -> Result<NodeIdentity, IdentityError> {
    let secrets = &bundle.secrets;
    let names = server_names(bundle, listen);
    let hostname = bundle.hostname();
    match (bundle.config.machine.machine_type, &secrets.ca.key) {
        (MachineType::Controlplane, Some(key)) => {
            let authority = Arc::new(CertificateAuthority::from_pem(&secrets.ca.crt, key)?);
            let server = authority.issue_server(&hostname, &names, NODE_CERT_TTL)?;
            Ok(NodeIdentity {
                server,
                ca_pem: secrets.ca.crt.clone(),
                authority: Some(authority),
            })
        }
        // Validation guarantees control planes carry the key and workers do not.
        _ => {
            let server = worker_certificate(bundle, &hostname, &names, state_dir).await?;
            Ok(NodeIdentity {
                server,
                ca_pem: secrets.ca.crt.clone(),
                authority: None,
            })
        }
    }
}

/// The os:impersonator client certificate a control-plane node forwards calls with.
pub fn forwarding_certificate(
    authority: &CertificateAuthority,
    hostname: &str,
) -> Result<CertifiedKey, pki::Error> {
    authority.issue_client(hostname, Role::Impersonator, NODE_CERT_TTL)
}

fn stored_paths(state_dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let dir = state_dir.join("pki");
    (
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("server.names"),
    )
}

async fn worker_certificate(
    bundle: &ConfigBundle,
    hostname: &str,
    names: &[String],
    state_dir: &Path,
) -> Result<CertifiedKey, IdentityError> {
    let (crt_path, key_path, names_path) = stored_paths(state_dir);
    let wanted_names = names.join("\n");
    if let (Ok(cert_pem), Ok(key_pem), Ok(stored_names)) = (
        std::fs::read_to_string(&crt_path),
        std::fs::read_to_string(&key_path),
        std::fs::read_to_string(&names_path),
    ) {
        // Reuse only a certificate for the same names that is not near its end.
        let still_valid = pki::tls::certificates(&cert_pem, "stored server certificate")
            .ok()
            .and_then(|certs| pki::PeerIdentity::from_der(&certs[0]).ok())
            .is_some_and(|id| {
                id.not_after > std::time::SystemTime::now() + Duration::from_secs(7 * 24 * 3600)
            });
        if still_valid && stored_names == wanted_names {
            return Ok(CertifiedKey { cert_pem, key_pem });
        }
    }
    let endpoint = trust_endpoint(&bundle.config.cluster.endpoint)?;
    let (csr, key_pem) = pki::generate_csr(hostname, names)?;
    let tls = pki::tls::client_config(&bundle.secrets.ca.crt, None)?;
    let mut wait = RETRY_INITIAL;
    let cert_pem = loop {
        match request_certificate(&endpoint, tls.clone(), &csr, &bundle.secrets.token).await {
            Ok(cert) => break cert,
            Err(e) => {
                tracing::warn!(%endpoint, error = %e, "waiting for the control plane to sign this node's certificate");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    };
    write_atomic(&key_path, key_pem.as_bytes(), 0o600)?;
    write_atomic(&crt_path, cert_pem.as_bytes(), 0o600)?;
    write_atomic(&names_path, wanted_names.as_bytes(), 0o600)?;
    tracing::info!("server certificate received from the control plane");
    Ok(CertifiedKey { cert_pem, key_pem })
}

/// The trust service address of a cluster endpoint `https://HOST:PORT`.
fn trust_endpoint(endpoint: &str) -> Result<NodeAddress, IdentityError> {
    let invalid = || IdentityError::Endpoint(endpoint.to_owned());
    let authority = endpoint.strip_prefix("https://").ok_or_else(invalid)?;
    let api = NodeAddress::parse(authority.trim_end_matches('/'), api::DEFAULT_API_PORT)
        .map_err(|_| invalid())?;
    Ok(NodeAddress {
        port: api.port + api::TRUST_PORT_OFFSET,
        ..api
    })
}

async fn request_certificate(
    endpoint: &NodeAddress,
    tls: Arc<rustls::ClientConfig>,
    csr: &str,
    token: &str,
) -> Result<String, String> {
    let channel = api::transport::connect(endpoint, tls, Duration::from_secs(3))
        .await
        .map_err(|e| api::transport::explain(&e))?;
    let reply = TrustServiceClient::new(channel)
        .sign_certificate(SignCertificateRequest {
            csr: csr.as_bytes().to_vec(),
            token: token.to_owned(),
        })
        .await
        .map_err(|status| status.message().to_owned())?;
    String::from_utf8(reply.into_inner().crt)
        .map_err(|_| "the control plane sent a certificate that is not text".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trust_port_follows_the_api_port() {
        let addr = trust_endpoint("https://127.0.0.2:50000").unwrap();
        assert_eq!((addr.host.as_str(), addr.port), ("127.0.0.2", 50001));
        assert!(trust_endpoint("http://127.0.0.2:50000").is_err());
    }
}
