//! Client connections to a node's machine API over TLS 1.3.
//!
//! tonic's built-in TLS cannot be limited to TLS 1.3, so connections are made with
//! tokio-rustls through a custom connector; the rustls configuration (trust anchor,
//! client certificate, protocol versions) comes from the caller, normally from
//! `pki::tls::client_config`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Where to reach a node: an address with an optional port (`127.0.0.2`,
/// `127.0.0.2:50000`, `node-1:50000`, `[::1]:50000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    /// Host name or IP address, also the name the server certificate must carry.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddress {
    /// Parses `host[:port]`, using `default_port` when none is given.
    pub fn parse(text: &str, default_port: u16) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty node address".into());
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Self {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(Self {
                host: ip.to_string(),
                port: default_port,
            });
        }
        match text.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse()
                    .map_err(|_| format!("invalid port in node address {text:?}"))?;
                Ok(Self {
                    host: host.to_owned(),
                    port,
                })
            }
            None => Ok(Self {
                host: text.to_owned(),
                port: default_port,
            }),
        }
    }
}

impl std::fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Connects to a node's API (TCP, then TLS 1.3 with `tls`, then HTTP/2); each step
/// fails after `timeout`.
pub async fn connect(
    node: &NodeAddress,
    tls: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint = endpoint(node, timeout);
    endpoint
        .connect_with_connector(connector(node, tls, timeout))
        .await
}

/// Like [`connect`], but the connection is made on first use (for fan-out, where a
/// node that is down must not delay the others).
pub fn connect_lazy(node: &NodeAddress, tls: Arc<ClientConfig>, timeout: Duration) -> Channel {
    endpoint(node, timeout).connect_with_connector_lazy(connector(node, tls, timeout))
}

fn endpoint(node: &NodeAddress, timeout: Duration) -> Endpoint {
    // The URI only feeds HTTP/2's :authority; the connector does the real connecting.
    let uri = format!("http://{node}")
        .parse::<Uri>()
        .unwrap_or_else(|_| Uri::from_static("http://node.invalid"));
    Endpoint::from(uri)
        .connect_timeout(timeout)
        .tcp_nodelay(true)
}

fn connector(
    node: &NodeAddress,
    tls: Arc<ClientConfig>,
    timeout: Duration,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<Replayed>,
    Error = io::Error,
    Future = impl Future<Output = io::Result<TokioIo<Replayed>>> + Send,
> + Clone
+ Send
+ 'static {
    let connector = TlsConnector::from(tls);
    let address = node.to_string();
    let host = node.host.clone();
    tower::service_fn(move |_: Uri| {
        let connector = connector.clone();
        let address = address.clone();
        let host = host.clone();
        async move {
            let name = ServerName::try_from(host)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tcp = tokio::time::timeout(timeout, TcpStream::connect(&address))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connection timed out"))??;
            tcp.set_nodelay(true)?;
            let mut tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            let first = tokio::time::timeout(timeout, read_first_bytes(&mut tls))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the node sent nothing after the TLS handshake",
                    )
                })??;
            Ok(TokioIo::new(Replayed { first, inner: tls }))
        }
    })
}

/// Reads the server's first bytes (its HTTP/2 SETTINGS frame, sent right after the
/// handshake).
///
/// In TLS 1.3 the client finishes its handshake before the server has judged the
/// client certificate; a refusal arrives as an alert on the first read. Reading here
/// turns it into this connection's error (e.g. "received fatal alert:
/// CertificateRequired") instead of a bare "operation was canceled" later.
async fn read_first_bytes(tls: &mut TlsStream<TcpStream>) -> io::Result<Vec<u8>> {
    let mut first = vec![0; 4096];
    let n = tls.read(&mut first).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the node closed the connection after the TLS handshake",
        ));
    }
    first.truncate(n);
    Ok(first)
}

/// A TLS stream whose first bytes were already read: they are served again first.
pub struct Replayed {
    first: Vec<u8>,
    inner: TlsStream<TcpStream>,
}

impl AsyncRead for Replayed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.first.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.first.len().min(buf.remaining());
        buf.put_slice(&this.first[..n]);
        this.first.drain(..n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replayed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A failed call, in one line: the API's own message, or the transport cause
/// translated into advice (osctl and the operator word failures the same way).
pub fn explain_status(status: &tonic::Status) -> String {
    use std::error::Error;
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal
            if status.source().is_some() =>
        {
            status.source().map(explain).unwrap_or_default()
        }
        tonic::Code::PermissionDenied => format!("permission denied: {}", status.message()),
        tonic::Code::Unauthenticated => format!("not authenticated: {}", status.message()),
        _ => status.message().to_owned(),
    }
}

/// Translates a connection error's innermost cause into advice for the user: the
/// TLS alert a node sent (and what it means), or the socket error. Shared by osctl and
/// the agent's fan-out, so a failed node reads the same either way.
pub fn explain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    let mut rustls_error = None;
    let mut io_error = None;
    loop {
        if let Some(e) = cause.downcast_ref::<rustls::Error>() {
            rustls_error = Some(e.clone());
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            if let Some(inner) = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                rustls_error = Some(inner.clone());
            }
            io_error = Some((e.kind(), e.to_string()));
        }
        match cause.source() {
            Some(next) => cause = next,
            None => break,
        }
    }
    if let Some(e) = rustls_error {
        return explain_tls(&e);
    }
    match io_error {
        Some((std::io::ErrorKind::ConnectionRefused, _)) => {
            "connection refused: is the node up and its API listening?".into()
        }
        Some((std::io::ErrorKind::TimedOut, text)) => format!("{text}: the node did not answer"),
        Some((_, text)) => text,
        None => cause.to_string(),
    }
}

fn explain_tls(error: &rustls::Error) -> String {
    use rustls::{AlertDescription as Alert, CertificateError, Error};
    match error {
        Error::AlertReceived(Alert::CertificateRequired) => {
            "TLS refused by the node: a client certificate is required".into()
        }
        Error::AlertReceived(Alert::UnknownCA) | Error::AlertReceived(Alert::BadCertificate) => {
            "TLS refused by the node: our client certificate is not signed by the cluster CA".into()
        }
        Error::AlertReceived(Alert::CertificateExpired) => {
            "TLS refused by the node: our client certificate has expired; get a new one with `osctl config new`".into()
        }
        Error::AlertReceived(Alert::ProtocolVersion) => "TLS refused by the node: it accepts TLS 1.3 only".into(),
        Error::AlertReceived(alert) => format!("TLS refused by the node: {alert:?}"),
        Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            "TLS: the node's certificate is not signed by this context's CA (wrong context?)".into()
        }
        Error::InvalidCertificate(CertificateError::Expired) => "TLS: the node's certificate has expired".into(),
        Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => {
            "TLS: the node's certificate does not name this address (add it to machine.certSANs)".into()
        }
        other => format!("TLS: {other}"),
    }
}
