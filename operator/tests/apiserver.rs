//! Integration tests against a real kube-apiserver and etcd (no node): the CRDs install,
//! and one reconcile of a PgCluster builds every child with owner references under the
//! operator's field manager, keeps credentials on re-reconcile, and refuses a spec the
//! operator owns with a Degraded condition. Every call is made as the operator's
//! ServiceAccount, so the least-privilege RBAC of manifests/rbac.yaml is tested too.
//!
//! Run by `make integration` (e2e/testbed/apiserver.sh provides the apiserver):
//! `RELEVO_IT_KUBECONFIG=… cargo test -p relevo --features integration --test apiserver`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config, Resource, ResourceExt};
use prometheus_client::registry::Registry;
use relevo::config::RunArgs;
use relevo::crd::PgCluster;
use relevo::metrics::Metrics;
use relevo::pgcluster::controller::reconcile;
use relevo::runtime::context::{Context, Readiness};

const OPERATOR_SA: &str = "system:serviceaccount:relevo-system:relevo-operator";
const WAIT: Duration = Duration::from_secs(30);

async fn admin_config() -> Config {
    let path = std::env::var("RELEVO_IT_KUBECONFIG")
        .expect("RELEVO_IT_KUBECONFIG must name the kubeconfig of a running apiserver (make integration)");
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig")
}

/// Installs the CRDs and the operator's RBAC as an administrator, then returns a client
/// that acts as the operator's ServiceAccount.
async fn setup() -> Client {
    let admin = Client::try_from(admin_config().await).expect("admin client");
    let apply = PatchParams::apply("relevo-integration-test").force();
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in relevo::crd::all() {
        let name = crd.name_any();
        crds.patch(&name, &apply, &Patch::Apply(&crd)).await.expect("CRD accepted by the apiserver");
        tokio::time::timeout(WAIT, await_condition(crds.clone(), &name, conditions::is_crd_established()))
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not Established within {WAIT:?}"))
            .expect("watching the CRD");
    }
    let rbac = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/rbac.yaml"))
        .expect("manifests/rbac.yaml");
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "relevo-system"}})).unwrap();
    namespaces.patch("relevo-system", &apply, &Patch::Apply(&ns)).await.expect("namespace");
    for document in rbac.split("\n---\n") {
        let value: serde_json::Value = serde_saphyr::from_str(document).expect("RBAC YAML");
        match value["kind"].as_str() {
            Some("ClusterRole") => {
                let role: ClusterRole = serde_json::from_value(value).unwrap();
                let api: Api<ClusterRole> = Api::all(admin.clone());
                api.patch(&role.name_any(), &apply, &Patch::Apply(&role)).await.expect("ClusterRole");
            }
            Some("ClusterRoleBinding") => {
                let binding: ClusterRoleBinding = serde_json::from_value(value).unwrap();
                let api: Api<ClusterRoleBinding> = Api::all(admin.clone());
                api.patch(&binding.name_any(), &apply, &Patch::Apply(&binding)).await.expect("binding");
            }
            _ => {}
        }
    }
    let mut config = admin_config().await;
    config.auth_info.impersonate = Some(OPERATOR_SA.into());
    Client::try_from(config).expect("impersonating client")
}

/// A fresh namespace per run: the bare apiserver has no controller manager, so a deleted
/// namespace would never finish terminating.
async fn namespace(admin: &Client, prefix: &str) -> String {
    let api: Api<Namespace> = Api::all(admin.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"generateName": format!("{prefix}-")}}))
            .unwrap();
    api.create(&PostParams::default(), &ns).await.expect("test namespace").name_any()
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

fn context(client: Client) -> Arc<Context> {
    let config = Cli::try_parse_from(["relevo", "--postgres-timeout", "200ms"]).unwrap().run;
    let metrics = Metrics::register(&mut Registry::default());
    Context::new(client, config, metrics, Readiness::default())
}

async fn create_cluster(
    admin: &Client,
    ns: &str,
    name: &str,
    parameters: serde_json::Value,
) -> Arc<PgCluster> {
    let api: Api<PgCluster> = Api::namespaced(admin.clone(), ns);
    let cluster: PgCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "relevo.dev/v1alpha1", "kind": "PgCluster",
        "metadata": {"name": name},
        "spec": {"instances": 2, "postgresql": {"parameters": parameters}, "redis": {"managed": {}}},
    }))
    .unwrap();
    Arc::new(api.create(&PostParams::default(), &cluster).await.expect("PgCluster accepted"))
}

