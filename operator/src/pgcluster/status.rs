//! From what PostgreSQL reports to the PgCluster status and the pod role labels. Pure: the
//! controller gathers an [`Observation`] (pod readiness, pg_is_in_recovery(), timeline, LSN)
//! and applies what [`compute`] returns.
//!
//! Safety rule: at most one pod ever carries the primary label. When two instances both
//! claim to be primary (split brain), only the one the status already names, or failing
//! that the only one on the highest timeline, keeps it; the others lose the label, so the
//! `-rw` Service never sends writes to two databases.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::common::Condition;
use crate::crd::pgcluster::{
    ArchivingStatus, ClusterPhase, InstanceRole, InstanceStatus, PgClusterStatus, SynchronousSpec,
};
use crate::switchover::Lsn;

use super::synchronous::{self, CONDITION_SYNCHRONOUS};
use crate::protocol::names::{self, RoleLabel};

pub const CONDITION_READY: &str = "Ready";
pub const CONDITION_PROGRESSING: &str = "Progressing";
pub const CONDITION_DEGRADED: &str = "Degraded";

/// What PostgreSQL answered on one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresState {
    /// pg_is_in_recovery().
    pub in_recovery: bool,
    pub timeline: Option<i64>,
    /// The flush LSN of a primary, the replay LSN of a standby ([`crate::postgres::probe`]).
    pub lsn: Option<Lsn>,
}

/// One instance whose StatefulSet exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceObservation {
    /// `<cluster>-<N>`.
    pub name: String,
    /// The pod exists and its Ready condition is True.
    pub pod_ready: bool,
    /// None when PostgreSQL could not be queried.
    pub postgres: Option<PostgresState>,
}

pub use crate::postgres::probe::ArchiverState;

/// [`ArchiverState`] of one instance that answered as a primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiverObservation {
    pub instance: String,
    pub state: ArchiverState,
}

/// A reason for the Degraded condition that the operator itself knows: a spec it refused, or
/// a reconcile stage that failed ([`super::stages`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

/// The standbys streaming from one instance that answered as a primary: pg_stat_replication
/// in state `streaming` (relevo puts the instance name in each standby's application_name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderObservation {
    pub instance: String,
    pub streaming: Vec<String>,
    /// Standbys in sync_state `sync` or `quorum`.
    pub synchronous: Vec<String>,
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub cluster: &'a str,
    pub generation: Option<i64>,
    pub desired_instances: i32,
    pub instances: Vec<InstanceObservation>,
    pub problem: Option<Problem>,
    /// pg_stat_archiver of the instances that answered as primaries; only the chosen
    /// primary's counts.
    pub archivers: Vec<ArchiverObservation>,
    /// pg_stat_replication of the instances that answered as primaries; only the chosen
    /// primary's counts. Without it, streaming is not judged.
    pub senders: Vec<SenderObservation>,
    /// spec.replication.synchronous; `None`: asynchronous, nothing reported.
    pub synchronous: Option<&'a SynchronousSpec>,
    /// Why pods of the instances cannot run, one line each ([`super::pod_trouble`]).
    pub troubles: Vec<String>,
    pub previous: &'a PgClusterStatus,
    pub now: Time,
}

/// What to do with one pod's role label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleLabelChange {
    Set(RoleLabel),
    /// Take the pod out of both role Services.
    Remove,
    /// Not enough information (PostgreSQL did not answer): leave the label as it is, so an
    /// operator that cannot reach a healthy primary does not cut its clients off.
    Keep,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ComputedStatus {
    pub status: PgClusterStatus,
    /// Per instance name.
    pub role_labels: Vec<(String, RoleLabelChange)>,
}

