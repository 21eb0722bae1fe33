//! postgresql.conf policy: the settings relevo owns, the safe defaults users may override,
//! and the rendering of the merged result.

use std::collections::BTreeMap;

use crate::protocol::layout;
use crate::protocol::quote::conf_value;

use super::spec_error::SpecError;
use super::topology::SPARE_WAL_SENDERS;

/// Settings replication, failover, backups or the pod layout depend on. A user value would
/// break something relevo promises, so each is refused with the reason.
const OWNED: &[(&str, &str)] = &[
    ("archive_command", "WAL archiving to pgBackRest is managed by relevo"),
    ("archive_library", "WAL archiving to pgBackRest is managed by relevo"),
    ("archive_mode", "WAL archiving to pgBackRest is managed by relevo"),
    ("archive_cleanup_command", "recovery is managed by relevo"),
    ("cluster_name", "relevo sets it to the instance name"),
    ("config_file", "relevo sets the file layout of the instance"),
    ("data_directory", "relevo sets the file layout of the instance"),
    ("external_pid_file", "relevo sets the file layout of the instance"),
    ("full_page_writes", "pg_rewind needs it on"),
    ("hba_file", "relevo renders pg_hba.conf"),
    ("hot_standby", "standbys must serve reads and report their state"),
    ("ident_file", "relevo sets the file layout of the instance"),
    ("include", "an include would bypass this validation"),
    ("include_dir", "an include would bypass this validation"),
    ("include_if_exists", "an include would bypass this validation"),
    ("listen_addresses", "Services, probes and the operator connect over the pod network"),
    ("logging_collector", "logs go to stderr, where kubectl logs finds them"),
    ("password_encryption", "generated passwords are stored as SCRAM"),
    ("port", "Services, probes and the operator use port 5432"),
    ("primary_conninfo", "relevo points standbys at the current primary"),
    ("primary_slot_name", "relevo gives each standby its own replication slot"),
    ("promote_trigger_file", "promotion is done by the operator with pg_promote()"),
    ("recovery_end_command", "recovery is managed by relevo"),
    ("recovery_min_apply_delay", "a delayed standby would stall every planned switchover"),
    ("restore_command", "recovery is managed by relevo"),
    ("ssl", "TLS is managed by relevo"),
    ("ssl_ca_file", "TLS is managed by relevo"),
    ("ssl_cert_file", "TLS is managed by relevo"),
    ("ssl_crl_dir", "TLS is managed by relevo"),
    ("ssl_crl_file", "TLS is managed by relevo"),
    ("ssl_key_file", "TLS is managed by relevo"),
    ("ssl_passphrase_command", "TLS is managed by relevo"),
    (
        "synchronous_standby_names",
        "set spec.replication.synchronous instead; relevo writes it from the instance names",
    ),
    ("unix_socket_directories", "probes and the entrypoint use the socket in /var/run/postgresql"),
    ("unix_socket_group", "probes and the entrypoint use the socket in /var/run/postgresql"),
    ("unix_socket_permissions", "probes and the entrypoint use the socket in /var/run/postgresql"),
    ("wal_level", "streaming replication and pgBackRest need replica"),
    ("wal_log_hints", "pg_rewind needs it on"),
];

/// Settings whose value must leave room for every standby plus pg_basebackup and backups.
const PER_STANDBY_CAPACITY: &[&str] = &["max_replication_slots", "max_wal_senders"];

/// Longest value accepted; postgresql.conf has no real limit, but nothing sane needs more.
const MAX_VALUE_LEN: usize = 4096;

