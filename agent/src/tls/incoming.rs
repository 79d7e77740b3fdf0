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
use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::{identity_of, PeerIdentity, ServerTls};
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
    trust: Trust,
}

/// What a connection's client certificate was verified against, to verify
/// it again once the TLS settings are reloaded: a certificate revoked since
/// (or no longer signed by a trusted CA) ends the connections it opened.
struct Trust {
    current: Arc<ArcSwap<ServerTls>>,
    checked: Arc<ServerTls>,
    chain: Vec<CertificateDer<'static>>,
    revoked: bool,
}

impl Trust {
    fn still_trusted(&mut self) -> bool {
        if self.revoked {
            return false;
        }
        let now = self.current.load();
        if Arc::ptr_eq(&now, &self.checked) {
            return true;
        }
        self.checked = Arc::clone(&now);
        if let Some((leaf, intermediates)) = self.chain.split_first() {
            if let Err(e) = self.checked.verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
                tracing::warn!(error = %e, "an open connection's client certificate is no longer trusted; closing it");
                self.revoked = true;
            }
        }
        !self.revoked
    }
}

impl TlsConn {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.expires.as_mut().is_some_and(|s| std::future::Future::poll(s.as_mut(), cx).is_ready())
    }

    fn closed(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.expired(cx) {
            return Some(io::Error::new(io::ErrorKind::TimedOut, "connection without a usable client certificate closed"));
        }
        if !self.trust.still_trusted() {
            return Some(io::Error::new(io::ErrorKind::PermissionDenied, "client certificate revoked"));
        }
        None
    }
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
    /// The client sent a certificate the CA signed, but it names no one.
    pub nameless: bool,
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
        if let Some(e) = self.closed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(e) = self.closed(cx) {
            return Poll::Ready(Err(e));
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
    config: Arc<ArcSwap<ServerTls>>,
    handshake_timeout: Duration,
    max_handshakes: usize,
    admission: Arc<Admission>,
) -> ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(64);
    let handshakes = Arc::new(Handshakes::default());
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
            let tls = config.load_full();
            let acceptor = TlsAcceptor::from(tls.config.clone());
            let current = config.clone();
            let tx = tx.clone();
            let admission = admission.clone();
            let mut pending = handshakes.lock();
            let id = pending.evict_beyond(max_handshakes.saturating_sub(1));
            let done = handshakes.clone();
            let task = tokio::spawn(async move {
                let accepted = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await;
                done.lock().finished(id);
                match accepted {
                    Ok(Ok(stream)) => {
                        let chain = stream.get_ref().1.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
                        let identity = chain.first().and_then(identity_of).map(Arc::new);
                        let nameless = !chain.is_empty() && identity.is_none();
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
                        let info = ConnInfo { remote: Some(remote), identity, refused, nameless };
                        let trust = Trust { current, checked: tls, chain, revoked: false };
                        let _ = tx.send(Ok(TlsConn { stream, info, expires, _permit: permit, trust })).await;
                    }
                    Ok(Err(e)) => tracing::info!(%remote, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
                }
            });
            pending.started(id, task.abort_handle());
        }
    });
    ReceiverStream::new(rx)
}

/// Connections in their TLS handshake, oldest first. Beyond the cap the
/// oldest is dropped: connections that never speak TLS cannot hold the
/// agent's descriptors, and a real client, whose handshake takes
/// milliseconds, is never the oldest for long.
#[derive(Default)]
struct Handshakes(std::sync::Mutex<PendingHandshakes>);

#[derive(Default)]
struct PendingHandshakes {
    next: u64,
    queue: std::collections::VecDeque<(u64, tokio::task::AbortHandle)>,
}

impl Handshakes {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingHandshakes> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PendingHandshakes {
    /// Drops the oldest handshakes until at most `keep` remain; returns the
    /// id of the next one.
    fn evict_beyond(&mut self, keep: usize) -> u64 {
        while self.queue.len() > keep {
            if let Some((_, oldest)) = self.queue.pop_front() {
                oldest.abort();
                tracing::debug!("too many TLS handshakes under way (limits.max_handshakes): the oldest was dropped");
            }
        }
        self.next += 1;
        self.next
    }

    fn started(&mut self, id: u64, task: tokio::task::AbortHandle) {
        self.queue.push_back((id, task));
    }

    fn finished(&mut self, id: u64) {
        self.queue.retain(|(i, _)| *i != id);
    }
}
