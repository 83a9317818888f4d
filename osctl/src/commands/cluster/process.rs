//! The process provisioner: one node-agent process per node on this machine, each
//! listening on its own loopback address (`--platform=process`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{NodeSpec, Started, find_in_path};
use crate::cli::ClusterCreate;

/// Starts node agents from one binary.
pub(super) struct Launcher {
    binary: PathBuf,
    port: u16,
    inject_config: bool,
    containerd: bool,
}

impl Launcher {
    pub(super) fn new(options: &ClusterCreate) -> anyhow::Result<Self> {
        Ok(Self {
            binary: agent_binary(options.agent_binary.as_deref())?,
            port: options.port,
            inject_config: !options.skip_injecting_config,
            containerd: options.containerd,
        })
    }

    pub(super) fn start(&self, node: &NodeSpec, config: &Path) -> anyhow::Result<Started> {
        use std::os::unix::process::CommandExt;
        let log_path = node.state_dir.join("agent.log");
        let log = std::fs::File::create(&log_path)?;
        let mut agent = std::process::Command::new(&self.binary);
        agent
            .arg("--platform=process")
            .arg("--state-dir")
            .arg(&node.state_dir);
        if self.inject_config {
            agent.arg("--config").arg(config);
        }
        if self.containerd {
            agent.arg("--containerd");
        }
        let child = agent
            .arg("--listen")
            .arg(format!("{}:{}", node.address, self.port))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: the node outlives this command and ^C.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        Ok(Started {
            pid: child.id(),
            log: log_path,
            cluster_address: None,
        })
    }
}

/// The node-agent binary: the flag, else next to osctl, else in PATH.
fn agent_binary(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("node-agent")))
        .filter(|sibling| sibling.is_file())
        .or_else(|| find_in_path("node-agent"))
        .context("node-agent binary not found next to osctl or in PATH; pass --agent-binary")
}
