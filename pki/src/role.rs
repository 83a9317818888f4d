//! Roles carried in client certificates.
//!
//! A role is an Organization (O) entry of the client certificate's subject. The three
//! user roles are ordered: `os:reader` < `os:operator` < `os:admin`; an RPC names the
//! least role it needs and a holder of any greater role may call it.
//! `os:impersonator` is not a user role: a control-plane agent carries it when it
//! forwards a call to another node, and the target then judges the *original* caller's
//! roles, sent alongside (see the agent's fan-out).

use std::fmt;
use std::str::FromStr;

/// A role a client certificate can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read-only access; secrets are redacted.
    Reader,
    /// Lifecycle and configuration, but no secrets read.
    Operator,
    /// Everything, including secrets and minting client certificates.
    Admin,
    /// A control-plane agent forwarding another caller's request; grants nothing itself.
    Impersonator,
}

impl Role {
    /// The roles a user can be given, least first.
    pub const USER_ROLES: [Role; 3] = [Role::Reader, Role::Operator, Role::Admin];

    /// The Organization string of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "os:reader",
            Role::Operator => "os:operator",
            Role::Admin => "os:admin",
            Role::Impersonator => "os:impersonator",
        }
    }

    /// Whether a holder of `self` may call an RPC that needs at least `required`.
    /// The impersonator role satisfies nothing by itself.
    pub fn satisfies(self, required: Role) -> bool {
        self != Role::Impersonator && required != Role::Impersonator && self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected one of os:admin, os:operator, os:reader")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "os:reader" => Ok(Role::Reader),
            "os:operator" => Ok(Role::Operator),
            "os:admin" => Ok(Role::Admin),
            "os:impersonator" => Ok(Role::Impersonator),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greater_roles_satisfy_lesser_ones() {
        assert!(Role::Admin.satisfies(Role::Reader));
        assert!(Role::Operator.satisfies(Role::Operator));
        assert!(!Role::Reader.satisfies(Role::Operator));
        assert!(!Role::Operator.satisfies(Role::Admin));
    }

    #[test]
    fn impersonator_grants_nothing() {
        assert!(!Role::Impersonator.satisfies(Role::Reader));
        assert!(!Role::Admin.satisfies(Role::Impersonator));
    }

    #[test]
    fn roles_round_trip_through_strings() {
        for role in Role::USER_ROLES {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("os:root".parse::<Role>().is_err());
    }
}
