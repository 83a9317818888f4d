//! Per-service cgroup v2 directories: creation, attaching a process, usage.
//!
//! The root (e.g. `/sys/fs/cgroup/system`) is prepared by the agent's init code; it
//! should have the `cpu` and `memory` controllers enabled in its `cgroup.subtree_control`.
//! Without the memory controller `memory.current` is missing and the stats API falls
//! back to `/proc`.
//!
//! A service joins its cgroup right after spawn (no unsafe pre-exec hook is allowed in
//! this crate), so a process it forks in that first instant stays in the agent's cgroup;
//! it is still in the service's process group, which is what stopping signals.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::status::ProcessStats;

/// Creates (if needed) the cgroup of service `name` under `root` and returns its path.
pub(super) fn create(root: &Path, name: &str) -> io::Result<PathBuf> {
    let dir = root.join(name);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Moves process `pid` into the cgroup `dir`. Its future children are born there.
pub(super) fn attach(dir: &Path, pid: u32) -> io::Result<()> {
    fs::write(dir.join("cgroup.procs"), format!("{pid}\n"))
}

/// Removes the cgroup directory of a service that is gone (fails while it has processes).
pub(super) fn remove(dir: &Path) -> io::Result<()> {
    fs::remove_dir(dir)
}

/// Reads CPU time (`cpu.stat` usage_usec) and memory (`memory.current`) of cgroup `dir`.
pub(crate) fn usage(dir: &Path) -> io::Result<ProcessStats> {
    let cpu_stat = fs::read_to_string(dir.join("cpu.stat"))?;
    let usec = parse_usage_usec(&cpu_stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "cpu.stat has no usage_usec"))?;
    let memory = fs::read_to_string(dir.join("memory.current"))?;
    let memory_bytes = memory.trim().parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("memory.current {memory:?}: {e}"),
        )
    })?;
    Ok(ProcessStats {
        cpu_time: Duration::from_micros(usec),
        memory_bytes,
    })
}

/// Extracts `usage_usec` from the text of a `cpu.stat` file.
fn parse_usage_usec(cpu_stat: &str) -> Option<u64> {
    cpu_stat.lines().find_map(|line| {
        let value = line.strip_prefix("usage_usec ")?;
        value.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_stat() {
        let text = "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n\
                    nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";
        assert_eq!(parse_usage_usec(text), Some(1_234_567));
        assert_eq!(parse_usage_usec("user_usec 5\n"), None);
        assert_eq!(parse_usage_usec("usage_usec x\n"), None);
    }

    #[test]
    fn reads_usage_and_attaches_in_a_fake_hierarchy() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = create(root.path(), "svc").expect("create");
        attach(&dir, 77).expect("attach");
        assert_eq!(
            fs::read_to_string(dir.join("cgroup.procs")).expect("procs"),
            "77\n"
        );
        fs::write(dir.join("cpu.stat"), "usage_usec 2500000\nuser_usec 1\n").expect("write");
        fs::write(dir.join("memory.current"), "8192\n").expect("write");
        let usage = usage(&dir).expect("usage");
        assert_eq!(usage.cpu_time, Duration::from_millis(2500));
        assert_eq!(usage.memory_bytes, 8192);
    }
}
