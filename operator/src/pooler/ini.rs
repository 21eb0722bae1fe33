//! The files PgBouncer reads, rendered purely: the operator's template of pgbouncer.ini
//! (everything but `[databases]`), the `[databases]` section the pooler owns, and the
//! userlist (the cluster's users plus the pooler's own admin user).

use crate::crd::pooler::PoolerSpec;
use crate::instance::layout;

use super::{ADMIN_USER, POOLER_PORT, RUN_DIR};

/// Name of the userlist PgBouncer reads, in [`RUN_DIR`].
pub const USERLIST_FILE: &str = "userlist.txt";
/// Name of the final pgbouncer.ini, in [`RUN_DIR`].
pub const INI_FILE: &str = "pgbouncer.ini";

/// The `[pgbouncer]` section, from the spec. No password and no target: the pooler adds its
/// target and the admin user's password lives only in the userlist it writes.
pub fn template(spec: &PoolerSpec) -> String {
    let max_db_connections = spec.max_db_connections.unwrap_or(0);
    format!(
        "# Rendered by relevo. The pooler process prepends [databases] (the primary's own\n\
         # address) and writes the userlist; edit spec.pooler instead of this file.\n\
         [pgbouncer]\n\
         listen_addr = 0.0.0.0\n\
         listen_port = {POOLER_PORT}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {RUN_DIR}/{USERLIST_FILE}\n\
         admin_users = {ADMIN_USER}\n\
         pool_mode = {pool_mode}\n\
         default_pool_size = {default_pool_size}\n\
         max_client_conn = {max_client_conn}\n\
         max_db_connections = {max_db_connections}\n\
         server_tls_sslmode = prefer\n\
         ignore_startup_parameters = extra_float_digits\n\
         # A new primary is reached at once: no cached address, no 15 s back-off after the\n\
         # old primary refused a login while it was fenced.\n\
         dns_max_ttl = 1\n\
         server_login_retry = 1\n\
         server_connect_timeout = 5\n\
         # Clients wait in the queue while a switchover holds them; longer than any pause.\n\
         query_wait_timeout = 120\n\
         log_connections = 0\n\
         log_disconnections = 0\n\
         stats_period = 60\n",
        pool_mode = spec.pool_mode.as_ini(),
        default_pool_size = spec.default_pool_size,
        max_client_conn = spec.max_client_conn,
    )
}

/// The final pgbouncer.ini: the `[databases]` section sending every database to `target`,
/// then the operator's template. The cluster's databases are named, not only the `*`
/// fallback: PgBouncer re-points a named database at RELOAD, while databases it created
/// from `*` may keep their old host in some versions.
pub fn with_target(template: &str, target: &str, databases: &[String]) -> String {
    let port = layout::POSTGRES_PORT;
    let named: String =
        databases.iter().map(|db| format!("{db} = host={target} port={port} dbname={db}\n")).collect();
    format!("[databases]\n{named}* = host={target} port={port}\n\n{template}")
}

/// A database name PgBouncer can take unquoted: the CRD's plain SQL identifiers.
pub fn valid_database(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A host name or IP address PgBouncer can take as `host=` without quoting: letters,
/// digits, dots, hyphens and colons (IPv6). Anything else could inject connection options.
pub fn valid_target(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
}

/// PgBouncer's auth_file format: one `"user" "password"` line per user, `"` doubled.
pub fn userlist(users: &[(String, String)]) -> String {
    users.iter().map(|(user, password)| format!("{} {}\n", quote(user), quote(password))).collect()
}

/// The userlist PgBouncer reads: the cluster's users from the Secret, then the admin user.
/// A line of the Secret that names the admin user is dropped, so it cannot be taken over.
pub fn userlist_with_admin(from_secret: &str, admin_password: &str) -> String {
    let admin = quote(ADMIN_USER);
    let mut out: String = from_secret
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with(&admin))
        .map(|line| format!("{line}\n"))
        .collect();
    out.push_str(&userlist(&[(ADMIN_USER.to_string(), admin_password.to_string())]));
    out
}

fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::pooler::PoolMode;

    #[test]
    fn template_carries_the_spec_and_no_databases() {
        let spec = PoolerSpec {
            pool_mode: PoolMode::Session,
            default_pool_size: 7,
            max_client_conn: 300,
            max_db_connections: Some(50),
            ..PoolerSpec::default()
        };
        let ini = template(&spec);
        for line in [
            "pool_mode = session",
            "default_pool_size = 7",
            "max_client_conn = 300",
            "max_db_connections = 50",
            "auth_type = scram-sha-256",
            "auth_file = /run/relevo-pooler/userlist.txt",
            "admin_users = relevo_pooler",
        ] {
            assert!(ini.lines().any(|l| l == line), "missing {line:?} in\n{ini}");
        }
        assert!(!ini.lines().any(|l| l.trim() == "[databases]"), "{ini}");
        assert!(template(&PoolerSpec::default()).lines().any(|l| l == "max_db_connections = 0"));
    }

    #[test]
    fn the_target_comes_first_as_the_wildcard_database() {
        let ini = with_target("[pgbouncer]\nlisten_port = 5432\n", "demo-2-0.demo.db.svc", &["app".into()]);
        assert!(
            ini.starts_with(
                "[databases]\napp = host=demo-2-0.demo.db.svc port=5432 dbname=app\n\
                 * = host=demo-2-0.demo.db.svc port=5432\n"
            ),
            "{ini}"
        );
        assert!(valid_database("app_2") && !valid_database("App") && !valid_database("a b"));
        assert!(ini.ends_with("[pgbouncer]\nlisten_port = 5432\n"));
    }

    #[test]
    fn targets_that_could_inject_options_are_refused() {
        for good in ["demo-2-0.demo.db.svc", "10.244.0.12", "fd00::1"] {
            assert!(valid_target(good), "{good}");
        }
        for bad in ["", "a b", "host password=x", "a\nb", "x'y", &"a".repeat(254)] {
            assert!(!valid_target(bad), "{bad:?}");
        }
    }

    #[test]
    fn userlist_quotes_and_appends_the_admin_last() {
        assert_eq!(userlist(&[("app".into(), "p\"w".into())]), "\"app\" \"p\"\"w\"\n");
        let merged = userlist_with_admin("\"app\" \"pw\"\n\"relevo_pooler\" \"stolen\"\n\n", "fresh");
        assert_eq!(merged, "\"app\" \"pw\"\n\"relevo_pooler\" \"fresh\"\n");
    }
}