fn owned_by<K: Resource>(object: &K, cluster: &PgCluster) -> bool {
    let uid = cluster.meta().uid.as_deref();
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|r| Some(r.uid.as_str()) == uid && r.controller == Some(true))
}

fn managed_by_relevo<K: Resource>(object: &K) -> bool {
    object.meta().managed_fields.iter().flatten().any(|f| f.manager.as_deref() == Some("relevo"))
}

#[tokio::test]
async fn reconcile_builds_owned_children_with_least_privilege() {
    let operator = setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let ns = &namespace(&admin, "it-reconcile").await;
    let cluster = create_cluster(&admin, ns, "alpha", serde_json::json!({"work_mem": "8MB"})).await;
    let ctx = context(operator);

    reconcile(cluster.clone(), ctx.clone()).await.expect("reconcile as the operator's ServiceAccount");

    let statefulsets: Api<StatefulSet> = Api::namespaced(admin.clone(), ns);
    for name in ["alpha-1", "alpha-2"] {
        let sts = statefulsets.get(name).await.unwrap_or_else(|e| panic!("StatefulSet {name}: {e}"));
        assert!(owned_by(&sts, &cluster), "{name} lacks a controller owner reference");
        assert!(managed_by_relevo(&sts), "{name} is not applied under the relevo field manager");
        assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(1));
        let labels = &sts.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels;
        assert!(
            !labels.as_ref().unwrap().contains_key("relevo.dev/role"),
            "role must not be in {name}'s identity"
        );
    }
    let services: Api<Service> = Api::namespaced(admin.clone(), ns);
    for name in ["alpha-rw", "alpha-ro", "alpha-r", "alpha"] {
        let svc = services.get(name).await.unwrap_or_else(|e| panic!("Service {name}: {e}"));
        assert!(owned_by(&svc, &cluster), "Service {name} lacks an owner reference");
    }
    let rw_selector = services.get("alpha-rw").await.unwrap().spec.unwrap().selector.unwrap();
    assert_eq!(rw_selector.get("relevo.dev/role").map(String::as_str), Some("primary"));
    let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), ns);
    let config = config_maps.get("alpha-config").await.expect("ConfigMap alpha-config");
    let conf = &config.data.as_ref().unwrap()["postgresql.conf"];
    assert!(
        conf.contains("work_mem = '8MB'") || conf.contains("work_mem = 8MB"),
        "user parameter merged: {conf}"
    );
    assert!(conf.contains("archive_mode = 'on'"), "archiving on: {conf}");
    assert!(conf.contains("archive-push %p"), "archive_command: {conf}");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), ns);
    let redis = deployments.get("alpha-redis").await.expect("managed Redis Deployment");
    assert!(owned_by(&redis, &cluster));

    // pgBackRest: the repo host, its Service, the configuration and the certificates.
    let repo = statefulsets.get("alpha-repo").await.expect("repo host StatefulSet");
    assert!(owned_by(&repo, &cluster) && managed_by_relevo(&repo));
    assert_eq!(repo.metadata.labels.as_ref().unwrap()["app.kubernetes.io/component"], "repo-host");
    let repo_svc = services.get("alpha-repo").await.expect("repo host Service");
    assert!(owned_by(&repo_svc, &cluster));
    let pgbackrest = config_maps.get("alpha-pgbackrest").await.expect("ConfigMap alpha-pgbackrest");
    assert!(owned_by(&pgbackrest, &cluster));
    let repo_conf = &pgbackrest.data.as_ref().unwrap()["repo-host.conf"];
    for line in [format!("pg1-host=alpha-1-0.alpha.{ns}.svc"), format!("pg2-host=alpha-2-0.alpha.{ns}.svc")] {
        assert!(repo_conf.lines().any(|l| l == line), "{line} in {repo_conf}");
    }
    let pg_conf = &pgbackrest.data.as_ref().unwrap()["pg-host.conf"];
    assert!(pg_conf.contains(&format!("repo1-host=alpha-repo-0.alpha-repo.{ns}.svc")), "{pg_conf}");

    let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
    let passwords = |s: Secret| -> BTreeMap<String, String> {
        s.data.unwrap().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap())).collect()
    };
    let mut before = BTreeMap::new();
    for name in ["alpha-superuser", "alpha-replication", "alpha-app", "alpha-redis"] {
        let secret = secrets.get(name).await.unwrap_or_else(|e| panic!("Secret {name}: {e}"));
        assert!(owned_by(&secret, &cluster), "Secret {name} lacks an owner reference");
        let data = passwords(secret);
        assert!(data["password"].len() >= 24, "{name}: a generated password of at least 24 characters");
        before.insert(name, data);
    }
    assert_ne!(before["alpha-superuser"]["password"], before["alpha-app"]["password"]);
    for (name, keys) in [
        ("alpha-pgbackrest-tls", ["ca.crt", "tls.crt", "tls.key"]),
        ("alpha-pgbackrest-ca", ["ca.crt", "ca.key", "ca.crt"]),
    ] {
        let secret = secrets.get(name).await.unwrap_or_else(|e| panic!("Secret {name}: {e}"));
        assert!(owned_by(&secret, &cluster), "Secret {name} lacks an owner reference");
        let data = passwords(secret);
        for key in keys {
            assert!(data[key].starts_with("-----BEGIN "), "{name}/{key} is PEM");
        }
        before.insert(name, data);
    }
    assert_eq!(before["alpha-pgbackrest-tls"]["ca.crt"], before["alpha-pgbackrest-ca"]["ca.crt"]);

    reconcile(cluster.clone(), ctx.clone()).await.expect("second reconcile");
    for (name, data) in &before {
        assert_eq!(&passwords(secrets.get(name).await.unwrap()), data, "{name} changed on re-reconcile");
    }

    // A lost TLS Secret is re-issued by the same CA, which running pods already trust.
    secrets.delete("alpha-pgbackrest-tls", &Default::default()).await.expect("deleting the TLS Secret");
    reconcile(cluster.clone(), ctx.clone()).await.expect("reconcile after losing the TLS Secret");
    let reissued = passwords(secrets.get("alpha-pgbackrest-tls").await.expect("TLS Secret re-issued"));
    assert_eq!(reissued["ca.crt"], before["alpha-pgbackrest-ca"]["ca.crt"]);
    assert_ne!(reissued["tls.key"], before["alpha-pgbackrest-tls"]["tls.key"]);

    let status = Api::<PgCluster>::namespaced(admin.clone(), ns).get("alpha").await.unwrap().status;
    let status = status.expect("status written");
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("a Ready condition");
    assert_eq!(ready.status, "False", "no pod runs without a node, so not Ready");
    assert_eq!(ready.observed_generation, cluster.metadata.generation);
}

