//! Which Redis a cluster's backup records go to, and with which password.
//!
//! - **Managed:** the `<cluster>-redis` Service on port 6379, with the password under
//!   `password` in the `<cluster>-redis` Secret. The operator reaches it by its Service DNS
//!   name; `relevo backups`, run on a node, by the Service's ClusterIP.
//! - **External:** `spec.redis.external.url`, with the password from `passwordSecret`.
//!
//! The password never goes into a URL or a log line: it is set on the connection settings
//! alone (whose Debug output redacts it).

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use redis::{ConnectionInfo, IntoConnectionInfo, RedisResult};

use crate::crd::PgCluster;
use crate::crd::pgcluster::SecretKeyRef;
use crate::pgcluster::builders::redis::REDIS_PORT;
use crate::pgcluster::builders::secrets::{PASSWORD_KEY, USERNAME_KEY};
use crate::protocol::names;

/// Where a cluster's Redis is, before any lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisTarget {
    Managed {
        /// Name of the Service (and of the Secret holding the password).
        service: String,
        password: SecretKeyRef,
    },
    External {
        url: String,
        password: Option<SecretKeyRef>,
    },
}

/// The Redis of a cluster: external when configured, the managed one otherwise.
pub fn target_of(cluster: &PgCluster) -> RedisTarget {
    match &cluster.spec.redis.external {
        Some(external) => {
            RedisTarget::External { url: external.url.clone(), password: external.password_secret.clone() }
        }
        None => {
            let name = names::redis(&cluster.metadata.name.clone().unwrap_or_default());
            RedisTarget::Managed {
                password: SecretKeyRef { name: name.clone(), key: PASSWORD_KEY.to_string() },
                service: name,
            }
        }
    }
}

impl RedisTarget {
    /// The Secret key holding the password, if any.
    pub fn password(&self) -> Option<&SecretKeyRef> {
        match self {
            RedisTarget::Managed { password, .. } => Some(password),
            RedisTarget::External { password, .. } => password.as_ref(),
        }
    }

    /// The URL to connect to; `managed_host` is how the managed Service is reached from
    /// where the caller runs (its DNS name in the cluster, its ClusterIP on a node).
    pub fn url(&self, managed_host: &str) -> String {
        match self {
            RedisTarget::Managed { .. } => format!("redis://{managed_host}:{REDIS_PORT}/"),
            RedisTarget::External { url, .. } => url.clone(),
        }
    }
}

/// DNS name of the managed Redis Service, from inside the cluster.
pub fn service_dns(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc")
}

/// Whom to authenticate as. No `Debug`: it holds a password.
#[derive(Clone, Default, PartialEq)]
pub struct Credentials {
    /// The managed Redis' user (its Secret names it); `None` is Redis' `default` user, or
    /// whatever user an external URL names.
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Connection settings for `url` with `credentials`.
pub fn connection_info(url: &str, credentials: &Credentials) -> RedisResult<ConnectionInfo> {
    let info = url.into_connection_info()?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &credentials.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &credentials.password {
        settings = settings.set_password(password);
    }
    Ok(info.set_redis_settings(settings))
}

/// Why a cluster's Redis could not be reached. Never contains the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("reading Secret {name}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {name} has no key {key}")]
    MissingPassword { name: String, key: String },
    #[error(
        "Secret {name} is not labelled relevo.dev/redis-credentials=true: relevo sends an external \
         Redis password only from a Secret meant for it"
    )]
    NotOptedIn { name: String },
    #[error("reading Service {name}")]
    Service {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Service {0} has no ClusterIP")]
    NoClusterIp(String),
    #[error("Redis at {url}: {source}")]
    Redis {
        url: String,
        #[source]
        source: redis::RedisError,
    },
}

