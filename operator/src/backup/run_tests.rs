//! `relevo backup-job` against a real PostgreSQL 15 and pgBackRest 2.45: a local repository,
//! WAL archived with archive-push, then a full and an incremental backup through [`run`],
//! and a failing one. Missing binaries fail the test; it never skips.
//!
//! As root, PostgreSQL and pgBackRest run through `runuser -u postgres --` in a temporary
//! directory owned by postgres; PostgreSQL listens only on a private socket directory and is
//! stopped (immediate) when the test ends, pass or fail.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use super::*;
use crate::backup::result::decode;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const STANZA: &str = "db";

struct Setup {
    root: PathBuf,
    wrapper: Vec<String>,
    pg_bin: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let pg_bin = PathBuf::from(std::env::var("RELEVO_PG_BIN").unwrap_or(PG_BIN.into()));
        assert!(pg_bin.join("pg_ctl").is_file(), "PostgreSQL 15 is missing at {}", pg_bin.display());
        assert!(
            Command::new("pgbackrest").arg("version").output().is_ok_and(|o| o.status.success()),
            "pgbackrest is missing: install pgbackrest (2.45)"
        );
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let root = std::env::temp_dir().join(format!("relevo-backup-job-{}-{nanos}", std::process::id()));
        for dir in ["sock", "repo", "lock", "log"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        let as_root = fs::metadata("/proc/self").unwrap().uid() == 0;
        let wrapper: Vec<String> =
            if as_root { ["runuser", "-u", "postgres", "--"].map(String::from).to_vec() } else { vec![] };
        let setup = Setup { root, wrapper, pg_bin };
        if as_root {
            let status = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&setup.root).status();
            assert!(status.unwrap().success(), "chown to postgres");
        }
        setup
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn command(&self, program: &Path, args: &[&str]) -> String {
        let mut argv: Vec<String> = self.wrapper.clone();
        argv.push(program.display().to_string());
        argv.extend(args.iter().map(|a| a.to_string()));
        let output = Command::new(&argv[0]).args(&argv[1..]).output().expect("spawn");
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{argv:?} failed: {text}");
        text
    }

    fn pgbackrest_program(&self) -> Vec<String> {
        self.wrapper.iter().cloned().chain(["pgbackrest".to_string()]).collect()
    }

