//! Backups as Jobs, and retention expiring what the repository no longer holds.

use super::*;

/// A Backup's life as the operator's ServiceAccount: it waits for its turn behind an older
/// Backup of the cluster, records the primary, gets exactly one Job with the spec a backup
/// needs, and ends Failed when its Job fails (the Job's status is set by hand: no kubelet
/// runs here). A Backup of a cluster that does not exist fails with a reason.
#[tokio::test]
async fn a_backup_runs_as_one_job_and_fails_with_it() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
    use relevo::backup::controller::reconcile as reconcile_backup;
    use relevo::crd::{Backup, BackupPhase};

    let (admin, ns, ctx) = operator_bed("it-backup").await;
    let ns = &ns;
    let merge = PatchParams::default();

    // The cluster, as the PgCluster controller and the kubelet would leave it: a primary in
    // its status, and a Ready repo host pod.
    create_cluster(&admin, ns, "gamma", serde_json::json!({})).await;
    let clusters: Api<PgCluster> = Api::namespaced(admin.clone(), ns);
    let primary = serde_json::json!({"status": {"currentPrimary": "gamma-2"}});
    clusters.patch_status("gamma", &merge, &Patch::Merge(&primary)).await.expect("PgCluster status");
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let account: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap();
    accounts.create(&PostParams::default(), &account).await.expect("default ServiceAccount");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    let repo_host: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "gamma-repo-0", "labels": relevo::protocol::names::cluster_labels("gamma", "repo-host")},
        "spec": {"automountServiceAccountToken": false, "containers": [{"name": "pgbackrest", "image": "relevo/postgres:15-2.45-1"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &repo_host).await.expect("repo host pod");
    let ready = serde_json::json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status("gamma-repo-0", &merge, &Patch::Merge(&ready)).await.expect("repo host Ready");

    let backups: Api<Backup> = Api::namespaced(admin.clone(), ns);
    let create_backup = |name: &str, cluster: &str, backup_type: &str| {
        let backups = backups.clone();
        let backup: Backup = serde_json::from_value(serde_json::json!({
            "apiVersion": "relevo.dev/v1alpha1", "kind": "Backup",
            "metadata": {"name": name},
            "spec": {"cluster": cluster, "type": backup_type, "cycleDay": 3},
        }))
        .unwrap();
        async move { Arc::new(backups.create(&PostParams::default(), &backup).await.expect("Backup accepted")) }
    };
    let incr = create_backup("gamma-20251009120000-1", "gamma", "incr").await;
    let diff = create_backup("gamma-20251009120000-2", "gamma", "diff").await;
    let phase_of = |backup: Backup| backup.status.unwrap_or_default();

    // The diff waits for the incr, created before it.
    reconcile_backup(diff.clone(), ctx.clone()).await.expect("reconcile the diff");
    let waiting = phase_of(backups.get(&diff.name_any()).await.unwrap());
    assert_eq!(waiting.phase, Some(BackupPhase::Pending));
    assert_eq!(
        waiting.message.as_deref(),
        Some("waiting for Backup gamma-20251009120000-1 of cluster gamma to finish")
    );
    assert_eq!(waiting.job, None);

    // The incr records the primary, then creates its Job; again, nothing changes.
    reconcile_backup(incr.clone(), ctx.clone()).await.expect("reconcile the incr");
    let started = phase_of(backups.get(&incr.name_any()).await.unwrap());
    assert_eq!(started.primary.as_deref(), Some("gamma-2"));
    assert_eq!(started.job.as_deref(), Some("gamma-20251009120000-1"));
    reconcile_backup(incr.clone(), ctx.clone()).await.expect("reconcile the incr again");
    let running = backups.get(&incr.name_any()).await.unwrap();
    assert_eq!(phase_of(running.clone()).phase, Some(BackupPhase::Running));
    assert!(managed_by_relevo(&running), "status applied under the relevo field manager");

    let jobs: Api<Job> = Api::namespaced(admin.clone(), ns);
    let all_jobs = jobs.list(&Default::default()).await.unwrap().items;
    assert_eq!(all_jobs.len(), 1, "one Job for one Backup, however often it is reconciled");
    let job = &all_jobs[0];
    assert_eq!(job.name_any(), "gamma-20251009120000-1");
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), Some(owner.uid.as_str())), ("Backup", incr.metadata.uid.as_deref()));
    assert_eq!(owner.controller, Some(true));
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert!(spec.active_deadline_seconds.is_some());
    let pod = spec.template.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("relevo/postgres:15-2.45-1"));
    let command = container.command.clone().unwrap();
    assert_eq!(&command[..2], ["/usr/local/bin/relevo", "backup-job"]);
    assert!(command.contains(&"--type=incr".to_string()) && command.contains(&"--stanza=gamma".to_string()));
    assert_eq!(container.termination_message_policy.as_deref(), Some("File"));
    let claim = pod.volumes.as_ref().unwrap().iter().find_map(|v| v.persistent_volume_claim.as_ref());
    assert_eq!(claim.map(|c| c.claim_name.as_str()), Some("repo-gamma-repo-0"));
    let affinity = pod.affinity.as_ref().and_then(|a| a.pod_affinity.as_ref()).unwrap();
    let term = &affinity.required_during_scheduling_ignored_during_execution.as_ref().unwrap()[0];
    assert_eq!(term.topology_key, "kubernetes.io/hostname");

    // The Job fails (here by hand, as the Job controller would): so does the Backup.
    let failed = serde_json::json!({"status": {
        "startTime": "2025-10-09T12:00:00Z",
        "failed": 1,
        "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded",
             "message": "Job was active longer than specified deadline"},
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
             "message": "Job was active longer than specified deadline"},
        ],
    }});
    jobs.patch_status(&job.name_any(), &merge, &Patch::Merge(&failed)).await.expect("Job status set by hand");
    reconcile_backup(incr.clone(), ctx.clone()).await.expect("reconcile the failed incr");
    let ended = phase_of(backups.get(&incr.name_any()).await.unwrap());
    assert_eq!(ended.phase, Some(BackupPhase::Failed));
    assert_eq!(
        ended.error.as_deref(),
        Some(
            "Job gamma-20251009120000-1 failed: DeadlineExceeded: Job was active longer than specified deadline"
        )
    );
    assert_eq!(ended.primary.as_deref(), Some("gamma-2"));

    // The diff's turn has come.
    reconcile_backup(diff.clone(), ctx.clone()).await.expect("reconcile the diff again");
    assert_eq!(
        phase_of(backups.get(&diff.name_any()).await.unwrap()).job.as_deref(),
        Some("gamma-20251009120000-2")
    );
    assert!(jobs.get_opt("gamma-20251009120000-2").await.unwrap().is_some(), "the diff's Job");

    // No such cluster: Failed with a reason, no Job.
    let orphan = create_backup("nowhere-1", "nowhere", "full").await;
    reconcile_backup(orphan.clone(), ctx.clone()).await.expect("reconcile a Backup of no cluster");
    let refused = phase_of(backups.get("nowhere-1").await.unwrap());
    assert_eq!(refused.phase, Some(BackupPhase::Failed));
    assert_eq!(refused.error.as_deref(), Some("PgCluster nowhere does not exist in this namespace"));
    assert!(jobs.get_opt("nowhere-1").await.unwrap().is_none());
}

