use super::*;

fn backup(yaml_spec: &str) -> Backup {
    let manifest = format!(
        "apiVersion: relevo.dev/v1alpha1\nkind: Backup\n\
         metadata: {{name: demo-20251007120000-1, namespace: db, uid: 0b0b0b0b-0000-4000-8000-000000000002}}\n\
         spec: {yaml_spec}\n"
    );
    serde_saphyr::from_str(&manifest).unwrap_or_else(|e| panic!("fixture does not parse: {e}\n{manifest}"))
}

fn built() -> Job {
    build(&backup("{cluster: demo, type: incr, cycleDay: 3}"), "relevo/postgres:15-2.45-1").unwrap()
}

fn pod_spec_of(job: &Job) -> PodSpec {
    job.spec.as_ref().unwrap().template.spec.clone().unwrap()
}

#[test]
fn one_job_per_backup_owned_by_it_and_never_retried() {
    let job = built();
    assert_eq!(job.metadata.name.as_deref(), Some("demo-20251007120000-1"));
    assert_eq!(job.metadata.namespace.as_deref(), Some("db"));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Backup", "demo-20251007120000-1"));
    assert_eq!(owner.uid, "0b0b0b0b-0000-4000-8000-000000000002");
    assert_eq!(owner.controller, Some(true));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["relevo.dev/cluster"], "demo");
    assert_eq!(labels["app.kubernetes.io/component"], "backup");
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(ACTIVE_DEADLINE_SECONDS));
    assert_eq!(pod_spec_of(&job).restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        build(&backup("{cluster: demo, type: full}"), "img"),
        build(&backup("{cluster: demo, type: full}"), "img")
    );
}

#[test]
fn an_unsaved_backup_has_no_job() {
    let mut unsaved = backup("{cluster: demo, type: full}");
    unsaved.metadata.uid = None;
    assert_eq!(build(&unsaved, "img"), None);
}

#[test]
fn job_names_are_the_backup_s_or_a_hashed_prefix() {
    assert_eq!(job_name("pg-20251007120000-1"), "pg-20251007120000-1");
    let long = format!("{}-{}", "a".repeat(60), "x".repeat(40));
    let name = job_name(&long);
    assert!(name.len() <= 63 && name.starts_with("aaaa"), "{name}");
    assert_eq!(job_name(&long), name, "deterministic");
    assert_ne!(job_name(&format!("{}-{}", "a".repeat(60), "y".repeat(40))), name);
    // Dots are valid in a Backup name, not in a Job's; the hash keeps "a.b" and "a-b" apart.
    let dotted = job_name("nightly.pg");
    assert!(!dotted.contains('.') && dotted.starts_with("nightly-pg-"), "{dotted}");
    assert_ne!(dotted, job_name("nightly-pg"));
}

#[test]
fn the_pod_runs_backup_job_with_the_repo_host_configuration() {
    let pod = pod_spec_of(&built());
    let container = &pod.containers[0];
    assert_eq!(container.name, "pgbackrest");
    assert_eq!(container.image.as_deref(), Some("relevo/postgres:15-2.45-1"));
    assert_eq!(
        container.command.as_deref().unwrap(),
        [
            "/usr/local/bin/relevo",
            "backup-job",
            "--config=/etc/pgbackrest/conf/repo-host.conf",
            "--stanza=demo",
            "--type=incr",
            "--repo-path=/pgbackrest/repo",
            "--termination-log=/dev/termination-log",
        ]
    );
    assert!(container.args.is_none() && container.env.is_none(), "no secrets in the pod spec");
    assert_eq!(container.termination_message_policy.as_deref(), Some("File"));
    assert_eq!(container.termination_message_path.as_deref(), Some("/dev/termination-log"));
}

