//! A deterministic cpio writer in the `newc` format the kernel unpacks initramfs from.
//!
//! Entries are written in [`Archive`] order (sorted by path, every parent directory
//! before its children), all owned by 0:0, with one mtime, and inode numbers assigned
//! in that order.

use super::archive::{Archive, Kind};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Serializes `archive` with every mtime set to `mtime` (seconds since the epoch).
pub fn write(archive: &Archive, mtime: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, (path, entry)) in archive.entries().enumerate() {
        let (mode, nlink, rdev, data): (u32, u32, (u32, u32), &[u8]) = match &entry.kind {
            Kind::Directory => (S_IFDIR, 2, (0, 0), &[]),
            Kind::File(data) => (S_IFREG, 1, (0, 0), data),
            Kind::Symlink(target) => (S_IFLNK, 1, (0, 0), target.as_bytes()),
            Kind::CharDevice { major, minor } => (S_IFCHR, 1, (*major, *minor), &[]),
        };
        Header {
            ino: u32::try_from(index + 1).expect("fewer than 2^32 entries"),
            mode: mode | entry.permissions,
            nlink,
            mtime,
            size: data.len(),
            rdev,
        }
        .write(&mut out, path);
        out.extend_from_slice(data);
        pad(&mut out);
    }
    let trailer = Header {
        ino: 0,
        mode: 0,
        nlink: 1,
        mtime: 0,
        size: 0,
        rdev: (0, 0),
    };
    trailer.write(&mut out, "TRAILER!!!");
    out
}

/// The fields of a newc header that vary (uid, gid and devices are 0).
struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: usize,
    rdev: (u32, u32),
}

impl Header {
    /// Appends the header and the padded name.
    fn write(&self, out: &mut Vec<u8>, name: &str) {
        let size = u32::try_from(self.size).expect("cpio newc entries are smaller than 4 GiB");
        let namesize = u32::try_from(name.len() + 1).expect("short path");
        let fields = [
            self.ino,
            self.mode,
            0,
            0,
            self.nlink,
            self.mtime,
            size,
            0,
            0,
            self.rdev.0,
            self.rdev.1,
            namesize,
            0,
        ];
        out.extend_from_slice(b"070701");
        for field in fields {
            out.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad(out);
    }
}

/// Pads to a multiple of 4 bytes, as newc requires after names and data.
fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed entry: (name, mode, ino, mtime, rdev, data).
    type Parsed = (String, u32, u32, u32, (u32, u32), Vec<u8>);

    /// Parses a newc archive back into its entries, checking uid, gid and padding.
    fn parse(mut data: &[u8]) -> Vec<Parsed> {
        let mut entries = Vec::new();
        let mut offset = 0;
        loop {
            assert_eq!(&data[..6], b"070701", "magic at offset {offset}");
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&data[6 + 8 * i..14 + 8 * i]).unwrap(),
                    16,
                )
                .unwrap()
            };
            let (ino, mode, uid, gid, mtime, size) = (
                field(0),
                field(1),
                field(2),
                field(3),
                field(5),
                field(6) as usize,
            );
            let rdev = (field(9), field(10));
            let namesize = field(11) as usize;
            assert_eq!((uid, gid), (0, 0));
            let name = std::str::from_utf8(&data[110..110 + namesize - 1])
                .unwrap()
                .to_owned();
            let data_start = (110 + namesize).next_multiple_of(4);
            let contents = data[data_start..data_start + size].to_vec();
            let next = (data_start + size).next_multiple_of(4);
            offset += next;
            data = &data[next..];
            if name == "TRAILER!!!" {
                assert!(data.is_empty());
                return entries;
            }
            entries.push((name, mode, ino, mtime, rdev, contents));
        }
    }

    fn sample() -> Archive {
        let mut archive = Archive::new();
        archive.add("/init", Kind::File(b"\x7fELF...".to_vec()), 0o755);
        archive.add(
            "dev/console",
            Kind::CharDevice { major: 5, minor: 1 },
            0o600,
        );
        archive.add(
            "lib/modules/6.1/kernel/fs/ext4.ko",
            Kind::File(vec![1, 2, 3]),
            0o644,
        );
        archive.add("lib64", Kind::Symlink("lib".into()), 0o777);
        archive
    }

    #[test]
    fn entries_are_sorted_with_parents_and_sequential_inodes() {
        let entries = parse(&write(&sample(), 1_700_000_000));
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/6.1",
                "lib/modules/6.1/kernel",
                "lib/modules/6.1/kernel/fs",
                "lib/modules/6.1/kernel/fs/ext4.ko",
                "lib64"
            ]
        );
        let inodes: Vec<_> = entries.iter().map(|e| e.2).collect();
        assert_eq!(inodes, (1..=10).collect::<Vec<_>>());
        assert!(entries.iter().all(|e| e.3 == 1_700_000_000));
    }

    #[test]
    fn modes_devices_links_and_contents_round_trip() {
        let entries = parse(&write(&sample(), 0));
        let get = |name: &str| entries.iter().find(|e| e.0 == name).unwrap().clone();
        assert_eq!(get("dev").1, 0o040_755);
        assert_eq!(get("dev/console").1, 0o020_600);
        assert_eq!(get("dev/console").4, (5, 1));
        assert_eq!(get("init").1, 0o100_755);
        assert_eq!(get("init").5, b"\x7fELF...");
        assert_eq!(get("lib64").1, 0o120_777);
        assert_eq!(get("lib64").5, b"lib");
        assert_eq!(get("lib/modules/6.1/kernel/fs/ext4.ko").5, [1, 2, 3]);
    }

    #[test]
    fn output_does_not_depend_on_insertion_order() {
        let mut reversed = Archive::new();
        reversed.add("lib64", Kind::Symlink("lib".into()), 0o777);
        reversed.add(
            "lib/modules/6.1/kernel/fs/ext4.ko",
            Kind::File(vec![1, 2, 3]),
            0o644,
        );
        reversed.add(
            "dev/console",
            Kind::CharDevice { major: 5, minor: 1 },
            0o600,
        );
        reversed.add("init", Kind::File(b"\x7fELF...".to_vec()), 0o755);
        assert_eq!(write(&reversed, 7), write(&sample(), 7));
    }
}
