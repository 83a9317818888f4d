//! CPU time and memory of a container, read from the cgroups of its main process.
//!
//! Works on cgroup v2 (a node booted by the agent) and on v1 or hybrid hosts (a
//! process node): the process's `/proc/PID/cgroup` names its cgroup per hierarchy, and
//! `/proc/self/mountinfo` says where each hierarchy is mounted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::supervisor::ProcessStats;

/// The usage of the cgroup(s) process `pid` is in.
pub fn usage(pid: u32) -> io::Result<ProcessStats> {
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mounts = cgroup_mounts(&mountinfo);
    if let Some(dir) = v2_dir(&cgroups, &mounts)
        && dir.join("memory.current").exists()
    {
        return crate::supervisor::cgroup_usage(&dir);
    }
    let memory = v1_dir(&cgroups, &mounts, "memory").ok_or_else(|| missing("memory"))?;
    let cpu = v1_dir(&cgroups, &mounts, "cpuacct").ok_or_else(|| missing("cpuacct"))?;
    Ok(ProcessStats {
        cpu_time: Duration::from_nanos(read_number(&cpu.join("cpuacct.usage"))?),
        memory_bytes: read_number(&memory.join("memory.usage_in_bytes"))?,
    })
}

/// A mounted cgroup hierarchy: its controllers (empty for v2), root and mount point.
#[derive(Debug, PartialEq, Eq)]
struct CgroupMount {
    v2: bool,
    controllers: Vec<String>,
    root: String,
    mount_point: PathBuf,
}

/// The cgroup mounts of a mountinfo text.
fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut rest = after.split(' ');
            let fstype = rest.next()?;
            let _source = rest.next()?;
            let options = rest.next().unwrap_or("");
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            Some(CgroupMount {
                v2,
                controllers: options.split(',').map(str::to_owned).collect(),
                root: (*fields.get(3)?).to_owned(),
                mount_point: PathBuf::from(fields.get(4)?),
            })
        })
        .collect()
}

/// The directory of the v2 cgroup in a `/proc/PID/cgroup` text.
fn v2_dir(cgroups: &str, mounts: &[CgroupMount]) -> Option<PathBuf> {
    let path = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mount = mounts.iter().find(|m| m.v2)?;
    Some(join(mount, path))
}

/// The directory of the v1 cgroup of `controller` in a `/proc/PID/cgroup` text.
fn v1_dir(cgroups: &str, mounts: &[CgroupMount], controller: &str) -> Option<PathBuf> {
    let path = cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers
            .split(',')
            .any(|c| c == controller)
            .then_some(path)
    })?;
    let mount = mounts
        .iter()
        .find(|m| !m.v2 && m.controllers.iter().any(|c| c == controller))?;
    Some(join(mount, path))
}

/// The directory of cgroup `path` (as /proc/PID/cgroup names it) under `mount`.
fn join(mount: &CgroupMount, path: &str) -> PathBuf {
    let relative = path
        .strip_prefix(mount.root.as_str())
        .unwrap_or(path)
        .trim_start_matches('/');
    mount.mount_point.join(relative)
}

fn read_number(path: &Path) -> io::Result<u64> {
    let text = fs::read_to_string(path)?;
    text.trim().parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {text:?}: {e}", path.display()),
        )
    })
}

fn missing(controller: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no {controller} cgroup for the process (neither v2 nor v1)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_v1_directories_per_controller() {
        let mounts = cgroup_mounts(HYBRID);
        assert_eq!(mounts.len(), 3);
        let proc_cgroup = "4:memory:/agent/web\n2:cpu,cpuacct:/web\n0::/web\n";
        assert_eq!(
            v1_dir(proc_cgroup, &mounts, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/agent/web"))
        );
        assert_eq!(
            v1_dir(proc_cgroup, &mounts, "cpuacct"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/web"))
        );
        assert_eq!(
            v2_dir(proc_cgroup, &mounts),
            Some(PathBuf::from("/sys/fs/cgroup/unified/web"))
        );
    }

    #[test]
    fn v2_paths_are_relative_to_the_mount_root() {
        let mounts = cgroup_mounts("30 1 0:26 /system /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(
            v2_dir("0::/system/web\n", &mounts),
            Some(PathBuf::from("/sys/fs/cgroup/web"))
        );
    }

    #[test]
    fn reads_this_process() {
        // Whatever the host's cgroup layout, the agent's own process has usage.
        let stats = usage(std::process::id()).expect("usage of this process");
        assert!(stats.memory_bytes > 0);
    }
}
