//! The `kubectl-talos` binary: kubectl runs it as `kubectl talos`.
//!
//! Exit codes: 0 success (also when the reader of the output goes away, as with
//! `kubectl talos get | head`); 1 any failure, including a rollout that Failed under
//! `rollout status --watch` and a configuration the node did not apply; 2 command-line
//! errors (clap).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kubectl_talos::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kubectl-talos: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kubectl_talos::commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(kubectl_talos::Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubectl-talos: {}", message(&anyhow::Error::new(e)));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text is already
/// there (kube's kubeconfig errors repeat their source in their own message).
fn message(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}
