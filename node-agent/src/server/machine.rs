//! The MachineService handlers: thin translations between the API messages and the
//! agent. Authorisation has already happened in the auth layer; the only role-aware
//! step here is redacting secrets for callers below os:admin, a matter of what to show,
//! not of who may call.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::machine::machine_service_server::MachineService;
use api::machine::*;
use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use machine_config::ConfigBundle;
use pki::Role;
use tonic::{Request, Response, Status};

use super::auth::Caller;
use crate::agent::{Agent, ApplyError, ApplyMode as Mode, ApplyOutcome, Boot, Lifecycle};
use crate::kernel_security;
use crate::platform::Platform;
use crate::supervisor::Health;
use crate::system::{kmsg, meminfo, mounts, processes};

/// Lifetime of a client certificate when the request names none.
const DEFAULT_CLIENT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Default timeout of a `try` apply.
const DEFAULT_TRY_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines sent per stream message when replaying the kernel log.
const LINES_PER_MESSAGE: usize = 256;

/// Size of a stream message when replaying a service log (cut at a line end).
const CHUNK_BYTES: usize = 64 * 1024;

/// What ServiceStart, ServiceStop and ServiceRestart ask of the supervisor.
#[derive(Debug, Clone, Copy)]
enum ServiceVerb {
    Start,
    Stop,
    Restart,
}

/// The MachineService of one node.
pub struct MachineApi {
    pub(super) agent: Arc<Agent>,
    /// Control-plane nodes hold the CA and can mint client certificates.
    authority: Option<Arc<pki::CertificateAuthority>>,
}

impl MachineApi {
    /// The API of `agent`; `authority` is the cluster CA on control-plane nodes.
    pub fn new(agent: Arc<Agent>, authority: Option<Arc<pki::CertificateAuthority>>) -> Self {
        Self { agent, authority }
    }

    pub(super) async fn metadata(&self) -> Option<NodeMetadata> {
        Some(NodeMetadata {
            hostname: self.agent.hostname().await,
            error: String::new(),
        })
    }
}

/// What Version reports about the agent, the kernel and this boot; the caller adds
/// the node's name and type.
pub(super) fn version_info(platform: &dyn Platform, boot: &Boot) -> VersionInfo {
    VersionInfo {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        // Replaced by the booted slot's version where the node boots from slots.
        os_version: env!("CARGO_PKG_VERSION").into(),
        git_revision: crate::GIT_REVISION.into(),
        kernel: kernel_release(),
        platform: platform.name().into(),
        boot_id: boot.id.clone(),
        uptime_seconds: SystemTime::now()
            .duration_since(boot.time)
            .unwrap_or_default()
            .as_secs_f64(),
        boot_time: unix_seconds(boot.time),
        ..VersionInfo::default()
    }
}

/// The running kernel's release (`uname -r`).
fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("request reached a handler without an authorised caller"))
}

fn apply_mode(mode: i32, try_timeout_seconds: u32) -> Result<Mode, Status> {
    match ApplyMode::try_from(mode) {
        Ok(ApplyMode::Auto) => Ok(Mode::Auto),
        Ok(ApplyMode::NoReboot) => Ok(Mode::NoReboot),
        Ok(ApplyMode::Reboot) => Ok(Mode::Reboot),
        Ok(ApplyMode::Staged) => Ok(Mode::Staged),
        Ok(ApplyMode::Try) => Ok(Mode::Try(match try_timeout_seconds {
            0 => DEFAULT_TRY_TIMEOUT,
            seconds => Duration::from_secs(seconds.into()),
        })),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown apply mode {mode}"
        ))),
    }
}

fn mode_to_proto(mode: Mode) -> ApplyMode {
    match mode {
        Mode::Auto => ApplyMode::Auto,
        Mode::NoReboot => ApplyMode::NoReboot,
        Mode::Reboot => ApplyMode::Reboot,
        Mode::Staged => ApplyMode::Staged,
        Mode::Try(_) => ApplyMode::Try,
    }
}

