//! In-process TLS for a single node without a proxy (`server.tls_cert`/`server.tls_key`).
//!
//! The HTTP server and the WebSocket transport, which writes straight to its TCP sockets
//! (see `api::wire`), stay as they are on a listener of their own on loopback. In front of
//! it, on the configured address, a terminator accepts TLS (rustls), opens one loopback
//! connection per client and copies bytes both ways. It notes which client each loopback
//! connection stands for, so the server still sees the client's address (rate limits).
//!
//! The cost: every client connection holds three descriptors (its own, and both ends of
//! the loopback pair) and its bytes are copied once more. A cluster puts TLS on its proxy.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How long a client gets to finish its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The client each loopback connection from the terminator stands for, keyed by the
/// connection's address as the server sees it (its peer address).
#[derive(Debug, Default)]
pub struct TlsPeers(DashMap<SocketAddr, SocketAddr>);

impl TlsPeers {
    /// The client behind `peer`, when `peer` is one of the terminator's connections.
    pub fn client_of(&self, peer: SocketAddr) -> Option<SocketAddr> {
        self.0.get(&peer).map(|c| *c)
    }
}

/// The certificate chain and key, loaded and checked at start-up.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("server.tls_cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server.tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "server.tls_cert {}: no certificate",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("server.tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("server.tls_cert and server.tls_key do not match: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TLS on `public` and relays each connection to `inner`, on one thread per core.
pub fn start(
    public: std::net::TcpListener,
    inner: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    peers: Arc<TlsPeers>,
) -> std::io::Result<()> {
    public.set_nonblocking(true)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    for i in 0..threads {
        let listener = public.try_clone()?;
        let acceptor = TlsAcceptor::from(config.clone());
        let peers = peers.clone();
        std::thread::Builder::new()
            .name(format!("stoa-tls-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!(error = %e, "TLS thread has no runtime"),
                };
                rt.block_on(accept(listener, inner, acceptor, peers));
            })?;
    }
    Ok(())
}

async fn accept(
    listener: std::net::TcpListener,
    inner: SocketAddr,
    acceptor: TlsAcceptor,
    peers: Arc<TlsPeers>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!(error = %e, "TLS listener"),
    };
    loop {
        let (tcp, client) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %e, "TLS accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, peers) = (acceptor.clone(), peers.clone());
        tokio::spawn(async move {
            if let Err(e) = relay(tcp, client, inner, acceptor, &peers).await {
                tracing::debug!(%client, error = %e, "TLS connection ended");
            }
        });
    }
}

async fn relay(
    tcp: tokio::net::TcpStream,
    client: SocketAddr,
    inner: SocketAddr,
    acceptor: TlsAcceptor,
    peers: &TlsPeers,
) -> std::io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let mut tls = tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake"))??;
    let mut upstream = tokio::net::TcpStream::connect(inner).await?;
    let _ = upstream.set_nodelay(true);
    let seen_as = upstream.local_addr()?;
    peers.0.insert(seen_as, client);
    let result = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
    peers.0.remove(&seen_as);
    result.map(|_| ())
}

/// A TLS client's trust (rustls on ring): the certificates of the PEM `ca_file`, or the
/// system's CAs (`SSL_CERT_FILE` and `SSL_CERT_DIR` change where those are read) without
/// one. The directory (LDAPS, StartTLS) and the RabbitMQ bus (`amqps://`) connect with it.
pub fn client_config(ca_file: &str) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    if ca_file.is_empty() {
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
    } else {
        for cert in
            CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("ca_file {ca_file}: {e}"))?
        {
            let cert = cert.map_err(|e| format!("ca_file {ca_file}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {ca_file}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
