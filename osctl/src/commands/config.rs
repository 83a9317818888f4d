//! `osctl config ...`: the client configuration's contexts.

use anyhow::Context as _;

use crate::cli::ConfigCommand;
use crate::client_config::{ClientConfig, Context};
use crate::output::{self, NodeRow, Row};

use super::Session;

#[derive(Debug, serde::Serialize)]
struct ContextRow {
    current: bool,
    endpoints: Vec<String>,
    nodes: Vec<String>,
}

impl Row for ContextRow {
    fn headers() -> &'static [&'static str] {
        &["CURRENT", "ENDPOINTS", "NODES"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            if self.current {
                "*".into()
            } else {
                String::new()
            },
            self.endpoints.join(","),
            self.nodes.join(","),
        ]
    }
}

/// Runs an `osctl config` subcommand.
pub async fn run(session: &Session, command: ConfigCommand) -> anyhow::Result<()> {
    let mut config = session.client_config.clone();
    match command {
        ConfigCommand::Contexts => {
            let rows: Vec<_> = config
                .contexts
                .iter()
                .map(|(name, context)| NodeRow {
                    node: name.clone(),
                    error: None,
                    data: Some(ContextRow {
                        current: config.context.as_deref() == Some(name),
                        endpoints: context.endpoints.clone(),
                        nodes: context.nodes.clone(),
                    }),
                })
                .collect();
            // The first column holds the context name here.
            output::print(session.format, &rows)?;
            return Ok(());
        }
        ConfigCommand::Context { name } => {
            config.context(Some(&name))?;
            config.context = Some(name);
        }
        ConfigCommand::Endpoint { endpoints } => {
            current(&mut config, session)?.endpoints = endpoints
        }
        ConfigCommand::Node { nodes } => current(&mut config, session)?.nodes = nodes,
        ConfigCommand::Merge { file } => config.merge(ClientConfig::load(&file)?),
        ConfigCommand::New {
            role,
            crt_ttl,
            file,
        } => {
            let (name, context) = config.context(session.context.as_deref())?;
            let issued =
                super::node::generate_client_configuration(session, &role, crt_ttl).await?;
            let new = ClientConfig {
                context: Some(name.to_owned()),
                contexts: [(
                    name.to_owned(),
                    Context {
                        endpoints: context.endpoints.clone(),
                        nodes: context.nodes.clone(),
                        ca: String::from_utf8(issued.ca).context("CA is not text")?,
                        crt: String::from_utf8(issued.crt).context("certificate is not text")?,
                        key: String::from_utf8(issued.key).context("key is not text")?,
                    },
                )]
                .into(),
            };
            new.save(&file)?;
            eprintln!("wrote a {role} client config to {}", file.display());
            return Ok(());
        }
    }
    config.save(&session.config_path)?;
    Ok(())
}

fn current<'a>(config: &'a mut ClientConfig, session: &Session) -> anyhow::Result<&'a mut Context> {
    let name = config.context(session.context.as_deref())?.0.to_owned();
    // context() just found it.
    config.contexts.get_mut(&name).context("context vanished")
}
