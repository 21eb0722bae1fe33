//! The certificates of a cluster (DESIGN.md sections 3 and 7): one CA per cluster, which signs
//! - the pgBackRest leaf that every pgBackRest host of the cluster presents, as its TLS
//!   server certificate and as its client certificate towards the other hosts;
//! - PostgreSQL's server certificate (see [`postgres_server_leaf`]), short-lived and
//!   re-issued by the operator when a third of its life is left ([`renewal_due`]).
//!
//! The leaf names, as DNS SANs, every pod that may run pgBackRest: each possible instance
//! (1..=[`names::MAX_INSTANCES`], so scaling never needs a new certificate) and the repo host.
//! pgBackRest 2.45 matches the host name it dialled against DNS SANs only, never IP SANs.
//! Its CN ([`names::PGBACKREST_CLIENT_CN`]) is what `tls-server-auth` admits.
//!
//! Pure, apart from the OS random source behind key generation. Keys are ECDSA P-256 (ring):
//! OpenSSL, which pgBackRest uses, reads their PKCS#8 PEM.

use chrono::{Datelike, Days, NaiveDate, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};

use crate::protocol::names;

/// Days a CA is valid. Pods and applications trust it, so it outlives many leaves.
const CA_VALIDITY_DAYS: u64 = 20 * 365;
/// Days the pgBackRest leaf is valid. pgBackRest 2.45 reads its certificate once, when
/// `pgbackrest server` starts, so a re-issued leaf would only be used after every pod
/// restarted: it stays long-lived until the sidecars can be restarted one by one.
const PGBACKREST_LEAF_VALIDITY_DAYS: u64 = 10 * 365;
/// Days PostgreSQL's server certificate is valid. PostgreSQL re-reads its certificate on
/// `pg_reload_conf()`, so it is rotated without a restart.
pub const SERVER_LEAF_VALIDITY_DAYS: u64 = 90;

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

