//! The operator's PostgreSQL client: every connection goes through [`connect`], over TLS
//! verified against the cluster CA and the server's DNS name (libpq's `sslmode=verify-full`;
//! pg_hba.conf has only `hostssl` rules, so nothing else would be let in anyway), and every
//! observation of an instance is the one [`probe`], shared by the PgCluster status and the
//! switchover machine.

pub mod lsn;
pub mod probe;
pub mod tls;

use std::net::IpAddr;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::config::SslMode;

pub use tls::{ClusterCa, TlsError};

use crate::protocol::layout;

/// An error from PostgreSQL or from the way to it.
pub type PgError = Box<dyn std::error::Error + Send + Sync>;

/// Where to connect, as whom.
#[derive(Clone)]
pub struct Target<'a> {
    /// What to dial: a pod IP, or a DNS name.
    pub host: &'a str,
    /// The name the server's certificate must carry when `host` is an IP; a DNS `host` is
    /// verified as itself. Pods are dialled by IP (no DNS lookup, no stale record) and
    /// verified by their pod DNS name.
    pub server_name: Option<&'a str>,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
    pub dbname: &'a str,
    /// Bounds the TCP connect, the TLS handshake and authentication together.
    pub timeout: Duration,
    /// Bounds the TCP connect alone (at most `timeout`).
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("server_name", &self.server_name)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .finish_non_exhaustive()
    }
}

impl Target<'_> {
    fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        match (self.server_name, self.host.parse::<IpAddr>()) {
            // tokio-postgres verifies `host` and dials `hostaddr`.
            (Some(name), Ok(address)) => config.host(name).hostaddr(address),
            _ => config.host(self.host),
        };
        config
            .port(self.port)
            .user(self.user)
            .password(self.password)
            .dbname(self.dbname)
            .application_name("relevo-operator")
            .ssl_mode(SslMode::Require)
            .connect_timeout(self.connect_timeout.min(self.timeout));
        config
    }
}

/// One instance of a cluster as the operator reaches it: dialled by its pod IP, verified as
/// its pod DNS name ([`crate::protocol::names::pod_fqdn`]) against the cluster CA, as the
/// superuser.
#[derive(Clone)]
pub struct Connection<'a> {
    pub host: String,
    pub server_name: String,
    pub superuser_password: &'a str,
    pub ca: &'a ClusterCa,
    pub timeout: Duration,
    /// A shorter bound for the TCP connect alone (`None`: `timeout`).
    pub connect_timeout: Option<Duration>,
}

impl std::fmt::Debug for Connection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Connection<'_> {
    pub fn target(&self) -> Target<'_> {
        Target {
            host: &self.host,
            server_name: Some(&self.server_name),
            port: layout::POSTGRES_PORT as u16,
            user: layout::SUPERUSER,
            password: self.superuser_password,
            dbname: "postgres",
            timeout: self.timeout,
            connect_timeout: self.connect_timeout.unwrap_or(self.timeout),
        }
    }

    /// Opens the connection ([`connect`]).
    pub async fn connect(&self) -> Result<Client, PgError> {
        connect(&self.target(), self.ca).await
    }
}

/// Opens a verified TLS connection; the connection task ends when the client is dropped.
pub async fn connect(target: &Target<'_>, ca: &ClusterCa) -> Result<Client, PgError> {
    let (client, connection) =
        tokio::time::timeout(target.timeout, target.config().connect(ca.connector())).await??;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The certificate the server at `target` presents (DER), verified like a connection.
pub async fn presented_certificate(target: &Target<'_>, ca: &ClusterCa) -> Result<Vec<u8>, PgError> {
    let name = match (target.server_name, target.host.parse::<IpAddr>()) {
        (Some(name), Ok(_)) => name,
        _ => target.host,
    };
    let handshake = async {
        let connect = tokio::net::TcpStream::connect((target.host, target.port));
        let stream = tokio::time::timeout(target.connect_timeout, connect).await??;
        tls::presented_certificate(stream, name, ca).await
    };
    Ok(tokio::time::timeout(target.timeout, handshake).await??)
}

#[cfg(test)]
mod pg_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(host: &'a str, server_name: Option<&'a str>) -> Target<'a> {
        Target {
            host,
            server_name,
            port: 5432,
            user: "postgres",
            password: "s3cret",
            dbname: "postgres",
            timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
        }
    }

    #[test]
    fn pods_are_dialled_by_ip_and_verified_by_name() {
        let config = target("10.244.0.7", Some("demo-1-0.demo.db.svc")).config();
        assert_eq!(config.get_hosts(), [tokio_postgres::config::Host::Tcp("demo-1-0.demo.db.svc".into())]);
        assert_eq!(config.get_hostaddrs(), ["10.244.0.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        let by_name = target("demo-rw.db.svc", None).config();
        assert_eq!(by_name.get_hosts(), [tokio_postgres::config::Host::Tcp("demo-rw.db.svc".into())]);
        assert!(by_name.get_hostaddrs().is_empty());
    }

    #[test]
    fn debug_never_shows_the_password() {
        assert!(!format!("{:?}", target("h", None)).contains("s3cret"));
    }

    #[test]
    fn a_ca_must_be_a_pem_certificate() {
        assert!(matches!(ClusterCa::from_pem(""), Err(TlsError::Empty)));
        assert!(
            ClusterCa::from_pem("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        let ca = crate::pki::CertificateAuthority::generate("demo").unwrap();
        assert!(ClusterCa::from_pem(&ca.pem().cert_pem).is_ok());
    }
}
