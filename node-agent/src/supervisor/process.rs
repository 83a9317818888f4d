//! Building a service's command line and signalling its process group.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use machine_config::ServiceSpec;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tracing::warn;

/// PATH for services when the agent itself has none (PID 1 starts with an empty environment).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A command for `argv` in the environment of `spec`: a minimal PATH (the agent's own if
/// it has one) under the spec's variables, stdin from /dev/null, working directory `cwd`,
/// and a new process group so that the whole service can be signalled at once.
///
/// Used for the service itself and for its exec health check.
pub(super) fn command(
    spec: &ServiceSpec,
    argv: &[String],
    cwd: Option<&Path>,
) -> Result<Command, String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from(DEFAULT_PATH));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", path)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .process_group(0);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    Ok(cmd)
}

/// The process group of a spawned command (its pgid is the leader's pid).
///
/// Dropping it while armed kills the group with SIGKILL, so that a cancelled supervisor
/// task (service removed, runtime shut down, timed-out health check) never leaves
/// processes behind.
#[derive(Debug)]
pub(super) struct ProcessGroup {
    pgid: Pid,
    armed: bool,
}

impl ProcessGroup {
    /// Takes charge of the group led by `pid`.
    pub(super) fn new(pid: u32) -> Self {
        ProcessGroup {
            // Pids are at most 2^22 (PID_MAX_LIMIT), so they always fit an i32.
            pgid: Pid::from_raw(pid as i32),
            armed: true,
        }
    }

    /// Sends `signal` to every process of the group; a group that is already gone is fine.
    pub(super) fn signal(&self, signal: Signal) {
        match killpg(self.pgid, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                warn!(pgid = self.pgid.as_raw(), %signal, error = %e, "cannot signal process group")
            }
        }
    }

    /// Called once the leader has exited: kills what is left of the group (background
    /// children of a service die with it) and disarms the drop guard.
    pub(super) fn finish(mut self) {
        self.signal(Signal::SIGKILL);
        self.armed = false;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.armed {
            self.signal(Signal::SIGKILL);
        }
    }
}
