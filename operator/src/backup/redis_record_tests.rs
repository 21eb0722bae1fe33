use chrono::TimeZone;
use chrono_tz::Europe::Madrid;

use super::*;

pub(crate) fn record(label: &str, backup_type: BackupType, start: DateTime<Utc>) -> BackupRecord {
    BackupRecord {
        namespace: "prod".into(),
        cluster: "pg".into(),
        stanza: "db".into(),
        label: label.into(),
        backup_type,
        start,
        storage_path: format!("/pgbackrest/repo/backup/db/{label}"),
        primary: "pg-1".into(),
        size_bytes: 25_165_824,
        repo_size_bytes: 3_145_728,
        duration_seconds: 4,
        status: "Completed".into(),
        cycle_day: Some(1),
    }
}

fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 10, 7, 12, 0, 0).unwrap()
}

#[test]
fn key_is_the_start_time() {
    assert_eq!(record_key(noon(), Tz::UTC), "backup:2025-10-07_12-00-00");
    assert_eq!(record_key(noon(), Madrid), "backup:2025-10-07_14-00-00");
    let new_year = Utc.with_ymd_and_hms(2025, 12, 31, 23, 30, 5).unwrap();
    assert_eq!(record_key(new_year, Madrid), "backup:2026-01-01_00-30-05");
}

#[test]
fn fields_are_exactly_the_design_ones() {
    let r = record("20251007-120000F", BackupType::Full, noon());
    let expected: Vec<(&str, String)> = vec![
        ("fecha", "2025-10-07".into()),
        ("hora", "12:00:00".into()),
        ("tipo_backup", "completo".into()),
        ("direccion_almacenamiento", "/pgbackrest/repo/backup/db/20251007-120000F".into()),
        ("maestro_usado", "pg-1".into()),
        ("metodo", "pgBackRest".into()),
        ("stanza", "db".into()),
        ("cluster", "pg".into()),
        ("namespace", "prod".into()),
        ("label", "20251007-120000F".into()),
        ("size_bytes", "25165824".into()),
        ("repo_size_bytes", "3145728".into()),
        ("duration_seconds", "4".into()),
        ("status", "Completed".into()),
        ("cycle_day", "1".into()),
    ];
    assert_eq!(fields(&r, Tz::UTC), expected);
    let madrid = fields(&r, Madrid);
    assert_eq!(madrid[0], ("fecha", "2025-10-07".to_string()));
    assert_eq!(madrid[1], ("hora", "14:00:00".to_string()));
}

#[test]
fn tipo_backup_uses_the_users_names() {
    assert_eq!(tipo_backup(BackupType::Full), "completo");
    assert_eq!(tipo_backup(BackupType::Incr), "incremental");
    assert_eq!(tipo_backup(BackupType::Diff), "diferencial");
    let mut all: Vec<&str> = [BackupType::Full, BackupType::Diff, BackupType::Incr].map(tipo_backup).to_vec();
    all.sort();
    assert_eq!(all, TIPOS.to_vec());
}

#[test]
fn on_demand_backup_has_an_empty_cycle_day() {
    let mut r = record("20251007-120000F", BackupType::Full, noon());
    r.cycle_day = None;
    assert_eq!(fields(&r, Tz::UTC).last(), Some(&("cycle_day", String::new())));
}

#[test]
fn index_and_pointer_names_stay_out_of_the_record_prefix() {
    assert_eq!(index_key("prod", "pg"), "backups:prod/pg");
    assert_eq!(latest_key("prod", "pg", "completo"), "backups:latest:prod/pg:completo");
    assert!(!index_key("prod", "pg").starts_with(RECORD_PREFIX));
    assert!(!latest_key("prod", "pg", "incremental").starts_with(RECORD_PREFIX));
}

#[test]
fn candidates_are_the_base_and_numbered_suffixes() {
    let base = "backup:2025-10-07_12-00-00";
    assert!(is_candidate(base, base));
    assert!(is_candidate(base, "backup:2025-10-07_12-00-00_2"));
    assert!(is_candidate(base, "backup:2025-10-07_12-00-00_17"));
    for other in [
        "backup:2025-10-07_12-00-00_1",
        "backup:2025-10-07_12-00-00_02",
        "backup:2025-10-07_12-00-00_",
        "backup:2025-10-07_12-00-00x",
        "backup:2025-10-07_12-00-01",
        "backup:2025-10-07_12-00-00_2a",
    ] {
        assert!(!is_candidate(base, other), "{other}");
    }
}

fn existing(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, l)| (k.to_string(), l.to_string())).collect()
}

#[test]
fn resolve_key_free_base() {
    let base = "backup:2025-10-07_12-00-00";
    assert_eq!(resolve_key(base, "L1", &existing(&[])), base);
}

#[test]
fn resolve_key_same_label_is_an_idempotent_rewrite() {
    let base = "backup:2025-10-07_12-00-00";
    assert_eq!(resolve_key(base, "L1", &existing(&[(base, "L1")])), base);
    let taken = existing(&[(base, "L0"), ("backup:2025-10-07_12-00-00_3", "L1")]);
    assert_eq!(resolve_key(base, "L1", &taken), "backup:2025-10-07_12-00-00_3");
}