/// Defaults relevo recommends; users may override each.
fn defaults(instances: i32) -> BTreeMap<String, String> {
    let senders = (i64::from(instances) + SPARE_WAL_SENDERS).max(10);
    [
        // Standbys tell the primary which rows their queries still need, so long reads on a
        // standby are not cancelled by vacuum on the primary.
        ("hot_standby_feedback", "on".to_string()),
        ("max_replication_slots", senders.to_string()),
        ("max_wal_senders", senders.to_string()),
        // Keeps WAL for a standby that restarts without its slot yet (e.g. right after a
        // switchover, before slots are re-created on the new primary).
        ("wal_keep_size", "512MB".to_string()),
        // A dead peer is noticed in seconds, not the default minute, which failover needs.
        ("wal_receiver_timeout", "10s".to_string()),
        ("wal_sender_timeout", "10s".to_string()),
        ("log_line_prefix", "%m [%p] %q%u@%d ".to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

/// WAL archiving to the cluster's pgBackRest repository: on wherever an instance is primary
/// (standbys do not archive with `on`), through the instance's pg-host.conf. `archive_command`
/// comes from `pgbackrest::command`, so it names the same config and stanza as everything else.
pub fn archive_settings(archive_command: &str) -> [(&'static str, String); 2] {
    [("archive_mode", "on".to_string()), ("archive_command", archive_command.to_string())]
}

/// Settings rendered after every user parameter, in this order. Fixed, never overridable.
fn owned_values(archive_command: &str) -> Vec<(&'static str, String)> {
    let mut values = vec![
        ("listen_addresses", "*".to_string()),
        ("port", layout::POSTGRES_PORT.to_string()),
        ("unix_socket_directories", layout::SOCKET_DIR.to_string()),
        ("hba_file", layout::PG_HBA_CONF.to_string()),
        ("wal_level", "replica".to_string()),
        ("hot_standby", "on".to_string()),
        ("wal_log_hints", "on".to_string()),
        ("full_page_writes", "on".to_string()),
        ("password_encryption", "scram-sha-256".to_string()),
        ("logging_collector", "off".to_string()),
        // pg_hba.conf admits TCP clients over TLS only (hostssl).
        ("ssl", "on".to_string()),
        ("ssl_cert_file", layout::SERVER_CERT_FILE.to_string()),
        ("ssl_key_file", layout::SERVER_KEY_FILE.to_string()),
        ("ssl_ca_file", layout::CA_FILE.to_string()),
    ];
    values.extend(archive_settings(archive_command));
    values
}

/// Checks the user's parameters and merges them over the defaults.
pub fn merge(user: &BTreeMap<String, String>, instances: i32) -> Result<BTreeMap<String, String>, SpecError> {
    let mut merged = defaults(instances);
    for (name, value) in user {
        check(name, value, instances)?;
        merged.insert(name.clone(), value.clone());
    }
    Ok(merged)
}

fn check(name: &str, value: &str, instances: i32) -> Result<(), SpecError> {
    let valid_name = name.split('.').count() <= 2
        && name.split('.').all(|part| {
            part.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if !valid_name {
        return Err(SpecError::InvalidParameterName { parameter: name.to_string() });
    }
    if let Some((_, reason)) = OWNED.iter().find(|(owned, _)| *owned == name) {
        return Err(SpecError::OwnedParameter { parameter: name.to_string(), reason });
    }
    if name.starts_with("recovery_target") {
        return Err(SpecError::OwnedParameter {
            parameter: name.to_string(),
            reason: "point-in-time recovery is set through spec.bootstrap.recovery",
        });
    }
    if value.chars().any(char::is_control) || value.len() > MAX_VALUE_LEN {
        return Err(SpecError::InvalidParameterValue {
            parameter: name.to_string(),
            reason: "values must be a single line of at most 4096 characters",
        });
    }
    if PER_STANDBY_CAPACITY.contains(&name) {
        let minimum = i64::from(instances) + SPARE_WAL_SENDERS;
        match value.trim().parse::<i64>() {
            Ok(n) if n >= minimum => {}
            Ok(n) => return Err(SpecError::TooSmall { parameter: name.to_string(), value: n, minimum }),
            Err(_) => {
                return Err(SpecError::InvalidParameterValue {
                    parameter: name.to_string(),
                    reason: "must be an integer",
                });
            }
        }
    }
    Ok(())
}

/// postgresql.conf: user-facing settings first (sorted, so the ConfigMap is stable across
/// reconciles), then the owned ones, then the per-instance include.
pub fn render_postgresql_conf(merged: &BTreeMap<String, String>, archive_command: &str) -> String {
    let mut conf =
        String::from("# Rendered by relevo from the PgCluster; edit spec.postgresql.parameters instead.\n");
    for (name, value) in merged {
        conf.push_str(&format!("{name} = {}\n", conf_value(value)));
    }
    conf.push_str("\n# Owned by relevo: replication, failover and the pod layout depend on these.\n");
    for (name, value) in owned_values(archive_command) {
        conf.push_str(&format!("{name} = {}\n", conf_value(&value)));
    }
    conf.push_str("\n# cluster_name, primary_conninfo and primary_slot_name of this instance.\n");
    conf.push_str(&format!("include_if_exists = {}\n", conf_value(layout::INSTANCE_CONF)));
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn user_values_override_defaults() {
        let merged = merge(&params(&[("wal_keep_size", "1GB"), ("max_connections", "200")]), 2).unwrap();
        assert_eq!(merged["wal_keep_size"], "1GB");
        assert_eq!(merged["max_connections"], "200");
        assert_eq!(merged["hot_standby_feedback"], "on");
    }

    #[test]
    fn every_owned_parameter_is_refused_with_its_reason() {
        for (name, reason) in OWNED {
            match merge(&params(&[(name, "x")]), 2) {
                Err(SpecError::OwnedParameter { parameter, reason: given }) => {
                    assert_eq!(parameter, *name);
                    assert_eq!(given, *reason);
                }
                other => panic!("{name}: expected OwnedParameter, got {other:?}"),
            }
        }
        assert!(matches!(
            merge(&params(&[("recovery_target_lsn", "0/1")]), 2),
            Err(SpecError::OwnedParameter { .. })
        ));
    }

    #[test]
    fn case_tricks_cannot_bypass_ownership() {
        assert_eq!(
            merge(&params(&[("WAL_LEVEL", "minimal")]), 2),
            Err(SpecError::InvalidParameterName { parameter: "WAL_LEVEL".into() })
        );
    }

    #[test]
    fn extension_parameters_are_allowed() {
        let merged = merge(&params(&[("pg_stat_statements.max", "5000")]), 2).unwrap();
        assert_eq!(merged["pg_stat_statements.max"], "5000");
        assert!(merge(&params(&[("a.b.c", "1")]), 2).is_err());
    }

    #[test]
    fn wal_senders_must_cover_every_instance_plus_spares() {
        assert_eq!(
            merge(&params(&[("max_wal_senders", "4")]), 3),
            Err(SpecError::TooSmall { parameter: "max_wal_senders".into(), value: 4, minimum: 5 })
        );
        assert!(merge(&params(&[("max_wal_senders", "5")]), 3).is_ok());
        assert!(matches!(
            merge(&params(&[("max_replication_slots", "many")]), 3),
            Err(SpecError::InvalidParameterValue { .. })
        ));
        assert_eq!(merge(&params(&[]), 9).unwrap()["max_wal_senders"], "11");
    }

    #[test]
    fn line_breaks_cannot_inject_settings() {
        assert!(matches!(
            merge(&params(&[("work_mem", "4MB'\narchive_command = 'evil")]), 2),
            Err(SpecError::InvalidParameterValue { .. })
        ));
    }

    #[test]
    fn rendered_conf_puts_owned_settings_after_user_ones() {
        let merged = merge(&params(&[("search_path", "'$user', public")]), 2).unwrap();
        let conf = render_postgresql_conf(&merged, "pgbackrest --stanza=demo archive-push %p");
        assert!(conf.contains("search_path = '''$user'', public'\n"));
        assert_eq!(conf_value(r"C:\dir"), r"'C:\\dir'");
        let user = conf.find("wal_keep_size = '512MB'").unwrap();
        let owned = conf.find("wal_level = 'replica'").unwrap();
        let include =
            conf.find("include_if_exists = '/var/lib/postgresql/data/pgdata/relevo-instance.conf'").unwrap();
        assert!(user < owned && owned < include);
        assert!(conf.contains("hba_file = '/etc/relevo/config/pg_hba.conf'"));
        for line in [
            "ssl = 'on'",
            "ssl_cert_file = '/etc/relevo/tls/tls.crt'",
            "ssl_key_file = '/etc/relevo/tls/tls.key'",
            "ssl_ca_file = '/etc/relevo/tls/ca.crt'",
        ] {
            assert!(conf[owned..].lines().any(|l| l == line), "{line:?} missing after user settings");
        }
    }

    #[test]
    fn archiving_is_on_with_the_given_command_after_user_settings() {
        let merged = merge(&params(&[("archive_timeout", "60s")]), 2).unwrap();
        let conf = render_postgresql_conf(&merged, "pgbackrest --stanza=demo archive-push %p");
        assert!(conf.contains("\narchive_mode = 'on'\n"), "{conf}");
        assert!(conf.contains("\narchive_command = 'pgbackrest --stanza=demo archive-push %p'\n"), "{conf}");
        assert!(conf.find("archive_timeout").unwrap() < conf.find("archive_mode").unwrap());
        assert_eq!(conf.matches("archive_mode").count(), 1, "{conf}");
    }
}
