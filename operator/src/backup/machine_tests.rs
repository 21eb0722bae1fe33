use chrono::TimeZone;

use super::*;
use crate::backup::result::encode;
use crate::crd::BackupType;

fn backup(name: &str, created: &str, status: Option<BackupStatus>) -> Backup {
    let manifest = format!(
        "apiVersion: relevo.dev/v1alpha1\nkind: Backup\n\
         metadata: {{name: {name}, namespace: db, uid: u-{name}, creationTimestamp: '{created}'}}\n\
         spec: {{cluster: pg, type: incr, cycleDay: 3}}\n"
    );
    let mut backup: Backup = serde_saphyr::from_str(&manifest).unwrap();
    backup.status = status;
    backup
}

fn fresh() -> Backup {
    backup("pg-1", "2025-10-07T12:00:00Z", None)
}

fn with(phase: BackupPhase, edit: impl FnOnce(&mut BackupStatus)) -> Backup {
    let mut status = BackupStatus { phase: Some(phase), ..BackupStatus::default() };
    edit(&mut status);
    backup("pg-1", "2025-10-07T12:00:00Z", Some(status))
}

fn ready() -> BackupObservation {
    BackupObservation {
        cluster: ClusterView::Present { current_primary: Some("pg-2".into()), repo_host_ready: true },
        ahead: None,
        switchover: None,
        job: JobView::Absent,
    }
}

fn done() -> BackupDone {
    BackupDone {
        label: "20251007-120000F_20251009-120000I".into(),
        backup_type: BackupType::Incr,
        start: chrono::Utc.with_ymd_and_hms(2025, 10, 9, 12, 0, 0).unwrap(),
        stop: chrono::Utc.with_ymd_and_hms(2025, 10, 9, 12, 0, 3).unwrap(),
        size_bytes: 25_270_000,
        repo_size_bytes: 240_150,
        wal_start: Some("000000020000000000000008".into()),
        wal_stop: Some("000000020000000000000009".into()),
        path: "/pgbackrest/repo/backup/pg/20251007-120000F_20251009-120000I".into(),
        repository: None,
    }
}

fn started() -> Backup {
    with(BackupPhase::Pending, |s| {
        s.primary = Some("pg-2".into());
        s.job = Some("pg-1".into());
    })
}

fn running() -> Backup {
    with(BackupPhase::Running, |s| {
        s.primary = Some("pg-2".into());
        s.job = Some("pg-1".into());
    })
}

#[test]
fn a_new_backup_records_the_primary_and_its_job_before_creating_it() {
    let decision = next(&fresh(), &ready());
    assert_eq!(decision.step, BackupStep::CreateJob);
    let status = decision.status;
    assert_eq!(status.phase, Some(BackupPhase::Pending));
    assert_eq!(status.primary.as_deref(), Some("pg-2"));
    assert_eq!(status.job.as_deref(), Some("pg-1"));
    assert_eq!(status.message.as_deref(), Some("creating Job pg-1; primary pg-2"));
}

#[test]
fn a_missing_cluster_fails_a_pending_backup_with_a_reason() {
    let decision = next(&fresh(), &BackupObservation { cluster: ClusterView::Missing, ..ready() });
    assert_eq!(decision.step, BackupStep::Done);
    assert_eq!(decision.status.phase, Some(BackupPhase::Failed));
    assert_eq!(decision.status.error.as_deref(), Some("PgCluster pg does not exist in this namespace"));
    assert_eq!(decision.status.primary, None, "nothing ran");
}

#[test]
fn pending_backups_wait_with_a_message_and_never_hot_loop() {
    let cases = [
        (
            BackupObservation { ahead: Some("pg-0".into()), ..ready() },
            "waiting for Backup pg-0 of cluster pg to finish",
            QUEUED_INTERVAL,
        ),
        (
            BackupObservation { switchover: Some("pg-switchover-x".into()), ..ready() },
            "waiting for Switchover pg-switchover-x to finish",
            QUEUED_INTERVAL,
        ),
        (
            BackupObservation {
                cluster: ClusterView::Present { current_primary: None, repo_host_ready: true },
                ..ready()
            },
            "waiting for PgCluster pg to have a primary",
            NOT_READY_INTERVAL,
        ),
        (
            BackupObservation {
                cluster: ClusterView::Present {
                    current_primary: Some("pg-1".into()),
                    repo_host_ready: false,
                },
                ..ready()
            },
            "waiting for the repo host pod pg-repo-0 to be Ready",
            NOT_READY_INTERVAL,
        ),
        (
            BackupObservation { job: JobView::NotOurs, ..ready() },
            "Job pg-1 belongs to another object",
            NOT_READY_INTERVAL,
        ),
    ];
    for (observed, message, interval) in cases {
        let decision = next(&fresh(), &observed);
        assert_eq!(decision.step, BackupStep::Wait(interval), "{message}");
        assert!(interval >= Duration::from_secs(1));
        assert_eq!(decision.status.phase, Some(BackupPhase::Pending));
        assert_eq!(decision.status.message.as_deref(), Some(message));
        assert_eq!(
            (decision.status.primary, decision.status.job),
            (None, None),
            "nothing recorded while waiting"
        );
        // The same observation again writes nothing new.
        let again = backup("pg-1", "2025-10-07T12:00:00Z", Some(next(&fresh(), &observed).status));
        assert_eq!(next(&again, &observed).status, again.status.clone().unwrap());
    }
}

