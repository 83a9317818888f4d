//! Boot entries of the A/B slots.
//!
//! An entry's file name is `node-os-<generation>-<slot>[+<left>[-<done>]].conf`:
//! - the generation grows with every install or rollback, so the entry to prefer sorts
//!   first in systemd-boot's order (entries sort by id in reverse version order; the
//!   loader configuration names no `default`, which could match a trial entry and defeat
//!   the fallback);
//! - `+<left>-<done>` is systemd-boot's boot counter: a freshly written slot is a
//!   *trial* (`+3`); each try moves one from `left` to `done` before the kernel starts;
//!   the agent drops the counter once the trial boot is healthy (*good*), and an entry
//!   with no tries left (*bad*) sorts after every other, so the loader falls back to
//!   the newest good one by itself.
//!
//! [`boot_order`] is that order, for the process platform's loader and for reports;
//! on a machine systemd-boot applies it.

use std::cmp::Reverse;
use std::fmt;

/// The prefix of every entry's file name.
const PREFIX: &str = "node-os-";
/// The suffix of every entry's file name.
const SUFFIX: &str = ".conf";
/// The digits of a generation in file names (fixed, so that name order is numeric).
const GENERATION_DIGITS: usize = 6;

/// How many boots a new slot gets to become healthy before the loader falls back.
pub const TRIAL_TRIES: u32 = 3;

/// One of the two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// Slot A: partition `BOOT-A`, files under `/slot-a/`.
    A,
    /// Slot B: partition `BOOT-B`, files under `/slot-b/`.
    B,
}

impl Slot {
    /// Both slots.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// `a` or `b`, as in file names and `node.slot=`.
    pub fn letter(self) -> char {
        match self {
            Slot::A => 'a',
            Slot::B => 'b',
        }
    }

    /// The slot named by `a` or `b` (either case).
    pub fn from_letter(letter: &str) -> Option<Self> {
        match letter {
            "a" | "A" => Some(Slot::A),
            "b" | "B" => Some(Slot::B),
            _ => None,
        }
    }

    /// The other slot: where an upgrade goes.
    pub fn other(self) -> Self {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The GPT name of the slot's root image partition (`BOOT-A`).
    pub fn partition_label(self) -> &'static str {
        match self {
            Slot::A => "BOOT-A",
            Slot::B => "BOOT-B",
        }
    }

    /// The directory of the slot's boot files (`slot-a`): on the ESP, its kernel and
    /// initramfs; on the process platform, its agent.
    pub fn directory(self) -> &'static str {
        match self {
            Slot::A => "slot-a",
            Slot::B => "slot-b",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter().to_ascii_uppercase())
    }
}

/// systemd-boot's boot counter of an entry on trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tries {
    /// Tries the loader may still make.
    pub left: u32,
    /// Tries made.
    pub done: u32,
}

/// Whether a slot's entry may boot, as its name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Booted healthy: no counter.
    Good,
    /// Written and not yet confirmed: tries left.
    Trial,
    /// Out of tries: never confirmed (or marked bad by its own boot).
    Bad,
}

impl fmt::Display for EntryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryState::Good => "good",
            EntryState::Trial => "trial",
            EntryState::Bad => "bad",
        })
    }
}

/// The file name of a boot entry, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryName {
    /// Higher generations are preferred.
    pub generation: u32,
    /// The slot it boots.
    pub slot: Slot,
    /// The boot counter; `None` for a good entry.
    pub tries: Option<Tries>,
}

impl EntryName {
    /// A good entry.
    pub fn good(generation: u32, slot: Slot) -> Self {
        Self {
            generation,
            slot,
            tries: None,
        }
    }

    /// A freshly written entry with [`TRIAL_TRIES`] tries.
    pub fn trial(generation: u32, slot: Slot) -> Self {
        Self {
            generation,
            slot,
            tries: Some(Tries {
                left: TRIAL_TRIES,
                done: 0,
            }),
        }
    }

    /// Parses a file name; `None` for files that are not our entries.
    pub fn parse(file_name: &str) -> Option<Self> {
        let stem = file_name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
        let (id, counter) = match stem.split_once('+') {
            Some((id, counter)) => (id, Some(counter)),
            None => (stem, None),
        };
        let (generation, slot) = id.split_once('-')?;
        if generation.len() != GENERATION_DIGITS || !generation.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let tries = match counter {
            None => None,
            Some(counter) => {
                let (left, done) = counter.split_once('-').unwrap_or((counter, "0"));
                Some(Tries {
                    left: parse_count(left)?,
                    done: parse_count(done)?,
                })
            }
        };
        Some(Self {
            generation: generation.parse().ok()?,
            slot: Slot::from_letter(slot)?,
            tries,
        })
    }

