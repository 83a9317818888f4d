//! Reading `/proc/<pid>/stat`: resource usage of a service without cgroups, and the
//! zombie children the reaper needs to find when `waitid` cannot name a status.

use std::io;
use std::path::Path;
use std::time::Duration;

pub(super) use crate::system::processes::read_all;
use crate::system::processes::{Stat, Units};

use super::status::ProcessStats;

/// The processes that belong to a service whose main process is `root`: the main
/// process, its descendants (following ppid links), and members of its process group
/// (which catches children that were orphaned and reparented to the agent).
pub(super) fn family(all: &[Stat], root: u32) -> Vec<&Stat> {
    let mut members: Vec<&Stat> = all
        .iter()
        .filter(|p| p.pid == root || p.pgrp == root)
        .collect();
    // Breadth-first over ppid links; `members` grows while we walk it.
    let mut next = 0;
    while next < members.len() {
        let parent = members[next].pid;
        for p in all {
            if p.ppid == parent && !members.iter().any(|m| m.pid == p.pid) {
                members.push(p);
            }
        }
        next += 1;
    }
    members
}

/// Sums CPU time and RSS over `family(all, root)`.
///
/// `units` come from sysconf in production; they are a parameter so that the
/// arithmetic can be tested on sample text.
pub(super) fn sum_usage(all: &[Stat], root: u32, units: Units) -> Option<ProcessStats> {
    let members = family(all, root);
    if !members.iter().any(|p| p.pid == root) {
        return None;
    }
    Some(ProcessStats {
        cpu_time: members.iter().map(|p| units.cpu_time(p)).sum::<Duration>(),
        memory_bytes: members.iter().map(|p| p.rss_pages).sum::<u64>() * units.page_size,
    })
}

/// Resource usage of the main process `pid` and its family, read from `/proc`.
pub(super) fn usage(pid: u32) -> io::Result<ProcessStats> {
    let all = read_all(Path::new("/proc"))?;
    sum_usage(&all, pid, Units::system())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("process {pid} is gone")))
}

/// The pids of zombie processes whose parent is `parent`.
pub(super) fn zombie_children(all: &[Stat], parent: u32) -> Vec<u32> {
    all.iter()
        .filter(|p| p.ppid == parent && p.state == 'Z')
        .map(|p| p.pid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, ppid: u32, pgrp: u32, state: char, ticks: u64, rss: u64) -> Stat {
        Stat {
            pid,
            comm: "test".into(),
            state,
            ppid,
            pgrp,
            utime: ticks,
            stime: 0,
            threads: 1,
            start_ticks: 0,
            vsize: 0,
            rss_pages: rss,
        }
    }

    #[test]
    fn family_follows_ppid_links_and_the_process_group() {
        let all = vec![
            stat(1, 0, 1, 'S', 1, 1),
            stat(10, 1, 10, 'S', 10, 100),  // the service
            stat(11, 10, 10, 'S', 20, 200), // its child
            stat(12, 11, 12, 'S', 30, 300), // grandchild in its own group
            stat(13, 1, 10, 'S', 40, 400),  // orphan still in the service's group
            stat(14, 1, 14, 'S', 50, 500),  // unrelated
        ];
        let mut pids: Vec<u32> = family(&all, 10).iter().map(|p| p.pid).collect();
        pids.sort_unstable();
        assert_eq!(pids, vec![10, 11, 12, 13]);

        let units = Units {
            ticks_per_second: 100,
            page_size: 4096,
        };
        let usage = sum_usage(&all, 10, units).expect("root present");
        assert_eq!(usage.cpu_time, Duration::from_millis(1000));
        assert_eq!(usage.memory_bytes, 1000 * 4096);
        assert_eq!(sum_usage(&all, 99, units), None);
    }

    #[test]
    fn finds_zombie_children() {
        let all = vec![
            stat(20, 5, 20, 'Z', 0, 0),
            stat(21, 5, 21, 'S', 0, 0),
            stat(22, 6, 22, 'Z', 0, 0),
        ];
        assert_eq!(zombie_children(&all, 5), vec![20]);
    }

    #[test]
    fn reads_this_process_from_proc() {
        let me = std::process::id();
        let all = read_all(Path::new("/proc")).expect("/proc readable");
        assert!(all.iter().any(|p| p.pid == me));
        let usage = usage(std::process::id()).expect("own usage");
        assert!(usage.memory_bytes > 0);
    }
}
