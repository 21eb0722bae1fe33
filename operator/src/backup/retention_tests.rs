use chrono::{TimeZone, Utc};

use super::*;
use crate::backup::result::encode;
use crate::crd::BackupType;

const FULL_1: &str = "20251001-020000F";
const INCR_1: &str = "20251001-020000F_20251002-020000I";
const DIFF_1: &str = "20251001-020000F_20251003-020100D";
const FULL_2: &str = "20251006-020100F";
const INCR_2: &str = "20251006-020100F_20251008-020000I";
const FULL_3: &str = "20251007-020000F";

fn view(reporter: &str, labels: Option<&[&str]>, oldest: &str) -> RepoView {
    RepoView {
        reporter: reporter.into(),
        contents: RepoContents {
            oldest: oldest.into(),
            labels: labels.map(|l| l.iter().map(|s| s.to_string()).collect()),
        },
    }
}

/// After FULL_3 with retention full=2: the first full's chain is gone.
fn after_full_3() -> RepoView {
    view(FULL_3, Some(&[FULL_2, INCR_2, FULL_3]), FULL_2)
}

fn schedule(name: &str, cluster: &str, full: Option<i32>) -> BackupSchedule {
    let retention = full.map(|f| format!(", retention: {{full: {f}}}")).unwrap_or_default();
    serde_saphyr::from_str(&format!(
        "apiVersion: relevo.dev/v1alpha1\nkind: BackupSchedule\nmetadata: {{name: {name}, namespace: db}}\n\
         spec: {{cluster: {cluster}, schedule: '0 2 * * *'{retention}}}\n"
    ))
    .unwrap()
}

fn backup(name: &str, cluster: &str, phase: BackupPhase, label: Option<&str>) -> Backup {
    let mut backup: Backup = serde_saphyr::from_str(&format!(
        "apiVersion: relevo.dev/v1alpha1\nkind: Backup\nmetadata: {{name: {name}, namespace: db}}\n\
         spec: {{cluster: {cluster}, type: full}}\n"
    ))
    .unwrap();
    backup.status = Some(BackupStatus {
        phase: Some(phase),
        label: label.map(String::from),
        redis_recorded: true,
        redis_key: Some(format!("backup:{name}")),
        ..BackupStatus::default()
    });
    backup
}

#[test]
fn the_largest_retention_of_the_cluster_s_schedules_applies() {
    let schedules = [
        schedule("nightly", "pg", Some(2)),
        schedule("weekly", "pg", Some(5)),
        schedule("other", "other", Some(9)),
        schedule("defaulted", "pg", None),
    ];
    assert_eq!(retention_full_for("pg", &schedules), Some(5));
    assert_eq!(retention_full_for("other", &schedules), Some(9));
    assert_eq!(retention_full_for("pg", &schedules[3..]), Some(2), "the CRD default");
    assert_eq!(retention_full_for("lonely", &schedules), None, "the repo host's configuration");
}

#[test]
fn gone_means_not_listed_and_not_newer_than_the_report() {
    let view = after_full_3();
    for label in [FULL_1, INCR_1, DIFF_1] {
        assert!(view.is_gone(label), "{label}");
    }
    for label in [FULL_2, INCR_2, FULL_3, ""] {
        assert!(!view.is_gone(label), "{label:?}");
    }
    // Completed after the report (an incr on FULL_3): this view cannot know it.
    assert!(!view.is_gone("20251007-020000F_20251008-020000I"));
    assert!(!view.is_gone("20251009-020000F"));
    // Not relevo's: sorts after every label, never judged.
    assert!(!view.is_gone("manual"));
}

#[test]
fn a_report_too_long_to_list_still_knows_everything_older_than_its_oldest() {
    let view = view(FULL_3, None, FULL_2);
    assert!(view.is_gone(FULL_1) && view.is_gone(INCR_1) && view.is_gone(DIFF_1));
    assert!(!view.is_gone(FULL_2) && !view.is_gone(INCR_2));
}