    /// The file name (`node-os-000003-b+2-1.conf`).
    pub fn file_name(&self) -> String {
        let counter = match self.tries {
            None => String::new(),
            Some(Tries { left, done: 0 }) => format!("+{left}"),
            Some(Tries { left, done }) => format!("+{left}-{done}"),
        };
        format!(
            "{PREFIX}{:0width$}-{}{counter}{SUFFIX}",
            self.generation,
            self.slot.letter(),
            width = GENERATION_DIGITS
        )
    }

    /// Good, on trial or bad.
    pub fn state(&self) -> EntryState {
        match self.tries {
            None => EntryState::Good,
            Some(Tries { left: 0, .. }) => EntryState::Bad,
            Some(_) => EntryState::Trial,
        }
    }

    /// The same entry confirmed good (counter dropped).
    pub fn confirmed(&self) -> Self {
        Self {
            tries: None,
            ..*self
        }
    }

    /// The same entry with no tries left, so no loader picks it while another entry
    /// exists.
    pub fn exhausted(&self) -> Self {
        let done = self.tries.map_or(0, |t| t.left + t.done);
        Self {
            tries: Some(Tries { left: 0, done }),
            ..*self
        }
    }

    /// The entry after a loader's try: one try moved from left to done. A good entry
    /// is not counted.
    pub fn tried(&self) -> Self {
        Self {
            tries: self.tries.map(|t| Tries {
                left: t.left.saturating_sub(1),
                done: t.done + 1,
            }),
            ..*self
        }
    }
}

fn parse_count(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The entries in the order a loader tries them (systemd-boot's): entries with tries
/// left or no counter first, then the higher generation first; among equals, more
/// tries left first.
pub fn boot_order(entries: &[EntryName]) -> Vec<EntryName> {
    let mut ordered = entries.to_vec();
    ordered.sort_by_key(|e| {
        (
            e.state() == EntryState::Bad,
            Reverse(e.generation),
            Reverse(e.tries.map_or(u32::MAX, |t| t.left)),
            e.slot,
        )
    });
    ordered
}

/// The entry a loader boots: the first in [`boot_order`] (a bad one only when nothing
/// else is left, as systemd-boot does).
pub fn selected(entries: &[EntryName]) -> Option<EntryName> {
    boot_order(entries).first().copied()
}

/// The next generation: one above every entry's.
pub fn next_generation(entries: &[EntryName]) -> u32 {
    entries.iter().map(|e| e.generation).max().unwrap_or(0) + 1
}

/// The node's kernel parameters for a slot: the hardening parameters for its kernel
/// (`hardening`), a reboot straight after a panic (so a slot whose init dies uses up
/// a try instead of hanging; Debian's kernel would otherwise wait forever), which
/// slot, where its root image is, and the image's sha256, which the agent checks
/// before mounting it. Direct kernel boots (the QEMU provisioner) pass the same words.
pub fn slot_options(slot: Slot, rootfs_sha256: &str, hardening: &str) -> String {
    let own = format!(
        "panic=-1 node.slot={} node.root=PARTLABEL={} node.root.sha256={rootfs_sha256}",
        slot.letter(),
        slot.partition_label()
    );
    if hardening.is_empty() {
        own
    } else {
        format!("{hardening} {own}")
    }
}

/// The files of a slot's kernel and initramfs on the ESP (relative to the ESP's root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotFiles<'a> {
    /// The kernel's file name in the slot's directory.
    pub kernel: &'a str,
    /// The initramfs's file name in the slot's directory.
    pub initramfs: &'a str,
}

/// The text of a slot's boot entry (systemd-boot's Boot Loader Specification type 1),
/// passing `options` (its [`slot_options`]) after the consoles. The serial console
/// comes last, so it is `/dev/console`: the agent's messages (and a failed boot's)
/// reach a serial log or a BMC's serial-over-LAN, the way a node without a shell is
/// read.
pub fn entry_text(slot: Slot, version: &str, files: SlotFiles<'_>, options: &str) -> String {
    let directory = slot.directory();
    format!(
        "title node-os {version} (slot {slot})\n\
         version {version}\n\
         linux /{directory}/{kernel}\n\
         initrd /{directory}/{initramfs}\n\
         options console=tty0 console=ttyS0,115200 {options}\n",
        kernel = files.kernel,
        initramfs = files.initramfs,
    )
}

/// The value of `key` in an entry's text (`version`, `options`, ...).
pub fn entry_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.trim().split_once(char::is_whitespace)?;
        (k == key).then(|| v.trim())
    })
}