/// Retention as the operator's ServiceAccount: the Job of a Backup runs pgBackRest with the
/// cluster's retention (its BackupSchedule's), and when it completes, the older Backup whose
/// set the Job no longer saw in the repository becomes Expired (the Job's status and its
/// pod's termination message are set by hand: no kubelet runs here).
#[tokio::test]
async fn a_completed_backup_expires_the_backups_retention_removed() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
    use relevo::backup::controller::reconcile as reconcile_backup;
    use relevo::backup::result::{BackupDone, JobResult, RepoContents, encode};
    use relevo::crd::{Backup, BackupPhase, BackupSchedule, BackupType};

    let (admin, ns, ctx) = operator_bed("it-retention").await;
    let ns = &ns;
    let merge = PatchParams::default();

    create_cluster(&admin, ns, "zeta", serde_json::json!({})).await;
    let clusters: Api<PgCluster> = Api::namespaced(admin.clone(), ns);
    let primary = serde_json::json!({"status": {"currentPrimary": "zeta-1"}});
    clusters.patch_status("zeta", &merge, &Patch::Merge(&primary)).await.unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let account: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap();
    accounts.create(&PostParams::default(), &account).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    let pod = |name: &str, labels: BTreeMap<String, String>| -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"automountServiceAccountToken": false, "containers": [{"name": "pgbackrest", "image": "relevo/postgres:15-2.45-1"}]},
        }))
        .unwrap()
    };
    let repo_labels = relevo::protocol::names::cluster_labels("zeta", "repo-host");
    pods.create(&PostParams::default(), &pod("zeta-repo-0", repo_labels)).await.unwrap();
    let ready = serde_json::json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status("zeta-repo-0", &merge, &Patch::Merge(&ready)).await.unwrap();
    let schedules: Api<BackupSchedule> = Api::namespaced(admin.clone(), ns);
    let schedule: BackupSchedule = serde_json::from_value(serde_json::json!({
        "apiVersion": "relevo.dev/v1alpha1", "kind": "BackupSchedule", "metadata": {"name": "nightly"},
        "spec": {"cluster": "zeta", "schedule": "0 2 * * *", "retention": {"full": 3}, "suspend": true},
    }))
    .unwrap();
    schedules.create(&PostParams::default(), &schedule).await.unwrap();

    let backups: Api<Backup> = Api::namespaced(admin.clone(), ns);
    let create_backup = |name: &'static str| {
        let backups = backups.clone();
        async move {
            let backup: Backup = serde_json::from_value(serde_json::json!({
                "apiVersion": "relevo.dev/v1alpha1", "kind": "Backup", "metadata": {"name": name},
                "spec": {"cluster": "zeta", "type": "full"},
            }))
            .unwrap();
            Arc::new(backups.create(&PostParams::default(), &backup).await.unwrap())
        }
    };
    let (old_label, new_label) = ("20251001-020000F", "20251008-020000F");
    create_backup("old").await;
    let finished = serde_json::json!({"status": {"phase": "Completed", "label": old_label,
        "startTime": "2025-10-01T02:00:00Z", "stopTime": "2025-10-01T02:00:04Z", "redisRecorded": true,
        "redisKey": "backup:2025-10-01_02-00-00"}});
    backups.patch_status("old", &merge, &Patch::Merge(&finished)).await.unwrap();
    let new = create_backup("new").await;
    reconcile_backup(new.clone(), ctx.clone()).await.expect("records the primary");
    reconcile_backup(new.clone(), ctx.clone()).await.expect("creates the Job");

    let jobs: Api<Job> = Api::namespaced(admin.clone(), ns);
    let job = jobs.get("new").await.expect("the Job of the new Backup");
    let command = job.spec.unwrap().template.spec.unwrap().containers[0].command.clone().unwrap();
    assert!(command.contains(&"--retention-full=3".to_string()), "{command:?}");

    // The Job succeeds; its pod's termination message lists only the new set.
    let done = BackupDone {
        label: new_label.into(),
        backup_type: BackupType::Full,
        start: chrono::DateTime::parse_from_rfc3339("2025-10-08T02:00:00Z").unwrap().to_utc(),
        stop: chrono::DateTime::parse_from_rfc3339("2025-10-08T02:00:04Z").unwrap().to_utc(),
        size_bytes: 25_000_000,
        repo_size_bytes: 3_000_000,
        wal_start: None,
        wal_stop: None,
        path: format!("/pgbackrest/repo/backup/zeta/{new_label}"),
        repository: Some(RepoContents { oldest: new_label.into(), labels: Some(vec![new_label.into()]) }),
    };
    // The Job controller's pod: the Job's labels and the Job as its controller (only such a
    // pod's termination message counts).
    let job_pod_labels = BTreeMap::from([("batch.kubernetes.io/job-name".to_string(), "new".to_string())]);
    let mut job_pod = pod("new-abcde", job_pod_labels);
    let job_uid = jobs.get("new").await.unwrap().metadata.uid.unwrap();
    job_pod.metadata.owner_references = Some(vec![
        serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job", "name": "new", "uid": job_uid, "controller": true,
        }))
        .unwrap(),
    ]);
    pods.create(&PostParams::default(), &job_pod).await.unwrap();
    let terminated = serde_json::json!({"status": {"phase": "Succeeded", "containerStatuses": [{
        "name": "pgbackrest", "image": "relevo/postgres:15-2.45-1", "imageID": "", "ready": false,
        "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed",
            "message": encode(&JobResult::Completed(done))}}}]}});
    pods.patch_status("new-abcde", &merge, &Patch::Merge(&terminated)).await.unwrap();
    let complete = serde_json::json!({"status": {
        "startTime": "2025-10-08T02:00:00Z", "completionTime": "2025-10-08T02:00:05Z", "succeeded": 1,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"},
        ],
    }});
    jobs.patch_status("new", &merge, &Patch::Merge(&complete)).await.expect("Job status set by hand");
    reconcile_backup(new.clone(), ctx.clone()).await.expect("reconcile the completed Backup");

    let new_status = backups.get("new").await.unwrap().status.unwrap();
    assert_eq!(
        (new_status.phase, new_status.label.as_deref()),
        (Some(BackupPhase::Completed), Some(new_label))
    );
    let old = backups.get("old").await.unwrap();
    let old_status = old.status.clone().unwrap();
    assert_eq!(old_status.phase, Some(BackupPhase::Expired));
    let message = old_status.message.unwrap_or_default();
    assert!(message.contains(&format!("after backup {new_label}")), "{message}");
    // No Redis runs here: the record stays marked, to go at the next backup.
    assert!(
        old_status.redis_recorded && message.ends_with("its Redis record goes at the next backup"),
        "{message}"
    );
    assert!(managed_by_relevo(&old));
}
