//! `relevo run`: logging, the Kubernetes client, the HTTP endpoints, waiting for the CRDs,
//! standing by until this replica holds the operator Lease, then the controllers until
//! SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::config::{LogFormat, RunArgs};
use crate::crd::{Backup, BackupSchedule, PgCluster, Switchover};
use crate::metrics::Metrics;
use crate::runtime::context::{Context, ProcessStage, Readiness};

/// How often a missing CRD is looked for again.
const CRD_POLL_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid log filter {filter:?}")]
    LogFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("no usable Kubernetes configuration (in-cluster or KUBECONFIG)")]
    Client(#[source] kube::Error),
    #[error("stopped leading; exiting so that a restart waits for the lease")]
    Leadership(#[source] crate::leader::LeadershipLost),
    #[error("serving HTTP on {addr}")]
    Http {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub fn init_logging(config: &RunArgs) -> Result<(), StartError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_filter)
        .map_err(|source| StartError::LogFilter { filter: config.log_filter.clone(), source })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

pub async fn run(config: RunArgs) -> Result<(), StartError> {
    let mut registry = Registry::with_prefix("relevo");
    let metrics = Metrics::register(&mut registry);
    let client = counted_client(&metrics).await?;
    let readiness = Readiness::default();

    let addr = config.http_addr;
    let router = crate::http::router(Arc::new(registry), readiness.clone());
    let http = tokio::spawn(async move { crate::http::serve(addr, router).await });
    info!(%addr, "serving /healthz, /readyz and /metrics");

    let namespace = config.pod_namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let identity = config.pod_name.clone().unwrap_or_else(local_identity);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    metrics.set_leading(false);
    let standing_by = async {
        wait_for_crds(&client, &config).await;
        readiness.set(ProcessStage::StandingBy);
        crate::leader::acquire(&leases, &identity).await
    };
    // As PID 1 of its container the process gets SIGTERM only through a handler: without
    // this one a standby replica would take the whole grace period to stop.
    let leading_since = tokio::select! {
        since = standing_by => since,
        () = terminated() => {
            info!("SIGTERM before leading; stopping");
            return Ok(());
        }
    };
    let ctx = Context::new(client, config, metrics.clone(), readiness.clone());
    readiness.set(ProcessStage::Leading);
    metrics.set_leading(true);
    info!("CRDs found, leading; controllers starting");

    let lease_watch = crate::lease::watch::run(ctx.clone(), ctx.cluster_wake.sender.clone());
    let outcome = tokio::select! {
        lost = crate::leader::hold(&leases, &identity, leading_since) => Err(StartError::Leadership(lost)),
        () = lease_watch => { info!("primary lease watch stopped"); Ok(()) }
        ((), (), (), ()) = futures::future::join4(
            crate::pgcluster::controller::run(ctx.clone()),
            crate::switchover::controller::run(ctx.clone()),
            crate::backup::controller::run(ctx.clone()),
            crate::backup::schedule_controller::run(ctx),
        ) => { info!("controllers stopped"); Ok(()) }
        served = http => {
            let source = match served {
                Ok(Err(error)) => error,
                Ok(Ok(())) => std::io::Error::other("HTTP server stopped"),
                Err(join) => std::io::Error::other(join),
            };
            Err(StartError::Http { addr, source })
        }
    };
    // A lost leadership is not released: another operator may already hold the Lease.
    if !matches!(outcome, Err(StartError::Leadership(_))) {
        crate::leader::release(&leases, &identity).await;
    }
    outcome
}

/// SIGTERM or Ctrl-C. Without a usable handler it never completes, and the default
/// disposition applies.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            warn!(%error, "could not handle SIGTERM");
            std::future::pending::<()>().await;
        }
    }
}

/// The Lease identity outside a pod (`relevo run` on a workstation): host and process.
fn local_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "relevo".into());
    format!("{host}-{}", std::process::id())
}

/// The Kubernetes client (in-cluster, or KUBECONFIG), counting every request it sends
/// (`relevo_api_requests_total`): the operator's API load, measured where it is made.
async fn counted_client(metrics: &Metrics) -> Result<Client, StartError> {
    let config =
        kube::Config::infer().await.map_err(|error| StartError::Client(kube::Error::InferConfig(error)))?;
    let metrics = metrics.clone();
    let count = tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
        metrics.api_request(&request);
        request
    });
    let builder = kube::client::ClientBuilder::try_from(config).map_err(StartError::Client)?;
    Ok(builder.with_layer(&count).build())
}

/// Waits, without giving up, until every relevo CRD is served: the operator may well be
/// installed before its CRDs (GitOps tools apply in any order), and exiting would only
/// turn that into a crash loop. With `--watch-namespace` it lists in that namespace only,
/// which is all a namespaced install may do.
pub async fn wait_for_crds(client: &Client, config: &RunArgs) {
    loop {
        let mut missing = Vec::new();
        for (name, served) in [
            ("pgclusters.relevo.dev", is_served::<PgCluster>(client, config).await),
            ("switchovers.relevo.dev", is_served::<Switchover>(client, config).await),
            ("backupschedules.relevo.dev", is_served::<BackupSchedule>(client, config).await),
            ("backups.relevo.dev", is_served::<Backup>(client, config).await),
        ] {
            if !served {
                missing.push(name);
            }
        }
        if missing.is_empty() {
            return;
        }
        warn!(?missing, retry_in = ?CRD_POLL_INTERVAL, "waiting for CRDs; apply crds/ (or manifests/)");
        tokio::time::sleep(CRD_POLL_INTERVAL).await;
    }
}

/// A one-item list, which needs only the `list` permission the controllers need anyway.
async fn is_served<K>(client: &Client, config: &RunArgs) -> bool
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = crate::runtime::scoped(client, config);
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => true,
        Err(error) if crate::runtime::conventions::is_not_found(&error) => false,
        Err(error) => {
            warn!(%error, kind = %K::kind(&()), "could not check for a CRD");
            false
        }
    }
}
