//! Integration test: the rebuild executor against real PostgreSQL 15 processes.
//!
//! A primary `a` and a standby `b` (itself built by the executor's pg_basebackup path);
//! `b` is promoted, `a` keeps writing (so it diverges) and crashes; the executor turns `a`
//! into a standby of `b` with pg_rewind. Then `a`'s data is replaced by an unrelated cluster,
//! pg_rewind fails, and the executor falls back to pg_basebackup. Several SQL texts of
//! `switchover::sql` run here for real.
//!
//! The processes run in [`crate::test_pg::PgBed`].

use std::fs;
use std::path::PathBuf;

use super::exec::{Executor, RebuildSource, StartMode};
use super::plan::{RebuildStep, kinds};
use crate::switchover::sql;
use crate::test_pg::{PgBed, free_port};

const PASSWORD: &str = "relevo-test-secret";

/// The shared bed, with a password file for TCP connections as `postgres`.
struct Pg {
    bed: PgBed,
    passfile: PathBuf,
}

impl std::ops::Deref for Pg {
    type Target = PgBed;
    fn deref(&self) -> &PgBed {
        &self.bed
    }
}

impl std::ops::DerefMut for Pg {
    fn deref_mut(&mut self) -> &mut PgBed {
        &mut self.bed
    }
}

impl Pg {
    fn new() -> Pg {
        let tools = ["initdb", "pg_ctl", "postgres", "pg_rewind", "pg_basebackup", "pg_controldata", "psql"];
        let mut bed = PgBed::new("relevo-rebuild", &tools, PASSWORD);
        let passfile = bed.write_private("pgpass", &format!("127.0.0.1:*:*:postgres:{PASSWORD}\n"));
        bed.runner.env.push(("PGPASSFILE".into(), passfile.clone().into()));
        Pg { bed, passfile }
    }

    fn initdb(&self, name: &str) {
        self.bed.initdb(name, &["--auth-local=trust"]);
        self.append_conf(
            name,
            &format!(
                "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nwal_log_hints = on\n\
                 fsync = off\nmax_wal_senders = 5\nwal_keep_size = '128MB'\nhot_standby = on\n\
                 wal_retrieve_retry_interval = '200ms'\nshared_buffers = '16MB'\n",
                self.sock.display()
            ),
        );
    }

    fn conninfo(&self, port: u16, app: Option<&str>) -> String {
        let port = port.to_string();
        let passfile = self.passfile.display().to_string();
        let mut pairs = vec![("host", "127.0.0.1"), ("port", port.as_str()), ("user", "postgres")];
        match app {
            Some(app) => pairs.extend([("application_name", app), ("passfile", passfile.as_str())]),
            None => pairs.push(("dbname", "postgres")),
        }
        crate::protocol::quote::conninfo(&pairs)
    }

    fn executor(&self, name: &str, port: u16) -> Executor {
        Executor {
            bin_dir: self.bin.clone(),
            data_dir: self.dir(name),
            runner: self.runner.clone(),
            start: StartMode::PgCtl {
                options: format!("-p {port}"),
                log_file: self.root.join(format!("{name}.log")),
            },
        }
    }

    fn create_slot(&self, port: u16, slot: &str) {
        let prepared = format!(
            "PREPARE mk(name) AS {}; EXECUTE mk('{slot}'); EXECUTE mk('{slot}')",
            sql::CREATE_SLOT_IF_ABSENT
        );
        self.sql(port, &prepared);
        let listed = self.sql(port, sql::LIST_SLOTS);
        assert!(listed.lines().filter(|l| *l == slot).count() == 1, "slot {slot} once: {listed}");
    }
}

fn source(
    pg: &Pg,
    port: u16,
    standby: &str,
    system_identifier: Option<u64>,
    timeline: Option<u32>,
) -> RebuildSource {
    RebuildSource {
        conninfo: pg.conninfo(port, None),
        primary_conninfo: pg.conninfo(port, Some(standby)),
        slot: Some(sql::slot_name(standby)),
        system_identifier,
        timeline,
    }
}

