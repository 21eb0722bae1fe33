use std::time::Duration;

use chrono::TimeZone;
use chrono_tz::Europe::Madrid;

use super::*;
use BackupType::{Diff, Full, Incr};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn madrid_schedule(cron: Option<&str>, start: DateTime<Utc>, day_length: Duration) -> Schedule {
    let clock = CycleClock::new(start.with_timezone(&Madrid), day_length).unwrap();
    Schedule::new(cron, clock, Cycle::default()).unwrap()
}

const DAY: Duration = Duration::from_secs(24 * 3600);
const TWO_MINUTES: Duration = Duration::from_secs(120);

#[test]
fn parse_cron_takes_five_fields_only() {
    assert!(parse_cron("0 2 * * *").is_ok());
    assert!(parse_cron("*/5 1-3 * * MON-FRI").is_ok());
    for bad in ["0 0 2 * * *", "0 2 * *", "61 2 * * *", "", "0 2 * * * 2025"] {
        match parse_cron(bad) {
            Err(ScheduleError::InvalidCron { expr, .. }) => assert_eq!(expr, bad),
            other => panic!("{bad:?} should be refused, got {other:?}"),
        }
    }
}

#[test]
fn next_run_is_evaluated_in_the_time_zone() {
    // 02:30 CEST on Oct 7 is 00:30 UTC; the next 02:00 Madrid is Oct 8 00:00 UTC.
    assert_eq!(
        next_run_after("0 2 * * *", Madrid, utc(2025, 10, 7, 0, 30, 0)).unwrap(),
        utc(2025, 10, 8, 0, 0, 0)
    );
    // In winter, 02:00 Madrid is 01:00 UTC.
    assert_eq!(
        next_run_after("0 2 * * *", Madrid, utc(2025, 12, 31, 12, 0, 0)).unwrap(),
        utc(2026, 1, 1, 1, 0, 0)
    );
    // Strictly after: a slot equal to `after` is not returned again.
    assert_eq!(
        next_run_after("0 2 * * *", Madrid, utc(2026, 1, 1, 1, 0, 0)).unwrap(),
        utc(2026, 1, 2, 1, 0, 0)
    );
}

#[test]
fn spring_forward_gap_still_runs_once() {
    // 02:30 does not exist in Madrid on 2025-03-30 (02:00 CET -> 03:00 CEST). The day still
    // gets exactly one run, at the first wall-clock time after the gap (03:00 CEST, 01:00 UTC).
    let first = next_run_after("30 2 * * *", Madrid, utc(2025, 3, 29, 12, 0, 0)).unwrap();
    assert_eq!(first, utc(2025, 3, 30, 1, 0, 0));
    let second = next_run_after("30 2 * * *", Madrid, first).unwrap();
    assert_eq!(second, utc(2025, 3, 31, 0, 30, 0));
}

#[test]
fn fall_back_repeat_runs_once() {
    // 02:30 happens twice in Madrid on 2025-10-26: 00:30 UTC (CEST) and 01:30 UTC (CET).
    let first = next_run_after("30 2 * * *", Madrid, utc(2025, 10, 25, 12, 0, 0)).unwrap();
    assert_eq!(first, utc(2025, 10, 26, 0, 30, 0));
    let second = next_run_after("30 2 * * *", Madrid, first).unwrap();
    assert_eq!(second, utc(2025, 10, 27, 1, 30, 0));
}

#[test]
fn due_runs_returns_nothing_before_the_next_slot() {
    let last = utc(2025, 10, 7, 0, 0, 0); // 02:00 Madrid
    assert_eq!(due_runs("0 2 * * *", Madrid, last, utc(2025, 10, 7, 23, 59, 59)).unwrap(), None);
    // The slot that was last run is never due again.
    assert_eq!(due_runs("0 2 * * *", Madrid, last, last).unwrap(), None);
}

#[test]
fn due_runs_includes_a_slot_equal_to_now_and_tolerates_seconds() {
    let last = utc(2025, 10, 7, 0, 0, 0);
    let slot = utc(2025, 10, 8, 0, 0, 0);
    assert_eq!(due_runs("0 2 * * *", Madrid, last, slot).unwrap(), Some(slot));
    assert_eq!(due_runs("0 2 * * *", Madrid, last, utc(2025, 10, 8, 0, 0, 30)).unwrap(), Some(slot));
}

