//! Making a new cluster: its secrets, and the config of each node (`osctl gen config`).

use std::collections::BTreeMap;

use crate::bundle::ConfigBundle;
use crate::error::ConfigError;
use crate::types::{
    CONFIG_VERSION, CaSecret, Cluster, Machine, MachineConfig, MachineSecrets, MachineType,
    Network, SECRETS_KIND,
};

/// What the operator chooses when generating node configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateInput {
    /// The cluster name, a DNS label; also the CA's common name.
    pub cluster_name: String,
    /// The control plane's machine API, `https://HOST:PORT`.
    pub endpoint: String,
    /// The node's hostname, when it should not be left to the default.
    pub hostname: Option<String>,
    /// Extra names and addresses for the node's server certificate.
    pub cert_sans: Vec<String>,
}

/// Makes the secrets of a new cluster: a fresh CA (certificate and key) and a join
/// token. These are the control-plane secrets; [`generate_config`] strips the key for
/// workers.
pub fn generate_secrets(cluster_name: &str) -> Result<MachineSecrets, ConfigError> {
    let ca = pki::CertificateAuthority::generate(&format!("{cluster_name} CA"))
        .map_err(ConfigError::Pki)?;
    Ok(MachineSecrets {
        version: CONFIG_VERSION.to_owned(),
        kind: SECRETS_KIND.to_owned(),
        ca: CaSecret {
            crt: ca.cert_pem().to_owned(),
            key: Some(ca.key_pem().to_owned()),
        },
        token: pki::generate_token(),
    })
}

/// The config of one node of type `machine_type`, holding `secrets` (without the CA
/// key for a worker).
///
/// The input is not checked here: run [`validate`](crate::validate()) on the result,
/// or write it and read it back with [`ConfigBundle::parse`].
pub fn generate_config(
    input: &GenerateInput,
    secrets: &MachineSecrets,
    machine_type: MachineType,
) -> ConfigBundle {
    let mut secrets = secrets.clone();
    if machine_type == MachineType::Worker {
        secrets.ca.key = None;
    }
    ConfigBundle {
        config: MachineConfig {
            version: CONFIG_VERSION.to_owned(),
            machine: Machine {
                machine_type,
                hostname: input.hostname.clone(),
                cert_sans: input.cert_sans.clone(),
                network: Network::default(),
                sysctls: BTreeMap::new(),
                files: Vec::new(),
                services: Vec::new(),
                install: None,
                upgrade: Default::default(),
            },
            cluster: Cluster {
                name: input.cluster_name.clone(),
                endpoint: input.endpoint.clone(),
            },
        },
        secrets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_configs_parse_back_for_both_types() {
        let input = GenerateInput {
            cluster_name: "demo".to_owned(),
            endpoint: "https://10.5.0.2:50000".to_owned(),
            hostname: Some("node-1".to_owned()),
            cert_sans: vec!["10.5.0.2".to_owned()],
        };
        let secrets = generate_secrets(&input.cluster_name).unwrap();
        assert!(secrets.ca.key.is_some());
        assert!(secrets.token.len() >= crate::validate::MIN_TOKEN_LEN);

        for machine_type in [MachineType::Controlplane, MachineType::Worker] {
            let bundle = generate_config(&input, &secrets, machine_type);
            let parsed = ConfigBundle::parse(&bundle.to_yaml()).unwrap();
            assert_eq!(parsed, bundle);
            assert_eq!(parsed.config.machine.machine_type, machine_type);
            assert_eq!(parsed.secrets.ca.crt, secrets.ca.crt);
            assert_eq!(parsed.secrets.token, secrets.token);
            assert_eq!(
                parsed.secrets.ca.key.is_some(),
                machine_type == MachineType::Controlplane
            );
        }
    }
}
