//! The accept loop: TCP accept, TLS handshake under a deadline, then the
//! connection (with its peer identity) handed to tonic.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::{identity_of, PeerIdentity};
use crate::admission::{Admission, Exhausted, Permit};

/// One accepted, authenticated-or-anonymous TLS connection. An anonymous
/// one (no client certificate) can only ever be told UNAUTHENTICATED, and
/// one beyond its identity's connection cap only RESOURCE_EXHAUSTED, so
/// they are closed once the handshake timeout has passed again.
pub struct TlsConn {
    stream: TlsStream<TcpStream>,
    info: ConnInfo,
    expires: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The identity's place among its connections, given back on close.
    _permit: Option<Permit>,
}

impl TlsConn {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.expires.as_mut().is_some_and(|s| std::future::Future::poll(s.as_mut(), cx).is_ready())
    }
}

fn expired_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection without a client certificate closed")
}

/// Per-connection facts, found in every request's extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    /// None when the client sent no certificate.
    pub identity: Option<Arc<PeerIdentity>>,
    /// Set when the identity has too many connections: every call on this
    /// one is refused with it, and the connection is closed soon.
    pub refused: Option<Arc<Exhausted>>,
}

impl Connected for TlsConn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(expired_error()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(expired_error()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepts connections on `listener` until the returned stream is dropped.
/// The TLS config is read per connection, so a reload applies to new
/// connections and leaves established ones alone.
pub fn serve_incoming(
    listener: TcpListener,
    config: Arc<ArcSwap<ServerConfig>>,
    handshake_timeout: Duration,
    admission: Arc<Admission>,
) -> ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(config.load_full());
            let tx = tx.clone();
            let admission = admission.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let identity = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(identity_of)
                            .map(Arc::new);
                        let (permit, refused) =
                            match identity.as_deref().map(|i| admission.connection(&i.name)) {
                                Some(Ok(p)) => (Some(p), None),
                                Some(Err(e)) => {
                                    tracing::warn!(%remote, error = %e, "connection refused");
                                    (None, Some(Arc::new(e)))
                                }
                                None => (None, None),
                            };
                        let expires = (identity.is_none() || refused.is_some())
                            .then(|| Box::pin(tokio::time::sleep(handshake_timeout)));
                        let info = ConnInfo { remote: Some(remote), identity, refused };
                        let _ = tx.send(Ok(TlsConn { stream, info, expires, _permit: permit })).await;
                    }
                    Ok(Err(e)) => tracing::info!(%remote, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
