use chrono::TimeZone;

use super::*;

fn pgbr() -> Pgbackrest {
    Pgbackrest::new("db").unwrap().with_config("/etc/pgbackrest/pgbackrest.conf")
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

const HEAD: [&str; 3] = ["pgbackrest", "--config=/etc/pgbackrest/pgbackrest.conf", "--stanza=db"];

fn with_head(rest: &[&str]) -> Vec<String> {
    argv(&[&HEAD[..], rest].concat())
}

#[test]
fn maintenance_commands() {
    assert_eq!(pgbr().stanza_create(), with_head(&["stanza-create"]));
    assert_eq!(pgbr().check(), with_head(&["check"]));
    assert_eq!(pgbr().info_json(), with_head(&["--output=json", "info"]));
    assert_eq!(pgbr().expire(), with_head(&["expire"]));
    assert_eq!(pgbr().expire_set("20251007-120000F"), with_head(&["--set=20251007-120000F", "expire"]));
}

#[test]
fn a_push_now_bypasses_the_asynchronous_queue() {
    assert_eq!(
        pgbr().archive_push_now("pg_wal/000000010000000000000003"),
        with_head(&["--no-archive-async", "archive-push", "pg_wal/000000010000000000000003"])
    );
}

#[test]
fn backup_types() {
    assert_eq!(pgbr().backup(BackupType::Full), with_head(&["--type=full", "backup"]));
    assert_eq!(pgbr().backup(BackupType::Diff), with_head(&["--type=diff", "backup"]));
    assert_eq!(pgbr().backup(BackupType::Incr), with_head(&["--type=incr", "backup"]));
}

#[test]
fn without_config_and_with_log_level() {
    let p = Pgbackrest::new("db").unwrap().with_log_level_console("detail");
    assert_eq!(p.check(), argv(&["pgbackrest", "--stanza=db", "--log-level-console=detail", "check"]));
}

#[test]
fn stanza_must_be_a_plain_name() {
    for bad in ["", "db prod", "db;rm", "d%b", "db/x"] {
        assert_eq!(Pgbackrest::new(bad), Err(CommandError::Stanza(bad.to_string())));
    }
    assert!(Pgbackrest::new("pg-prod_1.main").is_ok());
}

#[test]
fn restore_to_a_backup_set() {
    let options = RestoreOptions {
        target: RestoreTarget::Backup { label: "20251007-120000F".into() },
        delta: false,
        archive_mode_off: true,
    };
    assert_eq!(
        pgbr().restore(&options),
        with_head(&[
            "--set=20251007-120000F",
            "--type=immediate",
            "--target-action=promote",
            "--archive-mode=off",
            "restore"
        ])
    );
}

#[test]
fn restore_to_a_point_in_time() {
    let at = Utc.with_ymd_and_hms(2025, 10, 7, 12, 30, 15).unwrap();
    let options = RestoreOptions {
        target: RestoreTarget::Time { at, label: None },
        delta: true,
        archive_mode_off: false,
    };
    assert_eq!(
        pgbr().restore(&options),
        with_head(&[
            "--delta",
            "--type=time",
            "--target=2025-10-07 12:30:15+00",
            "--target-action=promote",
            "restore"
        ])
    );
    let at = at + chrono::TimeDelta::microseconds(250_000);
    let options = RestoreOptions {
        target: RestoreTarget::Time { at, label: Some("20251007-120000F".into()) },
        delta: false,
        archive_mode_off: false,
    };
    assert_eq!(
        pgbr().restore(&options),
        with_head(&[
            "--set=20251007-120000F",
            "--type=time",
            "--target=2025-10-07 12:30:15.250+00",
            "--target-action=promote",
            "restore"
        ])
    );
}

#[test]
fn restore_to_the_end_of_the_archive() {
    let options =
        RestoreOptions { target: RestoreTarget::EndOfArchive, delta: true, archive_mode_off: false };
    assert_eq!(pgbr().restore(&options), with_head(&["--delta", "restore"]));
}

#[test]
fn archive_and_restore_command_strings() {
    assert_eq!(
        pgbr().archive_command().unwrap(),
        "pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=db archive-push %p"
    );
    assert_eq!(
        pgbr().restore_command().unwrap(),
        "pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=db archive-get %f \"%p\""
    );
}

#[test]
fn command_strings_quote_odd_paths_and_refuse_percent() {
    let p = Pgbackrest::new("db").unwrap().with_config("/etc/my conf/it's.conf");
    assert_eq!(
        p.archive_command().unwrap(),
        r"pgbackrest '--config=/etc/my conf/it'\''s.conf' --stanza=db archive-push %p"
    );
    let p = Pgbackrest::new("db").unwrap().with_config("/etc/100%.conf");
    assert_eq!(
        p.restore_command(),
        Err(CommandError::Unquotable { what: "argument", value: "--config=/etc/100%.conf".into() })
    );
}

#[test]
fn io_timeout_is_a_global_option_in_whole_seconds() {
    let p = pgbr().with_io_timeout(std::time::Duration::from_millis(5500));
    assert_eq!(p.stanza_create(), with_head(&["--io-timeout=5", "stanza-create"]));
    let at_least_one = pgbr().with_io_timeout(std::time::Duration::from_millis(10));
    assert_eq!(at_least_one.check(), with_head(&["--io-timeout=1", "check"]));
}