    fn args(&self, stanza: &str, backup_type: BackupType, log: &str) -> BackupJobArgs {
        BackupJobArgs {
            config: self.path("pgbackrest.conf").display().to_string(),
            stanza: stanza.into(),
            backup_type,
            repo_path: self.path("repo").display().to_string(),
            termination_log: self.path(log),
            retention_full: None,
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for data in [self.path("data"), self.path("restored")] {
            if data.join("postmaster.pid").exists() {
                let mut argv = self.wrapper.clone();
                argv.push(self.pg_bin.join("pg_ctl").display().to_string());
                argv.extend(["stop", "-m", "immediate", "-D"].map(String::from));
                argv.push(data.display().to_string());
                let _ = Command::new(&argv[0]).args(&argv[1..]).output();
            }
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

#[test]
fn backup_job_leaves_the_new_set_in_the_termination_message() {
    let setup = Setup::new();
    let port = crate::test_pg::free_port().to_string();
    let conf = setup.path("pgbackrest.conf");
    fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={repo}\nrepo1-retention-full=2\nlock-path={lock}\nlog-path={log}\n\
             log-level-file=off\nstart-fast=y\n\n[{STANZA}]\npg1-path={data}\npg1-port={port}\n\
             pg1-socket-path={sock}\n",
            repo = setup.path("repo").display(),
            lock = setup.path("lock").display(),
            log = setup.path("log").display(),
            data = setup.path("data").display(),
            sock = setup.path("sock").display(),
        ),
    )
    .unwrap();
    if !setup.wrapper.is_empty() {
        Command::new("chown").arg("postgres:postgres").arg(&conf).status().unwrap();
    }
    let data = setup.path("data").display().to_string();
    setup.command(
        &setup.pg_bin.join("initdb"),
        &["-D", &data, "-U", "postgres", "--auth-local=trust", "--no-sync"],
    );
    let settings = format!(
        "\nlisten_addresses = ''\nunix_socket_directories = '{}'\nfsync = off\nshared_buffers = '16MB'\n\
         archive_mode = on\narchive_command = 'pgbackrest --config={} --stanza={STANZA} archive-push %p'\n",
        setup.path("sock").display(),
        conf.display()
    );
    let pg_conf = setup.path("data").join("postgresql.conf");
    let mut text = fs::read_to_string(&pg_conf).unwrap();
    text.push_str(&settings);
    fs::write(&pg_conf, text).unwrap();
    let log = setup.path("postgres.log").display().to_string();
    setup.command(
        &setup.pg_bin.join("pg_ctl"),
        &["start", "-w", "-t", "60", "-D", &data, "-l", &log, "-o", &format!("-p {port}")],
    );
    let pgbackrest = PathBuf::from("pgbackrest");
    let config = format!("--config={}", conf.display());
    setup.command(&pgbackrest, &[&config, &format!("--stanza={STANZA}"), "stanza-create"]);

    // A full backup, then an incremental one on top of it.
    let full = run(&setup.args(STANZA, BackupType::Full, "full.log"), &setup.pgbackrest_program()).unwrap();
    let JobResult::Completed(full) = full else { panic!("full backup failed: {full:?}") };
    assert_eq!(full.backup_type, BackupType::Full);
    assert!(full.label.ends_with('F') && !full.label.contains('_'), "{}", full.label);
    assert_eq!(full.path, format!("{}/backup/{STANZA}/{}", setup.path("repo").display(), full.label));
    assert!(Path::new(&full.path).is_dir(), "the set is in the repository");
    assert!(full.size_bytes > 1_000_000 && full.repo_size_bytes > 0, "{full:?}");
    assert!(full.wal_start.is_some() && full.wal_stop.is_some());
    assert!(full.start <= full.stop);
    let message = fs::read_to_string(setup.path("full.log")).unwrap();
    assert_eq!(decode(&message).unwrap(), JobResult::Completed(full.clone()));

    let psql = |port: &str, sql: &str| {
        let sock = setup.path("sock").display().to_string();
        let args = ["-XAtq", "-h", &sock, "-p", port, "-U", "postgres", "-c", sql];
        setup.command(&setup.pg_bin.join("psql"), &args).trim().to_string()
    };
    psql(&port, "CREATE ROLE streaming_replica LOGIN REPLICATION; CREATE ROLE app LOGIN");
    psql(&port, "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 500) g");
    let incr = run(&setup.args(STANZA, BackupType::Incr, "incr.log"), &setup.pgbackrest_program()).unwrap();
    let JobResult::Completed(incr) = incr else { panic!("incremental backup failed: {incr:?}") };
    assert_eq!(incr.backup_type, BackupType::Incr);
    assert!(
        incr.label.starts_with(&format!("{}_", full.label)) && incr.label.ends_with('I'),
        "{}",
        incr.label
    );
    assert!(incr.repo_size_bytes < full.repo_size_bytes, "an incr stores less: {incr:?}");
    // Each result lists what the repository holds after it.
    let listed = |done: &BackupDone| done.repository.as_ref().and_then(|r| r.labels.clone());
    assert_eq!(listed(&full), Some(vec![full.label.clone()]));
    assert_eq!(listed(&incr), Some(vec![full.label.clone(), incr.label.clone()]));

    // A second full with --retention-full=1: pgBackRest expires the first chain at the end of
    // the backup, and the result says so.
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a new label second
    let mut keep_one = setup.args(STANZA, BackupType::Full, "second.log");
    keep_one.retention_full = Some(1);
    let second = run(&keep_one, &setup.pgbackrest_program()).unwrap();
    let JobResult::Completed(second) = second else { panic!("second full failed: {second:?}") };
    assert_eq!(listed(&second), Some(vec![second.label.clone()]));
    assert!(!Path::new(&full.path).exists(), "the first full left the repository");
    let view = crate::backup::retention::RepoView::of_done(&second).unwrap();
    assert!(view.is_gone(&full.label) && view.is_gone(&incr.label) && !view.is_gone(&second.label));

    // A stanza that does not exist: pgBackRest's own error comes back, in the message too.
    let failed =
        run(&setup.args("nowhere", BackupType::Full, "failed.log"), &setup.pgbackrest_program()).unwrap();
    let JobResult::Failed { error } = &failed else { panic!("expected a failure: {failed:?}") };
    assert!(error.starts_with("pgbackrest backup exited with status "), "{error}");
    assert!(error.contains("ERROR"), "pgBackRest's error line is kept: {error}");
    assert_eq!(decode(&fs::read_to_string(setup.path("failed.log")).unwrap()).unwrap(), failed);

    // A new cluster bootstrapped from the latest backup (the instance entrypoint's restore):
    // rows written after the backup are not there, and recovery promotes it.
    psql(&port, "INSERT INTO t SELECT g FROM generate_series(501, 600) g");
    let restored = setup.path("restored");
    let args = crate::instance::exec::InstanceArgs {
        cluster: "copy".into(),
        instance: "copy-1".into(),
        bootstrap: crate::instance::plan::Bootstrap::Restore,
        primary_host: "copy-rw".into(),
        pgdata: restored.clone(),
        app_database: "app".into(),
        app_owner: "app".into(),
        restore_stanza: Some(STANZA.into()),
        restore_config: Some(conf.display().to_string()),
        restore_label: None,
        restore_target_time: None,
    };
    let argv = crate::instance::exec::restore_argv(&args).unwrap();
    setup.command(Path::new(&argv[0]), &argv[1..].iter().map(String::as_str).collect::<Vec<_>>());
    let copy_port = crate::test_pg::free_port().to_string();
    let copy_log = setup.path("restored.log").display().to_string();
    // The test's copy keeps the source's postgresql.conf; it must not archive into the source.
    let options = format!("-p {copy_port} -c archive_mode=off");
    setup.command(
        &setup.pg_bin.join("pg_ctl"),
        &["start", "-w", "-t", "60", "-D", &restored.display().to_string(), "-l", &copy_log, "-o", &options],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut in_recovery = String::new();
    while std::time::Instant::now() < deadline {
        in_recovery = psql(&copy_port, "SELECT pg_is_in_recovery()");
        if in_recovery == "f" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(in_recovery, "f", "the restored copy is promoted at the end of the backup");
    assert_eq!(psql(&copy_port, "SELECT count(*) FROM t"), "500", "exactly the rows of the backup");
    let set = crate::instance::conf::after_restore_sql("app", "su-pw", "rep-pw", "app-pw");
    // One statement per call, as `psql -f` runs them (ALTER SYSTEM refuses a transaction).
    for statement in set.lines() {
        psql(&copy_port, statement);
    }
    assert_eq!(
        psql(&copy_port, "SELECT count(*) FROM pg_authid WHERE rolpassword LIKE 'SCRAM-SHA-256$%'"),
        "3",
        "the three roles got passwords"
    );
    let auto_conf = fs::read_to_string(restored.join("postgresql.auto.conf")).unwrap();
    assert!(!auto_conf.contains("restore_command"), "the restore's settings are gone:\n{auto_conf}");
    assert!(!auto_conf.contains("recovery_target"), "{auto_conf}");
}

#[test]
fn a_missing_pgbackrest_is_a_failed_result() {
    let dir = std::env::temp_dir().join(format!("relevo-backup-job-missing-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let args = BackupJobArgs {
        config: "/nonexistent/repo-host.conf".into(),
        stanza: "db".into(),
        backup_type: BackupType::Diff,
        repo_path: names::REPO_PATH.into(),
        termination_log: dir.join("termination-log"),
        retention_full: None,
    };
    let result = run(&args, &["/nonexistent/pgbackrest".to_string()]).unwrap();
    assert!(
        matches!(&result, JobResult::Failed { error } if error.starts_with("could not run pgbackrest backup")),
        "{result:?}"
    );
    assert_eq!(decode(&fs::read_to_string(dir.join("termination-log")).unwrap()).unwrap(), result);
    let bad_stanza = BackupJobArgs { stanza: "no spaces".into(), ..args };
    assert!(matches!(run(&bad_stanza, &pgbackrest_program()).unwrap(), JobResult::Failed { .. }));
    let _ = fs::remove_dir_all(&dir);
}
