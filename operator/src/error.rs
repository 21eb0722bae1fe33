//! The operator's error type, and its one classification ([`Error::retry`]) that every
//! controller's error policy follows ([`crate::runtime`]): an invalid spec waits for the user
//! to change it, a write conflict is retried at once, anything else backs off exponentially.

use std::time::Duration;

use crate::pgcluster::validate::SpecError;

/// Everything that can stop a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec asks for something relevo refuses; retrying cannot help until it changes.
    #[error("invalid spec: {0}")]
    InvalidSpec(#[from] SpecError),

    /// A Kubernetes API call failed.
    #[error("kubernetes API call failed while {action}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },

    /// A PostgreSQL instance could not be queried.
    #[error("querying PostgreSQL instance {instance} failed")]
    Postgres {
        instance: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// An object the operator needs is not there (yet).
    #[error("{kind} {name} is missing")]
    Missing { kind: &'static str, name: String },

    /// A watch cache has not completed its first list (the apiserver is slow or refusing).
    #[error("the {kind} watch cache has not synced")]
    CacheNotSynced { kind: &'static str },

    /// The operating system's random source failed while generating passwords.
    #[error("generating passwords failed")]
    Randomness(#[source] getrandom::Error),

    /// A Switchover's status or metadata cannot be read by the state machine.
    #[error("unreadable Switchover: {0}")]
    InvalidSwitchover(#[from] crate::switchover::convert::ConvertError),

    /// The cluster's pgBackRest certificates or configuration could not be made.
    #[error("preparing pgBackRest failed while {action}")]
    Pgbackrest {
        action: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The primary Lease could not be taken or handed over (it changed, or the API failed).
    #[error("primary lease: {0}")]
    Lease(#[from] crate::lease::api::TransferError),

    /// A child's name is taken by an object another controller owns (a cluster named
    /// `demo-rw` next to `demo`): relevo does not take it over.
    #[error("{kind} {name} already exists and is controlled by {owner}; rename this PgCluster")]
    ForeignChild { kind: String, name: String, owner: String },

    /// The cluster's CA or a certificate could not be made or read.
    #[error("certificates failed while {action}")]
    Certificates {
        action: &'static str,
        #[source]
        source: crate::pki::PkiError,
    },

    /// A value could not be serialised into an API object.
    #[error("serialising {what} failed")]
    Serialise {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// What the controller does after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Do not retry on a timer: the watch brings the next spec change.
    WaitForChange,
    /// Another writer changed the object since it was read (HTTP 409): read it again and
    /// retry at once; waiting cannot make the next attempt more likely to succeed.
    AtOnce,
    /// Retry after this delay, doubled by the runtime for each further consecutive failure
    /// of the same object up to [`crate::runtime::backoff::MAX_BACKOFF`].
    After(Duration),
}

/// First retry delay for errors that may clear by themselves (API hiccup, instance
/// restarting); see [`Retry::After`].
pub const TRANSIENT_BACKOFF: Duration = Duration::from_secs(1);

impl Error {
    /// Invalid specs wait for a change instead of hot-looping, conflicts retry at once,
    /// everything else backs off.
    pub fn retry(&self) -> Retry {
        match self {
            Error::InvalidSpec(_) | Error::InvalidSwitchover(_) => Retry::WaitForChange,
            Error::Kube { source, .. } if crate::runtime::conventions::is_conflict(source) => Retry::AtOnce,
            Error::Kube { .. }
            | Error::Postgres { .. }
            | Error::Missing { .. }
            | Error::CacheNotSynced { .. }
            | Error::Randomness(_)
            | Error::Pgbackrest { .. }
            | Error::Lease(_)
            | Error::Certificates { .. }
            | Error::ForeignChild { .. }
            | Error::Serialise { .. } => Retry::After(TRANSIENT_BACKOFF),
        }
    }

    /// A bounded label for metrics: the variant, never the message (object names and error
    /// strings would make the label set unbounded).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::InvalidSwitchover(_) => "invalid_switchover",
            Error::Kube { .. } => "kube",
            Error::Postgres { .. } => "postgres",
            Error::Missing { .. } => "missing",
            Error::CacheNotSynced { .. } => "cache",
            Error::Randomness(_) => "randomness",
            Error::Pgbackrest { .. } => "pgbackrest",
            Error::Lease(_) => "lease",
            Error::Certificates { .. } => "certificates",
            Error::ForeignChild { .. } => "foreign_child",
            Error::Serialise { .. } => "serialise",
        }
    }
}

impl Error {
    /// For `map_err`: a pgBackRest preparation step that failed.
    pub fn pgbackrest<E>(action: &'static str) -> impl FnOnce(E) -> Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |source| Error::Pgbackrest { action, source: Box::new(source) }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcluster::validate::SpecError;

    #[test]
    fn invalid_specs_wait_and_transient_errors_back_off() {
        let invalid = Error::from(SpecError::OwnedParameter {
            parameter: "wal_level".into(),
            reason: "replication needs it",
        });
        assert_eq!(invalid.retry(), Retry::WaitForChange);
        assert_eq!(invalid.metric_label(), "invalid_spec");

        let missing = Error::Missing { kind: "Secret", name: "demo-superuser".into() };
        assert_eq!(missing.retry(), Retry::After(TRANSIENT_BACKOFF));
        assert_eq!(missing.metric_label(), "missing");
    }

    #[test]
    fn conflicts_retry_at_once_and_other_api_errors_back_off() {
        let api = |code: u16| Error::Kube {
            action: "writing the PgCluster status",
            source: kube::Error::Api(kube::core::Status::failure("test", "Test").with_code(code).boxed()),
        };
        assert_eq!(api(409).retry(), Retry::AtOnce);
        assert_eq!(api(500).retry(), Retry::After(TRANSIENT_BACKOFF));
        assert_eq!(api(403).retry(), Retry::After(TRANSIENT_BACKOFF));
    }

    #[test]
    fn source_chain_is_kept() {
        let error = Error::Postgres { instance: "demo-1".into(), source: "connection refused".into() };
        let source = std::error::Error::source(&error).expect("source kept");
        assert_eq!(source.to_string(), "connection refused");
    }
}
