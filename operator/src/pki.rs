//! The certificates of a cluster's pgBackRest TLS servers (DESIGN.md section 3): one CA per
//! cluster, and one leaf certificate that every pgBackRest host of the cluster presents, as
//! its TLS server certificate and as its client certificate towards the other hosts.
//!
//! The leaf names, as DNS SANs, every pod that may run pgBackRest: each possible instance
//! (1..=[`names::MAX_INSTANCES`], so scaling never needs a new certificate) and the repo host.
//! pgBackRest 2.45 matches the host name it dialled against DNS SANs only, never IP SANs.
//! Its CN ([`names::PGBACKREST_CLIENT_CN`]) is what `tls-server-auth` admits.
//!
//! Pure, apart from the OS random source behind key generation. Keys are ECDSA P-256 (ring):
//! OpenSSL, which pgBackRest uses, reads their PKCS#8 PEM.

use chrono::{Datelike, Months, NaiveDate, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};

use crate::pgcluster::names;

/// Years a CA is valid. Certificates are never rotated (yet), so both are long-lived.
const CA_VALIDITY_YEARS: u32 = 20;
/// Years a leaf is valid; well inside its CA's validity.
const LEAF_VALIDITY_YEARS: u32 = 10;

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a key pair failed")]
    Key(#[source] rcgen::Error),
    #[error("{what} could not be read")]
    Unreadable {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("signing the {what} certificate failed")]
    Sign {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("{0:?} is not a valid DNS name for a certificate")]
    DnsName(String),
}

/// A certificate and its private key, PEM-encoded. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// A CA able to sign leaves: its PEM and its issuer identity.
pub struct CertificateAuthority {
    pem: CertifiedKey,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority").field("cert_pem", &self.pem.cert_pem).finish_non_exhaustive()
    }
}

/// Validity from yesterday (tolerates clock skew between the operator and pods) for `years`.
fn set_validity(params: &mut CertificateParams, years: u32) {
    let today = Utc::now().date_naive();
    let start = today.pred_opt().unwrap_or(today);
    let end = start.checked_add_months(Months::new(12 * years)).unwrap_or(NaiveDate::MAX);
    // Months and days always fit u8.
    let ymd = |date: NaiveDate| rcgen::date_time_ymd(date.year(), date.month() as u8, date.day() as u8);
    params.not_before = ymd(start);
    params.not_after = ymd(end);
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "relevo");
    name.push(DnType::CommonName, common_name);
    name
}

impl CertificateAuthority {
    /// A new CA for `cluster`, which may sign leaves only (path length 0).
    pub fn generate(cluster: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::Key)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&format!("relevo pgBackRest CA {cluster}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, CA_VALIDITY_YEARS);
        let cert = params.self_signed(&key).map_err(|source| PkiError::Sign { what: "CA", source })?;
        let pem = CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        Ok(Self { pem, issuer: Issuer::new(params, key) })
    }

    /// A CA stored earlier (the CA Secret), so that a new leaf chains to the CA pods trust.
    pub fn from_pem(pem: CertifiedKey) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(&pem.key_pem)
            .map_err(|source| PkiError::Unreadable { what: "the CA key", source })?;
        let issuer = Issuer::from_ca_cert_pem(&pem.cert_pem, key)
            .map_err(|source| PkiError::Unreadable { what: "the CA certificate", source })?;
        Ok(Self { pem, issuer })
    }

    pub fn pem(&self) -> &CertifiedKey {
        &self.pem
    }

    /// A leaf for TLS servers and clients alike, with a fresh key.
    pub fn issue(&self, common_name: &str, dns_names: &[String]) -> Result<CertifiedKey, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::Key)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name);
        params.subject_alt_names = dns_names
            .iter()
            .map(|name| {
                is_dns_name(name)
                    .then(|| name.clone().try_into().ok())
                    .flatten()
                    .map(rcgen::SanType::DnsName)
                    .ok_or_else(|| PkiError::DnsName(name.clone()))
            })
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_VALIDITY_YEARS);
        let cert =
            params.signed_by(&key, &self.issuer).map_err(|source| PkiError::Sign { what: "leaf", source })?;
        Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// RFC 1123 host names: what a client can dial, so what a SAN is worth carrying.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Every DNS name a pgBackRest host of `cluster` may be dialled by: each possible instance
/// pod and the repo host pod.
pub fn pgbackrest_dns_names(cluster: &str, namespace: &str) -> Vec<String> {
    (1..=names::MAX_INSTANCES)
        .map(|ordinal| names::pod_fqdn(cluster, &names::instance(cluster, ordinal), namespace))
        .chain([names::repo_fqdn(cluster, namespace)])
        .collect()
}

/// The cluster's pgBackRest leaf, signed by `ca`.
pub fn pgbackrest_leaf(
    ca: &CertificateAuthority,
    cluster: &str,
    namespace: &str,
) -> Result<CertifiedKey, PkiError> {
    ca.issue(names::PGBACKREST_CLIENT_CN, &pgbackrest_dns_names(cluster, namespace))
}

#[cfg(test)]
#[path = "pki_tests.rs"]
mod tests;
