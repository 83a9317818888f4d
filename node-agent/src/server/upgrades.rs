//! The upgrade handlers of the MachineService (Upgrade, Rollback, Events, and the slot
//! fields of Version): translations between the API messages and [`crate::upgrade`].

use std::time::UNIX_EPOCH;

use api::machine::*;
use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use os_image::entry::Slot;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::machine::MachineApi;
use crate::upgrade::events::Event as NodeEvent;
use crate::upgrade::{self, Progress, ProgressSender, UpgradeError, UpgradeOptions as Options};

/// The gRPC status of an upgrade error.
fn upgrade_status(error: UpgradeError) -> Status {
    let message = error.to_string();
    match error {
        UpgradeError::Unavailable(_) | UpgradeError::Refused(_) => {
            Status::failed_precondition(message)
        }
        UpgradeError::Busy => Status::aborted(message),
        UpgradeError::Bundle(_) | UpgradeError::Transfer(_) => Status::invalid_argument(message),
        UpgradeError::Io { .. } => Status::internal(message),
    }
}

impl MachineApi {
    /// The slot fields of Version.
    pub(super) fn slot_info(&self, info: &mut VersionInfo) {
        let upgrades = &self.agent.upgrades;
        let Ok(slots) = upgrades.slots() else {
            return;
        };
        let booted = slots.booted_slot();
        info.slot = booted.letter().to_string();
        let installed = slots.installed().unwrap_or_default();
        info.slots = Slot::ALL
            .iter()
            .map(
                |&slot| match installed.iter().find(|e| e.name.slot == slot) {
                    Some(entry) => SlotInfo {
                        slot: slot.letter().to_string(),
                        version: entry.version.clone(),
                        state: entry.name.state().to_string(),
                        generation: entry.name.generation,
                        booted: slot == booted,
                    },
                    None => SlotInfo {
                        slot: slot.letter().to_string(),
                        state: "empty".into(),
                        booted: slot == booted,
                        ..SlotInfo::default()
                    },
                },
            )
            .collect();
        if let Some(version) = upgrades.booted_version() {
            info.os_version = version;
        }
        info.rolled_back = upgrades.fallback().map(|f| Rollback {
            from_version: f.from_version.clone(),
            from_slot: f.from_slot.letter().to_string(),
            reason: f.reason.clone(),
        });
    }

    pub(super) async fn upgrade_node(
        &self,
        request: Request<Streaming<UpgradeRequest>>,
    ) -> Result<Response<BoxStream<'static, Result<UpgradeProgress, Status>>>, Status> {
        let agent = self.agent.clone();
        agent.upgrades.slots().map_err(upgrade_status)?;
        let busy = agent.upgrades.try_begin().map_err(upgrade_status)?;
        let mut requests = request.into_inner();
        let first = requests
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("the request stream was empty"))??;
        let options = first.options.clone().ok_or_else(|| {
            Status::invalid_argument("the first message must carry the upgrade options")
        })?;
        let install_options = Options {
            stage: options.stage,
            force: options.force,
            preserve: options.preserve,
        };
        let (progress_tx, progress_rx) = mpsc::channel(16);
        let (result_tx, result_rx) = oneshot::channel();
        tokio::spawn(async move {
            let _busy = busy;
            let progress = ProgressSender::new(progress_tx);
            let dir = agent.upgrades.download_dir().to_path_buf();
            let result = async {
                let file = if options.url.is_empty() {
                    let chunks = stream::iter([Ok(first.chunk.into())])
                        .chain(requests.map(|m| m.map(|m| bytes::Bytes::from(m.chunk))));
                    upgrade::source::receive(chunks, options.size, &dir, &progress).await?
                } else {
                    let ca = agent.config().await.config.machine.upgrade.ca_certificates;
                    upgrade::source::download(&options.url, ca.as_deref(), &dir, &progress).await?
                };
                if !options.sha256.is_empty() {
                    upgrade::source::check_sha256(&file, &options.sha256).await?;
                }
                upgrade::install(&agent, file, install_options, &progress).await
            }
            .await;
            if let Err(e) = &result {
                tracing::warn!(error = %e, "upgrade refused or failed");
            }
            let _ = result_tx.send(result);
        });
        let metadata = self.metadata().await;
        let progress = ReceiverStream::new(progress_rx).map(move |p: Progress| {
            Ok(UpgradeProgress {
                metadata: metadata.clone(),
                phase: p.phase.into(),
                done_bytes: p.done,
                total_bytes: p.total,
                message: p.message,
                version: p.version,
                slot: p.slot,
            })
        });
        let outcome = stream::once(result_rx).filter_map(|result| async move {
            match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(Err(upgrade_status(e))),
                Err(_) => Some(Err(Status::internal("the upgrade stopped unexpectedly"))),
            }
        });
        Ok(Response::new(progress.chain(outcome).boxed()))
    }

    pub(super) async fn roll_back(
        &self,
        _: Request<RollbackRequest>,
    ) -> Result<Response<RollbackResponse>, Status> {
        let previous = upgrade::roll_back(&self.agent)
            .await
            .map_err(upgrade_status)?;
        Ok(Response::new(RollbackResponse {
            messages: vec![RollbackResult {
                metadata: self.metadata().await,
                version: previous.version,
                slot: previous.name.slot.letter().to_string(),
            }],
        }))
    }

    pub(super) async fn node_events(
        &self,
        request: Request<EventsRequest>,
    ) -> Result<Response<BoxStream<'static, Result<Event, Status>>>, Status> {
        let (past, new) = self.agent.upgrades.events.subscribe();
        let metadata = self.metadata().await;
        let boot_id = self.agent.boot.id.clone();
        let to_message = move |event: NodeEvent| Event {
            metadata: metadata.clone(),
            time_ms: event
                .time
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            kind: event.kind.as_str().into(),
            message: event.message,
            boot_id: boot_id.clone(),
            version: event.version,
        };
        let past = stream::iter(past);
        let events = if request.into_inner().follow {
            let later = tokio_stream::wrappers::BroadcastStream::new(new)
                .filter_map(|event| async move { event.ok() });
            past.chain(later).boxed()
        } else {
            past.boxed()
        };
        Ok(Response::new(
            events.map(move |e| Ok(to_message(e))).boxed(),
        ))
    }
}
