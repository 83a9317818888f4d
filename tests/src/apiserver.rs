//! The apiserver test bed (tests/testbeds/apiserver): a real Kubernetes API server
//! (apiextensions-apiserver) and etcd on loopback, for the suites that need one.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root (this crate sits one level down).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The test bed's cache, as `run` finds it.
pub fn cache() -> PathBuf {
    std::env::var_os("APISERVER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/node-os/apiserver"))
}

/// A running API server; dropping it (also while panicking) stops it. A failed
/// test's state directory (logs, audit log) is kept and its path printed.
pub struct TestBed {
    dir: Option<tempfile::TempDir>,
    port: u16,
    etcd_port: u16,
    /// The admin kubeconfig (group system:masters).
    pub kubeconfig: PathBuf,
    /// The audit log, when asked for.
    pub audit_log: Option<PathBuf>,
}

impl TestBed {
    fn run(
        dir: &Path,
        port: u16,
        etcd_port: u16,
        args: &[&str],
        users: &str,
    ) -> std::process::Output {
        Command::new(repo_root().join("tests/testbeds/apiserver/run"))
            .args(args)
            .env("APISERVER_PORT", port.to_string())
            .env("APISERVER_ETCD_PORT", etcd_port.to_string())
            .env("APISERVER_DIR", dir)
            .env("APISERVER_USERS", users)
            .env_remove("APISERVER_AUDIT_LOG")
            .env_remove("APISERVER_ARGS")
            .output()
            .unwrap_or_else(|error| {
                panic!("running tests/testbeds/apiserver/run {args:?}: {error}")
            })
    }

    /// Starts the server on `port` (etcd on `etcd_port` and the next one). `users`
    /// are extra client identities (each gets `kubeconfig-NAME`); `audit` turns on
    /// the audit log (one JSON line per request, level Metadata).
    pub fn start(port: u16, etcd_port: u16, users: &[&str], audit: bool) -> TestBed {
        let bin = cache().join("bin");
        assert!(
            bin.join("apiextensions-apiserver").is_file(),
            "the apiserver test bed is not built ({} has no apiextensions-apiserver): run \
             tests/testbeds/apiserver/setup (as root) first",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("apiserver-")
            .tempdir()
            .expect("creating the test bed's state directory");
        let audit_log = audit.then(|| dir.path().join("audit.log"));
        let mut args = vec!["start".to_owned()];
        if let Some(log) = &audit_log {
            args.extend(["--audit-log".to_owned(), log.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = Self::run(dir.path(), port, etcd_port, &args, &users.join(" "));
        let bed = TestBed {
            kubeconfig: PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()),
            dir: Some(dir),
            port,
            etcd_port,
            audit_log,
        };
        assert!(
            output.status.success(),
            "tests/testbeds/apiserver/run start failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        bed
    }

    /// Installs the chart's CRDs (`charts/talos-operator/crds/`) with kubectl and
    /// waits until they are Established.
    pub fn install_crds(&self) {
        let crds = repo_root().join("charts/talos-operator/crds");
        self.kubectl_ok(&["apply", "-f", crds.to_str().expect("utf-8 path")]);
        self.kubectl_ok(&[
            "wait",
            "--for",
            "condition=Established",
            "crd",
            "--all",
            "--timeout",
            "60s",
        ]);
    }

    /// The kubeconfig of the extra identity `user`.
    pub fn kubeconfig_of(&self, user: &str) -> PathBuf {
        self.kubeconfig.with_file_name(format!("kubeconfig-{user}"))
    }

    /// A kube client for the admin kubeconfig.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("reading the kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("loading the kubeconfig");
        kube::Client::try_from(config).expect("building the client")
    }

    /// kubectl from the test bed's cache against this server, as admin.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(cache().join("bin/kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("running kubectl")
    }

    /// Like [`TestBed::kubectl`], but panics unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let output = Self::run(dir.path(), self.port, self.etcd_port, &["stop"], "");
        if !output.status.success() {
            eprintln!(
                "tests/testbeds/apiserver/run stop failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if std::thread::panicking() {
            eprintln!("apiserver test bed state kept in {}", dir.keep().display());
        }
    }
}
