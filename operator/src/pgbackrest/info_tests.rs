use chrono::TimeZone;

use super::*;

const FIXTURE: &str = include_str!("testdata/info.json");

fn db() -> StanzaInfo {
    let stanzas = parse(FIXTURE).unwrap();
    find_stanza(&stanzas, "db").unwrap().clone()
}

fn utc(d: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 10, d, h, m, s).unwrap()
}

#[test]
fn parses_every_field_relevo_uses() {
    let stanzas = parse(FIXTURE).unwrap();
    assert_eq!(stanzas.len(), 2);
    let db = &stanzas[0];
    assert_eq!(db.name, "db");
    assert_eq!(db.status, StanzaStatus { code: 0, message: "ok".into() });
    assert_eq!(
        db.archive,
        vec![ArchiveRange {
            id: "15-1".into(),
            min: Some("000000010000000000000003".into()),
            max: Some("000000020000000000000011".into()),
        }]
    );
    let labels: Vec<&str> = db.backup.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(
        labels,
        vec![
            "20251007-120000F",
            "20251007-120000F_20251008-120001I",
            "20251007-120000F_20251009-120000I",
            "20251007-120000F_20251009-120003D",
        ]
    );
    let full = &db.backup[0];
    assert_eq!(full.backup_type, BackupType::Full);
    assert_eq!(full.timestamp, StartStop { start: 1_759_838_400, stop: 1_759_838_404 });
    assert_eq!(full.started_at(), Some(utc(7, 12, 0, 0)));
    assert_eq!(full.stopped_at(), Some(utc(7, 12, 0, 4)));
    assert_eq!(full.duration_seconds(), 4);
    assert_eq!(
        full.info,
        SetSizes {
            size: 24_987_034,
            delta: 24_987_034,
            repository: RepoSizes { size: Some(3_257_011), delta: 3_257_011 }
        }
    );
    assert_eq!(
        full.archive,
        Some(StartStop {
            start: "000000010000000000000003".to_string(),
            stop: "000000010000000000000003".to_string()
        })
    );
    assert_eq!((full.prior.as_deref(), full.reference.as_ref(), full.error), (None, None, Some(false)));
    let incr = &db.backup[2];
    assert_eq!(incr.backup_type, BackupType::Incr);
    assert_eq!(incr.prior.as_deref(), Some("20251007-120000F_20251008-120001I"));
    assert_eq!(incr.reference.as_ref().map(Vec::len), Some(2));
    assert_eq!(db.backup[3].backup_type, BackupType::Diff);
}

#[test]
fn stanza_with_problems_parses_too() {
    let stanzas = parse(FIXTURE).unwrap();
    let other = find_stanza(&stanzas, "other").unwrap();
    assert_eq!(other.status, StanzaStatus { code: 1, message: "missing stanza path".into() });
    assert!(other.backup.is_empty());
    assert!(find_stanza(&stanzas, "missing").is_none());
}

#[test]
fn minimal_and_unknown_fields() {
    let json = r#"[{"name":"db","status":{"code":2,"message":"no valid backups","lock":{}},"future":1}]"#;
    let stanzas = parse(json).unwrap();
    assert_eq!(stanzas[0].status.code, 2);
    assert!(stanzas[0].backup.is_empty() && stanzas[0].archive.is_empty());
}

#[test]
fn not_json_is_an_error() {
    let err = parse("ERROR: [055]: unable to load info file").unwrap_err();
    assert!(err.to_string().starts_with("pgbackrest info output is not the expected JSON"), "{err}");
    assert!(
        parse(
            r#"[{"name":"db","status":{"code":0,"message":"ok"},"backup":[{"label":"x","type":"weekly"}]}]"#
        )
        .is_err()
    );
}

#[test]
fn label_types_and_paths() {
    assert_eq!(label_type("20251007-120000F"), Some(BackupType::Full));
    assert_eq!(label_type("20251007-120000F_20251009-120003D"), Some(BackupType::Diff));
    assert_eq!(label_type("20251007-120000F_20251008-120001I"), Some(BackupType::Incr));
    assert_eq!(label_type("20251007-120000"), None);
    assert_eq!(label_type(""), None);
    assert_eq!(
        backup_set_path("/pgbackrest/repo/", "db", "20251007-120000F"),
        "/pgbackrest/repo/backup/db/20251007-120000F"
    );
}

#[test]
fn run_finds_its_own_set() {
    let db = db();
    let found = backup_of_run(&db, BackupType::Incr, utc(8, 11, 59, 58), Some(utc(8, 12, 0, 5))).unwrap();
    assert_eq!(found.label, "20251007-120000F_20251008-120001I");
    // Day 3: the incr, then the diff, each found by its own run.
    let incr = backup_of_run(&db, BackupType::Incr, utc(9, 11, 59, 59), Some(utc(9, 12, 0, 2))).unwrap();
    assert_eq!(incr.label, "20251007-120000F_20251009-120000I");
    let diff = backup_of_run(&db, BackupType::Diff, utc(9, 12, 0, 2), None).unwrap();
    assert_eq!(diff.label, "20251007-120000F_20251009-120003D");
}

#[test]
fn run_window_uses_whole_seconds() {
    let db = db();
    // The Job started 0.7 s into the second pgBackRest recorded as the start.
    let started = utc(7, 12, 0, 0) + chrono::TimeDelta::milliseconds(700);
    let found = backup_of_run(
        &db,
        BackupType::Full,
        started,
        Some(utc(7, 12, 0, 3) + chrono::TimeDelta::milliseconds(10)),
    );
    assert_eq!(found.map(|b| b.label.as_str()), Some("20251007-120000F"));
    assert!(backup_of_run(&db, BackupType::Full, utc(7, 12, 0, 1), None).is_none());
}

#[test]
fn without_a_window_end_the_newest_of_the_type_wins() {
    let db = db();
    let found = backup_of_run(&db, BackupType::Incr, utc(8, 0, 0, 0), None).unwrap();
    assert_eq!(found.label, "20251007-120000F_20251009-120000I");
}

#[test]
fn an_incr_upgraded_to_full_is_found() {
    let db = db();
    let found = backup_of_run(&db, BackupType::Incr, utc(7, 11, 59, 0), Some(utc(7, 12, 0, 10))).unwrap();
    assert_eq!(found.label, "20251007-120000F");
    // A full request never settles for an incr.
    assert!(backup_of_run(&db, BackupType::Full, utc(8, 11, 59, 0), Some(utc(8, 12, 0, 10))).is_none());
}

#[test]
fn expired_labels_are_the_known_ones_pgbackrest_dropped() {
    let db = db();
    let known = [
        "20250930-120000F",
        "20251007-120000F",
        "20250930-120000F_20251001-120000I",
        "20250930-120000F",
        "20251007-120000F_20251009-120003D",
    ];
    assert_eq!(
        expired_labels(known, &db),
        vec!["20250930-120000F".to_string(), "20250930-120000F_20251001-120000I".to_string()]
    );
    assert!(expired_labels([], &db).is_empty());
    assert_eq!(live_labels(&db).len(), 4);
    assert!(live_labels(&db).contains("20251007-120000F_20251009-120003D"));
}
