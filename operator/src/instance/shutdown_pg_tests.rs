//! Real PostgreSQL 15: the fence's stop is not held by an archiver that cannot archive.

use std::time::{Duration, Instant};

use super::shutdown::{Stopped, Tools, exit_within, stop_unheld, unarchived_segments, until_pid_file};
use crate::test_pg::PgBed;

const TOOLS: [&str; 5] = ["initdb", "pg_ctl", "postgres", "pg_controldata", "psql"];

fn primary(archive_command: &str) -> (PgBed, u16) {
    let mut bed = PgBed::new("relevo-shutdown", &TOOLS, "relevo-test-secret");
    bed.initdb_streaming("p");
    bed.append_conf("p", &format!("archive_mode = on\narchive_command = '{archive_command}'\n"));
    let port = crate::test_pg::free_port();
    bed.start("p", port);
    bed.sql(port, "CREATE TABLE kept AS SELECT 42 AS answer");
    (bed, port)
}

fn tools(bed: &PgBed) -> Tools {
    Tools { wrapper: bed.runner.wrapper.clone(), pg_bin_dir: Some(bed.bin.clone()) }
}

fn stop(bed: &PgBed) -> (Stopped, Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = Instant::now();
    let stopped = runtime.block_on(stop_unheld(&tools(bed), &bed.dir("p")));
    (stopped, started.elapsed())
}

#[test]
fn an_archiver_that_cannot_archive_does_not_hold_the_stop() {
    // The archive command hangs, as pgBackRest's archive-push does on a repository that
    // cannot take WAL; a fast shutdown alone would wait for it (and its retries).
    let (mut bed, port) = primary("sleep 120");
    bed.sql(port, "SELECT pg_switch_wal()");
    let data = bed.dir("p");
    bed.wait_until("a segment ready for the archiver", || {
        let ready = unarchived_segments(&data);
        (!ready.is_empty(), format!("{ready:?}"))
    });

    let (stopped, took) = stop(&bed);

    let Stopped::Escalated { checkpointed, unarchived } = &stopped else {
        panic!("the archiver was stuck, yet the fast shutdown finished: {stopped:?}")
    };
    assert!(*checkpointed, "the immediate shutdown came only after the shutdown checkpoint");
    assert!(!unarchived.is_empty(), "the unarchived segment is named");
    assert!(!data.join("postmaster.pid").exists(), "PostgreSQL is gone");
    assert!(took < Duration::from_secs(20), "the stop took {took:?}");
    assert_eq!(unarchived_segments(&data), *unarchived, "the segments stay ready for a later archiver");

    // Nothing committed was lost: the restart needs no WAL beyond the shutdown checkpoint.
    bed.start("p", port);
    assert_eq!(bed.sql(port, "SELECT answer FROM kept"), "42");
}

#[test]
fn a_working_archiver_gets_a_clean_fast_shutdown() {
    let (bed, port) = primary("true");
    bed.sql(port, "SELECT pg_switch_wal()");
    let (stopped, _) = stop(&bed);
    assert_eq!(stopped, Stopped::Clean);
    assert!(!bed.dir("p").join("postmaster.pid").exists());
}

#[test]
fn a_stop_asked_right_after_the_spawn_reaches_postgres() {
    // The supervisor's restart path: PostgreSQL spawned, and a restart decided at once. pg_ctl
    // finds PostgreSQL through postmaster.pid, which the postmaster writes a moment later.
    let bed = PgBed::new("relevo-shutdown", &TOOLS, "relevo-test-secret");
    bed.initdb_streaming("p");
    let data = bed.dir("p");
    let port = crate::test_pg::free_port().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (killed, took) = runtime.block_on(async {
        let tools = tools(&bed);
        let mut postgres =
            tools.command("postgres").arg("-D").arg(&data).args(["-p", &port]).spawn().unwrap();
        let started = Instant::now();
        until_pid_file(&mut postgres, &data).await;
        assert!(data.join("postmaster.pid").exists(), "a running PostgreSQL can be signalled");
        stop_unheld(&tools, &data).await;
        let waited = tokio::time::timeout(Duration::from_secs(90), exit_within(&mut postgres)).await;
        let (_, killed) = waited.expect("the exit is bounded").unwrap();
        (killed, started.elapsed())
    });
    assert!(!killed, "the fast shutdown reached PostgreSQL; it did not need killing");
    assert!(!data.join("postmaster.pid").exists(), "PostgreSQL is gone");
    assert!(took < Duration::from_secs(20), "the stop took {took:?}");
}