pub(super) fn apply_status(error: ApplyError) -> Status {
    match error {
        ApplyError::Invalid(e) => Status::invalid_argument(format!("configuration rejected: {e}")),
        ApplyError::Unsupported(_) => {
            Status::invalid_argument(format!("configuration rejected: {error}"))
        }
        ApplyError::NeedsReboot(_) => Status::failed_precondition(error.to_string()),
        ApplyError::Store(e) => Status::internal(format!("storing the configuration: {e}")),
    }
}

fn io_status(what: &str) -> impl FnOnce(std::io::Error) -> Status + '_ {
    move |e| Status::unavailable(format!("{what}: {e}"))
}

impl MachineApi {
    async fn apply_reply(&self, outcome: ApplyOutcome) -> Response<ApplyConfigurationResponse> {
        Response::new(ApplyConfigurationResponse {
            messages: vec![ApplyConfiguration {
                metadata: self.metadata().await,
                mode: mode_to_proto(outcome.mode).into(),
                mode_details: outcome.details,
                diff: outcome.diff,
                config_hash: outcome.config_hash.unwrap_or_default(),
            }],
        })
    }

    fn supervisor_status(error: crate::supervisor::Error) -> Status {
        match error {
            crate::supervisor::Error::UnknownService(_) => Status::not_found(error.to_string()),
            other => Status::internal(other.to_string()),
        }
    }

    async fn service_action(
        &self,
        request: Request<ServiceActionRequest>,
        action: ServiceVerb,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        let name = request.into_inner().name;
        let supervisor = &self.agent.supervisor;
        let verb = match action {
            ServiceVerb::Start => supervisor.start(&name).await.map(|()| "start"),
            ServiceVerb::Stop => supervisor.stop(&name).await.map(|()| "stop"),
            ServiceVerb::Restart => supervisor.restart(&name).await.map(|()| "restart"),
        }
        .map_err(Self::supervisor_status)?;
        Ok(Response::new(ServiceActionResponse {
            messages: vec![ServiceAction {
                metadata: self.metadata().await,
                response: format!("service {name:?}: {verb} requested"),
            }],
        }))
    }
}

#[tonic::async_trait]
impl MachineService for MachineApi {
    async fn version(
        &self,
        _: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        let machine_type = self.agent.machine_type().await;
        let mut info = VersionInfo {
            metadata: self.metadata().await,
            machine_type: format!("{machine_type:?}").to_lowercase(),
            ..version_info(self.agent.platform.as_ref(), &self.agent.boot)
        };
        self.slot_info(&mut info);
        Ok(Response::new(VersionResponse {
            messages: vec![info],
        }))
    }

    async fn hostname(
        &self,
        _: Request<HostnameRequest>,
    ) -> Result<Response<HostnameResponse>, Status> {
        Ok(Response::new(HostnameResponse {
            messages: vec![HostnameInfo {
                metadata: self.metadata().await,
                hostname: self.agent.hostname().await,
            }],
        }))
    }

    async fn reboot(&self, _: Request<RebootRequest>) -> Result<Response<RebootResponse>, Status> {
        self.agent.request(Lifecycle::Reboot);
        Ok(Response::new(RebootResponse {
            messages: vec![RebootInfo {
                metadata: self.metadata().await,
                boot_id: self.agent.boot.id.clone(),
            }],
        }))
    }

    async fn shutdown(
        &self,
        _: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        self.agent.request(Lifecycle::Shutdown);
        Ok(Response::new(ShutdownResponse {
            messages: vec![ShutdownInfo {
                metadata: self.metadata().await,
            }],
        }))
    }

