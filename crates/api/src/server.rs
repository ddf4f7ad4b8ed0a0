//! Binding the listener (plain or rustls) and serving until a shutdown signal.

use std::{future::Future, io, net::SocketAddr, time::Duration};

use poem::{
    endpoint::BoxEndpoint,
    listener::{Acceptor, AcceptorExt, BoxAcceptor, Listener, RustlsCertificate, RustlsConfig, TcpListener},
    Server,
};

/// Certificate chain and private key, PEM encoded, for native TLS.
#[derive(Clone)]
pub struct TlsPem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsPem { key: [REDACTED], .. }")
    }
}

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
    /// Binds `addr`, with rustls when `tls` is given. rustls speaks only TLS 1.2 and 1.3, so the
    /// TLS 1.2 minimum of the seeds (and of OWASP's TLS Cheat Sheet) holds by construction.
    pub async fn bind(addr: SocketAddr, tls: Option<TlsPem>) -> io::Result<Bound> {
        install_crypto_provider();
        let (acceptor, is_tls) = match tls {
            None => (TcpListener::bind(addr).into_acceptor().await?.boxed(), false),
            Some(pem) => {
                let config = RustlsConfig::new().fallback(RustlsCertificate::new().cert(pem.cert).key(pem.key));
                (TcpListener::bind(addr).rustls(config).into_acceptor().await?.boxed(), true)
            }
        };
        let local_addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .ok_or_else(|| io::Error::other("listener has no socket address"))?;
        Ok(Bound { acceptor, local_addr, tls: is_tls })
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
