//! rustls configurations of the machine API: TLS 1.3 only, ring as the provider.
//!
//! tonic's own TLS settings cannot restrict the protocol version, so the agent accepts
//! TLS itself with these configurations and hands the streams to tonic; the clients
//! connect through a connector built on [`client_config`].

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// ALPN protocol of gRPC.
const ALPN_H2: &[u8] = b"h2";

/// The one crypto provider of the workspace (ring: a CLI process starts in ~2 ms with
/// it, against ~37 ms with aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side of the machine API: TLS 1.3, and a client certificate signed by
/// the cluster CA is mandatory.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, Error> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider())
            .build()?;
    tls13_server(verifier, cert_pem, key_pem)
}

/// A server that proves its identity but asks no client certificate: the worker
/// certificate endpoint (callers authenticate with the join token) and maintenance
/// mode (a node with no config yet).
pub fn server_config_without_client_auth(
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, Error> {
    tls13_server(WebPkiClientVerifier::no_client_auth(), cert_pem, key_pem)
}

fn tls13_server(
    verifier: Arc<dyn ClientCertVerifier>,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certificates(cert_pem, "server certificate")?,
            private_key(key_pem)?,
        )?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The client side: TLS 1.3, trusting only the cluster CA, presenting `identity`
/// (certificate and key PEM) when given.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Arc<ClientConfig>, Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?);
    let mut config = match identity {
        Some((cert_pem, key_pem)) => builder.with_client_auth_cert(
            certificates(cert_pem, "client certificate")?,
            private_key(key_pem)?,
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The client side of maintenance mode: TLS 1.3, no client certificate, and the
/// server's certificate is NOT verified (a node without configuration has only a
/// self-signed one). Signatures are still checked, so the session is encrypted to the
/// holder of that certificate; who that holder is, is unknown. Use it only to hand a
/// configuration to a node in maintenance mode, on a network you trust.
pub fn insecure_client_config() -> Result<Arc<ClientConfig>, Error> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(UnverifiedServer(provider())))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any server certificate, but checks the handshake signatures made with it.
#[derive(Debug)]
struct UnverifiedServer(Arc<CryptoProvider>);

impl ServerCertVerifier for UnverifiedServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The configuration is TLS 1.3 only; a TLS 1.2 handshake never gets here.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Reads every certificate of a PEM text.
pub fn certificates(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            what,
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| Error::Pem {
        what: "private key",
        reason: e.to_string(),
    })
}

fn roots(ca_pem: &str) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    for cert in certificates(ca_pem, "CA certificate")? {
        store.add(cert)?;
    }
    Ok(store)
}