#[test]
fn rebuilds_a_diverged_old_primary_with_pg_rewind_and_falls_back_to_pg_basebackup() {
    let mut pg = Pg::new();
    let (pa, pb) = (free_port(), free_port());
    pg.initdb("a");
    pg.start("a", pa);
    let b = pg.dir("b");
    pg.started.push(b); // stopped on drop whatever happens below
    pg.sql(pa, "CREATE TABLE t (id int PRIMARY KEY, origin text); INSERT INTO t SELECT g, 'a' FROM generate_series(1, 10) g");

    // b is built by the executor: empty directory -> pg_basebackup over TCP with the passfile.
    pg.create_slot(pa, "relevo_b");
    let report = pg.executor("b", pb).rebuild(&source(&pg, pa, "b", None, None)).unwrap();
    assert_eq!(kinds(&report.executed), ["basebackup", "config", "start"]);
    pg.wait_streaming(pa, "b");
    pg.sql(pa, "INSERT INTO t SELECT g, 'a' FROM generate_series(11, 20) g");
    pg.wait_until("b replays 20 rows", || {
        let n = pg.psql(pb, "SELECT count(*) FROM t").unwrap_or_else(|e| e);
        (n == "20", n)
    });
    let status = pg.sql(pb, sql::INSTANCE_STATUS);
    assert!(status.starts_with("t||"), "standby: in recovery, no flush LSN: {status}");
    assert!(
        status.contains("|1|1|127.0.0.1|relevo_b"),
        "timeline 1, streaming from a via its slot: {status}"
    );
    // The operator's one probe, for real, on the primary: its 20 columns, its slot and the
    // standby streaming from it (asynchronously: no synchronous standby, an empty
    // synchronous_standby_names); and on the standby, the archiver left out by role.
    let probe = pg.sql(pa, &crate::postgres::probe::PROBE);
    let columns: Vec<&str> = probe.split('|').collect();
    assert_eq!(columns.len(), 20, "{probe}");
    assert_eq!((columns[0], columns[4], columns[9], columns[10]), ("f", "1", "{relevo_b}", "{b}"), "{probe}");
    assert_eq!((columns[18], columns[19]), ("{}", ""), "{probe}");
    let probe = pg.sql(pb, &crate::postgres::probe::PROBE);
    assert!(
        probe.starts_with("t||") && probe.split('|').nth(8).is_some_and(|c| c.contains("application_name")),
        "{probe}"
    );

    // Promote b twice (the second is a no-op), checkpoint on the new timeline.
    assert_eq!(pg.sql(pb, &sql::promote(30)), "t");
    assert_eq!(pg.sql(pb, &sql::promote(30)), "t");
    assert_eq!(pg.sql(pb, sql::IS_IN_RECOVERY), "f");
    pg.sql(pb, sql::CHECKPOINT);
    assert_eq!(pg.sql(pb, sql::CHECKPOINT_TIMELINE), "2");
    let status = pg.sql(pb, sql::INSTANCE_STATUS);
    assert!(status.starts_with("f|0/"), "{status}");
    assert!(status.contains("|2|2||"), "primary on timeline 2, checkpointed: {status}");

    // a diverges, then crashes.
    pg.sql(pa, "INSERT INTO t SELECT g, 'a-diverged' FROM generate_series(1000, 1010) g");
    pg.sql(pb, "INSERT INTO t SELECT g, 'b' FROM generate_series(2000, 2005) g");
    pg.stop("a", "immediate");
    pg.create_slot(pb, "relevo_a");
    let system_id: u64 = pg.sql(pb, "SELECT system_identifier FROM pg_control_system()").parse().unwrap();

    let exec_a = pg.executor("a", pa);
    let report = exec_a.rebuild(&source(&pg, pb, "a", Some(system_id), Some(2))).unwrap();
    assert_eq!(kinds(&report.executed), ["clean", "rewind", "config", "start"], "{report:?}");
    assert!(!exec_a.rewind_marker().exists());
    pg.wait_streaming(pb, "a");
    pg.sql(pb, "INSERT INTO t VALUES (3000, 'b')");
    pg.wait_until("a replays row 3000", || {
        let seen = pg.psql(pa, "SELECT count(*) FROM t WHERE id = 3000").unwrap_or_else(|e| e);
        (seen == "1", seen)
    });
    assert_eq!(pg.sql(pa, "SELECT pg_is_in_recovery()"), "t");
    assert_eq!(
        pg.sql(pa, "SELECT count(*) FROM t WHERE origin = 'a-diverged'"),
        "0",
        "diverged rows rewound"
    );
    assert_eq!(pg.sql(pa, "SELECT count(*) FROM t WHERE origin = 'b'"), "7");
    assert_eq!(pg.sql(pa, "SELECT count(*) FROM t"), "27");
    let auto_conf = fs::read_to_string(pg.dir("a").join("postgresql.auto.conf")).unwrap();
    assert!(!auto_conf.contains(PASSWORD), "no password written to the data directory");
    assert_eq!(auto_conf.matches("primary_conninfo").count(), 1, "{auto_conf}");

    // Replace a's data by an unrelated cluster: pg_rewind must fail, pg_basebackup must win.
    pg.stop("a", "fast");
    pg.initdb("c");
    fs::remove_dir_all(pg.dir("a")).unwrap();
    fs::rename(pg.dir("c"), pg.dir("a")).unwrap();
    let report = exec_a.rebuild(&source(&pg, pb, "a", None, Some(2))).unwrap();
    assert_eq!(kinds(&report.executed), ["basebackup", "config", "start"], "{report:?}");
    let why = report.rewind_error.expect("the rewind was tried and failed");
    assert!(why.contains("different systems"), "{why}");
    assert!(!exec_a.rewind_marker().exists(), "a base backup clears the rewind marker");
    pg.wait_streaming(pb, "a");
    pg.wait_until("a has b's rows after the base backup", || {
        let seen = pg.psql(pa, "SELECT count(*) FROM t").unwrap_or_else(|e| e);
        (seen == "27", seen)
    });

    // With its upstream gone the WAL receiver stops; the standby still reports timeline 2.
    pg.stop("b", "fast");
    pg.wait_until("a's WAL receiver stops streaming", || {
        let status = pg.sql(pa, sql::INSTANCE_STATUS);
        (!status.contains("127.0.0.1"), status)
    });
    let status = pg.sql(pa, sql::INSTANCE_STATUS);
    assert_eq!(status.split('|').nth(4), Some("2"), "standby timeline without a receiver: {status}");
}

#[test]
fn a_running_postgres_is_never_rebuilt_over() {
    let mut pg = Pg::new();
    let port = free_port();
    pg.initdb("a");
    pg.start("a", port);
    let state = pg.executor("a", port).inspect();
    assert!(state.valid && state.has_postmaster_pid, "{state:?}");
    let err = pg.executor("a", port).run_step(&RebuildStep::EnsureCleanShutdown).unwrap_err();
    assert!(err.to_string().contains("PostgreSQL is running"), "{err}");
    assert_eq!(pg.sql(port, "SELECT 1"), "1", "untouched");
}
