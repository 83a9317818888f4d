//! Harness of the end-to-end suites: real `node-agent` and `osctl` binaries on
//! loopback addresses, each test in its own temporary HOME and its own /24 of
//! 127.0.0.0/8 so suites run in parallel without meeting.
//!
//! The binaries are the workspace's own build (`cargo build --workspace` first; the
//! test command in the README does it), found next to the test executable's
//! directory, or in `E2E_BIN_DIR`.
#![deny(missing_docs)]

pub mod apiserver;
pub mod https;
pub mod operator;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::machine::machine_service_client::MachineServiceClient;
use api::transport::NodeAddress;
use machine_config::{ConfigBundle, GenerateInput, MachineSecrets, MachineType};
use tonic::transport::Channel;

/// Directory holding the workspace's binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("E2E_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test> -> target/<profile>
    let exe = std::env::current_exe().expect("the test knows its own path");
    let dir = exe.parent().expect("test binaries live in a directory");
    if dir.ends_with("deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of a workspace binary, checked to exist.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` before the tests (the README's test command does)",
        path.display()
    );
    path
}

/// The node image the VM suites boot: `E2E_NODE_IMAGE`, else `target/node-image`
/// (what `scripts/build-image` writes; the README's test command runs it first).
pub fn node_image() -> PathBuf {
    let dir = std::env::var_os("E2E_NODE_IMAGE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/node-image"),
        PathBuf::from,
    );
    assert!(
        dir.join("manifest.json").is_file(),
        "no node image at {}: run scripts/build-image first (the README's test command does)",
        dir.display()
    );
    dir
}

/// An image the upgrade suites install, next to [`node_image`]: `-v2` (the same agent
/// with another version) or `-v3` (an init that exits at start), built by
/// `scripts/build-test-images` (the README's test command runs it).
pub fn upgrade_image(suffix: &str) -> PathBuf {
    let base = node_image();
    let dir = PathBuf::from(format!("{}-{suffix}", base.display()));
    assert!(
        dir.join("manifest.json").is_file(),
        "no upgrade image at {}: run scripts/build-test-images first (the README's test command does)",
        dir.display()
    );
    dir
}

/// Runs `image-builder` and returns its stdout; panics with its stderr on failure.
pub fn image_builder(args: &[&str]) -> String {
    let run = Command::new(binary("image-builder"))
        .args(args)
        .output()
        .expect("image-builder runs");
    assert!(
        run.status.success(),
        "image-builder {args:?}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8(run.stdout).expect("utf-8 output")
}

/// `dir/busybox.tar`: an OCI archive of Debian's busybox-static named `name`, with
/// `/bin/<applet>` links and `sh` as its command (`image-builder oci`).
pub fn busybox_archive(dir: &Path, name: &str, applets: &[&str]) -> PathBuf {
    let out = dir.join("busybox.tar");
    let links: Vec<String> = applets
        .iter()
        .map(|applet| format!("/bin/{applet}=busybox"))
        .collect();
    let mut args = vec!["oci", "--name", name, "--package", "busybox-static"];
    for link in &links {
        args.extend(["--link", link]);
    }
    args.extend(["--out", out.to_str().expect("utf-8 path"), "--", "sh"]);
    image_builder(&args);
    out
}

/// A new bundle signing key `dir/name` (`image-builder keygen`); returns its path and
/// the public key a node's `machine.upgrade.trustedKeys` lists.
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let public = image_builder(&["keygen", "--out", key.to_str().expect("utf-8 path")]);
    (key, public.trim().to_owned())
}

