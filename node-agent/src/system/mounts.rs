//! Mounted filesystems, from /proc/self/mountinfo and statvfs.

/// One mount as the Mounts RPC reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// Device or source.
    pub source: String,
    /// Filesystem type.
    pub fstype: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// Mount options.
    pub options: String,
    /// Size in bytes (0 when statvfs is not possible).
    pub size_bytes: u64,
    /// Bytes available to unprivileged users.
    pub available_bytes: u64,
}

/// Parses /proc/self/mountinfo: `id parent major:minor root mountpoint options
/// [optional fields...] - fstype source super-options` (proc(5)).
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let before: Vec<&str> = before.split_whitespace().collect();
            let mut after = after.split_whitespace();
            Some(Mount {
                mount_point: unescape(before.get(4)?),
                options: before.get(5)?.to_string(),
                fstype: after.next()?.to_owned(),
                source: unescape(after.next().unwrap_or("none")),
                size_bytes: 0,
                available_bytes: 0,
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every mount of the agent's mount namespace, with sizes.
pub fn list() -> std::io::Result<Vec<Mount>> {
    let mut mounts = parse(&std::fs::read_to_string("/proc/self/mountinfo")?);
    for mount in &mut mounts {
        if let Ok(stat) = nix::sys::statvfs::statvfs(mount.mount_point.as_str()) {
            let fragment = stat.fragment_size();
            mount.size_bytes = stat.blocks() * fragment;
            mount.available_bytes = stat.blocks_available() * fragment;
        }
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_lines_with_optional_fields_and_escapes_parse() {
        let text = "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n\
                    garbage\n";
        let mounts = super::parse(text);
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].mount_point, "/mnt two");
        assert_eq!(mounts[0].fstype, "ext3");
        assert_eq!(mounts[0].source, "/dev/root");
        assert_eq!(mounts[0].options, "rw,noatime");
    }
}