/// `loader/loader.conf`: no `default` line, so systemd-boot boots the first entry of
/// [`boot_order`] (a default that matched a trial entry would defeat the fallback).
pub const LOADER_CONF: &str = "timeout 3\neditor no\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> EntryName {
        EntryName::parse(s).unwrap_or_else(|| panic!("{s} does not parse"))
    }

    #[test]
    fn names_round_trip_with_and_without_counters() {
        for s in [
            "node-os-000001-a.conf",
            "node-os-000002-b+3.conf",
            "node-os-000002-b+2-1.conf",
            "node-os-000002-b+0-3.conf",
        ] {
            assert_eq!(name(s).file_name(), s);
        }
        let trial = name("node-os-000002-b+2-1.conf");
        assert_eq!(trial.generation, 2);
        assert_eq!(trial.slot, Slot::B);
        assert_eq!(trial.tries, Some(Tries { left: 2, done: 1 }));
        assert_eq!(trial.state(), EntryState::Trial);
        assert_eq!(name("node-os-000002-b+0-3.conf").state(), EntryState::Bad);
        assert_eq!(name("node-os-000002-b.conf").state(), EntryState::Good);
    }

    #[test]
    fn foreign_files_are_not_entries() {
        for s in [
            "slot-a.conf",
            "node-os-1-a.conf",
            "node-os-000001-c.conf",
            "node-os-000001-a+.conf",
            "node-os-000001-a+x.conf",
            "node-os-000001-a.conf.tmp",
            "node-os-000001-a+1-.conf",
        ] {
            assert_eq!(EntryName::parse(s), None, "{s}");
        }
    }

    #[test]
    fn a_try_moves_one_count_and_confirmation_drops_the_counter() {
        let fresh = EntryName::trial(4, Slot::A);
        assert_eq!(fresh.file_name(), "node-os-000004-a+3.conf");
        assert_eq!(fresh.tried().file_name(), "node-os-000004-a+2-1.conf");
        assert_eq!(
            fresh.tried().tried().tried().file_name(),
            "node-os-000004-a+0-3.conf"
        );
        assert_eq!(
            fresh.tried().confirmed().file_name(),
            "node-os-000004-a.conf"
        );
        assert_eq!(
            fresh.tried().exhausted().file_name(),
            "node-os-000004-a+0-3.conf"
        );
        assert_eq!(
            EntryName::good(1, Slot::B).tried(),
            EntryName::good(1, Slot::B)
        );
    }

    #[test]
    fn the_newest_entry_with_tries_boots_first() {
        let good_a = name("node-os-000001-a.conf");
        let trial_b = name("node-os-000002-b+2-1.conf");
        assert_eq!(selected(&[good_a, trial_b]), Some(trial_b));
        // Out of tries: back to the last good entry, never the bad one.
        let bad_b = name("node-os-000002-b+0-3.conf");
        assert_eq!(selected(&[bad_b, good_a]), Some(good_a));
        // A rollback renumbers the older slot, which then wins over a good newer one.
        let good_b = name("node-os-000002-b.conf");
        let renumbered_a = name("node-os-000003-a.conf");
        assert_eq!(selected(&[good_b, renumbered_a]), Some(renumbered_a));
        // Only bad entries: the loader still boots something.
        assert_eq!(selected(&[bad_b]), Some(bad_b));
        assert_eq!(selected(&[]), None);
        assert_eq!(next_generation(&[good_a, bad_b]), 3);
    }

    #[test]
    fn entries_name_their_slot_and_version() {
        let options = slot_options(Slot::B, "ab12", "slab_nomerge pti=on");
        let files = SlotFiles {
            kernel: "vmlinuz",
            initramfs: "initramfs.cpio.zst",
        };
        let entry = entry_text(Slot::B, "0.2.0", files, &options);
        assert!(entry.contains("linux /slot-b/vmlinuz\n"));
        assert!(entry.contains("initrd /slot-b/initramfs.cpio.zst\n"));
        assert!(entry.contains(
            "options console=tty0 console=ttyS0,115200 slab_nomerge pti=on panic=-1 node.slot=b "
        ));
        assert!(entry.contains("node.root=PARTLABEL=BOOT-B node.root.sha256=ab12\n"));
        assert_eq!(entry_field(&entry, "version"), Some("0.2.0"));
        assert_eq!(entry_field(&entry, "linux"), Some("/slot-b/vmlinuz"));
        assert_eq!(
            slot_options(Slot::A, "ab12", ""),
            "panic=-1 node.slot=a node.root=PARTLABEL=BOOT-A node.root.sha256=ab12"
        );
        assert!(!LOADER_CONF.contains("default"));
    }
}
