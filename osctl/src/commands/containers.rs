//! Container and image commands: `ps`, `restart`, `image ls|import|rm`.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use api::machine::*;
use futures::StreamExt;
use serde::Serialize;

use super::Session;
use super::node::{call_failed, finish, node_rows};
use crate::output::{self, Row};

/// Bytes per upload message of `image import`.
const UPLOAD_CHUNK: usize = 256 * 1024;

#[derive(Debug, Serialize)]
struct ContainerRow {
    namespace: String,
    id: String,
    image: String,
    pid: Option<u32>,
    status: String,
}

impl Row for ContainerRow {
    fn headers() -> &'static [&'static str] {
        &["NAMESPACE", "ID", "IMAGE", "PID", "STATUS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.namespace.clone(),
            self.id.clone(),
            self.image.clone(),
            self.pid
                .map_or_else(|| "-".to_owned(), |pid| pid.to_string()),
            self.status.clone(),
        ]
    }
}

/// `osctl ps [-k]`.
pub async fn ps(session: &Session, namespace: &str) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .containers(conn.request(ContainersRequest {
            namespace: namespace.to_owned(),
        }))
        .await
        .map_err(call_failed("ps"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, |list| {
            list.containers
                .into_iter()
                .map(|c| ContainerRow {
                    namespace: c.namespace,
                    id: c.id,
                    image: c.image,
                    pid: (c.pid != 0).then_some(c.pid),
                    status: c.status,
                })
                .collect()
        }),
    )
}

#[derive(Debug, Serialize)]
struct RestartRow {
    id: String,
    pid: u32,
}

impl Row for RestartRow {
    fn headers() -> &'static [&'static str] {
        &["ID", "NEW PID"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.id.clone(), self.pid.to_string()]
    }
}

/// `osctl restart ID [-k]`.
pub async fn restart(session: &Session, namespace: &str, id: &str) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .restart(conn.request(RestartRequest {
            namespace: namespace.to_owned(),
            id: id.to_owned(),
        }))
        .await
        .map_err(call_failed("restart"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, |result| {
            vec![RestartRow {
                id: id.to_owned(),
                pid: result.pid,
            }]
        }),
    )
}

#[derive(Debug, Serialize)]
struct ImageRow {
    namespace: String,
    name: String,
    digest: String,
    size_bytes: u64,
    /// Unix time of the import.
    created: Option<i64>,
}

impl Row for ImageRow {
    fn headers() -> &'static [&'static str] {
        &["NAMESPACE", "NAME", "DIGEST", "SIZE", "IMPORTED"]
    }
    fn cells(&self) -> Vec<String> {
        let short = self
            .digest
            .strip_prefix("sha256:")
            .map_or(self.digest.as_str(), |hex| &hex[..hex.len().min(12)]);
        vec![
            self.namespace.clone(),
            self.name.clone(),
            short.to_owned(),
            output::bytes(self.size_bytes),
            self.created.map_or_else(
                || "-".to_owned(),
                |t| {
                    let time = UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
                    humantime::format_rfc3339_seconds(time).to_string()
                },
            ),
        ]
    }
}

/// `osctl image ls [-k]`.
pub async fn images(session: &Session, namespace: &str) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .image_list(conn.request(ImageListRequest {
            namespace: namespace.to_owned(),
        }))
        .await
        .map_err(call_failed("image ls"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, |list| {
            let namespace = list.namespace;
            list.images
                .into_iter()
                .map(|image| ImageRow {
                    namespace: namespace.clone(),
                    name: image.name,
                    digest: image.digest,
                    size_bytes: image.size,
                    created: (image.created_at != 0).then_some(image.created_at),
                })
                .collect()
        }),
    )
}

#[derive(Debug, Serialize)]
struct ImportRow {
    image: String,
}

impl Row for ImportRow {
    fn headers() -> &'static [&'static str] {
        &["IMPORTED"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.image.clone()]
    }
}

/// `osctl image import FILE [-k]`: streams the archive to one node.
pub async fn import(session: &Session, namespace: &str, file: &Path) -> anyhow::Result<()> {
    let data = tokio::fs::read(file)
        .await
        .with_context(|| format!("reading {}", file.display()))?;
    let total = data.len();
    let conn = session.connect_to_endpoint().await?;
    let namespace = namespace.to_owned();
    let data = std::sync::Arc::new(data);
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let messages = futures::stream::iter(0..total.div_ceil(UPLOAD_CHUNK)).map(move |i| {
        let start = i * UPLOAD_CHUNK;
        let end = (start + UPLOAD_CHUNK).min(total);
        if progress {
            eprint!(
                "\ruploading {} / {}{}",
                output::bytes(end as u64),
                output::bytes(total as u64),
                if end == total { "\n" } else { "" }
            );
        }
        ImageImportRequest {
            // The namespace is read from the first message.
            namespace: if i == 0 {
                namespace.clone()
            } else {
                String::new()
            },
            chunk: data[start..end].to_vec(),
        }
    });
    let reply = conn
        .client
        .clone()
        .image_import(conn.request(messages))
        .await
        .map_err(call_failed("image import"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, |result| {
            result
                .images
                .into_iter()
                .map(|image| ImportRow { image })
                .collect()
        }),
    )
}

#[derive(Debug, Serialize)]
struct RemoveRow {
    removed: String,
}

impl Row for RemoveRow {
    fn headers() -> &'static [&'static str] {
        &["REMOVED"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.removed.clone()]
    }
}

/// `osctl image rm NAME [-k]`.
pub async fn remove(session: &Session, namespace: &str, name: &str) -> anyhow::Result<()> {
    let conn = session.connect().await?;
    let reply = conn
        .client
        .clone()
        .image_remove(conn.request(ImageRemoveRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }))
        .await
        .map_err(call_failed("image rm"))?;
    finish(
        session,
        &node_rows(reply.into_inner().messages, |_| {
            vec![RemoveRow {
                removed: name.to_owned(),
            }]
        }),
    )
}
