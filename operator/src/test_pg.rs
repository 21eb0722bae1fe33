//! Test-only: real PostgreSQL 15 processes for the tests that need them (`rebuild`,
//! `postgres`). A temporary directory with a private socket directory, servers on free
//! loopback ports, every server stopped (immediate) when the bed is dropped, pass or fail.
//!
//! Binaries come from /usr/lib/postgresql/15/bin, or `RELEVO_PG_BIN`; a missing one fails the
//! test, it does not skip. As root, every program runs through `runuser -u postgres --`
//! (PostgreSQL refuses to run as root), in a directory the postgres user owns.

use std::ffi::OsString;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::rebuild::process::{Runner, args};

pub struct PgBed {
    pub bin: PathBuf,
    pub root: PathBuf,
    pub sock: PathBuf,
    pub runner: Runner,
    /// The postgres user's uid and gid when running as root.
    owner: Option<(u32, u32)>,
    /// Data directories to stop on drop.
    pub started: Vec<PathBuf>,
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "postgres"]).output().expect("running id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the postgres user must exist to run PostgreSQL as root")
}

/// A loopback port for a test server to listen on. Taken below the kernel's ephemeral range
/// (32768 and up): a port the kernel hands out (`bind(:0)`) can be taken again, between this
/// choice and the server's own bind, by a client connection of a test running in parallel.
/// Each test process walks its own stretch of the range (by process id), and never hands out
/// the same port twice.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(997) % SPAN;
    for _ in 0..SPAN {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = u16::try_from(FIRST + offset).expect("below 32768");
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN);
}

impl PgBed {
    /// A bed under a directory named after `prefix`, checking that `tools` exist, with the
    /// superuser's initdb password file written.
    pub fn new(prefix: &str, tools: &[&str], password: &str) -> PgBed {
        let bin =
            PathBuf::from(std::env::var("RELEVO_PG_BIN").unwrap_or("/usr/lib/postgresql/15/bin".into()));
        for tool in tools {
            assert!(
                bin.join(tool).is_file(),
                "PostgreSQL binary {} is missing: install postgresql-15 or set RELEVO_PG_BIN",
                bin.join(tool).display()
            );
        }
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let root = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(root.join("sock")).unwrap();
        let as_root = fs::metadata("/proc/self").unwrap().uid() == 0;
        let owner = as_root.then(|| (id_of("-u"), id_of("-g")));
        let wrapper = if as_root { args(["runuser", "-u", "postgres", "--"]) } else { vec![] };
        let runner = Runner { wrapper, env: vec![], timeout: Duration::from_secs(120) };
        let bed = PgBed { bin, sock: root.join("sock"), root, runner, owner, started: Vec::new() };
        bed.give(&bed.root);
        bed.give(&bed.sock);
        bed.write_private("pwfile", &format!("{password}\n"));
        bed
    }

    /// The postgres user's uid and gid, when running as root.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// Hands `path` to the postgres user (when running as root).
    pub fn give(&self, path: &Path) {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
    }

    /// A file only the postgres user reads (libpq and PostgreSQL insist on it for keys and
    /// password files).
    pub fn write_private(&self, name: &str, text: &str) -> PathBuf {
        let path = self.root.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        self.give(&path);
        path
    }

