use chrono::TimeZone;

use super::*;
use BackupType::{Diff, Full, Incr};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

/// A stored BackupSchedule created at `created`, with `spec` (YAML flow mapping entries
/// after `cluster: pg`).
fn schedule(created: DateTime<Utc>, spec: &str) -> BackupSchedule {
    let manifest = format!(
        "apiVersion: relevo.dev/v1alpha1\nkind: BackupSchedule\n\
         metadata: {{name: demo, namespace: db, uid: u-demo, generation: 1, creationTimestamp: '{}'}}\n\
         spec: {{cluster: pg{}}}\n",
        rfc3339(created),
        if spec.is_empty() { String::new() } else { format!(", {spec}") }
    );
    serde_saphyr::from_str(&manifest).unwrap()
}

/// The schedule and its Backups as the apiserver would hold them, driven by [`World::tick`]
/// exactly like the controller: decide, create, write the status.
struct World {
    schedule: BackupSchedule,
    backups: BTreeMap<String, Option<BackupPhase>>,
    created: Vec<PlannedBackup>,
    cluster_exists: bool,
}

impl World {
    fn new(schedule: BackupSchedule) -> Self {
        Self { schedule, backups: BTreeMap::new(), created: Vec::new(), cluster_exists: true }
    }

    fn tick(&mut self, now: DateTime<Utc>) -> ScheduleDecision {
        let observed =
            ScheduleObservation { now, cluster_exists: self.cluster_exists, backups: self.backups.clone() };
        let decision = decide(&self.schedule, &observed);
        if let Some(backup) = &decision.create {
            // The apiserver refuses a second Backup of the same name.
            if !self.backups.contains_key(&backup.name) {
                self.backups.insert(backup.name.clone(), None);
                self.created.push(backup.clone());
            }
        }
        self.schedule.status = Some(decision.status.clone());
        decision
    }

    /// Every unfinished Backup ends in `phase`.
    fn finish(&mut self, phase: BackupPhase) {
        for state in self.backups.values_mut() {
            if !state.is_some_and(BackupPhase::is_terminal) {
                *state = Some(phase);
            }
        }
    }

    /// Ticks until nothing more is created at `now`, finishing each Backup as it comes.
    fn run_slot(&mut self, now: DateTime<Utc>) -> ScheduleDecision {
        loop {
            let decision = self.tick(now);
            if decision.create.is_none() {
                return decision;
            }
            self.finish(BackupPhase::Completed);
        }
    }

    fn status(&self) -> BackupScheduleStatus {
        self.schedule.status.clone().unwrap_or_default()
    }

    fn ready(&self) -> Condition {
        self.status().conditions.into_iter().find(|c| c.type_ == READY).expect("a Ready condition")
    }

    fn created_summary(&self) -> Vec<(u32, BackupType)> {
        self.created.iter().map(|b| (b.cycle_day, b.backup_type)).collect()
    }
}

#[test]
fn a_whole_short_cycle_creates_the_table_in_order_then_wraps() {
    let created = utc(2025, 10, 7, 12, 0, 0);
    let mut world = World::new(schedule(created, "dayLength: 2m"));
    let mut now = created;
    let mut requeues = Vec::new();
    for _ in 0..7 {
        let idle = world.run_slot(now);
        assert_eq!(idle.status.last_result, Some(RunResult::Completed));
        let wait = idle.requeue.expect("requeued until the next run");
        requeues.push(wait);
        now += TimeDelta::from_std(wait).unwrap();
    }
    assert_eq!(
        world.created_summary(),
        vec![
            (1, Full),
            (2, Incr),
            (3, Incr),
            (3, Diff),
            (4, Incr),
            (5, Incr),
            (5, Diff),
            (6, Diff),
            (6, Full),
            (1, Full),
        ]
    );
    // Requeued exactly at each next slot, every 2 minutes from the creation time.
    assert!(requeues.iter().all(|r| *r == Duration::from_secs(120)), "{requeues:?}");
    let names: Vec<&str> = world.created.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        &names[..4],
        ["demo-20251007120000-1", "demo-20251007120200-1", "demo-20251007120400-1", "demo-20251007120400-2"]
    );
    let status = world.status();
    assert_eq!(status.last_run_time.as_deref(), Some("2025-10-07T12:12:00Z"));
    assert_eq!(status.current_cycle_day, Some(1));
    assert_eq!(status.last_run_backups, vec!["demo-20251007121200-1".to_string()]);
    assert_eq!(status.next_run_time.as_deref(), Some("2025-10-07T12:14:00Z"));
    assert_eq!(status.next_cycle_day, Some(2));
    assert_eq!(world.ready().reason, "Scheduled");
    assert_eq!(world.ready().message, "next run 2025-10-07T12:14:00Z: day 2, incr");
}

