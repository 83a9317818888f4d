//! Maintenance mode: how a node without configuration gets one.
//!
//! As in Talos, a node that boots with no configuration serves TLS with a throw-away
//! self-signed certificate and asks for no client certificate; the auth layer's
//! maintenance policy lets through only Version and ApplyConfiguration. A valid
//! configuration is written to the state directory and the boot continues in normal
//! mode on the same address; an invalid one is refused with its field named, and the
//! node stays in maintenance mode.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api::machine::machine_service_server::MachineService;
use api::machine::*;
use machine_config::ConfigBundle;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::machine::{apply_status, version_info};
use crate::agent::{ApplyError, Boot, config_hash};
use crate::config_store::ConfigStore;
use crate::platform::Platform;

/// Lifetime of the maintenance certificate; it is made anew at every boot.
const MAINTENANCE_CERT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The maintenance-mode MachineService: Version and ApplyConfiguration only (the
/// other methods answer `unimplemented`, and the auth layer refuses them first).
pub struct MaintenanceApi {
    platform: Arc<dyn Platform>,
    boot: Boot,
    store: ConfigStore,
    name: String,
    accepted: watch::Sender<Option<ConfigBundle>>,
}

impl MaintenanceApi {
    /// The API of a node on `listen`; an accepted configuration is published on
    /// `accepted`.
    pub fn new(
        platform: Arc<dyn Platform>,
        boot: Boot,
        store: ConfigStore,
        listen: SocketAddr,
        accepted: watch::Sender<Option<ConfigBundle>>,
    ) -> Self {
        Self {
            platform,
            boot,
            store,
            name: listen.ip().to_string(),
            accepted,
        }
    }

    fn metadata(&self) -> Option<NodeMetadata> {
        Some(NodeMetadata {
            hostname: self.name.clone(),
            error: String::new(),
        })
    }
}

/// The maintenance server's certificate and key: self-signed by a CA made for this
/// boot alone, so clients cannot verify it (they connect with `--insecure`).
pub fn certificate(listen: SocketAddr) -> Result<pki::CertifiedKey, pki::Error> {
    let authority = pki::CertificateAuthority::generate("maintenance")?;
    let mut names = vec!["localhost".to_owned()];
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    authority.issue_server("maintenance", &names, MAINTENANCE_CERT_TTL)
}

#[tonic::async_trait]
impl MachineService for MaintenanceApi {
    async fn version(
        &self,
        _: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            messages: vec![VersionInfo {
                metadata: self.metadata(),
                maintenance: true,
                ..version_info(self.platform.as_ref(), &self.boot)
            }],
        }))
    }

    async fn apply_configuration(
        &self,
        request: Request<ApplyConfigurationRequest>,
    ) -> Result<Response<ApplyConfigurationResponse>, Status> {
        let request = request.into_inner();
        let text = String::from_utf8(request.data)
            .map_err(|_| Status::invalid_argument("configuration rejected: not UTF-8 text"))?;
        let bundle =
            ConfigBundle::parse(&text).map_err(|e| apply_status(ApplyError::Invalid(e)))?;
        let problems = self.platform.check(&bundle.config.machine);
        if !problems.is_empty() {
            return Err(apply_status(ApplyError::Unsupported(problems)));
        }
        let (details, hash) = if request.dry_run {
            (
                "dry run: the configuration is valid; nothing was changed",
                String::new(),
            )
        } else {
            self.store
                .write_running(&bundle)
                .map_err(|e| apply_status(ApplyError::Store(e)))?;
            let hash = config_hash(&bundle);
            tracing::info!(%hash, "configuration received: leaving maintenance mode");
            self.accepted.send_replace(Some(bundle));
            ("configuration written: leaving maintenance mode", hash)
        };
        Ok(Response::new(ApplyConfigurationResponse {
            messages: vec![ApplyConfiguration {
                metadata: self.metadata(),
                mode: ApplyMode::Auto.into(),
                mode_details: details.into(),
                diff: String::new(),
                config_hash: hash,
            }],
        }))
    }
}
