//! What the CRD schema cannot judge about a PgCluster. Pure: the controller calls
//! [`validate`] before building anything, and a refusal becomes a Degraded condition that
//! names the field, then waits for the spec to change.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;

use crate::crd::PgCluster;
use crate::crd::pgcluster::{InitdbSpec, RecoverySpec};
use crate::duration;

use super::parameters;

pub use super::spec_error::{MAX_CLUSTER_NAME_LEN, SpecError};

/// A spec that passed validation, with the values the builders need already parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSpec {
    /// postgresql.conf parameters: defaults with the user's values merged over.
    pub parameters: BTreeMap<String, String>,
    /// How long the primary must be unreachable before failover.
    pub failover_delay: Duration,
    /// Application database and owner created at bootstrap (after a restore: the role whose
    /// password relevo sets, the default `app` one).
    pub initdb: InitdbSpec,
    /// Bootstrap from another cluster's backup instead of initdb.
    pub recovery: Option<RecoverySpec>,
}

/// Validates a PgCluster whose schema defaults have been applied by the apiserver.
pub fn validate(cluster: &PgCluster) -> Result<ValidSpec, SpecError> {
    let name = cluster.name_any();
    if name.len() > MAX_CLUSTER_NAME_LEN {
        return Err(SpecError::NameTooLong { name });
    }
    let spec = &cluster.spec;

    // The schema's CEL rules already enforce these; repeating them keeps the builders total
    // even for objects that reach the operator without going through the apiserver (tests,
    // an apiserver that skipped validation ratcheting).
    if spec.redis.managed.is_some() == spec.redis.external.is_some() {
        return Err(SpecError::AmbiguousRedis);
    }
    let (initdb, recovery) = match (&spec.bootstrap.initdb, &spec.bootstrap.recovery) {
        (Some(initdb), None) => (initdb.clone(), None),
        (None, Some(recovery)) if recovery.source == name => return Err(SpecError::RecoveryFromItself),
        (None, Some(recovery)) => (InitdbSpec::default(), Some(recovery.clone())),
        _ => return Err(SpecError::AmbiguousBootstrap),
    };

    let failover_delay = duration::parse(&spec.failover.delay)
        .map_err(|source| SpecError::InvalidDuration { field: "spec.failover.delay", source })?;
    let parameters = parameters::merge(&spec.postgresql.parameters, spec.instances)?;
    if let Some(sync) = spec.replication.as_ref().and_then(|r| r.synchronous.as_ref())
        && !(1..spec.instances).contains(&sync.number)
    {
        return Err(SpecError::SynchronousNumber { number: sync.number, instances: spec.instances });
    }
    Ok(ValidSpec { parameters, failover_delay, initdb, recovery })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcluster::test_fixtures::cluster_from_yaml;

    #[test]
    fn minimal_cluster_is_valid_with_defaults() {
        let cluster = cluster_from_yaml("spec: {}");
        let valid = validate(&cluster).unwrap();
        assert_eq!(valid.failover_delay, Duration::from_secs(5));
        assert_eq!(valid.initdb, InitdbSpec::default());
        assert_eq!(valid.parameters["wal_keep_size"], "512MB");
    }

    #[test]
    fn synchronous_standbys_are_bounded_by_the_standbys() {
        let fits = cluster_from_yaml("spec: {instances: 3, replication: {synchronous: {number: 2}}}");
        assert!(validate(&fits).is_ok());
        let too_many = cluster_from_yaml("spec: {instances: 2, replication: {synchronous: {number: 2}}}");
        let error = validate(&too_many).unwrap_err();
        assert_eq!(error, SpecError::SynchronousNumber { number: 2, instances: 2 });
        assert!(error.to_string().starts_with("spec.replication.synchronous.number: "), "{error}");
        let zero = cluster_from_yaml("spec: {instances: 2, replication: {synchronous: {number: 0}}}");
        assert!(validate(&zero).is_err());
    }

    #[test]
    fn synchronous_standby_names_is_refused_as_a_parameter() {
        let cluster = cluster_from_yaml(
            "spec: {replication: {synchronous: {}}, postgresql: {parameters: {synchronous_standby_names: '*'}}}",
        );
        let error = validate(&cluster).unwrap_err();
        assert_eq!(error.reason(), "ParameterOwnedByRelevo");
        assert!(error.to_string().contains("spec.replication.synchronous"), "{error}");
    }

    #[test]
    fn owned_parameter_names_the_field() {
        let cluster = cluster_from_yaml("spec: {postgresql: {parameters: {wal_level: minimal}}}");
        let error = validate(&cluster).unwrap_err();
        assert_eq!(error.reason(), "ParameterOwnedByRelevo");
        assert!(error.to_string().starts_with("spec.postgresql.parameters.wal_level: owned by relevo"));
    }

    #[test]
    fn wal_senders_follow_the_instance_count() {
        let yaml = "spec: {instances: 5, postgresql: {parameters: {max_wal_senders: '6'}}}";
        let error = validate(&cluster_from_yaml(yaml)).unwrap_err();
        assert_eq!(error, SpecError::TooSmall { parameter: "max_wal_senders".into(), value: 6, minimum: 7 });
    }

    #[test]
    fn bad_failover_delay_is_refused() {
        let error = validate(&cluster_from_yaml("spec: {failover: {delay: soon}}")).unwrap_err();
        assert!(matches!(error, SpecError::InvalidDuration { field: "spec.failover.delay", .. }));
        assert!(error.to_string().starts_with("spec.failover.delay: "));
    }

    #[test]
    fn recovery_from_another_cluster_is_valid_and_from_itself_is_not() {
        let yaml = "spec: {bootstrap: {recovery: {source: other, label: 20251007-120000F}}}";
        let valid = validate(&cluster_from_yaml(yaml)).unwrap();
        let recovery = valid.recovery.unwrap();
        assert_eq!(
            (recovery.source.as_str(), recovery.label.as_deref()),
            ("other", Some("20251007-120000F"))
        );
        assert_eq!(valid.initdb, InitdbSpec::default(), "the app role whose password relevo sets");
        let own = cluster_from_yaml("spec: {bootstrap: {recovery: {source: demo}}}");
        assert_eq!(own.metadata.name.as_deref(), Some("demo"));
        assert_eq!(validate(&own), Err(SpecError::RecoveryFromItself));
    }

    #[test]
    fn both_redis_kinds_are_refused() {
        let yaml = "spec: {redis: {managed: {}, external: {url: 'redis://r:6379'}}}";
        assert_eq!(validate(&cluster_from_yaml(yaml)), Err(SpecError::AmbiguousRedis));
    }

    #[test]
    fn long_names_are_refused() {
        let mut cluster = cluster_from_yaml("spec: {}");
        cluster.metadata.name = Some("a".repeat(MAX_CLUSTER_NAME_LEN + 1));
        assert!(matches!(validate(&cluster), Err(SpecError::NameTooLong { .. })));
        cluster.metadata.name = Some("a".repeat(MAX_CLUSTER_NAME_LEN));
        assert!(validate(&cluster).is_ok());
    }
}
