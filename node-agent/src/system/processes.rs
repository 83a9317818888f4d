//! Processes, from /proc/PID/stat and cmdline: the one parser of /proc/PID/stat in
//! the agent (the Processes RPC and the supervisor's per-service usage both use it).

use std::path::Path;
use std::time::Duration;

/// One process as the Processes RPC reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// State letter (R, S, D, Z, ...).
    pub state: String,
    /// Number of threads.
    pub threads: u32,
    /// User plus system CPU time.
    pub cpu_time: Duration,
    /// Resident set size in bytes.
    pub resident_bytes: u64,
    /// Virtual memory size in bytes.
    pub virtual_bytes: u64,
    /// Executable name (`comm`).
    pub command: String,
    /// Full command line, arguments joined by spaces.
    pub args: String,
}

/// The fields of /proc/PID/stat the agent uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    /// Process id.
    pub pid: u32,
    /// Executable name, without the parentheses.
    pub comm: String,
    /// State letter.
    pub state: char,
    /// Parent process id.
    pub ppid: u32,
    /// Process group id.
    pub pgrp: u32,
    /// User CPU time in clock ticks.
    pub utime: u64,
    /// System CPU time in clock ticks.
    pub stime: u64,
    /// Number of threads.
    pub threads: u32,
    /// When the process started, in clock ticks since the machine booted.
    pub start_ticks: u64,
    /// Virtual memory size in bytes.
    pub vsize: u64,
    /// Resident set size in pages.
    pub rss_pages: u64,
}

/// Parses the text of /proc/PID/stat. The command name may contain spaces and
/// parentheses, so it is taken between the first `(` and the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_owned();
    // Fields after the command, numbered from 3 (state) as in proc(5).
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    Some(Stat {
        pid,
        comm,
        state: field(3)?.chars().next()?,
        ppid: field(4)?.parse().ok()?,
        pgrp: field(5)?.parse().ok()?,
        utime: field(14)?.parse().ok()?,
        stime: field(15)?.parse().ok()?,
        threads: field(20)?.parse().ok()?,
        start_ticks: field(22)?.parse().ok()?,
        vsize: field(23)?.parse().ok()?,
        rss_pages: field(24)?.parse().ok()?,
    })
}

/// The stat record of every process under `proc_root` (normally `/proc`), by pid.
/// Processes that vanish while being read are skipped: the listing is a snapshot.
pub fn read_all(proc_root: &Path) -> std::io::Result<Vec<Stat>> {
    let mut all: Vec<Stat> = std::fs::read_dir(proc_root)?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            entry.file_name().to_str()?.parse::<u32>().ok()?;
            parse_stat(&std::fs::read_to_string(entry.path().join("stat")).ok()?)
        })
        .collect();
    all.sort_unstable_by_key(|stat| stat.pid);
    Ok(all)
}

/// Clock ticks per second and page size, to turn /proc figures into units.
#[derive(Debug, Clone, Copy)]
pub struct Units {
    /// Clock ticks per second (`_SC_CLK_TCK`).
    pub ticks_per_second: u64,
    /// Page size in bytes.
    pub page_size: u64,
}

impl Units {
    /// The units of this system.
    pub fn system() -> Self {
        use nix::unistd::{SysconfVar, sysconf};
        let value = |var, fallback| sysconf(var).ok().flatten().map_or(fallback, |v| v as u64);
        Self {
            ticks_per_second: value(SysconfVar::CLK_TCK, 100),
            page_size: value(SysconfVar::PAGE_SIZE, 4096),
        }
    }

    /// CPU time of a stat record.
    pub fn cpu_time(&self, stat: &Stat) -> Duration {
        Duration::from_nanos((stat.utime + stat.stime) * 1_000_000_000 / self.ticks_per_second)
    }
}

/// Every process of the system.
pub fn list() -> std::io::Result<Vec<Process>> {
    let units = Units::system();
    Ok(read_all(Path::new("/proc"))?
        .into_iter()
        .map(|stat| {
            let pid = stat.pid;
            let args = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| {
                    raw.split(|b| *b == 0)
                        .filter(|a| !a.is_empty())
                        .map(String::from_utf8_lossy)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            Process {
                pid: stat.pid,
                ppid: stat.ppid,
                state: stat.state.to_string(),
                threads: stat.threads,
                cpu_time: units.cpu_time(&stat),
                resident_bytes: stat.rss_pages * units.page_size,
                virtual_bytes: stat.vsize,
                command: stat.comm,
                args,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_spaces_and_parentheses_in_the_name() {
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 2 0 \
                    12345 10485760 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.pid, 4242);
        assert_eq!(stat.comm, "my (odd) name");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.pgrp, 4242);
        assert_eq!((stat.utime, stat.stime), (7, 3));
        assert_eq!(stat.threads, 2);
        assert_eq!(stat.vsize, 10485760);
        assert_eq!(stat.rss_pages, 300);
    }

    #[test]
    fn this_process_is_listed() {
        let me = std::process::id();
        let all = list().unwrap();
        let mine = all.iter().find(|p| p.pid == me).expect("own pid listed");
        assert!(mine.resident_bytes > 0);
    }
}