#[test]
fn the_second_backup_of_a_day_waits_for_the_first() {
    let created = utc(2025, 10, 7, 12, 0, 0);
    // cycleStart two days earlier: the run at creation is day 3 (caught up once).
    let mut world = World::new(schedule(created, "dayLength: 2m, cycleStart: '2025-10-07T11:56:00Z'"));
    let first = world.tick(created);
    assert_eq!(first.create.as_ref().map(|b| (b.cycle_day, b.backup_type)), Some((3, Incr)));
    assert_eq!(first.requeue, Some(Duration::from_secs(120)), "at most until the next slot");
    // Running: nothing else is created, however often the schedule is reconciled.
    for _ in 0..3 {
        let decision = world.tick(created + TimeDelta::seconds(10));
        assert_eq!(decision.create, None);
        assert_eq!(decision.status.last_result, Some(RunResult::Running));
    }
    world.finish(BackupPhase::Failed);
    let second = world.tick(created + TimeDelta::seconds(20));
    let second = second.create.expect("the diff, although the incr failed");
    assert_eq!((second.backup_type, second.waits_for.as_deref()), (Diff, Some("demo-20251007120000-1")));
    world.finish(BackupPhase::Completed);
    let done = world.tick(created + TimeDelta::seconds(30));
    assert_eq!(done.status.last_result, Some(RunResult::Failed));
    assert_eq!(done.status.last_run_backups, vec!["demo-20251007120000-1", "demo-20251007120000-2"]);
    assert_eq!(done.requeue, Some(Duration::from_secs(90)));
}

#[test]
fn a_retry_after_a_lost_status_write_creates_the_same_name() {
    let created = utc(2025, 10, 7, 12, 0, 0);
    let schedule = schedule(created, "dayLength: 2m");
    let observed = ScheduleObservation { now: created, cluster_exists: true, backups: BTreeMap::new() };
    let first = decide(&schedule, &observed).create.unwrap();
    // The status was never written: the next reconcile plans the same Backup.
    let later = ScheduleObservation { now: created + TimeDelta::seconds(5), ..observed };
    assert_eq!(decide(&schedule, &later).create.unwrap().name, first.name);
}

#[test]
fn missed_runs_are_caught_up_once_with_their_own_cycle_day() {
    let created = utc(2025, 10, 7, 0, 0, 0);
    let mut world = World::new(schedule(created, "schedule: '0 2 * * *', timeZone: Europe/Madrid"));
    // Oct 7 02:00 Madrid is 00:00 UTC: day 1.
    world.run_slot(utc(2025, 10, 7, 0, 0, 0));
    // The operator was down from Oct 7 until Oct 10 14:00 Madrid: one run, day 4's.
    let caught_up = world.run_slot(utc(2025, 10, 10, 12, 0, 0));
    assert_eq!(world.created_summary(), vec![(1, Full), (4, Incr)]);
    assert_eq!(world.status().last_run_time.as_deref(), Some("2025-10-10T00:00:00Z"));
    assert_eq!(caught_up.status.next_run_time.as_deref(), Some("2025-10-11T00:00:00Z"));
    assert_eq!(caught_up.requeue, Some(Duration::from_secs(12 * 3600)));
    // Reconciled again before the next slot: nothing more.
    assert_eq!(world.tick(utc(2025, 10, 10, 23, 59, 59)).create, None);
    world.run_slot(utc(2025, 10, 11, 0, 0, 0));
    assert_eq!(world.created_summary(), vec![(1, Full), (4, Incr), (5, Incr), (5, Diff)]);
}

