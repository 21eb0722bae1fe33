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
