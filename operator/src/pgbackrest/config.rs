//! pgBackRest configuration files, built as text from plain inputs (DESIGN.md section 3).
//!
//! Two files, both for hosts that run `pgbackrest server` in TLS mode:
//! - [`PgHostConfig`], on each instance pod: its own data directory as `pg1`, the repo host as
//!   `repo1-host` (with `repo1-path` naming the path *on the repo host*, which pgBackRest
//!   requires), and asynchronous archiving with a spool directory.
//! - [`RepoHostConfig`], on the per-cluster repo host: the repository on local disk, the
//!   retention, and *every* instance as `pgN-host`, so pgBackRest finds the current primary by
//!   itself after a switchover or failover.
//!
//! Host names are inputs, not built here: the server certificates must carry them as DNS
//! names (pgBackRest 2.45 does not match IP SANs), so whoever makes the certificates also
//! decides the names. One certificate per host serves both as its TLS server certificate and
//! as its client certificate towards the other side; `tls-server-auth` lists the client CNs
//! allowed to use the stanza.

use std::fmt::Write as _;

/// pgBackRest's default TLS server port.
pub const DEFAULT_TLS_PORT: u16 = 8432;

/// Why a configuration could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{option} is empty")]
    Empty { option: String },
    #[error(
        "{option} contains a line break or a character pgBackRest cannot read from its config: {value:?}"
    )]
    Unsafe { option: String, value: String },
    #[error("the repo host lists no pg host")]
    NoPgHost,
}

/// CA, certificate and key, as paths inside the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

/// `log-level-console` and `log-level-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevels {
    pub console: String,
    /// `off` unless a writable `log-path` exists in the pod.
    pub file: String,
}

impl Default for LogLevels {
    fn default() -> Self {
        Self { console: "info".into(), file: "off".into() }
    }
}

/// The TLS server every pgBackRest host runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsServer {
    pub port: u16,
    pub files: TlsFiles,
    /// CNs of the client certificates allowed to use the stanza.
    pub authorized_clients: Vec<String>,
}

/// Configuration of the pgBackRest on an instance pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgHostConfig {
    pub stanza: String,
    /// DNS name of the repo host, as in its server certificate.
    pub repo_host: String,
    /// Port of the repo host's TLS server.
    pub repo_host_port: u16,
    /// Path of the repository on the repo host.
    pub repo_path: String,
    pub spool_path: String,
    pub log: LogLevels,
    /// Serves the repo host's backups; its files also authenticate this pod to the repo host.
    pub server: TlsServer,
    pub pg_path: String,
    pub pg_port: u16,
    pub pg_socket_path: String,
}

/// One instance, as the repo host reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgHost {
    /// DNS name of the instance pod, as in its server certificate.
    pub host: String,
    /// Data directory on that pod.
    pub path: String,
    pub port: u16,
    pub socket_path: Option<String>,
}

/// Configuration of the pgBackRest on the repo host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoHostConfig {
    pub stanza: String,
    /// Local path of the repository (on the repo PVC).
    pub repo_path: String,
    /// `repo1-retention-full`: full backups kept, with their dependants.
    pub retention_full: u32,
    pub log: LogLevels,
    /// Serves archive-push/archive-get from the instances; its files also authenticate the
    /// repo host to them.
    pub server: TlsServer,
    /// Every instance, in order: `pg1`, `pg2`, …
    pub pg_hosts: Vec<PgHost>,
    /// Port of the instances' TLS servers.
    pub pg_host_port: u16,
    /// `repo1-cipher-type=aes-256-cbc`. The passphrase never goes in a file: pgBackRest reads
    /// it from [`CIPHER_PASS_ENV`].
    pub encrypted: bool,
}

/// The cipher of an encrypted repository.
pub const CIPHER_TYPE: &str = "aes-256-cbc";
/// Where pgBackRest reads `repo1-cipher-pass`: kept out of the configuration, which is a
/// ConfigMap, and out of the command line, which `ps` shows.
pub const CIPHER_PASS_ENV: &str = "PGBACKREST_REPO1_CIPHER_PASS";
/// `repo1-cipher-type` for the instances' postgres container, whose pg-host.conf stays the
/// same whether the repository is encrypted or not.
pub const CIPHER_TYPE_ENV: &str = "PGBACKREST_REPO1_CIPHER_TYPE";

/// An INI file being written: sections in order, keys in order.
struct Ini {
    text: String,
    error: Option<ConfigError>,
}