#[test]
fn missed_runs_are_caught_up_once_with_the_latest_slot() {
    // Down from Oct 7 02:00 to Oct 10 14:00 (Madrid): three slots missed, one run.
    let last = utc(2025, 10, 7, 0, 0, 0);
    let now = utc(2025, 10, 10, 12, 0, 0);
    let due = due_runs("0 2 * * *", Madrid, last, now).unwrap();
    assert_eq!(due, Some(utc(2025, 10, 10, 0, 0, 0)));
    // Once that one has run, nothing else is due.
    assert_eq!(due_runs("0 2 * * *", Madrid, due.unwrap(), now).unwrap(), None);
}

#[test]
fn caught_up_slot_keeps_its_own_cycle_day() {
    let schedule = madrid_schedule(Some("0 2 * * *"), utc(2025, 10, 7, 0, 0, 0), DAY);
    // Day 2 ran on Oct 8; the operator was down until Oct 11 14:00.
    let due = schedule.due_run(utc(2025, 10, 8, 0, 0, 0), utc(2025, 10, 11, 12, 0, 0)).unwrap().unwrap();
    assert_eq!(due, utc(2025, 10, 11, 0, 0, 0));
    let plan = schedule.plan("nightly", due).unwrap();
    assert_eq!(plan.len(), 2);
    assert_eq!(plan[0].cycle_day, 5);
    assert_eq!((plan[0].backup_type, plan[1].backup_type), (Incr, Diff));
}

#[test]
fn no_slot_before_cycle_start() {
    let start = utc(2025, 10, 7, 0, 0, 0); // 02:00 Madrid
    let schedule = madrid_schedule(Some("0 2 * * *"), start, DAY);
    assert_eq!(schedule.next_run_after(utc(2025, 10, 1, 0, 0, 0)).unwrap(), start);
    assert_eq!(schedule.due_run(utc(2025, 10, 1, 0, 0, 0), utc(2025, 10, 6, 12, 0, 0)).unwrap(), None);
    assert_eq!(schedule.due_run(utc(2025, 10, 1, 0, 0, 0), start).unwrap(), Some(start));
    assert!(matches!(
        schedule.plan("nightly", utc(2025, 10, 6, 0, 0, 0)),
        Err(ScheduleError::Cycle(CycleError::BeforeStart { .. }))
    ));
}

#[test]
fn a_slot_between_cycle_start_and_the_previous_cron_slot_is_not_due_early() {
    // cycleStart 12:00 UTC; the last cron slot (02:00 Madrid = 00:00 UTC) is before it.
    let schedule = madrid_schedule(Some("0 2 * * *"), utc(2025, 10, 7, 12, 0, 0), DAY);
    assert_eq!(schedule.due_run(utc(2025, 10, 7, 12, 0, 0), utc(2025, 10, 7, 13, 0, 0)).unwrap(), None);
    assert_eq!(schedule.next_run_after(utc(2025, 10, 7, 12, 0, 0)).unwrap(), utc(2025, 10, 8, 0, 0, 0));
}

#[test]
fn cron_may_be_omitted_only_for_short_days() {
    let clock = CycleClock::new(utc(2025, 10, 7, 12, 0, 0).with_timezone(&Madrid), DAY).unwrap();
    assert_eq!(Schedule::new(None, clock, Cycle::default()).unwrap_err(), ScheduleError::CronRequired);
}

#[test]
fn derived_slots_are_every_day_length_from_cycle_start() {
    let start = utc(2025, 10, 7, 12, 0, 0);
    let schedule = madrid_schedule(None, start, TWO_MINUTES);
    assert_eq!(schedule.next_run_after(utc(2025, 10, 7, 11, 0, 0)).unwrap(), start);
    assert_eq!(schedule.next_run_after(start).unwrap(), utc(2025, 10, 7, 12, 2, 0));
    assert_eq!(schedule.next_run_after(utc(2025, 10, 7, 12, 3, 10)).unwrap(), utc(2025, 10, 7, 12, 4, 0));
    assert_eq!(schedule.due_run(utc(2025, 10, 7, 11, 0, 0), start).unwrap(), Some(start));
    // Missed 12:04, 12:06 and 12:08: one catch-up, the latest.
    let due = schedule.due_run(utc(2025, 10, 7, 12, 2, 0), utc(2025, 10, 7, 12, 9, 59)).unwrap();
    assert_eq!(due, Some(utc(2025, 10, 7, 12, 8, 0)));
    assert_eq!(schedule.due_run(utc(2025, 10, 7, 12, 8, 0), utc(2025, 10, 7, 12, 9, 59)).unwrap(), None);
    assert_eq!(schedule.due_run(start, utc(2025, 10, 7, 11, 0, 0)).unwrap(), None);
}

