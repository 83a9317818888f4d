//! The parts of the OCI image format the agent reads: image layouts (index.json),
//! manifests and image configs, and the chain ids that name unpacked layers.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Media type of an OCI image index (a list of manifests, e.g. per platform).
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of a Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Media type of an OCI image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of a Docker image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The annotation containerd puts the full image name in.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation naming a manifest in a layout (a full name or just a tag).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A content descriptor.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its size in bytes.
    pub size: i64,
    /// Free-form annotations (image names in an index).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The platform of a manifest in an index.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// The platform of a manifest.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `amd64`.
    pub architecture: String,
    /// e.g. `linux`.
    pub os: String,
}

/// An image index (`index.json` of a layout, or a multi-platform image).
#[derive(Debug, Deserialize)]
pub struct Index {
    /// The manifests (or nested indexes).
    pub manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    /// The image config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
}

/// The parts of an image config a container is built from.
#[derive(Debug, Deserialize, Default)]
pub struct ImageConfig {
    /// The process defaults.
    #[serde(default)]
    pub config: ProcessDefaults,
    /// The uncompressed layer digests.
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Deserialize, Default)]
pub struct RootFs {
    /// sha256 of each uncompressed layer, bottom first.
    pub diff_ids: Vec<String>,
}

/// `config` of an image config: how the image wants to be run.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessDefaults {
    /// The entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Arguments (to the entrypoint).
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `NAME=value` pairs.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// The working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// The user (only numeric `uid[:gid]` is honoured).
    #[serde(default)]
    pub user: Option<String>,
}

/// Whether `media_type` is an index or manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == INDEX || media_type == DOCKER_LIST
}

/// Whether `media_type` is a single-image manifest.
pub fn is_manifest(media_type: &str) -> bool {
    media_type == MANIFEST || media_type == DOCKER_MANIFEST
}

/// The manifest for linux/amd64 (the node's platform) in an index, or the only one.
pub fn pick_platform(index: &Index) -> Option<&Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| is_manifest(&d.media_type))
        .collect();
    candidates
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .or(if candidates.len() == 1 {
            candidates.first()
        } else {
            None
        })
        .copied()
}

/// The chain ids of layers with `diff_ids`: the first is its diff id, each next one
/// `sha256(previous + " " + diff id)`. Snapshots are named by them.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => sha256(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", crate::digest::sha256_hex(data))
}

/// The hex part of a `sha256:` digest, if it is one (64 lowercase hex digits).
pub fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        // Values from the OCI image spec's worked example (config.md, "ChainID").
        let a = "sha256:a".to_owned();
        let b = "sha256:b".to_owned();
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], sha256(b"sha256:a sha256:b"));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn picks_linux_amd64() {
        let index: Index = serde_json::from_str(&format!(
            r#"{{"manifests": [
              {{"mediaType": "{MANIFEST}", "digest": "sha256:1", "size": 1, "platform": {{"architecture": "arm64", "os": "linux"}}}},
              {{"mediaType": "{MANIFEST}", "digest": "sha256:2", "size": 1, "platform": {{"architecture": "amd64", "os": "linux"}}}}
            ]}}"#
        ))
        .expect("index");
        assert_eq!(
            pick_platform(&index).map(|d| d.digest.as_str()),
            Some("sha256:2")
        );
        let arm_only = Index {
            manifests: index.manifests[..1].to_vec(),
        };
        // A single manifest is taken whatever it says (layouts often omit the platform).
        assert!(pick_platform(&arm_only).is_some());
    }

    #[test]
    fn digests_are_checked() {
        assert!(sha256_hex(&sha256(b"x")).is_some());
        assert!(sha256_hex("sha256:../../etc").is_none());
        assert!(sha256_hex("md5:00").is_none());
    }
}