pub fn compute(observation: &Observation<'_>) -> ComputedStatus {
    let mut instances = observation.instances.clone();
    instances.sort_by_key(|i| names::ordinal(observation.cluster, &i.name).unwrap_or(i32::MAX));

    let claimants: Vec<&InstanceObservation> =
        instances.iter().filter(|i| i.postgres.is_some_and(|pg| !pg.in_recovery)).collect();
    let split_brain = claimants.len() > 1;
    let primary = choose_primary(&claimants, observation.previous.current_primary.as_deref());
    let primary_lsn = primary.and_then(|p| p.postgres).and_then(|pg| pg.lsn);

    let role_labels = instances
        .iter()
        .map(|instance| {
            let change = match instance.postgres {
                None => RoleLabelChange::Keep,
                Some(pg) if pg.in_recovery => RoleLabelChange::Set(RoleLabel::Standby),
                Some(_) if Some(instance.name.as_str()) == primary.map(|p| p.name.as_str()) => {
                    RoleLabelChange::Set(RoleLabel::Primary)
                }
                Some(_) => RoleLabelChange::Remove,
            };
            (instance.name.clone(), change)
        })
        .collect();

    let instance_statuses: Vec<InstanceStatus> = instances
        .iter()
        .map(|instance| {
            let pg = instance.postgres;
            let role = match pg {
                None => InstanceRole::Unknown,
                Some(pg) if pg.in_recovery => InstanceRole::Standby,
                Some(_) => InstanceRole::Primary,
            };
            let replay_lag_bytes = match (role, pg.and_then(|pg| pg.lsn), primary_lsn) {
                (InstanceRole::Standby, Some(lsn), Some(primary_lsn)) => {
                    Some(i64::try_from(primary_lsn.bytes_after(lsn)).unwrap_or(i64::MAX))
                }
                _ => None,
            };
            InstanceStatus {
                name: instance.name.clone(),
                role,
                ready: instance.pod_ready && pg.is_some(),
                timeline: pg.and_then(|pg| pg.timeline),
                replay_lag_bytes,
                lsn: pg.and_then(|pg| pg.lsn).map(|lsn| lsn.to_string()),
            }
        })
        .collect();

    let bootstrapped = primary.is_some() || observation.previous.current_primary.is_some();
    let primary_ready = primary.is_some_and(|p| p.pod_ready);
    let not_ready: Vec<&str> =
        instance_statuses.iter().filter(|i| !i.ready).map(|i| i.name.as_str()).collect();
    let count_matches = usize::try_from(observation.desired_instances).ok() == Some(instances.len());
    // Ready means every standby streams from the primary, as the primary itself reports it.
    let sender = primary.and_then(|p| observation.senders.iter().find(|s| s.instance == p.name));
    let not_streaming: Vec<&str> = match sender {
        Some(sender) => instance_statuses
            .iter()
            .filter(|i| i.ready && i.role == InstanceRole::Standby && !sender.streaming.contains(&i.name))
            .map(|i| i.name.as_str())
            .collect(),
        None => Vec::new(),
    };
    let synchronous = observation.synchronous.map(|spec| {
        let report = sender.map(|s| s.synchronous.as_slice());
        (spec, synchronous::status(spec, report, observation.previous.synchronous.as_ref()))
    });
    let all_present = count_matches && not_ready.is_empty();
    let all_ready = primary_ready && !split_brain && all_present && not_streaming.is_empty();
    let not_streaming_message = || {
        let primary = primary.map_or("the primary", |p| p.name.as_str());
        format!("not streaming from {primary}: {}", not_streaming.join(", "))
    };

    let ready = if all_ready {
        (true, "AllInstancesReady", "the primary and every standby are ready".to_string())
    } else if split_brain {
        (false, "SplitBrain", split_brain_message(&claimants))
    } else if !primary_ready {
        (false, "PrimaryUnavailable", "no ready instance accepts writes".to_string())
    } else if all_present {
        (false, "StandbysNotStreaming", not_streaming_message())
    } else {
        (false, "InstancesNotReady", format!("not ready: {}", describe_missing(&not_ready, count_matches)))
    };

    let archiver = primary.and_then(|p| observation.archivers.iter().find(|a| a.instance == p.name));
    let archiving_failing = archiver.is_some_and(|a| a.state.failing);
    // A new cluster is still being created until every instance has been ready and WAL
    // archiving works (the stanza comes after the primary): what is merely not there yet
    // is progress, not degradation.
    let created_before = !matches!(
        observation.previous.phase,
        None | Some(ClusterPhase::Pending) | Some(ClusterPhase::Initializing)
    );
    let creating = !created_before && !split_brain && (!all_ready || archiving_failing);

    let progressing = if !bootstrapped {
        (true, "Bootstrapping", "waiting for the first primary".to_string())
    } else if creating {
        let waiting = if !all_present || !primary_ready {
            format!("not ready yet: {}", describe_missing(&not_ready, count_matches))
        } else if !not_streaming.is_empty() {
            not_streaming_message()
        } else {
            "waiting for the first WAL segment to be archived".to_string()
        };
        (true, "Bootstrapping", format!("creating the cluster; {waiting}"))
    } else if !count_matches {
        (true, "Scaling", format!("{} of {} instances exist", instances.len(), observation.desired_instances))
    } else {
        (false, "Stable", "every desired instance exists".to_string())
    };

    let degraded = if let Some(problem) = &observation.problem {
        (true, problem.reason, problem.message.clone())
    } else if split_brain {
        (true, "SplitBrain", split_brain_message(&claimants))
    } else if !observation.troubles.is_empty() {
        // Before `creating`: a pod that cannot run is no progress, however new the cluster.
        (true, "InstancesFailing", observation.troubles.join("; "))
    } else if creating {
        (false, "Bootstrapping", "the cluster is being created".to_string())
    } else if bootstrapped && !primary_ready {
        (true, "PrimaryUnavailable", "no ready instance accepts writes".to_string())
    } else if bootstrapped && !not_ready.is_empty() {
        (true, "InstancesNotReady", format!("not ready: {}", not_ready.join(", ")))
    } else if bootstrapped && !not_streaming.is_empty() {
        (true, "StandbysNotStreaming", not_streaming_message())
    } else if let Some(shortfall) = synchronous.as_ref().and_then(|(_, s)| s.shortfall.clone()) {
        (true, "SynchronousStandbysMissing", shortfall)
    } else if let Some(archiver) = archiver.filter(|a| a.state.failing) {
        (true, "ArchivingFailing", archiving_failure_message(archiver))
    } else {
        (false, "AsExpected", "nothing needs attention".to_string())
    };

    let phase = if !bootstrapped {
        if instances.is_empty() { ClusterPhase::Pending } else { ClusterPhase::Initializing }
    } else if creating {
        ClusterPhase::Initializing
    } else if !primary_ready {
        ClusterPhase::Unavailable
    } else if all_ready && !degraded.0 {
        ClusterPhase::Ready
    } else {
        ClusterPhase::Degraded
    };

    let synchronous_condition =
        synchronous.as_ref().map(|(spec, s)| (CONDITION_SYNCHRONOUS, synchronous::condition(spec, s)));
    let conditions =
        [(CONDITION_READY, ready), (CONDITION_PROGRESSING, progressing), (CONDITION_DEGRADED, degraded)]
            .into_iter()
            .chain(synchronous_condition)
            .map(|(kind, (status, reason, message))| condition(observation, kind, status, reason, message))
            .collect();

    ComputedStatus {
        status: PgClusterStatus {
            current_primary: primary
                .map(|p| p.name.clone())
                .or_else(|| observation.previous.current_primary.clone()),
            instances: instance_statuses,
            phase: Some(phase),
            conditions,
            last_backup: observation.previous.last_backup.clone(),
            // Kept while the primary does not answer: the last figures are still the best known.
            archiving: archiver.map(archiving_status).or_else(|| observation.previous.archiving.clone()),
            synchronous: synchronous.map(|(_, s)| s),
            observed_generation: observation.generation,
        },
        role_labels,
    }
}

