//! `upgrade (NODE... | --selector S) --version V --url URL ...`: creates a
//! TalosUpgrade, the rollout the operator carries out batch by batch.

use crds::{Release, TalosUpgrade};
use kube::Client;

use super::{TALOSNODE, TALOSUPGRADE, apply, get, nodes, now_seconds, upgrades};
use crate::apply::{self as bodies, UpgradeRequest};
use crate::cli::{RolloutStatusArgs, UpgradeArgs};
use crate::output::{self, Format};
use crate::{Error, Result, selector};

/// Checks the arguments and that the named nodes exist, applies the TalosUpgrade,
/// prints its name, and with `--wait` follows it.
pub async fn run(client: Client, format: Format, args: UpgradeArgs) -> Result<()> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => default_name(&args.version, now_seconds().as_second()),
    };
    let request = request(name, &args)?;
    let node_api = nodes(client.clone());
    let mut missing = Vec::new();
    for node in &request.nodes {
        match get(&node_api, TALOSNODE, node).await {
            Ok(_) => {}
            Err(e @ Error::NotFound { .. }) => missing.push(e),
            Err(e) => return Err(e),
        }
    }
    if let Some(error) = Error::from_many(missing) {
        return Err(error);
    }
    let api = upgrades(client.clone());
    let _: TalosUpgrade = apply(
        &api,
        TALOSUPGRADE,
        &request.name,
        bodies::FIELD_MANAGER,
        &bodies::upgrade(&request),
    )
    .await?;
    output::line(&request.name)?;
    if args.wait {
        let watch = RolloutStatusArgs {
            rollout: request.name,
            watch: true,
            timeout: None,
        };
        return super::rollout::status(client, format, &watch).await;
    }
    Ok(())
}

/// The request the arguments make, checked: an https URL, a sha256 of 64 hex digits
/// (lowercased, as the CRD wants), a valid name and selector.
pub fn request(name: String, args: &UpgradeArgs) -> Result<UpgradeRequest> {
    if args.version.is_empty() {
        return Err(Error::InvalidArgument {
            flag: "--version",
            reason: "the version is empty".into(),
        });
    }
    if !args.url.starts_with("https://") || args.url.len() <= "https://".len() {
        return Err(Error::InvalidArgument {
            flag: "--url",
            reason: format!(
                "{:?} is not an https:// URL (nodes download bundles over https only)",
                args.url
            ),
        });
    }
    let sha256 = match &args.sha256 {
        Some(hex) if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            Some(hex.to_ascii_lowercase())
        }
        Some(hex) => {
            return Err(Error::InvalidArgument {
                flag: "--sha256",
                reason: format!("{hex:?} is not 64 hex digits"),
            });
        }
        None => None,
    };
    if !is_dns_subdomain(&name) {
        return Err(Error::InvalidArgument {
            flag: "--name",
            reason: format!(
                "{name:?} is not a valid name (lowercase letters, digits, '-' and '.', at most 253)"
            ),
        });
    }
    let selector = args.selector.as_deref().map(selector::parse).transpose()?;
    Ok(UpgradeRequest {
        name,
        release: Release {
            version: args.version.clone(),
            url: args.url.clone(),
            sha256,
        },
        nodes: args.nodes.clone(),
        selector,
        max_unavailable: args.max_unavailable.clone(),
    })
}

/// `upgrade-<version>-<unix seconds>`: the version's dots (and anything else a name
/// cannot hold) as dashes, lowercased, so that names sort by version and then time.
pub fn default_name(version: &str, unix_seconds: i64) -> String {
    let version: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let version = version.trim_matches('-');
    if version.is_empty() {
        format!("upgrade-{unix_seconds}")
    } else {
        format!("upgrade-{version}-{unix_seconds}")
    }
}

/// What the API server accepts as a cluster-scoped custom object's name.
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn default_names_are_version_and_time() {
        assert_eq!(
            default_name("1.4.0", 1_764_244_800),
            "upgrade-1-4-0-1764244800"
        );
        assert_eq!(
            default_name("1.5.0-RC.1+build", 7),
            "upgrade-1-5-0-rc-1-build-7"
        );
        assert_eq!(default_name("v2", 7), "upgrade-v2-7");
        assert_eq!(default_name("..", 7), "upgrade-7");
        assert!(is_dns_subdomain(&default_name("1.5.0-RC.1+build", 7)));
    }

    fn args(extra: &[&str]) -> UpgradeArgs {
        let base = ["kubectl-talos", "upgrade", "n1", "--version", "1.4.0"];
        let cli = Cli::try_parse_from(base.iter().chain(extra)).unwrap();
        let Command::Upgrade(args) = cli.command else {
            panic!("not upgrade")
        };
        args
    }

    #[test]
    fn arguments_are_checked_before_anything_is_sent() {
        let ok = request(
            "u".into(),
            &args(&["--url", "https://r.example/b", "--sha256", &"AB".repeat(32)]),
        )
        .unwrap();
        assert_eq!(ok.release.sha256, Some("ab".repeat(32)));
        assert_eq!(ok.nodes, ["n1"]);
        let error = |extra: &[&str], name: &str| {
            request(name.into(), &args(extra)).unwrap_err().to_string()
        };
        assert_eq!(
            error(&["--url", "http://r.example/b"], "u"),
            r#"--url: "http://r.example/b" is not an https:// URL (nodes download bundles over https only)"#
        );
        assert_eq!(
            error(&["--url", "https://r.example/b", "--sha256", "abc"], "u"),
            r#"--sha256: "abc" is not 64 hex digits"#
        );
        assert!(
            error(&["--url", "https://r.example/b"], "Bad_Name")
                .starts_with("--name: \"Bad_Name\"")
        );
        assert!(
            error(&["--url", "https://r.example/b", "-l", "a in x"], "u")
                .starts_with("label selector")
        );
    }
}