#[test]
fn a_new_schedule_does_not_run_before_its_first_slot() {
    // Created at 14:37 Madrid; the first 02:00 run the next morning is day 1, a full.
    let created = Tz::from_str("Europe/Madrid").unwrap().with_ymd_and_hms(2025, 10, 7, 14, 37, 0).unwrap();
    let mut world =
        World::new(schedule(created.with_timezone(&Utc), "schedule: '0 2 * * *', timeZone: Europe/Madrid"));
    let waiting = world.tick(created.with_timezone(&Utc));
    assert_eq!(waiting.create, None);
    assert_eq!(waiting.status.next_run_time.as_deref(), Some("2025-10-08T00:00:00Z"));
    assert_eq!(waiting.status.next_cycle_day, Some(1));
    assert_eq!(waiting.status.last_result, None);
    world.run_slot(utc(2025, 10, 8, 0, 0, 0));
    assert_eq!(world.created_summary(), vec![(1, Full)]);
}

#[test]
fn suspend_creates_nothing_and_resuming_runs_the_latest_missed_slot_once() {
    let created = utc(2025, 10, 7, 12, 0, 0);
    let mut world = World::new(schedule(created, "dayLength: 2m, suspend: true"));
    for minutes in [0, 2, 4, 6] {
        let decision = world.tick(created + TimeDelta::minutes(minutes));
        assert_eq!(decision.create, None);
        assert_eq!(decision.requeue, None, "a suspended schedule waits for a change");
        assert_eq!(decision.status.next_run_time, None);
    }
    let ready = world.ready();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Suspended"));
    world.schedule.spec.suspend = false;
    world.run_slot(created + TimeDelta::minutes(7));
    assert_eq!(world.created_summary(), vec![(4, Incr)], "12:06, day 4, once");
    assert_eq!(world.ready().reason, "Scheduled");
}

#[test]
fn suspending_mid_run_holds_the_rest_of_the_run() {
    let created = utc(2025, 10, 7, 12, 0, 0);
    let mut world = World::new(schedule(created, "dayLength: 2m, cycleStart: '2025-10-07T11:56:00Z'"));
    world.tick(created); // day 3's incr
    world.schedule.spec.suspend = true;
    world.finish(BackupPhase::Completed);
    assert_eq!(world.tick(created + TimeDelta::seconds(10)).create, None);
    world.schedule.spec.suspend = false;
    let resumed = world.tick(created + TimeDelta::seconds(20)).create.unwrap();
    assert_eq!((resumed.cycle_day, resumed.backup_type), (3, Diff), "the run is finished first");
}

#[test]
fn a_run_longer_than_its_slot_delays_the_next_which_then_catches_up_once() {
    let created = utc(2025, 10, 7, 12, 0, 0);
    let mut world = World::new(schedule(created, "dayLength: 2m, cycleStart: '2025-10-07T11:56:00Z'"));
    world.tick(created); // day 3's incr, which runs for 5 minutes
    let overdue = world.tick(created + TimeDelta::minutes(3));
    assert_eq!(overdue.create, None);
    assert_eq!(overdue.status.next_run_time.as_deref(), Some("2025-10-07T12:02:00Z"), "overdue");
    assert_eq!(overdue.requeue, Some(IN_PROGRESS_POLL));
    assert!(
        world.ready().message.contains("waits: Backup demo-20251007120000-1"),
        "{}",
        world.ready().message
    );
    world.finish(BackupPhase::Completed);
    world.run_slot(created + TimeDelta::minutes(5));
    // Day 3's diff, then 12:04 (day 5) once; 12:02 (day 4) is not run late.
    assert_eq!(world.created_summary(), vec![(3, Incr), (3, Diff), (5, Incr), (5, Diff)]);
}

