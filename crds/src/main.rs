//! `crds`: prints or writes the CustomResourceDefinitions of TalosNode and TalosUpgrade.
//!
//! Exit codes: 0 on success, 1 on an error, 2 on a usage error (clap's).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Prints or writes the CRDs generated from the Rust types.
#[derive(Parser)]
#[command(name = "crds", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What to do with the CRDs.
#[derive(Subcommand)]
enum Command {
    /// Print both CRDs to stdout as one multi-document YAML stream (for `kubectl apply -f -`).
    Print,
    /// Write one file per CRD into DIR (the chart's: charts/talos-operator/crds).
    Write {
        /// The directory; it must exist.
        dir: PathBuf,
    },
}

fn main() {
    if let Err(error) = run(Cli::parse()) {
        eprintln!("crds: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Print => {
            let files = crds::crd_files()?;
            let stream: Vec<&str> = files.iter().map(|f| f.yaml.as_str()).collect();
            std::io::stdout()
                .write_all(stream.join("---\n").as_bytes())
                .context("writing to stdout")?;
        }
        Command::Write { dir } => {
            for path in crds::write_crd_files(&dir)? {
                eprintln!("crds: wrote {}", path.display());
            }
        }
    }
    Ok(())
}
