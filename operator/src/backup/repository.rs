//! What the cluster's pgBackRest repository holds right now, asked of the repo host itself:
//! `pgbackrest info` run in its pod through the API server's exec. For `relevo backups
//! --prune-orphans`, which runs outside the cluster with the user's own credentials.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncReadExt;

use crate::pgbackrest::info;
use crate::pgcluster::builders::pgbackrest::{SIDECAR, repo_host_pgbackrest};
use crate::protocol::names;

/// The whole exchange (exec, pgBackRest reading the repository) is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The labels of every backup set the repository of `cluster` lists. An error when the repo
/// host cannot be asked or its answer cannot be read: never an empty set standing for "don't
/// know".
pub async fn live_labels(
    client: &kube::Client,
    namespace: &str,
    cluster: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let pod = names::repo_pod(cluster);
    let argv = repo_host_pgbackrest(cluster)?.info_json();
    let json =
        tokio::time::timeout(TIMEOUT, run_in(client, namespace, &pod, argv)).await.map_err(|_| {
            anyhow::anyhow!("pgbackrest info in {namespace}/{pod} took longer than {}s", TIMEOUT.as_secs())
        })??;
    let stanzas =
        info::parse(&json).map_err(|e| anyhow::anyhow!("reading pgbackrest info from {pod}: {e}"))?;
    let stanza = names::stanza(cluster);
    let found = info::find_stanza(&stanzas, &stanza)
        .ok_or_else(|| anyhow::anyhow!("the repository on {pod} has no stanza {stanza}"))?;
    Ok(info::live_labels(found))
}

/// Runs `argv` in the repo host's pgBackRest container and returns its standard output; a
/// non-zero exit is an error carrying its standard error.
async fn run_in(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    argv: Vec<String>,
) -> anyhow::Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = AttachParams::default().container(SIDECAR).stdin(false).stdout(true).stderr(true);
    let mut process =
        pods.exec(pod, argv, &params).await.map_err(|e| anyhow::anyhow!("exec in {namespace}/{pod}: {e}"))?;
    // Both streams at once: a full stderr pipe must not stall the stdout being read.
    let (stdout, stderr) = tokio::join!(read_all(process.stdout()), read_all(process.stderr()));
    let (stdout, stderr) = (stdout?, stderr?);
    let status = match process.take_status() {
        Some(status) => status.await,
        None => None,
    };
    process.join().await.map_err(|e| anyhow::anyhow!("exec in {namespace}/{pod}: {e}"))?;
    match status.as_ref().and_then(|s| s.status.as_deref()) {
        Some("Success") => Ok(stdout),
        _ => {
            let why = status.and_then(|s| s.message).unwrap_or_else(|| "no exit status".into());
            anyhow::bail!("pgbackrest info in {namespace}/{pod} failed ({why}): {}", stderr.trim())
        }
    }
}

async fn read_all(stream: Option<impl tokio::io::AsyncRead + Unpin>) -> std::io::Result<String> {
    let mut text = String::new();
    if let Some(mut stream) = stream {
        stream.read_to_string(&mut text).await?;
    }
    Ok(text)
}
