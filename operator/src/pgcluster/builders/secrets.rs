//! Credentials: superuser, replication and application user, plus the managed Redis'.
//!
//! The controller creates these only when absent and never re-applies them: a password that
//! changed under a running cluster would lock the operator and the standbys out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Secret, SecretKeySelector};

use crate::crd::PgClusterSpec;
use crate::pgcluster::passwords::Passwords;
use crate::pgcluster::validate::ValidSpec;
use crate::protocol::layout;
use crate::protocol::names;

use super::Owner;

/// Key of the password in every relevo Secret.
pub const PASSWORD_KEY: &str = "password";
/// Key of the user name in the PostgreSQL Secrets and the managed Redis one (a Redis Secret
/// created before relevo had a Redis user lacks it: its Redis has only `default`).
pub const USERNAME_KEY: &str = "username";

/// An environment variable from `key` of the Secret `secret`: the pod spec names the Secret,
/// never the value. A missing Secret or key stops the container from starting.
pub fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The three PostgreSQL Secrets, and the Redis one when Redis is managed.
pub fn build(owner: &Owner, spec: &PgClusterSpec, valid: &ValidSpec, passwords: &Passwords) -> Vec<Secret> {
    let mut secrets = vec![
        basic_auth(
            owner,
            names::secret_superuser(&owner.name),
            layout::SUPERUSER,
            &passwords.superuser,
            None,
        ),
        basic_auth(
            owner,
            names::secret_replication(&owner.name),
            layout::REPLICATION_USER,
            &passwords.replication,
            None,
        ),
        basic_auth(
            owner,
            names::secret_app(&owner.name),
            &valid.initdb.owner,
            &passwords.app,
            Some(connection_details(owner, &valid.initdb.database)),
        ),
    ];
    if spec.redis.managed.is_some() {
        secrets.push(redis(owner, &passwords.redis));
    }
    secrets
}

/// Where applications connect: the -rw Service, so they follow the primary.
fn connection_details(owner: &Owner, database: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("dbname".to_string(), database.to_string()),
        ("host".to_string(), format!("{}.{}.svc", names::service_rw(&owner.name), owner.namespace)),
        ("port".to_string(), layout::POSTGRES_PORT.to_string()),
    ])
}

fn basic_auth(
    owner: &Owner,
    name: String,
    username: &str,
    password: &str,
    extra: Option<BTreeMap<String, String>>,
) -> Secret {
    let mut data = extra.unwrap_or_default();
    data.insert(USERNAME_KEY.into(), username.into());
    data.insert(PASSWORD_KEY.into(), password.into());
    Secret {
        metadata: owner.child_meta(name, "credentials"),
        type_: Some("kubernetes.io/basic-auth".into()),
        string_data: Some(data),
        ..Secret::default()
    }
}

fn redis(owner: &Owner, password: &str) -> Secret {
    Secret {
        metadata: owner.child_meta(names::redis(&owner.name), "redis"),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([
            (USERNAME_KEY.to_string(), super::redis::REDIS_USER.to_string()),
            (PASSWORD_KEY.to_string(), password.to_string()),
            (super::redis::AUTH_CONF_KEY.to_string(), super::redis::acl_conf(password)),
        ])),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcluster::test_fixtures::cluster_from_yaml;
    use crate::pgcluster::validate::validate;

    fn passwords() -> Passwords {
        Passwords { superuser: "su".into(), replication: "rep".into(), app: "ap".into(), redis: "rd".into() }
    }

    fn build_for(yaml: &str) -> Vec<Secret> {
        let cluster = cluster_from_yaml(yaml);
        let valid = validate(&cluster).unwrap();
        build(&Owner::of(&cluster).unwrap(), &cluster.spec, &valid, &passwords())
    }

    fn data(secret: &Secret) -> &BTreeMap<String, String> {
        secret.string_data.as_ref().unwrap()
    }

    #[test]
    fn one_secret_per_role_with_the_generated_passwords() {
        let secrets = build_for("spec: {bootstrap: {initdb: {database: shop, owner: shopper}}}");
        let names: Vec<_> = secrets.iter().map(|s| s.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(names, ["demo-superuser", "demo-replication", "demo-app", "demo-redis"]);
        assert_eq!(data(&secrets[0])["username"], "postgres");
        assert_eq!(data(&secrets[0])["password"], "su");
        assert_eq!(data(&secrets[1])["username"], "streaming_replica");
        let app = data(&secrets[2]);
        assert_eq!((app["username"].as_str(), app["dbname"].as_str()), ("shopper", "shop"));
        assert_eq!(app["host"], "demo-rw.db.svc");
        assert_eq!(data(&secrets[3])["username"], "relevo");
        let acl = &data(&secrets[3])["auth.conf"];
        assert!(acl.starts_with("user default off"), "{acl}");
        assert!(acl.contains("user relevo on >rd resetkeys ~backup:* ~backups:*"), "{acl}");
    }

    #[test]
    fn external_redis_gets_no_generated_secret() {
        let secrets = build_for("spec: {redis: {external: {url: 'redis://cache:6379/0'}}}");
        assert!(secrets.iter().all(|s| s.metadata.name.as_deref() != Some("demo-redis")));
        assert_eq!(secrets.len(), 3);
    }
}
