//! Where a bundle comes from: the request stream (an upload from osctl) or an HTTPS
//! URL. Either way it is stored whole on EPHEMERAL before anything looks at it.

use std::io::Write;
use std::path::Path;

use futures::{Stream, StreamExt};

use super::{Progress, ProgressSender, UpgradeError};

/// The largest bundle accepted (a root image partition is 128 MiB; a process bundle
/// carries one binary).
pub const MAX_BUNDLE_BYTES: u64 = 1 << 30;

/// A new file for a bundle in `dir`, removed when dropped.
pub fn bundle_file(dir: &Path) -> Result<tempfile::NamedTempFile, UpgradeError> {
    std::fs::create_dir_all(dir).map_err(|source| UpgradeError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })?;
    tempfile::Builder::new()
        .prefix("bundle-")
        .suffix(".tar")
        .tempfile_in(dir)
        .map_err(|source| UpgradeError::Io {
            what: format!("creating a file in {}", dir.display()),
            source,
        })
}

/// Stores the chunks of an upload of `size` bytes (0: unknown) in a new file in `dir`.
pub async fn receive<S, E>(
    mut chunks: S,
    size: u64,
    dir: &Path,
    progress: &ProgressSender,
) -> Result<tempfile::TempPath, UpgradeError>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut file = bundle_file(dir)?;
    let mut received = 0u64;
    let mut reported = 0u64;
    let report = |done| Progress {
        done,
        total: size,
        ..Progress::step("receive", "receiving the bundle")
    };
    progress.send(report(0)).await;
    while let Some(chunk) = chunks.next().await {
        let chunk =
            chunk.map_err(|e| UpgradeError::Transfer(format!("the upload broke off: {e}")))?;
        received += chunk.len() as u64;
        if received > MAX_BUNDLE_BYTES {
            return Err(UpgradeError::Transfer(format!(
                "the bundle is larger than {} MiB",
                MAX_BUNDLE_BYTES >> 20
            )));
        }
        file.write_all(&chunk).map_err(|source| UpgradeError::Io {
            what: "storing the bundle".into(),
            source,
        })?;
        if received >= reported + super::PROGRESS_EVERY {
            reported = received;
            progress.send(report(received)).await;
        }
    }
    if received == 0 {
        return Err(UpgradeError::Transfer("the upload was empty".into()));
    }
    if size != 0 && received != size {
        return Err(UpgradeError::Transfer(format!(
            "the upload ended after {received} of {size} bytes"
        )));
    }
    file.as_file()
        .sync_all()
        .map_err(|source| UpgradeError::Io {
            what: "storing the bundle".into(),
            source,
        })?;
    progress.send(report(received)).await;
    Ok(file.into_temp_path())
}

/// Refuses a received bundle whose sha256 is not `expected` (the release's published
/// hash), before its signature is even read.
pub async fn check_sha256(file: &Path, expected: &str) -> Result<(), UpgradeError> {
    let path = file.to_path_buf();
    let (_, actual) = tokio::task::spawn_blocking(move || {
        std::fs::File::open(&path).and_then(os_image::bundle::sha256)
    })
    .await
    .map_err(|e| UpgradeError::Transfer(format!("hashing stopped: {e}")))?
    .map_err(|e| UpgradeError::Transfer(format!("hashing the bundle: {e}")))?;
    if actual != expected.to_ascii_lowercase() {
        return Err(UpgradeError::Refused(format!(
            "the bundle's sha256 is {actual}, not the expected {expected}"
        )));
    }
    Ok(())
}

/// The root image's certificate authorities (Debian's ca-certificates bundle).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Downloads the bundle at `url` (https only, TLS 1.3, trusting the system's
/// authorities and `ca_pem`) into a new file in `dir`.
pub async fn download(
    url: &str,
    ca_pem: Option<&str>,
    dir: &Path,
    progress: &ProgressSender,
) -> Result<tempfile::TempPath, UpgradeError> {
    use http_body_util::BodyExt;
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        UpgradeError::Transfer(format!("downloading {url}: {what}: {e}"))
    };
    let uri: http::Uri = url.parse().map_err(|e| failed("not a URL", &e))?;
    if uri.scheme_str() != Some("https") {
        return Err(UpgradeError::Refused(format!(
            "{url}: bundles are downloaded over https only"
        )));
    }
    let host = uri
        .host()
        .ok_or_else(|| UpgradeError::Refused(format!("{url} names no host")))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let tls = tls_config(ca_pem).map_err(|e| failed("TLS", &e))?;
    let server_name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|e| failed("server name", &e))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| failed("connecting", &e))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| failed("TLS handshake", &e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| failed("HTTP", &e))?;
    tokio::spawn(connection);
    let authority = uri
        .authority()
        .map(|a| a.as_str())
        .unwrap_or(&host)
        .to_owned();
    let request = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, authority)
        .header(
            http::header::USER_AGENT,
            concat!("node-agent/", env!("CARGO_PKG_VERSION")),
        )
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| failed("request", &e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failed("request", &e))?;
    if response.status() != http::StatusCode::OK {
        return Err(failed("the server answered", &response.status()));
    }
    let size = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let chunks = response.into_body().into_data_stream();
    receive(chunks, size, dir, progress).await
}

/// TLS 1.3 to a download server: the system's authorities plus the configured ones.
fn tls_config(ca_pem: Option<&str>) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let system = std::fs::read_to_string(SYSTEM_ROOTS).unwrap_or_default();
    for pem in [Some(system.as_str()), ca_pem].into_iter().flatten() {
        if pem.trim().is_empty() {
            continue;
        }
        for cert in pki::tls::certificates(pem, "CA certificate").map_err(|e| e.to_string())? {
            // The system bundle may hold certificates rustls cannot use; skip those.
            let _ = roots.add(cert);
        }
    }
    if roots.is_empty() {
        return Err(format!(
            "no certificate authority to trust ({SYSTEM_ROOTS} is missing and machine.upgrade.caCertificates is empty)"
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(pki::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}
