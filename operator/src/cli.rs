//! User commands for those used to `failover.sh` / `failback.sh`: each creates a Switchover
//! and prints its name; the operator does the work, and `kubectl get switchovers` shows it.

use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

use crate::crd::{Switchover, SwitchoverMode, SwitchoverPhase, SwitchoverSpec};

/// Where and for which cluster.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// Name of the PgCluster.
    pub cluster: String,
    /// Namespace; the kubeconfig's current one when unset.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// The instance to fail back to: the old primary of the most recently completed Switchover
/// of `cluster` (by its Completed time, then creation time).
pub fn failback_target(switchovers: &[Switchover], cluster: &str) -> Result<String, String> {
    let completed_at = |so: &Switchover| {
        so.status.as_ref().and_then(|s| {
            s.phase_timestamps
                .iter()
                .rev()
                .find(|t| t.phase == SwitchoverPhase::Completed)
                .map(|t| t.time.clone())
        })
    };
    switchovers
        .iter()
        .filter(|so| so.spec.cluster == cluster)
        .filter(|so| so.status.as_ref().and_then(|s| s.phase) == Some(SwitchoverPhase::Completed))
        .max_by_key(|so| (completed_at(so), so.metadata.creation_timestamp.clone()))
        .and_then(|so| so.status.as_ref().and_then(|s| s.from.clone()))
        .ok_or_else(|| format!("no completed switchover of {cluster} to fail back from"))
}

/// The Switchover to create; the API server completes the generated name.
pub fn request(cluster: &str, target: Option<String>, kind: &str) -> Switchover {
    let mut so = Switchover::new(
        "",
        SwitchoverSpec {
            cluster: cluster.to_owned(),
            target_instance: target,
            mode: SwitchoverMode::Planned,
        },
    );
    so.metadata.name = None;
    so.metadata.generate_name = Some(format!("{cluster}-{kind}-"));
    so
}

async fn create(target: &Target, so: Switchover) -> anyhow::Result<String> {
    let client = Client::try_default().await?;
    let namespace = target.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<Switchover> = Api::namespaced(client, &namespace);
    let params = PostParams { field_manager: Some("relevo-cli".into()), ..PostParams::default() };
    let created = api.create(&params, &so).await?;
    Ok(created.name_any())
}

/// `relevo switchover <cluster> [--to X]`.
pub async fn switchover(target: &Target, to: Option<String>) -> anyhow::Result<String> {
    create(target, request(&target.cluster, to, "switchover")).await
}

/// `relevo failback <cluster>`.
pub async fn failback(target: &Target) -> anyhow::Result<String> {
    let client = Client::try_default().await?;
    let namespace = target.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<Switchover> = Api::namespaced(client, &namespace);
    let history = api.list(&ListParams::default()).await?;
    let to = failback_target(&history.items, &target.cluster).map_err(anyhow::Error::msg)?;
    create(target, request(&target.cluster, Some(to), "failback")).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::SwitchoverStatus;
    use crate::crd::switchover::PhaseTimestamp;

    fn done(name: &str, from: &str, at: &str, phase: SwitchoverPhase) -> Switchover {
        let mut so = request("pg", None, "switchover");
        so.metadata.name = Some(name.into());
        so.status = Some(SwitchoverStatus {
            phase: Some(phase),
            from: Some(from.into()),
            phase_timestamps: vec![PhaseTimestamp { phase, time: at.into() }],
            ..SwitchoverStatus::default()
        });
        so
    }

    #[test]
    fn failback_goes_to_the_last_completed_switchover_s_old_primary() {
        let history = [
            done("a", "pg-1", "2025-10-07T10:00:00.000000Z", SwitchoverPhase::Completed),
            done("b", "pg-2", "2025-10-07T11:00:00.000000Z", SwitchoverPhase::Completed),
            done("c", "pg-3", "2025-10-07T12:00:00.000000Z", SwitchoverPhase::Failed),
        ];
        assert_eq!(failback_target(&history, "pg").as_deref(), Ok("pg-2"));
        assert!(failback_target(&history, "other").is_err());
        assert!(failback_target(&[], "pg").is_err());
    }

    #[test]
    fn requests_are_planned_with_generated_names() {
        let so = request("pg", Some("pg-2".into()), "failback");
        assert_eq!(so.metadata.generate_name.as_deref(), Some("pg-failback-"));
        assert_eq!(so.spec.mode, SwitchoverMode::Planned);
        assert_eq!(so.spec.target_instance.as_deref(), Some("pg-2"));
    }
}
