//! `osctl upgrade`, `rollback` and `events`: A/B upgrades of one node, with progress.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use api::machine::*;
use futures::StreamExt;
use serde::Serialize;

use super::Session;
use super::node::{call_failed, finish, node_rows};
use api::transport::explain_status;

use crate::connection::Connection;
use crate::output::{self, Row};

/// The size of an upload's chunks.
const UPLOAD_CHUNK: usize = 1 << 20;
/// How often `--wait` asks the node.
const POLL: Duration = Duration::from_millis(500);

/// What `osctl upgrade` was asked.
#[derive(Debug, Clone)]
pub struct Request {
    /// A bundle file, or an https:// URL the node downloads.
    pub image: String,
    /// The bundle file's expected sha256 (hex).
    pub sha256: Option<String>,
    /// Install only; the next reboot boots it.
    pub stage: bool,
    /// Keep EPHEMERAL.
    pub preserve: bool,
    /// Skip the node's pre-checks.
    pub force: bool,
    /// Wait until the new slot is confirmed healthy (or the node rolled back).
    pub wait: bool,
    /// How long `--wait` waits.
    pub timeout: Duration,
}

#[derive(Debug, Serialize)]
struct UpgradeRow {
    version: String,
    slot: String,
    state: String,
}

impl Row for UpgradeRow {
    fn headers() -> &'static [&'static str] {
        &["VERSION", "SLOT", "STATE"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.version.clone(), self.slot.clone(), self.state.clone()]
    }
}

/// `osctl upgrade --image FILE|URL`.
pub async fn upgrade(session: &Session, request: &Request) -> anyhow::Result<()> {
    let conn = session.connect_to_endpoint().await?;
    let before = version(&conn).await?;
    let (options, file) = if request.image.starts_with("https://") {
        (
            UpgradeOptions {
                url: request.image.clone(),
                ..UpgradeOptions::default()
            },
            None,
        )
    } else {
        let path = Path::new(&request.image);
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let size = file.metadata().await?.len();
        (
            UpgradeOptions {
                size,
                ..UpgradeOptions::default()
            },
            Some(file),
        )
    };
    let options = UpgradeOptions {
        stage: request.stage,
        force: request.force,
        preserve: request.preserve,
        sha256: request.sha256.clone().unwrap_or_default(),
        ..options
    };
    let first = futures::stream::iter([UpgradeRequest {
        options: Some(options),
        chunk: Vec::new(),
    }]);
    let chunks = futures::stream::unfold(file, |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut chunk = vec![0; UPLOAD_CHUNK];
        match file.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((
                    UpgradeRequest {
                        options: None,
                        chunk,
                    },
                    Some(file),
                ))
            }
        }
    });
    let mut replies = conn
        .client
        .clone()
        .upgrade(conn.request(first.chain(chunks)))
        .await
        .map_err(call_failed("upgrade"))?
        .into_inner();
    let mut bar = ProgressBar::default();
    let mut last = None;
    while let Some(reply) = replies.next().await {
        let progress = reply.map_err(|status| {
            bar.end();
            anyhow::anyhow!("upgrade failed: {}", explain_status(&status))
        })?;
        bar.show(&progress);
        last = Some(progress);
    }
    bar.end();
    let Some(last) = last else {
        bail!("upgrade: the node ended the call without progress");
    };
    let hostname = before.metadata.clone().unwrap_or_default().hostname;
    let row = |state: &str| {
        vec![output::NodeRow {
            node: hostname.clone(),
            error: None,
            data: Some(UpgradeRow {
                version: last.version.clone(),
                slot: last.slot.clone(),
                state: state.to_owned(),
            }),
        }]
    };
    match last.phase.as_str() {
        "staged" => finish(session, &row("staged")),
        "reboot" if request.wait => {
            let confirmed = wait_for_verdict(session, &before, &last, request.timeout).await?;
            finish(session, &row(&confirmed))
        }
        "reboot" => finish(session, &row("rebooting")),
        phase => bail!("upgrade: the node ended the call in phase {phase}"),
    }
}

