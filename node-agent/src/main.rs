//! The node-agent binary: parses options, sets up logging, runs the agent.

use clap::Parser;

fn main() -> std::process::ExitCode {
    use std::io::IsTerminal;
    // The kernel starts PID 1 without arguments, on the console.
    let pid1 = std::process::id() == 1;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // A serial console is a terminal, but usually read from a log file.
        .with_ansi(std::io::stderr().is_terminal() && !pid1)
        .init();
    let options = if pid1 {
        node_agent::Options::pid1()
    } else {
        node_agent::Options::parse()
    };
    // Two workers: the agent's work is I/O-bound, and a small pool keeps its memory low.
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| Ok(runtime.block_on(node_agent::run(options))?));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The agent's errors name their causes in their messages.
        Err(e) if pid1 => node_agent::platform::metal::failed_boot(&e.to_string()),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("node-agent: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