#[test]
fn a_backup_deleted_by_hand_is_never_created_again() {
    let created = utc(2025, 10, 7, 12, 0, 0);
    let mut world = World::new(schedule(created, "dayLength: 2m, cycleStart: '2025-10-07T11:56:00Z'"));
    let incr = world.tick(created).create.unwrap();
    world.backups.remove(&incr.name);
    let next = world.tick(created + TimeDelta::seconds(5)).create.unwrap();
    assert_eq!(next.backup_type, Diff);
    world.finish(BackupPhase::Completed);
    let done = world.tick(created + TimeDelta::seconds(10));
    assert_eq!(done.create, None);
    assert_eq!(done.status.last_result, Some(RunResult::Failed), "a run missing a backup is not Completed");
}

#[test]
fn dst_changes_neither_skip_nor_repeat_a_day() {
    // Madrid springs forward on 2025-03-30 (02:00 -> 03:00): 02:30 does not exist that day.
    let madrid = Tz::from_str("Europe/Madrid").unwrap();
    let start = madrid.with_ymd_and_hms(2025, 3, 28, 2, 30, 0).unwrap().with_timezone(&Utc);
    let mut world = World::new(schedule(start, "schedule: '30 2 * * *', timeZone: Europe/Madrid"));
    let mut now = start;
    let mut slots = Vec::new();
    for _ in 0..6 {
        world.run_slot(now);
        slots.push(world.status().last_run_time.unwrap());
        now = parse_time(world.status().next_run_time.as_deref()).unwrap();
    }
    assert_eq!(
        world.created_summary().iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        vec![1, 2, 3, 3, 4, 5, 5, 6, 6]
    );
    assert_eq!(
        slots,
        vec![
            "2025-03-28T01:30:00Z",
            "2025-03-29T01:30:00Z",
            "2025-03-30T01:00:00Z", // 03:00 CEST, right after the gap
            "2025-03-31T00:30:00Z",
            "2025-04-01T00:30:00Z",
            "2025-04-02T00:30:00Z",
        ]
    );
}

#[test]
fn no_cluster_no_backups_and_the_slot_runs_once_it_exists() {
    let created = utc(2025, 10, 7, 12, 0, 0);
    let mut world = World::new(schedule(created, "dayLength: 2m"));
    world.cluster_exists = false;
    let missing = world.tick(created + TimeDelta::seconds(30));
    assert_eq!((missing.create, missing.requeue), (None, Some(CLUSTER_POLL)));
    let ready = world.ready();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "ClusterNotFound"));
    assert_eq!(ready.message, "PgCluster pg does not exist in this namespace");
    world.cluster_exists = true;
    world.run_slot(created + TimeDelta::minutes(5));
    assert_eq!(world.created_summary(), vec![(3, Incr), (3, Diff)], "12:04 only");
}

#[test]
fn what_only_the_operator_can_judge_ends_in_the_ready_condition() {
    let created = utc(2025, 10, 7, 12, 0, 0);
    for (spec, reason) in [
        (
            "dayLength: 2m, cycleStart: '2025-02-30T00:00:00Z'",
            "cycleStart \"2025-02-30T00:00:00Z\" is not an RFC 3339 time",
        ),
        ("dayLength: 24h", "a cron schedule is required unless dayLength is shorter than 24h"),
        ("schedule: '0 2 31 2 *'", "has no run"),
        ("timeZone: Mars/Olympus, dayLength: 2m", "unknown time zone \"Mars/Olympus\""),
        ("cycle: [[incr], [full]], dayLength: 2m", "the cycle must open with a full backup"),
    ] {
        let mut world = World::new(schedule(created, spec));
        let decision = world.tick(created);
        assert_eq!((decision.create.is_none(), decision.requeue), (true, None), "{spec}");
        let ready = world.ready();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "InvalidSpec"), "{spec}");
        assert!(ready.message.contains(reason), "{spec}: {}", ready.message);
        assert_eq!(ready.observed_generation, Some(1));
    }
}

#[test]
fn a_steady_state_does_not_change_the_status() {
    let created = utc(2025, 10, 7, 12, 0, 0);
    let mut world = World::new(schedule(created, "dayLength: 2m"));
    world.run_slot(created);
    let settled = world.status();
    let again = world.tick(created + TimeDelta::seconds(40));
    assert_eq!(again.status, settled, "no write, hence no watch event, hence no loop");
    // The condition keeps its transition time across slots.
    let before = world.ready().last_transition_time;
    world.run_slot(created + TimeDelta::minutes(2));
    assert_eq!(world.ready().last_transition_time, before);
}