    async fn service_list(
        &self,
        _: Request<ServiceListRequest>,
    ) -> Result<Response<ServiceListResponse>, Status> {
        let services = self
            .agent
            .supervisor
            .list()
            .into_iter()
            .map(|s| ServiceInfo {
                name: s.name,
                state: s.state.to_string(),
                pid: s.pid.unwrap_or_default(),
                health_message: match &s.health {
                    Health::Unhealthy(why) => why.clone(),
                    Health::Unknown | Health::Healthy => String::new(),
                },
                health: match s.health {
                    Health::Unknown => "unknown",
                    Health::Healthy => "healthy",
                    Health::Unhealthy(_) => "unhealthy",
                }
                .into(),
                restarts: s.restarts,
                last_exit: s.last_exit.unwrap_or_default(),
                started_at: s.started_at.map_or(0, unix_seconds),
                message: s.message,
            })
            .collect();
        Ok(Response::new(ServiceListResponse {
            messages: vec![ServiceList {
                metadata: self.metadata().await,
                services,
            }],
        }))
    }

    async fn service_start(
        &self,
        request: Request<ServiceActionRequest>,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        self.service_action(request, ServiceVerb::Start).await
    }

    async fn service_stop(
        &self,
        request: Request<ServiceActionRequest>,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        self.service_action(request, ServiceVerb::Stop).await
    }

