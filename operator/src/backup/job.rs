//! The Job that runs one Backup, and what the operator reads back from it. Pure.
//!
//! - **Name.** Derived from the Backup's name alone ([`job_name`]), so a retry after a crash
//!   creates the same Job, which the apiserver refuses a second time.
//! - **Where.** The repository volume is ReadWriteOnce and mounted by the repo host, so the
//!   pod must run on the repo host's node: required pod affinity to the repo host pod.
//! - **What.** `relevo backup-job` of the cluster's image with the repo host's configuration
//!   (the Job is a repo host for that moment, see [`super::run`]), once: `backoffLimit: 0`,
//!   because a second pgBackRest run is a second backup, and a deadline.
//! - **Result.** The termination message ([`super::result`]), read by [`job_view`].

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource,
    PersistentVolumeClaimVolumeSource, Pod, PodAffinity, PodAffinityTerm, PodSpec, PodTemplateSpec,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::{Resource, ResourceExt};

use super::result::TERMINATION_LOG;
use super::schedule::MAX_NAME_LEN;
use crate::crd::Backup;
use crate::pgcluster::builders::pgbackrest::cipher_pass_env;
use crate::protocol::hash::fnv1a32;
use crate::protocol::layout;
use crate::protocol::names;

/// Component label of backup Jobs and their pods.
pub const COMPONENT: &str = "backup";
/// Component label of the repo host pod, which the Job must share a node with.
pub const REPO_HOST_COMPONENT: &str = "repo-host";
/// The repo host's configuration in the pgBackRest ConfigMap.
pub const REPO_HOST_CONF: &str = "repo-host.conf";
/// Name of the Job's only container, whose termination message is the result.
pub const CONTAINER: &str = "pgbackrest";
/// Label the Job controller puts on a Job's pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// How long one pgBackRest backup may run before Kubernetes stops it: far beyond the
/// seconds a small database takes, short enough that a hung backup does not hold the
/// cluster's queue for a day.
pub const ACTIVE_DEADLINE_SECONDS: i64 = 6 * 3600;

/// The Job's name: the Backup's own when it is a valid Job name, otherwise a prefix of it and
/// a hash of the whole (Backup names may be 253 characters and contain dots; a Job's name
/// becomes a label value, at most 63).
pub fn job_name(backup: &str) -> String {
    let sanitized: String = backup.chars().map(|c| if c == '.' { '-' } else { c }).collect();
    if sanitized == backup && backup.len() <= MAX_NAME_LEN {
        return sanitized;
    }
    let hash = format!("{:08x}", fnv1a32(backup.as_bytes()));
    let mut prefix = sanitized;
    prefix.truncate(MAX_NAME_LEN - hash.len() - 1);
    format!("{}-{hash}", prefix.trim_end_matches('-'))
}

