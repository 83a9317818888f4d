//! Images: importing OCI image archives into containerd, listing, removing, and
//! resolving a name to what a container is built from.
//!
//! An import is what `ctr image import` does on the client side, with containerd 1.6's
//! services (it has no transfer service): unpack the archive to scratch space, write
//! each blob into the content store (checked against its digest, with the labels that
//! keep containerd's garbage collector from taking layers of a live image), unpack the
//! layers into overlayfs snapshots named by their chain ids, and point the image record
//! at the manifest. All of it happens under a lease, so a half-done import is never
//! collected midway and never leaves an image record behind.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, CreateRequest as CreateLeaseRequest, DeleteImageRequest,
    DeleteRequest as DeleteLeaseRequest, GetImageRequest, Image, InfoRequest, ListImagesRequest,
    ReadContentRequest, UpdateImageRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor as ContainerdDescriptor;
use futures::StreamExt;
use tracing::info;

use super::oci::{self, Descriptor, ImageConfig, Index, Manifest};
use super::{Containerd, ContainerdError, Result, SNAPSHOTTER, request};

/// Bytes per content write message.
const CHUNK: usize = 1024 * 1024;
/// Leases of imports expire after this, should the agent die midway.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// An image in a namespace, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The full name, e.g. `node-os.local/busybox:1.35`.
    pub name: String,
    /// The digest of its manifest (or index).
    pub digest: String,
    /// Bytes of its config and (compressed) layers, when the manifest is readable.
    pub size: u64,
    /// When it was created (imported), if known.
    pub created: Option<SystemTime>,
}

/// What a container is built from: the image's process defaults and its top snapshot.
#[derive(Debug)]
pub struct ResolvedImage {
    /// The image name.
    pub name: String,
    /// The image config (entrypoint, command, environment, ...).
    pub config: ImageConfig,
    /// The chain id of the top layer: the parent of a container's snapshot.
    pub top_chain_id: String,
}

impl Containerd {
    /// Imports every image of the OCI image archive (layout tarball) at `archive` into
    /// `namespace`; returns their names. A malformed archive is refused with what is
    /// wrong and leaves no image behind.
    pub async fn import(&self, namespace: &str, archive: &Path) -> Result<Vec<String>> {
        let scratch = tempfile::Builder::new()
            .prefix("import-")
            .tempdir_in(&self.paths().work_dir)
            .map_err(|e| ContainerdError::io("creating the import directory", e))?;
        let layout = scratch.path().to_owned();
        let source = archive.to_owned();
        tokio::task::spawn_blocking(move || unpack_archive(&source, &layout))
            .await
            .map_err(|e| {
                ContainerdError::io("unpacking the archive", std::io::Error::other(e))
            })??;
        let images = read_layout(scratch.path())?;
        let lease = self.create_lease(namespace).await?;
        let result = async {
            let mut names = Vec::new();
            for image in &images {
                self.import_one(namespace, &lease, scratch.path(), image)
                    .await?;
                names.push(image.name.clone());
            }
            Ok(names)
        }
        .await;
        self.delete_lease(namespace, &lease).await;
        let names = result?;
        info!(namespace, archive = %archive.display(), images = ?names, "images imported");
        Ok(names)
    }

