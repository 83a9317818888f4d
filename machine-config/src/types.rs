//! The schema of the machine configuration, as serde types.
//!
//! A node's configuration file is a YAML stream of two documents: a [`MachineConfig`]
//! (what the node is and runs) and a [`MachineSecrets`] (the cluster CA and join token).
//! Every struct denies unknown fields, so a typo is an error rather than a silently
//! ignored setting. Keys are camelCase in YAML.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The only configuration version this crate understands.
pub const CONFIG_VERSION: &str = "v1alpha1";

/// The `kind` of the secrets document.
pub const SECRETS_KIND: &str = "MachineSecrets";

/// What replaces the CA key and the join token wherever they must not be shown
/// (redacted configs, `Debug` output).
pub const REDACTED: &str = "<redacted>";

/// The first document: what the node is and what it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MachineConfig {
    /// Always [`CONFIG_VERSION`].
    pub version: String,
    /// Settings of this node.
    pub machine: Machine,
    /// Settings shared by every node of the cluster.
    pub cluster: Cluster,
}

/// Settings of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Machine {
    /// Control-plane nodes hold the CA key and mint certificates; workers do not.
    #[serde(rename = "type")]
    pub machine_type: MachineType,
    /// The node's hostname (lowercase RFC 1123); also the name every API reply carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Extra names and addresses for the node's API server certificate.
    // `rename_all` would spell this `certSans`; the documented key is `certSANs`.
    #[serde(default, rename = "certSANs", skip_serializing_if = "Vec::is_empty")]
    pub cert_sans: Vec<String>,
    /// Interfaces, addresses, routes and resolvers.
    #[serde(default, skip_serializing_if = "Network::is_empty")]
    pub network: Network,
    /// Kernel parameters (`net.ipv4.ip_forward: "1"`), applied over the hardened defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Files the agent writes at boot or when the config changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    /// Services the supervisor runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSpec>,
    /// Where the OS is installed (metal platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<Install>,
    /// Which upgrade bundles the node accepts and how a new installation proves itself.
    #[serde(default, skip_serializing_if = "Upgrade::is_default")]
    pub upgrade: Upgrade,
}

/// Upgrades: the signers a node trusts and the health a new installation must reach on
/// its trial boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Upgrade {
    /// ed25519 public keys (standard base64 of the 32 bytes, as `image-builder keygen`
    /// prints them) whose signature on a bundle's manifest the node accepts. Empty: the
    /// node refuses every upgrade.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<String>,
    /// How long a new installation's trial boot has for every service to run (and pass
    /// its health checks) for [`Upgrade::STABLE_FOR`] in a row before the node gives it
    /// up and boots the previous one.
    #[serde(default = "Upgrade::default_health_timeout")]
    pub health_timeout: HumanDuration,
    /// PEM certificates of the authorities that may sign the HTTPS servers bundles are
    /// downloaded from, trusted in addition to the root image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
}

impl Upgrade {
    /// How long every service must stay running and healthy, without a restart, for a
    /// trial boot to be kept: a service that starts and then crashes is not healthy.
    pub const STABLE_FOR: Duration = Duration::from_secs(5);

    fn default_health_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }

    /// True when nothing is set (used to keep serialised configs short).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for Upgrade {
    fn default() -> Self {
        Self {
            trusted_keys: Vec::new(),
            health_timeout: Self::default_health_timeout(),
            ca_certificates: None,
        }
    }
}

/// The role of a node in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineType {
    /// Holds the CA key, signs worker certificates, mints client certificates.
    Controlplane,
    /// Runs workloads; its server certificate comes from a control-plane node.
    Worker,
}

/// Network settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Network {
    /// Interfaces to configure; an empty list means DHCP on the first interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// DNS resolvers written to resolv.conf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<IpAddr>,
}

impl Network {
    /// True when nothing is configured (used to keep serialised configs short).
    pub fn is_empty(&self) -> bool {
        self.interfaces.is_empty() && self.nameservers.is_empty()
    }
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Interface {
    /// Kernel name of the interface (`eth0`).
    pub name: String,
    /// Static addresses in CIDR notation (`10.5.0.2/24`).
    #[serde(
        default,
        deserialize_with = "cidr::many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub addresses: Vec<IpNet>,
    /// Static routes through this interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Ask a DHCP server for an address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dhcp: bool,
    /// Link MTU; the kernel default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    /// Destination in CIDR notation (`0.0.0.0/0` for the default route).
    #[serde(deserialize_with = "cidr::one")]
    pub network: IpNet,
    /// Next hop; absent for an on-link route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Route metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

/// A file the agent writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileSpec {
    /// Absolute path.
    pub path: String,
    /// File content.
    pub content: String,
    /// Unix permission bits (octal in YAML: `0o644` or `420`).
    #[serde(default = "FileSpec::default_permissions")]
    pub permissions: u32,
    /// Replace the file or append to it.
    #[serde(default)]
    pub op: FileOp,
}

impl FileSpec {
    fn default_permissions() -> u32 {
        0o644
    }
}

/// How a [`FileSpec`] is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOp {
    /// Write the whole file (atomically).
    #[default]
    Create,
    /// Append the content to an existing file.
    Append,
}

