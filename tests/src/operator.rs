//! The operator (`talos-operator`) as the suites and benchmarks run it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::{LocalCluster, binary};

/// The operator as a child process, killed when dropped.
pub struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    /// Starts `talos-operator` with the Kubernetes identity in `kubeconfig`, the
    /// client certificate in `cert_dir`, metrics on `metrics`, logging (text) to
    /// `log`, and `extra` flags.
    pub fn start(
        kubeconfig: &Path,
        cert_dir: &Path,
        log: &Path,
        metrics: &str,
        extra: &[&str],
    ) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(binary("talos-operator"))
            .args(["--metrics-addr", metrics, "--client-cert-dir"])
            .arg(cert_dir)
            .args(["--log-format", "text"])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,operator=debug")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("starting talos-operator");
        Self {
            child,
            log: log.to_path_buf(),
        }
    }

    /// SIGKILL, as a node losing the operator's pod would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(150).collect();
            eprintln!(
                "operator log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }
    }
}

/// The os:operator client certificate from the cluster, as the chart's Secret holds
/// it: ca.crt, tls.crt, tls.key.
pub fn operator_certificate(cluster: &LocalCluster, dir: &Path) -> PathBuf {
    let file = dir.join("operator-client.yaml");
    cluster
        .osctl(&[
            "config",
            "new",
            "--roles",
            "os:operator",
            file.to_str().unwrap(),
        ])
        .success();
    let config: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let context = config["contexts"]
        .as_object()
        .and_then(|c| c.values().next())
        .expect("a context")
        .clone();
    let cert_dir = dir.join("operator-cert");
    std::fs::create_dir_all(&cert_dir).unwrap();
    for (key, name) in [("ca", "ca.crt"), ("crt", "tls.crt"), ("key", "tls.key")] {
        std::fs::write(cert_dir.join(name), context[key].as_str().unwrap()).unwrap();
    }
    cert_dir
}

/// A plain HTTP GET on loopback (the operator's `/metrics`, `/readyz`); returns the
/// body, empty when nothing answers.
pub fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return String::new();
    };
    let mut response = String::new();
    if write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").is_err()
        || stream.read_to_string(&mut response).is_err()
    {
        return String::new();
    }
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}
