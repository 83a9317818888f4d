//! `osctl gen config`: a cluster's secrets, node configurations and client
//! configuration, generated in one place so the local provisioner makes the same.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use machine_config::{ConfigBundle, GenerateInput, MachineSecrets, MachineType, Patch};

use crate::client_config::{ClientConfig, Context, write_private};

/// Lifetime of the admin client certificate written by `gen config`.
const ADMIN_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// What to generate.
pub struct Request {
    /// Cluster name.
    pub name: String,
    /// The control plane's API endpoint as the user wrote it.
    pub endpoint: String,
    /// Where to write.
    pub output_dir: PathBuf,
    /// Patches for both configurations.
    pub patches: Vec<String>,
    /// Patches for the control-plane configuration.
    pub control_plane_patches: Vec<String>,
    /// Patches for the worker configuration.
    pub worker_patches: Vec<String>,
    /// Secrets to reuse.
    pub with_secrets: Option<PathBuf>,
    /// Overwrite existing files.
    pub force: bool,
}

/// A generated cluster: secrets, both node configurations and an admin context.
pub struct Generated {
    /// The secrets (with the CA key).
    pub secrets: MachineSecrets,
    /// The control-plane configuration.
    pub control_plane: ConfigBundle,
    /// The worker configuration (no CA key).
    pub worker: ConfigBundle,
    /// An os:admin client context for the endpoint.
    pub admin: Context,
}

/// Turns `host`, `host:port` or `https://host:port` into `(https://host:port, host:port)`.
pub fn normalize_endpoint(endpoint: &str) -> anyhow::Result<(String, api::transport::NodeAddress)> {
    let authority = endpoint
        .strip_prefix("https://")
        .unwrap_or(endpoint)
        .trim_end_matches('/');
    if authority.contains('/') || authority.contains("://") {
        bail!("endpoint {endpoint:?}: expected HOST, HOST:PORT or https://HOST:PORT");
    }
    let address = api::transport::NodeAddress::parse(authority, api::DEFAULT_API_PORT)
        .map_err(|e| anyhow::anyhow!("endpoint {endpoint:?}: {e}"))?;
    Ok((format!("https://{address}"), address))
}

fn load_patches(args: &[String]) -> anyhow::Result<Vec<Patch>> {
    args.iter()
        .map(|arg| Patch::load(arg).with_context(|| format!("config patch {arg:?}")))
        .collect()
}

/// Generates a cluster with `cert_sans` on both configurations; `secrets` reused
/// when given.
pub fn generate(
    name: &str,
    endpoint: &str,
    secrets: Option<MachineSecrets>,
    control_plane_patches: &[String],
    worker_patches: &[String],
) -> anyhow::Result<Generated> {
    let (endpoint_url, address) = normalize_endpoint(endpoint)?;
    let secrets = match secrets {
        Some(secrets) => secrets,
        None => machine_config::generate_secrets(name)?,
    };
    let key = secrets.ca.key.as_deref().context(
        "the secrets hold no CA key: they must come from `osctl gen config` (secrets.yaml)",
    )?;
    let input = GenerateInput {
        cluster_name: name.to_owned(),
        endpoint: endpoint_url,
        hostname: None,
        cert_sans: vec![address.host.clone()],
    };
    let control_plane =
        machine_config::generate_config(&input, &secrets, MachineType::Controlplane)
            .apply_patches(&load_patches(control_plane_patches)?)
            .context("patching the control-plane configuration")?;
    let worker = machine_config::generate_config(&input, &secrets, MachineType::Worker)
        .apply_patches(&load_patches(worker_patches)?)
        .context("patching the worker configuration")?;
    let authority = pki::CertificateAuthority::from_pem(&secrets.ca.crt, key)?;
    let admin = authority.issue_client("admin", pki::Role::Admin, ADMIN_CERT_TTL)?;
    let admin = Context {
        endpoints: vec![address.to_string()],
        nodes: vec![],
        ca: secrets.ca.crt.clone(),
        crt: admin.cert_pem,
        key: admin.key_pem,
    };
    Ok(Generated {
        secrets,
        control_plane,
        worker,
        admin,
    })
}

/// `osctl gen config`: writes secrets.yaml, controlplane.yaml, worker.yaml and
/// osctlconfig into the output directory, each with mode 0600.
pub fn write(request: &Request) -> anyhow::Result<()> {
    let secrets = match &request.with_secrets {
        Some(path) => Some(read_secrets(path)?),
        None => None,
    };
    let both = |specific: &[String]| [request.patches.as_slice(), specific].concat();
    let generated = generate(
        &request.name,
        &request.endpoint,
        secrets,
        &both(&request.control_plane_patches),
        &both(&request.worker_patches),
    )?;
    let client = ClientConfig {
        context: Some(request.name.clone()),
        contexts: [(request.name.clone(), generated.admin)].into(),
    };
    let files = [
        (
            "secrets.yaml",
            serde_yaml_ng::to_string(&generated.secrets)?,
        ),
        ("controlplane.yaml", generated.control_plane.to_yaml()),
        ("worker.yaml", generated.worker.to_yaml()),
        ("osctlconfig", serde_yaml_ng::to_string(&client)?),
    ];
    if !request.force {
        for (name, _) in &files {
            let path = request.output_dir.join(name);
            if path.exists() {
                bail!("{} exists: pass --force to overwrite", path.display());
            }
        }
    }
    for (name, content) in &files {
        let path = request.output_dir.join(name);
        write_private(&path, content.as_bytes())?;
        eprintln!("created {}", path.display());
    }
    Ok(())
}

fn read_secrets(path: &Path) -> anyhow::Result<MachineSecrets> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not a secrets file", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_normalise_to_https_with_the_default_port() {
        assert_eq!(
            normalize_endpoint("10.0.0.1").unwrap().0,
            "https://10.0.0.1:50000"
        );
        assert_eq!(
            normalize_endpoint("https://cp.example:6000/").unwrap().0,
            "https://cp.example:6000"
        );
        assert!(normalize_endpoint("https://cp/path").is_err());
    }

    #[test]
    fn generated_configs_are_valid_and_only_the_control_plane_has_the_key() {
        let generated = generate("demo", "127.0.0.2", None, &[], &[]).unwrap();
        assert!(generated.control_plane.secrets.ca.key.is_some());
        assert!(generated.worker.secrets.ca.key.is_none());
        ConfigBundle::parse(&generated.control_plane.to_yaml()).unwrap();
        ConfigBundle::parse(&generated.worker.to_yaml()).unwrap();
    }
}
