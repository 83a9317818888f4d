//! Signed upgrade bundles: what `image-builder bundle` writes and the agent installs
//! into the inactive slot.
//!
//! A bundle is an uncompressed tar file:
//! 1. `manifest.json`: the [`Manifest`] (format, OS version, kind, and every part's
//!    name, size and sha256);
//! 2. `manifest.sig`: the raw 64-byte ed25519 signature over `manifest.json`'s exact
//!    bytes;
//! 3. the parts, in manifest order: [`part::KERNEL`], [`part::INITRAMFS`] and
//!    [`part::ROOTFS`] for a [`Kind::Metal`] bundle, [`part::AGENT`] for a
//!    [`Kind::Process`] one.
//!
//! The signature covers the manifest and the manifest covers the parts by their
//! hashes, so one signature check and one streamed hash per part verify everything.
//! [`open_verified`] does all of it before it returns anything, so the agent never
//! writes a byte of a bundle that a trusted key did not sign.
//!
//! **Invariant:** the same inputs and key give the same bytes (fixed tar headers,
//! ed25519 signatures are deterministic), so a bundle can be rebuilt and compared.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::digest::{Context, SHA256};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// The bundle format this code writes and reads; a manifest with another is refused,
/// so that a later format change cannot be misread by an older agent.
pub const FORMAT: u32 = 1;

/// The name of the first entry: the manifest.
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// The name of the second entry: the manifest's signature.
pub const SIGNATURE_ENTRY: &str = "manifest.sig";

/// The largest manifest read (a manifest has at most three parts; a larger entry is
/// not ours, and reading it into memory before the signature check would let anyone
/// make the agent allocate at will).
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;
/// The length of an ed25519 signature.
const SIGNATURE_BYTES: usize = 64;
/// The length of an ed25519 public key.
const PUBLIC_KEY_BYTES: usize = 32;
/// The PEM label of a PKCS#8 private key.
const PEM_LABEL: &str = "PRIVATE KEY";

/// The part names, which are also the parts' entry names in the tar file.
pub mod part {
    /// A metal bundle's kernel (bzImage), installed as the slot's `vmlinuz` on the ESP.
    pub const KERNEL: &str = "vmlinuz";
    /// A metal bundle's initramfs, installed next to the kernel.
    pub const INITRAMFS: &str = "initramfs.cpio.zst";
    /// A metal bundle's root image, written raw to the slot's partition.
    pub const ROOTFS: &str = "rootfs.squashfs";
    /// A process bundle's node agent binary, installed in the slot's directory.
    pub const AGENT: &str = "node-agent";
}

/// Which platform a bundle upgrades: the parts differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A machine booted by systemd-boot: kernel, initramfs and root image.
    Metal,
    /// The process platform (a node as a process on a host): the agent binary.
    Process,
}

impl Kind {
    /// The parts a bundle of this kind has, exactly, in manifest order.
    pub fn parts(self) -> &'static [&'static str] {
        match self {
            Kind::Metal => &[part::KERNEL, part::INITRAMFS, part::ROOTFS],
            Kind::Process => &[part::AGENT],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Metal => "metal",
            Kind::Process => "process",
        })
    }
}

/// One file of a bundle, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Part {
    /// Its name (one of [`part`]), also its entry name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, lowercase hex.
    pub sha256: String,
}

/// `manifest.json`: what a bundle installs; the signature covers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// The bundle format, [`FORMAT`].
    pub format: u32,
    /// The OS version the bundle installs (`0.2.0`), for boot entries and reports.
    pub version: String,
    /// The platform it is for.
    pub kind: Kind,
    /// Metal only: the kernel release (`uname -r`) of its kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    /// Metal only: the hardening kernel parameters for its boot entries (the
    /// `hardening` of [`crate::entry::slot_options`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_hardening: Option<String>,
    /// The parts, in the order of [`Kind::parts`].
    pub parts: Vec<Part>,
}

impl Manifest {
    /// The part of that name.
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// Refuses a manifest whose format, parts or kernel fields do not fit its kind.
    fn check(&self) -> Result<(), BundleError> {
        if self.format != FORMAT {
            return Err(BundleError::UnsupportedFormat {
                found: self.format,
                supported: FORMAT,
            });
        }
        let names: Vec<&str> = self.parts.iter().map(|p| p.name.as_str()).collect();
        if names != self.kind.parts() {
            return Err(BundleError::WrongParts {
                kind: self.kind,
                expected: self.kind.parts().join(", "),
                actual: names.join(", "),
            });
        }
        let metal = self.kind == Kind::Metal;
        for (field, value) in [
            ("kernelRelease", &self.kernel_release),
            ("kernelHardening", &self.kernel_hardening),
        ] {
            if value.is_some() != metal {
                let need = if metal { "needs" } else { "must not have" };
                return Err(BundleError::BadManifest(format!(
                    "a {} bundle {need} {field}",
                    self.kind
                )));
            }
        }
        if let Some(bad) = self
            .parts
            .iter()
            .find(|p| p.sha256.len() != 64 || !p.sha256.bytes().all(is_lower_hex))
        {
            return Err(BundleError::BadManifest(format!(
                "part {}: sha256 {:?} is not 64 lowercase hex digits",
                bad.name, bad.sha256
            )));
        }
        Ok(())
    }

