//! OCI images from files: `image-builder oci`, and the images the root image ships
//! (see docs/image.md, "OCI images").
//!
//! An [`Image`] is a name, a runtime [`Config`] and one layer (an [`Archive`] of
//! files). [`Image::layout`] writes it as an OCI image layout in a tar file, the format
//! `ctr image import`, `docker load` and skopeo's `oci-archive:` read:
//!
//! ```text
//! oci-layout                  {"imageLayoutVersion":"1.0.0"}
//! index.json                  one manifest, named by its annotations
//! blobs/sha256/<manifest>     application/vnd.oci.image.manifest.v1+json
//! blobs/sha256/<config>       application/vnd.oci.image.config.v1+json
//! blobs/sha256/<layer>        application/vnd.oci.image.layer.v1.tar
//! ```
//!
//! The layer is an uncompressed tar, so its digest is also its `diff_id`. The layouts
//! the root image ships sit in a zstd-compressed squashfs, which would not shrink a
//! gzip layer further, and containerd unpacks either. Both tar files are written by
//! [`crate::build::tar`]: sorted entries, owner 0:0, one mtime. The same inputs give
//! the same bytes, hence the same digests.
//!
//! - [`reference`]: image names.
//! - [`contents`]: layers from Debian packages, files and links, and the command.

pub mod contents;
pub mod error;
pub mod reference;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::build::archive::{Archive, Kind};
use crate::build::manifest::sha256_bytes;
use crate::build::tar;
pub use error::ParseError;
pub use reference::Reference;

/// The media type of an image index (`index.json`).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The media type of an image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of an image configuration.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The media type of our layers: an uncompressed tar.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// The annotation that names the image for containerd (`ctr image import` and the
/// node agent): the full name.
pub const IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// The OCI annotation for the name within the layout: the tag.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The `PATH` a configuration gets unless it sets its own, as Docker's images do.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a container of the image runs: the OCI configuration's `config` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// The environment, `KEY=VALUE`, one per key.
    #[serde(rename = "Env", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// The executable and its first arguments.
    #[serde(rename = "Entrypoint", skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// The default arguments (replaced by a container's own).
    #[serde(rename = "Cmd", skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// The working directory (`/` when empty).
    #[serde(rename = "WorkingDir", skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            env: vec![DEFAULT_PATH.to_owned()],
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            working_dir: String::new(),
        }
    }
}

impl Config {
    /// Sets `KEY=VALUE`, replacing an earlier value of `KEY` in place.
    pub fn set_env(&mut self, variable: &str) -> Result<(), ParseError> {
        let key = match variable.split_once('=') {
            Some((key, _)) if !key.is_empty() => key,
            _ => {
                return Err(ParseError::InvalidSpec {
                    spec: variable.to_owned(),
                    reason: "expected KEY=VALUE".into(),
                });
            }
        };
        match self
            .env
            .iter_mut()
            .find(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
        {
            Some(existing) => variable.clone_into(existing),
            None => self.env.push(variable.to_owned()),
        }
        Ok(())
    }
}

/// An image: its name, its configuration and its one layer.
#[derive(Debug, Clone)]
pub struct Image {
    /// The name it is imported under.
    pub reference: Reference,
    /// What its containers run.
    pub config: Config,
    /// Its files.
    pub layer: Archive,
}

/// A blob of a layout: its media type, digest and size, as manifests and indexes
/// refer to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    /// What the blob is.
    #[serde(rename = "mediaType")]
    pub media_type: &'static str,
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
    /// Its length in bytes.
    pub size: u64,
    /// The names of a manifest in `index.json`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<&'static str, String>,
    /// The platform of a manifest in `index.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    fn of(media_type: &'static str, blob: &[u8]) -> Self {
        Self {
            media_type,
            digest: format!("sha256:{}", sha256_bytes(blob)),
            size: blob.len() as u64,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

/// The platform every image is for: the node's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// The CPU architecture, in Go's terms.
    pub architecture: &'static str,
    /// The operating system.
    pub os: &'static str,
}

/// The only platform: nodes are x86_64 Linux (see `image-builder build`).
pub const PLATFORM: Platform = Platform {
    architecture: "amd64",
    os: "linux",
};

#[derive(Serialize)]
struct ImageConfig<'a> {
    created: String,
    architecture: &'static str,
    os: &'static str,
    config: &'a Config,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: &'a Descriptor,
    layers: [&'a Descriptor; 1],
}

#[derive(Serialize)]
struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: [&'a Descriptor; 1],
}

/// An image written as an OCI layout tar file.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The tar file.
    pub tar: Vec<u8>,
    /// The manifest's descriptor, as `index.json` lists it: its digest is the image's
    /// digest in containerd (`ctr image ls`).
    pub manifest: Descriptor,
}