    /// Imports the archives shipped with the node into `system`, once per boot.
    pub async fn import_shipped(&self) -> Result<()> {
        let Some(dir) = self.paths().shipped_images.clone() else {
            return Ok(());
        };
        self.inner
            .shipped
            .get_or_try_init(|| async {
                let mut archives: Vec<_> = match fs::read_dir(&dir) {
                    Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => {
                        return Err(ContainerdError::io(format!("reading {}", dir.display()), e));
                    }
                };
                archives.retain(|p| p.extension().is_some_and(|e| e == "tar"));
                archives.sort();
                for archive in archives {
                    self.import(super::SYSTEM_NAMESPACE, &archive).await?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// The images of `namespace`, by name.
    pub async fn list_images(&self, namespace: &str) -> Result<Vec<ImageSummary>> {
        let reply = self
            .images()
            .await?
            .list(request(namespace, None, ListImagesRequest::default()))
            .await
            .map_err(|s| ContainerdError::rpc("listing images", s))?;
        let mut images = Vec::new();
        for image in reply.into_inner().images {
            let Some(target) = image.target else { continue };
            let size = match self.manifest_of(namespace, &target).await {
                Ok(manifest) => {
                    let layers: i64 = manifest.layers.iter().map(|l| l.size).sum();
                    u64::try_from(layers + manifest.config.size).unwrap_or(0)
                }
                Err(_) => 0,
            };
            images.push(ImageSummary {
                name: image.name,
                digest: target.digest,
                size,
                created: image.created_at.and_then(|t| SystemTime::try_from(t).ok()),
            });
        }
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// Removes image `name` from `namespace` (its content goes with the next garbage
    /// collection, unless a container still uses it).
    pub async fn remove_image(&self, namespace: &str, name: &str) -> Result<()> {
        self.images()
            .await?
            .delete(request(
                namespace,
                None,
                DeleteImageRequest {
                    name: name.to_owned(),
                    sync: true,
                    target: None,
                },
            ))
            .await
            .map_err(|s| {
                ContainerdError::rpc(format!("removing image {name} from {namespace}"), s)
            })?;
        info!(namespace, image = name, "image removed");
        Ok(())
    }

    /// Resolves image `name` in `namespace` to its config and top snapshot; a missing
    /// image is [`ContainerdError::NotFound`].
    pub async fn resolve(&self, namespace: &str, name: &str) -> Result<ResolvedImage> {
        let image = self
            .images()
            .await?
            .get(request(
                namespace,
                None,
                GetImageRequest {
                    name: name.to_owned(),
                },
            ))
            .await
            .map_err(|s| ContainerdError::rpc(format!("image {name}"), s))?
            .into_inner()
            .image
            .and_then(|image| image.target)
            .ok_or_else(|| ContainerdError::NotFound(format!("image {name} has no target")))?;
        let manifest = self.manifest_of(namespace, &image).await?;
        let config: ImageConfig = parse(
            &self.read_blob(namespace, &manifest.config.digest).await?,
            "image config",
        )?;
        let top_chain_id = oci::chain_ids(&config.rootfs.diff_ids)
            .pop()
            .ok_or_else(|| ContainerdError::Invalid(format!("image {name} has no layers")))?;
        Ok(ResolvedImage {
            name: name.to_owned(),
            config,
            top_chain_id,
        })
    }

    /// The manifest an image target points at (through an index if needed).
    async fn manifest_of(
        &self,
        namespace: &str,
        target: &ContainerdDescriptor,
    ) -> Result<Manifest> {
        let mut digest = target.digest.clone();
        if oci::is_index(&target.media_type) {
            let index: Index = parse(&self.read_blob(namespace, &digest).await?, "image index")?;
            digest = oci::pick_platform(&index)
                .ok_or_else(|| {
                    ContainerdError::Invalid(format!("index {digest} has no linux/amd64 image"))
                })?
                .digest
                .clone();
        }
        parse(&self.read_blob(namespace, &digest).await?, "manifest")
    }

    /// Reads a whole blob from the content store.
    async fn read_blob(&self, namespace: &str, digest: &str) -> Result<Vec<u8>> {
        let mut stream = self
            .content()
            .await?
            .read(request(
                namespace,
                None,
                ReadContentRequest {
                    digest: digest.to_owned(),
                    offset: 0,
                    size: 0,
                },
            ))
            .await
            .map_err(|s| ContainerdError::rpc(format!("reading blob {digest}"), s))?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|s| ContainerdError::rpc(format!("reading blob {digest}"), s))?;
            data.extend_from_slice(&chunk.data);
        }
        Ok(data)
    }

    /// Writes the blobs of one image, unpacks its layers and creates its record.
    async fn import_one(
        &self,
        namespace: &str,
        lease: &str,
        layout: &Path,
        image: &LayoutImage,
    ) -> Result<()> {
        let manifest = &image.manifest;
        let chain = oci::chain_ids(&image.config.rootfs.diff_ids);
        if chain.len() != manifest.layers.len() {
            return Err(ContainerdError::Invalid(format!(
                "image {}: the config lists {} layers, the manifest {}",
                image.name,
                chain.len(),
                manifest.layers.len()
            )));
        }
        for layer in &manifest.layers {
            self.write_blob(namespace, lease, layout, layer, HashMap::new())
                .await?;
        }
        let top = chain.last().cloned().unwrap_or_default();
        let config_labels =
            HashMap::from([(format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"), top)]);
        self.write_blob(namespace, lease, layout, &manifest.config, config_labels)
            .await?;
        let mut manifest_labels = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_owned(),
            manifest.config.digest.clone(),
        )]);
        for (i, layer) in manifest.layers.iter().enumerate() {
            manifest_labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                layer.digest.clone(),
            );
        }
        self.write_blob(namespace, lease, layout, &image.descriptor, manifest_labels)
            .await?;
        self.unpack(
            namespace,
            lease,
            &image.name,
            &manifest.layers,
            &image.config.rootfs.diff_ids,
        )
        .await?;
        self.put_image(namespace, &image.name, &image.descriptor)
            .await
    }

    /// Writes blob `descriptor` from the layout into the content store (skipped when it
    /// is there already); containerd checks size and digest on commit.
    async fn write_blob(
        &self,
        namespace: &str,
        lease: &str,
        layout: &Path,
        descriptor: &Descriptor,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        let digest = descriptor.digest.clone();
        let mut content = self.content().await?;
        let exists = content
            .info(request(
                namespace,
                None,
                InfoRequest {
                    digest: digest.clone(),
                },
            ))
            .await;
        if exists.is_ok() {
            return Ok(());
        }
        let path = blob_path(layout, &digest)?;
        let mut file = File::open(&path).map_err(|e| missing_blob(&digest, e))?;
        let total = descriptor.size;
        let reference = format!("import-{digest}");
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(2);
        let reader = {
            let reference = reference.clone();
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<i64> {
                let mut offset = 0i64;
                let mut buffer = vec![0u8; CHUNK];
                loop {
                    let n = file.read(&mut buffer)?;
                    let last = n == 0;
                    let message = WriteContentRequest {
                        action: if last {
                            WriteAction::Commit
                        } else {
                            WriteAction::Write
                        } as i32,
                        r#ref: reference.clone(),
                        total,
                        expected: digest.clone(),
                        offset,
                        data: buffer[..n].to_vec(),
                        labels: if last { labels.clone() } else { HashMap::new() },
                    };
                    offset += n as i64;
                    if tx.blocking_send(message).is_err() || last {
                        return Ok(offset);
                    }
                }
            })
        };
        let outcome = content
            .write(request(
                namespace,
                Some(lease),
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
            .await;
        let written = reader
            .await
            .map_err(|e| ContainerdError::io("reading a blob", std::io::Error::other(e)))?
            .map_err(|e| ContainerdError::io(format!("reading {}", path.display()), e))?;
        let mut replies = match outcome {
            Ok(replies) => replies.into_inner(),
            Err(status) => return Err(blob_refused(&digest, written, total, status)),
        };
        while let Some(reply) = replies.next().await {
            if let Err(status) = reply {
                return Err(blob_refused(&digest, written, total, status));
            }
        }
        Ok(())
    }

    /// Unpacks layers into snapshots named by their chain ids (present ones are kept).
    async fn unpack(
        &self,
        namespace: &str,
        lease: &str,
        name: &str,
        layers: &[Descriptor],
        diff_ids: &[String],
    ) -> Result<()> {
        let chain = oci::chain_ids(diff_ids);
        let mut snapshots = self.snapshots().await?;
        for (i, layer) in layers.iter().enumerate() {
            let stat = snapshots
                .stat(request(
                    namespace,
                    None,
                    StatSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key: chain[i].clone(),
                    },
                ))
                .await;
            if stat.is_ok() {
                continue;
            }
            let key = format!("extract-{} {}", uuid::Uuid::new_v4(), chain[i]);
            let parent = if i == 0 {
                String::new()
            } else {
                chain[i - 1].clone()
            };
            let mounts = snapshots
                .prepare(request(
                    namespace,
                    Some(lease),
                    PrepareSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key: key.clone(),
                        parent,
                        labels: HashMap::new(),
                    },
                ))
                .await
                .map_err(|s| ContainerdError::rpc(format!("preparing layer {i} of {name}"), s))?
                .into_inner()
                .mounts;
            let applied = self
                .diff()
                .await?
                .apply(request(
                    namespace,
                    Some(lease),
                    ApplyRequest {
                        diff: Some(containerd_descriptor(layer)),
                        mounts,
                        payloads: HashMap::new(),
                        sync_fs: false,
                    },
                ))
                .await;
            let outcome = match applied {
                Ok(reply) => {
                    let got = reply
                        .into_inner()
                        .applied
                        .map(|d| d.digest)
                        .unwrap_or_default();
                    if got == diff_ids[i] {
                        snapshots
                            .commit(request(
                                namespace,
                                Some(lease),
                                CommitSnapshotRequest {
                                    snapshotter: SNAPSHOTTER.into(),
                                    name: chain[i].clone(),
                                    key: key.clone(),
                                    labels: HashMap::new(),
                                },
                            ))
                            .await
                            .map(|_| ())
                            .or_else(|s| {
                                // Another import committed the same layer meanwhile.
                                if s.code() == tonic::Code::AlreadyExists {
                                    Ok(())
                                } else {
                                    Err(s)
                                }
                            })
                            .map_err(|s| {
                                ContainerdError::rpc(format!("committing layer {i} of {name}"), s)
                            })
                    } else {
                        Err(ContainerdError::Invalid(format!(
                            "image {name}: layer {i} unpacks to {got}, the config says {}",
                            diff_ids[i]
                        )))
                    }
                }
                Err(s) => Err(ContainerdError::rpc(
                    format!("unpacking layer {i} of {name}"),
                    s,
                )),
            };
            if outcome.is_err() {
                let _ = snapshots
                    .remove(request(
                        namespace,
                        None,
                        RemoveSnapshotRequest {
                            snapshotter: SNAPSHOTTER.into(),
                            key,
                        },
                    ))
                    .await;
            }
            outcome?;
        }
        Ok(())
    }

    /// Creates the image record, or points an existing one at the new manifest.
    async fn put_image(&self, namespace: &str, name: &str, target: &Descriptor) -> Result<()> {
        let image = Image {
            name: name.to_owned(),
            labels: HashMap::new(),
            target: Some(containerd_descriptor(target)),
            created_at: None,
            updated_at: None,
        };
        let mut images = self.images().await?;
        let created = images
            .create(request(
                namespace,
                None,
                CreateImageRequest {
                    image: Some(image.clone()),
                    source_date_epoch: None,
                },
            ))
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::AlreadyExists => images
                .update(request(
                    namespace,
                    None,
                    UpdateImageRequest {
                        image: Some(image),
                        update_mask: None,
                        source_date_epoch: None,
                    },
                ))
                .await
                .map(|_| ())
                .map_err(|s| ContainerdError::rpc(format!("updating image {name}"), s)),
            Err(s) => Err(ContainerdError::rpc(format!("creating image {name}"), s)),
        }
    }

