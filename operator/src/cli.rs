//! User commands for those used to the docker-compose scripts:
//! - `relevo switchover` / `relevo failback` (`failover.sh` / `failback.sh`) create a
//!   Switchover; `kubectl get switchovers` shows it;
//! - `relevo backup` (`dia1.sh` … `dia6.sh`) creates the Backups of a cycle day;
//!   `kubectl get backups` shows them;
//! - `relevo backups` (`listar_backups.sh`) lists the Redis records of a cluster's backups.
//!
//! The operator does the work; these only create objects or read records. What they create
//! is built by pure functions, tested below.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

use crate::backup::redis_target::{self, RedisTarget};
use crate::backup::result::human_size;
use crate::backup::run::parse_backup_type;
use crate::crd::backup_schedule::default_cycle;
use crate::crd::{
    Backup, BackupSchedule, BackupSpec, BackupType, PgCluster, Switchover, SwitchoverMode, SwitchoverPhase,
    SwitchoverSpec,
};
use crate::protocol::names;

/// Field manager of the objects the CLI creates.
const CLI_FIELD_MANAGER: &str = "relevo-cli";

/// Where and for which cluster.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterRef {
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

async fn create(target: &ClusterRef, so: Switchover) -> anyhow::Result<String> {
    let client = Client::try_default().await?;
    let namespace = target.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<Switchover> = Api::namespaced(client, &namespace);
    let params = PostParams { field_manager: Some(CLI_FIELD_MANAGER.into()), ..PostParams::default() };
    let created = api.create(&params, &so).await?;
    Ok(created.name_any())
}

/// `relevo switchover <cluster> [--to X]`.
pub async fn switchover(target: &ClusterRef, to: Option<String>) -> anyhow::Result<String> {
    create(target, request(&target.cluster, to, "switchover")).await
}

/// `relevo failback <cluster>`.
pub async fn failback(target: &ClusterRef) -> anyhow::Result<String> {
    let client = Client::try_default().await?;
    let namespace = target.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<Switchover> = Api::namespaced(client, &namespace);
    let history = api.list(&ListParams::default()).await?;
    let to = failback_target(&history.items, &target.cluster).map_err(anyhow::Error::msg)?;
    create(target, request(&target.cluster, Some(to), "failback")).await
}

/// `relevo backup <cluster> (--day N | --type T)`.
#[derive(clap::Args, Debug, Clone)]
pub struct BackupArgs {
    #[command(flatten)]
    pub target: ClusterRef,
    #[command(flatten)]
    pub what: BackupChoice,
}

/// What `relevo backup` creates: a cycle day's backups, or one backup of a type.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[group(required = true, multiple = false)]
pub struct BackupChoice {
    /// Day of the backup cycle: its backups, in order (day 3 = incr, then diff). The cycle is
    /// the cluster's BackupSchedule's, or the default one.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=6))]
    pub day: Option<u32>,
    /// One backup of this type: full, diff or incr.
    #[arg(long = "type", value_parser = parse_backup_type)]
    pub backup_type: Option<BackupType>,
}

/// The Backups of a `relevo backup` request, in the order they must run. Names are
/// `<cluster>-<YYYYMMDDHHMMSS>-<n>`: within one request the operator runs them in creation
/// order, and equal creation times are ordered by name. `cycle` is the cluster's cycle.
pub fn backup_requests(
    cluster: &str,
    what: &BackupChoice,
    cycle: &[Vec<BackupType>],
    now: DateTime<Utc>,
) -> Result<Vec<Backup>, String> {
    let (types, cycle_day) = match (what.day, what.backup_type) {
        (Some(day), _) => {
            let types = usize::try_from(day)
                .ok()
                .and_then(|d| d.checked_sub(1))
                .and_then(|i| cycle.get(i))
                .filter(|types| !types.is_empty())
                .ok_or_else(|| format!("the cycle of {cluster} has no day {day}"))?;
            (types.clone(), i32::try_from(day).ok())
        }
        (None, Some(backup_type)) => (vec![backup_type], None),
        (None, None) => return Err("choose --day or --type".to_string()),
    };
    let stamp = now.format("%Y%m%d%H%M%S");
    Ok(types
        .into_iter()
        .enumerate()
        .map(|(i, backup_type)| {
            let mut backup = Backup::new(
                &format!("{cluster}-{stamp}-{}", i + 1),
                BackupSpec { cluster: cluster.to_owned(), backup_type, cycle_day, schedule: None },
            );
            backup.metadata.labels =
                Some(BTreeMap::from([(names::LABEL_CLUSTER.to_string(), cluster.to_owned())]));
            backup
        })
        .collect())
}

