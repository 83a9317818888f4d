//! A deterministic tar writer (POSIX ustar, with pax records for long names), for the
//! layers and the image layouts of OCI images ([`crate::oci`]).
//!
//! Entries are written in [`Archive`] order (sorted by path, every parent directory
//! before its children), owned by 0:0 without user or group names, with one mtime.
//! Directories end in `/`. A path or link target that does not fit the ustar fields
//! gets a pax extended header (`path=`, `linkpath=`) before its entry, as GNU tar and
//! Go's `archive/tar` (containerd's reader) write and read them.

use super::archive::{Archive, Kind};

/// The size of a tar block.
pub const BLOCK: usize = 512;

/// The ustar `typeflag` values we write.
mod flag {
    pub const FILE: u8 = b'0';
    pub const SYMLINK: u8 = b'2';
    pub const CHAR_DEVICE: u8 = b'3';
    pub const DIRECTORY: u8 = b'5';
    pub const PAX: u8 = b'x';
}

/// Serializes `archive` with every mtime set to `mtime` (seconds since the epoch).
pub fn write(archive: &Archive, mtime: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, entry) in archive.entries() {
        let (typeflag, data, link, device): (u8, &[u8], &str, (u32, u32)) = match &entry.kind {
            Kind::Directory => (flag::DIRECTORY, &[], "", (0, 0)),
            Kind::File(data) => (flag::FILE, data, "", (0, 0)),
            Kind::Symlink(target) => (flag::SYMLINK, &[], target, (0, 0)),
            Kind::CharDevice { major, minor } => (flag::CHAR_DEVICE, &[], "", (*major, *minor)),
        };
        let name = match entry.kind {
            Kind::Directory => format!("{path}/"),
            _ => path.to_owned(),
        };
        let split = split_name(&name);
        let mut pax = String::new();
        if split.is_none() {
            pax.push_str(&pax_record("path", &name));
        }
        if link.len() > 100 {
            pax.push_str(&pax_record("linkpath", link));
        }
        let (prefix, short) = split.unwrap_or(("", truncate(&name, 100)));
        if !pax.is_empty() {
            let header = Header {
                name: &format!("PaxHeaders/{}", truncate(short.trim_end_matches('/'), 89)),
                prefix: "",
                mode: 0o644,
                size: pax.len() as u64,
                mtime,
                typeflag: flag::PAX,
                link: "",
                device: (0, 0),
            };
            out.extend_from_slice(&header.encode());
            out.extend_from_slice(pax.as_bytes());
            pad(&mut out);
        }
        let header = Header {
            name: short,
            prefix,
            mode: entry.permissions,
            size: data.len() as u64,
            mtime,
            typeflag,
            link: truncate(link, 100),
            device,
        };
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(data);
        pad(&mut out);
    }
    // The end of the archive: two zero blocks.
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

/// The ustar fields of one entry (uid, gid, user and group names are always empty).
struct Header<'a> {
    name: &'a str,
    prefix: &'a str,
    mode: u32,
    size: u64,
    mtime: u64,
    typeflag: u8,
    link: &'a str,
    device: (u32, u32),
}

impl Header<'_> {
    /// The 512-byte header block, checksum included.
    fn encode(&self) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        put(&mut block, 0, 100, self.name.as_bytes());
        octal(&mut block, 100, 8, u64::from(self.mode));
        octal(&mut block, 108, 8, 0);
        octal(&mut block, 116, 8, 0);
        octal(&mut block, 124, 12, self.size);
        octal(&mut block, 136, 12, self.mtime);
        block[156] = self.typeflag;
        put(&mut block, 157, 100, self.link.as_bytes());
        put(&mut block, 257, 6, b"ustar\0");
        put(&mut block, 263, 2, b"00");
        octal(&mut block, 329, 8, u64::from(self.device.0));
        octal(&mut block, 337, 8, u64::from(self.device.1));
        put(&mut block, 345, 155, self.prefix.as_bytes());
        // The checksum is computed with its own field as spaces, then written as six
        // octal digits, a NUL and a space.
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        put(&mut block, 148, 8, format!("{sum:06o}\0 ").as_bytes());
        block
    }
}

/// Copies `value` into `block[at..at + len]` (it is known to fit).
fn put(block: &mut [u8], at: usize, len: usize, value: &[u8]) {
    assert!(value.len() <= len, "tar field of {len} bytes overflows");
    block[at..at + value.len()].copy_from_slice(value);
}

