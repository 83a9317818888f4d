//! What a peer certificate says about its holder.

use std::time::{Duration, SystemTime};

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{Error, Role};

/// The holder of a verified client certificate: its name and roles.
///
/// Built once per connection from the certificate rustls has already verified, so
/// reading it needs no further checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Subject common name, for logs and audit.
    pub common_name: String,
    /// The known roles found in the subject's Organization entries, in order.
    pub roles: Vec<Role>,
    /// Organization entries that are not roles we know; they grant nothing.
    pub unknown_roles: Vec<String>,
    /// End of validity.
    pub not_after: SystemTime,
}

impl PeerIdentity {
    /// Reads a DER-encoded certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| Error::Parse(e.to_string()))?;
        let subject = cert.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut roles = Vec::new();
        let mut unknown_roles = Vec::new();
        for org in subject.iter_organization() {
            let text = org
                .as_str()
                .map_err(|e| Error::Parse(format!("organization entry: {e}")))?;
            match text.parse::<Role>() {
                Ok(role) => roles.push(role),
                Err(_) => unknown_roles.push(text.to_owned()),
            }
        }
        let timestamp = cert.validity().not_after.timestamp();
        let not_after =
            SystemTime::UNIX_EPOCH + Duration::from_secs(timestamp.max(0).unsigned_abs());
        Ok(Self {
            common_name,
            roles,
            unknown_roles,
            not_after,
        })
    }

    /// The greatest user role held, if any. The impersonator role is not a user role.
    pub fn highest_role(&self) -> Option<Role> {
        self.roles
            .iter()
            .copied()
            .filter(|r| *r != Role::Impersonator)
            .max()
    }

    /// Whether this peer is a control-plane agent forwarding someone else's call.
    pub fn is_impersonator(&self) -> bool {
        self.roles.contains(&Role::Impersonator)
    }
}
