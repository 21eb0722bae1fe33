use k8s_openapi::jiff::Timestamp;

use super::*;

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(1_760_000_000 + seconds).unwrap())
}

fn primary(name: &str, timeline: i64, lsn: u64) -> InstanceObservation {
    InstanceObservation {
        name: name.into(),
        pod_ready: true,
        postgres: Some(PostgresState { in_recovery: false, timeline: Some(timeline), lsn: Some(Lsn(lsn)) }),
    }
}

fn standby(name: &str, lsn: u64) -> InstanceObservation {
    InstanceObservation {
        name: name.into(),
        pod_ready: true,
        postgres: Some(PostgresState { in_recovery: true, timeline: Some(1), lsn: Some(Lsn(lsn)) }),
    }
}

fn unreachable(name: &str) -> InstanceObservation {
    InstanceObservation { name: name.into(), pod_ready: false, postgres: None }
}

fn observe(previous: &PgClusterStatus, desired: i32, instances: Vec<InstanceObservation>) -> ComputedStatus {
    observe_archiving(previous, desired, instances, vec![])
}

fn observe_archiving(
    previous: &PgClusterStatus,
    desired: i32,
    instances: Vec<InstanceObservation>,
    archivers: Vec<ArchiverObservation>,
) -> ComputedStatus {
    compute(&Observation {
        cluster: "demo",
        generation: Some(4),
        desired_instances: desired,
        instances,
        problem: None,
        archivers,
        senders: vec![],
        synchronous: None,
        troubles: Vec::new(),
        previous,
        now: at(100),
    })
}

fn archiver(instance: &str, failing: bool) -> ArchiverObservation {
    ArchiverObservation {
        instance: instance.into(),
        state: ArchiverState {
            archived_count: 7,
            last_archived_wal: Some("000000010000000000000007".into()),
            last_archived_time: Some("2025-10-07T12:00:00Z".into()),
            failed_count: 2,
            last_failed_wal: Some("000000010000000000000008".into()),
            last_failed_time: Some(
                if failing { "2025-10-07T12:05:00Z" } else { "2025-10-07T11:00:00Z" }.into(),
            ),
            failing,
        },
    }
}

fn condition<'a>(status: &'a PgClusterStatus, kind: &str) -> &'a Condition {
    status.conditions.iter().find(|c| c.type_ == kind).unwrap()
}

fn label(computed: &ComputedStatus, instance: &str) -> RoleLabelChange {
    computed.role_labels.iter().find(|(name, _)| name == instance).unwrap().1
}

/// An established cluster (it has been Ready before) whose primary is `name`.
fn with_primary(name: &str) -> PgClusterStatus {
    PgClusterStatus {
        current_primary: Some(name.into()),
        phase: Some(ClusterPhase::Ready),
        ..PgClusterStatus::default()
    }
}

#[test]
fn healthy_pair_is_ready_with_lag_measured_from_the_primary() {
    let computed =
        observe(&with_primary("demo-1"), 2, vec![standby("demo-2", 900), primary("demo-1", 1, 1000)]);
    let status = &computed.status;
    assert_eq!(status.current_primary.as_deref(), Some("demo-1"));
    assert_eq!(status.phase, Some(ClusterPhase::Ready));
    assert_eq!(condition(status, "Ready").status, "True");
    assert_eq!(condition(status, "Degraded").status, "False");
    assert_eq!(condition(status, "Progressing").status, "False");
    assert_eq!(condition(status, "Ready").observed_generation, Some(4));
    let names: Vec<_> = status.instances.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["demo-1", "demo-2"], "instances are listed in ordinal order");
    assert_eq!(status.instances[1].replay_lag_bytes, Some(100));
    assert_eq!(status.instances[1].role, InstanceRole::Standby);
    assert_eq!(status.instances[0].lsn.as_deref(), Some("0/3E8"));
    assert_eq!(label(&computed, "demo-1"), RoleLabelChange::Set(RoleLabel::Primary));
    assert_eq!(label(&computed, "demo-2"), RoleLabelChange::Set(RoleLabel::Standby));
}