#[test]
fn a_whole_short_cycle_runs_the_table_in_order() {
    let start = utc(2025, 10, 7, 12, 0, 0);
    let schedule = madrid_schedule(None, start, TWO_MINUTES);
    let mut slot = start;
    let mut runs = Vec::new();
    for _ in 0..7 {
        let plan = schedule.plan("demo", slot).unwrap();
        runs.push((plan[0].cycle_day, plan.iter().map(|b| b.backup_type).collect::<Vec<_>>()));
        slot = schedule.next_run_after(slot).unwrap();
    }
    let expected = vec![
        (1, vec![Full]),
        (2, vec![Incr]),
        (3, vec![Incr, Diff]),
        (4, vec![Incr]),
        (5, vec![Incr, Diff]),
        (6, vec![Diff, Full]),
        (1, vec![Full]),
    ];
    assert_eq!(runs, expected);
}

#[test]
fn plan_names_and_orders_the_backups_of_a_day() {
    let schedule = madrid_schedule(Some("0 2 * * *"), utc(2025, 10, 7, 0, 0, 0), DAY);
    let day6 = utc(2025, 10, 12, 0, 0, 0);
    let plan = schedule.plan("nightly", day6).unwrap();
    assert_eq!(
        plan,
        vec![
            PlannedBackup {
                name: "nightly-20251012000000-1".into(),
                backup_type: Diff,
                cycle_day: 6,
                scheduled: day6,
                waits_for: None,
            },
            PlannedBackup {
                name: "nightly-20251012000000-2".into(),
                backup_type: Full,
                cycle_day: 6,
                scheduled: day6,
                waits_for: Some("nightly-20251012000000-1".into()),
            },
        ]
    );
    // Planning the same slot again gives the same names: a retry never duplicates.
    assert_eq!(schedule.plan("nightly", day6).unwrap(), plan);
}

fn is_dns_label(name: &str) -> bool {
    name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[test]
fn backup_names_are_valid_and_deterministic() {
    let at = utc(2025, 10, 7, 2, 0, 5);
    assert_eq!(backup_name("nightly", at, 1), "nightly-20251007020005-1");
    let fits = "a".repeat(63 - "-20251007020005-1".len());
    assert_eq!(backup_name(&fits, at, 1), format!("{fits}-20251007020005-1"));

    let long_a = format!("{}-a", "x".repeat(60));
    let long_b = format!("{}-b", "x".repeat(60));
    let (a, b) = (backup_name(&long_a, at, 2), backup_name(&long_b, at, 2));
    assert_eq!(a.len(), 63);
    assert!(is_dns_label(&a) && is_dns_label(&b), "{a} {b}");
    assert_ne!(a, b);
    assert!(a.ends_with("-20251007020005-2"), "{a}");
    assert_eq!(a, backup_name(&long_a, at, 2));
    assert_eq!(a, format!("{}-{:08x}-20251007020005-2", "x".repeat(37), fnv1a32(long_a.as_bytes())));

    let odd = backup_name("Nightly_Backup", at, 1);
    assert!(is_dns_label(&odd), "{odd}");
    assert!(odd.starts_with("nightly-backup-"), "{odd}");
    assert_ne!(odd, backup_name("nightly-backup", at, 1));
    assert!(backup_name("---", at, 1).starts_with("backup-"));
}

#[test]
fn fnv1a32_known_values() {
    assert_eq!(fnv1a32(b""), 0x811c_9dc5);
    assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
    assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
}

#[test]
fn second_backup_of_a_day_waits_for_the_first() {
    let schedule = madrid_schedule(Some("0 2 * * *"), utc(2025, 10, 7, 0, 0, 0), DAY);
    let plan = schedule.plan("nightly", utc(2025, 10, 9, 0, 0, 0)).unwrap(); // day 3
    let (first, second) = (plan[0].name.as_str(), plan[1].name.as_str());
    let state =
        |incr: BackupState, diff: BackupState| move |name: &str| if name == first { incr } else { diff };
    use BackupState::*;
    assert_eq!(next_step(&plan, state(Absent, Absent)), SlotStep::Create(&plan[0]));
    assert_eq!(next_step(&plan, state(InProgress, Absent)), SlotStep::Wait(&plan[0].name));
    assert_eq!(next_step(&plan, state(Succeeded, Absent)), SlotStep::Create(&plan[1]));
    assert_eq!(next_step(&plan, state(Failed, Absent)), SlotStep::Create(&plan[1]));
    assert_eq!(next_step(&plan, state(Succeeded, InProgress)), SlotStep::Wait(second));
    assert_eq!(next_step(&plan, state(Succeeded, Succeeded)), SlotStep::Done { failed: vec![] });
    assert_eq!(
        next_step(&plan, state(Failed, Succeeded)),
        SlotStep::Done { failed: vec![plan[0].name.as_str()] }
    );
}