    pub fn run(&self, tool: &str, argv: Vec<OsString>) -> Result<String, String> {
        self.runner.run(&self.bin.join(tool), &argv).map(|o| o.stdout).map_err(|e| e.to_string())
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// initdb of `name` as superuser `postgres` with the bed's password file, plus `extra`.
    pub fn initdb(&self, name: &str, extra: &[&str]) {
        let mut argv = args(["-D"]);
        argv.push(self.dir(name).into());
        argv.extend(args(["-U", "postgres", "--auth-host=scram-sha-256", "--no-sync"]));
        argv.extend(args(extra.iter().copied()));
        argv.push(format!("--pwfile={}", self.root.join("pwfile").display()).into());
        self.run("initdb", argv).unwrap_or_else(|e| panic!("initdb {name}: {e}"));
    }

    /// Appends `text` to the postgresql.conf of `name`.
    pub fn append_conf(&self, name: &str, text: &str) {
        let path = self.dir(name).join("postgresql.conf");
        let mut conf = fs::read_to_string(&path).unwrap();
        conf.push_str(text);
        fs::write(&path, conf).unwrap();
    }

    pub fn start(&mut self, name: &str, port: u16) {
        let mut argv = args(["start", "-w", "-t", "60", "-D"]);
        argv.push(self.dir(name).into());
        argv.push("-l".into());
        argv.push(self.root.join(format!("{name}.log")).into());
        argv.extend(args(["-o", &format!("-p {port}")]));
        self.started.push(self.dir(name));
        if let Err(error) = self.run("pg_ctl", argv) {
            let log = fs::read_to_string(self.root.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!("starting {name} on port {port}: {error}\nits log ends:\n{}", tail.join("\n"));
        }
    }

    pub fn stop(&self, name: &str, mode: &str) {
        let mut argv = args(["stop", "-w", "-m", mode, "-D"]);
        argv.push(self.dir(name).into());
        self.run("pg_ctl", argv).unwrap_or_else(|e| panic!("stopping {name}: {e}"));
    }

    /// psql over the private socket as `postgres`.
    pub fn psql(&self, port: u16, sql: &str) -> Result<String, String> {
        let mut argv =
            args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-h"]);
        argv.push(self.sock.clone().into());
        argv.extend(args(["-p", &port.to_string(), "-c", sql]));
        self.run("psql", argv).map(|out| out.trim().to_owned())
    }

    pub fn sql(&self, port: u16, sql: &str) -> String {
        self.psql(port, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Polls `probe` until it returns true; on timeout, fails with the last thing it saw.
    pub fn wait_until(&self, what: &str, mut probe: impl FnMut() -> (bool, String)) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (done, seen) = probe();
            if done {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; last seen: {seen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_streaming(&self, primary_port: u16, standby: &str) {
        let query = "SELECT application_name || ':' || state FROM pg_stat_replication";
        self.wait_until(&format!("{standby} streaming"), || {
            let seen = self.psql(primary_port, query).unwrap_or_else(|e| e);
            (seen.lines().any(|l| l == format!("{standby}:streaming")), seen)
        });
    }

    /// A data directory `name` that serves streaming replication over the private socket
    /// only, with local trust (no password on the socket) and fsync off.
    pub fn initdb_streaming(&self, name: &str) {
        self.initdb(name, &["--auth-local=trust"]);
        self.append_conf(
            name,
            &format!(
                "\nlisten_addresses = ''\nunix_socket_directories = '{}'\nfsync = off\n\
                 max_wal_senders = 5\nhot_standby = on\nshared_buffers = '16MB'\n\
                 wal_retrieve_retry_interval = '200ms'\n",
                self.sock.display()
            ),
        );
    }

    /// Clones the data directory `name` from the server on `primary_port` and makes it a
    /// standby of it, with `conninfo` (after host and port) and the `extra` settings; not
    /// started. No -R: its primary_conninfo in postgresql.auto.conf would override this one.
    pub fn clone_standby(&self, name: &str, primary_port: u16, conninfo: &str, extra: &str) {
        let mut argv = args(["-D"]);
        argv.push(self.dir(name).into());
        argv.push("-h".into());
        argv.push(self.sock.clone().into());
        argv.extend(args(["-p", &primary_port.to_string(), "-U", "postgres", "-X", "stream", "--no-sync"]));
        self.run("pg_basebackup", argv).unwrap_or_else(|e| panic!("pg_basebackup {name}: {e}"));
        let signal = self.dir(name).join("standby.signal");
        fs::write(&signal, "").unwrap();
        self.give(&signal);
        let host = self.sock.display();
        self.append_conf(
            name,
            &format!("\nprimary_conninfo = 'host={host} port={primary_port} {conninfo}'\n{extra}"),
        );
    }
}

impl Drop for PgBed {
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
