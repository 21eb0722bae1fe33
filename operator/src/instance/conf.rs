//! Files the entrypoint writes, rendered purely so that their exact content is tested.

use crate::protocol::quote::conf_value as quote;

use crate::protocol::layout;

/// Settings that differ per instance, included at the end of the shared postgresql.conf.
/// primary_conninfo names the `-rw` Service, so after a switchover a standby reconnects to
/// the new primary without a restart; recovery_target_timeline 'latest' lets it follow the
/// promotion onto the new timeline. WAL streams over TLS only, from a server whose
/// certificate chains to the cluster CA and names the Service dialled.
pub fn instance_conf(instance: &str, primary_host: &str) -> String {
    let conninfo = format!(
        "host={primary_host} port={port} user={user} passfile={passfile} application_name={instance} \
         sslmode={sslmode} sslrootcert={ca} \
         connect_timeout=5 keepalives_idle=5 keepalives_interval=2 keepalives_count=3",
        port = layout::POSTGRES_PORT,
        user = layout::REPLICATION_USER,
        passfile = layout::PGPASSFILE,
        sslmode = layout::SSLMODE,
        ca = layout::CA_FILE,
    );
    format!(
        "# Written by relevo instance on every start; do not edit.\n\
         cluster_name = {}\n\
         primary_conninfo = {}\n\
         primary_slot_name = {}\n\
         recovery_target_timeline = 'latest'\n",
        quote(instance),
        quote(&conninfo),
        quote(&layout::slot_name(instance)),
    )
}

/// The configuration of a fenced instance: in recovery with no upstream, so it neither writes
/// nor follows anyone while a switchover decides who is primary.
pub fn fenced_instance_conf(instance: &str) -> String {
    format!(
        "# Written by relevo instance: fenced by a switchover; do not edit.\n\
         cluster_name = {}\n\
         primary_conninfo = ''\n\
         primary_slot_name = ''\n\
         recovery_target_timeline = 'latest'\n",
        quote(instance),
    )
}

/// Password file for a rebuild: pg_rewind needs the superuser (it reads files through SQL
/// functions the replication role may not call).
pub fn rebuild_passfile(superuser_password: &str) -> String {
    format!("*:*:*:{}:{}\n", layout::SUPERUSER, escape_pgpass(superuser_password))
}

/// libpq password file with the replication user's password, for any host and database.
pub fn passfile(replication_password: &str) -> String {
    format!("*:*:*:{}:{}\n", layout::REPLICATION_USER, escape_pgpass(replication_password))
}

/// In a pgpass field, `:` and `\` are escaped with a backslash.
fn escape_pgpass(field: &str) -> String {
    field.replace('\\', "\\\\").replace(':', "\\:")
}

/// SQL run once in single-user mode right after initdb. One statement per line: in
/// single-user mode a newline ends a command, and CREATE DATABASE may not share a
/// transaction with anything.
pub fn bootstrap_sql(
    app_database: &str,
    app_owner: &str,
    replication_password: &str,
    app_password: &str,
) -> String {
    let literal = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let identifier = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
    format!(
        "CREATE ROLE {} WITH REPLICATION LOGIN PASSWORD {};\n\
         CREATE ROLE {} WITH LOGIN PASSWORD {};\n\
         CREATE DATABASE {} OWNER {};\n",
        identifier(layout::REPLICATION_USER),
        literal(replication_password),
        identifier(app_owner),
        literal(app_password),
        identifier(app_database),
        identifier(app_owner),
    )
}

/// What pgBackRest's restore wrote into postgresql.auto.conf. Left there, a later fence
/// (standby.signal) of this instance would recover to the backup's target and promote itself.
const RESTORE_SETTINGS: [&str; 5] = [
    "restore_command",
    "recovery_target",
    "recovery_target_time",
    "recovery_target_action",
    "recovery_target_timeline",
];

/// After a restore, once promoted: this cluster's passwords on the roles the backup brought
/// along (the source cluster's relevo made the same roles), and the restore's recovery
/// settings removed.
pub fn after_restore_sql(app_owner: &str, superuser: &str, replication: &str, app: &str) -> String {
    let literal = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let identifier = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
    let mut sql: String =
        [(layout::SUPERUSER, superuser), (layout::REPLICATION_USER, replication), (app_owner, app)]
            .iter()
            .map(|(role, password)| {
                format!("ALTER ROLE {} PASSWORD {};\n", identifier(role), literal(password))
            })
            .collect();
    for setting in RESTORE_SETTINGS {
        sql.push_str(&format!("ALTER SYSTEM RESET {setting};\n"));
    }
    sql.push_str("SELECT pg_reload_conf();\n");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_roles_get_this_clusters_passwords_and_lose_the_recovery_target() {
        let sql = after_restore_sql("shop", "su'pw", "rep", "app");
        assert!(sql.starts_with(
            "ALTER ROLE \"postgres\" PASSWORD 'su''pw';\n\
             ALTER ROLE \"streaming_replica\" PASSWORD 'rep';\n\
             ALTER ROLE \"shop\" PASSWORD 'app';\n"
        ));
        assert!(sql.contains("ALTER SYSTEM RESET restore_command;\n"));
        assert!(sql.contains("ALTER SYSTEM RESET recovery_target_action;\n"));
        assert!(sql.ends_with("SELECT pg_reload_conf();\n"));
    }

    #[test]
    fn standbys_follow_the_rw_service_through_their_own_slot() {
        let conf = instance_conf("demo-2", "demo-rw");
        assert!(conf.contains("cluster_name = 'demo-2'\n"));
        assert!(conf.contains("primary_slot_name = 'relevo_demo_2'\n"));
        assert!(conf.contains("recovery_target_timeline = 'latest'\n"));
        let conninfo = conf.lines().find(|l| l.starts_with("primary_conninfo")).unwrap();
        for part in [
            "host=demo-rw",
            "port=5432",
            "user=streaming_replica",
            "passfile=/run/relevo/pgpass",
            "sslmode=verify-full",
            "sslrootcert=/etc/relevo/tls/ca.crt",
        ] {
            assert!(conninfo.contains(part), "{part} missing from {conninfo}");
        }
        assert!(!conninfo.contains("password="), "the password stays in the passfile");
    }

    #[test]
    fn fenced_instances_follow_nobody() {
        let conf = fenced_instance_conf("demo-1");
        assert!(conf.contains("primary_conninfo = ''\n"));
        assert!(conf.contains("cluster_name = 'demo-1'\n"));
        assert_eq!(rebuild_passfile("a:b"), "*:*:*:postgres:a\\:b\n");
    }

    #[test]
    fn passfile_escapes_separators() {
        assert_eq!(passfile("abc"), "*:*:*:streaming_replica:abc\n");
        assert_eq!(passfile(r"a:b\c"), "*:*:*:streaming_replica:a\\:b\\\\c\n");
    }

    #[test]
    fn bootstrap_sql_quotes_everything() {
        let sql = bootstrap_sql("shop", "shopper", "rep'pw", "app-pw");
        let lines: Vec<_> = sql.lines().collect();
        assert_eq!(lines[0], r#"CREATE ROLE "streaming_replica" WITH REPLICATION LOGIN PASSWORD 'rep''pw';"#);
        assert_eq!(lines[1], r#"CREATE ROLE "shopper" WITH LOGIN PASSWORD 'app-pw';"#);
        assert_eq!(lines[2], r#"CREATE DATABASE "shop" OWNER "shopper";"#);
    }
}