    /// The exact bytes that are signed: pretty JSON with a final newline, so that
    /// `tar -xOf bundle manifest.json` is readable.
    fn to_bytes(&self) -> Vec<u8> {
        // A manifest is strings, numbers and a unit enum: serializing cannot fail.
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        bytes.push(b'\n');
        bytes
    }
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// What a bundle says about itself apart from its parts: the input of [`write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The OS version ([`Manifest::version`]).
    pub version: String,
    /// The platform ([`Manifest::kind`]).
    pub kind: Kind,
    /// Metal only: [`Manifest::kernel_release`].
    pub kernel_release: Option<String>,
    /// Metal only: [`Manifest::kernel_hardening`].
    pub kernel_hardening: Option<String>,
}

/// An ed25519 public key that nodes trust bundles from; written as the standard
/// base64 of its 32 bytes, as in the machine config's list of trusted keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; PUBLIC_KEY_BYTES]);

impl PublicKey {
    /// Whether `signature` is this key's over `message`.
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl FromStr for PublicKey {
    type Err = BundleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = BASE64.decode(s.trim()).map_err(|err| {
            BundleError::InvalidPublicKey(format!("{s:?} is not standard base64: {err}"))
        })?;
        let bytes: [u8; PUBLIC_KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
            BundleError::InvalidPublicKey(format!(
                "{s:?} is {} bytes, an ed25519 public key is {PUBLIC_KEY_BYTES}",
                bytes.len()
            ))
        })?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(self.0))
    }
}

/// The ed25519 private key that signs bundles.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// A new random key, and its PKCS#8 document as PEM (`PRIVATE KEY`) to store.
    pub fn generate() -> Result<(SigningKey, String), BundleError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| BundleError::InvalidSigningKey("the system RNG failed".into()))?;
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|err| {
            BundleError::InvalidSigningKey(format!("the generated key is unusable: {err}"))
        })?;
        Ok((SigningKey(key), pem(pkcs8.as_ref())))
    }

    /// The key in a PEM `PRIVATE KEY` (PKCS#8, as [`SigningKey::generate`] and
    /// `openssl genpkey -algorithm ed25519` write it).
    pub fn from_pem(pem: &str) -> Result<Self, BundleError> {
        let der = unpem(pem)?;
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map(SigningKey)
            .map_err(|err| {
                BundleError::InvalidSigningKey(format!("not an ed25519 PKCS#8 key: {err}"))
            })
    }

    /// The public key that verifies its signatures.
    pub fn public_key(&self) -> PublicKey {
        let bytes = self.0.public_key().as_ref();
        // ring's ed25519 public keys are always 32 bytes.
        PublicKey(bytes.try_into().expect("an ed25519 public key is 32 bytes"))
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).as_ref().to_vec()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SigningKey")
            .field(&self.public_key().to_string())
            .finish()
    }
}

fn pem(der: &[u8]) -> String {
    let encoded = BASE64.encode(der);
    let mut text = format!("-----BEGIN {PEM_LABEL}-----\n");
    // Base64 is ASCII, so every 64-byte chunk is valid UTF-8.
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    text
}

fn unpem(text: &str) -> Result<Vec<u8>, BundleError> {
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let body = text
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(body, _)| body)
        .ok_or_else(|| BundleError::InvalidSigningKey(format!("no {begin} ... {end} block")))?;
    let joined: String = body.split_whitespace().collect();
    BASE64
        .decode(joined)
        .map_err(|err| BundleError::InvalidSigningKey(format!("the PEM body is not base64: {err}")))
}

