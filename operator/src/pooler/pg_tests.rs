//! Real PostgreSQL and real PgBouncer, under the real supervisor and its mutual-TLS channel:
//! a PAUSE holds a client's next transaction, a RESUME after re-pointing lets it complete on
//! the new server with no client error, and a pause nobody resumes ends by itself.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_postgres::config::SslMode;

use super::ini::{self, Paths};
use super::run::{PoolerArgs, Running, start};
use crate::crd::pgcluster::PoolerSpec;
use crate::pki::CertificateAuthority;
use crate::postgres::ClusterCa;
use crate::protocol::pooler::{
    PAUSE_PATH, PauseRequest, PauseState, PoolerState, RESUME_PATH, ResumeRequest, STATUS_PATH,
};
use crate::switchover::instance_channel::{ClusterTls, exchange};
use crate::test_pg::{PgBed, free_port};

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";
const APP_PASSWORD: &str = "app-secret";

struct Bed {
    pg: PgBed,
    ca: CertificateAuthority,
    ports: [u16; 2],
    operator_tls: ClusterTls,
}

/// Two independent servers ("old" and "new" primary), TLS on, each with user and database app.
fn two_servers() -> Bed {
    let mut pg = PgBed::new("relevo-pooler", &["initdb", "pg_ctl", "psql"], "superpw");
    let ca = CertificateAuthority::generate("pooler-test").unwrap();
    let server = ca.issue("relevo-postgres", &["localhost".to_string()]).unwrap();
    let ports = [free_port(), free_port()];
    for (name, port) in ["old", "new"].iter().zip(ports) {
        pg.initdb(name, &[]);
        let cert = pg.write_private(&format!("{name}.crt"), &server.cert_pem);
        let key = pg.write_private(&format!("{name}.key"), &server.key_pem);
        pg.append_conf(
            name,
            &format!(
                "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nssl = on\n\
                 ssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                pg.sock.display(),
                cert.display(),
                key.display()
            ),
        );
        pg.start(name, port);
        pg.sql(port, &format!("CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'"));
        pg.sql(port, "CREATE DATABASE app OWNER app");
    }
    let client = ca.issue("relevo-operator", &["relevo-operator".to_string()]).unwrap();
    let operator_tls = ClusterTls {
        ca_pem: ca.pem().cert_pem.clone().into_bytes(),
        cert_pem: client.cert_pem.into_bytes(),
        key_pem: client.key_pem.into_bytes(),
    };
    Bed { pg, ca, ports, operator_tls }
}

/// The supervisor's directories, as the pod mounts them, and `relevo pooler` started.
async fn start_pooler(bed: &Bed, bound_seconds: u64) -> (Running, u16) {
    let dir = |name: &str| -> PathBuf {
        let path = bed.pg.dir(name);
        std::fs::create_dir_all(&path).unwrap();
        bed.pg.give(&path);
        path
    };
    let (template_dir, credentials_dir, tls_dir, run_dir) =
        (dir("pooler-template"), dir("pooler-credentials"), dir("pooler-tls"), dir("pooler-run"));
    let leaf = bed.ca.issue("relevo-pooler", &["localhost".to_string()]).unwrap();
    let private = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).unwrap();
        bed.pg.give(&path);
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    };
    let tls_cert = private(tls_dir.join("tls.crt"), &leaf.cert_pem);
    let tls_key = private(tls_dir.join("tls.key"), &leaf.key_pem);
    let ca_file = private(tls_dir.join("ca.crt"), &bed.ca.pem().cert_pem);
    private(credentials_dir.join("username"), "app\n");
    private(credentials_dir.join("password"), APP_PASSWORD);
    let listen_port = free_port();
    let paths = Paths {
        run_dir: run_dir.display().to_string(),
        tls_cert: tls_cert.display().to_string(),
        tls_key: tls_key.display().to_string(),
        server_ca: ca_file.display().to_string(),
        listen_port: i32::from(listen_port),
    };
    std::fs::write(template_dir.join("pgbouncer.ini"), ini::template(&PoolerSpec::default(), &paths))
        .unwrap();
    let args = PoolerArgs {
        initial_target: "localhost".into(),
        databases: vec!["app".into()],
        pause_bound_seconds: bound_seconds,
        target_port: bed.ports[0],
        listen_port,
        template_dir,
        credentials_dir,
        tls_dir,
        run_dir,
        control_port: 0,
        pgbouncer: pgbouncer_program(&bed.pg),
        file_owner: bed.pg.owner(),
    };
    let running = start(&args).await.expect("relevo pooler starts");
    (running, listen_port)
}

