//! The process-wide reaper: the one place that waits for child processes.
//!
//! A dedicated thread runs a small tokio runtime that waits for SIGCHLD (with a one-second
//! sweep as a safety net) and then collects every exited child:
//!
//! * a child spawned through [`spawn_process`] is registered (pid -> [`std::process::Child`] and a
//!   oneshot sender); its status is collected with `Child::try_wait` (which keeps the raw
//!   status, including signals that `nix` cannot name) and sent to its [`ExitWaiter`];
//! * any other exited child is an orphan reparented to the agent (PID 1 or a subreaper):
//!   it is simply reaped, so it never lingers as a zombie.
//!
//! Waiting uses `waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT)` to look at the next exited
//! child without collecting it, then collects it by pid the right way.
//!
//! No status is lost: [`spawn_process`] holds the registry lock across `Command::spawn` and the
//! insertion, and the reaper holds the same lock while it collects, so a child that exits
//! immediately is only looked at after it has been registered. Holding the lock also keeps
//! the reaper away from the child std itself waits for when `exec` fails.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, ChildStderr, ChildStdout, Command};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::task::{Context, Poll};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, waitid, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tracing::{debug, error};

use super::{lock, procfs};

/// Time between sweeps when no SIGCHLD arrives (a safety net; SIGCHLD does the work).
const SWEEP: Duration = Duration::from_secs(1);

/// Upper bound on the children collected in one sweep, so a misbehaving kernel answer
/// can never make the reaper spin; the next SIGCHLD or sweep continues.
const MAX_PER_SWEEP: usize = 4096;

/// How a process started with [`spawn_process`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal number.
    Signaled(i32),
    /// Its status was collected outside the reaper (the module invariant was broken);
    /// the process is gone but how it ended is not known.
    Unknown,
}

impl ExitStatus {
    /// True for `exit(0)`: what the `on-failure` restart policy and exec health checks test.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    fn from_std(status: std::process::ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Exited(code),
            (None, Some(signal)) => ExitStatus::Signaled(signal),
            (None, None) => ExitStatus::Unknown,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(code) => write!(f, "exit status {code}"),
            ExitStatus::Signaled(number) => match Signal::try_from(number) {
                Ok(signal) => write!(f, "signal {number} ({})", signal.as_str()),
                Err(_) => write!(f, "signal {number}"),
            },
            ExitStatus::Unknown => f.write_str("exit status unknown"),
        }
    }
}

/// A process started through the reaper: its pid, its output pipes (when the command
/// asked for them) and the future of its exit status.
///
/// There is deliberately no `std::process::Child` here: waiting on it would race with
/// the reaper.
#[derive(Debug)]
pub struct Spawned {
    /// The process id (also its process group id when the command set `process_group(0)`).
    pub pid: u32,
    /// The read end of its stdout, if the command piped it.
    pub stdout: Option<ChildStdout>,
    /// The read end of its stderr, if the command piped it.
    pub stderr: Option<ChildStderr>,
    /// Resolves to its exit status once the reaper has collected it.
    pub exit: ExitWaiter,
}

/// The future exit status of a process started with [`spawn_process`]; cancel-safe, may be
/// polled by reference (`&mut waiter`) from `select!`.
#[derive(Debug)]
pub struct ExitWaiter {
    rx: oneshot::Receiver<ExitStatus>,
}

impl Future for ExitWaiter {
    type Output = ExitStatus;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ExitStatus> {
        // The sender lives in the static registry and always sends before it is dropped;
        // a closed channel would still mean the process is gone, so report it as unknown.
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|status| status.unwrap_or(ExitStatus::Unknown))
    }
}

struct Registered {
    child: Child,
    tx: oneshot::Sender<ExitStatus>,
}

struct Reaper {
    /// Registered children by pid. Also the lock that serialises spawning and collecting.
    children: Mutex<BTreeMap<u32, Registered>>,
    /// Whether the reaper thread runs.
    started: Mutex<bool>,
}