/// Writes a bundle of `parts` (name, file) to `out`, signed by `key`, and returns its
/// manifest. The parts are hashed first, then copied (and hashed again: a file that
/// changes in between fails the write); the bundle is written next to `out` and
/// renamed, so `out` is either the old file or the complete new one.
pub fn write(
    out: &Path,
    release: &Release,
    parts: &[(&str, &Path)],
    key: &SigningKey,
) -> Result<Manifest, BundleError> {
    let mut given: Vec<&str> = parts.iter().map(|(name, _)| *name).collect();
    given.sort_unstable();
    let mut expected = release.kind.parts().to_vec();
    expected.sort_unstable();
    if given != expected {
        return Err(BundleError::WrongParts {
            kind: release.kind,
            expected: expected.join(", "),
            actual: given.join(", "),
        });
    }
    // In manifest order; every name was found above.
    let files: Vec<(&str, &Path)> = release
        .kind
        .parts()
        .iter()
        .filter_map(|name| parts.iter().find(|(n, _)| n == name).copied())
        .collect();
    let mut manifest_parts = Vec::with_capacity(files.len());
    for (name, path) in &files {
        let mut file = File::open(path).map_err(|err| io_error(path, err))?;
        let (size, sha256) = sha256(&mut file).map_err(|err| io_error(path, err))?;
        manifest_parts.push(Part {
            name: (*name).to_owned(),
            size,
            sha256,
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        version: release.version.clone(),
        kind: release.kind,
        kernel_release: release.kernel_release.clone(),
        kernel_hardening: release.kernel_hardening.clone(),
        parts: manifest_parts,
    };
    manifest.check()?;
    let manifest_bytes = manifest.to_bytes();
    let signature = key.sign(&manifest_bytes);

    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".bundle-")
        .tempfile_in(dir)
        .map_err(|err| io_error(dir, err))?;
    let tmp_path = tmp.path().to_owned();
    let at_tmp = |err| io_error(&tmp_path, err);
    let mut builder = tar::Builder::new(BufWriter::new(tmp.as_file()));
    append(&mut builder, MANIFEST_ENTRY, &manifest_bytes[..]).map_err(at_tmp)?;
    append(&mut builder, SIGNATURE_ENTRY, &signature[..]).map_err(at_tmp)?;
    for ((_, path), part) in files.iter().zip(&manifest.parts) {
        let file = File::open(path).map_err(|err| io_error(path, err))?;
        let mut reader = HashingReader::new(file.take(part.size));
        append_sized(&mut builder, &part.name, part.size, &mut reader).map_err(at_tmp)?;
        let (size, sha256) = reader.finish();
        if size != part.size || sha256 != part.sha256 {
            return Err(BundleError::PartChanged {
                part: part.name.clone(),
                path: path.to_path_buf(),
            });
        }
    }
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(at_tmp)?;
    tmp.as_file().sync_all().map_err(at_tmp)?;
    // Bundles are public: readable by all, like the files they are made from.
    fs::set_permissions(&tmp_path, fs::Permissions::from_mode(0o644)).map_err(at_tmp)?;
    tmp.persist(out).map_err(|err| io_error(out, err.error))?;
    Ok(manifest)
}

/// A tar header the same on every machine: regular file, mode 0644, owner 0 without
/// names, mtime 0.
fn header(name: &str, size: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(header)
}

fn append(builder: &mut tar::Builder<impl Write>, name: &str, data: &[u8]) -> io::Result<()> {
    append_sized(builder, name, data.len() as u64, data)
}

fn append_sized(
    builder: &mut tar::Builder<impl Write>,
    name: &str,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    builder.append(&header(name, size)?, data)
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    context: Context,
    size: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            context: Context::new(&SHA256),
            size: 0,
        }
    }

    /// The bytes read and their sha256 in lowercase hex.
    fn finish(self) -> (u64, String) {
        (self.size, hex(self.context.finish().as_ref()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.context.update(&buf[..read]);
        self.size += read as u64;
        Ok(read)
    }
}

/// The size and sha256 (lowercase hex, as in [`Part::sha256`]) of everything `reader`
/// yields, streamed: what bundles are checked with, for any file that must match them.
pub fn sha256(reader: impl Read) -> io::Result<(u64, String)> {
    let mut hashing = HashingReader::new(reader);
    io::copy(&mut hashing, &mut io::sink())?;
    Ok(hashing.finish())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A bundle whose signature and every part were checked by [`open_verified`].
#[derive(Debug)]
pub struct VerifiedBundle {
    /// The signed manifest.
    pub manifest: Manifest,
    /// The bundle file.
    path: PathBuf,
    /// The file as it was verified: parts are read from this handle, so replacing the
    /// path afterwards does not change what is installed.
    file: File,
    /// Each part's name and data offset in the file, in manifest order.
    offsets: Vec<(String, u64)>,
}

impl VerifiedBundle {
    /// A fresh reader over exactly that part's bytes in the file.
    pub fn part(&self, name: &str) -> Result<impl Read + use<>, BundleError> {
        let (part, offset) = self
            .manifest
            .part(name)
            .zip(
                self.offsets
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, o)| *o),
            )
            .ok_or_else(|| BundleError::MissingPart {
                part: name.to_owned(),
            })?;
        let file = self
            .file
            .try_clone()
            .map_err(|err| io_error(&self.path, err))?;
        Ok(PartReader {
            file,
            position: offset,
            end: offset + part.size,
        })
    }

    /// The manifest's record of that part.
    pub fn part_info(&self, name: &str) -> Option<&Part> {
        self.manifest.part(name)
    }
}

