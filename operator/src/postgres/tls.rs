//! TLS for the operator's PostgreSQL connections: tokio-postgres over rustls, verifying the
//! server against the cluster CA and the host name it was dialled by (libpq's
//! `sslmode=verify-full`). Nothing else is trusted: no system roots, no fallback to plain text.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// Why a CA could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the CA is not PEM: {0}")]
    Pem(String),
    #[error("the CA holds no certificate")]
    Empty,
    #[error("the CA certificate was refused: {0}")]
    Refused(#[source] rustls::Error),
    #[error("{0:?} is not a host name a certificate can be verified for")]
    ServerName(String),
}

/// The CA a cluster's PostgreSQL certificate chains to, ready to verify servers with.
#[derive(Clone)]
pub struct ClusterCa {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterCa")
    }
}

impl ClusterCa {
    /// Every certificate in `pem` becomes a trust anchor (a bundle may carry the old and the
    /// new CA while one replaces the other).
    pub fn from_pem(pem: &str) -> Result<Self, TlsError> {
        let roots = crate::tls::roots(pem.as_bytes()).map_err(|e| match e {
            crate::tls::PemError::Empty(_) => TlsError::Empty,
            crate::tls::PemError::Refused(e) => TlsError::Refused(e),
            crate::tls::PemError::Pem { message, .. } => TlsError::Pem(message),
        })?;
        let config = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Refused)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { config: Arc::new(config) })
    }

    /// The tokio-postgres connector of this CA.
    pub fn connector(&self) -> MakeRustlsConnect {
        MakeRustlsConnect { config: self.config.clone() }
    }

    fn tls_connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.clone())
    }
}

fn server_name(domain: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(domain.to_owned()).map_err(|_| TlsError::ServerName(domain.to_owned()))
}

/// tokio-postgres' `MakeTlsConnect`: one [`RustlsConnect`] per host, verified for the host
/// name tokio-postgres was given (`Config::host`, even when it dials `hostaddr`).
#[derive(Clone)]
pub struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = TlsError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, TlsError> {
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
            name: server_name(domain)?,
        })
    }
}

pub struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move { Ok(RustlsStream(self.connector.connect(self.name, stream).await?)) })
    }
}

/// The TLS stream tokio-postgres reads and writes.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    /// No `tls-server-end-point` binding: SCRAM runs without channel binding, and the server
    /// is authenticated by its certificate (verify-full) instead.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// PostgreSQL's SSLRequest: length 8, code 1234.5679.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The certificate a server presents (DER), after verifying it as a connection would: how
/// the operator tells whether an instance has loaded a rotated certificate yet. Only the
/// TLS handshake happens; no startup message, no password.
pub async fn presented_certificate(
    stream: tokio::net::TcpStream,
    domain: &str,
    ca: &ClusterCa,
) -> io::Result<Vec<u8>> {
    let mut stream = stream;
    stream.write_all(&SSL_REQUEST).await?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    if answer[0] != b'S' {
        return Err(io::Error::other("the server does not offer TLS"));
    }
    let name = server_name(domain).map_err(io::Error::other)?;
    let mut tls = ca.tls_connector().connect(name, stream).await?;
    let presented = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(|c| c.to_vec());
    let _ = tls.shutdown().await;
    presented.ok_or_else(|| io::Error::other("the server presented no certificate"))
}