/// Whether the password of `target` may be read from a Secret with `labels`: the managed
/// Redis' own Secret always; for an external Redis (whose URL any PgCluster editor chooses)
/// only a Secret labelled [`names::LABEL_REDIS_CREDENTIALS`]`=true`, so that no other
/// credential of the namespace can be sent to a host of the editor's choosing.
pub fn may_read_password(
    target: &RedisTarget,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<(), ConnectError> {
    match target {
        RedisTarget::Managed { .. } | RedisTarget::External { password: None, .. } => Ok(()),
        RedisTarget::External { password: Some(reference), .. } => {
            let opted_in = labels
                .and_then(|labels| labels.get(names::LABEL_REDIS_CREDENTIALS))
                .is_some_and(|value| value == "true");
            if opted_in { Ok(()) } else { Err(ConnectError::NotOptedIn { name: reference.name.clone() }) }
        }
    }
}

/// The credentials of `target`, read from its Secret in `namespace`: the password, and for
/// the managed Redis the user its Secret names.
pub async fn read_credentials(
    client: &Client,
    namespace: &str,
    target: &RedisTarget,
) -> Result<Credentials, ConnectError> {
    let Some(reference) = target.password() else { return Ok(Credentials::default()) };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get(&reference.name)
        .await
        .map_err(|source| ConnectError::Secret { name: reference.name.clone(), source })?;
    may_read_password(target, secret.metadata.labels.as_ref())?;
    let value = |key: &str| {
        let from_data =
            secret.data.as_ref().and_then(|d| d.get(key)).map(|v| String::from_utf8_lossy(&v.0).into_owned());
        from_data.or_else(|| secret.string_data.as_ref().and_then(|d| d.get(key)).cloned())
    };
    let password = value(&reference.key).ok_or_else(|| ConnectError::MissingPassword {
        name: reference.name.clone(),
        key: reference.key.clone(),
    })?;
    let username = match target {
        RedisTarget::Managed { .. } => value(USERNAME_KEY),
        RedisTarget::External { .. } => None,
    };
    Ok(Credentials { username, password: Some(password) })
}

/// Connects to the cluster's Redis from the operator (Service DNS name).
pub async fn connect_in_cluster(
    client: &Client,
    cluster: &PgCluster,
) -> Result<redis::aio::MultiplexedConnection, ConnectError> {
    let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    let target = target_of(cluster);
    let host = match &target {
        RedisTarget::Managed { service, .. } => service_dns(service, &namespace),
        RedisTarget::External { .. } => String::new(),
    };
    connect(client, &namespace, &target, &host).await
}

/// Connects to `target`, the managed Service being reached at `managed_host`.
pub async fn connect(
    client: &Client,
    namespace: &str,
    target: &RedisTarget,
    managed_host: &str,
) -> Result<redis::aio::MultiplexedConnection, ConnectError> {
    let credentials = read_credentials(client, namespace, target).await?;
    let url = target.url(managed_host);
    let redis_error = |source| ConnectError::Redis { url: url.clone(), source };
    let info = connection_info(&url, &credentials).map_err(redis_error)?;
    super::redis_io::connect(info).await.map_err(redis_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcluster::test_fixtures::cluster_from_yaml;

    #[test]
    fn managed_redis_is_the_cluster_s_service_and_secret() {
        let target = target_of(&cluster_from_yaml("spec: {}"));
        let password = SecretKeyRef { name: "demo-redis".into(), key: "password".into() };
        assert_eq!(target, RedisTarget::Managed { service: "demo-redis".into(), password: password.clone() });
        assert_eq!(target.url("10.96.0.12"), "redis://10.96.0.12:6379/");
        assert_eq!(target.url(&service_dns("demo-redis", "db")), "redis://demo-redis.db.svc:6379/");
        assert_eq!(target.password(), Some(&password));
    }

    #[test]
    fn external_redis_is_its_url_and_optional_secret() {
        let cluster = cluster_from_yaml(
            "spec: {redis: {external: {url: 'redis://cache:6380/2', passwordSecret: {name: cache-auth}}}}",
        );
        let target = target_of(&cluster);
        assert_eq!(target.url("ignored"), "redis://cache:6380/2");
        assert_eq!(
            target.password(),
            Some(&SecretKeyRef { name: "cache-auth".into(), key: "password".into() })
        );
        let bare = target_of(&cluster_from_yaml("spec: {redis: {external: {url: 'redis://cache:6379/0'}}}"));
        assert_eq!(bare.password(), None);
    }

    #[test]
    fn an_external_password_is_read_only_from_a_secret_labelled_for_it() {
        use std::collections::BTreeMap;
        let external = target_of(&cluster_from_yaml(
            "spec: {redis: {external: {url: 'redis://cache:6379/0', passwordSecret: {name: demo-superuser}}}}",
        ));
        let error = may_read_password(&external, None).unwrap_err();
        assert!(error.to_string().starts_with("Secret demo-superuser is not labelled"), "{error}");
        let wrong = BTreeMap::from([(names::LABEL_REDIS_CREDENTIALS.to_string(), "yes".to_string())]);
        assert!(may_read_password(&external, Some(&wrong)).is_err());
        let labelled = BTreeMap::from([(names::LABEL_REDIS_CREDENTIALS.to_string(), "true".to_string())]);
        assert!(may_read_password(&external, Some(&labelled)).is_ok());
        // The managed Redis' own Secret needs no label.
        assert!(may_read_password(&target_of(&cluster_from_yaml("spec: {}")), None).is_ok());
    }

    #[test]
    fn the_password_is_a_setting_never_part_of_the_url_or_debug_output() {
        let credentials = Credentials { username: Some("relevo".into()), password: Some("s3cret".into()) };
        let info = connection_info("redis://cache:6380/2", &credentials).unwrap();
        assert_eq!(info.redis_settings().password(), Some("s3cret"));
        assert_eq!(info.redis_settings().username(), Some("relevo"));
        assert_eq!(info.redis_settings().db(), 2);
        assert!(!format!("{info:?}").contains("s3cret"), "{info:?}");
        let none = Credentials::default();
        assert_eq!(connection_info("redis://cache:6379/", &none).unwrap().redis_settings().password(), None);
        let named = connection_info("redis://ops@cache:6379/", &none).unwrap();
        assert_eq!(named.redis_settings().username(), Some("ops"), "an external URL may name its user");
        assert!(connection_info("not a url", &none).is_err());
    }
}