    /// A lease that protects an import's content and snapshots until it is done.
    async fn create_lease(&self, namespace: &str) -> Result<String> {
        let expires = humantime::format_rfc3339_seconds(SystemTime::now() + LEASE_EXPIRY);
        let id = format!("node-agent-import-{}", uuid::Uuid::new_v4());
        self.leases()
            .await?
            .create(request(
                namespace,
                None,
                CreateLeaseRequest {
                    id: id.clone(),
                    labels: HashMap::from([(
                        "containerd.io/gc.expire".to_owned(),
                        expires.to_string(),
                    )]),
                },
            ))
            .await
            .map_err(|s| ContainerdError::rpc("creating an import lease", s))?;
        Ok(id)
    }

    /// Ends a lease; what the import made is referenced by the image by now.
    async fn delete_lease(&self, namespace: &str, id: &str) {
        if let Ok(mut leases) = self.leases().await {
            let _ = leases
                .delete(request(
                    namespace,
                    None,
                    DeleteLeaseRequest {
                        id: id.to_owned(),
                        sync: false,
                    },
                ))
                .await;
        }
    }
}

/// One image of an archive: its name, manifest descriptor and parsed documents.
#[derive(Debug)]
struct LayoutImage {
    name: String,
    descriptor: Descriptor,
    manifest: Manifest,
    config: ImageConfig,
}

