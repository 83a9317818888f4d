//! `manifest.json`: what went into an image and what came out.

use std::fs::File;
use std::path::Path;

use os_image::bundle::sha256;
use serde::{Deserialize, Serialize};

use super::error::{IoContext, Result};

/// One input: a Debian package or a file given on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// The package name (`containerd`), or the role of a file (`node-agent`).
    pub name: String,
    /// The package version; `None` for files.
    pub version: Option<String>,
    /// The sha256 of the `.deb` or the file, in hex.
    pub sha256: String,
}

/// One output file of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The file name inside the output directory.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, in hex.
    pub sha256: String,
}

/// An OCI image the root image ships (see [`super::images`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedImage {
    /// The name containerd imports it under (`io.containerd.image.name`).
    pub name: String,
    /// Its layout tar file in the root image.
    pub path: String,
    /// The digest of its manifest: the image's digest in containerd.
    pub digest: String,
    /// The size of the tar file.
    pub size: u64,
    /// The sha256 of the tar file, in hex.
    pub sha256: String,
}

/// The manifest of one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The timestamp every file and filesystem of the image carries.
    pub source_date_epoch: u64,
    /// The OS version of `/etc/os-release` and the boot entry; an upgrade bundle made
    /// from the image carries it.
    pub os_version: String,
    /// The kernel release (`uname -r`) of the image.
    pub kernel_release: String,
    /// The hardening parameters for this kernel alone: the part of the boot entries'
    /// options that an upgrade bundle carries to the entries it writes.
    pub kernel_hardening: String,
    /// The node's kernel parameters for booting slot A directly (`qemu -kernel
    /// vmlinux -append`), as its boot entry passes them: the hardening parameters for
    /// this kernel, the slot, its root partition and the root image's sha256.
    pub kernel_options: String,
    /// The inputs, sorted by name.
    pub inputs: Vec<Input>,
    /// The outputs, sorted by file name (`manifest.json` itself is not listed).
    pub outputs: Vec<Output>,
    /// The OCI images in the root image, sorted by name.
    pub images: Vec<ShippedImage>,
}

impl Manifest {
    /// The same manifest with the inputs, outputs and images sorted.
    pub fn sorted(mut self) -> Self {
        self.inputs.sort_by(|a, b| a.name.cmp(&b.name));
        self.outputs.sort_by(|a, b| a.file.cmp(&b.file));
        self.images.sort_by(|a, b| a.name.cmp(&b.name));
        self
    }

    /// The output record of `file`.
    pub fn output(&self, file: &str) -> Option<&Output> {
        self.outputs.iter().find(|o| o.file == file)
    }

    /// The pretty-printed JSON, with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a manifest serializes");
        text.push('\n');
        text
    }
}

/// The sha256 of a byte string, in hex.
pub fn sha256_bytes(data: &[u8]) -> String {
    // Reading from a byte slice cannot fail.
    sha256(data).expect("a slice reads").1
}

/// The sha256 and size of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let (size, sha256) = File::open(path).and_then(sha256).at(path)?;
    Ok((sha256, size))
}

/// The [`Output`] record of `file` in `dir`.
pub fn output(dir: &Path, file: &str) -> Result<Output> {
    let (sha256, size) = sha256_file(&dir.join(file))?;
    Ok(Output {
        file: file.to_owned(),
        size,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_known_vector() {
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn files_hash_like_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![7u8; 3 << 20]).unwrap();
        let out = output(dir.path(), "a").unwrap();
        assert_eq!(out.size, 3 << 20);
        assert_eq!(out.sha256, sha256_bytes(&vec![7u8; 3 << 20]));
    }

    #[test]
    fn manifests_are_sorted_and_round_trip() {
        let input = |name: &str| Input {
            name: name.into(),
            version: Some("1".into()),
            sha256: "00".into(),
        };
        let output = |file: &str| Output {
            file: file.into(),
            size: 1,
            sha256: "11".into(),
        };
        let manifest = Manifest {
            source_date_epoch: 5,
            os_version: "0.2.0".into(),
            kernel_release: "6.1.0-1-amd64".into(),
            kernel_hardening: "pti=on".into(),
            kernel_options: "pti=on node.slot=a".into(),
            inputs: vec![input("runc"), input("containerd")],
            outputs: vec![output("vmlinuz"), output("disk.raw")],
            images: vec![ShippedImage {
                name: "node-os.local/busybox:1.35.0".into(),
                path: "/usr/share/node-os/images/busybox.tar".into(),
                digest: "sha256:22".into(),
                size: 1,
                sha256: "33".into(),
            }],
        }
        .sorted();
        assert_eq!(manifest.inputs[0].name, "containerd");
        assert_eq!(manifest.outputs[0].file, "disk.raw");
        assert_eq!(manifest.output("vmlinuz").unwrap().size, 1);
        let json = manifest.to_json();
        assert!(json.ends_with("}\n"));
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), manifest);
    }
}