#[tokio::test]
async fn operator_owned_parameter_is_refused_and_builds_nothing() {
    let operator = setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let ns = &namespace(&admin, "it-refused").await;
    let cluster =
        create_cluster(&admin, ns, "beta", serde_json::json!({"archive_command": "/bin/true"})).await;

    let _ = reconcile(cluster.clone(), context(operator)).await;

    let status = Api::<PgCluster>::namespaced(admin.clone(), ns).get("beta").await.unwrap().status.unwrap();
    let degraded = status.conditions.iter().find(|c| c.type_ == "Degraded").expect("a Degraded condition");
    assert_eq!(degraded.status, "True");
    assert!(
        degraded.message.contains("archive_command"),
        "the reason names the parameter: {}",
        degraded.message
    );
    let statefulsets: Api<StatefulSet> = Api::namespaced(admin.clone(), ns);
    assert!(statefulsets.list(&Default::default()).await.unwrap().items.is_empty(), "nothing is built");
}

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

    let operator = setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let ns = &namespace(&admin, "it-backup").await;
    let ctx = context(operator);
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
        "metadata": {"name": "gamma-repo-0", "labels": relevo::pgcluster::names::cluster_labels("gamma", "repo-host")},
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

/// The real apiserver refuses bad BackupSchedules with a message on the field (the CEL rules
/// compile and mean what the offline tests say), and accepts a good one.
#[tokio::test]
async fn a_bad_backup_schedule_is_refused_on_its_field() {
    use kube::api::{ApiResource, DynamicObject};
    use relevo::crd::BackupSchedule;

    setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let ns = &namespace(&admin, "it-schedule-input").await;
    let resource = ApiResource::erase::<BackupSchedule>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &resource);
    let object = |name: &str, spec: serde_json::Value| -> DynamicObject {
        let mut full = serde_json::json!({"cluster": "demo"});
        for (key, value) in spec.as_object().unwrap() {
            full[key] = value.clone();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "relevo.dev/v1alpha1", "kind": "BackupSchedule",
            "metadata": {"name": name}, "spec": full,
        }))
        .unwrap()
    };
    let cases = [
        (serde_json::json!({"schedule": "61 2 * * *"}), "spec.schedule", "schedule must be five cron fields"),
        (serde_json::json!({}), "spec.schedule", "is required when dayLength is 24h or more"),
        (
            serde_json::json!({"schedule": "0 2 * * *", "timeZone": "Europe/Madird"}),
            "spec.timeZone",
            "IANA time zone",
        ),
        (serde_json::json!({"dayLength": "5s"}), "spec.dayLength", "dayLength must be at least 10s"),
        (
            serde_json::json!({"schedule": "0 2 * * *", "dayLength": "36h"}),
            "spec.dayLength",
            "whole number of days",
        ),
        (serde_json::json!({"dayLength": "2m", "cycle": [["full"], []]}), "spec.cycle[1]", "at least 1"),
        (
            serde_json::json!({"dayLength": "2m", "cycle": [["full"], ["weekly"]]}),
            "spec.cycle[1][0]",
            "Unsupported value",
        ),
        (
            serde_json::json!({"dayLength": "2m", "cycle": [["incr"], ["full"]]}),
            "spec.cycle",
            "must open with a full backup",
        ),
    ];
    for (i, (spec, field, message)) in cases.into_iter().enumerate() {
        let refused = api.create(&PostParams::default(), &object(&format!("bad-{i}"), spec.clone())).await;
        let Err(kube::Error::Api(status)) = refused else { panic!("{spec} was accepted: {refused:?}") };
        assert_eq!(status.code, 422, "{spec}: {status:?}");
        assert!(
            status.message.contains(field) && status.message.contains(message),
            "{spec}: expected {field} and {message:?} in {:?}",
            status.message
        );
    }
    let weekly = serde_json::json!({
        "schedule": "0 2 * * SUN-SAT", "timeZone": "America/Argentina/Buenos_Aires", "dayLength": "48h",
        "cycle": [["full"], ["incr"], ["incr"], ["incr"], ["incr"], ["incr"], ["incr", "diff"]],
    });
    api.create(&PostParams::default(), &object("good", weekly)).await.expect("a valid 7-day schedule");
}

