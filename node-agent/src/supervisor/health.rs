//! Health checks: an exec command that must exit 0, or a TCP port that must accept a
//! connection, each within the check's timeout, every `interval`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use machine_config::{HealthCheck, HumanDuration, ServiceSpec};
use tokio::net::TcpStream;
use tracing::info;

use super::process::{self, ProcessGroup};
use super::reaper;
use super::service::ServiceEntry;
use super::status::Health;

/// Floor for the check interval, so a zero interval cannot turn into a busy loop.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Checks the service's process `pid` forever (the caller aborts this task when the
/// process ends), recording each result in the service status.
pub(super) async fn monitor(
    entry: Arc<ServiceEntry>,
    check: HealthCheck,
    cwd: Option<PathBuf>,
    pid: u32,
) {
    let interval = check.interval.0.max(MIN_INTERVAL);
    loop {
        let health = match probe(&entry.spec, &check, cwd.as_deref()).await {
            Ok(()) => Health::Healthy,
            Err(why) => Health::Unhealthy(why),
        };
        entry.update(|status| {
            // A result that arrives after the process ended is stale.
            if status.pid == Some(pid) && status.health != health {
                info!(service = %status.name, %health, "health changed");
                status.health = health;
            }
        });
        tokio::time::sleep(interval).await;
    }
}

/// Runs one check; `Err` says why the service is unhealthy.
async fn probe(spec: &ServiceSpec, check: &HealthCheck, cwd: Option<&Path>) -> Result<(), String> {
    let timeout = check.timeout.0;
    match (&check.exec, &check.tcp) {
        (Some(argv), _) => probe_exec(spec, argv, cwd, timeout).await,
        (None, Some(address)) => probe_tcp(address, timeout).await,
        (None, None) => Err("the health check has neither exec nor tcp".into()),
    }
}

async fn probe_exec(
    spec: &ServiceSpec,
    argv: &[String],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<(), String> {
    let mut cmd = process::command(spec, argv, cwd)?;
    // `command` rejects an empty argv, so there is a first element.
    let program = &argv[0];
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let spawned =
        reaper::spawn_process(&mut cmd).map_err(|e| format!("running {program:?}: {e}"))?;
    // Killed on drop: on timeout, or if this task is aborted mid-check.
    let group = ProcessGroup::new(spawned.pid);
    let status = tokio::time::timeout(timeout, spawned.exit)
        .await
        .map_err(|_| format!("{program:?} timed out after {}", HumanDuration(timeout)))?;
    group.finish();
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program:?} ended with {status}"))
    }
}

async fn probe_tcp(address: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connecting to {address}: {e}")),
        Err(_) => Err(format!(
            "connecting to {address} timed out after {}",
            HumanDuration(timeout)
        )),
    }
}