/// Writes `value` as `len - 1` zero-padded octal digits and a NUL.
fn octal(block: &mut [u8], at: usize, len: usize, value: u64) {
    let digits = format!("{value:0width$o}", width = len - 1);
    // Sizes and times beyond the field (8 GiB files, the year 2242) are not ours.
    assert!(digits.len() < len, "{value} does not fit a tar field");
    put(block, at, len, digits.as_bytes());
}

/// Splits a name into ustar's `prefix` (155 bytes) and `name` (100 bytes) at a `/`,
/// or `None` when it cannot be.
fn split_name(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some(("", name));
    }
    // The last `/` that leaves at most 100 bytes for the name (the trailing `/` of a
    // directory name stays with it).
    name[..name.len() - 1]
        .match_indices('/')
        .map(|(i, _)| i)
        .rfind(|&i| i <= 155 && name.len() - i - 1 <= 100)
        .map(|i| (&name[..i], &name[i + 1..]))
}

/// The longest prefix of `text` of at most `max` bytes on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A pax record, `"<length> <key>=<value>\n"`, where the length counts itself.
fn pax_record(key: &str, value: &str) -> String {
    let rest = key.len() + value.len() + 3;
    let mut length = rest + 1;
    while length != rest + length.to_string().len() {
        length = rest + length.to_string().len();
    }
    format!("{length} {key}={value}\n")
}

/// Pads to a whole block.
fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(BLOCK), 0);
}

/// A tar reader for the tests: enough of the format to check what [`write`] wrote.
#[cfg(test)]
pub(crate) mod read {
    use super::BLOCK;

