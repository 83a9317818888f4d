//! Commands that call the machine API of the selected nodes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use api::machine::*;
use futures::StreamExt;
use serde::Serialize;

use crate::cli::{self, ApplyArgs, Mode};
use api::transport::explain_status;

use crate::connection::Connection;
use crate::output::{self, NodeRow, Row};

use super::Session;

/// Reply items that say which node they came from.
pub(super) trait FromNode {
    fn metadata(&self) -> Option<&NodeMetadata>;
}

macro_rules! from_node {
    ($($item:ty),* $(,)?) => {
        $(impl FromNode for $item {
            fn metadata(&self) -> Option<&NodeMetadata> {
                self.metadata.as_ref()
            }
        })*
    };
}

from_node!(
    VersionInfo,
    RollbackResult,
    Event,
    RebootInfo,
    ShutdownInfo,
    ServiceList,
    ServiceAction,
    Stats,
    MemInfo,
    ProcessList,
    MountList,
    KernelSecurityReport,
    ApplyConfiguration,
    Configuration,
    ClientConfiguration,
    ContainerList,
    RestartResult,
    ImageList,
    ImageImportResult,
    ImageRemoveResult,
);

/// Turns reply items into rows: `rows_of` expands an item into its rows; an item
/// with an error becomes an error row.
pub(super) fn node_rows<I: FromNode, T>(
    items: Vec<I>,
    rows_of: impl Fn(I) -> Vec<T>,
) -> Vec<NodeRow<T>> {
    items
        .into_iter()
        .flat_map(|item| {
            let meta = item.metadata().cloned().unwrap_or_default();
            if !meta.error.is_empty() {
                return vec![NodeRow {
                    node: meta.hostname,
                    error: Some(meta.error),
                    data: None,
                }];
            }
            rows_of(item)
                .into_iter()
                .map(|data| NodeRow {
                    node: meta.hostname.clone(),
                    error: None,
                    data: Some(data),
                })
                .collect()
        })
        .collect()
}

/// Prints rows and fails when any node failed (after printing every row).
pub(super) fn finish<T: Row>(session: &Session, rows: &[NodeRow<T>]) -> anyhow::Result<()> {
    output::print(session.format, rows)?;
    let failed = rows.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        bail!("{failed} node(s) failed");
    }
    Ok(())
}

/// A failed call as a one-line error.
pub(super) fn call_failed(what: &str) -> impl FnOnce(tonic::Status) -> anyhow::Error + '_ {
    move |status| anyhow::anyhow!("{what}: {}", explain_status(&status))
}

#[derive(Debug, Serialize)]
struct VersionRow {
    version: String,
    os_version: String,
    slot: String,
    slots: Vec<SlotRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rolled_back: Option<RolledBackRow>,
    revision: String,
    platform: String,
    #[serde(rename = "type")]
    machine_type: String,
    kernel: String,
    boot_id: String,
    boot_time: String,
    uptime_seconds: f64,
}

/// One slot in Version's output.
#[derive(Debug, Serialize)]
struct SlotRow {
    slot: String,
    version: String,
    state: String,
    generation: u32,
    booted: bool,
}

/// A fallback in Version's output.
#[derive(Debug, Serialize)]
struct RolledBackRow {
    from_version: String,
    from_slot: String,
    reason: String,
}

impl VersionRow {
    /// `A 0.2.0 good*, B 0.1.0 good` (the star marks the booted slot).
    fn slots_cell(&self) -> String {
        let slots: Vec<String> = self
            .slots
            .iter()
            .map(|s| {
                let booted = if s.booted { "*" } else { "" };
                match s.state.as_str() {
                    "empty" => format!("{} empty{booted}", s.slot.to_uppercase()),
                    state => format!("{} {} {state}{booted}", s.slot.to_uppercase(), s.version),
                }
            })
            .collect();
        if slots.is_empty() {
            "-".into()
        } else {
            slots.join(", ")
        }
    }
}