impl Image {
    /// Writes the image as an OCI layout tar file, every file of both tars with the
    /// mtime `mtime`, which is also the image's `created` time.
    pub fn layout(&self, mtime: u64) -> Layout {
        let layer = tar::write(&self.layer, mtime);
        let layer_descriptor = Descriptor::of(LAYER_MEDIA_TYPE, &layer);
        let config = json(&ImageConfig {
            created: rfc3339(mtime),
            architecture: PLATFORM.architecture,
            os: PLATFORM.os,
            config: &self.config,
            rootfs: RootFs {
                kind: "layers",
                // Uncompressed: the layer's digest is the digest of its tar.
                diff_ids: vec![layer_descriptor.digest.clone()],
            },
        });
        let config_descriptor = Descriptor::of(CONFIG_MEDIA_TYPE, &config);
        let manifest = json(&Manifest {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE,
            config: &config_descriptor,
            layers: [&layer_descriptor],
        });
        let mut manifest_descriptor = Descriptor::of(MANIFEST_MEDIA_TYPE, &manifest);
        manifest_descriptor.annotations = BTreeMap::from([
            (IMAGE_NAME_ANNOTATION, self.reference.to_string()),
            (REF_NAME_ANNOTATION, self.reference.tag().to_owned()),
        ]);
        manifest_descriptor.platform = Some(PLATFORM);
        let index = json(&Index {
            schema_version: 2,
            media_type: INDEX_MEDIA_TYPE,
            manifests: [&manifest_descriptor],
        });

        let mut layout = Archive::new();
        layout.add(
            "oci-layout",
            Kind::File(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            0o644,
        );
        layout.add("index.json", Kind::File(index), 0o644);
        for (descriptor, blob) in [
            (&manifest_descriptor, manifest),
            (&config_descriptor, config),
            (&layer_descriptor, layer),
        ] {
            let path = format!("blobs/{}", descriptor.digest.replacen(':', "/", 1));
            layout.add(&path, Kind::File(blob), 0o644);
        }
        Layout {
            tar: tar::write(&layout, mtime),
            manifest: manifest_descriptor,
        }
    }
}

/// Seconds since the epoch as an RFC 3339 UTC time, `2025-01-01T00:00:00Z`.
fn rfc3339(seconds: u64) -> String {
    let (days, time) = (seconds / 86_400, seconds % 86_400);
    // The civil date of a day number (Howard Hinnant's days_from_civil inverse), in
    // eras of 400 years from 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// Compact JSON: struct fields in declaration order, maps sorted, so the bytes (and
/// the digests) are stable.
fn json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("OCI documents serialize: strings and numbers only")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tar::read;
    use serde_json::Value;

    const EPOCH: u64 = 1_735_689_600;

    fn busybox() -> Image {
        let mut layer = Archive::new();
        layer.add("bin/busybox", Kind::File(b"\x7fELF static".to_vec()), 0o755);
        layer.add("bin/sh", Kind::Symlink("busybox".into()), 0o777);
        let mut config = Config {
            cmd: vec!["sh".into()],
            ..Config::default()
        };
        config.set_env("GREETING=hello").unwrap();
        Image {
            reference: "node-os.local/busybox:1.35.0".parse().unwrap(),
            config,
            layer,
        }
    }

    /// Reads a layout back: the blobs by digest, after checking that every blob's
    /// name is the sha256 of its bytes.
    fn blobs(tar: &[u8]) -> (Vec<read::Entry>, BTreeMap<String, Vec<u8>>) {
        let entries = read::entries(tar);
        let mut blobs = BTreeMap::new();
        for entry in &entries {
            if let Some(hex) = entry.path.strip_prefix("blobs/sha256/") {
                if hex.is_empty() {
                    continue;
                }
                assert_eq!(sha256_bytes(&entry.data), hex, "{}", entry.path);
                blobs.insert(format!("sha256:{hex}"), entry.data.clone());
            }
        }
        (entries, blobs)
    }

    /// The blob a descriptor names, checking its size and media type.
    fn follow<'a>(
        blobs: &'a BTreeMap<String, Vec<u8>>,
        descriptor: &Value,
        media_type: &str,
    ) -> &'a [u8] {
        assert_eq!(descriptor["mediaType"], media_type);
        let blob = &blobs[descriptor["digest"].as_str().unwrap()];
        assert_eq!(descriptor["size"].as_u64().unwrap(), blob.len() as u64);
        blob
    }

    #[test]
    fn the_layout_reads_back_from_index_to_layer() {
        let layout = busybox().layout(EPOCH);
        let (entries, blobs) = blobs(&layout.tar);
        assert_eq!(blobs.len(), 3);
        let get = |path: &str| &entries.iter().find(|e| e.path == path).unwrap().data;
        assert_eq!(get("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#);

        let index: Value = serde_json::from_slice(get("index.json")).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], INDEX_MEDIA_TYPE);
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 1);
        let descriptor = &manifests[0];
        assert_eq!(
            descriptor["annotations"][IMAGE_NAME_ANNOTATION],
            "node-os.local/busybox:1.35.0"
        );
        assert_eq!(descriptor["annotations"][REF_NAME_ANNOTATION], "1.35.0");
        assert_eq!(descriptor["platform"]["architecture"], "amd64");
        assert_eq!(descriptor["digest"], layout.manifest.digest.as_str());

        let manifest: Value =
            serde_json::from_slice(follow(&blobs, descriptor, MANIFEST_MEDIA_TYPE)).unwrap();
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        let config: Value =
            serde_json::from_slice(follow(&blobs, &manifest["config"], CONFIG_MEDIA_TYPE)).unwrap();
        assert_eq!(config["created"], "2025-01-01T00:00:00Z");
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
        assert_eq!(
            config["config"]["Env"],
            serde_json::json!([DEFAULT_PATH, "GREETING=hello"])
        );
        assert!(config["config"].get("Entrypoint").is_none());
        assert_eq!(config["rootfs"]["type"], "layers");

        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        let layer = follow(&blobs, &layers[0], LAYER_MEDIA_TYPE);
        assert_eq!(
            config["rootfs"]["diff_ids"],
            serde_json::json!([format!("sha256:{}", sha256_bytes(layer))])
        );
        let files = read::entries(layer);
        let paths: Vec<_> = files.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["bin/", "bin/busybox", "bin/sh"]);
        assert_eq!(files[1].data, b"\x7fELF static");
        assert_eq!((files[1].mode, files[1].typeflag), (0o755, b'0'));
        assert_eq!(files[2].link, "busybox");
        for entry in files.iter().chain(&entries) {
            assert_eq!(
                (entry.uid, entry.gid, entry.mtime),
                (0, 0, EPOCH),
                "{}",
                entry.path
            );
        }
    }

    #[test]
    fn the_same_image_gives_the_same_bytes() {
        let one = busybox().layout(EPOCH);
        let two = busybox().layout(EPOCH);
        assert!(one.tar == two.tar);
        assert_eq!(one.manifest, two.manifest);
        let later = busybox().layout(EPOCH + 1);
        assert_ne!(later.manifest.digest, one.manifest.digest);
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_825_599), "2000-02-29T11:59:59Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn environment_variables_replace_their_key() {
        let mut config = Config::default();
        config.set_env("PATH=/bin").unwrap();
        config.set_env("A=1").unwrap();
        config.set_env("A=2=3").unwrap();
        assert_eq!(config.env, ["PATH=/bin", "A=2=3"]);
        assert!(config.set_env("=x").is_err());
        assert!(config.set_env("NOVALUE").is_err());
    }
}
