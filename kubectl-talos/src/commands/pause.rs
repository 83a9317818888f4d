//! `pause ROLLOUT` and `resume ROLLOUT`: the rollout's kill switch, `spec.paused`.

use crds::TalosUpgrade;
use kube::Client;

use super::{TALOSUPGRADE, apply, get, upgrades};
use crate::{Result, apply as bodies, output};

/// Sets `spec.paused` on an existing TalosUpgrade (an apply alone would create an
/// invalid one from a typo).
pub async fn run(client: Client, name: &str, paused: bool) -> Result<()> {
    let api = upgrades(client);
    let _: TalosUpgrade = get(&api, TALOSUPGRADE, name).await?;
    apply(
        &api,
        TALOSUPGRADE,
        name,
        bodies::PAUSE_MANAGER,
        &bodies::pause(name, paused),
    )
    .await?;
    if paused {
        output::line(format_args!(
            "talosupgrade/{name} paused: no new node starts; nodes already upgrading finish"
        ))?;
    } else {
        output::line(format_args!("talosupgrade/{name} resumed"))?;
    }
    Ok(())
}
