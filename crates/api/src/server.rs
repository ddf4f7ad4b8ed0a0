//! Binding the listener (plain or rustls) and serving until a shutdown signal. With TLS, the
//! certificate chain and key are read again from their files on SIGHUP, so a renewed certificate
//! is served without a restart.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    path::Path,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use futures_util::{stream, Stream, StreamExt as _};
use poem::http::uri::Scheme;
use poem::{
    endpoint::BoxEndpoint,
    listener::{Acceptor, AcceptorExt, BoxAcceptor, Listener, RustlsCertificate, RustlsConfig, TcpListener},
    web::{LocalAddr, RemoteAddr},
    Server,
};
use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::codes::ErrorCode;

pub use crate::config::TlsFiles;

/// Installs the process-wide rustls crypto provider once. Both poem (server TLS) and sqlx (client
/// TLS to PostgreSQL) use rustls; with two providers compiled in, rustls needs one chosen.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A bound listener whose real address is known before serving (port 0 works).
pub struct Bound {
    acceptor: BoxAcceptor,
    local_addr: SocketAddr,
    tls: bool,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound").field("local_addr", &self.local_addr).field("tls", &self.tls).finish()
    }
}

impl Bound {
    /// Binds `addr`, with rustls when `tls` names the PEM files. The files are read and checked
    /// here (a chain whose leaf does not match the key is refused before the port is bound), and
    /// read again on every SIGHUP: a renewal that fails the same checks is logged and the
    /// certificate in use stays.
    ///
    /// rustls speaks only TLS 1.2 and 1.3 (poem enables exactly those, with rustls' AEAD-only,
    /// forward-secret suites), so the TLS 1.2 minimum of NIST SP 800-52r2 §3.1 and OWASP's
    /// Transport Layer Security Cheat Sheet holds by construction: a TLS 1.0 or 1.1 client hello
    /// is answered with a `protocol_version` alert (RFC 8446 §4.2.1, RFC 8996).
    pub async fn bind(addr: SocketAddr, tls: Option<TlsFiles>) -> io::Result<Bound> {
        install_crypto_provider();
        let (acceptor, is_tls) = match tls {
            None => (TcpListener::bind(addr).into_acceptor().await?.boxed(), false),
            Some(files) => {
                let first = load(&files).await?;
                tracing::info!(tls.cert_sha256 = %first.leaf_sha256, "tls certificate loaded");
                let configs = stream::once(async move { first.config }).chain(reloads(files));
                let tcp = TcpListener::bind(addr).into_acceptor().await?;
                (ConfigFirst { inner: tcp, first: true }.rustls(configs.boxed()).boxed(), true)
            }
        };
        let local_addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .ok_or_else(|| io::Error::other("listener has no socket address"))?;
        Ok(Bound { acceptor: ShapedAcceptor { inner: acceptor }.boxed(), local_addr, tls: is_tls })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Serves `app` until `shutdown` resolves, then lets in-flight requests finish (up to 30 s).
    pub async fn serve(
        self,
        app: BoxEndpoint<'static>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(Duration::from_secs(30)))
            .await
    }
}

/// A TLS configuration read from its files, with the SHA-256 of its leaf for the log.
struct Loaded {
    config: RustlsConfig,
    leaf_sha256: String,
}

/// Reads the chain and key and checks them as rustls will use them: at least one certificate, a
/// private key rustls can sign with, and a leaf whose public key is the key's.
async fn load(files: &TlsFiles) -> io::Result<Loaded> {
    let cert = read(&files.cert_path).await?;
    let key = read(&files.key_path).await?;
    let chain = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&files.cert_path, &e))?;
    let leaf_sha256 = match chain.first() {
        Some(leaf) => hex::encode(Sha256::digest(leaf)),
        None => return Err(invalid(&files.cert_path, &"no certificate in the file")),
    };
    let private = PrivateKeyDer::from_pem_slice(&key).map_err(|e| invalid(&files.key_path, &e))?;
    rustls::sign::CertifiedKey::from_der(chain, private, &rustls::crypto::aws_lc_rs::default_provider()).map_err(
        |e| invalid(&files.key_path, &format!("{e} (for the certificate in {})", files.cert_path.display())),
    )?;
    Ok(Loaded { config: RustlsConfig::new().fallback(RustlsCertificate::new().cert(cert).key(key)), leaf_sha256 })
}

async fn read(path: &Path) -> io::Result<Vec<u8>> {
    tokio::fs::read(path).await.map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))
}