/// The cycle of `cluster`: that of its BackupSchedule (the first by name), else the default.
pub fn cycle_of(cluster: &str, schedules: &[BackupSchedule]) -> Vec<Vec<BackupType>> {
    schedules
        .iter()
        .filter(|s| s.spec.cluster == cluster)
        .min_by_key(|s| s.name_any())
        .map(|s| s.spec.cycle.clone())
        .unwrap_or_else(default_cycle)
}

/// `relevo backup`: creates the Backups in order, calling `created` with each name.
pub async fn backup(args: &BackupArgs, mut created: impl FnMut(&str)) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let namespace = args.target.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let cluster = &args.target.cluster;
    let clusters: Api<PgCluster> = Api::namespaced(client.clone(), &namespace);
    if clusters.get_opt(cluster).await?.is_none() {
        anyhow::bail!("PgCluster {cluster} not found in namespace {namespace}");
    }
    let schedules: Api<BackupSchedule> = Api::namespaced(client.clone(), &namespace);
    let cycle = cycle_of(cluster, &schedules.list(&ListParams::default()).await?.items);
    let requests = backup_requests(cluster, &args.what, &cycle, Utc::now()).map_err(anyhow::Error::msg)?;
    let api: Api<Backup> = Api::namespaced(client, &namespace);
    let params = PostParams { field_manager: Some(CLI_FIELD_MANAGER.into()), ..PostParams::default() };
    for backup in &requests {
        created(&api.create(&params, backup).await?.name_any());
    }
    Ok(())
}

/// Columns of `relevo backups`: the users' `listar_backups.sh` columns, then what
/// `peso_backups.sh` answered (the database's size at the backup, what the backup added to
/// the repository) and where the set lies (`direccion_almacenamiento`).
const COLUMNS: [&str; 9] =
    ["KEY", "FECHA", "HORA", "TIPO_BACKUP", "MAESTRO_USADO", "LABEL", "SIZE", "REPO_SIZE", "REPOSITORY"];