    async fn service_restart(
        &self,
        request: Request<ServiceActionRequest>,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        self.service_action(request, ServiceVerb::Restart).await
    }

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<BoxStream<'static, Result<Data, Status>>>, Status> {
        let request = request.into_inner();
        if !request.namespace.is_empty() && request.namespace != crate::containerd::SYSTEM_NAMESPACE
        {
            return Err(Status::failed_precondition(format!(
                "containers of namespace {} log through the kubelet (CRI log files), which this \
                 node does not run; only the agent's services (namespace system) have logs here",
                request.namespace
            )));
        }
        let supervisor = &self.agent.supervisor;
        let tail = usize::try_from(request.tail_lines).unwrap_or(usize::MAX);
        // With follow, history and subscription come from one step: no line is lost
        // or repeated between them.
        let (history, follow) = if request.follow {
            let (history, receiver) = supervisor
                .follow(&request.service, tail)
                .await
                .map_err(Self::supervisor_status)?;
            (history, Some(receiver))
        } else {
            let history = supervisor
                .tail(&request.service, tail)
                .await
                .map_err(Self::supervisor_status)?;
            (history, None)
        };
        let metadata = self.metadata().await;
        // Messages are made as the client reads them: one chunk in memory at a time
        // besides the history itself.
        let replay = stream::iter(line_chunks(history, CHUNK_BYTES).map({
            let metadata = metadata.clone();
            move |bytes| {
                Ok(Data {
                    metadata: metadata.clone(),
                    bytes,
                })
            }
        }));
        let Some(receiver) = follow else {
            return Ok(Response::new(replay.boxed()));
        };
        let live = tokio_stream::wrappers::BroadcastStream::new(receiver).filter_map(move |line| {
            let metadata = metadata.clone();
            async move {
                match line {
                    Ok(line) => Some(Ok(data(&metadata, std::iter::once(line.as_str())))),
                    // A slow follower that fell behind skips what it missed.
                    Err(_) => None,
                }
            }
        });
        Ok(Response::new(replay.chain(live).boxed()))
    }

    async fn dmesg(
        &self,
        request: Request<DmesgRequest>,
    ) -> Result<Response<BoxStream<'static, Result<Data, Status>>>, Status> {
        let request = request.into_inner();
        let mut reader = kmsg::Reader::open().map_err(io_status("opening /dev/kmsg"))?;
        let records = reader
            .read_available()
            .map_err(io_status("reading /dev/kmsg"))?;
        let tail = usize::try_from(request.tail_lines).unwrap_or(usize::MAX);
        let lines: Vec<String> = records[records.len().saturating_sub(tail)..]
            .iter()
            .map(kmsg::Record::line)
            .collect();
        let metadata = self.metadata().await;
        let replay: Vec<Result<Data, Status>> = lines
            .chunks(LINES_PER_MESSAGE)
            .map(|chunk| Ok(data(&metadata, chunk.iter().map(String::as_str))))
            .collect();
        if !request.follow {
            return Ok(Response::new(stream::iter(replay).boxed()));
        }
        // /dev/kmsg blocks until the next record: read it on a blocking thread and
        // stop when the client goes away (the channel closes).
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::task::spawn_blocking(move || {
            loop {
                match reader.next_record() {
                    Ok(Some(record)) => {
                        if tx
                            .blocking_send(Ok(data(
                                &metadata,
                                std::iter::once(record.line().as_str()),
                            )))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::unavailable(format!(
                            "reading /dev/kmsg: {e}"
                        ))));
                        return;
                    }
                }
            }
        });
        Ok(Response::new(
            stream::iter(replay)
                .chain(tokio_stream::wrappers::ReceiverStream::new(rx))
                .boxed(),
        ))
    }

    async fn stats(
        &self,
        request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        let namespace = request.into_inner().namespace;
        if !namespace.is_empty() {
            let stats = self.container_stats(namespace).await?;
            return Ok(Response::new(StatsResponse {
                messages: vec![Stats {
                    metadata: self.metadata().await,
                    stats,
                }],
            }));
        }
        let supervisor = &self.agent.supervisor;
        let stats = supervisor
            .list()
            .into_iter()
            .filter_map(|service| {
                let figures = supervisor.stats(&service.name).ok()?;
                Some(ServiceStat {
                    cpu_time_nanos: figures.cpu_time.as_nanos() as u64,
                    memory_bytes: figures.memory_bytes,
                    source: if service.cgroup.is_some() || supervisor.is_container(&service.name) {
                        "cgroup"
                    } else {
                        "procfs"
                    }
                    .into(),
                    name: service.name,
                })
            })
            .collect();
        Ok(Response::new(StatsResponse {
            messages: vec![Stats {
                metadata: self.metadata().await,
                stats,
            }],
        }))
    }

    async fn containers(
        &self,
        request: Request<ContainersRequest>,
    ) -> Result<Response<ContainersResponse>, Status> {
        self.list_containers(request).await
    }

    async fn restart(
        &self,
        request: Request<RestartRequest>,
    ) -> Result<Response<RestartResponse>, Status> {
        self.restart_container(request).await
    }

    async fn image_list(
        &self,
        request: Request<ImageListRequest>,
    ) -> Result<Response<ImageListResponse>, Status> {
        self.list_images(request).await
    }

    async fn image_import(
        &self,
        request: Request<tonic::Streaming<ImageImportRequest>>,
    ) -> Result<Response<ImageImportResponse>, Status> {
        self.import_image(request).await
    }

    async fn image_remove(
        &self,
        request: Request<ImageRemoveRequest>,
    ) -> Result<Response<ImageRemoveResponse>, Status> {
        self.remove_image(request).await
    }

    async fn upgrade(
        &self,
        request: Request<tonic::Streaming<UpgradeRequest>>,
    ) -> Result<Response<BoxStream<'static, Result<UpgradeProgress, Status>>>, Status> {
        self.upgrade_node(request).await
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<RollbackResponse>, Status> {
        self.roll_back(request).await
    }

    async fn events(
        &self,
        request: Request<EventsRequest>,
    ) -> Result<Response<BoxStream<'static, Result<Event, Status>>>, Status> {
        self.node_events(request).await
    }

    async fn memory(&self, _: Request<MemoryRequest>) -> Result<Response<MemoryResponse>, Status> {
        let fields = meminfo::read().map_err(io_status("reading /proc/meminfo"))?;
        let field = |name: &str| fields.get(name).copied().unwrap_or_default();
        Ok(Response::new(MemoryResponse {
            messages: vec![MemInfo {
                metadata: self.metadata().await,
                total_bytes: field("MemTotal"),
                free_bytes: field("MemFree"),
                available_bytes: field("MemAvailable"),
                buffers_bytes: field("Buffers"),
                cached_bytes: field("Cached"),
                swap_total_bytes: field("SwapTotal"),
                swap_free_bytes: field("SwapFree"),
                fields: fields.into_iter().collect(),
            }],
        }))
    }

    async fn processes(
        &self,
        _: Request<ProcessesRequest>,
    ) -> Result<Response<ProcessesResponse>, Status> {
        let processes = processes::list()
            .map_err(io_status("reading /proc"))?
            .into_iter()
            .map(|p| ProcessInfo {
                pid: p.pid,
                ppid: p.ppid,
                state: p.state,
                threads: p.threads,
                cpu_time_seconds: p.cpu_time.as_secs_f64(),
                resident_memory_bytes: p.resident_bytes,
                virtual_memory_bytes: p.virtual_bytes,
                command: p.command,
                args: p.args,
            })
            .collect();
        Ok(Response::new(ProcessesResponse {
            messages: vec![ProcessList {
                metadata: self.metadata().await,
                processes,
            }],
        }))
    }

    async fn mounts(&self, _: Request<MountsRequest>) -> Result<Response<MountsResponse>, Status> {
        let mounts = mounts::list()
            .map_err(io_status("reading /proc/self/mountinfo"))?
            .into_iter()
            .map(|m| MountInfo {
                source: m.source,
                fstype: m.fstype,
                mount_point: m.mount_point,
                options: m.options,
                size_bytes: m.size_bytes,
                available_bytes: m.available_bytes,
            })
            .collect();
        Ok(Response::new(MountsResponse {
            messages: vec![MountList {
                metadata: self.metadata().await,
                mounts,
            }],
        }))
    }

    async fn apply_configuration(
        &self,
        request: Request<ApplyConfigurationRequest>,
    ) -> Result<Response<ApplyConfigurationResponse>, Status> {
        let request = request.into_inner();
        let mode = apply_mode(request.mode, request.try_timeout_seconds)?;
        let text = String::from_utf8(request.data)
            .map_err(|_| Status::invalid_argument("configuration rejected: not UTF-8 text"))?;
        let bundle = ConfigBundle::parse(&text).map_err(|e| apply_status(e.into()))?;
        let outcome = self
            .agent
            .apply(bundle, mode, request.dry_run)
            .await
            .map_err(apply_status)?;
        Ok(self.apply_reply(outcome).await)
    }

    async fn patch_configuration(
        &self,
        request: Request<PatchConfigurationRequest>,
    ) -> Result<Response<ApplyConfigurationResponse>, Status> {
        let request = request.into_inner();
        let mode = apply_mode(request.mode, request.try_timeout_seconds)?;
        let patches = request
            .patches
            .iter()
            .map(|text| machine_config::Patch::parse(text))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| apply_status(e.into()))?;
        let outcome = self
            .agent
            .patch(&patches, mode, request.dry_run)
            .await
            .map_err(apply_status)?;
        Ok(self.apply_reply(outcome).await)
    }

    async fn get_configuration(
        &self,
        request: Request<GetConfigurationRequest>,
    ) -> Result<Response<GetConfigurationResponse>, Status> {
        let caller = caller(&request)?;
        let config = self.agent.config().await;
        let config_hash = crate::agent::config_hash(&config);
        let redacted = !caller.role.satisfies(Role::Admin);
        let shown = if redacted { config.redacted() } else { config };
        Ok(Response::new(GetConfigurationResponse {
            messages: vec![Configuration {
                metadata: self.metadata().await,
                data: shown.to_yaml().into_bytes(),
                redacted,
                config_hash,
            }],
        }))
    }

    async fn generate_client_configuration(
        &self,
        request: Request<GenerateClientConfigurationRequest>,
    ) -> Result<Response<GenerateClientConfigurationResponse>, Status> {
        let request = request.into_inner();
        let authority = self.authority.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this node is a worker: client certificates are minted by control-plane nodes",
            )
        })?;
        let role: Role = request
            .role
            .parse()
            .map_err(|e| Status::invalid_argument(format!("{e}")))?;
        if role == Role::Impersonator {
            return Err(Status::invalid_argument(
                "os:impersonator is reserved for control-plane nodes",
            ));
        }
        let ttl = match request.ttl_seconds {
            0 => DEFAULT_CLIENT_TTL,
            seconds => Duration::from_secs(seconds),
        };
        let name = if request.name.is_empty() {
            role.as_str().to_owned()
        } else {
            request.name
        };
        let issued = authority
            .issue_client(&name, role, ttl)
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(%name, %role, ttl = %humantime::format_duration(ttl), "client certificate minted");
        Ok(Response::new(GenerateClientConfigurationResponse {
            messages: vec![ClientConfiguration {
                metadata: self.metadata().await,
                ca: authority.cert_pem().as_bytes().to_vec(),
                crt: issued.cert_pem.into_bytes(),
                key: issued.key_pem.into_bytes(),
            }],
        }))
    }
    async fn kernel_security(
        &self,
        _: Request<KernelSecurityRequest>,
    ) -> Result<Response<KernelSecurityResponse>, Status> {
        let kernel = kernel_release();
        let cmdline =
            std::fs::read_to_string("/proc/cmdline").map_err(io_status("reading /proc/cmdline"))?;
        let config = kernel_security::running_config(&kernel);
        let checks = kernel_security::check(
            kernel_security::policy(),
            &kernel,
            &cmdline,
            config.as_ref(),
            kernel_security::read_sysctl,
        )
        .into_iter()
        .map(|finding| KernelCheck {
            kind: finding.kind.as_str().into(),
            name: finding.name,
            want: finding.want,
            present: finding.got.is_some(),
            got: finding.got.unwrap_or_default(),
            status: finding.status.as_str().into(),
            reason: finding.reason,
        })
        .collect();
        Ok(Response::new(KernelSecurityResponse {
            messages: vec![KernelSecurityReport {
                metadata: self.metadata().await,
                kernel,
                checks,
            }],
        }))
    }
}