impl Ini {
    fn new() -> Self {
        Self { text: String::new(), error: None }
    }

    fn section(&mut self, name: &str) -> &mut Self {
        self.check("section name", name, &['[', ']', '=']);
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        let _ = writeln!(self.text, "[{name}]");
        self
    }

    fn set(&mut self, key: &str, value: impl ToString) -> &mut Self {
        let value = value.to_string();
        self.check(key, &value, &[]);
        let _ = writeln!(self.text, "{key}={value}");
        self
    }

    /// Records the first bad value. pgBackRest reads one `key=value` per line, so a line
    /// break would smuggle in another option; `forbidden` adds what a given place cannot hold.
    fn check(&mut self, option: &str, value: &str, forbidden: &[char]) {
        if self.error.is_some() {
            return;
        }
        if value.trim().is_empty() {
            self.error = Some(ConfigError::Empty { option: option.into() });
        } else if value.chars().any(|c| c.is_control() || forbidden.contains(&c)) {
            self.error = Some(ConfigError::Unsafe { option: option.into(), value: value.into() });
        }
    }

    fn tls_server(&mut self, stanza: &str, server: &TlsServer) -> &mut Self {
        self.set("tls-server-address", "*")
            .set("tls-server-port", server.port)
            .set("tls-server-ca-file", &server.files.ca_file)
            .set("tls-server-cert-file", &server.files.cert_file)
            .set("tls-server-key-file", &server.files.key_file);
        if server.authorized_clients.is_empty() {
            self.check("tls-server-auth", "", &[]);
        }
        for client in &server.authorized_clients {
            self.check("tls-server-auth", client, &['=', ',', '*']);
            self.set("tls-server-auth", format!("{client}={stanza}"));
        }
        self
    }

    fn finish(self) -> Result<String, ConfigError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.text),
        }
    }
}

impl PgHostConfig {
    /// The `pgbackrest.conf` text.
    pub fn render(&self) -> Result<String, ConfigError> {
        let mut ini = Ini::new();
        ini.section("global")
            .set("repo1-host", &self.repo_host)
            .set("repo1-host-type", "tls")
            .set("repo1-host-port", self.repo_host_port)
            .set("repo1-host-ca-file", &self.server.files.ca_file)
            .set("repo1-host-cert-file", &self.server.files.cert_file)
            .set("repo1-host-key-file", &self.server.files.key_file)
            .set("repo1-path", &self.repo_path)
            .set("archive-async", "y")
            .set("spool-path", &self.spool_path)
            .set("log-level-console", &self.log.console)
            .set("log-level-file", &self.log.file)
            .tls_server(&self.stanza, &self.server);
        ini.section(&self.stanza)
            .set("pg1-path", &self.pg_path)
            .set("pg1-port", self.pg_port)
            .set("pg1-socket-path", &self.pg_socket_path);
        ini.finish()
    }
}

impl RepoHostConfig {
    /// The `pgbackrest.conf` text.
    pub fn render(&self) -> Result<String, ConfigError> {
        if self.pg_hosts.is_empty() {
            return Err(ConfigError::NoPgHost);
        }
        let mut ini = Ini::new();
        ini.section("global")
            .set("repo1-path", &self.repo_path)
            .set("repo1-retention-full", self.retention_full);
        if self.encrypted {
            ini.set("repo1-cipher-type", CIPHER_TYPE);
        }
        ini.set("start-fast", "y")
            .set("log-level-console", &self.log.console)
            .set("log-level-file", &self.log.file)
            .tls_server(&self.stanza, &self.server);
        ini.section(&self.stanza);
        for (i, pg) in self.pg_hosts.iter().enumerate() {
            let n = i + 1;
            ini.set(&format!("pg{n}-host"), &pg.host)
                .set(&format!("pg{n}-host-type"), "tls")
                .set(&format!("pg{n}-host-port"), self.pg_host_port)
                .set(&format!("pg{n}-host-ca-file"), &self.server.files.ca_file)
                .set(&format!("pg{n}-host-cert-file"), &self.server.files.cert_file)
                .set(&format!("pg{n}-host-key-file"), &self.server.files.key_file)
                .set(&format!("pg{n}-path"), &pg.path)
                .set(&format!("pg{n}-port"), pg.port);
            if let Some(socket) = &pg.socket_path {
                ini.set(&format!("pg{n}-socket-path"), socket);
            }
        }
        ini.finish()
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
