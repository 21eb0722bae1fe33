//! Integration test: TLS against real PostgreSQL 15 processes, configured as relevo
//! configures its instances (the rendered pg_hba.conf, `ssl = on` with a server certificate
//! from the cluster CA).
//!
//! - a plain-text TCP connection is refused by pg_hba, a verify-full one through
//!   [`super::connect`] succeeds, a wrong CA or a name the certificate lacks fails;
//! - a standby cloned by pg_basebackup streams with relevo's `sslmode=verify-full`
//!   conninfo, and pg_stat_ssl shows the replication connection encrypted;
//! - a renewed certificate is presented after `pg_reload_conf()`, without a restart.
//!
//! The processes run in [`crate::test_pg::PgBed`].

use std::fs;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, pem::PemObject as _};

use super::{ClusterCa, Target, connect, presented_certificate};
use crate::pgcluster::builders::config_map::pg_hba_conf;
use crate::pki::{self, CertificateAuthority, CertifiedKey};
use crate::rebuild::process::args;
use crate::test_pg::{PgBed, free_port};

const PASSWORD: &str = "relevo-tls-test-secret";
const REPLICATION_PASSWORD: &str = "relevo-tls-replication";

/// The shared bed, with relevo's TLS settings and pg_hba.conf.
struct Pg {
    bed: PgBed,
}

impl std::ops::Deref for Pg {
    type Target = PgBed;
    fn deref(&self) -> &PgBed {
        &self.bed
    }
}

impl std::ops::DerefMut for Pg {
    fn deref_mut(&mut self) -> &mut PgBed {
        &mut self.bed
    }
}

struct Certified {
    ca: CertificateAuthority,
    leaf: CertifiedKey,
    cluster_ca: ClusterCa,
}

impl Pg {
    fn new() -> Pg {
        let bed =
            PgBed::new("relevo-tls", &["initdb", "pg_ctl", "postgres", "pg_basebackup", "psql"], PASSWORD);
        bed.write_private("pgpass", &format!("*:*:*:streaming_replica:{REPLICATION_PASSWORD}\n"));
        Pg { bed }
    }

    /// A new cluster CA and a server certificate from it for cluster `demo` in namespace `db`,
    /// installed where the server reads them.
    fn install_new_ca(&self) -> Certified {
        let ca = CertificateAuthority::generate("demo").unwrap();
        let leaf = pki::postgres_server_leaf(&ca, "demo", "db").unwrap();
        self.install_certificate(&leaf, &ca.pem().cert_pem);
        let cluster_ca = ClusterCa::from_pem(&ca.pem().cert_pem).unwrap();
        Certified { ca, leaf, cluster_ca }
    }

    /// Writes the certificate files a server reads.
    fn install_certificate(&self, leaf: &CertifiedKey, ca_pem: &str) {
        self.write_private("tls.crt", &leaf.cert_pem);
        self.write_private("tls.key", &leaf.key_pem);
        self.write_private("ca.crt", ca_pem);
    }

    /// initdb, then relevo's TLS settings and pg_hba.conf (its socket rules as `trust`, so
    /// the harness works as any OS user; the TCP rules are relevo's, verbatim).
    fn initdb(&self, name: &str) {
        self.bed.initdb(name, &[]);
        self.configure(name);
        fs::write(self.dir(name).join("pg_hba.conf"), pg_hba_conf().replace(" peer", " trust")).unwrap();
    }

    fn configure(&self, name: &str) {
        self.append_conf(
            name,
            &format!(
                "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{sock}'\nfsync = off\n\
                 max_wal_senders = 5\nhot_standby = on\nshared_buffers = '16MB'\n\
                 wal_retrieve_retry_interval = '200ms'\npassword_encryption = 'scram-sha-256'\n\
                 ssl = on\nssl_cert_file = '{root}/tls.crt'\nssl_key_file = '{root}/tls.key'\n\
                 ssl_ca_file = '{root}/ca.crt'\n",
                sock = self.sock.display(),
                root = self.root.display(),
            ),
        );
    }

    /// The conninfo relevo's standbys use (see `instance::conf`), with this harness's files
    /// and the Service name resolved to loopback by `hostaddr`.
    fn replication_conninfo(&self, port: u16, application_name: &str, sslmode: &str) -> String {
        format!(
            "host=demo-rw hostaddr=127.0.0.1 port={port} user=streaming_replica passfile={pass} \
             application_name={application_name} sslmode={sslmode} sslrootcert={ca} connect_timeout=5",
            pass = self.root.join("pgpass").display(),
            ca = self.root.join("ca.crt").display(),
        )
    }
}