#[test]
fn first_primary_is_found_during_bootstrap() {
    let computed =
        observe(&PgClusterStatus::default(), 2, vec![primary("demo-1", 1, 10), unreachable("demo-2")]);
    assert_eq!(computed.status.current_primary.as_deref(), Some("demo-1"));
    // A standby still cloning is progress, not degradation, while the cluster is created.
    assert_eq!(computed.status.phase, Some(ClusterPhase::Initializing));
    let degraded = condition(&computed.status, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("False", "Bootstrapping"));
    let progressing = condition(&computed.status, "Progressing");
    assert_eq!((progressing.status.as_str(), progressing.reason.as_str()), ("True", "Bootstrapping"));
    assert!(progressing.message.contains("demo-2"), "{}", progressing.message);
    assert_eq!(condition(&computed.status, "Ready").status, "False");
    assert_eq!(label(&computed, "demo-2"), RoleLabelChange::Keep);
    // Once it has been created, the same standby down is degradation.
    let later = observe(&with_primary("demo-1"), 2, vec![primary("demo-1", 1, 10), unreachable("demo-2")]);
    assert_eq!(condition(&later.status, "Degraded").reason, "InstancesNotReady");
    assert_eq!(later.status.phase, Some(ClusterPhase::Degraded));
}

#[test]
fn a_new_cluster_is_ready_once_every_instance_is_and_archiving_works() {
    let both = || vec![primary("demo-1", 1, 10), standby("demo-2", 10)];
    let fresh = PgClusterStatus::default();
    let ready = observe(&fresh, 2, both());
    assert_eq!(ready.status.phase, Some(ClusterPhase::Ready));
    // Archiving fails until the stanza exists: still being created, not Degraded.
    let waiting = observe_archiving(&fresh, 2, both(), vec![archiver("demo-1", true)]);
    assert_eq!(waiting.status.phase, Some(ClusterPhase::Initializing));
    assert_eq!(condition(&waiting.status, "Degraded").status, "False");
    assert_eq!(condition(&waiting.status, "Ready").status, "True");
}

#[test]
fn nothing_yet_is_pending_then_initializing() {
    let empty = observe(&PgClusterStatus::default(), 2, vec![]);
    assert_eq!(empty.status.phase, Some(ClusterPhase::Pending));
    assert_eq!(condition(&empty.status, "Progressing").reason, "Bootstrapping");
    assert_eq!(condition(&empty.status, "Degraded").status, "False", "bootstrapping is not degraded");

    let starting = observe(&PgClusterStatus::default(), 2, vec![unreachable("demo-1")]);
    assert_eq!(starting.status.phase, Some(ClusterPhase::Initializing));
    assert_eq!(starting.status.current_primary, None);
}

#[test]
fn split_brain_keeps_only_the_known_primary_labelled() {
    let computed =
        observe(&with_primary("demo-1"), 2, vec![primary("demo-1", 1, 50), primary("demo-2", 2, 60)]);
    assert_eq!(label(&computed, "demo-1"), RoleLabelChange::Set(RoleLabel::Primary));
    assert_eq!(label(&computed, "demo-2"), RoleLabelChange::Remove);
    let primaries =
        computed.role_labels.iter().filter(|(_, c)| *c == RoleLabelChange::Set(RoleLabel::Primary));
    assert_eq!(primaries.count(), 1);
    let degraded = condition(&computed.status, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "SplitBrain"));
    assert!(degraded.message.contains("demo-1") && degraded.message.contains("demo-2"));
    assert_eq!(condition(&computed.status, "Ready").status, "False");
    assert_eq!(computed.status.phase, Some(ClusterPhase::Degraded));
}

#[test]
fn split_brain_without_a_known_primary_prefers_the_unique_highest_timeline() {
    let computed =
        observe(&PgClusterStatus::default(), 2, vec![primary("demo-1", 1, 50), primary("demo-2", 2, 60)]);
    assert_eq!(label(&computed, "demo-2"), RoleLabelChange::Set(RoleLabel::Primary));
    assert_eq!(label(&computed, "demo-1"), RoleLabelChange::Remove);
}

#[test]
fn split_brain_on_one_timeline_labels_nobody_primary() {
    let computed =
        observe(&with_primary("demo-3"), 3, vec![primary("demo-1", 2, 50), primary("demo-2", 2, 60)]);
    assert_eq!(label(&computed, "demo-1"), RoleLabelChange::Remove);
    assert_eq!(label(&computed, "demo-2"), RoleLabelChange::Remove);
    assert_eq!(computed.status.phase, Some(ClusterPhase::Unavailable));
    assert_eq!(condition(&computed.status, "Degraded").reason, "SplitBrain");
}

