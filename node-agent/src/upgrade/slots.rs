//! The two slots and their boot entries, on any platform.
//!
//! The boot directory holds `loader/entries/` (named as [`os_image::entry`] says) and
//! one directory per slot: on metal it is the ESP, read by systemd-boot; on the process
//! platform it is `<state>/boot`, read by the agent's own loader. The platform's
//! [`SlotWriter`] puts a bundle's payload in place; everything about entries is here.
//!
//! An install is ordered so that an interruption at any point leaves the booted slot
//! the one that boots next: the other slot's entry is removed first, its payload
//! written, and its new entry (a trial, with the next generation) renamed into place
//! last.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use os_image::bundle::{Kind, VerifiedBundle};
use os_image::entry::{self, EntryName, EntryState, Slot};

use super::UpgradeError;

/// The directory of the entries, under the boot directory.
const ENTRIES: &str = "loader/entries";
/// The suffix of files being written (systemd-boot only reads `*.conf`).
const PARTIAL: &str = ".partial";

/// How a platform puts a verified bundle's payload into a slot.
pub trait SlotWriter: Send + Sync {
    /// The bundles this platform installs.
    fn kind(&self) -> Kind;

    /// Writes the payload of `bundle` into `slot`; `progress` gets the bytes written
    /// so far. Returns the text of the slot's boot entry.
    fn write(
        &self,
        boot_dir: &Path,
        slot: Slot,
        bundle: &VerifiedBundle,
        progress: &mut dyn FnMut(u64),
    ) -> Result<String, UpgradeError>;
}

/// A slot's boot entry and what it installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The entry's parsed file name.
    pub name: EntryName,
    /// The OS version its `version` line names.
    pub version: String,
    /// The entry's text.
    pub text: String,
}

/// The slots of this node.
pub struct BootSlots {
    boot_dir: PathBuf,
    booted: Slot,
    writer: Box<dyn SlotWriter>,
}

impl std::fmt::Debug for BootSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootSlots")
            .field("boot_dir", &self.boot_dir)
            .field("booted", &self.booted)
            .finish_non_exhaustive()
    }
}

impl BootSlots {
    /// The slots under `boot_dir`, of which `booted` runs now.
    pub fn new(boot_dir: PathBuf, booted: Slot, writer: Box<dyn SlotWriter>) -> Self {
        Self {
            boot_dir,
            booted,
            writer,
        }
    }

    /// The slot this boot runs.
    pub fn booted_slot(&self) -> Slot {
        self.booted
    }

    /// The bundles this node installs.
    pub fn kind(&self) -> Kind {
        self.writer.kind()
    }

    /// Every entry, in the loader's order.
    pub fn installed(&self) -> Result<Vec<Installed>, UpgradeError> {
        read_entries(&self.boot_dir)
    }

    /// The booted slot's entry (there is at most one per slot).
    pub fn booted(&self) -> Result<Option<Installed>, UpgradeError> {
        Ok(self
            .installed()?
            .into_iter()
            .find(|e| e.name.slot == self.booted))
    }

    /// Marks `entry` good: its counter is dropped.
    pub fn confirm(&self, entry: &Installed) -> Result<(), UpgradeError> {
        self.rename(&entry.name, &entry.name.confirmed())
    }

    /// Marks `entry` bad: no tries left, so the loader picks the previous slot.
    pub fn give_up(&self, entry: &Installed) -> Result<(), UpgradeError> {
        self.rename(&entry.name, &entry.name.exhausted())
    }

