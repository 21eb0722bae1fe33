//! Real PostgreSQL 15 and pgBackRest: a primary that could not archive its last segment is
//! replaced by a promoted standby, which puts that segment into the repository.

use std::path::Path;

use super::archive_backfill::push_earlier_timelines;
use super::tools::Tools;
use crate::pgbackrest::command::Pgbackrest;
use crate::rebuild::process::args;
use crate::test_pg::{PgBed, free_port};

const TOOLS: [&str; 5] = ["initdb", "pg_ctl", "postgres", "pg_basebackup", "psql"];

fn pgbackrest(bed: &PgBed, argv: &[&str]) -> Result<String, String> {
    let conf = format!("--config={}", bed.root.join("pgbackrest.conf").display());
    let mut words = args([conf.as_str(), "--stanza=db"]);
    words.extend(args(argv.iter().copied()));
    bed.runner.run(Path::new("pgbackrest"), &words).map(|o| o.stdout).map_err(|e| e.to_string())
}

fn write_conf(bed: &PgBed, instance: &str, port: u16) {
    let root = bed.root.display();
    let conf = format!(
        "[global]\nrepo1-path={root}/repo\nlock-path={root}/lock\nlog-path={root}\nlog-level-console=warn\n\
         log-level-file=off\nstart-fast=y\n\n[db]\npg1-path={}\npg1-port={port}\npg1-socket-path={}\n",
        bed.dir(instance).display(),
        bed.sock.display()
    );
    bed.write_private("pgbackrest.conf", &conf);
}

#[test]
fn a_promoted_standby_archives_the_segments_its_old_primary_could_not() {
    let mut bed = PgBed::new("relevo-backfill", &TOOLS, "relevo-test-secret");
    for dir in ["repo", "lock"] {
        std::fs::create_dir_all(bed.root.join(dir)).unwrap();
        bed.give(&bed.root.join(dir));
    }
    bed.initdb_streaming("old");
    let old_port = free_port();
    write_conf(&bed, "old", old_port);
    // Archiving works until the stanza exists, then the repository "goes away".
    let conf = bed.root.join("pgbackrest.conf");
    bed.append_conf(
        "old",
        &format!(
            "archive_mode = on\narchive_command = 'pgbackrest --config={} --stanza=db archive-push %p'\n",
            conf.display()
        ),
    );
    bed.start("old", old_port);
    pgbackrest(&bed, &["stanza-create"]).expect("stanza-create");
    bed.clone_standby("new", old_port, "user=postgres application_name=new", "");
    let new_port = free_port();
    bed.start("new", new_port);
    bed.wait_streaming(old_port, "new");
    bed.sql(old_port, "ALTER SYSTEM SET archive_command = 'false'");
    bed.sql(old_port, "SELECT pg_reload_conf()");
    bed.sql(old_port, "CREATE TABLE t AS SELECT generate_series(1, 1000) AS n");
    let unarchived = bed.sql(old_port, "SELECT pg_walfile_name(pg_current_wal_lsn())");
    bed.sql(old_port, "SELECT pg_switch_wal()");
    bed.sql(old_port, "SELECT pg_switch_wal()");
    let flushed = bed.sql(old_port, "SELECT pg_current_wal_flush_lsn()");
    bed.wait_until("the standby replays the old primary's end", || {
        let seen = bed.sql(new_port, &format!("SELECT pg_last_wal_replay_lsn() >= '{flushed}'"));
        (seen == "t", seen)
    });
    let fetched = bed.root.join("fetched").display().to_string();
    assert!(
        pgbackrest(&bed, &["archive-get", &unarchived, &fetched]).is_err(),
        "{unarchived} was never archived"
    );
    bed.stop("old", "immediate");
    bed.sql(new_port, "SELECT pg_promote()");

    write_conf(&bed, "new", new_port);
    let tools = Tools { wrapper: bed.runner.wrapper.clone(), pg_bin_dir: None };
    let pgbr = Pgbackrest::new("db").unwrap().with_config(&conf.display().to_string());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let summary = runtime.block_on(push_earlier_timelines(&tools, &pgbr, &bed.dir("new")));

    assert_eq!(summary.failed, None, "{}", summary.describe());
    assert!(summary.pushed >= 1, "{summary:?}");
    pgbackrest(&bed, &["archive-get", &unarchived, &fetched])
        .unwrap_or_else(|e| panic!("{unarchived} is still missing from the archive: {e}"));
    // Twice is harmless: pgBackRest accepts a segment it holds with the same checksum.
    let again = runtime.block_on(push_earlier_timelines(&tools, &pgbr, &bed.dir("new")));
    assert_eq!(again.failed, None, "{}", again.describe());
}