#[test]
fn lost_primary_is_unavailable_and_keeps_its_label_and_name() {
    let computed = observe(&with_primary("demo-1"), 2, vec![unreachable("demo-1"), standby("demo-2", 10)]);
    assert_eq!(computed.status.current_primary.as_deref(), Some("demo-1"));
    assert_eq!(computed.status.phase, Some(ClusterPhase::Unavailable));
    assert_eq!(label(&computed, "demo-1"), RoleLabelChange::Keep);
    let degraded = condition(&computed.status, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "PrimaryUnavailable"));
    assert_eq!(computed.status.instances[1].replay_lag_bytes, None, "no primary LSN to measure against");
}

#[test]
fn scaling_up_is_progressing() {
    let computed = observe(&with_primary("demo-1"), 3, vec![primary("demo-1", 1, 10), standby("demo-2", 10)]);
    let progressing = condition(&computed.status, "Progressing");
    assert_eq!((progressing.status.as_str(), progressing.reason.as_str()), ("True", "Scaling"));
    assert_eq!(condition(&computed.status, "Ready").status, "False");
}

#[test]
fn refused_spec_is_degraded_with_its_reason_while_the_cluster_keeps_serving() {
    let previous = with_primary("demo-1");
    let computed = compute(&Observation {
        cluster: "demo",
        generation: Some(5),
        desired_instances: 2,
        instances: vec![primary("demo-1", 1, 10), standby("demo-2", 10)],
        archivers: vec![],
        senders: vec![],
        synchronous: None,
        troubles: Vec::new(),
        problem: Some(Problem {
            reason: "ParameterOwnedByRelevo",
            message: "spec.postgresql.parameters.wal_level: owned by relevo".into(),
        }),
        previous: &previous,
        now: at(0),
    });
    let degraded = condition(&computed.status, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "ParameterOwnedByRelevo"));
    assert!(degraded.message.contains("wal_level"));
    assert_eq!(degraded.observed_generation, Some(5));
    assert_eq!(condition(&computed.status, "Ready").status, "True");
    assert_eq!(computed.status.phase, Some(ClusterPhase::Degraded));
}

#[test]
fn transition_time_moves_only_when_the_status_changes() {
    let first = observe(&with_primary("demo-1"), 2, vec![primary("demo-1", 1, 10), standby("demo-2", 10)]);
    let mut later_previous = first.status.clone();
    for condition in &mut later_previous.conditions {
        condition.last_transition_time = at(-500);
    }
    let same = observe(&later_previous, 2, vec![primary("demo-1", 1, 20), standby("demo-2", 20)]);
    assert_eq!(condition(&same.status, "Ready").last_transition_time, at(-500));
    assert!(transitions(&later_previous.conditions, &same.status.conditions).is_empty());

    let worse = observe(&later_previous, 2, vec![primary("demo-1", 1, 20), unreachable("demo-2")]);
    assert_eq!(condition(&worse.status, "Ready").last_transition_time, at(100));
    let changed: Vec<_> = transitions(&later_previous.conditions, &worse.status.conditions)
        .iter()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(changed, ["Ready", "Degraded"]);
}

#[test]
fn last_backup_survives_a_status_recomputation() {
    let previous = PgClusterStatus {
        current_primary: Some("demo-1".into()),
        last_backup: Some(crate::crd::pgcluster::LastBackup {
            name: "demo-full-1".into(),
            label: None,
            completion_time: None,
        }),
        ..PgClusterStatus::default()
    };
    let computed = observe(&previous, 1, vec![primary("demo-1", 1, 10)]);
    assert_eq!(computed.status.last_backup, previous.last_backup);
}