/// A process bundle of `agent` as OS `version`, signed with `key`, in `dir`.
pub fn agent_bundle(dir: &Path, key: &Path, agent: &Path, version: &str) -> PathBuf {
    let signer = key.file_name().unwrap_or_default().to_string_lossy();
    let out = dir.join(format!("{version}-{signer}.bundle"));
    image_builder(&[
        "bundle",
        "--key",
        key.to_str().expect("utf-8 path"),
        "--agent",
        agent.to_str().expect("utf-8 path"),
        "--version",
        version,
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    out
}

/// A metal bundle of the image in `image` (an `image-builder build` output), signed
/// with `key`, in `dir`.
pub fn image_bundle(dir: &Path, key: &Path, image: &Path) -> PathBuf {
    let signer = key.file_name().unwrap_or_default().to_string_lossy();
    let name = image.file_name().unwrap_or_default().to_string_lossy();
    let out = dir.join(format!("{name}-{signer}.bundle"));
    image_builder(&[
        "bundle",
        "--key",
        key.to_str().expect("utf-8 path"),
        "--image",
        image.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    out
}

/// The median and range of benchmark samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The middle sample (the upper one of an even count).
    pub median: f64,
    /// The least sample.
    pub min: f64,
    /// The greatest sample.
    pub max: f64,
}

impl Spread {
    /// The spread of `samples` (zeros when there are none).
    pub fn of(samples: &[f64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            median: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
            min: sorted.first().copied().unwrap_or(0.0),
            max: sorted.last().copied().unwrap_or(0.0),
        }
    }
}

/// Waits until `check` returns `Some`, or panics naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The result of an osctl run, with its output as text.
#[derive(Debug)]
pub struct Run {
    /// Exit status code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics with the output unless the run succeeded.
    pub fn success(self) -> Self {
        assert_eq!(
            self.code, 0,
            "osctl failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Parses stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// A temporary HOME for osctl (its client config and local clusters).
pub struct Home {
    dir: tempfile::TempDir,
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}

impl Home {
    /// A fresh, empty HOME.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs osctl with this HOME and `args`.
    pub fn osctl(&self, args: &[&str]) -> Run {
        Run::from(
            Command::new(binary("osctl"))
                .args(args)
                .env("HOME", self.path())
                .env_remove("OSCTL_CONFIG")
                .output()
                .expect("osctl runs"),
        )
    }
}

/// A local cluster made by `osctl cluster create --provisioner process`, destroyed
/// when dropped.
pub struct LocalCluster {
    /// The HOME holding its client config and state.
    pub home: Home,
    /// Cluster name.
    pub name: String,
    /// Node addresses, control planes first.
    pub addresses: Vec<String>,
    destroyed: bool,
}

impl LocalCluster {
    /// Creates `nodes` nodes (one control plane) on `127.0.<net>.2` and up, with
    /// `extra` arguments to `osctl cluster create`.
    pub fn create(name: &str, net: u8, nodes: usize, extra: &[&str]) -> Self {
        let home = Home::new();
        let count = nodes.to_string();
        let cidr = format!("127.0.{net}.0/24");
        let mut args = vec![
            "cluster", "create", "--name", name, "--nodes", &count, "--cidr", &cidr,
        ];
        args.extend_from_slice(extra);
        home.osctl(&args).success();
        Self {
            home,
            name: name.to_owned(),
            addresses: (0..nodes)
                .map(|i| format!("127.0.{net}.{}", i + 2))
                .collect(),
            destroyed: false,
        }
    }

    /// Creates `nodes` VMs of [`node_image`] (`--provisioner qemu`), with `extra`
    /// arguments.
    pub fn create_vms(name: &str, net: u8, nodes: usize, extra: &[&str]) -> Self {
        let image = node_image();
        let mut args = vec![
            "--provisioner",
            "qemu",
            "--image",
            image.to_str().expect("utf-8 path"),
            "--wait-timeout",
            "3m",
        ];
        args.extend_from_slice(extra);
        Self::create(name, net, nodes, &args)
    }

    /// Destroys the cluster now (instead of on drop) and returns what osctl said.
    pub fn destroy(&mut self) -> Run {
        self.destroyed = true;
        self.home
            .osctl(&["cluster", "destroy", "--name", &self.name])
    }

    /// Runs osctl in the cluster's context.
    pub fn osctl(&self, args: &[&str]) -> Run {
        self.home.osctl(args)
    }

    /// Runs osctl for one node, with JSON output, and returns its rows.
    pub fn rows(&self, node: &str, args: &[&str]) -> Vec<serde_json::Value> {
        let mut full = vec!["-e", node, "-n", node, "-o", "json"];
        full.extend_from_slice(args);
        match self.osctl(&full).success().json() {
            serde_json::Value::Array(rows) => rows,
            other => panic!("expected rows, got {other}"),
        }
    }

    /// The boot id of a node.
    pub fn boot_id(&self, node: &str) -> String {
        self.rows(node, &["version"])[0]["boot_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Checks that `osctl cluster show` lists every node as running.
    pub fn assert_all_running(&self) {
        let shown = self
            .osctl(&["cluster", "show", "--name", &self.name])
            .success();
        assert_eq!(
            shown.stdout.matches("running").count(),
            self.addresses.len(),
            "{}",
            shown.stdout
        );
    }

    /// Destroys the cluster and checks that it is gone: every node's process (agent
    /// or VM), its state directory and its context.
    pub fn destroy_and_assert_gone(&mut self) {
        let pids: Vec<u32> = (0..self.addresses.len())
            .map(|i| self.agent_pid(i))
            .collect();
        let state = self.home.path().join(".osctl/clusters").join(&self.name);
        self.destroy().success();
        for pid in pids {
            assert!(!process_alive(pid), "node process {pid} survived destroy");
        }
        assert!(!state.exists(), "the cluster state was left behind");
        let config = std::fs::read_to_string(self.home.path().join(".osctl/config")).unwrap();
        assert!(
            !config.contains(&self.name),
            "the context was left behind:\n{config}"
        );
    }

    /// The cluster record (`cluster.yaml`).
    pub fn record(&self) -> serde_yaml_ng::Value {
        let path = self
            .home
            .path()
            .join(".osctl/clusters")
            .join(&self.name)
            .join("cluster.yaml");
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("cluster record"))
            .expect("yaml")
    }

    /// The agent's (process) or the VM's (qemu) pid of a node, from the record.
    pub fn agent_pid(&self, index: usize) -> u32 {
        self.record()["nodes"][index]["pid"].as_u64().expect("pid") as u32
    }

    /// The socket of a process node's containerd (`--containerd`), from the config the
    /// agent generated for it.
    pub fn containerd_socket(&self, index: usize) -> String {
        let config = self
            .home
            .path()
            .join(".osctl/clusters")
            .join(&self.name)
            .join(format!("{}-controlplane-{}", self.name, index + 1))
            .join("containerd/config.toml");
        let text = std::fs::read_to_string(&config)
            .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
        text.split("[grpc]")
            .nth(1)
            .and_then(|grpc| grpc.split('"').nth(1))
            .expect("the grpc address in containerd's config")
            .to_owned()
    }

    /// A node's log: the agent's output, or the VM's console.
    pub fn node_log(&self, index: usize) -> String {
        let record = self.record();
        let path = record["nodes"][index]["log"].as_str().expect("log path");
        // A VM's console also carries the firmware's screen codes, not all UTF-8.
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if !self.destroyed {
            let run = self.destroy();
            if run.code != 0 {
                eprintln!("cluster destroy failed: {}", run.stderr);
            }
        }
    }
}

/// Every process now in /proc (the agent's own parser of `/proc/PID/stat`).
fn processes() -> Vec<node_agent::system::processes::Stat> {
    node_agent::system::processes::read_all(Path::new("/proc")).expect("/proc is readable")
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    processes().iter().any(|p| p.pid == pid && p.state != 'Z')
}

/// When process `pid` started: the host's boot time plus its start in clock ticks.
pub fn process_start(pid: u32) -> Result<std::time::SystemTime, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let stat = node_agent::system::processes::parse_stat(&text).ok_or("unreadable stat")?;
    let btime: u64 = std::fs::read_to_string("/proc/stat")
        .map_err(|e| e.to_string())?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        .ok_or("no btime in /proc/stat")?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok(std::time::UNIX_EPOCH
        + Duration::from_secs(btime)
        + Duration::from_secs_f64(stat.start_ticks as f64 / hz))
}

/// The parent of process `pid`, from /proc.
pub fn parent_pid(pid: u32) -> Result<u32, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let stat = node_agent::system::processes::parse_stat(&text).ok_or("unreadable stat")?;
    Ok(stat.ppid)
}

/// Zombie children of `parent`, from /proc.
pub fn zombie_children(parent: u32) -> Vec<u32> {
    processes()
        .iter()
        .filter(|p| p.ppid == parent && p.state == 'Z')
        .map(|p| p.pid)
        .collect()
}

/// One node agent started directly (not through osctl), with the cluster's secrets
/// at hand so tests can mint any certificate they need.
pub struct Node {
    /// The agent process.
    pub child: Child,
    /// Its state directory.
    pub state_dir: tempfile::TempDir,
    /// Its API address.
    pub address: SocketAddr,
    /// The cluster CA.
    pub authority: pki::CertificateAuthority,
    /// The configuration it booted with.
    pub config: ConfigBundle,
}

impl Node {
    /// Starts a control-plane agent on `address` with `patches` applied to a fresh
    /// configuration, and waits for its API.
    pub fn start_control_plane(address: SocketAddr, patches: &[&str]) -> Self {
        let secrets: MachineSecrets = machine_config::generate_secrets("e2e").expect("secrets");
        let input = GenerateInput {
            cluster_name: "e2e".into(),
            endpoint: format!("https://{address}"),
            hostname: Some("node-1".into()),
            cert_sans: vec![address.ip().to_string()],
        };
        let patches: Vec<_> = patches
            .iter()
            .map(|p| machine_config::Patch::parse(p).expect("test patch"))
            .collect();
        let config = machine_config::generate_config(&input, &secrets, MachineType::Controlplane)
            .apply_patches(&patches)
            .expect("test config");
        let state_dir = tempfile::tempdir().expect("state dir");
        let config_path = state_dir.path().join("initial.yaml");
        std::fs::write(&config_path, config.to_yaml()).expect("write config");
        let child = spawn_agent(state_dir.path(), address, Some(&config_path));
        let authority = pki::CertificateAuthority::from_pem(
            &secrets.ca.crt,
            secrets.ca.key.as_deref().expect("key"),
        )
        .expect("CA");
        let node = Self {
            child,
            state_dir,
            address,
            authority,
            config,
        };
        node.wait_ready();
        node
    }

    /// Waits until the API answers an admin Version call.
    pub fn wait_ready(&self) {
        let runtime = runtime();
        wait_for("the agent's API", Duration::from_secs(30), || {
            runtime.block_on(async {
                let mut client = self.client(pki::Role::Admin).await.ok()?;
                client.version(api::machine::VersionRequest {}).await.ok()
            })
        });
    }

    /// A client config (PEM pair) for `role`, valid for an hour.
    pub fn credentials(&self, role: pki::Role) -> pki::CertifiedKey {
        self.authority
            .issue_client(role.as_str(), role, Duration::from_secs(3600))
            .expect("client certificate")
    }

    /// A TLS 1.3 client configuration presenting `credentials` (or none).
    pub fn tls(&self, credentials: Option<&pki::CertifiedKey>) -> Arc<rustls::ClientConfig> {
        pki::tls::client_config(
            self.authority.cert_pem(),
            credentials.map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())),
        )
        .expect("client TLS")
    }

    /// Connects with `role`.
    pub async fn client(&self, role: pki::Role) -> Result<MachineServiceClient<Channel>, String> {
        self.client_with(self.tls(Some(&self.credentials(role))))
            .await
    }

    /// Connects with a given TLS configuration.
    pub async fn client_with(
        &self,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<MachineServiceClient<Channel>, String> {
        let address = NodeAddress {
            host: self.address.ip().to_string(),
            port: self.address.port(),
        };
        api::transport::connect(&address, tls, Duration::from_secs(5))
            .await
            .map(MachineServiceClient::new)
            .map_err(|e| api::transport::explain(&e))
    }

    /// The agent's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.path().join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // SIGTERM lets the agent stop its services; then make sure it is gone.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a process-platform node agent on `address` with its state in `state_dir`,
/// logging to `state_dir/agent.log`; without `config` it boots into maintenance mode.
pub fn spawn_agent(state_dir: &Path, address: SocketAddr, config: Option<&Path>) -> Child {
    let log = std::fs::File::create(state_dir.join("agent.log")).expect("agent log");
    let mut command = Command::new(binary("node-agent"));
    command
        .args(["--platform", "process", "--listen", &address.to_string()])
        .arg("--state-dir")
        .arg(state_dir);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("agent log"))
        .stderr(log)
        .spawn()
        .expect("node-agent starts")
}

/// A small runtime for the synchronous parts of tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
