use chrono::TimeZone;

use super::*;
use crate::pgbackrest::info::{find_stanza, parse};

const INFO: &str = include_str!("../pgbackrest/testdata/info.json");

fn done() -> BackupDone {
    BackupDone {
        label: "20251007-120000F_20251008-120001I".into(),
        backup_type: BackupType::Incr,
        start: Utc.with_ymd_and_hms(2025, 10, 8, 12, 0, 1).unwrap(),
        stop: Utc.with_ymd_and_hms(2025, 10, 8, 12, 0, 3).unwrap(),
        size_bytes: 25_001_370,
        repo_size_bytes: 240_150,
        wal_start: Some("000000020000000000000006".into()),
        wal_stop: Some("000000020000000000000006".into()),
        path: "/pgbackrest/repo/backup/db/20251007-120000F_20251008-120001I".into(),
        repository: None,
    }
}

#[test]
fn a_backup_set_becomes_the_result_the_status_needs() {
    let stanzas = parse(INFO).unwrap();
    let set = &find_stanza(&stanzas, "db").unwrap().backup[1];
    assert_eq!(BackupDone::from_set(set, "/pgbackrest/repo/", "db"), Some(done()));
}

#[test]
fn results_round_trip_through_the_termination_message() {
    for result in [JobResult::Completed(done()), JobResult::Failed { error: "ERROR: [056]: boom".into() }] {
        let text = encode(&result);
        assert!(text.len() <= MAX_MESSAGE_BYTES);
        assert!(!text.contains('\n'), "one compact line: {text}");
        assert_eq!(decode(&text).unwrap(), result);
    }
    let text = encode(&JobResult::Completed(done()));
    assert!(
        text.starts_with(
            r#"{"outcome":"completed","label":"20251007-120000F_20251008-120001I","type":"incr""#
        )
    );
    assert!(text.contains(r#""start":"2025-10-08T12:00:01Z""#), "{text}");
    assert!(text.contains(r#""repoSizeBytes":240150"#), "{text}");
}

#[test]
fn the_largest_success_fits() {
    let stanza = "s".repeat(50);
    let label = "20251007-120000F_20251008-120001D";
    let mut big = done();
    big.label = label.into();
    big.path = backup_set_path("/pgbackrest/repo", &stanza, label);
    big.size_bytes = u64::MAX;
    big.repo_size_bytes = u64::MAX;
    assert!(encode(&JobResult::Completed(big)).len() < MAX_MESSAGE_BYTES / 4);
}

#[test]
fn a_long_error_keeps_its_end_within_the_limit() {
    // Quotes and control characters grow when escaped; multi-byte characters must not split.
    let line = "P00  ERROR: [056]: \"ä\" \t unable to find primary cluster - cannot proceed\n";
    let error = format!("{}THE REASON", line.repeat(200));
    let text = encode(&JobResult::Failed { error: error.clone() });
    assert!(text.len() <= MAX_MESSAGE_BYTES, "{} bytes", text.len());
    assert!(text.len() > MAX_MESSAGE_BYTES - 200, "not cut more than needed: {} bytes", text.len());
    let JobResult::Failed { error: kept } = decode(&text).unwrap() else { panic!("a failure") };
    assert!(kept.starts_with('…') && kept.ends_with("THE REASON"), "{kept}");
    assert!(error.ends_with(kept.trim_start_matches('…')));
}

#[test]
fn unreadable_messages_are_errors_not_results() {
    assert!(matches!(decode(""), Err(DecodeError::Empty)));
    assert!(matches!(decode("  \n"), Err(DecodeError::Empty)));
    assert!(matches!(decode("Error: exec format error"), Err(DecodeError::Json(_))));
    assert!(matches!(decode(r#"{"outcome":"exploded"}"#), Err(DecodeError::Json(_))));
}

#[test]
fn command_errors_keep_the_last_lines() {
    let output: String = (1..=30).map(|i| format!("line {i}\n\n")).collect();
    let error = command_error("pgbackrest backup", "exited with status 56", &output);
    assert!(error.starts_with("pgbackrest backup exited with status 56:\nline 11\n"), "{error}");
    assert!(error.ends_with("line 30"));
    assert_eq!(
        command_error("pgbackrest info", "was killed by signal 9", ""),
        "pgbackrest info was killed by signal 9 without output"
    );
}

#[test]
fn sizes_read_like_people_write_them() {
    assert_eq!(human_size(0), "0B");
    assert_eq!(human_size(1023), "1023B");
    assert_eq!(human_size(1024), "1.0KiB");
    assert_eq!(human_size(1536), "1.5KiB");
    assert_eq!(human_size(25_270_000), "24.1MiB");
    assert_eq!(human_size(1024 * 1024 - 1), "1.0MiB");
    assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0GiB");
    assert_eq!(human_size(u64::MAX), "16.0EiB");
}
