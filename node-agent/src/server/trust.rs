//! The trust service of control-plane nodes: a worker without a certificate sends a
//! certificate request with the cluster's join token and receives a server-only
//! certificate (no role), so a worker's config is never enough to act as a client.

use std::sync::Arc;
use std::time::Duration;

use api::machine::trust_service_server::TrustService;
use api::machine::{SignCertificateRequest, SignCertificateResponse};
use tonic::{Request, Response, Status};

/// Lifetime of a worker's server certificate; workers ask again at boot when theirs
/// is near its end.
pub const NODE_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Signs worker certificate requests that carry the join token.
pub struct TrustApi {
    authority: Arc<pki::CertificateAuthority>,
    token: String,
}

impl TrustApi {
    /// A trust service signing with `authority` for holders of `token`.
    pub fn new(authority: Arc<pki::CertificateAuthority>, token: String) -> Self {
        Self { authority, token }
    }
}

/// Compares in time independent of where the inputs first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[tonic::async_trait]
impl TrustService for TrustApi {
    async fn sign_certificate(
        &self,
        request: Request<SignCertificateRequest>,
    ) -> Result<Response<SignCertificateResponse>, Status> {
        let remote = request.remote_addr();
        let request = request.into_inner();
        if !constant_time_eq(request.token.as_bytes(), self.token.as_bytes()) {
            tracing::warn!(
                ?remote,
                "certificate request with a wrong join token refused"
            );
            return Err(Status::permission_denied("wrong join token"));
        }
        let csr = String::from_utf8(request.csr)
            .map_err(|_| Status::invalid_argument("certificate request is not PEM text"))?;
        let crt = self
            .authority
            .sign_server_csr(&csr, NODE_CERT_TTL)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(?remote, "worker certificate signed");
        Ok(Response::new(SignCertificateResponse {
            ca: self.authority.cert_pem().as_bytes().to_vec(),
            crt: crt.into_bytes(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_comparison_matches_equality() {
        assert!(super::constant_time_eq(b"token", b"token"));
        assert!(!super::constant_time_eq(b"token", b"tokem"));
        assert!(!super::constant_time_eq(b"token", b"token2"));
    }
}