/// Cuts `history` into pieces of at most `size` bytes that end at line ends (a line
/// longer than `size` is cut where it must be); the pieces share `history`'s buffer.
fn line_chunks(history: Vec<u8>, size: usize) -> impl Iterator<Item = bytes::Bytes> {
    let history = bytes::Bytes::from(history);
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= history.len() {
            return None;
        }
        let limit = (start + size).min(history.len());
        let end = match history[start..limit].iter().rposition(|&b| b == b'\n') {
            Some(newline) if limit < history.len() => start + newline + 1,
            _ => limit,
        };
        let chunk = history.slice(start..end);
        start = end;
        Some(chunk)
    })
}

fn data<'a>(metadata: &Option<NodeMetadata>, lines: impl Iterator<Item = &'a str>) -> Data {
    let mut bytes = Vec::with_capacity(4096);
    for line in lines {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    Data {
        metadata: metadata.clone(),
        bytes: bytes.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::line_chunks;

    #[test]
    fn chunks_end_at_line_ends_and_cover_everything() {
        let history = b"aaaa\nbb\ncccccc\nd\n".to_vec();
        let chunks: Vec<bytes::Bytes> = line_chunks(history.clone(), 8).collect();
        assert_eq!(
            chunks,
            vec![
                b"aaaa\nbb\n".to_vec(),
                b"cccccc\n".to_vec(),
                b"d\n".to_vec()
            ]
        );
        assert_eq!(chunks.concat(), history);
        let long: Vec<bytes::Bytes> = line_chunks(b"0123456789\n".to_vec(), 4).collect();
        assert_eq!(long.concat(), b"0123456789\n");
        assert_eq!(line_chunks(Vec::new(), 4).count(), 0);
    }
}