fn archiving_status(archiver: &ArchiverObservation) -> ArchivingStatus {
    let state = &archiver.state;
    ArchivingStatus {
        instance: archiver.instance.clone(),
        archived_count: state.archived_count,
        last_archived_wal: state.last_archived_wal.clone(),
        last_archived_time: state.last_archived_time.clone(),
        failed_count: state.failed_count,
        last_failed_wal: state.last_failed_wal.clone(),
        last_failed_time: state.last_failed_time.clone(),
    }
}

fn archiving_failure_message(archiver: &ArchiverObservation) -> String {
    let state = &archiver.state;
    let or_none = |value: &Option<String>| value.clone().unwrap_or_else(|| "none".to_string());
    format!(
        "WAL archiving from {} to the pgBackRest repository fails: last failure {} at {}, last success {} at {}",
        archiver.instance,
        or_none(&state.last_failed_wal),
        or_none(&state.last_failed_time),
        or_none(&state.last_archived_wal),
        or_none(&state.last_archived_time),
    )
}

/// The one instance allowed to carry the primary label, if any.
fn choose_primary<'a>(
    claimants: &[&'a InstanceObservation],
    previous_primary: Option<&str>,
) -> Option<&'a InstanceObservation> {
    match claimants {
        [] => None,
        [only] => Some(only),
        several => {
            if let Some(previous) = several.iter().find(|i| Some(i.name.as_str()) == previous_primary) {
                return Some(previous);
            }
            let timeline = |i: &&InstanceObservation| i.postgres.and_then(|pg| pg.timeline);
            let highest = several.iter().map(timeline).max().flatten()?;
            let mut on_highest = several.iter().filter(|i| timeline(i) == Some(highest));
            match (on_highest.next(), on_highest.next()) {
                (Some(unique), None) => Some(unique),
                _ => None,
            }
        }
    }
}