/// Validity from yesterday (tolerates clock skew between the operator and pods) for `days`.
fn set_validity(params: &mut CertificateParams, days: u64) {
    let today = Utc::now().date_naive();
    let start = today.pred_opt().unwrap_or(today);
    let end = start.checked_add_days(Days::new(days)).unwrap_or(NaiveDate::MAX);
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
    /// A new CA for `cluster`, which may sign leaves only (path length 0): pgBackRest's and
    /// PostgreSQL's.
    pub fn generate(cluster: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::Key)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&format!("relevo CA {cluster}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, CA_VALIDITY_DAYS);
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
        self.issue_for(common_name, dns_names, Usage::ServerAndClient, PGBACKREST_LEAF_VALIDITY_DAYS)
    }

    fn issue_for(
        &self,
        common_name: &str,
        dns_names: &[String],
        usage: Usage,
        days: u64,
    ) -> Result<CertifiedKey, PkiError> {
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
        params.extended_key_usages = match usage {
            Usage::ServerAndClient => {
                vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
            }
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        };
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, days);
        let cert =
            params.signed_by(&key, &self.issuer).map_err(|source| PkiError::Sign { what: "leaf", source })?;
        Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// What a leaf may authenticate.
#[derive(Debug, Clone, Copy)]
enum Usage {
    ServerAndClient,
    /// PostgreSQL's certificate is never a client certificate: in particular never one that
    /// pgBackRest's `tls-server-auth` would admit.
    Server,
}

/// RFC 1123 host names: what a client can dial, so what a SAN is worth carrying. The leftmost
/// label may be a `*` wildcard (one label, as libpq and rustls match it).
fn is_dns_name(name: &str) -> bool {
    let rest = match name.strip_prefix("*.") {
        Some(rest) => rest,
        None => name,
    };
    name.len() <= 253
        && rest.split('.').all(|label| {
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

/// Common name of PostgreSQL's server certificate (clients check the DNS SANs, not this).
pub const POSTGRES_SERVER_CN: &str = "relevo-postgres";

/// Every name a client may dial an instance of `cluster` by, short and qualified: each
/// possible instance pod through the headless Service (the operator, pg_rewind) and each
/// Service (standbys stream from `<cluster>-rw`; applications use any of them).
pub fn postgres_dns_names(cluster: &str, namespace: &str) -> Vec<String> {
    let pods = (1..=names::MAX_INSTANCES).map(|ordinal| {
        format!("{}.{}", names::pod(&names::instance(cluster, ordinal)), names::service_headless(cluster))
    });
    let services = [
        names::service_rw(cluster),
        names::service_ro(cluster),
        names::service_r(cluster),
        names::service_headless(cluster),
    ];
    pods.chain(services)
        .flat_map(|short| {
            [
                format!("{short}.{namespace}.svc"),
                format!("{short}.{namespace}.svc.cluster.local"),
                format!("{short}.{namespace}"),
                short,
            ]
        })
        .collect()
}

/// The names relevo itself dials and verifies, which a user-provided certificate must
/// cover: `<cluster>-rw` (standbys), and every possible pod through the headless Service,
/// short (pg_rewind) and qualified (the operator).
pub fn postgres_required_names(cluster: &str, namespace: &str) -> Vec<String> {
    let mut required = vec![names::service_rw(cluster)];
    for ordinal in 1..=names::MAX_INSTANCES {
        let instance = names::instance(cluster, ordinal);
        required.push(format!("{}.{}", names::pod(&instance), names::service_headless(cluster)));
        required.push(names::pod_fqdn(cluster, &instance, namespace));
    }
    required
}

/// PostgreSQL's server certificate for `cluster`, signed by `ca`, valid
/// [`SERVER_LEAF_VALIDITY_DAYS`].
pub fn postgres_server_leaf(
    ca: &CertificateAuthority,
    cluster: &str,
    namespace: &str,
) -> Result<CertifiedKey, PkiError> {
    ca.issue_for(
        POSTGRES_SERVER_CN,
        &postgres_dns_names(cluster, namespace),
        Usage::Server,
        SERVER_LEAF_VALIDITY_DAYS,
    )
}

/// Common name of the pooler's certificate (clients check the DNS SANs, not this).
pub const POOLER_CN: &str = "relevo-pooler";

/// Every name a client may dial the pooler of `cluster` by, short and qualified.
pub fn pooler_dns_names(cluster: &str, namespace: &str) -> Vec<String> {
    let short = names::pooler(cluster);
    vec![
        format!("{short}.{namespace}.svc"),
        format!("{short}.{namespace}.svc.cluster.local"),
        format!("{short}.{namespace}"),
        short,
    ]
}

/// The pooler's server certificate, signed by `ca`: PgBouncer's client TLS and the control
/// channel's server side. Server usage only, so a pooler pod can never pass as the operator
/// on another pod's channel.
pub fn pooler_server_leaf(
    ca: &CertificateAuthority,
    cluster: &str,
    namespace: &str,
) -> Result<CertifiedKey, PkiError> {
    ca.issue_for(POOLER_CN, &pooler_dns_names(cluster, namespace), Usage::Server, SERVER_LEAF_VALIDITY_DAYS)
}

/// What a certificate says about itself, as far as rotation and validation care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// DNS SANs, as written (wildcards included).
    pub dns_names: Vec<String>,
    /// DER of the issuer and subject names, to tell which CA signed it.
    pub issuer: Vec<u8>,
    pub subject: Vec<u8>,
}

/// Reads the first certificate of a PEM text.
pub fn certificate_facts(cert_pem: &str) -> Result<CertificateFacts, String> {
    use x509_parser::extensions::GeneralName;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem.parse_x509().map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let dns_names = cert
        .subject_alternative_name()
        .map_err(|e| format!("unreadable subjectAltName: {e}"))?
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(dns.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(CertificateFacts {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
        issuer: cert.issuer().as_raw().to_vec(),
        subject: cert.subject().as_raw().to_vec(),
    })
}

/// Whether `name` is covered by a SAN `pattern`: equal (ignoring case), or a leftmost
/// wildcard `*.rest` standing for exactly one label, as libpq and rustls match them.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern.eq_ignore_ascii_case(name) {
        return true;
    }
    match (pattern.strip_prefix("*."), name.split_once('.')) {
        (Some(rest), Some((label, name_rest))) => !label.is_empty() && rest.eq_ignore_ascii_case(name_rest),
        _ => false,
    }
}

/// Why the operator issues PostgreSQL's server certificate again, if it must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// The certificate stands.
    NotDue,
    /// Issue one: the reason, for the log.
    Due(String),
}

/// The rotation decision for an operator-issued certificate at `now` (seconds since the
/// epoch): re-issue when less than a third of its life is left, when it is not from `ca`
/// (the CA was replaced), or when it misses a name in `wanted` (the namespace or the naming
/// changed).
pub fn renewal_due(
    current: &CertificateFacts,
    ca: &CertificateFacts,
    wanted: &[String],
    now: i64,
) -> Renewal {
    if current.issuer != ca.subject {
        return Renewal::Due("it was not issued by the cluster CA".into());
    }
    if let Some(missing) = wanted.iter().find(|name| !current.dns_names.iter().any(|p| name_matches(p, name)))
    {
        return Renewal::Due(format!("it does not name {missing}"));
    }
    let lifetime = current.not_after - current.not_before;
    let left = current.not_after - now;
    if left * 3 < lifetime {
        return Renewal::Due(format!("{} of its {} days are left", left.max(0) / 86_400, lifetime / 86_400));
    }
    Renewal::NotDue
}

/// Checks a user-provided server certificate: readable, currently valid, and naming every
/// name relevo dials (`required`). The message says what is wrong.
pub fn check_user_certificate(facts: &CertificateFacts, required: &[String], now: i64) -> Result<(), String> {
    if now < facts.not_before {
        return Err("the certificate is not valid yet".into());
    }
    if now >= facts.not_after {
        return Err("the certificate has expired".into());
    }
    let missing: Vec<&str> = required
        .iter()
        .filter(|name| !facts.dns_names.iter().any(|p| name_matches(p, name)))
        .map(String::as_str)
        .collect();
    match missing.as_slice() {
        [] => Ok(()),
        [only] => Err(format!("the certificate does not name {only}, which relevo connects to")),
        [first, rest @ ..] => Err(format!(
            "the certificate does not name {first} and {} more names relevo connects to (e.g. a wildcard \
             *.<cluster>.<namespace>.svc and the short forms)",
            rest.len()
        )),
    }
}

#[cfg(test)]
#[path = "pki_tests.rs"]
mod tests;