/// The single reaper of the process.
static REAPER: Reaper = Reaper {
    children: Mutex::new(BTreeMap::new()),
    started: Mutex::new(false),
};

/// Makes this process the reaper of its orphaned descendants (`PR_SET_CHILD_SUBREAPER`),
/// so that a service's background children that outlive it are reparented to the agent
/// and collected by the reaper instead of escaping supervision. PID 1 already is; the
/// agent running as a normal process (process platform, tests) must call this at start.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Starts the reaper thread if it is not running yet; idempotent.
///
/// [`spawn_process`] calls it, but PID 1 must reap orphans from the first moment, so the agent
/// calls it at boot, right after [`become_subreaper`].
pub fn start_reaper() -> io::Result<()> {
    let mut started = lock(&REAPER.started);
    if *started {
        return Ok(());
    }
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || reaper_thread(&ready_tx))?;
    ready_rx
        .recv()
        .map_err(|_| io::Error::other("the reaper thread ended before it was ready"))??;
    *started = true;
    Ok(())
}

/// Spawns `cmd` and registers it with the reaper; the ONLY way the agent may start a
/// child process (see the module doc of `supervisor` for why).
pub fn spawn_process(cmd: &mut Command) -> io::Result<Spawned> {
    start_reaper()?;
    // Held across spawn and insert: see the module doc.
    let mut children = lock(&REAPER.children);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let (tx, rx) = oneshot::channel();
    let spawned = Spawned {
        pid,
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        exit: ExitWaiter { rx },
    };
    children.insert(pid, Registered { child, tx });
    Ok(spawned)
}

fn reaper_thread(ready: &mpsc::Sender<io::Result<()>>) {
    // `start_reaper` blocks on the other end until it hears from us, so these sends
    // cannot fail; there is nothing to do if they did.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    runtime.block_on(async move {
        let mut sigchld = match signal(SignalKind::child()) {
            Ok(sigchld) => sigchld,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        loop {
            // Collect first: children may have exited before the handler was installed.
            reap_all();
            tokio::select! {
                got = sigchld.recv() => {
                    if got.is_none() {
                        // The signal stream ended (never expected): keep sweeping.
                        tokio::time::sleep(SWEEP).await;
                    }
                }
                () = tokio::time::sleep(SWEEP) => {}
            }
        }
    });
}

/// Collects every child that has exited.
fn reap_all() {
    let mut children = lock(&REAPER.children);
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    for _ in 0..MAX_PER_SWEEP {
        match waitid(Id::All, flags) {
            Ok(status) => match status.pid() {
                Some(pid) => collect(&mut children, pid),
                // StillAlive: children exist, none has exited.
                None => return,
            },
            Err(Errno::ECHILD) => return,
            Err(Errno::EINTR) => {}
            // A child was killed by a signal nix cannot name (e.g. SIGRTMIN+n), so the
            // peek could not tell its pid.
            Err(Errno::EINVAL) => collect_unnamed(&mut children),
            Err(e) => {
                error!(error = %e, "waitid failed");
                return;
            }
        }
    }
}

type Children<'a> = MutexGuard<'a, BTreeMap<u32, Registered>>;

/// Collects exited child `pid`: delivers the status of a registered one, reaps an orphan.
fn collect(children: &mut Children<'_>, pid: Pid) {
    let registered = u32::try_from(pid.as_raw()).is_ok_and(|key| collect_registered(children, key));
    if !registered {
        reap_orphan(pid);
    }
}

/// Collects registered child `key` if it has exited; false if it is not registered or
/// still runs.
fn collect_registered(children: &mut Children<'_>, key: u32) -> bool {
    let Some(registered) = children.get_mut(&key) else {
        return false;
    };
    let status = match registered.child.try_wait() {
        Ok(None) => return false,
        Ok(Some(status)) => ExitStatus::from_std(status),
        Err(e) => {
            error!(pid = key, error = %e, "exit status lost: the child was collected elsewhere");
            ExitStatus::Unknown
        }
    };
    if let Some(registered) = children.remove(&key)
        && registered.tx.send(status).is_err()
    {
        debug!(pid = key, %status, "nobody waits for this exit status");
    }
    true
}