fn split_brain_message(claimants: &[&InstanceObservation]) -> String {
    let names: Vec<&str> = claimants.iter().map(|i| i.name.as_str()).collect();
    format!("several instances accept writes: {}", names.join(", "))
}

fn describe_missing(not_ready: &[&str], count_matches: bool) -> String {
    match (not_ready.is_empty(), count_matches) {
        (true, false) => "instances are still being created".to_string(),
        (false, true) => not_ready.join(", "),
        _ => format!("{} (and instances still being created)", not_ready.join(", ")),
    }
}

/// A condition that keeps its lastTransitionTime while its status does not change, so
/// `kubectl describe` shows how long the cluster has been in its state.
fn condition(
    observation: &Observation<'_>,
    kind: &str,
    status: bool,
    reason: &str,
    message: String,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = observation
        .previous
        .conditions
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| observation.now.clone());
    Condition {
        type_: kind.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: observation.generation,
        last_transition_time,
    }
}

/// The previous status with only its Degraded condition set to `problem`: what is written
/// when nothing could be observed, so the last known figures stay and the cause is shown.
pub fn with_problem(
    previous: &PgClusterStatus,
    generation: Option<i64>,
    problem: &Problem,
    now: Time,
) -> PgClusterStatus {
    let observation = Observation {
        cluster: "",
        generation,
        desired_instances: 0,
        instances: Vec::new(),
        problem: None,
        archivers: Vec::new(),
        senders: Vec::new(),
        synchronous: None,
        troubles: Vec::new(),
        previous,
        now,
    };
    let degraded = condition(&observation, CONDITION_DEGRADED, true, problem.reason, problem.message.clone());
    let mut status = previous.clone();
    status.conditions.retain(|c| c.type_ != CONDITION_DEGRADED);
    status.conditions.push(degraded);
    status
}

/// Conditions whose status or reason changed: the transitions worth an Event. Steady
/// states produce none, so a reconcile loop never floods the namespace with Events.
pub fn transitions<'a>(previous: &[Condition], current: &'a [Condition]) -> Vec<&'a Condition> {
    current
        .iter()
        .filter(|c| {
            !previous.iter().any(|p| p.type_ == c.type_ && p.status == c.status && p.reason == c.reason)
        })
        .collect()
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
