//! From a Completed Backup to what the outside world sees of it: its Redis record (in the
//! time zone of the cluster's BackupSchedule) and the PgCluster's `status.lastBackup`. Pure:
//! everything comes from the Backup's status, which the Job's result filled, so a record
//! written after an operator restart is the same as one written at once.

use std::str::FromStr as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use kube::ResourceExt;

use super::redis_record::BackupRecord;
use crate::crd::pgcluster::LastBackup;
use crate::crd::{Backup, BackupSchedule};
use crate::pgbackrest::info::{backup_set_path, label_type};
use crate::protocol::names;

/// The Redis record of a Completed Backup; `None` while its status lacks the label or start.
pub fn record_of(backup: &Backup) -> Option<BackupRecord> {
    let status = backup.status.as_ref()?;
    let label = status.label.clone()?;
    let start = parse_time(status.start_time.as_deref()?)?;
    let stop = status.stop_time.as_deref().and_then(parse_time).unwrap_or(start);
    let cluster = backup.spec.cluster.clone();
    let stanza = names::stanza(&cluster);
    let unsigned = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    Some(BackupRecord {
        namespace: backup.namespace().unwrap_or_default(),
        storage_path: backup_set_path(names::REPO_PATH, &stanza, &label),
        stanza,
        cluster,
        // What pgBackRest made: a diff or incr without a prior full is a full.
        backup_type: label_type(&label).unwrap_or(backup.spec.backup_type),
        label,
        start,
        primary: status.primary.clone().unwrap_or_default(),
        size_bytes: unsigned(status.size_bytes),
        repo_size_bytes: unsigned(status.repo_size_bytes),
        duration_seconds: u64::try_from((stop - start).num_seconds()).unwrap_or(0),
        status: "Completed".to_string(),
        cycle_day: backup.spec.cycle_day.and_then(|d| u32::try_from(d).ok()),
    })
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// Time zone of a backup's Redis key, `fecha` and `hora`: its BackupSchedule's, else that of
/// a BackupSchedule of its cluster (the first by name), else UTC. `schedules` are those of
/// the Backup's namespace.
pub fn record_time_zone(backup: &Backup, schedules: &[BackupSchedule]) -> Tz {
    let named =
        backup.spec.schedule.as_deref().and_then(|name| schedules.iter().find(|s| s.name_any() == name));
    let of_cluster =
        || schedules.iter().filter(|s| s.spec.cluster == backup.spec.cluster).min_by_key(|s| s.name_any());
    named.or_else(of_cluster).and_then(|s| Tz::from_str(&s.spec.time_zone).ok()).unwrap_or(Tz::UTC)
}

/// The PgCluster's `lastBackup` for a Completed Backup.
pub fn last_backup_of(backup: &Backup) -> LastBackup {
    let status = backup.status.as_ref();
    LastBackup {
        name: backup.name_any(),
        label: status.and_then(|s| s.label.clone()),
        completion_time: status.and_then(|s| s.stop_time.clone()),
    }
}

/// Whether `candidate` should replace the cluster's `current` lastBackup: it is a different
/// backup that finished later (a record retried late never moves lastBackup backwards).
pub fn is_newer(candidate: &LastBackup, current: Option<&LastBackup>) -> bool {
    let Some(current) = current else { return true };
    if current.name == candidate.name {
        return current != candidate;
    }
    let time = |b: &LastBackup| b.completion_time.as_deref().and_then(parse_time);
    match (time(candidate), time(current)) {
        (Some(new), Some(old)) => new > old,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BackupPhase, BackupStatus, BackupType};

    fn completed(schedule: Option<&str>) -> Backup {
        let manifest = format!(
            "apiVersion: relevo.dev/v1alpha1\nkind: Backup\n\
             metadata: {{name: nightly-20251009120000-1, namespace: prod}}\n\
             spec: {{cluster: pg, type: incr, cycleDay: 2{}}}\n",
            schedule.map(|s| format!(", schedule: {s}")).unwrap_or_default()
        );
        let mut backup: Backup = serde_saphyr::from_str(&manifest).unwrap();
        backup.status = Some(BackupStatus {
            phase: Some(BackupPhase::Completed),
            primary: Some("pg-2".into()),
            label: Some("20251007-120000F_20251009-120000I".into()),
            start_time: Some("2025-10-09T12:00:00Z".into()),
            stop_time: Some("2025-10-09T12:00:03Z".into()),
            size_bytes: Some(25_270_000),
            repo_size_bytes: Some(240_150),
            ..BackupStatus::default()
        });
        backup
    }

    fn schedule(name: &str, cluster: &str, tz: &str) -> BackupSchedule {
        let manifest = format!(
            "apiVersion: relevo.dev/v1alpha1\nkind: BackupSchedule\nmetadata: {{name: {name}, namespace: prod}}\n\
             spec: {{cluster: {cluster}, schedule: '0 2 * * *', timeZone: {tz}}}\n"
        );
        serde_saphyr::from_str(&manifest).unwrap()
    }

    #[test]
    fn the_record_comes_from_the_status_alone() {
        let record = record_of(&completed(None)).unwrap();
        assert_eq!(
            record,
            BackupRecord {
                namespace: "prod".into(),
                cluster: "pg".into(),
                stanza: "pg".into(),
                label: "20251007-120000F_20251009-120000I".into(),
                backup_type: BackupType::Incr,
                start: DateTime::parse_from_rfc3339("2025-10-09T12:00:00Z").unwrap().with_timezone(&Utc),
                storage_path: "/pgbackrest/repo/backup/pg/20251007-120000F_20251009-120000I".into(),
                primary: "pg-2".into(),
                size_bytes: 25_270_000,
                repo_size_bytes: 240_150,
                duration_seconds: 3,
                status: "Completed".into(),
                cycle_day: Some(2),
            }
        );
    }

    #[test]
    fn an_incr_that_pgbackrest_made_full_is_recorded_as_full() {
        let mut backup = completed(None);
        backup.status.as_mut().unwrap().label = Some("20251009-120000F".into());
        assert_eq!(record_of(&backup).unwrap().backup_type, BackupType::Full);
    }

    #[test]
    fn no_record_without_a_label_or_start() {
        let mut backup = completed(None);
        backup.status.as_mut().unwrap().start_time = None;
        assert_eq!(record_of(&backup), None);
        backup.status = None;
        assert_eq!(record_of(&backup), None);
    }

    #[test]
    fn times_follow_the_schedule_of_the_backup_then_of_its_cluster_then_utc() {
        let schedules = [
            schedule("b-other", "other", "Asia/Tokyo"),
            schedule("nightly", "pg", "Europe/Madrid"),
            schedule("a-pg", "pg", "America/Bogota"),
        ];
        assert_eq!(record_time_zone(&completed(Some("nightly")), &schedules), chrono_tz::Europe::Madrid);
        assert_eq!(record_time_zone(&completed(None), &schedules), chrono_tz::America::Bogota);
        assert_eq!(record_time_zone(&completed(None), &schedules[..1]), Tz::UTC);
        assert_eq!(record_time_zone(&completed(None), &[schedule("x", "pg", "Not/AZone")]), Tz::UTC);
    }

    #[test]
    fn last_backup_only_moves_forward() {
        let new = last_backup_of(&completed(None));
        assert_eq!(new.completion_time.as_deref(), Some("2025-10-09T12:00:03Z"));
        assert!(is_newer(&new, None));
        assert!(!is_newer(&new, Some(&new)), "already there");
        let older = LastBackup {
            name: "a".into(),
            label: None,
            completion_time: Some("2025-10-08T12:00:00Z".into()),
        };
        let newer = LastBackup { completion_time: Some("2025-10-10T00:00:00+02:00".into()), ..older.clone() };
        assert!(is_newer(&new, Some(&older)));
        assert!(!is_newer(&new, Some(&newer)));
    }
}
