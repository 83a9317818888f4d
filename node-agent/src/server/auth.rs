//! The authorisation layer: one tower layer in front of every RPC.
//!
//! It reads the peer identity that the TLS listener attached to the connection,
//! resolves the caller's role (for a call forwarded by a control-plane node, the
//! original caller's role), checks it against the [access table](super::access) and
//! refuses the call before any handler runs. Handlers read the resulting [`Caller`]
//! from the request extensions; they never check roles themselves.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use pki::{PeerIdentity, Role};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

use super::access;
use super::listener::PeerInfo;

/// Who is calling, as established by the auth layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The role the call runs with.
    pub role: Role,
    /// The client certificate's common name.
    pub name: String,
    /// For a forwarded call, the control-plane node that forwarded it.
    pub forwarded_by: Option<String>,
}

/// Decides who the caller is and whether it may call `path`.
pub fn authorize(
    path: &str,
    identity: Option<&PeerIdentity>,
    forwarded_role: Option<&str>,
) -> Result<Caller, Status> {
    let method = access::method_name(path);
    let access = access::lookup(path)
        .ok_or_else(|| Status::permission_denied(format!("{method}: not an RPC of this API")))?;
    let identity =
        identity.ok_or_else(|| Status::unauthenticated("client certificate required"))?;
    let caller = match (identity.is_impersonator(), forwarded_role) {
        (true, Some(role)) => Caller {
            role: role.parse().map_err(|e| Status::unauthenticated(format!("forwarded call: {e}")))?,
            name: format!("{} (forwarded)", identity.common_name),
            forwarded_by: Some(identity.common_name.clone()),
        },
        (true, None) => {
            return Err(Status::unauthenticated(
                "a forwarding certificate must name the original caller's role",
            ));
        }
        (false, Some(_)) => {
            return Err(Status::permission_denied(
                "only a control-plane node may forward calls",
            ));
        }
        (false, None) => Caller {
            role: identity.highest_role().ok_or_else(|| {
                Status::permission_denied(format!(
                    "client certificate {:?} carries no known role (os:admin, os:operator, os:reader)",
                    identity.common_name
                ))
            })?,
            name: identity.common_name.clone(),
            forwarded_by: None,
        },
    };
    if !caller.role.satisfies(access.least_role) {
        return Err(Status::permission_denied(format!(
            "{method} needs role {} or higher; the caller has {}",
            access.least_role, caller.role
        )));
    }
    Ok(caller)
}

/// The RPCs a node in maintenance mode serves: enough to learn what it is and to
/// give it a configuration.
pub const MAINTENANCE_API: [&str; 2] = [
    "/machine.v1alpha1.MachineService/Version",
    "/machine.v1alpha1.MachineService/ApplyConfiguration",
];

/// Decides a call to a node in maintenance mode: there are no client certificates
/// yet, so only [`MAINTENANCE_API`] is served, to anyone who can reach the node.
pub fn authorize_maintenance(path: &str) -> Result<Caller, Status> {
    if MAINTENANCE_API.contains(&path) {
        return Ok(Caller {
            role: Role::Operator,
            name: "maintenance client".into(),
            forwarded_by: None,
        });
    }
    Err(Status::failed_precondition(format!(
        "{}: the node is in maintenance mode (it has no configuration yet) and serves only \
         Version and ApplyConfiguration; apply one with `osctl --insecure -e NODE apply-config -f FILE`",
        access::method_name(path)
    )))
}

/// Which rules the auth layer applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A configured node: the caller's role against the access table.
    Roles,
    /// A node without configuration: [`authorize_maintenance`].
    Maintenance,
}

/// The tower layer that wraps the API router with [`Auth`].
#[derive(Debug, Clone, Copy)]
pub struct AuthLayer {
    policy: Policy,
}

impl AuthLayer {
    /// A layer deciding calls by `policy`.
    pub fn new(policy: Policy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            policy: self.policy,
        }
    }
}

/// Refuses unauthorised calls; passes the rest on with a [`Caller`] extension.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    policy: Policy,
}

impl<S> Service<http::Request<Body>> for Auth<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let identity: Option<Arc<PeerIdentity>> = request
            .extensions()
            .get::<PeerInfo>()
            .and_then(|peer| peer.identity.clone());
        let forwarded_role = request
            .headers()
            .get(api::FORWARDED_ROLE_METADATA)
            .and_then(|value| value.to_str().ok());
        let path = request.uri().path();
        let decision = match self.policy {
            Policy::Roles => authorize(path, identity.as_deref(), forwarded_role),
            Policy::Maintenance => authorize_maintenance(path),
        };
        match decision {
            Ok(caller) => {
                tracing::debug!(path = request.uri().path(), caller = %caller.name, role = %caller.role, "authorised");
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                tracing::info!(
                    path = request.uri().path(),
                    error = status.message(),
                    "refused"
                );
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    const REBOOT: &str = "/machine.v1alpha1.MachineService/Reboot";
    const VERSION: &str = "/machine.v1alpha1.MachineService/Version";

    fn identity(roles: &[Role]) -> PeerIdentity {
        PeerIdentity {
            common_name: "someone".into(),
            roles: roles.to_vec(),
            unknown_roles: vec![],
            not_after: SystemTime::now(),
        }
    }

    #[test]
    fn a_reader_may_read_but_not_reboot() {
        let reader = identity(&[Role::Reader]);
        assert_eq!(
            authorize(VERSION, Some(&reader), None).unwrap().role,
            Role::Reader
        );
        let denied = authorize(REBOOT, Some(&reader), None).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied.message().contains("needs role os:operator"),
            "{}",
            denied.message()
        );
    }

    #[test]
    fn no_certificate_and_no_role_are_refused() {
        assert_eq!(
            authorize(VERSION, None, None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            authorize(VERSION, Some(&identity(&[])), None)
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn forwarding_never_raises_the_callers_role() {
        let forwarder = identity(&[Role::Impersonator]);
        assert!(authorize(REBOOT, Some(&forwarder), Some("os:reader")).is_err());
        assert_eq!(
            authorize(REBOOT, Some(&forwarder), Some("os:operator"))
                .unwrap()
                .role,
            Role::Operator
        );
        assert!(
            authorize(VERSION, Some(&forwarder), None).is_err(),
            "impersonator alone grants nothing"
        );
        let admin = identity(&[Role::Admin]);
        assert!(
            authorize(VERSION, Some(&admin), Some("os:admin")).is_err(),
            "only forwarders may forward"
        );
    }

    #[test]
    fn maintenance_mode_serves_only_version_and_apply() {
        assert!(authorize_maintenance(VERSION).is_ok());
        assert!(
            authorize_maintenance("/machine.v1alpha1.MachineService/ApplyConfiguration").is_ok()
        );
        let refused = authorize_maintenance(REBOOT).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(
            refused.message().contains("maintenance mode"),
            "{}",
            refused.message()
        );
    }

    #[test]
    fn unknown_methods_are_denied() {
        let admin = identity(&[Role::Admin]);
        assert!(authorize("/machine.v1alpha1.MachineService/Nope", Some(&admin), None).is_err());
    }
}