/// Unpacks the tar archive at `archive` into `dir` (no path may leave it).
fn unpack_archive(archive: &Path, dir: &Path) -> Result<()> {
    let file = File::open(archive)
        .map_err(|e| ContainerdError::io(format!("opening {}", archive.display()), e))?;
    tar::Archive::new(file).unpack(dir).map_err(|e| {
        ContainerdError::Invalid(format!(
            "{} is not a readable tar archive: {e}",
            archive.display()
        ))
    })
}

/// Reads the images of an unpacked OCI layout: index.json, each manifest and config.
fn read_layout(layout: &Path) -> Result<Vec<LayoutImage>> {
    let index_path = layout.join("index.json");
    let index: Index = match fs::read(&index_path) {
        Ok(data) => parse(&data, "index.json")?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ContainerdError::Invalid(
                "the archive is not an OCI image layout: it has no index.json".into(),
            ));
        }
        Err(e) => return Err(ContainerdError::io("reading index.json", e)),
    };
    if index.manifests.is_empty() {
        return Err(ContainerdError::Invalid("index.json lists no image".into()));
    }
    let mut images = Vec::new();
    for (i, entry) in index.manifests.iter().enumerate() {
        let name = image_name(entry).ok_or_else(|| {
            ContainerdError::Invalid(format!(
                "index.json manifests[{i}] has no image name (annotation {} or a full {})",
                oci::CONTAINERD_NAME,
                oci::REF_NAME
            ))
        })?;
        let descriptor = if oci::is_index(&entry.media_type) {
            let nested: Index = parse(&read_blob_file(layout, entry)?, "nested index")?;
            oci::pick_platform(&nested)
                .ok_or_else(|| {
                    ContainerdError::Invalid(format!("{name}: the index has no linux/amd64 image"))
                })?
                .clone()
        } else if oci::is_manifest(&entry.media_type) {
            entry.clone()
        } else {
            return Err(ContainerdError::Invalid(format!(
                "index.json manifests[{i}] has media type {:?}, not an image manifest",
                entry.media_type
            )));
        };
        let manifest: Manifest = parse(&read_blob_file(layout, &descriptor)?, "manifest")?;
        let config: ImageConfig =
            parse(&read_blob_file(layout, &manifest.config)?, "image config")?;
        for layer in &manifest.layers {
            let path = blob_path(layout, &layer.digest)?;
            if !path.is_file() {
                return Err(missing_blob(
                    &layer.digest,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
        }
        images.push(LayoutImage {
            name,
            descriptor,
            manifest,
            config,
        });
    }
    Ok(images)
}

/// The full image name an index entry carries.
fn image_name(entry: &Descriptor) -> Option<String> {
    if let Some(name) = entry.annotations.get(oci::CONTAINERD_NAME) {
        return Some(name.clone());
    }
    // A ref.name is either a full reference or only a tag; only the former names an image.
    let reference = entry.annotations.get(oci::REF_NAME)?;
    reference.contains('/').then(|| reference.clone())
}

/// Reads a (small) blob of the layout and checks it against its descriptor.
fn read_blob_file(layout: &Path, descriptor: &Descriptor) -> Result<Vec<u8>> {
    let path = blob_path(layout, &descriptor.digest)?;
    let data = fs::read(&path).map_err(|e| missing_blob(&descriptor.digest, e))?;
    if oci::sha256(&data) != descriptor.digest {
        return Err(ContainerdError::Invalid(format!(
            "blob {} does not match its digest",
            descriptor.digest
        )));
    }
    Ok(data)
}

/// `blobs/sha256/<hex>` of a layout, for a well-formed digest only.
fn blob_path(layout: &Path, digest: &str) -> Result<std::path::PathBuf> {
    let hex = oci::sha256_hex(digest)
        .ok_or_else(|| ContainerdError::Invalid(format!("{digest:?} is not a sha256 digest")))?;
    Ok(layout.join("blobs/sha256").join(hex))
}

fn missing_blob(digest: &str, e: std::io::Error) -> ContainerdError {
    ContainerdError::Invalid(format!("the archive lacks blob {digest}: {e}"))
}

fn blob_refused(digest: &str, written: i64, total: i64, status: tonic::Status) -> ContainerdError {
    if written != total {
        ContainerdError::Invalid(format!(
            "blob {digest} has {written} bytes, its descriptor says {total}"
        ))
    } else if status.code() == tonic::Code::FailedPrecondition
        || status.code() == tonic::Code::InvalidArgument
    {
        ContainerdError::Invalid(format!("blob {digest} refused: {}", status.message()))
    } else {
        ContainerdError::rpc(format!("writing blob {digest}"), status)
    }
}

fn containerd_descriptor(descriptor: &Descriptor) -> ContainerdDescriptor {
    ContainerdDescriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size,
        annotations: HashMap::new(),
    }
}

/// Parses a JSON document of the image format, naming it in the error.
fn parse<T: serde::de::DeserializeOwned>(data: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(data)
        .map_err(|e| ContainerdError::Invalid(format!("the {what} is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a minimal layout whose index entry is `annotations` and whose blobs are
    /// as given.
    fn layout(dir: &Path, index: serde_json::Value, blobs: &[&[u8]]) {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        for blob in blobs {
            let digest = oci::sha256(blob);
            fs::write(blob_path(dir, &digest).unwrap(), blob).unwrap();
        }
        fs::write(dir.join("index.json"), index.to_string()).unwrap();
    }

    fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
        serde_json::json!({"mediaType": media_type, "digest": oci::sha256(data), "size": data.len()})
    }

    #[test]
    fn reads_a_layout_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read_layout(dir.path())
                .unwrap_err()
                .to_string()
                .contains("no index.json")
        );

        let layer = b"layer bytes".as_slice();
        let config =
            serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [oci::sha256(layer)]},
            "config": {"Entrypoint": ["/bin/busybox"], "Cmd": ["sleep", "1"]}})
            .to_string();
        let manifest = serde_json::json!({"schemaVersion": 2,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config.as_bytes()),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)]})
        .to_string();
        let mut entry = descriptor(oci::MANIFEST, manifest.as_bytes());
        entry["annotations"] = serde_json::json!({oci::REF_NAME: "1.35"});
        layout(
            dir.path(),
            serde_json::json!({"manifests": [entry.clone()]}),
            &[layer, config.as_bytes(), manifest.as_bytes()],
        );
        // A bare tag does not name an image.
        assert!(
            read_layout(dir.path())
                .unwrap_err()
                .to_string()
                .contains("has no image name")
        );

        entry["annotations"] =
            serde_json::json!({oci::CONTAINERD_NAME: "node-os.local/busybox:1.35"});
        fs::write(
            dir.path().join("index.json"),
            serde_json::json!({"manifests": [entry.clone()]}).to_string(),
        )
        .unwrap();
        let images = read_layout(dir.path()).expect("valid layout");
        assert_eq!(images[0].name, "node-os.local/busybox:1.35");
        assert_eq!(
            images[0].config.config.entrypoint.as_deref(),
            Some(["/bin/busybox".to_owned()].as_slice())
        );

        // A corrupted config blob is caught by its digest.
        let config_path = blob_path(dir.path(), &oci::sha256(config.as_bytes())).unwrap();
        fs::write(&config_path, b"{}").unwrap();
        assert!(
            read_layout(dir.path())
                .unwrap_err()
                .to_string()
                .contains("does not match its digest")
        );
        fs::remove_file(blob_path(dir.path(), &oci::sha256(layer)).unwrap()).unwrap();
        fs::write(&config_path, &config).unwrap();
        assert!(
            read_layout(dir.path())
                .unwrap_err()
                .to_string()
                .contains("lacks blob")
        );
    }

    #[test]
    fn refuses_what_is_not_a_tar() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("image.tar");
        fs::write(&archive, vec![0x42; 2048]).unwrap();
        let err = unpack_archive(&archive, &dir.path().join("out")).unwrap_err();
        assert!(
            err.to_string().contains("is not a readable tar archive"),
            "{err}"
        );
    }
}
