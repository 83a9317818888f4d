//! The OS release a node should run, as the agent's `Upgrade` RPC takes it.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// An OS release: the signed upgrade bundle the agent downloads and installs.
///
/// It exists so that TalosNode and TalosUpgrade name a release the same way and the
/// operator can hand `url` (and `sha256`) to the agent's `Upgrade` RPC unchanged. The
/// agent verifies the bundle's signature and that its manifest's `version` equals
/// `version`; the API server only checks the shape.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// The release's version, as in the bundle's manifest (e.g. `1.4.0`); what the
    /// node reports as its OS version once the upgrade is done.
    #[schemars(length(min = 1, max = 64))]
    pub version: String,
    /// Where the node downloads the bundle: an https:// URL.
    #[x_kube(validation = Rule::new("self.startsWith('https://')").message("url must be an https:// URL"))]
    #[schemars(length(min = 9, max = 2048))]
    pub url: String,
    /// The sha256 of the bundle file (64 lowercase hex digits); when set, the agent
    /// refuses a download with another hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_left_out_when_absent() {
        let release = Release {
            version: "1.4.0".into(),
            url: "https://releases.example/node-os-1.4.0.bundle".into(),
            sha256: None,
        };
        let json = serde_json::to_value(&release).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"version": "1.4.0", "url": "https://releases.example/node-os-1.4.0.bundle"})
        );
        assert_eq!(serde_json::from_value::<Release>(json).unwrap(), release);
    }
}
