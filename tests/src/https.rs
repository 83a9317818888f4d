//! A small HTTPS file server: where nodes download upgrade bundles from.

use std::path::Path;
use std::time::Duration;

/// The files of a directory over HTTPS (TLS 1.3, HTTP/1.1, GET only), with a
/// certificate for `ip` signed by a new CA: where nodes download bundles from. Stops
/// with its runtime when dropped.
pub struct HttpsServer {
    /// The CA that signed the server's certificate, for the nodes to trust.
    pub ca_pem: String,
    _runtime: tokio::runtime::Runtime,
}

impl HttpsServer {
    /// Serves `dir` on `ip:port`.
    pub fn start(dir: &Path, ip: &str, port: u16) -> Self {
        let ca = pki::CertificateAuthority::generate("e2e downloads").unwrap();
        let server = ca
            .issue_server("downloads", &[ip.to_owned()], Duration::from_secs(3600))
            .unwrap();
        let tls =
            pki::tls::server_config_without_client_auth(&server.cert_pem, &server.key_pem).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let listener = std::net::TcpListener::bind((ip, port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = dir.to_path_buf();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, dir) = (acceptor.clone(), dir.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        let _ = serve_file(stream, &dir).await;
                    }
                });
            }
        });
        Self {
            ca_pem: ca.cert_pem().to_owned(),
            _runtime: runtime,
        }
    }
}

/// Answers one `GET /NAME` with the file NAME of `dir` (404 when there is none).
async fn serve_file(
    mut stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    dir: &Path,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = Vec::new();
    while !request.ends_with(b"\r\n\r\n") && request.len() < 8192 {
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await? == 0 {
            return Ok(());
        }
        request.push(byte[0]);
    }
    let request = String::from_utf8_lossy(&request);
    let name = request
        .strip_prefix("GET /")
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|name| !name.contains('/') && !name.starts_with('.'))
        .unwrap_or_default();
    match tokio::fs::File::open(dir.join(name)).await {
        Ok(mut file) if !name.is_empty() => {
            let size = file.metadata().await?.len();
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            tokio::io::copy(&mut file, &mut stream).await?;
        }
        _ => {
            let head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            stream.write_all(head.as_bytes()).await?;
        }
    }
    stream.shutdown().await
}
