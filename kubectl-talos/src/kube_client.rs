//! The Kubernetes client, configured like kubectl's: `--kubeconfig`, else every file
//! of `KUBECONFIG` merged, else `~/.kube/config`; `--context` picks the context.
//!
//! kubectl does not pass its own `--kubeconfig`/`--context` to plugins, so the plugin
//! takes them itself; `KUBECONFIG` reaches it through the environment.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::{Error, Result};

/// A client for the cluster the kubeconfig (and `context`) names. Without any
/// kubeconfig and without `--context`, the in-cluster configuration is tried, as
/// kubectl does in a pod.
pub async fn client(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Client> {
    let config = config(kubeconfig, context).await?;
    Client::try_from(config).map_err(Error::Client)
}

/// The client configuration; see [`client`].
pub async fn config(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Config> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let loaded = match kubeconfig {
        Some(path) => Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
            path: Some(path.display().to_string()),
            source,
        }),
        None => Kubeconfig::read().map_err(|source| Error::Kubeconfig { path: None, source }),
    };
    let kubeconfig_file = match loaded {
        Ok(file) => file,
        Err(error) if kubeconfig.is_none() && context.is_none() => {
            return Config::incluster().map_err(|_| error);
        }
        Err(error) => return Err(error),
    };
    Config::from_custom_kubeconfig(kubeconfig_file, &options)
        .await
        .map_err(|source| Error::Kubeconfig {
            path: kubeconfig.map(|p| p.display().to_string()),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: a
clusters:
- name: a
  cluster: {server: "https://127.0.0.1:6443"}
- name: b
  cluster: {server: "https://127.0.0.2:6443"}
users:
- name: u
  user: {token: t}
contexts:
- name: a
  context: {cluster: a, user: u}
- name: b
  context: {cluster: b, user: u}
"#;

    #[tokio::test]
    async fn the_context_flag_picks_the_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, KUBECONFIG).unwrap();
        let current = config(Some(&path), None).await.unwrap();
        assert_eq!(current.cluster_url.host(), Some("127.0.0.1"));
        let other = config(Some(&path), Some("b")).await.unwrap();
        assert_eq!(other.cluster_url.host(), Some("127.0.0.2"));
        let error = config(Some(&path), Some("c"))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("loading the kubeconfig "), "{error}");
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_is_named() {
        let error = config(Some(Path::new("/nonexistent/kubeconfig")), None)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "loading the kubeconfig /nonexistent/kubeconfig"
        );
    }
}