#[test]
fn archiving_failures_newer_than_the_last_success_degrade_but_keep_ready() {
    let instances = || vec![primary("demo-1", 1, 1000), standby("demo-2", 1000)];
    let computed = observe_archiving(&with_primary("demo-1"), 2, instances(), vec![archiver("demo-1", true)]);
    let status = &computed.status;
    assert_eq!(condition(status, "Ready").status, "True");
    let degraded = condition(status, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "ArchivingFailing"));
    assert!(degraded.message.contains("from demo-1"), "{}", degraded.message);
    assert!(degraded.message.contains("last failure 000000010000000000000008"), "{}", degraded.message);
    assert_eq!(status.phase, Some(ClusterPhase::Degraded));
    let archiving = status.archiving.as_ref().unwrap();
    assert_eq!(
        (archiving.instance.as_str(), archiving.archived_count, archiving.failed_count),
        ("demo-1", 7, 2)
    );

    // Archiving recovered: an old failure is history.
    let computed = observe_archiving(status, 2, instances(), vec![archiver("demo-1", false)]);
    assert_eq!(condition(&computed.status, "Degraded").reason, "AsExpected");
    assert_eq!(computed.status.phase, Some(ClusterPhase::Ready));
}

#[test]
fn only_the_chosen_primary_reports_archiving_and_a_silent_one_keeps_the_last_figures() {
    // Split brain: demo-1 (the recorded primary) keeps the label; demo-2's archiver is ignored.
    let instances = vec![primary("demo-1", 1, 1000), primary("demo-2", 2, 1000)];
    let computed = observe_archiving(
        &with_primary("demo-1"),
        2,
        instances,
        vec![archiver("demo-2", true), archiver("demo-1", false)],
    );
    assert_eq!(computed.status.archiving.as_ref().unwrap().instance, "demo-1");

    let previous = computed.status;
    let computed = observe_archiving(&previous, 2, vec![unreachable("demo-1"), standby("demo-2", 1)], vec![]);
    assert_eq!(computed.status.archiving, previous.archiving);
}

/// A pair whose primary reports `streaming` in pg_stat_replication.
fn observe_streaming(previous: &PgClusterStatus, streaming: &[&str]) -> ComputedStatus {
    compute(&Observation {
        cluster: "demo",
        generation: Some(4),
        desired_instances: 3,
        instances: vec![primary("demo-1", 1, 1000), standby("demo-2", 900), standby("demo-3", 1000)],
        problem: None,
        archivers: vec![],
        senders: vec![SenderObservation {
            instance: "demo-1".into(),
            streaming: streaming.iter().map(|s| s.to_string()).collect(),
            synchronous: vec![],
        }],
        synchronous: None,
        troubles: Vec::new(),
        previous,
        now: at(100),
    })
}

#[test]
fn ready_means_every_standby_streams_from_the_primary() {
    let computed = observe_streaming(&with_primary("demo-1"), &["demo-2", "demo-3"]);
    assert_eq!(condition(&computed.status, "Ready").status, "True");
    assert_eq!(computed.status.phase, Some(ClusterPhase::Ready));
    assert_eq!(computed.status.instances[1].replay_lag_bytes, Some(100), "lag reported beside it");
}

#[test]
fn a_ready_standby_that_does_not_stream_is_not_ready_and_degraded() {
    let computed = observe_streaming(&with_primary("demo-1"), &["demo-3"]);
    let ready = condition(&computed.status, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "StandbysNotStreaming"));
    assert!(ready.message.contains("demo-1") && ready.message.contains("demo-2"), "{}", ready.message);
    assert!(!ready.message.contains("demo-3"), "{}", ready.message);
    let degraded = condition(&computed.status, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "StandbysNotStreaming"));
    assert_eq!(computed.status.phase, Some(ClusterPhase::Degraded));
    assert_eq!(label(&computed, "demo-2"), RoleLabelChange::Set(RoleLabel::Standby), "still a standby");
}

#[test]
fn a_new_cluster_waits_for_its_standbys_to_stream() {
    let computed = observe_streaming(&PgClusterStatus::default(), &[]);
    let progressing = condition(&computed.status, "Progressing");
    assert_eq!((progressing.status.as_str(), progressing.reason.as_str()), ("True", "Bootstrapping"));
    assert!(progressing.message.contains("not streaming from demo-1"), "{}", progressing.message);
    assert_eq!(condition(&computed.status, "Degraded").status, "False");
    assert_eq!(computed.status.phase, Some(ClusterPhase::Initializing));
}

#[test]
fn without_the_primary_s_replication_view_streaming_is_not_judged() {
    let computed = observe(&with_primary("demo-1"), 2, vec![primary("demo-1", 1, 10), standby("demo-2", 10)]);
    assert_eq!(condition(&computed.status, "Ready").status, "True");
}