#[test]
fn the_pod_mounts_the_repository_its_configuration_and_certificates() {
    let pod = pod_spec_of(&built());
    let volumes = pod.volumes.unwrap();
    let volume =
        |name: &str| volumes.iter().find(|v| v.name == name).unwrap_or_else(|| panic!("volume {name}"));
    assert_eq!(volume("repo").persistent_volume_claim.as_ref().unwrap().claim_name, "repo-demo-repo-0");
    assert_eq!(volume("pgbackrest-conf").config_map.as_ref().unwrap().name, "demo-pgbackrest");
    let tls = volume("pgbackrest-tls").secret.as_ref().unwrap();
    assert_eq!(tls.secret_name.as_deref(), Some("demo-pgbackrest-tls"));
    assert_eq!(tls.default_mode, Some(0o440));
    assert!(volume("tmp").empty_dir.is_some());
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    let mounted =
        |name: &str| mounts.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("mount {name}"));
    assert_eq!((mounted("repo").mount_path.as_str(), mounted("repo").read_only), ("/pgbackrest", None));
    assert_eq!(mounted("pgbackrest-conf").mount_path, "/etc/pgbackrest/conf");
    assert_eq!(mounted("pgbackrest-conf").read_only, Some(true));
    assert_eq!(mounted("pgbackrest-tls").mount_path, "/etc/pgbackrest/tls");
    assert_eq!(mounted("pgbackrest-tls").read_only, Some(true));
    assert_eq!(mounted("tmp").mount_path, "/tmp");
}

#[test]
fn the_pod_follows_the_repository_to_its_node() {
    let affinity = pod_spec_of(&built()).affinity.unwrap().pod_affinity.unwrap();
    let terms = affinity.required_during_scheduling_ignored_during_execution.unwrap();
    assert_eq!(terms.len(), 1);
    assert_eq!(terms[0].topology_key, "kubernetes.io/hostname");
    let selector = terms[0].label_selector.as_ref().unwrap().match_labels.clone().unwrap();
    assert_eq!(
        selector,
        BTreeMap::from([
            ("app.kubernetes.io/component".to_string(), "repo-host".to_string()),
            ("relevo.dev/cluster".to_string(), "demo".to_string()),
        ])
    );
}

#[test]
fn the_pod_is_locked_down_like_the_instances() {
    let pod = pod_spec_of(&built());
    assert_eq!(pod.automount_service_account_token, Some(false));
    let security = pod.security_context.unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(
        (security.run_as_user, security.run_as_group, security.fs_group),
        (Some(999), Some(999), Some(999))
    );
    assert_eq!(security.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let container = pod.containers[0].security_context.clone().unwrap();
    assert_eq!(container.read_only_root_filesystem, Some(true));
    assert_eq!(container.allow_privilege_escalation, Some(false));
    assert_eq!(container.capabilities.unwrap().drop.unwrap(), ["ALL"]);
}

fn job_with(uid: &str, condition: Option<(&str, &str, &str)>) -> Job {
    let mut job = built();
    job.metadata.uid = Some(JOB_UID.into());
    job.metadata.owner_references.as_mut().unwrap()[0].uid = uid.into();
    if let Some((type_, reason, message)) = condition {
        job.status = Some(
            serde_json::from_value(serde_json::json!({
                "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": reason},
                    {"type": type_, "status": "True", "reason": reason, "message": message},
                ]
            }))
            .unwrap(),
        );
    }
    job
}

const JOB_UID: &str = "0b0b0b0b-0000-4000-8000-00000000j0b5";

/// A pod the Job created: the Job as its controller.
fn pod_with(message: Option<&str>, exit_code: i32, reason: &str) -> Pod {
    pod_owned_by(JOB_UID, message, exit_code, reason)
}

fn pod_owned_by(job_uid: &str, message: Option<&str>, exit_code: i32, reason: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "demo-20251007120000-1-abcde", "creationTimestamp": "2025-10-07T12:00:00Z",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "demo-20251007120000-1",
                                 "uid": job_uid, "controller": true}],
        },
        "status": {"containerStatuses": [{
            "name": "pgbackrest", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "reason": reason, "message": message}},
        }]},
    }))
    .unwrap()
}

const UID: &str = "0b0b0b0b-0000-4000-8000-000000000002";

