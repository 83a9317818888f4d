//! Running the external tools (apt-get, dpkg-deb, mksquashfs, sgdisk, ...).

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use super::error::{BuildError, Result};

/// Builds a command with a clean, deterministic locale and timezone. The caller's
/// `SOURCE_DATE_EPOCH` is removed: the build passes its timestamp explicitly, and some
/// tools refuse both (mksquashfs) or would apply it differently.
pub fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion and returns its stdout; a failure becomes a one-line
/// [`BuildError::Command`] carrying the tool's last line on stderr.
pub fn run(cmd: &mut Command) -> Result<Vec<u8>> {
    let name = describe(cmd);
    let output = cmd.output().map_err(|err| BuildError::Command {
        command: name.clone(),
        detail: format!("cannot run: {err}"),
    })?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    Err(BuildError::Command {
        command: name,
        detail: last_line(&output.stderr)
            .unwrap_or_else(|| format!("exited with {}", output.status)),
    })
}

/// Runs `cmd` and returns its stdout as text.
pub fn run_text(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(cmd)?).into_owned())
}

/// `program first-argument`, for messages.
fn describe(cmd: &Command) -> String {
    let program = cmd.get_program().to_string_lossy();
    match cmd.get_args().next().map(OsStr::to_string_lossy) {
        Some(arg) if !arg.starts_with('/') => format!("{program} {arg}"),
        _ => program.into_owned(),
    }
}

/// The last non-empty line of a tool's stderr.
pub fn last_line(stderr: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_line_skips_blank_lines() {
        assert_eq!(last_line(b"a\nE: broken\n\n").as_deref(), Some("E: broken"));
        assert_eq!(last_line(b"\n \n"), None);
    }

    #[test]
    fn failures_carry_the_last_stderr_line() {
        let err =
            run(command("sh").args(["-c", "echo one >&2; echo two >&2; exit 3"])).unwrap_err();
        assert_eq!(err.to_string(), "sh -c: two");
    }

    #[test]
    fn missing_tools_are_reported() {
        let err = run(&mut command("no-such-tool-here")).unwrap_err();
        assert!(err.to_string().starts_with("no-such-tool-here: cannot run"));
    }
}
