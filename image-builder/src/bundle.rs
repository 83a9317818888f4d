//! `image-builder keygen` and `image-builder bundle`: the signing key, and signed
//! upgrade bundles (the format is [`os_image::bundle`]) made from a `build` output
//! directory or an agent binary.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use os_image::bundle::{self, BundleError, Kind, Manifest, PublicKey, Release, SigningKey, part};

use crate::build::manifest::{self as build_manifest, Manifest as ImageManifest};
use crate::build::{self, BuildError, initramfs, rootfs};

/// The kernel's file name in a `build` output directory.
const IMAGE_KERNEL: &str = "vmlinuz";
/// The build manifest's file name in a `build` output directory.
const IMAGE_MANIFEST: &str = "manifest.json";

/// What goes into a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A metal bundle from a `build` output directory.
    Image(PathBuf),
    /// A process bundle: an agent binary and the OS version it is released as.
    Agent {
        /// The binary.
        binary: PathBuf,
        /// The OS version.
        version: String,
    },
}

/// Why a key or bundle could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },
    /// The key file exists; a signing key is never replaced by accident.
    #[error("{}: exists; refusing to overwrite a signing key", .0.display())]
    KeyExists(PathBuf),
    /// The image directory's `manifest.json` cannot be read as a build manifest.
    #[error("{}: not a build manifest: {error}", path.display())]
    ImageManifest {
        /// The manifest file.
        path: PathBuf,
        /// Why it does not parse.
        error: serde_json::Error,
    },
    /// A file of the image directory is not the one its manifest lists.
    #[error("{}: {reason}", path.display())]
    ImageMismatch {
        /// The file.
        path: PathBuf,
        /// How it differs from the manifest.
        reason: String,
    },
    /// An option or input file of the build side is wrong (e.g. the OS version).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The bundle or a key could not be written or read.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |error| Error::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Generates a signing key, writes its PEM to `out` (mode 0600, never over an
/// existing file) and returns the public key that machine configs trust.
pub fn keygen(out: &Path) -> Result<PublicKey, Error> {
    let (key, pem) = SigningKey::generate()?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|error| match error.kind() {
            io::ErrorKind::AlreadyExists => Error::KeyExists(out.to_path_buf()),
            _ => Error::Io {
                path: out.to_path_buf(),
                error,
            },
        })?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(out))?;
    Ok(key.public_key())
}

/// Writes the bundle of `source` to `out`, signed with the PEM key at `key`, and
/// returns its manifest.
pub fn bundle(source: &Source, key: &Path, out: &Path) -> Result<Manifest, Error> {
    let pem = fs::read_to_string(key).map_err(io_error(key))?;
    let key = SigningKey::from_pem(&pem)?;
    match source {
        Source::Agent { binary, version } => {
            build::check_os_version(version)?;
            let release = Release {
                version: version.clone(),
                kind: Kind::Process,
                kernel_release: None,
                kernel_hardening: None,
            };
            Ok(bundle::write(
                out,
                &release,
                &[(part::AGENT, binary.as_path())],
                &key,
            )?)
        }
        Source::Image(dir) => {
            let image = read_image_manifest(dir)?;
            let release = Release {
                version: image.os_version.clone(),
                kind: Kind::Metal,
                kernel_release: Some(image.kernel_release.clone()),
                kernel_hardening: Some(image.kernel_hardening.clone()),
            };
            let files = [
                (part::KERNEL, dir.join(IMAGE_KERNEL)),
                (part::INITRAMFS, dir.join(initramfs::FILE_NAME)),
                (part::ROOTFS, dir.join(rootfs::FILE_NAME)),
            ];
            for (_, path) in &files {
                check_output(&image, path)?;
            }
            let parts: Vec<(&str, &Path)> = files
                .iter()
                .map(|(name, path)| (*name, path.as_path()))
                .collect();
            Ok(bundle::write(out, &release, &parts, &key)?)
        }
    }
}

fn read_image_manifest(dir: &Path) -> Result<ImageManifest, Error> {
    let path = dir.join(IMAGE_MANIFEST);
    let text = fs::read(&path).map_err(io_error(&path))?;
    serde_json::from_slice(&text).map_err(|error| Error::ImageManifest { path, error })
}

/// Refuses a file of the image directory whose size or sha256 is not the manifest's
/// (a rebuilt or edited file would get the old version's name and kernel options).
fn check_output(image: &ImageManifest, path: &Path) -> Result<(), Error> {
    let mismatch = |reason: String| Error::ImageMismatch {
        path: path.to_path_buf(),
        reason,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let listed = image
        .output(&name)
        .ok_or_else(|| mismatch(format!("not among the outputs of {IMAGE_MANIFEST}")))?;
    let (sha256, size) = build_manifest::sha256_file(path)?;
    if (sha256.as_str(), size) != (listed.sha256.as_str(), listed.size) {
        return Err(mismatch(format!(
            "has sha256 {sha256} ({size} bytes), {IMAGE_MANIFEST} says {} ({} bytes)",
            listed.sha256, listed.size
        )));
    }
    Ok(())
}