    /// Installs `bundle` into the other slot as a trial and returns its entry.
    pub fn install(
        &self,
        bundle: &VerifiedBundle,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Installed, UpgradeError> {
        let target = self.booted.other();
        let entries = self.installed()?;
        for old in entries.iter().filter(|e| e.name.slot == target) {
            let path = self.entry_path(&old.name);
            fs::remove_file(&path).map_err(io_error(format!("removing {}", path.display())))?;
        }
        sync();
        let text = self
            .writer
            .write(&self.boot_dir, target, bundle, progress)?;
        let names: Vec<EntryName> = entries.iter().map(|e| e.name).collect();
        let name = EntryName::trial(entry::next_generation(&names), target);
        let path = self.entry_path(&name);
        write_atomically(&path, text.as_bytes())?;
        Ok(Installed {
            name,
            version: bundle.manifest.version.clone(),
            text,
        })
    }

    /// Makes the other slot's good installation the one that boots next (a new
    /// generation for its entry).
    pub fn roll_back(&self) -> Result<Installed, UpgradeError> {
        let entries = self.installed()?;
        let other = self.booted.other();
        let Some(previous) = entries.iter().find(|e| e.name.slot == other) else {
            return Err(UpgradeError::Refused(format!(
                "slot {other} holds no installation to go back to"
            )));
        };
        if previous.name.state() != EntryState::Good {
            return Err(UpgradeError::Refused(format!(
                "slot {other} holds {} ({}), which never booted healthy; nothing to go back to",
                previous.version,
                previous.name.state()
            )));
        }
        let names: Vec<EntryName> = entries.iter().map(|e| e.name).collect();
        let renumbered = EntryName::good(entry::next_generation(&names), other);
        self.rename(&previous.name, &renumbered)?;
        Ok(Installed {
            name: renumbered,
            ..previous.clone()
        })
    }

    fn entry_path(&self, name: &EntryName) -> PathBuf {
        self.boot_dir.join(ENTRIES).join(name.file_name())
    }

    fn rename(&self, from: &EntryName, to: &EntryName) -> Result<(), UpgradeError> {
        let (from, to) = (self.entry_path(from), self.entry_path(to));
        fs::rename(&from, &to).map_err(io_error(format!(
            "renaming {} to {}",
            from.display(),
            to.display()
        )))?;
        sync();
        Ok(())
    }
}

/// The entries under `boot_dir`, in the loader's order (files that are not entries are
/// ignored).
pub fn read_entries(boot_dir: &Path) -> Result<Vec<Installed>, UpgradeError> {
    let dir = boot_dir.join(ENTRIES);
    let listing = match fs::read_dir(&dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(format!("reading {}", dir.display()))(e)),
    };
    let mut found = Vec::new();
    for file in listing {
        let file = file.map_err(io_error(format!("reading {}", dir.display())))?;
        let Some(name) = EntryName::parse(&file.file_name().to_string_lossy()) else {
            continue;
        };
        let text = fs::read_to_string(file.path())
            .map_err(io_error(format!("reading {}", file.path().display())))?;
        found.push(Installed {
            name,
            version: entry::entry_field(&text, "version")
                .unwrap_or_default()
                .to_owned(),
            text,
        });
    }
    let order = entry::boot_order(&found.iter().map(|e| e.name).collect::<Vec<_>>());
    found.sort_by_key(|e| order.iter().position(|n| *n == e.name));
    Ok(found)
}

/// Writes `path` through a temporary file that no loader reads, then renames it.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<(), UpgradeError> {
    let partial = partial_path(path);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
    }
    fs::write(&partial, data).map_err(io_error(format!("writing {}", partial.display())))?;
    fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io_error(format!("syncing {}", partial.display())))?;
    fs::rename(&partial, path).map_err(io_error(format!("renaming to {}", path.display())))?;
    sync();
    Ok(())
}

/// Where `path` is written before it is renamed into place.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(PARTIAL);
    path.with_file_name(name)
}

/// Copies `from` into `to`, reporting the running total (counted from `base`) to
/// `progress`; returns the bytes copied.
pub fn copy_reporting(
    from: &mut dyn io::Read,
    to: &mut dyn io::Write,
    base: u64,
    progress: &mut dyn FnMut(u64),
) -> io::Result<u64> {
    let mut buffer = vec![0; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = from.read(&mut buffer)?;
        if n == 0 {
            return Ok(copied);
        }
        to.write_all(&buffer[..n])?;
        copied += n as u64;
        progress(base + copied);
    }
}

/// Flushes every filesystem: renames on vfat have no directory fsync to rely on.
fn sync() {
    nix::unistd::sync();
}

/// An I/O error with what was being done.
pub fn io_error(what: String) -> impl FnOnce(io::Error) -> UpgradeError {
    move |source| UpgradeError::Io { what, source }
}
