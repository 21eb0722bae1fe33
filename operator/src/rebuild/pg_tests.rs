//! Integration test: the rebuild executor against real PostgreSQL 15 processes.
//!
//! A primary `a` and a standby `b` (itself built by the executor's pg_basebackup path);
//! `b` is promoted, `a` keeps writing (so it diverges) and crashes; the executor turns `a`
//! into a standby of `b` with pg_rewind. Then `a`'s data is replaced by an unrelated cluster,
//! pg_rewind fails, and the executor falls back to pg_basebackup. Several SQL texts of
//! `switchover::sql` run here for real.
//!
//! Binaries come from /usr/lib/postgresql/15/bin, or `RELEVO_PG_BIN`; when they are missing
//! the test fails, it does not skip. As root, every PostgreSQL program runs through
//! `runuser -u postgres --` (PostgreSQL refuses to run as root), in a temporary directory
//! owned by postgres. Servers listen on free loopback ports and on a private socket
//! directory, and are stopped (immediate) when the test ends, pass or fail.

use std::ffi::OsString;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::exec::{Executor, RebuildSource, StartMode};
use super::plan::{RebuildStep, kinds};
use super::process::{Runner, args};
use crate::switchover::sql;

const PASSWORD: &str = "relevo-test-secret";

struct Pg {
    bin: PathBuf,
    root: PathBuf,
    sock: PathBuf,
    passfile: PathBuf,
    runner: Runner,
    started: Vec<PathBuf>,
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "postgres"]).output().expect("running id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the postgres user must exist to run PostgreSQL as root")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Pg {
    fn new() -> Pg {
        let bin =
            PathBuf::from(std::env::var("RELEVO_PG_BIN").unwrap_or("/usr/lib/postgresql/15/bin".into()));
        for tool in ["initdb", "pg_ctl", "postgres", "pg_rewind", "pg_basebackup", "pg_controldata", "psql"] {
            assert!(
                bin.join(tool).is_file(),
                "PostgreSQL binary {} is missing: install postgresql-15 or set RELEVO_PG_BIN",
                bin.join(tool).display()
            );
        }
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let root = std::env::temp_dir().join(format!("relevo-rebuild-{}-{nanos}", std::process::id()));
        fs::create_dir_all(root.join("sock")).unwrap();
        let as_root = fs::metadata("/proc/self").unwrap().uid() == 0;
        let wrapper = if as_root { args(["runuser", "-u", "postgres", "--"]) } else { vec![] };
        let passfile = root.join("pgpass");
        fs::write(&passfile, format!("127.0.0.1:*:*:postgres:{PASSWORD}\n")).unwrap();
        fs::write(root.join("pwfile"), format!("{PASSWORD}\n")).unwrap();
        fs::set_permissions(&passfile, fs::Permissions::from_mode(0o600)).unwrap();
        if as_root {
            let (uid, gid) = (id_of("-u"), id_of("-g"));
            for path in [root.clone(), root.join("sock"), passfile.clone(), root.join("pwfile")] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        let runner = Runner {
            wrapper,
            env: vec![("PGPASSFILE".into(), passfile.clone().into())],
            timeout: Duration::from_secs(120),
        };
        Pg { bin, sock: root.join("sock"), root, passfile, runner, started: Vec::new() }
    }

    fn run(&self, tool: &str, argv: Vec<OsString>) -> String {
        match self.runner.run(&self.bin.join(tool), &argv) {
            Ok(out) => out.stdout,
            Err(e) => panic!("{e}"),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn initdb(&self, name: &str) {
        let mut argv = args(["-D"]);
        argv.push(self.dir(name).into());
        argv.extend(args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"]));
        argv.push(format!("--pwfile={}", self.root.join("pwfile").display()).into());
        self.run("initdb", argv);
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nwal_log_hints = on\n\
             fsync = off\nmax_wal_senders = 5\nwal_keep_size = '128MB'\nhot_standby = on\n\
             wal_retrieve_retry_interval = '200ms'\nshared_buffers = '16MB'\n",
            self.sock.display()
        );
        let path = self.dir(name).join("postgresql.conf");
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        fs::write(&path, text).unwrap();
    }

    fn start(&mut self, name: &str, port: u16) {
        let mut argv = args(["start", "-w", "-t", "60", "-D"]);
        argv.push(self.dir(name).into());
        argv.push("-l".into());
        argv.push(self.root.join(format!("{name}.log")).into());
        argv.extend(args(["-o", &format!("-p {port}")]));
        self.run("pg_ctl", argv);
        self.started.push(self.dir(name));
    }

    fn stop(&self, name: &str, mode: &str) {
        let mut argv = args(["stop", "-w", "-m", mode, "-D"]);
        argv.push(self.dir(name).into());
        self.run("pg_ctl", argv);
    }

    fn psql(&self, port: u16, sql: &str) -> Result<String, String> {
        let mut argv =
            args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-h"]);
        argv.push(self.sock.clone().into());
        argv.extend(args(["-p", &port.to_string(), "-c", sql]));
        self.runner
            .run(&self.bin.join("psql"), &argv)
            .map(|o| o.stdout.trim().to_owned())
            .map_err(|e| e.to_string())
    }

    fn sql(&self, port: u16, sql: &str) -> String {
        self.psql(port, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Polls `probe` until it returns true; on timeout, fails with the last thing it saw.
    fn wait_until(&self, what: &str, mut probe: impl FnMut() -> (bool, String)) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (done, seen) = probe();
            if done {
                return;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; last seen: {seen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_streaming(&self, primary_port: u16, standby: &str) {
        let query = "SELECT application_name || ':' || state FROM pg_stat_replication";
        self.wait_until(&format!("{standby} streaming"), || {
            let seen = self.psql(primary_port, query).unwrap_or_else(|e| e);
            (seen.lines().any(|l| l == format!("{standby}:streaming")), seen)
        });
    }

    fn conninfo(&self, port: u16, app: Option<&str>) -> String {
        let port = port.to_string();
        let passfile = self.passfile.display().to_string();
        let mut pairs = vec![("host", "127.0.0.1"), ("port", port.as_str()), ("user", "postgres")];
        match app {
            Some(app) => pairs.extend([("application_name", app), ("passfile", passfile.as_str())]),
            None => pairs.push(("dbname", "postgres")),
        }
        sql::conninfo(&pairs)
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

impl Drop for Pg {
    fn drop(&mut self) {
        for dir in &self.started {
            let mut argv = args(["stop", "-m", "immediate", "-D"]);
            argv.push(dir.clone().into());
            let _ = self.runner.run(&self.bin.join("pg_ctl"), &argv);
        }
        if !std::thread::panicking() || std::env::var_os("RELEVO_KEEP_TEST_DIR").is_none() {
            let _ = fs::remove_dir_all(&self.root);
        }
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
    pg.started.push(pg.dir("b")); // stopped on drop whatever happens below
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
    // The operator's one probe, for real, on the primary: its 18 columns, its slot and the
    // standby streaming from it; and on the standby, the archiver left out by role.
    let probe = pg.sql(pa, &crate::postgres::probe::PROBE);
    let columns: Vec<&str> = probe.split('|').collect();
    assert_eq!(columns.len(), 18, "{probe}");
    assert_eq!((columns[0], columns[4], columns[9], columns[10]), ("f", "1", "{relevo_b}", "{b}"), "{probe}");
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
