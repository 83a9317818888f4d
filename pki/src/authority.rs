//! The cluster certificate authority and the certificates it issues.
//!
//! Keys are ECDSA P-256. Server certificates carry only the serverAuth usage and no
//! role; client certificates carry only clientAuth and their roles in the Organization
//! field. Certificates are backdated by five minutes to absorb clock skew between
//! nodes.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

use crate::{Error, Role};

/// How far back `not_before` is set, for clock skew.
const BACKDATE: Duration = Duration::from_secs(300);

/// Validity of a cluster CA.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A certificate and its private key, both PEM-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// The cluster CA: the root every node and client certificate chains to.
pub struct CertificateAuthority {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Makes a new self-signed CA named `common_name`, valid for ten years.
    pub fn generate(common_name: &str) -> Result<Self, Error> {
        let key = KeyPair::generate().map_err(Error::certificate("generating the CA key"))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, SystemTime::now(), CA_LIFETIME)?;
        let cert = params
            .self_signed(&key)
            .map_err(Error::certificate("self-signing the CA"))?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// Loads a CA from its PEM certificate and key (the machine config's secrets).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| Error::Pem {
            what: "CA key",
            reason: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| Error::Pem {
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate (PEM), the trust anchor every party is given.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key (PEM); only control-plane configs hold it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a node's server certificate for `sans` (DNS names or IP addresses).
    pub fn issue_server(
        &self,
        common_name: &str,
        sans: &[String],
        ttl: Duration,
    ) -> Result<CertifiedKey, Error> {
        let key = KeyPair::generate().map_err(Error::certificate("generating a server key"))?;
        let params = server_params(common_name, sans, ttl)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(Error::certificate("signing a server certificate"))?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a worker's certificate request as a server certificate.
    ///
    /// Only the request's public key, common name and SANs are taken; usages, roles
    /// and lifetime are ours, so a request cannot ask for a client or CA certificate.
    pub fn sign_server_csr(&self, csr_pem: &str, ttl: Duration) -> Result<String, Error> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| Error::Pem {
            what: "certificate signing request",
            reason: e.to_string(),
        })?;
        let common_name = csr
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .map(dn_value_text)
            .unwrap_or_default();
        let sans: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .filter_map(|san| match san {
                SanType::DnsName(name) => Some(name.to_string()),
                SanType::IpAddress(ip) => Some(ip.to_string()),
                _ => None,
            })
            .collect();
        let params = server_params(&common_name, &sans, ttl)?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(Error::certificate("signing a certificate request"))?;
        Ok(cert.pem())
    }

    /// Mints a client certificate carrying `role`, valid for `ttl`.
    ///
    /// One role is enough: roles are ordered, and the greatest held is what counts.
    pub fn issue_client(
        &self,
        common_name: &str,
        role: Role,
        ttl: Duration,
    ) -> Result<CertifiedKey, Error> {
        self.issue_client_valid_from(common_name, role, SystemTime::now(), ttl)
    }

    /// Like [`issue_client`](Self::issue_client) with an explicit start of validity;
    /// tests use it to make certificates that have already expired.
    pub fn issue_client_valid_from(
        &self,
        common_name: &str,
        role: Role,
        not_before: SystemTime,
        ttl: Duration,
    ) -> Result<CertifiedKey, Error> {
        let key = KeyPair::generate().map_err(Error::certificate("generating a client key"))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, role.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        set_validity(&mut params, not_before, ttl)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(Error::certificate("signing a client certificate"))?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Makes a key and a certificate request for a node's server certificate; the worker
/// sends the request to a control-plane node and keeps the key.
pub fn generate_csr(common_name: &str, sans: &[String]) -> Result<(String, String), Error> {
    let key = KeyPair::generate().map_err(Error::certificate("generating a node key"))?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_, _>>()?;
    let csr = params
        .serialize_request(&key)
        .map_err(Error::certificate("making a certificate request"))?;
    let csr_pem = csr
        .pem()
        .map_err(Error::certificate("encoding a certificate request"))?;
    Ok((csr_pem, key.serialize_pem()))
}

/// A random join token (32 hex characters, 128 bits) for worker certificate requests.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        // The system RNG only fails when the OS has no entropy source at all, in which
        // case no key could be made either.
        .expect("the operating system's random number generator failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn server_params(
    common_name: &str,
    sans: &[String],
    ttl: Duration,
) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params, SystemTime::now(), ttl)?;
    Ok(params)
}

fn san(name: &str) -> Result<SanType, Error> {
    match name.parse::<IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => Ok(SanType::DnsName(name.try_into().map_err(
            Error::certificate("a certificate subject alternative name"),
        )?)),
    }
}

fn dn_value_text(value: &rcgen::DnValue) -> String {
    match value {
        rcgen::DnValue::Utf8String(s) => s.clone(),
        rcgen::DnValue::PrintableString(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

fn set_validity(
    params: &mut CertificateParams,
    not_before: SystemTime,
    ttl: Duration,
) -> Result<(), Error> {
    let start = not_before
        .checked_sub(BACKDATE)
        .ok_or(Error::Lifetime(not_before))?;
    let end = not_before
        .checked_add(ttl)
        .ok_or(Error::Lifetime(not_before))?;
    params.not_before = OffsetDateTime::from(start);
    params.not_after = OffsetDateTime::from(end);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerIdentity;

    fn der(pem: &str) -> Vec<u8> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("test certificate is valid PEM")
            .to_vec()
    }

    #[test]
    fn client_certificates_carry_their_role() {
        let ca = CertificateAuthority::generate("test").unwrap();
        let client = ca
            .issue_client("alice", Role::Operator, Duration::from_secs(60))
            .unwrap();
        let identity = PeerIdentity::from_der(&der(&client.cert_pem)).unwrap();
        assert_eq!(identity.common_name, "alice");
        assert_eq!(identity.roles, vec![Role::Operator]);
        assert_eq!(identity.highest_role(), Some(Role::Operator));
    }

    #[test]
    fn signed_requests_become_role_less_server_certificates() {
        let ca = CertificateAuthority::generate("test").unwrap();
        let (csr, _key) =
            generate_csr("worker-1", &["127.0.0.3".into(), "worker-1".into()]).unwrap();
        let cert = ca.sign_server_csr(&csr, Duration::from_secs(60)).unwrap();
        let identity = PeerIdentity::from_der(&der(&cert)).unwrap();
        assert_eq!(identity.common_name, "worker-1");
        assert!(identity.roles.is_empty());
    }

    #[test]
    fn a_ca_reloads_from_its_pem() {
        let ca = CertificateAuthority::generate("test").unwrap();
        let again = CertificateAuthority::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        again
            .issue_server("n", &["localhost".into()], Duration::from_secs(60))
            .unwrap();
        assert!(CertificateAuthority::from_pem("garbage", ca.key_pem()).is_err());
    }

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (generate_token(), generate_token());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