/// PgBouncer refuses to run as root: as root, through setpriv as the postgres user. setpriv
/// execs PgBouncer in its own process, so the supervisor's kill-on-drop reaches it; runuser
/// forked, and the PgBouncer it left behind kept the test's output pipe open (the test
/// passed, and `cargo test` never ended).
fn pgbouncer_program(pg: &PgBed) -> PathBuf {
    assert!(Path::new(PGBOUNCER).is_file(), "{PGBOUNCER} is missing: apt-get install pgbouncer");
    if pg.owner().is_none() {
        return PGBOUNCER.into();
    }
    let script = pg.dir("pgbouncer-as-postgres");
    let exec = format!("exec setpriv --reuid=postgres --regid=postgres --init-groups -- {PGBOUNCER} \"$@\"");
    std::fs::write(&script, format!("#!/bin/sh\n{exec}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// An application's connection through the pooler: TLS verified against the cluster CA.
async fn client(bed: &Bed, pooler_port: u16) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let ca = ClusterCa::from_pem(&bed.ca.pem().cert_pem).unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .host("localhost")
        .port(pooler_port)
        .user("app")
        .password(APP_PASSWORD)
        .dbname("app")
        .ssl_mode(SslMode::Require)
        .connect_timeout(Duration::from_secs(2));
    let (client, connection) = config.connect(ca.connector()).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn connect_when_up(bed: &Bed, pooler_port: u16) -> tokio_postgres::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client(bed, pooler_port).await {
            Ok(client) => return client,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("PgBouncer never accepted a client: {error}"),
        }
    }
}

async fn channel(bed: &Bed, running: &Running, method: &str, path: &str, body: Vec<u8>) -> PoolerState {
    let config = bed.operator_tls.client_config().unwrap();
    let port = running.control_addr.port();
    let (status, body) =
        exchange(config, ("127.0.0.1", port), "localhost", method, path, body, Duration::from_secs(10))
            .await
            .unwrap();
    assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

async fn pause(bed: &Bed, running: &Running, wait_ms: u64) -> PoolerState {
    channel(bed, running, "POST", PAUSE_PATH, serde_json::to_vec(&PauseRequest { wait_ms }).unwrap()).await
}

async fn server_port(client: &tokio_postgres::Client) -> String {
    client.query_one("SELECT current_setting('port')", &[]).await.unwrap().get(0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn pause_holds_the_next_transaction_and_resume_on_the_new_primary_completes_it() {
    let bed = two_servers();
    runtime().block_on(async {
        let (running, pooler_port) = start_pooler(&bed, 15).await;
        let app = connect_when_up(&bed, pooler_port).await;
        assert_eq!(server_port(&app).await, bed.ports[0].to_string(), "first on the old primary");

        // An in-flight transaction: the PAUSE waits for it, it is not cut.
        app.batch_execute("BEGIN; CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        let answer = pause(&bed, &running, 300).await;
        assert_eq!(answer.state, PauseState::Pausing, "{answer:?}");
        assert!(answer.resumes_by_itself_in_ms.is_some_and(|ms| ms <= 15_000));
        app.batch_execute("COMMIT").await.expect("the in-flight transaction commits during the PAUSE");
        let answer = pause(&bed, &running, 2000).await;
        assert_eq!(answer.state, PauseState::Paused, "{answer:?}");

        // The next transaction waits in PgBouncer, with no error.
        let held_since = Instant::now();
        let held = tokio::spawn(async move {
            let port = server_port(&app).await;
            (port, held_since.elapsed(), app)
        });
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!held.is_finished(), "a transaction reached PostgreSQL while paused");

        // Re-point at the new primary and resume: the held transaction completes there.
        let resume = ResumeRequest { target: Some("localhost".into()), port: Some(bed.ports[1]) };
        let answer = channel(&bed, &running, "POST", RESUME_PATH, serde_json::to_vec(&resume).unwrap()).await;
        assert_eq!(answer.state, PauseState::Running);
        let (port, waited, app) = tokio::time::timeout(Duration::from_secs(10), held).await.unwrap().unwrap();
        assert_eq!(port, bed.ports[1].to_string(), "the held transaction ran on the new primary");
        assert!(waited >= Duration::from_millis(800), "it was held: {waited:?}");
        assert_eq!(server_port(&app).await, bed.ports[1].to_string());
        let status = channel(&bed, &running, "GET", STATUS_PATH, Vec::new()).await;
        assert_eq!((status.state, status.resumes_by_itself_in_ms), (PauseState::Running, None));
    });
}

#[test]
fn a_pause_nobody_resumes_ends_by_itself_after_the_bound() {
    let bed = two_servers();
    runtime().block_on(async {
        let (running, pooler_port) = start_pooler(&bed, 2).await;
        let app = connect_when_up(&bed, pooler_port).await;
        server_port(&app).await;
        let paused_at = Instant::now();
        assert_eq!(pause(&bed, &running, 2000).await.state, PauseState::Paused);
        // As if the operator crashed here: no RESUME ever comes.
        let port = tokio::time::timeout(Duration::from_secs(10), server_port(&app))
            .await
            .expect("resumed by itself");
        let waited = paused_at.elapsed();
        assert_eq!(port, bed.ports[0].to_string());
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_secs(4),
            "resumed after {waited:?}"
        );
        assert_eq!(channel(&bed, &running, "GET", STATUS_PATH, Vec::new()).await.state, PauseState::Running);
    });
}

#[test]
fn the_control_channel_refuses_a_client_without_a_certificate_of_the_cluster_ca() {
    let bed = two_servers();
    runtime().block_on(async {
        let (running, _) = start_pooler(&bed, 15).await;
        let stranger = CertificateAuthority::generate("stranger").unwrap();
        let leaf = stranger.issue("relevo-operator", &["relevo-operator".to_string()]).unwrap();
        let foreign = ClusterTls {
            ca_pem: bed.ca.pem().cert_pem.clone().into_bytes(),
            cert_pem: leaf.cert_pem.into_bytes(),
            key_pem: leaf.key_pem.into_bytes(),
        };
        let body = serde_json::to_vec(&PauseRequest { wait_ms: 0 }).unwrap();
        let config = foreign.client_config().unwrap();
        let port = running.control_addr.port();
        let refused = exchange(
            config,
            ("127.0.0.1", port),
            "localhost",
            "POST",
            PAUSE_PATH,
            body,
            Duration::from_secs(3),
        )
        .await;
        assert!(refused.is_err(), "{refused:?}");
        let status = channel(&bed, &running, "GET", STATUS_PATH, Vec::new()).await;
        assert_eq!(status.state, PauseState::Running, "nothing was paused");
    });
}
