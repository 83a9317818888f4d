//! The command line: `kubectl talos [--kubeconfig PATH] [--context NAME] [-o FORMAT]
//! COMMAND ...`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::output::Format;

/// The plugin's arguments; kubectl runs `kubectl-talos` with everything after
/// `kubectl talos`.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-talos",
    bin_name = "kubectl talos",
    version,
    about = "Manage node-os machines through their TalosNode and TalosUpgrade resources."
)]
pub struct Cli {
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Output format of data commands (get, describe, rollout status).
    #[arg(short, long, global = true, value_enum, default_value_t)]
    pub output: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List TalosNodes (all, or the named ones).
    Get(GetArgs),
    /// Show one TalosNode in detail: spec, status, conditions, pending config diff.
    Describe(DescribeArgs),
    /// Ask the operator to reboot nodes (sets spec.rebootRequestedAt).
    Reboot(RebootArgs),
    /// Start a rollout of an OS release (creates a TalosUpgrade).
    Upgrade(UpgradeArgs),
    /// Add a config patch to a node: preview the diff, then apply it.
    ApplyConfig(ApplyConfigArgs),
    /// Pause a rollout: no new node is started (nodes already upgrading finish).
    Pause(RolloutArgs),
    /// Resume a paused rollout.
    Resume(RolloutArgs),
    /// Follow rollouts.
    Rollout {
        /// The rollout command.
        #[command(subcommand)]
        command: RolloutCommand,
    },
}

/// `get [NODE...]`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// TalosNode names; none: all.
    #[arg(value_name = "NODE")]
    pub nodes: Vec<String>,
}

/// `describe NODE`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The TalosNode.
    #[arg(value_name = "NODE")]
    pub node: String,
}

/// `reboot NODE... [--wait] [--timeout DUR]`.
#[derive(Debug, Args)]
pub struct RebootArgs {
    /// The TalosNodes to reboot.
    #[arg(value_name = "NODE", required = true)]
    pub nodes: Vec<String>,
    /// Wait until every node has rebooted and is Ready again.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (e.g. 90s, 10m).
    #[arg(long, value_name = "DUR", default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `upgrade (NODE... | --selector S) --version V --url URL ...`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("targets").required(true).multiple(true).args(["nodes", "selector"]))]
pub struct UpgradeArgs {
    /// TalosNodes to upgrade, by name (with --selector: listed and matching).
    #[arg(value_name = "NODE")]
    pub nodes: Vec<String>,
    /// TalosNodes to upgrade, by label (`a=b,c!=d,e in (x,y),!f,g`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// The release's version, as in its bundle's manifest (e.g. 1.4.0).
    #[arg(long, value_name = "V")]
    pub version: String,
    /// Where nodes download the bundle (https:// only).
    #[arg(long, value_name = "HTTPS_URL")]
    pub url: String,
    /// The bundle's sha256 (64 hex digits); nodes refuse a download with another.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Nodes upgrading at once: a count (2) or a percentage (25%); default 1.
    #[arg(long, value_name = "N|P%", value_parser = parse_max_unavailable)]
    pub max_unavailable: Option<IntOrString>,
    /// The TalosUpgrade's name (default: upgrade-<version>-<unix seconds>).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Follow the rollout like `rollout status --watch`.
    #[arg(long)]
    pub wait: bool,
}

/// The apply modes, as `--mode` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Without a reboot when the change allows it, with one when it needs one.
    Auto,
    /// Only changes that need no reboot.
    NoReboot,
    /// Stored, applied at the next boot.
    Staged,
    /// Applied, and rolled back unless confirmed in time.
    Try,
}

impl From<Mode> for crds::ApplyMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Auto => crds::ApplyMode::Auto,
            Mode::NoReboot => crds::ApplyMode::NoReboot,
            Mode::Staged => crds::ApplyMode::Staged,
            Mode::Try => crds::ApplyMode::Try,
        }
    }
}

/// `apply-config NODE -f PATCH_FILE ...`.
#[derive(Debug, Args)]
pub struct ApplyConfigArgs {
    /// The TalosNode.
    #[arg(value_name = "NODE")]
    pub node: String,
    /// The patch: a YAML/JSON mapping (merge patch) or list (RFC 6902); `-` for stdin.
    #[arg(short = 'f', long = "file", value_name = "PATCH_FILE")]
    pub file: PathBuf,
    /// How the node applies the change (sets spec.applyMode).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Show the diff only; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long each wait (preview, apply) may take.
    #[arg(long, value_name = "DUR", default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `pause ROLLOUT` and `resume ROLLOUT`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// The TalosUpgrade.
    #[arg(value_name = "ROLLOUT")]
    pub rollout: String,
}

/// The `rollout` commands.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Show a rollout's progress and its nodes.
    Status(RolloutStatusArgs),
}

/// `rollout status ROLLOUT [--watch]`.
#[derive(Debug, Args)]
pub struct RolloutStatusArgs {
    /// The TalosUpgrade.
    #[arg(value_name = "ROLLOUT")]
    pub rollout: String,
    /// Print a line per change until the rollout Succeeded (exit 0) or Failed (exit 1).
    #[arg(short, long)]
    pub watch: bool,
    /// With --watch, give up after this long (default: never).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// A duration as people write it (`90s`, `10m`, `1h30m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration (e.g. 90s, 10m): {e}"))
}

/// `--max-unavailable`: a count of at least 1, or a percentage from 1% to 100% (what
/// the CRD accepts), kept as a string so the API server sees `"25%"`.
pub fn parse_max_unavailable(text: &str) -> Result<IntOrString, String> {
    let refuse =
        || format!("{text:?} is neither a count of at least 1 nor a percentage from 1% to 100%");
    if let Some(percent) = text.strip_suffix('%') {
        match percent.parse::<u8>() {
            Ok(1..=100) if !percent.starts_with('0') && !percent.starts_with('+') => {
                Ok(IntOrString::String(text.to_owned()))
            }
            _ => Err(refuse()),
        }
    } else {
        match text.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(IntOrString::Int(n)),
            _ => Err(refuse()),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn max_unavailable_is_a_count_or_a_percentage() {
        assert_eq!(parse_max_unavailable("2"), Ok(IntOrString::Int(2)));
        assert_eq!(
            parse_max_unavailable("25%"),
            Ok(IntOrString::String("25%".into()))
        );
        assert_eq!(
            parse_max_unavailable("100%"),
            Ok(IntOrString::String("100%".into()))
        );
        for bad in ["0", "-1", "0%", "101%", "05%", "x", "%", "2.5"] {
            assert!(parse_max_unavailable(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upgrade_needs_nodes_or_a_selector() {
        let base = [
            "kubectl-talos",
            "upgrade",
            "--version",
            "1.4.0",
            "--url",
            "https://x/b",
        ];
        assert!(Cli::try_parse_from(base).is_err());
        assert!(Cli::try_parse_from(base.iter().chain(&["n1", "n2"])).is_ok());
        assert!(Cli::try_parse_from(base.iter().chain(&["-l", "pool=a"])).is_ok());
        assert!(Cli::try_parse_from(base.iter().chain(&["n1", "--selector", "pool=a"])).is_ok());
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "kubectl-talos",
            "get",
            "n1",
            "-o",
            "yaml",
            "--context",
            "lab",
            "--kubeconfig",
            "k",
        ])
        .unwrap();
        assert_eq!(cli.output, Format::Yaml);
        assert_eq!(cli.context.as_deref(), Some("lab"));
        let Command::Get(args) = cli.command else {
            panic!("not get")
        };
        assert_eq!(args.nodes, ["n1"]);
    }
}
