//! The CRDs as YAML, for the chart and for `crds print`.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::error::Error;
use crate::{TalosNode, TalosUpgrade};

/// Where the CRD files are committed, relative to the repository root: a Helm chart's
/// `crds/` directory, which Helm installs before the templates and never deletes.
pub const CHART_CRDS_DIR: &str = "charts/talos-operator/crds";

/// The first line of every generated file, so that nobody edits one by hand.
const HEADER: &str = "# Generated from the Rust types in crds/ by `cargo run -p crds -- write charts/talos-operator/crds`: do not edit.\n";

/// One CRD and the file it is committed as.
#[derive(Debug, Clone, PartialEq)]
pub struct CrdFile {
    /// The CRD, as the API server gets it.
    pub crd: CustomResourceDefinition,
    /// `<group>_<plural>.yaml`, the name kubebuilder's tools use too.
    pub file_name: String,
    /// The file's content: a header comment and the CRD as one YAML document.
    pub yaml: String,
}

/// Both CRDs (TalosNode, then TalosUpgrade) with their files' names and contents.
pub fn crd_files() -> Result<Vec<CrdFile>, Error> {
    [TalosNode::crd(), TalosUpgrade::crd()]
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let body = serde_yaml_ng::to_string(&crd).map_err(|source| Error::Serialize {
                name: name.clone(),
                source,
            })?;
            Ok(CrdFile {
                file_name: format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural),
                yaml: format!("{HEADER}{body}"),
                crd,
            })
        })
        .collect()
}

/// Writes each CRD to its file in `dir` (which must exist) and returns the paths.
pub fn write_crd_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    crd_files()?
        .into_iter()
        .map(|file| {
            let path = dir.join(&file.file_name);
            std::fs::write(&path, &file.yaml).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed files must be exactly what the types generate, or the chart
    /// installs a schema the operator does not speak.
    #[test]
    fn committed_crds_match_the_types() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(CHART_CRDS_DIR);
        for file in crd_files().unwrap() {
            let path = dir.join(&file.file_name);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == file.yaml,
                "{CHART_CRDS_DIR}/{} is not what the types in crds/ generate; regenerate it with\n\n    cargo run -p crds -- write {CHART_CRDS_DIR}\n\nand commit the result",
                file.file_name
            );
        }
    }

    #[test]
    fn names_scope_and_subresources() {
        let files = crd_files().unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name.as_str()).collect();
        assert_eq!(
            names,
            ["talos.dev_talosnodes.yaml", "talos.dev_talosupgrades.yaml"]
        );
        for (file, short) in files.iter().zip(["tn", "tu"]) {
            let spec = &file.crd.spec;
            assert_eq!(spec.group, crate::GROUP);
            assert_eq!(spec.scope, "Cluster");
            assert_eq!(
                spec.names.short_names.as_deref(),
                Some(&[short.to_owned()][..])
            );
            assert_eq!(
                spec.names.categories.as_deref(),
                Some(&["talos".to_owned()][..])
            );
            let version = &spec.versions[0];
            assert_eq!(version.name, "v1alpha1");
            assert!(version.subresources.as_ref().unwrap().status.is_some());
            assert!(file.yaml.starts_with(HEADER));
        }
    }

    #[test]
    fn printer_columns() {
        let columns = |i: usize| -> Vec<String> {
            crd_files().unwrap()[i].crd.spec.versions[0]
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| c.name.clone())
                .collect()
        };
        assert_eq!(columns(0), ["Phase", "OS", "Boot", "Config", "Age"]);
        assert_eq!(columns(1), ["Version", "Progress", "Phase", "Age"]);
    }
}