/// Waits until the node is back with a new boot, then until the new slot is confirmed
/// (returns its state) or the node fell back (an error with the node's reason).
async fn wait_for_verdict(
    session: &Session,
    before: &VersionInfo,
    installing: &UpgradeProgress,
    timeout: Duration,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let mut phase = "reboot";
    eprint!("waiting for the node to reboot");
    loop {
        if started.elapsed() > timeout {
            eprintln!();
            bail!(
                "timed out after {} in phase {phase}",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(POLL).await;
        let Ok(now) = async { version(&session.connect_to_endpoint().await?).await }.await else {
            continue;
        };
        if now.boot_id == before.boot_id {
            continue;
        }
        if let Some(rollback) = &now.rolled_back
            && rollback.from_version == installing.version
        {
            eprintln!();
            bail!(
                "the node rolled back to {} (slot {}): {} did not come up: {}",
                now.os_version,
                now.slot,
                rollback.from_version,
                rollback.reason
            );
        }
        let booted = now.slots.iter().find(|s| s.booted);
        match booted {
            Some(slot) if slot.version == installing.version && slot.state == "good" => {
                eprintln!(
                    " {} is healthy in slot {} after {:.1}s",
                    slot.version,
                    slot.slot.to_uppercase(),
                    started.elapsed().as_secs_f64()
                );
                return Ok("good".into());
            }
            Some(slot) if slot.version == installing.version && phase != "health" => {
                phase = "health";
                eprint!(
                    " booted {}, waiting for its services to be healthy",
                    slot.version
                );
            }
            _ => {}
        }
        eprint!(".");
    }
}

/// The version of the one node of `conn`.
async fn version(conn: &Connection) -> anyhow::Result<VersionInfo> {
    let reply = conn
        .client
        .clone()
        .version(conn.request(VersionRequest {}))
        .await
        .map_err(call_failed("version"))?;
    let info = reply.into_inner().messages.into_iter().next();
    let info = info.context("version: the node sent no reply")?;
    match info.metadata.as_ref().map(|m| m.error.as_str()) {
        Some(error) if !error.is_empty() => bail!("version: {error}"),
        _ => Ok(info),
    }
}

/// Progress on stderr: one redrawn line on a terminal; otherwise (a log) a line when a
/// phase starts and at every tenth of its bytes.
#[derive(Default)]
struct ProgressBar {
    phase: String,
    drawn: bool,
    /// The last tenth logged in this phase.
    tenth: u64,
}

impl ProgressBar {
    const WIDTH: u64 = 30;

    fn show(&mut self, progress: &UpgradeProgress) {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let new_phase = progress.phase != self.phase;
        if new_phase {
            self.end();
            self.phase = progress.phase.clone();
            self.tenth = 0;
        }
        let percent = (progress.done_bytes * 100).checked_div(progress.total_bytes);
        let counts = if let Some(percent) = percent {
            let filled = (percent * Self::WIDTH / 100).min(Self::WIDTH);
            format!(
                " [{}{}] {percent:>3}% {} / {}",
                "#".repeat(filled as usize),
                ".".repeat((Self::WIDTH - filled) as usize),
                output::bytes(progress.done_bytes),
                output::bytes(progress.total_bytes)
            )
        } else if progress.done_bytes > 0 {
            format!(" {}", output::bytes(progress.done_bytes))
        } else {
            String::new()
        };
        let line = format!("{:<8}{counts}  {}", progress.phase, progress.message);
        if terminal {
            eprint!("\r\x1b[2K{line}");
            self.drawn = true;
        } else if new_phase || percent.is_some_and(|p| p / 10 > self.tenth) {
            self.tenth = percent.unwrap_or(0) / 10;
            eprintln!("{line}");
        }
    }

    fn end(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

#[derive(Debug, Serialize)]
struct RollbackRow {
    version: String,
    slot: String,
}

impl Row for RollbackRow {
    fn headers() -> &'static [&'static str] {
        &["ROLLING BACK TO", "SLOT"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.version.clone(), self.slot.clone()]
    }
}

/// `osctl rollback`.
pub async fn rollback(session: &Session) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .rollback(conn.request(RollbackRequest {}))
        .await
        .map_err(call_failed("rollback"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, |r| {
            vec![RollbackRow {
                version: r.version,
                slot: r.slot.to_uppercase(),
            }]
        }),
    )
}

#[derive(Debug, Serialize)]
struct EventRow {
    time: String,
    kind: String,
    version: String,
    message: String,
}

impl Row for EventRow {
    fn headers() -> &'static [&'static str] {
        &["TIME", "EVENT", "VERSION", "MESSAGE"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.time.clone(),
            self.kind.clone(),
            self.version.clone(),
            self.message.clone(),
        ]
    }
}

/// `osctl events [-f]`.
pub async fn events(session: &Session, follow: bool) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let mut events = conn
        .client
        .clone()
        .events(conn.request(EventsRequest { follow }))
        .await
        .map_err(call_failed("events"))?
        .into_inner();
    let mut rows = Vec::new();
    while let Some(event) = events.next().await {
        let event = event.map_err(call_failed("events"))?;
        let row = node_rows(vec![event], |e| {
            vec![EventRow {
                time: humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + Duration::from_millis(e.time_ms.max(0) as u64),
                )
                .to_string(),
                kind: e.kind,
                version: e.version,
                message: e.message,
            }]
        });
        if follow {
            // Each event as it comes: a one-row table, JSON or YAML document.
            output::print(session.format, &row)?;
        } else {
            rows.extend(row);
        }
    }
    if follow {
        return Ok(());
    }
    finish(session, &rows)
}