fn target(port: u16, server_name: &str) -> Target<'_> {
    Target {
        host: "127.0.0.1",
        server_name: Some(server_name),
        port,
        user: "postgres",
        password: PASSWORD,
        dbname: "postgres",
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_verified_tls_gets_in_and_replication_streams_over_it() {
    let mut pg = Pg::new();
    let (pa, pb) = (free_port(), free_port());
    let Certified { ca, leaf, cluster_ca } = pg.install_new_ca();
    pg.initdb("a");
    pg.start("a", pa);

    // Plain text over TCP: no pg_hba rule matches.
    let mut plain = tokio_postgres::Config::new();
    plain.host("127.0.0.1").port(pa).user("postgres").password(PASSWORD).dbname("postgres");
    plain.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let refused =
        plain.connect(tokio_postgres::NoTls).await.err().expect("a plain-text connection is refused");
    let refused = format!("{refused:?}");
    assert!(refused.contains("no pg_hba.conf entry") && refused.contains("no encryption"), "{refused}");

    // verify-full: the pod's name and a Service name, as the operator and clients dial them.
    for name in ["demo-1-0.demo.db.svc", "demo-rw", "demo-ro.db.svc.cluster.local"] {
        let client = connect(&target(pa, name), &cluster_ca).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let row =
            client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap();
        assert!(row.get::<_, bool>(0), "{name}: the session is encrypted");
    }
    // A name the certificate lacks, or another cluster's CA, is refused before any password.
    let Err(wrong_name) = connect(&target(pa, "other-rw.db.svc"), &cluster_ca).await else {
        panic!("a name the certificate lacks was accepted")
    };
    assert!(format!("{wrong_name:?}").contains("NotValidForName"), "{wrong_name:?}");
    let other = CertificateAuthority::generate("other").unwrap();
    let other_ca = ClusterCa::from_pem(&other.pem().cert_pem).unwrap();
    let Err(wrong_ca) = connect(&target(pa, "demo-rw"), &other_ca).await else {
        panic!("another cluster's CA was accepted")
    };
    assert!(format!("{wrong_ca:?}").contains("UnknownIssuer"), "{wrong_ca:?}");

    // Replication: a replication role, a clone by pg_basebackup over verify-full, a standby
    // streaming with relevo's conninfo; a plain-text clone is refused.
    pg.sql(
        pa,
        &format!("CREATE ROLE streaming_replica WITH REPLICATION LOGIN PASSWORD '{REPLICATION_PASSWORD}'"),
    );
    pg.sql(pa, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)");
    let clone = |dir: &str, sslmode: &str| {
        let mut argv = args(["-D"]);
        argv.push(pg.dir(dir).into());
        argv.extend(args(["-X", "stream", "--checkpoint=fast", "--no-password", "-R"]));
        argv.push(format!("--dbname={}", pg.replication_conninfo(pa, "b", sslmode)).into());
        pg.run("pg_basebackup", argv)
    };
    let plain_clone = clone("plain", "disable").expect_err("a plain-text base backup is refused");
    assert!(plain_clone.contains("no encryption"), "{plain_clone}");
    clone("b", "verify-full").unwrap();
    let auto_conf = pg.dir("b").join("postgresql.auto.conf");
    fs::write(
        &auto_conf,
        format!("primary_conninfo = '{}'\n", pg.replication_conninfo(pa, "b", "verify-full")),
    )
    .unwrap();
    pg.give(&auto_conf);
    pg.start("b", pb);
    let query = "SELECT r.application_name || ':' || r.state || ':' || s.ssl \
                 FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)";
    pg.wait_until("b streaming over TLS", || {
        let seen = pg.sql(pa, query);
        (seen == "b:streaming:true", seen)
    });
    pg.sql(pa, "INSERT INTO t VALUES (11)");
    pg.wait_until("b replays row 11", || {
        let seen = pg.sql(pb, "SELECT count(*) FROM t");
        (seen == "11", seen)
    });

    // Rotation: a renewed certificate is presented once the files change and the
    // configuration is reloaded, with no restart.
    let before = presented_certificate(&target(pa, "demo-1-0.demo.db.svc"), &cluster_ca).await.unwrap();
    assert_eq!(before, CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap().as_ref());
    let renewed = pki::postgres_server_leaf(&ca, "demo", "db").unwrap();
    pg.install_certificate(&renewed, &ca.pem().cert_pem);
    let postmaster = fs::read_to_string(pg.dir("a").join("postmaster.pid")).unwrap();
    connect(&target(pa, "demo-rw"), &cluster_ca)
        .await
        .unwrap()
        .execute("SELECT pg_reload_conf()", &[])
        .await
        .unwrap();
    let expected = CertificateDer::from_pem_slice(renewed.cert_pem.as_bytes()).unwrap().as_ref().to_vec();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = presented_certificate(&target(pa, "demo-rw"), &cluster_ca).await.unwrap();
        if now == expected {
            break;
        }
        assert!(Instant::now() < deadline, "the renewed certificate was never presented");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fs::read_to_string(pg.dir("a").join("postmaster.pid")).unwrap(), postmaster, "no restart");
}

/// The short bound a probe gives a host that went unanswered covers the TCP connect alone:
/// an instance slow to do the TLS handshake, authentication and query (a loaded node) still
/// answers within the whole timeout. With the bound on everything it never answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_instance_is_answered_under_a_short_connect_bound() {
    let mut pg = Pg::new();
    let port = free_port();
    let Certified { cluster_ca, .. } = pg.install_new_ca();
    pg.initdb("slow");
    pg.start("slow", port);

    // A proxy whose kernel accepts at once and which forwards only after a pause: a server
    // whose every answer is late.
    let delay = Duration::from_millis(800);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let mut server = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });

    let short = Duration::from_millis(500);
    let started = Instant::now();
    let bounded_connect = Target { connect_timeout: short, ..target(proxy_port, "demo-rw") };
    let client = connect(&bounded_connect, &cluster_ca).await.expect("a slow instance still answers");
    assert!(started.elapsed() >= delay, "the answer came through the slow proxy");
    assert_eq!(client.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);

    // The whole timeout still bounds the exchange.
    let whole = Target { timeout: short, connect_timeout: short, ..target(proxy_port, "demo-rw") };
    assert!(connect(&whole, &cluster_ca).await.is_err(), "past the whole timeout it gives up");
}
