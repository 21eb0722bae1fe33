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
//! Binaries come from /usr/lib/postgresql/15/bin or `RELEVO_PG_BIN`; missing ones fail the
//! test. As root, PostgreSQL runs through `runuser -u postgres --`, as in `rebuild::pg_tests`.

use std::ffi::OsString;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, pem::PemObject as _};

use super::{ClusterCa, Target, connect, presented_certificate};
use crate::pgcluster::builders::config_map::pg_hba_conf;
use crate::pki::{self, CertificateAuthority, CertifiedKey};
use crate::rebuild::process::{Runner, args};

const PASSWORD: &str = "relevo-tls-test-secret";
const REPLICATION_PASSWORD: &str = "relevo-tls-replication";

struct Pg {
    bin: PathBuf,
    root: PathBuf,
    runner: Runner,
    owner: Option<(u32, u32)>,
    started: Vec<PathBuf>,
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "postgres"]).output().expect("running id");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("the postgres user must exist as root")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Pg {
    fn new() -> Pg {
        let bin =
            PathBuf::from(std::env::var("RELEVO_PG_BIN").unwrap_or("/usr/lib/postgresql/15/bin".into()));
        for tool in ["initdb", "pg_ctl", "postgres", "pg_basebackup", "psql"] {
            assert!(bin.join(tool).is_file(), "PostgreSQL binary {} is missing", bin.join(tool).display());
        }
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let root = std::env::temp_dir().join(format!("relevo-tls-{}-{nanos}", std::process::id()));
        fs::create_dir_all(root.join("sock")).unwrap();
        let as_root = fs::metadata("/proc/self").unwrap().uid() == 0;
        let owner = as_root.then(|| (id_of("-u"), id_of("-g")));
        let wrapper = if as_root { args(["runuser", "-u", "postgres", "--"]) } else { vec![] };
        let runner = Runner { wrapper, env: vec![], timeout: Duration::from_secs(120) };
        let pg = Pg { bin, root, runner, owner, started: Vec::new() };
        pg.write_private("pwfile", &format!("{PASSWORD}\n"));
        pg.write_private("pgpass", &format!("*:*:*:streaming_replica:{REPLICATION_PASSWORD}\n"));
        pg.give(&pg.root.clone());
        pg.give(&pg.root.join("sock"));
        pg
    }

    fn give(&self, path: &Path) {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
    }

    /// A file only the postgres user reads (libpq and PostgreSQL insist on it for keys and
    /// password files).
    fn write_private(&self, name: &str, text: &str) -> PathBuf {
        let path = self.root.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        self.give(&path);
        path
    }

    fn run(&self, tool: &str, argv: Vec<OsString>) -> Result<String, String> {
        self.runner.run(&self.bin.join(tool), &argv).map(|o| o.stdout).map_err(|e| e.to_string())
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
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
        let mut argv = args(["-D"]);
        argv.push(self.dir(name).into());
        argv.extend(args(["-U", "postgres", "--auth-host=scram-sha-256", "--no-sync"]));
        argv.push(format!("--pwfile={}", self.root.join("pwfile").display()).into());
        self.run("initdb", argv).unwrap();
        self.configure(name);
        fs::write(self.dir(name).join("pg_hba.conf"), pg_hba_conf().replace(" peer", " trust")).unwrap();
    }

    fn configure(&self, name: &str) {
        let path = self.dir(name).join("postgresql.conf");
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str(&format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{sock}'\nfsync = off\n\
             max_wal_senders = 5\nhot_standby = on\nshared_buffers = '16MB'\n\
             wal_retrieve_retry_interval = '200ms'\npassword_encryption = 'scram-sha-256'\n\
             ssl = on\nssl_cert_file = '{root}/tls.crt'\nssl_key_file = '{root}/tls.key'\n\
             ssl_ca_file = '{root}/ca.crt'\n",
            sock = self.root.join("sock").display(),
            root = self.root.display(),
        ));
        fs::write(&path, text).unwrap();
    }

    fn start(&mut self, name: &str, port: u16) {
        let mut argv = args(["start", "-w", "-t", "60", "-D"]);
        argv.push(self.dir(name).into());
        argv.push("-l".into());
        argv.push(self.root.join(format!("{name}.log")).into());
        argv.extend(args(["-o", &format!("-p {port}")]));
        self.started.push(self.dir(name));
        self.run("pg_ctl", argv).unwrap();
    }

    /// psql over the private socket.
    fn sql(&self, port: u16, sql: &str) -> String {
        let mut argv =
            args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-h"]);
        argv.push(self.root.join("sock").into());
        argv.extend(args(["-p", &port.to_string(), "-c", sql]));
        self.run("psql", argv).unwrap_or_else(|e| panic!("{sql}: {e}")).trim().to_owned()
    }

    fn wait_until(&self, what: &str, mut probe: impl FnMut() -> (bool, String)) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (done, seen) = probe();
            if done {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; last seen: {seen}");
            std::thread::sleep(Duration::from_millis(100));
        }
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

impl Drop for Pg {
    fn drop(&mut self) {
        for dir in &self.started {
            let mut argv = args(["stop", "-m", "immediate", "-D"]);
            argv.push(dir.clone().into());
            let _ = self.runner.run(&self.bin.join("pg_ctl"), &argv);
        }
        if !std::thread::panicking() || std::env::var_os("RELEVO_KEEP_TEST_DIR").is_none() {
            let _ = fs::remove_dir_all(&self.root);
        }
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
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_verified_tls_gets_in_and_replication_streams_over_it() {
    let mut pg = Pg::new();
    let (pa, pb) = (free_port(), free_port());
    let ca = CertificateAuthority::generate("demo").unwrap();
    let leaf = pki::postgres_server_leaf(&ca, "demo", "db").unwrap();
    pg.install_certificate(&leaf, &ca.pem().cert_pem);
    pg.initdb("a");
    pg.start("a", pa);
    let cluster_ca = ClusterCa::from_pem(&ca.pem().cert_pem).unwrap();

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