    /// One entry as read back.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Entry {
        /// The path (`prefix/name`, or the pax `path`).
        pub path: String,
        /// The permission bits.
        pub mode: u32,
        /// The owner.
        pub uid: u64,
        /// The group.
        pub gid: u64,
        /// The modification time.
        pub mtime: u64,
        /// The ustar type flag.
        pub typeflag: u8,
        /// The link target (or the pax `linkpath`).
        pub link: String,
        /// The device numbers.
        pub device: (u64, u64),
        /// The contents.
        pub data: Vec<u8>,
    }

    fn text(field: &[u8]) -> String {
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        String::from_utf8(field[..end].to_vec()).unwrap()
    }

    fn number(field: &[u8]) -> u64 {
        let text = text(field);
        u64::from_str_radix(text.trim(), 8).unwrap()
    }

    /// Parses an archive, checking the checksums, the padding and the end blocks.
    pub fn entries(data: &[u8]) -> Vec<Entry> {
        assert_eq!(data.len() % BLOCK, 0, "not whole blocks");
        let mut entries = Vec::new();
        let mut offset = 0;
        let mut pax: Vec<(String, String)> = Vec::new();
        loop {
            let block = &data[offset..offset + BLOCK];
            if block.iter().all(|&b| b == 0) {
                assert!(data[offset..].iter().all(|&b| b == 0));
                assert_eq!(data.len() - offset, 2 * BLOCK, "two end blocks");
                return entries;
            }
            let mut copy = block.to_vec();
            copy[148..156].fill(b' ');
            let sum: u64 = copy.iter().map(|&b| u64::from(b)).sum();
            assert_eq!(number(&block[148..156]), sum, "checksum at {offset}");
            assert_eq!(&block[257..265], b"ustar\x0000");
            let size = usize::try_from(number(&block[124..136])).unwrap();
            let contents = data[offset + BLOCK..offset + BLOCK + size].to_vec();
            offset += BLOCK + size.next_multiple_of(BLOCK);
            if block[156] == b'x' {
                let records = String::from_utf8(contents).unwrap();
                let mut rest = records.as_str();
                while !rest.is_empty() {
                    let (length, _) = rest.split_once(' ').unwrap();
                    let (record, tail) = rest.split_at(length.parse().unwrap());
                    let (_, pair) = record.trim_end_matches('\n').split_once(' ').unwrap();
                    let (key, value) = pair.split_once('=').unwrap();
                    pax.push((key.to_owned(), value.to_owned()));
                    rest = tail;
                }
                continue;
            }
            let take = |key: &str| pax.iter().find(|p| p.0 == key).map(|p| p.1.clone());
            let prefix = text(&block[345..500]);
            let name = text(&block[..100]);
            let path = take("path").unwrap_or(if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            });
            let link = take("linkpath").unwrap_or_else(|| text(&block[157..257]));
            pax.clear();
            entries.push(Entry {
                path,
                mode: u32::try_from(number(&block[100..108])).unwrap(),
                uid: number(&block[108..116]),
                gid: number(&block[116..124]),
                mtime: number(&block[136..148]),
                typeflag: block[156],
                link,
                device: (number(&block[329..337]), number(&block[337..345])),
                data: contents,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    fn sample() -> Archive {
        let mut archive = Archive::new();
        archive.add("bin/busybox", Kind::File(b"\x7fELF".to_vec()), 0o755);
        archive.add("bin/sh", Kind::Symlink("busybox".into()), 0o777);
        archive.add("dev/null", Kind::CharDevice { major: 1, minor: 3 }, 0o666);
        archive.add("etc/empty", Kind::File(Vec::new()), 0o644);
        archive
    }

    #[test]
    fn entries_round_trip_with_fixed_owner_and_time() {
        let entries = read::entries(&write(&sample(), 1_735_689_600));
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "bin/",
                "bin/busybox",
                "bin/sh",
                "dev/",
                "dev/null",
                "etc/",
                "etc/empty"
            ]
        );
        assert!(entries.iter().all(|e| e.mtime == 1_735_689_600));
        assert!(entries.iter().all(|e| (e.uid, e.gid) == (0, 0)));
        let get = |path: &str| entries.iter().find(|e| e.path == path).unwrap();
        assert_eq!((get("bin/").typeflag, get("bin/").mode), (b'5', 0o755));
        assert_eq!(get("bin/busybox").data, b"\x7fELF");
        assert_eq!(get("bin/sh").typeflag, b'2');
        assert_eq!(get("bin/sh").link, "busybox");
        assert_eq!(get("dev/null").device, (1, 3));
        assert_eq!(get("dev/null").mode, 0o666);
    }

    #[test]
    fn long_names_use_the_prefix_or_pax_records() {
        let mut archive = Archive::new();
        let deep = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let flat = "x".repeat(130);
        let link = format!("/{}", "t".repeat(150));
        archive.add(&deep, Kind::File(b"deep".to_vec()), 0o644);
        archive.add(&flat, Kind::Symlink(link.clone()), 0o777);
        let entries = read::entries(&write(&archive, 0));
        let paths: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(paths, [format!("{}/", "d".repeat(120)), deep, flat]);
        assert_eq!(entries[2].link, link);
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("path", "abc"), "12 path=abc\n");
        // 99 bytes without the length: "101 " would make 102, so it is "102 ".
        let record = pax_record("path", &"a".repeat(92));
        assert_eq!(record.len(), 102);
        assert!(record.starts_with("102 path=a"));
    }

    /// GNU tar, when installed, reads the archive as we do.
    #[test]
    fn gnu_tar_lists_the_same_entries() {
        let Ok(mut child) = Command::new("tar")
            .args(["--numeric-owner", "-tvf", "-"])
            .env("TZ", "UTC")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("skipped: tar is not installed");
            return;
        };
        let mut archive = sample();
        let long = format!("{}/{}", "d".repeat(120), "y".repeat(120));
        archive.add(&long, Kind::File(b"long".to_vec()), 0o600);
        let data = write(&archive, 1_735_689_600);
        child.stdin.take().unwrap().write_all(&data).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let listing = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<_> = listing.lines().collect();
        assert_eq!(lines.len(), 9, "{listing}");
        let line = |suffix: &str| {
            *lines
                .iter()
                .find(|l| l.ends_with(suffix))
                .unwrap_or_else(|| panic!("no {suffix} in {listing}"))
        };
        assert!(
            line(" bin/busybox").starts_with("-rwxr-xr-x 0/0"),
            "{listing}"
        );
        assert!(
            line(" bin/busybox").contains(" 2025-01-01 00:00 "),
            "{listing}"
        );
        line(" bin/sh -> busybox");
        assert!(line(" dev/null").starts_with("crw-rw-rw- 0/0"), "{listing}");
        assert!(line(&long).starts_with("-rw------- 0/0"), "{listing}");
    }
}
