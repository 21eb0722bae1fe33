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
    // One directory per call: tests run in parallel threads of one process, and a shared
    // one was removed under a concurrent call's feet.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("relevo-pki-{}-{call}-{purpose}", std::process::id()));
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
    for bad in ["*", "a.*.b", "**.b", "*b.c"] {
        assert!(matches!(ca.issue("x", &[bad.to_string()]), Err(PkiError::DnsName(_))), "{bad}");
    }
    assert!(ca.issue("x", &["*.demo.db.svc".to_string()]).is_ok(), "a leftmost wildcard");
}

const DAY: i64 = 86_400;

fn facts(not_before: i64, days: i64, names: &[&str], issuer: &[u8]) -> CertificateFacts {
    CertificateFacts {
        not_before,
        not_after: not_before + days * DAY,
        dns_names: names.iter().map(ToString::to_string).collect(),
        issuer: issuer.to_vec(),
        subject: b"leaf".to_vec(),
    }
}

fn ca_facts(subject: &[u8]) -> CertificateFacts {
    CertificateFacts { subject: subject.to_vec(), ..facts(0, 7300, &[], subject) }
}

#[test]
fn renewal_is_due_when_a_third_of_the_life_is_left() {
    let ca = ca_facts(b"ca");
    let wanted = vec!["demo-rw".to_string()];
    let leaf = facts(0, 90, &["demo-rw"], b"ca");
    assert_eq!(renewal_due(&leaf, &ca, &wanted, 0), Renewal::NotDue);
    assert_eq!(renewal_due(&leaf, &ca, &wanted, 60 * DAY), Renewal::NotDue, "exactly a third left");
    assert_eq!(
        renewal_due(&leaf, &ca, &wanted, 60 * DAY + 1),
        Renewal::Due("29 of its 90 days are left".into())
    );
    assert!(matches!(renewal_due(&leaf, &ca, &wanted, 200 * DAY), Renewal::Due(_)), "expired");
}

#[test]
fn renewal_is_due_for_another_ca_or_a_missing_name() {
    let wanted = vec!["demo-rw".to_string(), "demo-1-0.demo".to_string()];
    let leaf = facts(0, 90, &["demo-rw", "*.demo"], b"ca");
    assert_eq!(renewal_due(&leaf, &ca_facts(b"ca"), &wanted, DAY), Renewal::NotDue, "wildcards count");
    assert_eq!(
        renewal_due(&leaf, &ca_facts(b"new-ca"), &wanted, DAY),
        Renewal::Due("it was not issued by the cluster CA".into())
    );
    let narrow = facts(0, 90, &["demo-rw"], b"ca");
    assert_eq!(
        renewal_due(&narrow, &ca_facts(b"ca"), &wanted, DAY),
        Renewal::Due("it does not name demo-1-0.demo".into())
    );
}

#[test]
fn wildcards_stand_for_exactly_one_label() {
    assert!(name_matches("*.demo.db.svc", "demo-1-0.demo.db.svc"));
    assert!(name_matches("DEMO-RW", "demo-rw"));
    assert!(!name_matches("*.demo.db.svc", "a.b.demo.db.svc"));
    assert!(!name_matches("*.demo.db.svc", "demo.db.svc"));
    assert!(!name_matches("*.demo", "demo-rw"));
    assert!(!name_matches("demo-rw.db.svc", "demo-rw"));
}

#[test]
fn the_server_leaf_is_short_lived_names_every_pod_and_service_and_is_no_client() {
    let ca = CertificateAuthority::generate("demo").unwrap();
    let leaf = postgres_server_leaf(&ca, "demo", "db").unwrap();
    openssl_verify(&ca.pem().cert_pem, &leaf.cert_pem, "sslserver").unwrap();
    assert!(openssl_verify(&ca.pem().cert_pem, &leaf.cert_pem, "sslclient").is_err(), "never a client");
    let (cn, sans) = names_in(&leaf.cert_pem);
    assert_eq!(cn, POSTGRES_SERVER_CN);
    for name in [
        "demo-rw",
        "demo-rw.db",
        "demo-rw.db.svc",
        "demo-rw.db.svc.cluster.local",
        "demo-ro.db.svc",
        "demo-r",
        "demo.db.svc",
        "demo-1-0.demo",
        "demo-9-0.demo.db.svc",
    ] {
        assert!(sans.iter().any(|s| s == name), "{name} missing from {sans:?}");
    }
    let read = certificate_facts(&leaf.cert_pem).unwrap();
    let lifetime = read.not_after - read.not_before;
    assert_eq!(lifetime, SERVER_LEAF_VALIDITY_DAYS as i64 * DAY);
    let ca_read = certificate_facts(&ca.pem().cert_pem).unwrap();
    assert_eq!(read.issuer, ca_read.subject);
    let wanted = postgres_dns_names("demo", "db");
    assert_eq!(renewal_due(&read, &ca_read, &wanted, chrono::Utc::now().timestamp()), Renewal::NotDue);
    // What relevo dials is a subset of what it issues.
    let required = postgres_required_names("demo", "db");
    assert_eq!(check_user_certificate(&read, &required, chrono::Utc::now().timestamp()), Ok(()));
}

#[test]
fn a_user_certificate_must_be_current_and_name_what_relevo_dials() {
    let required = postgres_required_names("demo", "db");
    let good = facts(0, 365, &["demo-rw", "*.demo", "*.demo.db.svc"], b"theirs");
    assert_eq!(check_user_certificate(&good, &required, DAY), Ok(()));
    assert_eq!(
        check_user_certificate(&good, &required, 400 * DAY),
        Err("the certificate has expired".into())
    );
    assert_eq!(check_user_certificate(&good, &required, -1), Err("the certificate is not valid yet".into()));
    let no_rw = facts(0, 365, &["*.demo", "*.demo.db.svc"], b"theirs");
    assert_eq!(
        check_user_certificate(&no_rw, &required, DAY),
        Err("the certificate does not name demo-rw, which relevo connects to".into())
    );
    let only_rw = facts(0, 365, &["demo-rw"], b"theirs");
    let error = check_user_certificate(&only_rw, &required, DAY).unwrap_err();
    assert!(error.starts_with("the certificate does not name demo-1-0.demo and 17 more"), "{error}");
}