/// Reads a range of a file with positioned reads, so readers of several parts of one
/// handle do not disturb each other.
struct PartReader {
    file: File,
    position: u64,
    end: u64,
}

impl Read for PartReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.position).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let read = self.file.read_at(&mut buf[..want], self.position)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the bundle file got shorter since it was verified",
            ));
        }
        self.position += read as u64;
        Ok(read)
    }
}

/// Opens the bundle at `path` and verifies all of it against `trusted`: the entries,
/// the signature, the manifest, and every part's size and sha256 (streamed). Nothing
/// is returned from a bundle that fails any check.
pub fn open_verified(path: &Path, trusted: &[PublicKey]) -> Result<VerifiedBundle, BundleError> {
    if trusted.is_empty() {
        return Err(BundleError::NoTrustedKeys);
    }
    let file = File::open(path).map_err(|err| io_error(path, err))?;
    let not_a_bundle = |reason: String| BundleError::NotABundle {
        path: path.to_path_buf(),
        reason,
    };
    let tar_error = |err: io::Error| match err.kind() {
        io::ErrorKind::Other | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            not_a_bundle(format!("not a valid tar file: {err}"))
        }
        _ => io_error(path, err),
    };
    let mut archive = tar::Archive::new(&file);
    let mut entries = archive.entries().map_err(tar_error)?;

    let mut head = |expected: &str, max: u64| -> Result<Vec<u8>, BundleError> {
        let mut entry = entries
            .next()
            .ok_or_else(|| not_a_bundle(format!("ends before {expected}")))?
            .map_err(tar_error)?;
        let name = entry_name(&entry);
        if name != expected {
            return Err(not_a_bundle(format!(
                "the entry {name:?} is where {expected} must be"
            )));
        }
        let size = entry.header().size().map_err(tar_error)?;
        if entry.header().entry_type() != tar::EntryType::Regular || size > max {
            return Err(not_a_bundle(format!(
                "{expected} is not a regular file of at most {max} bytes"
            )));
        }
        let mut data = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut data).map_err(tar_error)?;
        Ok(data)
    };
    let manifest_bytes = head(MANIFEST_ENTRY, MAX_MANIFEST_BYTES)?;
    let signature = head(SIGNATURE_ENTRY, SIGNATURE_BYTES as u64)?;
    if signature.len() != SIGNATURE_BYTES {
        return Err(not_a_bundle(format!(
            "{SIGNATURE_ENTRY} is {} bytes, an ed25519 signature is {SIGNATURE_BYTES}",
            signature.len()
        )));
    }
    if !trusted
        .iter()
        .any(|key| key.verifies(&manifest_bytes, &signature))
    {
        return Err(BundleError::Signature {
            path: path.to_path_buf(),
            trusted: trusted.len(),
        });
    }
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|err| BundleError::BadManifest(format!("{MANIFEST_ENTRY}: {err}")))?;
    manifest.check()?;

    let mut offsets: Vec<(String, u64)> = Vec::with_capacity(manifest.parts.len());
    let mut seen = HashSet::new();
    for entry in entries {
        let entry = entry.map_err(tar_error)?;
        let name = entry_name(&entry);
        if name.is_empty() || name.contains('/') || name.contains("..") {
            return Err(BundleError::UnexpectedEntry {
                name,
                reason: "a part's name is one file name, without '/' or '..'",
            });
        }
        let entry_type = entry.header().entry_type();
        if entry_type != tar::EntryType::Regular {
            return Err(BundleError::UnexpectedEntry {
                name,
                reason: "not a regular file",
            });
        }
        let Some(part) = manifest.part(&name) else {
            return Err(BundleError::UnexpectedEntry {
                name,
                reason: "not a part of the manifest",
            });
        };
        if !seen.insert(name.clone()) {
            return Err(BundleError::UnexpectedEntry {
                name,
                reason: "a second copy of a part",
            });
        }
        let offset = entry.raw_file_position();
        let (size, sha256) = sha256(entry).map_err(tar_error)?;
        if size != part.size {
            return Err(BundleError::SizeMismatch {
                part: name,
                expected: part.size,
                actual: size,
            });
        }
        if sha256 != part.sha256 {
            return Err(BundleError::HashMismatch {
                part: name,
                expected: part.sha256.clone(),
                actual: sha256,
            });
        }
        offsets.push((name, offset));
    }
    if let Some(missing) = manifest.parts.iter().find(|p| !seen.contains(&p.name)) {
        return Err(BundleError::MissingPart {
            part: missing.name.clone(),
        });
    }
    Ok(VerifiedBundle {
        manifest,
        path: path.to_path_buf(),
        file,
        offsets,
    })
}