/// A streaming trio with synchronous replication; `report`: the primary's synchronous
/// standbys, `None` when the primary did not answer.
fn observe_synchronous(
    previous: &PgClusterStatus,
    spec: &crate::crd::pgcluster::SynchronousSpec,
    report: Option<&[&str]>,
) -> ComputedStatus {
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (primary_seen, senders) = match report {
        Some(report) => (
            primary("demo-1", 1, 1000),
            vec![SenderObservation {
                instance: "demo-1".into(),
                streaming: names(&["demo-2", "demo-3"]),
                synchronous: names(report),
            }],
        ),
        None => (unreachable("demo-1"), vec![]),
    };
    compute(&Observation {
        cluster: "demo",
        generation: Some(4),
        desired_instances: 3,
        instances: vec![primary_seen, standby("demo-2", 900), standby("demo-3", 1000)],
        problem: None,
        archivers: vec![],
        senders,
        synchronous: Some(spec),
        troubles: Vec::new(),
        previous,
        now: at(100),
    })
}

#[test]
fn the_status_reports_the_synchronous_standbys_and_keeps_them_while_the_primary_is_gone() {
    use crate::crd::pgcluster::{DataDurability, SynchronousSpec};
    let spec = SynchronousSpec { number: 1, ..SynchronousSpec::default() };
    let computed = observe_synchronous(&with_primary("demo-1"), &spec, Some(&["demo-3"]));
    let synchronous = computed.status.synchronous.clone().unwrap();
    assert_eq!((synchronous.standbys, synchronous.shortfall), (vec!["demo-3".to_string()], None));
    let sync = condition(&computed.status, CONDITION_SYNCHRONOUS);
    assert_eq!((sync.status.as_str(), sync.reason.as_str()), ("True", "SynchronousStandbysStreaming"));
    assert_eq!(computed.status.phase, Some(ClusterPhase::Ready));

    let gone = observe_synchronous(&computed.status, &spec, None);
    assert_eq!(gone.status.synchronous, computed.status.synchronous, "kept for a failover");

    let two = SynchronousSpec { number: 2, data_durability: DataDurability::Preferred, ..spec };
    let short = observe_synchronous(&with_primary("demo-1"), &two, Some(&["demo-3"]));
    let sync = condition(&short.status, CONDITION_SYNCHRONOUS);
    assert_eq!((sync.status.as_str(), sync.reason.as_str()), ("False", "RunningAsynchronously"));
    let degraded = condition(&short.status, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "SynchronousStandbysMissing"));
    assert!(degraded.message.starts_with("1 of 2 synchronous standbys stream"), "{}", degraded.message);
}

#[test]
fn an_asynchronous_cluster_reports_nothing_synchronous() {
    let computed = observe_streaming(&with_primary("demo-1"), &["demo-2", "demo-3"]);
    assert_eq!(computed.status.synchronous, None);
    assert!(computed.status.conditions.iter().all(|c| c.type_ != CONDITION_SYNCHRONOUS));
}

#[test]
fn a_pod_that_cannot_run_degrades_even_a_cluster_being_created() {
    let fresh = PgClusterStatus::default();
    let not_running = InstanceObservation { name: "demo-1".into(), pod_ready: false, postgres: None };
    let trouble = "pod demo-1-0: not scheduled: storageclass.storage.k8s.io \"nope\" not found";
    let computed = compute(&Observation {
        cluster: "demo",
        generation: Some(1),
        desired_instances: 1,
        instances: vec![not_running],
        problem: None,
        archivers: vec![],
        senders: vec![],
        synchronous: None,
        troubles: vec![trouble.to_string()],
        previous: &fresh,
        now: at(0),
    });
    let degraded = condition(&computed.status, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "InstancesFailing"));
    assert_eq!(degraded.message, trouble);
    // Without the trouble, the same cluster is merely being created.
    let starting = compute(&Observation {
        cluster: "demo",
        generation: Some(1),
        desired_instances: 1,
        instances: vec![InstanceObservation { name: "demo-1".into(), pod_ready: false, postgres: None }],
        problem: None,
        archivers: vec![],
        senders: vec![],
        synchronous: None,
        troubles: vec![],
        previous: &fresh,
        now: at(0),
    });
    assert_eq!(condition(&starting.status, "Degraded").status, "False");
}
