//! The files PgBouncer reads, rendered purely: the operator's template of pgbouncer.ini
//! (everything but `[databases]`, and no password), the `[databases]` section the
//! supervisor owns, and the userlist it writes from the mounted Secret.

use crate::crd::pgcluster::PoolerSpec;
use crate::protocol::layout;
use crate::protocol::pooler::POOLER_PORT;

/// Name of the userlist PgBouncer reads, in the run directory.
pub const USERLIST_FILE: &str = "userlist.txt";
/// Name of the final pgbouncer.ini, in the run directory.
pub const INI_FILE: &str = "pgbouncer.ini";
/// PgBouncer admin user of the supervisor alone: reachable only on the Unix socket in the
/// run directory, its password generated at every start and kept in memory and the
/// userlist (mode 0600, a memory emptyDir).
pub const ADMIN_USER: &str = "relevo_pooler";

/// Where the files the template names are, in the pod or in a test.
#[derive(Clone, Debug, PartialEq)]
pub struct Paths {
    pub run_dir: String,
    /// The pooler's certificate and key (PgBouncer's client side).
    pub tls_cert: String,
    pub tls_key: String,
    /// The CA of PostgreSQL's server certificate (verify-full on the server side).
    pub server_ca: String,
    pub listen_port: i32,
}

impl Paths {
    /// The pooler pod's layout.
    pub fn in_pod() -> Self {
        use crate::protocol::pooler::{RUN_DIR, SERVER_CA_DIR, TLS_DIR};
        Self {
            run_dir: RUN_DIR.into(),
            tls_cert: format!("{TLS_DIR}/tls.crt"),
            tls_key: format!("{TLS_DIR}/tls.key"),
            server_ca: format!("{SERVER_CA_DIR}/ca.crt"),
            listen_port: POOLER_PORT,
        }
    }
}

/// The `[pgbouncer]` section, from the spec. No password and no target: the supervisor
/// prepends `[databases]`, and the passwords live only in the userlist it writes.
pub fn template(spec: &PoolerSpec, paths: &Paths) -> String {
    format!(
        "# Rendered by relevo from spec.pooler; the supervisor prepends the databases section (the\n\
         # primary's own address) and writes the userlist.\n\
         [pgbouncer]\n\
         listen_addr = 0.0.0.0\n\
         listen_port = {port}\n\
         unix_socket_dir = {run}\n\
         auth_type = scram-sha-256\n\
         auth_file = {run}/{USERLIST_FILE}\n\
         admin_users = {ADMIN_USER}\n\
         pool_mode = {pool_mode}\n\
         default_pool_size = {default_pool_size}\n\
         max_client_conn = {max_client_conn}\n\
         # Clients over TCP must use TLS; the certificate names <cluster>-pooler.\n\
         client_tls_sslmode = require\n\
         client_tls_cert_file = {cert}\n\
         client_tls_key_file = {key}\n\
         # PostgreSQL is reached with TLS verified against the cluster's CA and the host name.\n\
         server_tls_sslmode = verify-full\n\
         server_tls_ca_file = {ca}\n\
         ignore_startup_parameters = extra_float_digits\n\
         # A new primary is reached at once: no cached address, no long back-off after the\n\
         # old primary refused a login while it was fenced.\n\
         dns_max_ttl = 1\n\
         server_login_retry = 1\n\
         server_connect_timeout = 5\n\
         # Clients wait in the queue while a switchover holds them: longer than any pause.\n\
         query_wait_timeout = 120\n\
         log_connections = 0\n\
         log_disconnections = 0\n\
         stats_period = 60\n",
        port = paths.listen_port,
        run = paths.run_dir,
        cert = paths.tls_cert,
        key = paths.tls_key,
        ca = paths.server_ca,
        pool_mode = spec.pool_mode.as_ini(),
        default_pool_size = spec.default_pool_size,
        max_client_conn = spec.max_client_conn,
    )
}

/// The final pgbouncer.ini: `[databases]` sending every database to `target`, then the
/// template. `target` must have passed [`crate::protocol::pooler::valid_target`]. The
/// cluster's databases are named as well as the `*` fallback: a RELOAD re-points a named
/// database, while one PgBouncer created from `*` may keep its old host.
pub fn with_target(template: &str, target: &str, target_port: u16, databases: &[String]) -> String {
    let named: String =
        databases.iter().map(|db| format!("{db} = host={target} port={target_port} dbname={db}\n")).collect();
    format!("[databases]\n{named}* = host={target} port={target_port}\n\n{template}")
}

/// A database name PgBouncer can take unquoted: the CRD's plain SQL identifiers.
pub fn valid_database(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The port PostgreSQL listens on in the instance pods.
pub fn postgres_port() -> u16 {
    layout::POSTGRES_PORT as u16
}

/// PgBouncer's auth_file: the application user from the Secret, then the admin user. A
/// Secret user named like the admin user is dropped, so it cannot take the console over.
pub fn userlist(user: &str, password: &str, admin_password: &str) -> String {
    let mut out = String::new();
    if user != ADMIN_USER {
        out.push_str(&format!("{} {}\n", quote(user), quote(password)));
    }
    out.push_str(&format!("{} {}\n", quote(ADMIN_USER), quote(admin_password)));
    out
}

fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::pgcluster::PoolMode;

    #[test]
    fn the_template_carries_the_spec_tls_and_no_password_or_target() {
        let spec = PoolerSpec {
            pool_mode: PoolMode::Session,
            default_pool_size: 7,
            max_client_conn: 300,
            ..PoolerSpec::default()
        };
        let ini = template(&spec, &Paths::in_pod());
        for line in [
            "pool_mode = session",
            "default_pool_size = 7",
            "max_client_conn = 300",
            "listen_port = 5432",
            "auth_type = scram-sha-256",
            "auth_file = /run/relevo-pooler/userlist.txt",
            "admin_users = relevo_pooler",
            "client_tls_sslmode = require",
            "client_tls_cert_file = /etc/relevo/pooler-tls/tls.crt",
            "server_tls_sslmode = verify-full",
            "server_tls_ca_file = /etc/relevo/server-ca/ca.crt",
        ] {
            assert!(ini.lines().any(|l| l == line), "missing {line:?} in\n{ini}");
        }
        assert!(!ini.contains("[databases]"), "{ini}");
        assert!(!ini.to_lowercase().contains("password ="), "{ini}");
    }

    #[test]
    fn the_target_is_the_wildcard_database() {
        let ini = with_target("[pgbouncer]\n", "demo-2-0.demo.db.svc", 5432, &["app".into()]);
        assert_eq!(
            ini,
            "[databases]\napp = host=demo-2-0.demo.db.svc port=5432 dbname=app\n\
             * = host=demo-2-0.demo.db.svc port=5432\n\n[pgbouncer]\n"
        );
        assert!(valid_database("app_2") && !valid_database("App") && !valid_database("a b"));
    }

    #[test]
    fn userlist_quotes_and_keeps_the_admin_for_the_supervisor() {
        assert_eq!(userlist("app", "p\"w", "fresh"), "\"app\" \"p\"\"w\"\n\"relevo_pooler\" \"fresh\"\n");
        assert_eq!(userlist(ADMIN_USER, "stolen", "fresh"), "\"relevo_pooler\" \"fresh\"\n");
    }
}