#[test]
fn views_of_a_job() {
    assert_eq!(job_view(None, UID, &[]), JobView::Absent);
    assert_eq!(job_view(Some(&job_with("someone-else", None)), UID, &[]), JobView::NotOurs);
    assert_eq!(job_view(Some(&job_with(UID, None)), UID, &[]), JobView::Active);
    // FailureTarget alone: the pod may still be terminating; wait for Failed.
    let mut target_only = job_with(UID, Some(("Failed", "DeadlineExceeded", "")));
    target_only.status.as_mut().unwrap().conditions.as_mut().unwrap().pop();
    assert_eq!(job_view(Some(&target_only), UID, &[]), JobView::Active);

    let done = pod_with(Some(r#"{"outcome":"completed"}"#), 0, "Completed");
    assert_eq!(
        job_view(Some(&job_with(UID, Some(("Complete", "CompletionsReached", "")))), UID, &[done]),
        JobView::Succeeded { message: Some(r#"{"outcome":"completed"}"#.into()) }
    );
    let failed = job_with(
        UID,
        Some(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
    );
    assert_eq!(
        job_view(Some(&failed), UID, &[pod_with(None, 137, "OOMKilled")]),
        JobView::Failed {
            reason: "BackoffLimitExceeded: Job has reached the specified backoff limit".into(),
            message: None,
            exit: Some("container exited with code 137 (OOMKilled)".into()),
        }
    );
    let deadline =
        job_with(UID, Some(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")));
    assert_eq!(
        job_view(Some(&deadline), UID, &[]),
        JobView::Failed {
            reason: "DeadlineExceeded: Job was active longer than specified deadline".into(),
            message: None,
            exit: None,
        }
    );
}

#[test]
fn only_a_pod_the_job_created_gives_the_result() {
    let complete = job_with(UID, Some(("Complete", "CompletionsReached", "")));
    let forged = r#"{"outcome":"completed","label":"forged"}"#;
    let mut unowned = pod_with(Some(forged), 0, "Completed");
    unowned.metadata.owner_references = None;
    unowned.metadata.creation_timestamp =
        Some(serde_json::from_value(serde_json::json!("2030-01-01T00:00:00Z")).unwrap());
    let other_job = pod_owned_by("another-job", Some(forged), 0, "Completed");
    let real = pod_with(Some(r#"{"outcome":"completed"}"#), 0, "Completed");
    assert_eq!(
        job_view(Some(&complete), UID, &[unowned.clone(), other_job.clone(), real]),
        JobView::Succeeded { message: Some(r#"{"outcome":"completed"}"#.into()) },
        "the newest pod with the Job's labels is not the Job's"
    );
    assert_eq!(job_view(Some(&complete), UID, &[unowned, other_job]), JobView::Succeeded { message: None });
}

#[test]
fn the_cluster_s_retention_goes_to_pgbackrest() {
    let backup = backup("{cluster: demo, type: full}");
    assert!(!command(&backup).iter().any(|a| a.starts_with("--retention-full")), "the repo host's default");
    let job = build_with_retention(&backup, "img", Some(5)).unwrap();
    let container = &pod_spec_of(&job).containers[0];
    assert_eq!(container.command.as_ref().unwrap().last().map(String::as_str), Some("--retention-full=5"));
    assert_eq!(build_with_retention(&backup, "img", None), build(&backup, "img"));
}

#[test]
fn relevo_backup_job_reads_the_command_line_the_job_gets() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: crate::backup::run::BackupJobArgs,
    }
    let argv = command_with_retention(&backup("{cluster: demo, type: diff}"), Some(3));
    assert_eq!(&argv[..2], [layout::RELEVO_BINARY, "backup-job"]);
    let args = Cli::try_parse_from(std::iter::once("backup-job").chain(argv[2..].iter().map(String::as_str)))
        .unwrap()
        .args;
    assert_eq!((args.backup_type, args.retention_full), (crate::crd::BackupType::Diff, Some(3)));
    assert_eq!(args.stanza, "demo");
}

#[test]
fn an_encrypted_repositorys_job_reads_the_passphrase_from_its_secret_only() {
    let job = with_cipher_pass(built(), "demo-pgbackrest-cipher");
    let container = &pod_spec_of(&job).containers[0];
    let env = container.env.as_deref().unwrap();
    assert_eq!(env.len(), 1);
    assert_eq!(env[0].name, "PGBACKREST_REPO1_CIPHER_PASS");
    assert_eq!(env[0].value, None, "the passphrase itself is never in the Job");
    let key = env[0].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((key.name.as_str(), key.key.as_str()), ("demo-pgbackrest-cipher", "passphrase"));
    assert!(container.command.as_ref().unwrap().iter().all(|arg| !arg.contains("cipher")));
    assert_eq!(pod_spec_of(&built()).containers[0].env, None, "unencrypted: no environment");
}