#[test]
fn a_seven_day_cycle_names_its_days_up_to_seven() {
    let created = utc(2025, 10, 5, 0, 0, 0); // a Sunday
    let cycle = "cycle: [[full], [incr], [incr], [incr], [incr], [incr], [diff]]";
    let mut world = World::new(schedule(created, &format!("schedule: '0 0 * * *', {cycle}")));
    for day in 0..8 {
        world.run_slot(created + TimeDelta::days(day));
    }
    let days: Vec<u32> = world.created_summary().iter().map(|(d, _)| *d).collect();
    assert_eq!(days, vec![1, 2, 3, 4, 5, 6, 7, 1]);
    assert_eq!(world.created[6].backup_type, Diff);
}

#[test]
fn describe_types_reads_in_order() {
    assert_eq!(describe_types([Incr, Diff]), "incr, then diff");
    assert_eq!(describe_types([Full]), "full");
}

fn cluster() -> crate::crd::PgCluster {
    serde_saphyr::from_str(
        "apiVersion: relevo.dev/v1alpha1\nkind: PgCluster\nmetadata: {name: pg, namespace: db, uid: u-pg}\n\
         spec: {instances: 2}\n",
    )
    .unwrap()
}

#[test]
fn a_scheduled_backup_names_its_day_and_schedule_and_belongs_to_the_cluster() {
    let created = utc(2025, 10, 7, 12, 0, 0);
    let schedule = schedule(created, "dayLength: 2m, cycleStart: '2025-10-07T11:50:00Z'");
    let observed = ScheduleObservation { now: created, cluster_exists: true, backups: BTreeMap::new() };
    let planned = decide(&schedule, &observed).create.unwrap();
    let backup = backup_of(&schedule, &cluster(), &planned);
    assert_eq!(backup.metadata.name.as_deref(), Some("demo-20251007120000-1"));
    assert_eq!(backup.metadata.namespace.as_deref(), Some("db"));
    assert_eq!(
        backup.spec,
        BackupSpec {
            cluster: "pg".into(),
            backup_type: Diff,
            cycle_day: Some(6),
            schedule: Some("demo".into())
        }
    );
    let owner = &backup.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("PgCluster", "pg", "u-pg"));
    assert_eq!((owner.controller, owner.block_owner_deletion), (None, None));
    assert_eq!(backup.metadata.labels.as_ref().unwrap()["relevo.dev/cluster"], "pg");
    assert_eq!(backup.metadata.annotations.as_ref().unwrap()[SCHEDULED_ANNOTATION], "2025-10-07T12:00:00Z");
}

#[test]
fn events_come_from_transitions_only() {
    let created = utc(2025, 10, 7, 12, 0, 0);
    let mut world = World::new(schedule(created, "dayLength: 2m"));
    let before = world.status();
    let first = world.tick(created);
    let notes = events(&before, &first.status, first.create.as_ref());
    let reasons: Vec<&str> = notes.iter().map(|(_, r, _)| *r).collect();
    assert_eq!(reasons, ["Created", "Scheduled"]);
    assert_eq!(
        notes[0].2,
        "Backup demo-20251007120000-1: full backup of cycle day 1 (run of 2025-10-07T12:00:00Z)"
    );

    world.finish(BackupPhase::Failed);
    let running = world.status();
    let done = world.tick(created + TimeDelta::seconds(30));
    let notes = events(&running, &done.status, None);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!((notes[0].0, notes[0].1), (EventType::Warning, "RunFailed"));
    assert_eq!(
        notes[0].2,
        "day 1 run of 2025-10-07T12:00:00Z (demo-20251007120000-1): a backup failed or was deleted"
    );
    let steady = world.tick(created + TimeDelta::seconds(40));
    assert!(events(&done.status, &steady.status, None).is_empty());

    world.schedule.spec.suspend = true;
    let suspended = world.tick(created + TimeDelta::seconds(50));
    let notes = events(&steady.status, &suspended.status, None);
    assert_eq!((notes[0].0, notes[0].1), (EventType::Normal, "Suspended"));
}