fn invalid(path: &Path, e: &dyn std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
}

/// The configurations read on each SIGHUP (the conventional signal to re-read files, as nginx and
/// most daemons use it), the ones that fail the checks left out. Polled by the acceptor itself,
/// between connections, so no task runs beside the server.
#[cfg(unix)]
fn reloads(files: TlsFiles) -> impl Stream<Item = RustlsConfig> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; the tls certificate is read at start-up only");
            None
        }
    };
    stream::unfold((hangups, files), |(mut hangups, files)| async move {
        loop {
            hangups.as_mut()?.recv().await?;
            match load(&files).await {
                Ok(loaded) => {
                    tracing::info!(tls.cert_sha256 = %loaded.leaf_sha256, "tls certificate reloaded");
                    return Some((loaded.config, (hangups, files)));
                }
                Err(error) => {
                    tracing::error!(%error, "tls certificate reload failed; the previous certificate stays in use");
                }
            }
        }
    })
}

#[cfg(not(unix))]
fn reloads(_files: TlsFiles) -> impl Stream<Item = RustlsConfig> + Send + 'static {
    stream::pending()
}

/// The TCP acceptor under poem's rustls acceptor, holding back only its very first accept by one
/// poll. poem's acceptor waits on its configuration stream and on this acceptor at once, without
/// bias; a client already queued when serving starts would otherwise be taken before the first
/// configuration is, and dropped for want of one.
struct ConfigFirst<A> {
    inner: A,
    first: bool,
}

impl<A: Acceptor> Acceptor for ConfigFirst<A> {
    type Io = A::Io;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        if std::mem::take(&mut self.first) {
            tokio::task::yield_now().await;
        }
        self.inner.accept().await
    }
}
/// Answers of the HTTP parser in the error shape. hyper answers a request it cannot parse
/// (a malformed request line or header, a target or header section over its limits) by itself,
/// before any endpoint runs, with an empty body: 400, 414 or 431. Every connection's writes pass
/// through [`ShapedIo`], which replaces exactly such an answer (a 400, 414 or 431 head with
/// `content-length: 0` and no `x-request-id`, which every answer of the application carries)
/// with the same status and the JSON error body.
struct ShapedAcceptor<A> {
    inner: A,
}

impl<A: Acceptor> Acceptor for ShapedAcceptor<A> {
    type Io = ShapedIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((ShapedIo { inner: io, pending: Vec::new(), written: 0 }, local, remote, scheme))
    }
}

/// A connection whose parser-level error answers are rewritten (see [`ShapedAcceptor`]).
struct ShapedIo<T> {
    inner: T,
    /// A rewritten answer still being written, and how much of it is.
    pending: Vec<u8>,
    written: usize,
}

impl<T: AsyncWrite + Unpin> ShapedIo<T> {
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ShapedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ShapedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(shaped) = parser_answer(buf) {
            self.pending = shaped;
            // The original bytes count as written; the rewritten ones go out on the next
            // write, flush or shutdown (hyper flushes right after).
            if let Poll::Ready(Err(e)) = self.drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The rewritten answer when `buf` is hyper's own answer to an unparsable request.
fn parser_answer(buf: &[u8]) -> Option<Vec<u8>> {
    let code = match buf.get(..13)? {
        b"HTTP/1.1 400 " => ErrorCode::BadRequest,
        b"HTTP/1.1 414 " => ErrorCode::UriTooLong,
        b"HTTP/1.1 431 " => ErrorCode::HeadersTooLarge,
        _ => return None,
    };
    let head = std::str::from_utf8(buf).ok()?.to_ascii_lowercase();
    if !head.ends_with("\r\n\r\n") || !head.contains("\r\ncontent-length: 0\r\n") || head.contains("\r\nx-request-id:")
    {
        return None;
    }
    let request_id = crate::middleware::accept_or_generate_request_id(None);
    let message = match code {
        ErrorCode::UriTooLong => "The request target is longer than the server accepts.",
        ErrorCode::HeadersTooLarge => "The request's header section is larger than the server accepts.",
        _ => "The request could not be read as HTTP/1.1: a malformed request line, header or target.",
    };
    let body = serde_json::to_vec(&crate::error::ErrorBody {
        code: code.as_str().to_owned(),
        message: message.to_owned(),
        request_id: request_id.clone(),
    })
    .ok()?;
    let status = code.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\nx-request-id: {request_id}\r\nx-content-type-options: nosniff\r\ncache-control: no-store\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Bad Request"),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}