impl Row for VersionRow {
    fn headers() -> &'static [&'static str] {
        &[
            "OS", "SLOTS", "AGENT", "REVISION", "PLATFORM", "TYPE", "KERNEL", "BOOT ID", "UPTIME",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.os_version.clone(),
            self.slots_cell(),
            self.version.clone(),
            self.revision.clone(),
            self.platform.clone(),
            self.machine_type.clone(),
            self.kernel.clone(),
            self.boot_id.clone(),
            humantime::format_duration(Duration::from_secs(self.uptime_seconds as u64)).to_string(),
        ]
    }
}

fn version_row(v: VersionInfo) -> Vec<VersionRow> {
    vec![VersionRow {
        version: v.agent_version,
        os_version: v.os_version,
        slot: v.slot,
        slots: v
            .slots
            .into_iter()
            .map(|s| SlotRow {
                slot: s.slot,
                version: s.version,
                state: s.state,
                generation: s.generation,
                booted: s.booted,
            })
            .collect(),
        rolled_back: v.rolled_back.map(|r| RolledBackRow {
            from_version: r.from_version,
            from_slot: r.from_slot,
            reason: r.reason,
        }),
        revision: v.git_revision,
        platform: v.platform,
        // A node without configuration has no type yet.
        machine_type: if v.maintenance {
            "maintenance".into()
        } else {
            v.machine_type
        },
        kernel: v.kernel,
        boot_id: v.boot_id,
        boot_time: humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_secs(v.boot_time.max(0) as u64),
        )
        .to_string(),
        uptime_seconds: v.uptime_seconds,
    }]
}

/// `osctl version`.
pub async fn version(session: &Session) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .version(conn.request(VersionRequest {}))
        .await
        .map_err(call_failed("version"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, version_row),
    )
}

/// The boot id of every node that answered, by node name.
async fn boot_ids(conn: &Connection) -> Result<BTreeMap<String, String>, tonic::Status> {
    let reply = conn
        .client
        .clone()
        .version(conn.request(VersionRequest {}))
        .await?;
    Ok(reply
        .into_inner()
        .messages
        .into_iter()
        .filter_map(|v| {
            let meta = v.metadata?;
            meta.error.is_empty().then_some((meta.hostname, v.boot_id))
        })
        .collect())
}

#[derive(Debug, Serialize)]
struct MessageRow {
    message: String,
}

impl Row for MessageRow {
    fn headers() -> &'static [&'static str] {
        &["RESULT"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.message.clone()]
    }
}

/// `osctl reboot [--wait]`.
pub async fn reboot(session: &Session, wait: bool, timeout: Duration) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .reboot(conn.request(RebootRequest {}))
        .await
        .map_err(call_failed("reboot"))?;
    let items = reply.into_inner().messages;
    let before: BTreeMap<String, String> = items
        .iter()
        .filter_map(|r| {
            let meta = r.metadata.as_ref()?;
            meta.error
                .is_empty()
                .then(|| (meta.hostname.clone(), r.boot_id.clone()))
        })
        .collect();
    let rows = node_rows(items, |r| {
        vec![MessageRow {
            message: format!("rebooting (boot id was {})", r.boot_id),
        }]
    });
    if wait {
        wait_for_new_boot(session, &before, timeout).await?;
    }
    finish(session, &rows)
}