#[test]
fn after_a_restart_the_recorded_job_is_created_again_with_the_recorded_primary() {
    // The status was persisted, then the operator stopped before (or while) creating the Job;
    // meanwhile the primary changed and another backup queued: the Job still goes ahead.
    let observed = BackupObservation {
        cluster: ClusterView::Present { current_primary: Some("pg-1".into()), repo_host_ready: false },
        ahead: Some("pg-0".into()),
        ..ready()
    };
    let decision = next(&started(), &observed);
    assert_eq!(decision.step, BackupStep::CreateJob);
    assert_eq!(decision.status.primary.as_deref(), Some("pg-2"));
    // Once the Job is seen, the backup is Running.
    let decision = next(&started(), &BackupObservation { job: JobView::Active, ..ready() });
    assert_eq!(decision.status.phase, Some(BackupPhase::Running));
    assert_eq!(decision.step, BackupStep::Wait(RUNNING_INTERVAL));
    assert_eq!(decision.status.message.as_deref(), Some("pgBackRest is running in Job pg-1 (primary pg-2)"));
}

#[test]
fn a_job_that_already_finished_is_taken_straight_to_its_result() {
    let message = Some(encode(&JobResult::Completed(done())));
    let decision = next(&started(), &BackupObservation { job: JobView::Succeeded { message }, ..ready() });
    assert_eq!(decision.status.phase, Some(BackupPhase::Completed));
    assert_eq!(decision.step, BackupStep::Record);
}

#[test]
fn a_successful_job_completes_the_backup_from_its_result() {
    let message = Some(encode(&JobResult::Completed(done())));
    let decision = next(&running(), &BackupObservation { job: JobView::Succeeded { message }, ..ready() });
    assert_eq!(decision.step, BackupStep::Record);
    let status = decision.status;
    assert_eq!(status.phase, Some(BackupPhase::Completed));
    assert_eq!(status.label.as_deref(), Some("20251007-120000F_20251009-120000I"));
    assert_eq!(status.start_time.as_deref(), Some("2025-10-09T12:00:00Z"));
    assert_eq!(status.stop_time.as_deref(), Some("2025-10-09T12:00:03Z"));
    assert_eq!((status.size_bytes, status.repo_size_bytes), (Some(25_270_000), Some(240_150)));
    assert_eq!(status.size.as_deref(), Some("24.1MiB"));
    assert_eq!(status.wal_start.as_deref(), Some("000000020000000000000008"));
    assert_eq!(status.wal_stop.as_deref(), Some("000000020000000000000009"));
    assert_eq!(status.primary.as_deref(), Some("pg-2"), "the primary recorded before the Job stays");
    assert!(!status.redis_recorded);
    assert_eq!(status.error, None);
}

#[test]
fn failed_jobs_fail_the_backup_with_the_best_reason_available() {
    let from_message = JobView::Failed {
        reason: "BackoffLimitExceeded: Job has reached the specified backoff limit".into(),
        message: Some(encode(&JobResult::Failed {
            error: "pgbackrest backup exited with status 56:\nERROR: [056]".into(),
        })),
        exit: Some("container exited with code 1 (Error)".into()),
    };
    let from_condition = JobView::Failed {
        reason: "DeadlineExceeded: Job was active longer than specified deadline".into(),
        message: None,
        exit: Some("container exited with code 137 (Error)".into()),
    };
    let garbled = JobView::Failed {
        reason: "BackoffLimitExceeded".into(),
        message: Some("exec format error".into()),
        exit: None,
    };
    let cases = [
        (from_message, "pgbackrest backup exited with status 56:\nERROR: [056]"),
        (
            from_condition,
            "Job pg-1 failed: DeadlineExceeded: Job was active longer than specified deadline; container exited with code 137 (Error)",
        ),
        (garbled, "Job pg-1 failed: BackoffLimitExceeded"),
        (JobView::Absent, "Job pg-1 disappeared before it finished"),
        (
            JobView::Succeeded { message: None },
            "Job pg-1 succeeded, but its result cannot be read: the Job left no termination message",
        ),
        (JobView::Succeeded { message: Some(encode(&JobResult::Failed { error: "odd".into() })) }, "odd"),
    ];
    for (job, error) in cases {
        let decision = next(&running(), &BackupObservation { job, ..ready() });
        assert_eq!(decision.step, BackupStep::Done);
        assert_eq!(decision.status.phase, Some(BackupPhase::Failed));
        assert_eq!(decision.status.error.as_deref(), Some(error));
        assert_eq!(decision.status.primary.as_deref(), Some("pg-2"));
    }
}

