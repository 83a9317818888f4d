//! The access table: the least role each RPC of the machine API needs.
//!
//! **Architecture Invariant:** this table is the only place roles are decided. The
//! auth layer enforces it before any handler runs, and a method missing from it is
//! refused (deny by default); a test checks it against every method of the API.

use pki::Role;

/// The least role of one RPC and whether it streams its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Full gRPC path, `/package.Service/Method`.
    pub path: &'static str,
    /// The least role that may call it.
    pub least_role: Role,
    /// Whether the reply is a server stream (fan-out merges streams differently).
    pub server_streaming: bool,
    /// Whether the request is a client stream (an upload); those go to one node only.
    pub client_streaming: bool,
}

const fn unary(path: &'static str, least_role: Role) -> Access {
    Access {
        path,
        least_role,
        server_streaming: false,
        client_streaming: false,
    }
}

const fn streaming(path: &'static str, least_role: Role) -> Access {
    Access {
        server_streaming: true,
        ..unary(path, least_role)
    }
}

const fn upload(path: &'static str, least_role: Role) -> Access {
    Access {
        client_streaming: true,
        ..unary(path, least_role)
    }
}

/// Every RPC of `machine.v1alpha1.MachineService`.
pub const MACHINE_API: &[Access] = &[
    unary("/machine.v1alpha1.MachineService/Version", Role::Reader),
    unary("/machine.v1alpha1.MachineService/Hostname", Role::Reader),
    unary("/machine.v1alpha1.MachineService/Reboot", Role::Operator),
    unary("/machine.v1alpha1.MachineService/Shutdown", Role::Operator),
    unary("/machine.v1alpha1.MachineService/ServiceList", Role::Reader),
    unary(
        "/machine.v1alpha1.MachineService/ServiceStart",
        Role::Operator,
    ),
    unary(
        "/machine.v1alpha1.MachineService/ServiceStop",
        Role::Operator,
    ),
    unary(
        "/machine.v1alpha1.MachineService/ServiceRestart",
        Role::Operator,
    ),
    streaming("/machine.v1alpha1.MachineService/Logs", Role::Reader),
    streaming("/machine.v1alpha1.MachineService/Dmesg", Role::Reader),
    unary("/machine.v1alpha1.MachineService/Stats", Role::Reader),
    unary("/machine.v1alpha1.MachineService/Memory", Role::Reader),
    unary("/machine.v1alpha1.MachineService/Containers", Role::Reader),
    unary("/machine.v1alpha1.MachineService/Restart", Role::Operator),
    unary("/machine.v1alpha1.MachineService/ImageList", Role::Reader),
    upload(
        "/machine.v1alpha1.MachineService/ImageImport",
        Role::Operator,
    ),
    unary(
        "/machine.v1alpha1.MachineService/ImageRemove",
        Role::Operator,
    ),
    unary("/machine.v1alpha1.MachineService/Processes", Role::Reader),
    unary("/machine.v1alpha1.MachineService/Mounts", Role::Reader),
    unary(
        "/machine.v1alpha1.MachineService/ApplyConfiguration",
        Role::Operator,
    ),
    unary(
        "/machine.v1alpha1.MachineService/PatchConfiguration",
        Role::Operator,
    ),
    // Readers get the configuration with secrets redacted (see the handler).
    unary(
        "/machine.v1alpha1.MachineService/GetConfiguration",
        Role::Reader,
    ),
    unary(
        "/machine.v1alpha1.MachineService/GenerateClientConfiguration",
        Role::Admin,
    ),
    unary(
        "/machine.v1alpha1.MachineService/KernelSecurity",
        Role::Reader,
    ),
    // An upload and a progress stream: one node at a time.
    Access {
        client_streaming: true,
        ..streaming("/machine.v1alpha1.MachineService/Upgrade", Role::Operator)
    },
    unary("/machine.v1alpha1.MachineService/Rollback", Role::Operator),
    streaming("/machine.v1alpha1.MachineService/Events", Role::Reader),
];

/// The entry of an RPC path, if it is one of ours.
pub fn lookup(path: &str) -> Option<&'static Access> {
    MACHINE_API.iter().find(|access| access.path == path)
}

/// The method name of a path, for messages (`/pkg.Svc/Reboot` -> `Reboot`).
pub fn method_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn every_method_of_the_machine_api_has_exactly_one_matching_entry() {
        let set = prost_types::FileDescriptorSet::decode(api::FILE_DESCRIPTOR_SET).unwrap();
        let mut declared = Vec::new();
        for file in &set.file {
            for service in file.service.iter().filter(|s| s.name() == "MachineService") {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    declared.push((path, method.server_streaming(), method.client_streaming()));
                }
            }
        }
        assert_eq!(
            declared.len(),
            MACHINE_API.len(),
            "table and API differ in size"
        );
        for (path, server_streaming, client_streaming) in declared {
            let entry = lookup(&path).unwrap_or_else(|| panic!("{path} has no access entry"));
            assert_eq!(entry.server_streaming, server_streaming, "{path}");
            assert_eq!(entry.client_streaming, client_streaming, "{path}");
        }
    }

    #[test]
    fn unknown_paths_have_no_entry() {
        assert!(lookup("/machine.v1alpha1.MachineService/Nope").is_none());
        assert!(lookup("/grpc.reflection.v1.ServerReflection/Info").is_none());
    }
}