fn reap_orphan(pid: Pid) {
    // The status of an orphan interests nobody; an error after collection (a signal nix
    // cannot name) still collected it.
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(status) => debug!(?status, "reaped an orphan"),
        Err(e) => debug!(pid = pid.as_raw(), error = %e, "reaped an orphan"),
    }
}

/// Handles an exited child whose pid `waitid` could not report.
fn collect_unnamed(children: &mut Children<'_>) {
    let keys: Vec<u32> = children.keys().copied().collect();
    let mut collected = false;
    for key in keys {
        collected |= collect_registered(children, key);
    }
    if collected {
        return;
    }
    // Not a registered child: find the orphan zombie(s) by pid in /proc. Registered
    // zombies (children that exited since the loop above) are left to the next peek,
    // which collects them with their status.
    let me = std::process::id();
    let zombies = procfs::read_all(Path::new("/proc"))
        .map(|all| procfs::zombie_children(&all, me))
        .unwrap_or_default();
    if zombies.is_empty() {
        // Without /proc, collect whatever exited so that the sweep cannot spin; a
        // registered child could lose its status here, which needs /proc missing AND an
        // unnamed signal AND an exit in this very instant.
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => debug!(?status, "reaped a child blindly"),
            Err(e) => debug!(error = %e, "reaped a child blindly"),
        }
    }
    for zombie in zombies
        .into_iter()
        .filter(|pid| !children.contains_key(pid))
    {
        // Pids are at most 2^22 (PID_MAX_LIMIT), so they always fit an i32.
        reap_orphan(Pid::from_raw(zombie as i32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_statuses_like_a_shell_user_expects() {
        assert_eq!(ExitStatus::Exited(1).to_string(), "exit status 1");
        assert_eq!(ExitStatus::Signaled(9).to_string(), "signal 9 (SIGKILL)");
        assert_eq!(ExitStatus::Signaled(34).to_string(), "signal 34");
        assert!(ExitStatus::Exited(0).success());
        assert!(!ExitStatus::Signaled(15).success());
    }

    #[tokio::test]
    async fn delivers_every_status_even_for_instant_exits() {
        let mut waiters = Vec::new();
        for code in 0..16 {
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", &format!("exit {code}")]);
            waiters.push((code, spawn_process(&mut cmd).expect("spawn sh").exit));
        }
        for (code, waiter) in waiters {
            let status = tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("status delivered");
            assert_eq!(status, ExitStatus::Exited(code));
        }
    }

    #[tokio::test]
    async fn delivers_signals_nix_cannot_name() {
        // 34 is SIGRTMIN on glibc: waitid via nix fails with EINVAL for it.
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "kill -34 $$; sleep 5"]);
        let spawned = spawn_process(&mut cmd).expect("spawn sh");
        let status = tokio::time::timeout(Duration::from_secs(5), spawned.exit)
            .await
            .expect("status delivered");
        assert_eq!(status, ExitStatus::Signaled(34));
    }

    #[tokio::test]
    async fn reaps_orphans_killed_by_signals_nix_cannot_name() {
        super::become_subreaper().expect("become a subreaper");
        // The grandchild outlives its parent, is reparented to us, then dies of signal 34.
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "sh -c 'sleep 0.1; kill -34 $$' >/dev/null & echo $!"])
            .stdout(std::process::Stdio::piped());
        let mut spawned = spawn_process(&mut cmd).expect("spawn sh");
        let mut out = String::new();
        let mut stdout = spawned.stdout.take().expect("piped stdout");
        std::io::Read::read_to_string(&mut stdout, &mut out).expect("read pid");
        assert_eq!(spawned.exit.await, ExitStatus::Exited(0));
        let orphan = format!("/proc/{}", out.trim());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while Path::new(&orphan).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{orphan} was not reaped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn spawn_errors_are_reported_not_lost() {
        let err =
            spawn_process(&mut Command::new("/nonexistent/program")).expect_err("no such program");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