/// An entry's path as text (lossy: a name that is not UTF-8 is no part's name).
fn entry_name<R: Read>(entry: &tar::Entry<'_, R>) -> String {
    String::from_utf8_lossy(&entry.path_bytes()).into_owned()
}

fn io_error(path: &Path, error: io::Error) -> BundleError {
    BundleError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Why a bundle could not be written or was refused. The agent tells the kinds apart:
/// [`BundleError::Signature`] (not from a trusted key), [`BundleError::SizeMismatch`]
/// and [`BundleError::HashMismatch`] (a damaged or altered part),
/// [`BundleError::NotABundle`] and the manifest and entry variants (not a bundle this
/// agent can install), [`BundleError::Io`] (the machine's problem, not the bundle's).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },
    /// The file is not a bundle: not a tar file, or its first entries are not the
    /// manifest and its signature.
    #[error("{}: not an upgrade bundle: {reason}", path.display())]
    NotABundle {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Verification was asked for with no trusted key, which would trust nothing.
    #[error("no trusted bundle keys are configured; no bundle can be verified")]
    NoTrustedKeys,
    /// The manifest is not signed by any trusted key (or was changed after signing).
    #[error(
        "{}: manifest.sig is not a signature of manifest.json by any of the {trusted} trusted keys",
        path.display()
    )]
    Signature {
        /// The file.
        path: PathBuf,
        /// How many keys were tried.
        trusted: usize,
    },
    /// The signed manifest is not valid JSON of a manifest, or its fields contradict
    /// its kind.
    #[error("bad bundle manifest: {0}")]
    BadManifest(String),
    /// The manifest's format is not [`FORMAT`].
    #[error("bundle format {found} is not supported (this agent reads format {supported})")]
    UnsupportedFormat {
        /// The manifest's format.
        found: u32,
        /// The format this code reads.
        supported: u32,
    },
    /// The parts are not the set the bundle's kind has.
    #[error("a {kind} bundle has the parts {expected}, not {actual}")]
    WrongParts {
        /// The bundle's kind.
        kind: Kind,
        /// The parts of that kind.
        expected: String,
        /// The parts given or listed.
        actual: String,
    },
    /// A part of the manifest has no entry in the file.
    #[error("part {part} is listed in the manifest but not in the bundle")]
    MissingPart {
        /// The part's name.
        part: String,
    },
    /// An entry after the signature is not one of the manifest's parts, a second copy
    /// of one, not a regular file, or has a path for a name.
    #[error("bundle entry {name:?}: {reason}")]
    UnexpectedEntry {
        /// The entry's name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A part's size differs from the manifest's (cut short or padded).
    #[error("part {part} is {actual} bytes, the manifest says {expected}")]
    SizeMismatch {
        /// The part's name.
        part: String,
        /// The manifest's size.
        expected: u64,
        /// The bytes in the bundle.
        actual: u64,
    },
    /// A part's sha256 differs from the manifest's.
    #[error("part {part} has sha256 {actual}, the manifest says {expected}")]
    HashMismatch {
        /// The part's name.
        part: String,
        /// The manifest's sha256.
        expected: String,
        /// The sha256 of the bytes in the bundle.
        actual: String,
    },
    /// A part's file changed while the bundle was written.
    #[error("{}: changed while bundle part {part} was written", path.display())]
    PartChanged {
        /// The part's name.
        part: String,
        /// The file.
        path: PathBuf,
    },
    /// A public key is not the base64 of 32 bytes.
    #[error("invalid bundle public key: {0}")]
    InvalidPublicKey(String),
    /// A signing key could not be made or read.
    #[error("invalid bundle signing key: {0}")]
    InvalidSigningKey(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT_BYTES: &[u8] = b"\x7fELF a node agent, or near enough";

    struct Fixture {
        dir: tempfile::TempDir,
        key: SigningKey,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
                key: SigningKey::generate().unwrap().0,
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn file(&self, name: &str, data: &[u8]) -> PathBuf {
            let path = self.path(name);
            fs::write(&path, data).unwrap();
            path
        }

        fn trusted(&self) -> Vec<PublicKey> {
            vec![self.key.public_key()]
        }

        /// A valid process bundle, written by [`write`].
        fn process_bundle(&self) -> PathBuf {
            let agent = self.file("agent", AGENT_BYTES);
            let out = self.path("process.bundle");
            write(
                &out,
                &process_release(),
                &[(part::AGENT, &agent)],
                &self.key,
            )
            .unwrap();
            out
        }

        /// A bundle of exactly these entries (name, bytes); names go into the headers
        /// raw, since the tar crate refuses to write `..`.
        fn craft(&self, entries: &[(&str, &[u8])]) -> PathBuf {
            let out = self.path("crafted.bundle");
            let mut builder = tar::Builder::new(File::create(&out).unwrap());
            for (name, data) in entries {
                let mut header = header("placeholder", data.len() as u64).unwrap();
                let field = &mut header.as_ustar_mut().unwrap().name;
                field.fill(0);
                field[..name.len()].copy_from_slice(name.as_bytes());
                header.set_cksum();
                builder.append(&header, *data).unwrap();
            }
            builder.into_inner().unwrap();
            out
        }

        /// The manifest's bytes and this fixture's signature over them.
        fn signed(&self, manifest: &Manifest) -> (Vec<u8>, Vec<u8>) {
            let bytes = manifest.to_bytes();
            let signature = self.key.sign(&bytes);
            (bytes, signature)
        }

        fn open(&self, path: &Path) -> Result<VerifiedBundle, BundleError> {
            open_verified(path, &self.trusted())
        }
    }

    fn process_release() -> Release {
        Release {
            version: "0.2.0".into(),
            kind: Kind::Process,
            kernel_release: None,
            kernel_hardening: None,
        }
    }

    fn process_manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            version: "0.2.0".into(),
            kind: Kind::Process,
            kernel_release: None,
            kernel_hardening: None,
            parts: vec![Part {
                name: part::AGENT.into(),
                size: AGENT_BYTES.len() as u64,
                sha256: sha256(AGENT_BYTES).unwrap().1,
            }],
        }
    }

    fn read_part(bundle: &VerifiedBundle, name: &str) -> Vec<u8> {
        let mut data = Vec::new();
        bundle.part(name).unwrap().read_to_end(&mut data).unwrap();
        data
    }

    #[test]
    fn a_metal_bundle_round_trips_and_is_deterministic() {
        let fx = Fixture::new();
        let kernel = fx.file("k", b"kernel");
        let initramfs = fx.file("i", b"initramfs");
        let rootfs = fx.file("r", &vec![9u8; 3 << 20]);
        let release = Release {
            version: "0.2.0".into(),
            kind: Kind::Metal,
            kernel_release: Some("6.1.0-56-amd64".into()),
            kernel_hardening: Some("slab_nomerge pti=on".into()),
        };
        // Given in another order than the manifest's.
        let parts = [
            (part::ROOTFS, rootfs.as_path()),
            (part::KERNEL, kernel.as_path()),
            (part::INITRAMFS, initramfs.as_path()),
        ];
        let out = fx.path("metal.bundle");
        let written = write(&out, &release, &parts, &fx.key).unwrap();
        let names: Vec<&str> = written.parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, Kind::Metal.parts());

        // A second key trusted before the signer's does not get in the way.
        let other = SigningKey::generate().unwrap().0.public_key();
        let bundle = open_verified(&out, &[other, fx.key.public_key()]).unwrap();
        assert_eq!(bundle.manifest, written);
        assert_eq!(read_part(&bundle, part::KERNEL), b"kernel");
        assert_eq!(read_part(&bundle, part::INITRAMFS), b"initramfs");
        assert_eq!(read_part(&bundle, part::ROOTFS), vec![9u8; 3 << 20]);
        assert_eq!(bundle.part_info(part::ROOTFS).unwrap().size, 3 << 20);
        assert!(bundle.part_info(part::AGENT).is_none());
        assert!(matches!(
            bundle.part(part::AGENT),
            Err(BundleError::MissingPart { .. })
        ));

        let again = fx.path("again.bundle");
        write(&again, &release, &parts, &fx.key).unwrap();
        assert_eq!(fs::read(&out).unwrap(), fs::read(&again).unwrap());
        let json = String::from_utf8(fs::read(&out).unwrap()[512..1024].to_vec()).unwrap();
        assert!(json.starts_with("{\n  \"format\": 1,"), "{json}");
        assert!(json.contains("\"kernelHardening\": \"slab_nomerge pti=on\""));
    }

    #[test]
    fn the_tar_headers_carry_nothing_of_the_machine() {
        let fx = Fixture::new();
        let out = fx.process_bundle();
        let mut archive = tar::Archive::new(File::open(&out).unwrap());
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(header.mode().unwrap(), 0o644);
            assert_eq!(header.mtime().unwrap(), 0);
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
            assert_eq!(header.username().unwrap(), Some(""));
            names.push(entry_name(&entry));
        }
        assert_eq!(names, [MANIFEST_ENTRY, SIGNATURE_ENTRY, part::AGENT]);
        let mode = fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn a_manifest_edited_after_signing_is_refused() {
        let fx = Fixture::new();
        let (_, signature) = fx.signed(&process_manifest());
        let edited = Manifest {
            version: "9.9.9".into(),
            ..process_manifest()
        };
        let bundle = fx.craft(&[
            (MANIFEST_ENTRY, &edited.to_bytes()),
            (SIGNATURE_ENTRY, &signature),
            (part::AGENT, AGENT_BYTES),
        ]);
        assert!(matches!(
            fx.open(&bundle),
            Err(BundleError::Signature { trusted: 1, .. })
        ));
    }

    #[test]
    fn a_bundle_signed_by_an_untrusted_key_is_refused() {
        let fx = Fixture::new();
        let bundle = fx.process_bundle();
        let stranger = SigningKey::generate().unwrap().0.public_key();
        let err = open_verified(&bundle, &[stranger]).unwrap_err();
        assert!(matches!(err, BundleError::Signature { .. }), "{err}");
        assert!(matches!(
            open_verified(&bundle, &[]),
            Err(BundleError::NoTrustedKeys)
        ));
    }

    #[test]
    fn one_changed_byte_of_a_part_is_refused() {
        let fx = Fixture::new();
        let path = fx.process_bundle();
        let offset = fx.open(&path).unwrap().offsets[0].1;
        let mut bytes = fs::read(&path).unwrap();
        bytes[offset as usize + 3] ^= 1;
        fs::write(&path, bytes).unwrap();
        let err = fx.open(&path).unwrap_err();
        let BundleError::HashMismatch {
            part,
            expected,
            actual,
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(part, part::AGENT);
        assert_eq!(*expected, process_manifest().parts[0].sha256);
        assert_ne!(expected, actual);
    }

    #[test]
    fn a_part_cut_short_is_refused() {
        let fx = Fixture::new();
        let path = fx.process_bundle();
        let offset = fx.open(&path).unwrap().offsets[0].1;
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(offset + 5).unwrap();
        let err = fx.open(&path).unwrap_err();
        assert!(
            matches!(
                &err,
                BundleError::SizeMismatch { part, expected, actual: 5 }
                    if part == part::AGENT && *expected == AGENT_BYTES.len() as u64
            ),
            "{err}"
        );
    }

    #[test]
    fn extra_duplicated_and_odd_entries_are_refused() {
        let fx = Fixture::new();
        let (manifest, signature) = fx.signed(&process_manifest());
        let head = [
            (MANIFEST_ENTRY, manifest.as_slice()),
            (SIGNATURE_ENTRY, signature.as_slice()),
            (part::AGENT, AGENT_BYTES),
        ];
        for (extra, reason) in [
            ("extra", "not a part of the manifest"),
            (part::AGENT, "a second copy of a part"),
            (
                "../node-agent",
                "a part's name is one file name, without '/' or '..'",
            ),
        ] {
            let bundle = fx.craft(&[&head[..], &[(extra, b"x".as_slice())]].concat());
            let err = fx.open(&bundle).unwrap_err();
            assert!(
                matches!(&err, BundleError::UnexpectedEntry { name, reason: r } if name == extra && *r == reason),
                "{extra}: {err}"
            );
        }
    }

    #[test]
    fn a_part_that_is_not_a_regular_file_is_refused() {
        let fx = Fixture::new();
        let (manifest, signature) = fx.signed(&process_manifest());
        let out = fx.path("link.bundle");
        let mut builder = tar::Builder::new(File::create(&out).unwrap());
        append(&mut builder, MANIFEST_ENTRY, &manifest).unwrap();
        append(&mut builder, SIGNATURE_ENTRY, &signature).unwrap();
        let mut link = header(part::AGENT, 0).unwrap();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_link_name("/etc/shadow").unwrap();
        link.set_cksum();
        builder.append(&link, io::empty()).unwrap();
        builder.into_inner().unwrap();
        assert!(matches!(
            fx.open(&out),
            Err(BundleError::UnexpectedEntry {
                reason: "not a regular file",
                ..
            })
        ));
    }

    #[test]
    fn a_missing_part_is_refused() {
        let fx = Fixture::new();
        let (manifest, signature) = fx.signed(&process_manifest());
        let bundle = fx.craft(&[(MANIFEST_ENTRY, &manifest), (SIGNATURE_ENTRY, &signature)]);
        assert!(matches!(
            fx.open(&bundle),
            Err(BundleError::MissingPart { part }) if part == part::AGENT
        ));
    }

    #[test]
    fn the_parts_must_be_those_of_the_kind() {
        let fx = Fixture::new();
        let metal_with_agent = Manifest {
            kind: Kind::Metal,
            kernel_release: Some("6.1.0-56-amd64".into()),
            kernel_hardening: Some(String::new()),
            ..process_manifest()
        };
        let (manifest, signature) = fx.signed(&metal_with_agent);
        let bundle = fx.craft(&[
            (MANIFEST_ENTRY, &manifest),
            (SIGNATURE_ENTRY, &signature),
            (part::AGENT, AGENT_BYTES),
        ]);
        let err = fx.open(&bundle).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a metal bundle has the parts vmlinuz, initramfs.cpio.zst, rootfs.squashfs, not node-agent"
        );
        // write refuses to make one.
        let agent = fx.file("agent", AGENT_BYTES);
        let release = Release {
            kind: Kind::Metal,
            ..process_release()
        };
        let out = fx.path("never.bundle");
        assert!(matches!(
            write(&out, &release, &[(part::AGENT, &agent)], &fx.key),
            Err(BundleError::WrongParts {
                kind: Kind::Metal,
                ..
            })
        ));
        assert!(!out.exists());
        // A process bundle carries no kernel fields.
        let with_kernel = Manifest {
            kernel_release: Some("6.1.0-56-amd64".into()),
            ..process_manifest()
        };
        assert!(matches!(
            with_kernel.check(),
            Err(BundleError::BadManifest(_))
        ));
    }

    #[test]
    fn an_unknown_format_is_refused() {
        let fx = Fixture::new();
        let (manifest, signature) = fx.signed(&Manifest {
            format: 2,
            ..process_manifest()
        });
        let bundle = fx.craft(&[
            (MANIFEST_ENTRY, &manifest),
            (SIGNATURE_ENTRY, &signature),
            (part::AGENT, AGENT_BYTES),
        ]);
        assert!(matches!(
            fx.open(&bundle),
            Err(BundleError::UnsupportedFormat {
                found: 2,
                supported: FORMAT
            })
        ));
        // Unknown fields are refused too: an older agent must not ignore what a newer
        // format added.
        let mut value = serde_json::to_value(process_manifest()).unwrap();
        value["rollback"] = serde_json::Value::Bool(true);
        let bytes = serde_json::to_vec(&value).unwrap();
        let signature = fx.key.sign(&bytes);
        let bundle = fx.craft(&[
            (MANIFEST_ENTRY, &bytes),
            (SIGNATURE_ENTRY, &signature),
            (part::AGENT, AGENT_BYTES),
        ]);
        let err = fx.open(&bundle).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `rollback`"),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_other_tar_files_are_not_bundles() {
        let fx = Fixture::new();
        let garbage = fx.file("garbage", &[0x5a; 2048]);
        let empty = fx.file("empty", b"");
        let short = fx.file("short", b"hello");
        for path in [&garbage, &empty, &short] {
            let err = fx.open(path).unwrap_err();
            assert!(matches!(err, BundleError::NotABundle { .. }), "{err}");
        }
        let (manifest, signature) = fx.signed(&process_manifest());
        let swapped = fx.craft(&[
            (SIGNATURE_ENTRY, &signature),
            (MANIFEST_ENTRY, &manifest),
            (part::AGENT, AGENT_BYTES),
        ]);
        let err = fx.open(&swapped).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "not an upgrade bundle: the entry \"manifest.sig\" is where manifest.json must be"
            ),
            "{err}"
        );
        assert!(matches!(
            fx.open(&fx.path("absent")),
            Err(BundleError::Io { .. })
        ));
    }

    #[test]
    fn keys_round_trip_and_bad_ones_say_why() {
        let (key, pem) = SigningKey::generate().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let again = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let text = key.public_key().to_string();
        assert_eq!(text.len(), 44);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key.public_key());

        let err = "not base64!".parse::<PublicKey>().unwrap_err();
        assert!(err.to_string().contains("is not standard base64"), "{err}");
        let err = BASE64.encode([1u8; 31]).parse::<PublicKey>().unwrap_err();
        assert!(err.to_string().contains("is 31 bytes"), "{err}");
        let err = SigningKey::from_pem("hello").unwrap_err();
        assert!(
            err.to_string().contains("no -----BEGIN PRIVATE KEY-----"),
            "{err}"
        );
    }
}
