//! rustls material from PEM, for every TLS endpoint relevo runs or dials: trust anchors, a
//! certificate chain with its key, and the one crypto provider (ring, explicitly: the
//! process-wide default is not ours to rely on).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why PEM material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("{what} is not PEM: {message}")]
    Pem { what: &'static str, message: String },
    #[error("{0} holds no certificate")]
    Empty(&'static str),
    #[error("a CA certificate was refused: {0}")]
    Refused(#[source] rustls::Error),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| PemError::Pem { what, message: e.to_string() })?;
    if certificates.is_empty() {
        return Err(PemError::Empty(what));
    }
    Ok(certificates)
}

/// Every certificate in `pem` as a trust anchor (a bundle may carry the old and the new CA
/// while one replaces the other).
pub fn roots(pem: &[u8]) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(pem, "the CA")? {
        roots.add(certificate).map_err(PemError::Refused)?;
    }
    Ok(roots)
}

/// A certificate chain and its private key.
pub fn identity(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PemError> {
    let chain = certificates(cert_pem, "the certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| PemError::Pem { what: "the key", message: e.to_string() })?;
    Ok((chain, key))
}

/// Server settings for an endpoint only the cluster's own clients may use (mutual TLS): our
/// certificate, and client certificates signed by the CA in `ca` only.
pub fn mutual_server_config(
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ServerConfig, String> {
    let pem =
        |path: &std::path::Path| std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()));
    let roots = roots(&pem(ca)?).map_err(|e| e.to_string())?;
    let (chain, key) = identity(&pem(cert)?, &pem(key)?).map_err(|e| e.to_string())?;
    let provider = provider();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())
}

const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A TCP listener whose connections are TLS, for axum; failed handshakes are dropped, never
/// fatal (the instances' and the poolers' direct channels).
pub struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl TlsListener {
    pub fn new(tcp: tokio::net::TcpListener, config: rustls::ServerConfig) -> Self {
        Self { tcp, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