/// Polls until every node in `before` answers with another boot id.
async fn wait_for_new_boot(
    session: &Session,
    before: &BTreeMap<String, String>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut pending: Vec<&String> = before.keys().collect();
    eprint!("waiting for {} node(s) to reboot", pending.len());
    while !pending.is_empty() {
        if started.elapsed() > timeout {
            eprintln!();
            bail!(
                "timed out after {} waiting for {} to come back",
                humantime::format_duration(timeout),
                pending
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        eprint!(".");
        let Ok(conn) = session.connect().await else {
            continue;
        };
        let Ok(now) = boot_ids(&conn).await else {
            continue;
        };
        pending.retain(|node| {
            now.get(*node)
                .is_none_or(|id| Some(id) == before.get(*node))
        });
    }
    eprintln!(" back after {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `osctl shutdown`.
pub async fn shutdown(session: &Session) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .shutdown(conn.request(ShutdownRequest {}))
        .await
        .map_err(call_failed("shutdown"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, |_| {
            vec![MessageRow {
                message: "shutting down".into(),
            }]
        }),
    )
}

#[derive(Debug, Serialize)]
struct ServiceRow {
    service: String,
    state: String,
    health: String,
    pid: u32,
    restarts: u32,
    last_exit: String,
    message: String,
}

impl Row for ServiceRow {
    fn headers() -> &'static [&'static str] {
        &[
            "SERVICE",
            "STATE",
            "HEALTH",
            "PID",
            "RESTARTS",
            "LAST EXIT",
            "MESSAGE",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.service.clone(),
            self.state.clone(),
            self.health.clone(),
            if self.pid == 0 {
                "-".into()
            } else {
                self.pid.to_string()
            },
            self.restarts.to_string(),
            self.last_exit.clone(),
            self.message.clone(),
        ]
    }
}

/// `osctl services`.
pub async fn services(session: &Session) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .service_list(conn.request(ServiceListRequest {}))
        .await
        .map_err(call_failed("services"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, |list| {
            list.services
                .into_iter()
                .map(|s| ServiceRow {
                    service: s.name,
                    state: s.state,
                    health: if s.health_message.is_empty() {
                        s.health
                    } else {
                        format!("{}: {}", s.health, s.health_message)
                    },
                    pid: s.pid,
                    restarts: s.restarts,
                    last_exit: s.last_exit,
                    message: s.message,
                })
                .collect()
        }),
    )
}

/// `osctl service NAME start|stop|restart`.
pub async fn service(
    session: &Session,
    name: &str,
    action: cli::ServiceAction,
) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let mut client = conn.client.clone();
    let request = conn.request(ServiceActionRequest {
        name: name.to_owned(),
    });
    let reply = match action {
        cli::ServiceAction::Start => client.service_start(request).await,
        cli::ServiceAction::Stop => client.service_stop(request).await,
        cli::ServiceAction::Restart => client.service_restart(request).await,
    }
    .map_err(call_failed("service"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, |a| {
            vec![MessageRow {
                message: a.response,
            }]
        }),
    )
}

/// Prints a stream of log data; lines are prefixed with the node when calls fan out.
async fn print_stream(
    conn: &Connection,
    stream: tonic::Response<tonic::Streaming<Data>>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let prefix = conn.fans_out();
    let mut stream = stream.into_inner();
    let mut failed = 0;
    while let Some(item) = stream.next().await {
        let data = item.map_err(call_failed("stream"))?;
        let meta = data.metadata.unwrap_or_default();
        if !meta.error.is_empty() {
            eprintln!("{}: error: {}", meta.hostname, meta.error);
            failed += 1;
            continue;
        }
        let mut out = std::io::stdout().lock();
        if prefix {
            for line in String::from_utf8_lossy(&data.bytes).lines() {
                writeln!(out, "{}: {line}", meta.hostname)?;
            }
        } else {
            out.write_all(&data.bytes)?;
        }
        out.flush()?;
    }
    if failed > 0 {
        bail!("{failed} node(s) failed");
    }
    Ok(())
}

/// `osctl logs SERVICE [-f] [--tail N]`.
pub async fn logs(
    session: &Session,
    service: &str,
    namespace: &str,
    follow: bool,
    tail: i32,
) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let stream = conn
        .client
        .clone()
        .logs(conn.request(LogsRequest {
            service: service.to_owned(),
            tail_lines: tail,
            follow,
            namespace: namespace.to_owned(),
        }))
        .await
        .map_err(call_failed("logs"))?;
    print_stream(&conn, stream).await
}