/// A BackupSchedule with 20-second days, reconciled as the operator's ServiceAccount: the
/// run due now is day 3 (its cycleStart is 2 days and 10 s ago), so it creates day 3's incr,
/// then its diff only once the incr has finished, with deterministic names, cycle days and
/// the cluster as owner; then day 4's incr at the next slot; suspended, nothing more.
#[tokio::test]
async fn a_short_day_schedule_creates_each_day_s_backups_in_order() {
    use chrono::{SubsecRound, TimeDelta, Utc};
    use relevo::backup::schedule_controller::reconcile as reconcile_schedule;
    use relevo::crd::backup_schedule::RunResult;
    use relevo::crd::{Backup, BackupSchedule, BackupType};

    let operator = setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let ns = &namespace(&admin, "it-schedule").await;
    let ctx = context(operator);
    let cluster = create_cluster(&admin, ns, "delta", serde_json::json!({})).await;

    let start = Utc::now().trunc_subsecs(0) - TimeDelta::seconds(50);
    let slot = start + TimeDelta::seconds(40);
    let stamp = |t: chrono::DateTime<Utc>| t.format("%Y%m%d%H%M%S").to_string();
    let schedules: Api<BackupSchedule> = Api::namespaced(admin.clone(), ns);
    let schedule: BackupSchedule = serde_json::from_value(serde_json::json!({
        "apiVersion": "relevo.dev/v1alpha1", "kind": "BackupSchedule",
        "metadata": {"name": "nightly"},
        "spec": {"cluster": "delta", "dayLength": "20s", "cycleStart": start.to_rfc3339()},
    }))
    .unwrap();
    let schedule = Arc::new(schedules.create(&PostParams::default(), &schedule).await.expect("schedule"));
    let backups: Api<Backup> = Api::namespaced(admin.clone(), ns);
    let all_backups = || {
        let backups = backups.clone();
        async move {
            let mut names: Vec<(String, BackupType, Option<i32>)> = backups
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|b| (b.name_any(), b.spec.backup_type, b.spec.cycle_day))
                .collect();
            names.sort();
            names
        }
    };
    let complete = |name: String| {
        let backups = backups.clone();
        async move {
            let done = serde_json::json!({"status": {"phase": "Completed"}});
            backups.patch_status(&name, &PatchParams::default(), &Patch::Merge(&done)).await.unwrap();
        }
    };
    let incr_3 = format!("nightly-{}-1", stamp(slot));
    let diff_3 = format!("nightly-{}-2", stamp(slot));

    reconcile_schedule(schedule.clone(), ctx.clone()).await.expect("first reconcile");
    reconcile_schedule(schedule.clone(), ctx.clone()).await.expect("again, while the incr runs");
    assert_eq!(all_backups().await, vec![(incr_3.clone(), BackupType::Incr, Some(3))]);
    let incr = backups.get(&incr_3).await.unwrap();
    assert_eq!(incr.spec.schedule.as_deref(), Some("nightly"));
    let owner = &incr.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("PgCluster", cluster.metadata.uid.as_deref().unwrap())
    );
    assert!(managed_by_relevo(&incr), "created under the relevo field manager");
    let status = schedules.get("nightly").await.unwrap().status.unwrap();
    assert_eq!(status.last_run_time, Some(slot.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)));
    assert_eq!((status.current_cycle_day, status.last_result), (Some(3), Some(RunResult::Running)));
    assert_eq!(status.last_run_backups, vec![incr_3.clone()]);

    complete(incr_3.clone()).await;
    reconcile_schedule(schedule.clone(), ctx.clone()).await.expect("reconcile after the incr");
    assert_eq!(
        all_backups().await,
        vec![(incr_3.clone(), BackupType::Incr, Some(3)), (diff_3.clone(), BackupType::Diff, Some(3))]
    );
    complete(diff_3.clone()).await;
    reconcile_schedule(schedule.clone(), ctx.clone()).await.expect("reconcile after the diff");
    let status = schedules.get("nightly").await.unwrap().status.unwrap();
    let next = slot + TimeDelta::seconds(20);
    assert_eq!(status.last_result, Some(RunResult::Completed));
    assert_eq!(status.next_run_time, Some(next.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)));
    assert_eq!(status.next_cycle_day, Some(4));
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Scheduled"));

    // The next slot: day 4's incr.
    let wait = (next - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
    tokio::time::sleep(wait).await;
    reconcile_schedule(schedule.clone(), ctx.clone()).await.expect("reconcile at the next slot");
    let day_4 = format!("nightly-{}-1", stamp(next));
    assert_eq!(all_backups().await.last(), Some(&(day_4, BackupType::Incr, Some(4))));

    // Suspended: the Ready condition says so and nothing more is created.
    let suspend = serde_json::json!({"spec": {"suspend": true}});
    schedules.patch("nightly", &PatchParams::default(), &Patch::Merge(&suspend)).await.unwrap();
    let suspended = Arc::new(schedules.get("nightly").await.unwrap());
    reconcile_schedule(suspended.clone(), ctx.clone()).await.expect("reconcile suspended");
    let status = schedules.get("nightly").await.unwrap().status.unwrap();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Suspended"));
    assert_eq!(all_backups().await.len(), 3, "day 3: incr, diff; day 4: incr");
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

    let operator = setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let ns = &namespace(&admin, "it-retention").await;
    let ctx = context(operator);
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
    let repo_labels = relevo::pgcluster::names::cluster_labels("zeta", "repo-host");
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
    let job_pod_labels = BTreeMap::from([("batch.kubernetes.io/job-name".to_string(), "new".to_string())]);
    pods.create(&PostParams::default(), &pod("new-abcde", job_pod_labels)).await.unwrap();
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