/// Labels of the repo host pod that the Job's pod must share a node with.
pub fn repo_host_selector(cluster: &str) -> BTreeMap<String, String> {
    let labels = names::cluster_labels(cluster, REPO_HOST_COMPONENT);
    [names::LABEL_CLUSTER, names::LABEL_COMPONENT]
        .into_iter()
        .filter_map(|key| labels.get_key_value(key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The `relevo backup-job` command line of a Backup.
pub fn command(backup: &Backup) -> Vec<String> {
    command_with_retention(backup, None)
}

/// [`command`], with the number of full backups pgBackRest keeps when it expires at the end
/// of the backup (see [`super::retention::retention_full_for`]); `None` keeps the repo
/// host's configured value.
pub fn command_with_retention(backup: &Backup, retention_full: Option<u32>) -> Vec<String> {
    let cluster = &backup.spec.cluster;
    let mut argv = vec![
        layout::RELEVO_BINARY.to_string(),
        "backup-job".to_string(),
        format!("--config={}/{REPO_HOST_CONF}", names::PGBACKREST_CONF_DIR),
        format!("--stanza={}", names::stanza(cluster)),
        format!("--type={}", backup.spec.backup_type.as_pgbackrest()),
        format!("--repo-path={}", names::REPO_PATH),
        format!("--termination-log={TERMINATION_LOG}"),
    ];
    if let Some(full) = retention_full {
        argv.push(format!("--retention-full={full}"));
    }
    argv
}

/// The Job of a stored Backup (`None` before the Backup has a namespace and uid), running
/// `image`, the cluster's.
pub fn build(backup: &Backup, image: &str) -> Option<Job> {
    build_with_retention(backup, image, None)
}

/// [`build`], passing `retention_full` on to pgBackRest ([`command_with_retention`]).
pub fn build_with_retention(backup: &Backup, image: &str, retention_full: Option<u32>) -> Option<Job> {
    let cluster = &backup.spec.cluster;
    let labels = names::cluster_labels(cluster, COMPONENT);
    Some(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&backup.name_any())),
            namespace: Some(backup.namespace()?),
            labels: Some(labels.clone()),
            owner_references: Some(vec![backup.controller_owner_ref(&())?]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(ACTIVE_DEADLINE_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(pod_spec(backup, image, retention_full)),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    })
}

/// `job`, given the passphrase of an encrypted repository from `cipher_secret`: the Job runs
/// pgBackRest against the repository itself, which it cannot read or write without it.
pub fn with_cipher_pass(mut job: Job, cipher_secret: &str) -> Job {
    let containers = job
        .spec
        .iter_mut()
        .flat_map(|spec| spec.template.spec.iter_mut())
        .flat_map(|pod| &mut pod.containers);
    for container in containers.filter(|c| c.name == CONTAINER) {
        container.env.get_or_insert_with(Vec::new).push(cipher_pass_env(cipher_secret));
    }
    job
}

fn pod_spec(backup: &Backup, image: &str, retention_full: Option<u32>) -> PodSpec {
    let cluster = &backup.spec.cluster;
    PodSpec {
        restart_policy: Some("Never".into()),
        // pgBackRest never talks to the Kubernetes API.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(crate::pgcluster::builders::pod::postgres_pod_security()),
        affinity: Some(Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(repo_host_selector(cluster)),
                        ..LabelSelector::default()
                    }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..PodAffinityTerm::default()
                }]),
                ..PodAffinity::default()
            }),
            ..Affinity::default()
        }),
        containers: vec![Container {
            name: CONTAINER.into(),
            image: Some(image.into()),
            command: Some(command_with_retention(backup, retention_full)),
            termination_message_path: Some(TERMINATION_LOG.into()),
            termination_message_policy: Some("File".into()),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                privileged: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Capabilities::default()
                }),
                ..SecurityContext::default()
            }),
            volume_mounts: Some(vec![
                mount(names::REPO_VOLUME, names::REPO_MOUNT, false),
                mount("pgbackrest-conf", names::PGBACKREST_CONF_DIR, true),
                mount("pgbackrest-tls", names::PGBACKREST_TLS_DIR, true),
                // pgBackRest's lock files (lock-path defaults to /tmp/pgbackrest).
                mount("tmp", "/tmp", false),
            ]),
            ..Container::default()
        }],
        volumes: Some(vec![
            Volume {
                name: names::REPO_VOLUME.into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: names::repo_pvc(cluster),
                    ..PersistentVolumeClaimVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "pgbackrest-conf".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names::config_map_pgbackrest(cluster),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "pgbackrest-tls".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(names::secret_pgbackrest_tls(cluster)),
                    // Root-owned, readable by fsGroup only: pgBackRest refuses a key file
                    // that others can read.
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// What the operator knows of a Backup's Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobView {
    /// No Job of that name.
    Absent,
    /// A Job of that name exists but belongs to something else (e.g. a deleted Backup of the
    /// same name, not garbage-collected yet).
    NotOurs,
    /// Not finished.
    Active,
    /// Finished successfully; `message` is the container's termination message.
    Succeeded { message: Option<String> },
    /// Finished unsuccessfully: the Job's reason (e.g. "DeadlineExceeded: …"), the container's
    /// termination message, and how the container ended when the message is missing.
    Failed { reason: String, message: Option<String>, exit: Option<String> },
}

/// The view of `job` (the Job named [`job_name`], if any) for the Backup with uid `owner_uid`;
/// `pods` are the Job's pods, for the termination message.
pub fn job_view(job: Option<&Job>, owner_uid: &str, pods: &[Pod]) -> JobView {
    let Some(job) = job else { return JobView::Absent };
    let ours = job.owner_references().iter().any(|r| r.uid == owner_uid && r.controller == Some(true));
    if !ours {
        return JobView::NotOurs;
    }
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let holds = |type_: &str| conditions.iter().find(|c| c.type_ == type_ && c.status == "True");
    let job_uid = job.uid().unwrap_or_default();
    let terminated = terminated_container(pods, &job_uid);
    let message = terminated.and_then(|t| t.message.clone()).filter(|m| !m.trim().is_empty());
    if holds("Complete").is_some() {
        return JobView::Succeeded { message };
    }
    if let Some(failed) = holds("Failed") {
        let reason = match (&failed.reason, &failed.message) {
            (Some(reason), Some(message)) => format!("{reason}: {message}"),
            (Some(text), None) | (None, Some(text)) => text.clone(),
            (None, None) => "the Job failed".to_string(),
        };
        let exit = terminated.map(|t| match &t.reason {
            Some(reason) => format!("container exited with code {} ({reason})", t.exit_code),
            None => format!("container exited with code {}", t.exit_code),
        });
        return JobView::Failed { reason, message, exit };
    }
    JobView::Active
}

/// The pgBackRest container's terminated state in the newest pod that has one, among the
/// pods the Job itself created (controller owner reference with the Job's UID): anyone may
/// create a pod carrying the Job's labels, and its message would be read as the result.
fn terminated_container<'a>(
    pods: &'a [Pod],
    job_uid: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStateTerminated> {
    let created_by_job = |pod: &&Pod| {
        !job_uid.is_empty()
            && pod
                .owner_references()
                .iter()
                .any(|r| r.kind == "Job" && r.uid == job_uid && r.controller == Some(true))
    };
    let mut pods: Vec<&Pod> = pods.iter().filter(created_by_job).collect();
    pods.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone()));
    pods.into_iter().find_map(|pod| {
        let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
        let status = statuses.iter().find(|s| s.name == CONTAINER)?;
        status.state.as_ref().and_then(|s| s.terminated.as_ref())
    })
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