/// `osctl dmesg [-f] [--tail N]`.
pub async fn dmesg(session: &Session, follow: bool, tail: i32) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let stream = conn
        .client
        .clone()
        .dmesg(conn.request(DmesgRequest {
            tail_lines: tail,
            follow,
        }))
        .await
        .map_err(call_failed("dmesg"))?;
    print_stream(&conn, stream).await
}

#[derive(Debug, Serialize)]
struct StatRow {
    /// A service name, or a container id with -k.
    service: String,
    cpu_seconds: f64,
    memory_bytes: u64,
    source: String,
}

impl Row for StatRow {
    fn headers() -> &'static [&'static str] {
        &["SERVICE", "CPU", "MEMORY", "SOURCE"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.service.clone(),
            format!("{:.2}s", self.cpu_seconds),
            output::bytes(self.memory_bytes),
            self.source.clone(),
        ]
    }
}

/// `osctl stats`.
pub async fn stats(session: &Session, kubernetes: bool) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let namespace = if kubernetes { "k8s.io" } else { "" };
    let reply = conn
        .client
        .clone()
        .stats(conn.request(StatsRequest {
            namespace: namespace.to_owned(),
        }))
        .await
        .map_err(call_failed("stats"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, |s| {
            s.stats
                .into_iter()
                .map(|s| StatRow {
                    service: s.name,
                    cpu_seconds: s.cpu_time_nanos as f64 / 1e9,
                    memory_bytes: s.memory_bytes,
                    source: s.source,
                })
                .collect()
        }),
    )
}

#[derive(Debug, Serialize)]
struct MemoryRow {
    total_bytes: u64,
    used_bytes: u64,
    free_bytes: u64,
    available_bytes: u64,
    buffers_bytes: u64,
    cached_bytes: u64,
}

impl Row for MemoryRow {
    fn headers() -> &'static [&'static str] {
        &["TOTAL", "USED", "FREE", "AVAILABLE", "BUFFERS", "CACHED"]
    }
    fn cells(&self) -> Vec<String> {
        [
            self.total_bytes,
            self.used_bytes,
            self.free_bytes,
            self.available_bytes,
            self.buffers_bytes,
            self.cached_bytes,
        ]
        .into_iter()
        .map(output::bytes)
        .collect()
    }
}

/// `osctl memory`.
pub async fn memory(session: &Session) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .memory(conn.request(MemoryRequest {}))
        .await
        .map_err(call_failed("memory"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, |m| {
            vec![MemoryRow {
                total_bytes: m.total_bytes,
                used_bytes: m.total_bytes.saturating_sub(m.available_bytes),
                free_bytes: m.free_bytes,
                available_bytes: m.available_bytes,
                buffers_bytes: m.buffers_bytes,
                cached_bytes: m.cached_bytes,
            }]
        }),
    )
}

#[derive(Debug, Serialize)]
struct ProcessRow {
    pid: u32,
    ppid: u32,
    state: String,
    threads: u32,
    cpu_seconds: f64,
    resident_bytes: u64,
    command: String,
}

impl Row for ProcessRow {
    fn headers() -> &'static [&'static str] {
        &["PID", "PPID", "STATE", "THREADS", "CPU", "RES", "COMMAND"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.pid.to_string(),
            self.ppid.to_string(),
            self.state.clone(),
            self.threads.to_string(),
            format!("{:.2}s", self.cpu_seconds),
            output::bytes(self.resident_bytes),
            self.command.clone(),
        ]
    }
}

/// `osctl processes`.
pub async fn processes(session: &Session) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .processes(conn.request(ProcessesRequest {}))
        .await
        .map_err(call_failed("processes"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, |list| {
            list.processes
                .into_iter()
                .map(|p| ProcessRow {
                    pid: p.pid,
                    ppid: p.ppid,
                    state: p.state,
                    threads: p.threads,
                    cpu_seconds: p.cpu_time_seconds,
                    resident_bytes: p.resident_memory_bytes,
                    command: if p.args.is_empty() {
                        format!("[{}]", p.command)
                    } else {
                        p.args
                    },
                })
                .collect()
        }),
    )
}

