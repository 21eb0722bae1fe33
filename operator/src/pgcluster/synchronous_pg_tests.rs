//! Integration test: synchronous replication as relevo sets it, against real PostgreSQL 15.
//!
//! With relevo's synchronous_standby_names (ALTER SYSTEM + reload, as the reconcile does it)
//! and `required`, a commit on a primary without a standby does not return; it returns once a
//! standby streams with relevo's application_name (the instance name), which the primary then
//! reports as `quorum`. With `preferred` and no standby streaming, relevo's value lets commits
//! through.

use std::time::{Duration, Instant};

use super::{StandbyNamesChange, alter_system};
use crate::crd::pgcluster::{DataDurability, SynchronousSpec};
use crate::pgcluster::synchronous::standby_names_change;
use crate::protocol::names;
use crate::test_pg::{PgBed, free_port};

const PASSWORD: &str = "relevo-sync-test-secret";

/// How long a commit is given to prove it waits.
const BOUNDED_WAIT: Duration = Duration::from_secs(2);

/// What the reconcile would run on the primary, run through psql.
fn apply_as_the_reconcile_does(bed: &PgBed, port: u16, change: &StandbyNamesChange) {
    bed.sql(port, &alter_system(change));
    bed.sql(port, "SELECT pg_reload_conf()");
}

fn wait_for_setting(bed: &PgBed, port: u16, wanted: &str) {
    bed.wait_until("synchronous_standby_names reloaded", || {
        let seen = bed.sql(port, "SHOW synchronous_standby_names");
        (seen == wanted, seen)
    });
}

#[test]
fn a_required_commit_waits_for_a_standby_with_the_instance_name() {
    let tools = ["initdb", "pg_ctl", "postgres", "pg_basebackup", "psql"];
    let mut bed = PgBed::new("relevo-sync", &tools, PASSWORD);
    let (primary_port, standby_port) = (free_port(), free_port());
    bed.initdb_streaming("primary");
    bed.start("primary", primary_port);
    bed.sql(primary_port, "CREATE TABLE ledger (id int)");

    let required = SynchronousSpec { number: 1, ..SynchronousSpec::default() };
    let change = standby_names_change("demo", Some(&required), 0, "").expect("a change from ''");
    let StandbyNamesChange::Set(value) = &change else { panic!("{change:?}") };
    apply_as_the_reconcile_does(&bed, primary_port, &change);
    wait_for_setting(&bed, primary_port, value);

    // Stopped on drop, pass or fail (started below without &mut, beside the waiting commit).
    bed.started.push(bed.dir("standby"));
    std::thread::scope(|scope| {
        let commit = scope.spawn(|| bed.psql(primary_port, "INSERT INTO ledger VALUES (1)"));
        std::thread::sleep(BOUNDED_WAIT);
        assert!(!commit.is_finished(), "the commit returned with no standby: {:?}", commit.join());
        let waiting =
            bed.sql(primary_port, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'");
        assert_eq!(waiting, "1", "the commit waits for synchronous replication");
        assert_eq!(bed.sql(primary_port, "SELECT count(*) FROM ledger"), "0", "not visible while it waits");

        // A standby whose application_name is its instance name, as primary_conninfo sets it.
        let standby = names::instance("demo", 2);
        bed.clone_standby("standby", primary_port, &format!("user=postgres application_name={standby}"), "");
        let started = Instant::now();
        // PgBed::start needs &mut while the waiting commit borrows the bed: pg_ctl directly.
        let mut argv = crate::rebuild::process::args(["start", "-w", "-t", "60", "-D"]);
        argv.push(bed.dir("standby").into());
        argv.push("-l".into());
        argv.push(bed.root.join("standby.log").into());
        argv.extend(crate::rebuild::process::args(["-o", &format!("-p {standby_port}")]));
        bed.run("pg_ctl", argv).unwrap_or_else(|e| panic!("starting the standby: {e}"));

        let result = commit.join().expect("the commit thread");
        assert!(result.is_ok(), "the commit failed: {result:?}");
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(30), "returned only after {elapsed:?}");
        let reported = bed.sql(primary_port, "SELECT application_name || ':' || sync_state FROM pg_stat_replication WHERE application_name = 'demo-2'");
        assert_eq!(reported, "demo-2:quorum", "ANY 1: the standby counts towards the quorum");
        bed.stop("standby", "fast");
    });
    assert_eq!(bed.sql(primary_port, "SELECT count(*) FROM ledger"), "1");

    // The standby is gone (stopped above). `preferred` with none streaming: relevo empties
    // the value and commits carry on.
    let preferred = SynchronousSpec { data_durability: DataDurability::Preferred, ..required };
    let current = bed.sql(primary_port, "SHOW synchronous_standby_names");
    let change = standby_names_change("demo", Some(&preferred), 0, &current).expect("emptied");
    assert_eq!(change, StandbyNamesChange::Set(String::new()));
    apply_as_the_reconcile_does(&bed, primary_port, &change);
    wait_for_setting(&bed, primary_port, "");
    let started = Instant::now();
    bed.sql(primary_port, "INSERT INTO ledger VALUES (2)");
    assert!(started.elapsed() < BOUNDED_WAIT, "a preferred commit waited {:?}", started.elapsed());
}

