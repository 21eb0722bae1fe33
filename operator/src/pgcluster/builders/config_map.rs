//! The cluster's PostgreSQL configuration: postgresql.conf and pg_hba.conf, shared by every
//! instance (what differs per instance is written by the entrypoint; see instance::layout).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use crate::pgbackrest::command::CommandError;
use crate::pgcluster::parameters::render_postgresql_conf;
use crate::pgcluster::validate::ValidSpec;
use crate::protocol::layout;
use crate::protocol::names;

use super::Owner;
use super::pgbackrest;

pub const POSTGRESQL_CONF_KEY: &str = "postgresql.conf";
pub const PG_HBA_CONF_KEY: &str = "pg_hba.conf";

/// Fails only for a cluster name that is no pgBackRest stanza, which the apiserver's naming
/// rules for objects already exclude.
pub fn build(owner: &Owner, valid: &ValidSpec) -> Result<ConfigMap, CommandError> {
    let archive_command = pgbackrest::instance_pgbackrest(&owner.name)?.archive_command()?;
    Ok(ConfigMap {
        metadata: owner.child_meta(names::config_map(&owner.name), "config"),
        data: Some(BTreeMap::from([
            (POSTGRESQL_CONF_KEY.to_string(), render_postgresql_conf(&valid.parameters, &archive_command)),
            (PG_HBA_CONF_KEY.to_string(), pg_hba_conf()),
        ])),
        ..ConfigMap::default()
    })
}

/// First match wins. Over the socket only the postgres OS user gets in, by peer identity. Over
/// the network everything needs TLS and a SCRAM password (`hostssl`; a plain-text TCP
/// connection matches no rule and is refused), and the replication role may replicate but
/// never open a database.
pub(crate) fn pg_hba_conf() -> String {
    let superuser = layout::SUPERUSER;
    let replication = layout::REPLICATION_USER;
    format!(
        "# Rendered by relevo; do not edit.\n\
         # TYPE   DATABASE     USER  ADDRESS  METHOD\n\
         local    all          {superuser}  peer\n\
         local    replication  {superuser}  peer\n\
         hostssl  replication  {replication}  all  scram-sha-256\n\
         hostssl  all          {replication}  all  reject\n\
         hostssl  all          all  all  scram-sha-256\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcluster::test_fixtures::cluster_from_yaml;
    use crate::pgcluster::validate::validate;

    fn build_for(yaml: &str) -> BTreeMap<String, String> {
        let cluster = cluster_from_yaml(yaml);
        let config = build(&Owner::of(&cluster).unwrap(), &validate(&cluster).unwrap()).unwrap();
        assert_eq!(config.metadata.name.as_deref(), Some("demo-config"));
        config.data.unwrap()
    }

    #[test]
    fn postgresql_conf_has_replication_and_rewind_settings_and_user_values() {
        let data = build_for("spec: {postgresql: {parameters: {max_connections: '250'}}}");
        let conf = &data[POSTGRESQL_CONF_KEY];
        for line in [
            "wal_level = 'replica'",
            "hot_standby = 'on'",
            "wal_log_hints = 'on'",
            "hot_standby_feedback = 'on'",
            "listen_addresses = '*'",
            "password_encryption = 'scram-sha-256'",
            "max_connections = '250'",
            "archive_mode = 'on'",
            "archive_command = 'pgbackrest --config=/etc/pgbackrest/conf/pg-host.conf --stanza=demo archive-push %p'",
        ] {
            assert!(conf.lines().any(|l| l == line), "missing {line:?} in\n{conf}");
        }
    }

    #[test]
    fn pg_hba_trusts_nothing_over_the_network() {
        let data = build_for("spec: {}");
        let rules: Vec<Vec<&str>> = data[PG_HBA_CONF_KEY]
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        for rule in &rules {
            let method = rule.last().unwrap();
            assert!(["peer", "scram-sha-256", "reject"].contains(method), "{rule:?}");
            if rule[0] == "local" {
                assert_eq!(rule[2], "postgres", "only the postgres OS user over the socket");
            }
        }
        // TCP only over TLS: no `host` or `hostnossl` rule at all.
        for rule in &rules {
            assert!(["local", "hostssl"].contains(&rule[0]), "{rule:?}");
        }
        let replication_rule =
            rules.iter().position(|r| r[..3] == ["hostssl", "replication", "streaming_replica"]);
        let reject_rule = rules.iter().position(|r| r[..3] == ["hostssl", "all", "streaming_replica"]);
        assert!(replication_rule.unwrap() < reject_rule.unwrap());
    }
}