/// A service the supervisor runs: a process on the node, or, with `image`, a container
/// in containerd's `system` namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Unique name, a lowercase DNS label: `[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 63
    /// characters. A container service's container has this id.
    pub name: String,
    /// Program and arguments; the program is an absolute path or looked up in PATH.
    /// Required for a process; for a container it replaces the image's entrypoint and
    /// command when given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// An OCI image reference (`registry/name:tag`) to run the service from, as a
    /// container; the image must be in containerd's `system` namespace (shipped in the
    /// node image or imported over the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Host paths bind-mounted into the container (container services only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
    /// Capabilities the container keeps, e.g. `CAP_NET_BIND_SERVICE` (container services
    /// only); a container has none unless listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Environment variables, on top of a minimal PATH.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory; the service's state directory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Services that must be running (and healthy, if they have a health check) first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// What to do when the process exits.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// How to tell that the service works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Time between SIGTERM and SIGKILL when stopping.
    #[serde(default = "ServiceSpec::default_stop_timeout")]
    pub stop_timeout: HumanDuration,
}

impl ServiceSpec {
    /// A process service running `command` with every other setting at its default
    /// (what a config file that names only these two fields gets).
    pub fn process(name: impl Into<String>, command: Vec<String>) -> Self {
        ServiceSpec {
            name: name.into(),
            command,
            image: None,
            mounts: Vec::new(),
            capabilities: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            depends_on: Vec::new(),
            restart: RestartPolicy::default(),
            health_check: None,
            stop_timeout: Self::default_stop_timeout(),
        }
    }

    fn default_stop_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
}

/// A bind mount of a host path into a container service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MountSpec {
    /// The host path (absolute).
    pub source: String,
    /// Where it appears in the container (absolute, not `/`).
    pub destination: String,
    /// Mount it read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// When the supervisor restarts an exited service (with exponential backoff).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart whatever the exit status.
    #[default]
    Always,
    /// Restart only after a non-zero exit or a signal.
    OnFailure,
    /// Never restart.
    Never,
}

/// A health check: exactly one of `exec` and `tcp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    /// A command that exits 0 when the service is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    /// A `host:port` that accepts TCP connections when the service is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// Time between checks.
    #[serde(default = "HealthCheck::default_interval")]
    pub interval: HumanDuration,
    /// Time one check may take.
    #[serde(default = "HealthCheck::default_timeout")]
    pub timeout: HumanDuration,
}

impl HealthCheck {
    fn default_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(5))
    }
    fn default_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(2))
    }
}

/// Install target on the metal platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Install {
    /// Block device to install to (`/dev/vda`).
    pub disk: String,
    /// Installer image reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Wipe the disk before installing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wipe: bool,
}

/// Settings shared by every node of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cluster {
    /// Cluster name, a lowercase DNS label: `[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 63
    /// characters.
    pub name: String,
    /// The control plane's machine API, `https://HOST:PORT`: where workers ask for
    /// their server certificate.
    pub endpoint: String,
}

/// The second document: the cluster CA and the join token.
///
/// Control-plane nodes carry the CA key; workers carry only the CA certificate.
/// `Debug` redacts the token so that secrets never reach a log.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MachineSecrets {
    /// Always [`CONFIG_VERSION`].
    pub version: String,
    /// Always [`SECRETS_KIND`].
    pub kind: String,
    /// The cluster CA.
    pub ca: CaSecret,
    /// Join token that authenticates a worker's certificate request.
    pub token: String,
}

/// The cluster CA, PEM-encoded. `Debug` redacts the key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaSecret {
    /// CA certificate (PEM).
    pub crt: String,
    /// CA private key (PEM); present on control-plane nodes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl fmt::Debug for MachineSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineSecrets")
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("ca", &self.ca)
            .field("token", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for CaSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaSecret")
            .field("crt", &self.crt)
            .field("key", &self.key.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// A duration written the human way in YAML (`5s`, `1m30s`, `250ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {text:?} ({e}): expected e.g. 30s, 5m, 250ms"
                ))
            })
    }
}

/// Reading of CIDR fields with an error that shows the expected form: ipnet's own
/// message ("invalid IP address syntax") does not say that a prefix length is needed.
mod cidr {
    use super::*;

    /// One CIDR, parsed from its text.
    struct Cidr(IpNet);

    impl<'de> Deserialize<'de> for Cidr {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            text.parse().map(Cidr).map_err(|_| {
                de::Error::custom(format!(
                    "invalid CIDR {text:?}: expected ADDRESS/PREFIX-LENGTH, e.g. 10.5.0.2/24 or fd00::2/64"
                ))
            })
        }
    }

    /// For an [`IpNet`] field.
    pub(super) fn one<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        Cidr::deserialize(d).map(|Cidr(net)| net)
    }

    /// For a `Vec<IpNet>` field; errors still name the element's index.
    pub(super) fn many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        Vec::<Cidr>::deserialize(d).map(|cidrs| cidrs.into_iter().map(|Cidr(net)| net).collect())
    }
}