/// A standby cloned while the cluster was asynchronous, readied as the reconcile readies every
/// standby, runs relevo's `required` list the moment it is promoted: its first commit waits
/// for a standby instead of being acknowledged asynchronously until a reconcile reaches it.
#[test]
fn a_standby_readied_for_promotion_is_synchronous_from_its_first_commit_as_primary() {
    use crate::pgcluster::synchronous::standby_names_on_promotion;
    let tools = ["initdb", "pg_ctl", "postgres", "pg_basebackup", "psql"];
    let mut bed = PgBed::new("relevo-sync-promote", &tools, PASSWORD);
    let (primary_port, standby_port) = (free_port(), free_port());
    bed.initdb_streaming("primary");
    bed.start("primary", primary_port);
    bed.sql(primary_port, "CREATE TABLE ledger (id int)");
    let standby = names::instance("demo", 2);
    bed.clone_standby("standby", primary_port, &format!("user=postgres application_name={standby}"), "");
    bed.start("standby", standby_port);
    assert_eq!(bed.sql(standby_port, "SELECT pg_is_in_recovery()"), "t");

    let required = SynchronousSpec { number: 1, ..SynchronousSpec::default() };
    let current = bed.sql(standby_port, "SHOW synchronous_standby_names");
    assert_eq!(current, "", "cloned from an asynchronous primary");
    let change = standby_names_on_promotion("demo", Some(&required), &current).expect("a change");
    let StandbyNamesChange::Set(value) = &change else { panic!("{change:?}") };
    apply_as_the_reconcile_does(&bed, standby_port, &change);
    wait_for_setting(&bed, standby_port, value);
    assert_eq!(bed.sql(primary_port, "SHOW synchronous_standby_names"), "", "the primary is untouched");

    bed.stop("primary", "fast");
    assert_eq!(bed.sql(standby_port, "SELECT pg_promote(true, 60)"), "t");
    assert_eq!(bed.sql(standby_port, "SHOW synchronous_standby_names"), *value);
    std::thread::scope(|scope| {
        let commit = scope.spawn(|| bed.psql(standby_port, "INSERT INTO ledger VALUES (1)"));
        std::thread::sleep(BOUNDED_WAIT);
        let finished = commit.is_finished();
        // Released either way, so that the scope can end: an empty list frees the waiter.
        apply_as_the_reconcile_does(&bed, standby_port, &StandbyNamesChange::Set(String::new()));
        let result = commit.join().expect("the commit thread");
        assert!(!finished, "the first commit as primary returned with no standby: {result:?}");
    });
}