#[test]
fn resolve_key_never_overwrites_another_backup() {
    let base = "backup:2025-10-07_12-00-00";
    assert_eq!(resolve_key(base, "L2", &existing(&[(base, "L1")])), "backup:2025-10-07_12-00-00_2");
    let two = existing(&[(base, "L1"), ("backup:2025-10-07_12-00-00_2", "L2")]);
    assert_eq!(resolve_key(base, "L3", &two), "backup:2025-10-07_12-00-00_3");
    // A record the old scripts wrote, without a label, is someone else's too.
    assert_eq!(resolve_key(base, "L1", &existing(&[(base, "")])), "backup:2025-10-07_12-00-00_2");
    assert_eq!(resolve_key(base, "", &existing(&[(base, "")])), "backup:2025-10-07_12-00-00_2");
}

#[test]
fn write_commands_replace_index_and_point() {
    let r = record("20251007-120000F", BackupType::Full, noon());
    let key = "backup:2025-10-07_12-00-00";
    let commands = write_commands(&r, key, Tz::UTC, None);
    assert_eq!(
        commands,
        vec![
            RedisCommand::Del { key: key.into() },
            RedisCommand::HSet { key: key.into(), fields: fields(&r, Tz::UTC) },
            RedisCommand::ZAdd { key: "backups:prod/pg".into(), score: 1_759_838_400, member: key.into() },
            RedisCommand::Set { key: "backups:latest:prod/pg:completo".into(), value: key.into() },
        ]
    );
}

#[test]
fn write_commands_leave_a_newer_pointer_alone() {
    let r = record("20251007-120000F", BackupType::Full, noon());
    let key = "backup:2025-10-07_12-00-00";
    let newer = LatestPointer { key: "backup:2025-10-08_12-00-00".into(), score: Some(1_759_924_800) };
    assert_eq!(write_commands(&r, key, Tz::UTC, Some(&newer)).len(), 3);
    let older = LatestPointer { key: "backup:2025-10-06_12-00-00".into(), score: Some(1_759_752_000) };
    assert_eq!(write_commands(&r, key, Tz::UTC, Some(&older)).len(), 4);
    let dangling = LatestPointer { key: "backup:2025-10-08_12-00-00".into(), score: None };
    assert_eq!(write_commands(&r, key, Tz::UTC, Some(&dangling)).len(), 4);
    let itself = LatestPointer { key: key.into(), score: Some(1_759_838_400) };
    assert_eq!(write_commands(&r, key, Tz::UTC, Some(&itself)).len(), 4);
}

#[test]
fn delete_commands_repoint_or_drop_pointers() {
    let key = "backup:2025-10-08_12-00-00";
    let pointers = vec![
        ("completo", Some("backup:2025-10-01_12-00-00".to_string())),
        ("diferencial", None),
        ("incremental", Some(key.to_string())),
    ];
    let newest_first = vec![
        IndexedRecord { key: key.into(), tipo: "incremental".into() },
        IndexedRecord { key: "backup:2025-10-07_12-00-00".into(), tipo: "completo".into() },
        IndexedRecord { key: "backup:2025-10-06_12-00-00".into(), tipo: "incremental".into() },
    ];
    assert_eq!(
        delete_commands("prod", "pg", key, &pointers, &newest_first),
        vec![
            RedisCommand::Del { key: key.into() },
            RedisCommand::ZRem { key: "backups:prod/pg".into(), member: key.into() },
            RedisCommand::Set {
                key: "backups:latest:prod/pg:incremental".into(),
                value: "backup:2025-10-06_12-00-00".into(),
            },
        ]
    );
    let only = vec![IndexedRecord { key: key.into(), tipo: "incremental".into() }];
    assert_eq!(
        delete_commands("prod", "pg", key, &pointers, &only)[2],
        RedisCommand::Del { key: "backups:latest:prod/pg:incremental".into() }
    );
}

#[test]
fn orphans_are_labelled_records_pgbackrest_no_longer_has() {
    let live: BTreeSet<String> = ["20251007-120000F".to_string()].into();
    let records = [
        ("backup:2025-10-07_12-00-00", "20251007-120000F"),
        ("backup:2025-09-30_12-00-00", "20250930-120000F"),
        ("backup:2025-09-01_12-00-00", ""),
    ];
    assert_eq!(orphans(records, &live), vec!["backup:2025-09-30_12-00-00".to_string()]);
    assert_eq!(orphans([], &live), Vec::<String>::new());
}

#[test]
fn record_from_an_info_backup_set() {
    let json = r#"{"label":"20251007-120000F_20251008-120001I","type":"incr",
        "timestamp":{"start":1759924801,"stop":1759924803},
        "info":{"size":25001370,"delta":1982702,"repository":{"size":3301442,"delta":240150}}}"#;
    let set: BackupSet = serde_json::from_str(json).unwrap();
    let context = RecordContext {
        namespace: "prod".into(),
        cluster: "pg".into(),
        stanza: "db".into(),
        repo_path: "/pgbackrest/repo".into(),
        primary: "pg-2".into(),
        status: "Completed".into(),
        cycle_day: Some(2),
    };
    let expected = BackupRecord {
        namespace: "prod".into(),
        cluster: "pg".into(),
        stanza: "db".into(),
        label: "20251007-120000F_20251008-120001I".into(),
        backup_type: BackupType::Incr,
        start: Utc.with_ymd_and_hms(2025, 10, 8, 12, 0, 1).unwrap(),
        storage_path: "/pgbackrest/repo/backup/db/20251007-120000F_20251008-120001I".into(),
        primary: "pg-2".into(),
        size_bytes: 25_001_370,
        repo_size_bytes: 240_150,
        duration_seconds: 2,
        status: "Completed".into(),
        cycle_day: Some(2),
    };
    assert_eq!(record_from_set(&context, &set), Some(expected));
    assert_eq!(record_key(set.started_at().unwrap(), Tz::UTC), "backup:2025-10-08_12-00-01");
}
