//! Integration tests against a real kube-apiserver and etcd (no node): the CRDs install,
//! and one reconcile of a PgCluster builds every child with owner references under the
//! operator's field manager, keeps credentials on re-reconcile, and refuses a spec the
//! operator owns with a Degraded condition. Every call is made as the operator's
//! ServiceAccount, so the least-privilege RBAC of manifests/base/rbac.yaml is tested too.
//!
//! Run by `make integration` (e2e/testbed/apiserver.sh provides the apiserver):
//! `RELEVO_IT_KUBECONFIG=… cargo test -p relevo --features integration --test apiserver`.
//!
//! This file holds the harness (an admin and an operator client, a namespace per test, the
//! operator's Context); each module is one concern.

mod backup;
mod leader;
mod namespaced;
mod pgcluster;
mod role_move;
mod schedule;
mod tls;
mod volumes;

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
    let manifest = |path: &str| {
        let path = format!("{}/../manifests/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    // The ServiceAccount and ClusterRoles, and the cluster-wide install's binding.
    let rbac = format!("{}\n---\n{}", manifest("base/rbac.yaml"), manifest("cluster-wide.yaml"));
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

/// What most tests start from: an admin client, a fresh namespace named from `prefix`, and
/// the operator's Context acting as its ServiceAccount.
async fn operator_bed(prefix: &str) -> (Client, String, Arc<Context>) {
    let operator = setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let ns = namespace(&admin, prefix).await;
    (admin, ns, context(operator))
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

/// The Degraded condition of PgCluster `name`, as the API has it now.
async fn degraded_now(admin: &Client, ns: &str, name: &str) -> relevo::crd::common::Condition {
    let cluster = Api::<PgCluster>::namespaced(admin.clone(), ns).get(name).await.unwrap();
    let status = cluster.status.expect("a status");
    status.conditions.into_iter().find(|c| c.type_ == "Degraded").expect("a Degraded condition")
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
