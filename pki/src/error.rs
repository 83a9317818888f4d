use std::time::SystemTime;

/// Everything that can go wrong making or reading certificates and TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rcgen refused to make or sign a certificate.
    #[error("{what}: {source}")]
    Certificate {
        /// What was being made, e.g. "signing a client certificate".
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },
    /// A PEM text held no item of the expected kind, or could not be decoded.
    #[error("{what}: not valid PEM ({reason})")]
    Pem {
        /// What the PEM should have held, e.g. "CA certificate".
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A DER certificate could not be parsed.
    #[error("parsing certificate: {0}")]
    Parse(String),
    /// rustls rejected a configuration (bad key, empty trust store, ...).
    #[error("building TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the CA.
    #[error("building client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A requested validity does not fit the certificate's time fields.
    #[error("certificate lifetime out of range: {0:?}")]
    Lifetime(SystemTime),
}

impl Error {
    pub(crate) fn certificate(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
        move |source| Error::Certificate { what, source }
    }
}
