use std::process::Command;

use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

use super::*;

fn names_in(cert_pem: &str) -> (String, Vec<String>) {
    let (_, pem) = parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let cn = cert.subject().iter_common_name().next().unwrap().as_str().unwrap().to_string();
    let sans = cert
        .subject_alternative_name()
        .unwrap()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .map(|name| match name {
                    GeneralName::DNSName(dns) => dns.to_string(),
                    other => panic!("only DNS SANs expected, got {other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    (cn, sans)
}

/// `openssl verify` of `leaf` against `ca` for one purpose; its output on failure.
fn openssl_verify(ca: &str, leaf: &str, purpose: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("relevo-pki-{}-{purpose}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.crt"), ca).unwrap();
    std::fs::write(dir.join("tls.crt"), leaf).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-purpose", purpose, "-CAfile"])
        .arg(dir.join("ca.crt"))
        .arg(dir.join("tls.crt"))
        .output()
        .expect("openssl must be installed to verify certificates");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(()) } else { Err(text) }
}

#[test]
fn leaf_names_every_possible_pod_and_the_repo_host_as_dns() {
    let ca = CertificateAuthority::generate("demo").unwrap();
    let leaf = pgbackrest_leaf(&ca, "demo", "db").unwrap();
    let (cn, sans) = names_in(&leaf.cert_pem);
    assert_eq!(cn, "relevo-pgbackrest");
    assert_eq!(sans.len(), 10, "{sans:?}");
    assert_eq!(sans[0], "demo-1-0.demo.db.svc");
    assert_eq!(sans[8], "demo-9-0.demo.db.svc");
    assert_eq!(sans[9], "demo-repo-0.demo-repo.db.svc");
}

#[test]
fn leaf_chains_to_its_ca_for_servers_and_clients() {
    let ca = CertificateAuthority::generate("demo").unwrap();
    let leaf = pgbackrest_leaf(&ca, "demo", "db").unwrap();
    openssl_verify(&ca.pem().cert_pem, &leaf.cert_pem, "sslserver").unwrap();
    openssl_verify(&ca.pem().cert_pem, &leaf.cert_pem, "sslclient").unwrap();

    let (_, pem) = parse_x509_pem(ca.pem().cert_pem.as_bytes()).unwrap();
    let ca_cert = pem.parse_x509().unwrap();
    assert!(ca_cert.is_ca());
    let (_, pem) = parse_x509_pem(leaf.cert_pem.as_bytes()).unwrap();
    let leaf_cert = pem.parse_x509().unwrap();
    assert!(!leaf_cert.is_ca());
    assert_eq!(leaf_cert.issuer(), ca_cert.subject());
    let eku = leaf_cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    // Long-lived, since nothing rotates them yet, and valid from before now.
    let now = x509_parser::time::ASN1Time::now();
    assert!(leaf_cert.validity().not_before < now);
    assert!(leaf_cert.validity().not_after.timestamp() - now.timestamp() > 9 * 365 * 86_400);
    assert!(ca_cert.validity().not_after > leaf_cert.validity().not_after);
}

#[test]
fn a_stored_ca_signs_leaves_its_pods_already_trust() {
    let ca = CertificateAuthority::generate("demo").unwrap();
    let stored = CertificateAuthority::from_pem(ca.pem().clone()).unwrap();
    let leaf = pgbackrest_leaf(&stored, "demo", "db").unwrap();
    openssl_verify(&ca.pem().cert_pem, &leaf.cert_pem, "sslserver").unwrap();
    // And never a foreign one.
    let other = CertificateAuthority::generate("other").unwrap();
    assert!(openssl_verify(&other.pem().cert_pem, &leaf.cert_pem, "sslserver").is_err());
}

#[test]
fn keys_are_pkcs8_pem_and_never_debug_printed() {
    let ca = CertificateAuthority::generate("demo").unwrap();
    let leaf = pgbackrest_leaf(&ca, "demo", "db").unwrap();
    assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", &leaf.key_pem[..30]);
    assert_ne!(leaf.key_pem, ca.pem().key_pem);
    for shown in [format!("{leaf:?}"), format!("{ca:?}")] {
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
}

#[test]
fn garbage_is_refused_with_what_was_unreadable() {
    let error = CertificateAuthority::from_pem(CertifiedKey { cert_pem: "x".into(), key_pem: "y".into() })
        .unwrap_err();
    assert_eq!(error.to_string(), "the CA key could not be read");
    let ca = CertificateAuthority::generate("demo").unwrap();
    let error = ca.issue("x", &["bad name with spaces\u{7f}".to_string()]);
    assert!(matches!(error, Err(PkiError::DnsName(_))), "{error:?}");
}