#[test]
fn only_completed_backups_of_the_cluster_with_a_gone_label_expire() {
    let backups = [
        backup("a", "pg", BackupPhase::Completed, Some(FULL_1)),
        backup("b", "pg", BackupPhase::Completed, Some(INCR_1)),
        backup("c", "pg", BackupPhase::Completed, Some(FULL_2)),
        backup("d", "pg", BackupPhase::Failed, None),
        backup("e", "pg", BackupPhase::Expired, Some(DIFF_1)),
        backup("f", "other", BackupPhase::Completed, Some(FULL_1)),
        backup("g", "pg", BackupPhase::Running, None),
        backup("h", "pg", BackupPhase::Completed, Some(FULL_3)),
    ];
    let expired = expired_backups(&after_full_3(), "pg", &backups);
    assert_eq!(names(&expired), "a, b");
}

#[test]
fn an_expired_backup_says_why_and_whether_its_record_is_gone() {
    let status = backup("a", "pg", BackupPhase::Completed, Some(FULL_1)).status.unwrap();
    let cleaned = expired_status(status.clone(), &after_full_3(), true);
    assert_eq!(cleaned.phase, Some(BackupPhase::Expired));
    assert_eq!((cleaned.redis_recorded, cleaned.redis_key.as_deref()), (false, None));
    assert_eq!(
        cleaned.message.as_deref(),
        Some(
            "removed from the repository by retention (pgBackRest no longer lists it after backup \
             20251007-020000F); its Redis record is deleted"
        )
    );
    assert_eq!(cleaned.label.as_deref(), Some(FULL_1), "the label stays, for the record");
    let pending = expired_status(status, &after_full_3(), false);
    assert!(pending.redis_recorded);
    assert!(pending.message.unwrap().ends_with("its Redis record goes at the next backup"));
}

#[test]
fn records_of_gone_labels_are_deleted_and_label_less_ones_kept() {
    let records = [
        ("backup:2025-10-01_02-00-00", FULL_1),
        ("backup:2025-10-02_02-00-00", INCR_1),
        ("backup:2025-10-06_02-01-00", FULL_2),
        ("backup:2024-01-01_00-00-00", ""),
    ];
    assert_eq!(
        records_to_delete(&after_full_3(), records),
        vec!["backup:2025-10-01_02-00-00".to_string(), "backup:2025-10-02_02-00-00".to_string()]
    );
}

fn done(label: &str, repository: Option<RepoContents>) -> BackupDone {
    BackupDone {
        label: label.into(),
        backup_type: BackupType::Full,
        start: Utc.with_ymd_and_hms(2025, 10, 7, 2, 0, 0).unwrap(),
        stop: Utc.with_ymd_and_hms(2025, 10, 7, 2, 0, 4).unwrap(),
        size_bytes: 1,
        repo_size_bytes: 1,
        wal_start: None,
        wal_stop: None,
        path: format!("/pgbackrest/repo/backup/pg/{label}"),
        repository,
    }
}

#[test]
fn the_view_comes_from_a_succeeded_job_s_message() {
    let contents = after_full_3().contents;
    let message = encode(&JobResult::Completed(done(FULL_3, Some(contents))));
    assert_eq!(RepoView::of_job(&JobView::Succeeded { message: Some(message) }), Some(after_full_3()));
    // A Job of an older relevo reports no repository: no view, nothing expires.
    let old = encode(&JobResult::Completed(done(FULL_3, None)));
    assert_eq!(RepoView::of_job(&JobView::Succeeded { message: Some(old) }), None);
    let failed = encode(&JobResult::Failed { error: "boom".into() });
    assert_eq!(RepoView::of_job(&JobView::Succeeded { message: Some(failed) }), None);
    assert_eq!(RepoView::of_job(&JobView::Active), None);
}

#[test]
fn hundreds_of_sets_still_fit_in_the_termination_message() {
    let labels: Vec<String> = (0..400)
        .map(|i| format!("2025{:02}{:02}-020000F_20251008-0200{:02}I", i % 12 + 1, i % 28 + 1, i % 60))
        .collect();
    let contents = RepoContents { oldest: labels[0].clone(), labels: Some(labels) };
    let text = encode(&JobResult::Completed(done(FULL_3, Some(contents.clone()))));
    assert!(text.len() <= crate::backup::result::MAX_MESSAGE_BYTES, "{}", text.len());
    let JobResult::Completed(decoded) = decode(&text).unwrap() else { panic!("{text}") };
    assert_eq!(decoded.repository, Some(RepoContents { labels: None, ..contents }));
}