#[derive(Debug, Serialize)]
struct MountRow {
    source: String,
    fstype: String,
    mount_point: String,
    options: String,
    size_bytes: u64,
    available_bytes: u64,
}

impl Row for MountRow {
    fn headers() -> &'static [&'static str] {
        &[
            "FILESYSTEM",
            "TYPE",
            "SIZE",
            "AVAILABLE",
            "MOUNTED ON",
            "OPTIONS",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.source.clone(),
            self.fstype.clone(),
            output::bytes(self.size_bytes),
            output::bytes(self.available_bytes),
            self.mount_point.clone(),
            self.options.clone(),
        ]
    }
}

/// `osctl mounts`.
pub async fn mounts(session: &Session) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .mounts(conn.request(MountsRequest {}))
        .await
        .map_err(call_failed("mounts"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, |list| {
            list.mounts
                .into_iter()
                .map(|m| MountRow {
                    source: m.source,
                    fstype: m.fstype,
                    mount_point: m.mount_point,
                    options: m.options,
                    size_bytes: m.size_bytes,
                    available_bytes: m.available_bytes,
                })
                .collect()
        }),
    )
}

#[derive(Debug, Serialize)]
struct ApplyRow {
    mode: String,
    details: String,
    config_hash: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    diff: String,
}

impl Row for ApplyRow {
    fn headers() -> &'static [&'static str] {
        &["MODE", "RESULT"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.mode.clone(), self.details.clone()]
    }
}

fn apply_mode(mode: Mode) -> api::machine::ApplyMode {
    match mode {
        Mode::Auto => api::machine::ApplyMode::Auto,
        Mode::NoReboot => api::machine::ApplyMode::NoReboot,
        Mode::Reboot => api::machine::ApplyMode::Reboot,
        Mode::Staged => api::machine::ApplyMode::Staged,
        Mode::Try => api::machine::ApplyMode::Try,
    }
}

fn apply_rows(
    session: &Session,
    dry_run: bool,
    reply: ApplyConfigurationResponse,
) -> anyhow::Result<()> {
    let rows = node_rows(reply.messages, |a| {
        let mode = api::machine::ApplyMode::try_from(a.mode)
            .map(|m| {
                m.as_str_name()
                    .trim_start_matches("APPLY_MODE_")
                    .to_lowercase()
                    .replace('_', "-")
            })
            .unwrap_or_default();
        vec![ApplyRow {
            mode,
            details: a.mode_details,
            config_hash: a.config_hash,
            diff: a.diff,
        }]
    });
    if dry_run && session.format == output::Format::Table {
        for row in &rows {
            if let Some(data) = &row.data {
                if data.diff.is_empty() {
                    println!("{}: no changes", row.node);
                } else {
                    println!("{}:\n{}", row.node, data.diff);
                }
            }
        }
    }
    finish(session, &rows)
}

/// `osctl apply-config -f FILE`.
pub async fn apply_config(
    session: &Session,
    file: &std::path::Path,
    apply: &ApplyArgs,
) -> anyhow::Result<()> {
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    // Check locally first, so a typo is reported without a round trip.
    machine_config::ConfigBundle::parse(&String::from_utf8_lossy(&data))
        .with_context(|| format!("{} is not a valid configuration", file.display()))?;
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .apply_configuration(conn.request(ApplyConfigurationRequest {
            data,
            mode: apply_mode(apply.mode).into(),
            dry_run: apply.dry_run,
            try_timeout_seconds: apply.try_timeout.as_secs().try_into().unwrap_or(u32::MAX),
        }))
        .await
        .map_err(call_failed("apply-config"))?;
    apply_rows(session, apply.dry_run, reply.into_inner())
}

