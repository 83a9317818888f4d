//! The node-agent binary: parses options, sets up logging, runs the agent.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = node_agent::Options::parse();
    // Two workers: the agent's work is I/O-bound, and a small pool keeps its memory low.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(node_agent::run(options))?;
    Ok(())
}