#[test]
fn a_completed_backup_is_recorded_until_redis_took_it() {
    let completed =
        backup("pg-1", "2025-10-07T12:00:00Z", Some(complete(running().status.unwrap(), &done())));
    assert_eq!(next(&completed, &ready()).step, BackupStep::Record);
    // Redis down: the phase stays Completed, the attempt is counted, the delay grows.
    let (status, retry) = record_failed(completed.status.clone().unwrap(), "Connection refused");
    assert_eq!(status.phase, Some(BackupPhase::Completed));
    assert!(!status.redis_recorded);
    assert_eq!((status.redis_attempts, retry), (1, Duration::from_secs(5)));
    assert_eq!(
        status.message.as_deref(),
        Some("in the repository; Redis record not written (attempt 1, next in 5s): Connection refused")
    );
    let (status, retry) = record_failed(status, "Connection refused");
    assert_eq!((status.redis_attempts, retry), (2, Duration::from_secs(10)));
    // Recorded: done for good.
    let status = recorded(status, "backup:2025-10-09_12-00-00");
    assert!(status.redis_recorded);
    assert_eq!(status.redis_attempts, 0);
    assert_eq!(status.redis_key.as_deref(), Some("backup:2025-10-09_12-00-00"));
    let done = backup("pg-1", "2025-10-07T12:00:00Z", Some(status.clone()));
    assert_eq!(next(&done, &ready()), BackupDecision { status, step: BackupStep::Done });
}

#[test]
fn a_completed_backup_of_a_deleted_cluster_is_not_retried_forever() {
    let completed =
        backup("pg-1", "2025-10-07T12:00:00Z", Some(complete(running().status.unwrap(), &done())));
    let decision = next(&completed, &BackupObservation { cluster: ClusterView::Missing, ..ready() });
    assert_eq!(decision.step, BackupStep::Done);
    assert_eq!(decision.status.phase, Some(BackupPhase::Completed));
    assert!(decision.status.message.unwrap().contains("PgCluster pg no longer exists"));
}

#[test]
fn redis_backoff_is_bounded() {
    let delays: Vec<u64> = (1..=9).map(|n| redis_backoff(n).as_secs()).collect();
    assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(redis_backoff(i32::MAX), REDIS_MAX_RETRY);
    assert_eq!(redis_backoff(0), REDIS_FIRST_RETRY);
}

#[test]
fn terminal_backups_do_nothing() {
    for phase in [BackupPhase::Failed, BackupPhase::Expired] {
        let finished = with(phase, |s| s.error = Some("x".into()));
        let decision = next(
            &finished,
            &BackupObservation { job: JobView::Absent, cluster: ClusterView::Missing, ..ready() },
        );
        assert_eq!(decision, BackupDecision { status: finished.status.unwrap(), step: BackupStep::Done });
    }
}

#[test]
fn backups_of_a_cluster_run_one_at_a_time_in_creation_order() {
    let status = |phase: BackupPhase, job: bool| {
        Some(BackupStatus {
            phase: Some(phase),
            job: job.then(|| "j".to_string()),
            ..BackupStatus::default()
        })
    };
    // Day 3 from the CLI: incr then diff, created in the same second.
    let incr = backup("pg-20251009120000-1", "2025-10-09T12:00:00Z", None);
    let diff = backup("pg-20251009120000-2", "2025-10-09T12:00:00Z", None);
    let all = [diff.clone(), incr.clone()];
    assert_eq!(first_in_line(&incr, &all), None);
    assert_eq!(first_in_line(&diff, &all).as_deref(), Some("pg-20251009120000-1"));

    // Finished ones and other clusters do not count.
    let mut other_cluster = backup("other-0", "2025-10-01T00:00:00Z", None);
    other_cluster.spec.cluster = "other".into();
    let done = backup("pg-0", "2025-10-01T00:00:00Z", status(BackupPhase::Completed, true));
    let failed = backup("pg-00", "2025-10-01T00:00:00Z", status(BackupPhase::Failed, true));
    let all = [other_cluster, done, failed, incr.clone()];
    assert_eq!(first_in_line(&incr, &all), None);

    // A started backup goes first even when it is younger (e.g. its elder was created later
    // by a slow client): two Jobs never run at once.
    let young_running = backup("pg-young", "2025-10-10T00:00:00Z", status(BackupPhase::Running, true));
    assert_eq!(first_in_line(&incr, &[incr.clone(), young_running]).as_deref(), Some("pg-young"));
}