/// `osctl patch -p PATCH...`.
pub async fn patch(session: &Session, patches: &[String], apply: &ApplyArgs) -> anyhow::Result<()> {
    let texts = patches
        .iter()
        .map(|arg| match arg.strip_prefix('@') {
            Some(path) => {
                std::fs::read_to_string(path).with_context(|| format!("reading patch {path}"))
            }
            None => Ok(arg.clone()),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (i, text) in texts.iter().enumerate() {
        machine_config::Patch::parse(text).with_context(|| format!("patch {}", i + 1))?;
    }
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .patch_configuration(conn.request(PatchConfigurationRequest {
            patches: texts,
            mode: apply_mode(apply.mode).into(),
            dry_run: apply.dry_run,
            try_timeout_seconds: apply.try_timeout.as_secs().try_into().unwrap_or(u32::MAX),
        }))
        .await
        .map_err(call_failed("patch"))?;
    apply_rows(session, apply.dry_run, reply.into_inner())
}

#[derive(Debug, Serialize)]
struct KernelCheckRow {
    kind: String,
    name: String,
    want: String,
    got: Option<String>,
    status: String,
    reason: String,
}

impl Row for KernelCheckRow {
    fn headers() -> &'static [&'static str] {
        &["KIND", "NAME", "WANT", "GOT", "STATUS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.kind.clone(),
            self.name.clone(),
            self.want.clone(),
            self.got.clone().unwrap_or_else(|| "-".into()),
            self.status.clone(),
        ]
    }
}

/// `osctl kernel-security [--unmet]`: fails when anything required is unmet.
pub async fn kernel_security(session: &Session, unmet_only: bool) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .kernel_security(conn.request(KernelSecurityRequest {}))
        .await
        .map_err(call_failed("kernel-security"))?;
    let rows = node_rows(reply.into_inner().messages, |report| {
        report
            .checks
            .into_iter()
            .filter(|c| !unmet_only || c.status == "unmet")
            .map(|c| KernelCheckRow {
                got: c.present.then_some(c.got),
                kind: c.kind,
                name: c.name,
                want: c.want,
                status: c.status,
                reason: c.reason,
            })
            .collect()
    });
    finish(session, &rows)?;
    let unmet = rows
        .iter()
        .filter_map(|r| r.data.as_ref())
        .filter(|c| c.status == "unmet")
        .count();
    if unmet > 0 {
        bail!("{unmet} hardening setting(s) unmet");
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct ConfigRow {
    redacted: bool,
    config_hash: String,
    config: String,
}

impl Row for ConfigRow {
    fn headers() -> &'static [&'static str] {
        &["HASH", "CONFIG"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.config_hash.clone(), format!("\n{}", self.config)]
    }
}

/// `osctl get config`: the YAML itself for one node in table format, rows otherwise.
pub async fn get_config(session: &Session) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .get_configuration(conn.request(GetConfigurationRequest {}))
        .await
        .map_err(call_failed("get config"))?;
    let rows = node_rows(reply.into_inner().messages, |c| {
        vec![ConfigRow {
            redacted: c.redacted,
            config_hash: c.config_hash,
            config: String::from_utf8_lossy(&c.data).into_owned(),
        }]
    });
    if let ([row], output::Format::Table) = (rows.as_slice(), session.format)
        && let Some(data) = &row.data
    {
        print!("{}", data.config);
        return Ok(());
    }
    finish(session, &rows)
}

/// Asks the endpoint for a client certificate (os:admin only).
pub async fn generate_client_configuration(
    session: &Session,
    role: &str,
    ttl: Duration,
) -> anyhow::Result<ClientConfiguration> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .generate_client_configuration(GenerateClientConfigurationRequest {
            role: role.to_owned(),
            ttl_seconds: ttl.as_secs(),
            name: String::new(),
        })
        .await
        .map_err(call_failed("config new"))?;
    reply
        .into_inner()
        .messages
        .into_iter()
        .next()
        .context("the node sent no client configuration")
}
