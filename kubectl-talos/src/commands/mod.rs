//! The commands, one module each, and what they share: reading the objects (a missing
//! one is [`Error::NotFound`]) and applying bodies from `crate::apply`.

use crds::{TalosNode, TalosUpgrade};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cli::{Cli, Command, RolloutCommand};
use crate::{Error, Result, kube_client};

pub mod apply_config;
pub mod describe;
pub mod get;
pub mod pause;
pub mod reboot;
pub mod rollout;
pub mod upgrade;

/// Runs the command line: builds the client, then dispatches.
pub async fn run(cli: Cli) -> Result<()> {
    let client = kube_client::client(cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
    let format = cli.output;
    match cli.command {
        Command::Get(args) => get::run(client, format, &args.nodes).await,
        Command::Describe(args) => describe::run(client, format, &args.node).await,
        Command::Reboot(args) => reboot::run(client, &args).await,
        Command::Upgrade(args) => upgrade::run(client, format, args).await,
        Command::ApplyConfig(args) => apply_config::run(client, &args).await,
        Command::Pause(args) => pause::run(client, &args.rollout, true).await,
        Command::Resume(args) => pause::run(client, &args.rollout, false).await,
        Command::Rollout {
            command: RolloutCommand::Status(args),
        } => rollout::status(client, format, &args).await,
    }
}

/// The TalosNodes API (cluster-scoped).
pub fn nodes(client: Client) -> Api<TalosNode> {
    Api::all(client)
}

/// The TalosUpgrades API (cluster-scoped).
pub fn upgrades(client: Client) -> Api<TalosUpgrade> {
    Api::all(client)
}

/// Reads the object `name`; `kind` is how messages name the resource (`talosnode`).
pub async fn get<K>(api: &Api<K>, kind: &'static str, name: &str) -> Result<K>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .map_err(|e| Error::api(format!("getting {kind} {name:?}"), e))?
        .ok_or_else(|| Error::NotFound {
            kind,
            name: name.to_owned(),
        })
}

/// Server-side applies `body` to the object `name` under `manager` (forced, see
/// `crate::apply`), returning the object as stored.
pub async fn apply<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    manager: &str,
    body: &Value,
) -> Result<K>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(|e| Error::api(format!("applying {kind} {name:?}"), e))
}

/// Now, to the second: what `spec.rebootRequestedAt` holds (the API's timestamps have
/// no fractions, and truncating never asks for a time in the future).
pub fn now_seconds() -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    // A second count from a valid timestamp is a valid timestamp.
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// How messages name a TalosNode (as kubectl does: `talosnode "n1" not found`).
pub(crate) const TALOSNODE: &str = "talosnode";
/// How messages name a TalosUpgrade.
pub(crate) const TALOSUPGRADE: &str = "talosupgrade";
