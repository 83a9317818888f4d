//! The TLS listener: accepts TCP, completes TLS 1.3 with rustls (client certificates
//! per the server configuration) and hands finished connections to tonic.
//!
//! Handshakes run concurrently with a timeout, so a slow or silent client cannot hold
//! up others; at most [`MAX_CONNECTIONS`] connections are open at once. The peer's
//! certificate is parsed once per connection into a [`PeerInfo`] that tonic attaches
//! to every request of that connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pki::PeerIdentity;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// Connections open at once; further clients wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 1024;

/// Time a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server knows about the other end of a connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Remote address.
    pub remote: SocketAddr,
    /// The verified client certificate's holder; `None` when the listener asks for
    /// no client certificate.
    pub identity: Option<Arc<PeerIdentity>>,
}

/// An accepted TLS connection and its peer, counted against [`MAX_CONNECTIONS`] until
/// it is dropped.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    peer: PeerInfo,
    _permit: OwnedSemaphorePermit,
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Accepts connections on `listener` and yields those whose TLS handshake succeeds.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
) -> ReceiverStream<io::Result<TlsConnection>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(tls);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            // The semaphore is never closed, so acquiring only waits.
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            // Stop accepting (and release the address) as soon as the server is gone.
            let accepted = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match handshake(&acceptor, tcp, remote, permit).await {
                    Ok(connection) => {
                        let _ = tx.send(Ok(connection)).await;
                    }
                    Err(e) => tracing::info!(%remote, error = %e, "TLS handshake refused"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
    permit: OwnedSemaphorePermit,
) -> io::Result<TlsConnection> {
    tcp.set_nodelay(true)?;
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))??;
    let identity = match stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
    {
        Some(cert) => {
            Some(Arc::new(PeerIdentity::from_der(cert).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, e)
            })?))
        }
        None => None,
    };
    Ok(TlsConnection {
        stream,
        peer: PeerInfo { remote, identity },
        _permit: permit,
    })
}
