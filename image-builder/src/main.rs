//! `image-builder`: builds node images. Subcommands: `kernel-check`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use image_builder::{Format, KernelConfig, Recommendations, check, render};

#[derive(Parser)]
#[command(name = "image-builder", version, about = "Builds node images")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks a kernel .config against the KSPP hardening recommendations.
    ///
    /// Prints every recommendation as met, not met, exception (with our reason) or n/a
    /// (not in this kernel's version or compiler), then the score. Exits 0 when every
    /// applicable requirement is met, 1 when some are not, 2 on errors.
    KernelCheck {
        /// The kernel configuration (.config, /boot/config-*, or a decompressed
        /// /proc/config.gz).
        config: PathBuf,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Recommendations file to use instead of the built-in kernel/kspp.toml.
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("image-builder: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::KernelCheck {
            config,
            output,
            data,
        } => {
            let recommendations = match &data {
                Some(path) => Recommendations::parse(&read(path)?),
                None => Recommendations::embedded(),
            }
            .context("reading the recommendations")?;
            let kernel_config = KernelConfig::parse(&read(&config)?)
                .with_context(|| format!("reading {}", config.display()))?;
            let report = check(&recommendations, &kernel_config);
            let format = match output {
                OutputFormat::Table => Format::Table,
                OutputFormat::Json => Format::Json,
            };
            print!("{}", render(&report, format));
            Ok(if report.score().not_met == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