/// The table `relevo backups` prints: one line per record, in the order given (time order).
pub fn format_listing(records: &[(String, BTreeMap<String, String>)]) -> String {
    let field = |fields: &BTreeMap<String, String>, name: &str| fields.get(name).cloned().unwrap_or_default();
    let bytes = |fields: &BTreeMap<String, String>, name: &str| {
        fields.get(name).and_then(|s| s.parse::<u64>().ok()).map(human_size).unwrap_or_default()
    };
    let rows: Vec<[String; 9]> = records
        .iter()
        .map(|(key, f)| {
            [
                key.clone(),
                field(f, "fecha"),
                field(f, "hora"),
                field(f, "tipo_backup"),
                field(f, "maestro_usado"),
                field(f, "label"),
                bytes(f, "size_bytes"),
                bytes(f, "repo_size_bytes"),
                field(f, "direccion_almacenamiento"),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([COLUMNS[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut text = line(&COLUMNS);
    for row in &rows {
        text.push_str(&line(&row.each_ref().map(String::as_str)));
    }
    text
}

/// The cluster's Redis, as this machine reaches it: the managed Redis at its Service's
/// ClusterIP (this runs on a node, outside cluster DNS), or the external one.
async fn redis_of(
    client: &Client,
    namespace: &str,
    cluster: &PgCluster,
) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let redis = redis_target::target_of(cluster);
    let host = match &redis {
        RedisTarget::Managed { service, .. } => {
            let services: Api<Service> = Api::namespaced(client.clone(), namespace);
            let svc = services
                .get(service)
                .await
                .map_err(|source| redis_target::ConnectError::Service { name: service.clone(), source })?;
            svc.spec
                .and_then(|s| s.cluster_ip)
                .filter(|ip| !ip.is_empty() && ip != "None")
                .ok_or_else(|| redis_target::ConnectError::NoClusterIp(service.clone()))?
        }
        RedisTarget::External { .. } => String::new(),
    };
    Ok(redis_target::connect(client, namespace, &redis, &host).await?)
}

async fn cluster_of(target: &ClusterRef) -> anyhow::Result<(Client, String, PgCluster)> {
    let client = Client::try_default().await?;
    let namespace = target.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let clusters: Api<PgCluster> = Api::namespaced(client.clone(), &namespace);
    let cluster = clusters
        .get_opt(&target.cluster)
        .await?
        .ok_or_else(|| anyhow::anyhow!("PgCluster {} not found in namespace {namespace}", target.cluster))?;
    Ok((client, namespace, cluster))
}

/// `relevo backups <cluster>`: the cluster's Redis records, oldest first.
pub async fn backups(target: &ClusterRef) -> anyhow::Result<String> {
    let (client, namespace, cluster) = cluster_of(target).await?;
    let mut conn = redis_of(&client, &namespace, &cluster).await?;
    let records = crate::backup::redis_io::list_records(&mut conn, &namespace, &target.cluster).await?;
    if records.is_empty() {
        return Ok(format!("No backups of {namespace}/{} are recorded in Redis.\n", target.cluster));
    }
    Ok(format_listing(&records))
}

/// `relevo backups <cluster> --prune-orphans` (what `limpiar_backups.sh` did): the Redis
/// records whose backup set the repository no longer lists are printed, then deleted (with
/// their index entries and latest pointers) once `confirm` agrees. The records are read
/// before the repository, so a backup that finishes in between cannot look orphaned; records
/// without a label (the old scripts') are never touched. A repository that lists no backup
/// at all is refused: that is a lost or foreign repository more likely than a clean one.
pub async fn prune_orphans(
    target: &ClusterRef,
    confirm: impl FnOnce(&str) -> bool,
) -> anyhow::Result<String> {
    use crate::backup::{redis_io, redis_record, repository};
    let (client, namespace, cluster) = cluster_of(target).await?;
    let mut conn = redis_of(&client, &namespace, &cluster).await?;
    let records = redis_io::list_records(&mut conn, &namespace, &target.cluster).await?;
    let live = repository::live_labels(&client, &namespace, &target.cluster).await?;
    if live.is_empty() {
        anyhow::bail!(
            "the repository of {namespace}/{} lists no backup: refusing to treat every record as an orphan",
            target.cluster
        );
    }
    let labelled = records.iter().map(|(key, f)| (key.as_str(), f.get("label").map_or("", String::as_str)));
    let doomed = redis_record::orphans(labelled, &live);
    if doomed.is_empty() {
        return Ok(format!(
            "No orphan records: the repository of {namespace}/{} holds every labelled backup recorded in Redis.\n",
            target.cluster
        ));
    }
    let orphaned: Vec<_> = records.iter().filter(|(key, _)| doomed.contains(key)).cloned().collect();
    let listing = format_listing(&orphaned);
    let question = format!(
        "{listing}{} record(s) name a backup the repository no longer has. Delete them?",
        doomed.len()
    );
    if !confirm(&question) {
        anyhow::bail!("{question}\nNothing deleted (answer y, or pass --yes).");
    }
    redis_io::delete_records(&mut conn, &namespace, &target.cluster, &doomed).await?;
    Ok(format!("{listing}Deleted {} orphan record(s).\n", doomed.len()))
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

    fn day(day: u32) -> BackupChoice {
        BackupChoice { day: Some(day), backup_type: None }
    }

    fn at_noon() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-10-09T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_cycle_day_creates_its_backups_in_order() {
        let requests = backup_requests("pg", &day(3), &default_cycle(), at_noon()).unwrap();
        let made: Vec<_> = requests
            .iter()
            .map(|b| (b.metadata.name.as_deref().unwrap(), b.spec.backup_type, b.spec.cycle_day))
            .collect();
        assert_eq!(
            made,
            [
                ("pg-20251009120000-1", BackupType::Incr, Some(3)),
                ("pg-20251009120000-2", BackupType::Diff, Some(3))
            ]
        );
        assert!(requests.iter().all(|b| b.spec.cluster == "pg" && b.spec.schedule.is_none()));
        assert_eq!(requests[0].metadata.labels.as_ref().unwrap()["relevo.dev/cluster"], "pg");
        let six: Vec<_> = backup_requests("pg", &day(6), &default_cycle(), at_noon())
            .unwrap()
            .iter()
            .map(|b| b.spec.backup_type)
            .collect();
        assert_eq!(six, [BackupType::Diff, BackupType::Full]);
    }

    #[test]
    fn one_backup_of_a_type_has_no_cycle_day() {
        let what = BackupChoice { day: None, backup_type: Some(BackupType::Full) };
        let requests = backup_requests("pg", &what, &default_cycle(), at_noon()).unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!((requests[0].spec.backup_type, requests[0].spec.cycle_day), (BackupType::Full, None));
    }

    #[test]
    fn a_day_outside_the_cycle_is_refused() {
        assert!(backup_requests("pg", &day(7), &default_cycle(), at_noon()).is_err());
        assert!(backup_requests("pg", &day(0), &default_cycle(), at_noon()).is_err());
        let neither = BackupChoice { day: None, backup_type: None };
        assert!(backup_requests("pg", &neither, &default_cycle(), at_noon()).is_err());
    }

    #[test]
    fn the_cluster_s_schedule_cycle_wins_over_the_default() {
        let schedule: BackupSchedule = serde_saphyr::from_str(
            "apiVersion: relevo.dev/v1alpha1\nkind: BackupSchedule\nmetadata: {name: s, namespace: db}\n\
             spec: {cluster: pg, schedule: '0 2 * * *', cycle: [[full], [incr], [diff], [incr], [incr], [full]]}\n",
        )
        .unwrap();
        assert_eq!(cycle_of("pg", std::slice::from_ref(&schedule))[2], [BackupType::Diff]);
        assert_eq!(cycle_of("other", &[schedule]), default_cycle());
    }

    #[test]
    fn the_cli_takes_a_day_or_a_type_never_both() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: BackupArgs,
        }
        let parsed = Cli::try_parse_from(["backup", "pg", "-n", "db", "--day", "3"]).unwrap().args;
        assert_eq!((parsed.target.cluster.as_str(), parsed.target.namespace.as_deref()), ("pg", Some("db")));
        assert_eq!(parsed.what, day(3));
        let typed = Cli::try_parse_from(["backup", "pg", "--type", "incr"]).unwrap().args;
        assert_eq!(typed.what.backup_type, Some(BackupType::Incr));
        for bad in [
            vec!["backup", "pg"],
            vec!["backup", "pg", "--day", "3", "--type", "full"],
            vec!["backup", "pg", "--day", "7"],
            vec!["backup", "pg", "--type", "weekly"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn listings_read_like_listar_backups() {
        let record = |key: &str, fecha: &str, hora: &str, tipo: &str, label: &str, size: &str| {
            let path = format!("/pgbackrest/repo/backup/pg/{label}");
            let fields = [
                ("fecha", fecha),
                ("hora", hora),
                ("tipo_backup", tipo),
                ("maestro_usado", "pg-1"),
                ("label", label),
                ("size_bytes", size),
                ("repo_size_bytes", "3145728"),
                ("direccion_almacenamiento", path.as_str()),
            ];
            (key.to_string(), fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        let text = format_listing(&[
            record(
                "backup:2025-10-07_12-00-00",
                "2025-10-07",
                "12:00:00",
                "completo",
                "20251007-120000F",
                "25270000",
            ),
            record(
                "backup:2025-10-08_12-00-01",
                "2025-10-08",
                "12:00:01",
                "incremental",
                "20251007-120000F_20251008-120001I",
                "2048",
            ),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0]
                .starts_with("KEY                         FECHA       HORA      TIPO_BACKUP  MAESTRO_USADO"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("backup:2025-10-07_12-00-00  2025-10-07  12:00:00  completo     pg-1"),
            "{text}"
        );
        assert!(
            lines[1].ends_with(
                "20251007-120000F                   24.1MiB  3.0MiB     /pgbackrest/repo/backup/pg/20251007-120000F"
            ),
            "{text}"
        );
        assert!(lines[2].contains("20251007-120000F_20251008-120001I  2.0KiB   3.0MiB"), "{text}");
        // A record of the old scripts, without sizes or path, leaves those cells empty.
        let old = (
            String::from("backup:2024-01-01_00-00-00"),
            BTreeMap::from([("fecha".into(), "2024-01-01".into())]),
        );
        let text = format_listing(&[old]);
        assert!(text.lines().nth(1).unwrap().ends_with("2024-01-01"), "{text}");
    }
}
