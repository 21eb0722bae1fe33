//! Integration test: a cluster's pgBackRest, end to end, with real processes on loopback.
//!
//! - certificates from `pki`, written with the modes a Secret volume has in the pods
//!   (root-owned, group postgres, 0440) when the test runs as root;
//! - pg-host.conf and repo-host.conf from the real builders; only what a single machine
//!   cannot share with the pods is substituted: host names (`localhost`, an extra SAN of the
//!   test's certificate), ports, and paths;
//! - PostgreSQL 15 with the operator's archive_mode/archive_command (the production command,
//!   only its config path substituted), its pgBackRest TLS server (the sidecar), and the repo
//!   host run by the real `relevo repo-host` supervisor (server, stanza-create, check);
//! - a full backup taken from the repo side, and archive-push shown working: after
//!   pg_switch_wal the segment appears as the archive's max in `pgbackrest info`.
//!
//! Binaries come from /usr/lib/postgresql/15/bin (or `RELEVO_PG_BIN`) and PATH (pgbackrest);
//! when missing the test fails, it does not skip. As root, every program runs as postgres
//! through `runuser -u postgres --`. Each side gets its own lock path (`PGBACKREST_LOCK_PATH`),
//! as two pods would. Everything is stopped when the test ends, pass or fail.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Backoff, CHECK_PASSED, RepoHostArgs, STANZA_CREATED, Supervisor};
use crate::crd::BackupType;
use crate::pgbackrest::command::Pgbackrest;
use crate::pgbackrest::info;
use crate::pgcluster::builders::pgbackrest::{
    PG_HOST_CONF_KEY, TLS_FILE_MODE, conf_path, instance_pgbackrest, pg_host_config, repo_host_config,
};
use crate::pgcluster::parameters::archive_settings;
use crate::pki::{self, CertificateAuthority};
use crate::postgres::probe::ARCHIVER_QUERY;
use crate::protocol::names;
use crate::protocol::quote::conf_value as quote;
use crate::rebuild::process::{Runner, args};
use crate::test_pg::free_port;

const CLUSTER: &str = "demo";
const NAMESPACE: &str = "db";

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "postgres"]).output().expect("running id");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("the postgres user must exist to run as root")
}

/// Polls `probe` until it returns true; on timeout, fails with the last thing it saw.
fn wait_until(what: &str, timeout: Duration, mut probe: impl FnMut() -> (bool, String)) -> Duration {
    let started = Instant::now();
    loop {
        let (done, seen) = probe();
        if done {
            return started.elapsed();
        }
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `sh -c` script: make `$1` a read-only bind mount of itself, then exec the rest.
const RO_MOUNT_THEN_EXEC: &str =
    r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@""#;

struct Bed {
    root: PathBuf,
    as_root: bool,
    pg_bin: PathBuf,
    /// Runs programs as postgres, with the pg host's lock path.
    pg_side: Runner,
    /// Runs programs as postgres, with the repo host's lock path.
    repo_side: Runner,
    pg_server: Option<Child>,
    pg_started: bool,
    supervisor_stop: Arc<AtomicBool>,
    supervisor: Option<JoinHandle<Result<i32, super::RepoHostError>>>,
}

impl Bed {
    fn new() -> Bed {
        let pg_bin =
            PathBuf::from(std::env::var("RELEVO_PG_BIN").unwrap_or("/usr/lib/postgresql/15/bin".into()));
        for tool in ["initdb", "pg_ctl", "psql"] {
            assert!(
                pg_bin.join(tool).is_file(),
                "{} is missing: install postgresql-15",
                pg_bin.join(tool).display()
            );
        }
        let version =
            Command::new("pgbackrest").arg("version").output().expect("pgbackrest must be installed");
        eprintln!("using {}", String::from_utf8_lossy(&version.stdout).trim());
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let root = std::env::temp_dir().join(format!("relevo-pgbackrest-{}-{nanos}", std::process::id()));
        let as_root = fs::metadata("/proc/self").unwrap().uid() == 0;
        for dir in ["", "sock", "tls", "conf", "spool", "repo-volume", "lock-pg", "lock-repo", "run"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).unwrap();
            if as_root {
                std::os::unix::fs::chown(&path, Some(id_of("-u")), Some(id_of("-g"))).unwrap();
            }
        }
        let wrapper = if as_root { args(["runuser", "-u", "postgres", "--"]) } else { vec![] };
        let runner = |lock: &str| Runner {
            wrapper: wrapper.clone(),
            env: vec![("PGBACKREST_LOCK_PATH".into(), root.join(lock).into())],
            timeout: Duration::from_secs(120),
        };
        Bed {
            pg_side: runner("lock-pg"),
            repo_side: runner("lock-repo"),
            root,
            as_root,
            pg_bin,
            pg_server: None,
            pg_started: false,
            supervisor_stop: Arc::new(AtomicBool::new(false)),
            supervisor: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// A TLS file as the pods see it: root:postgres 0440 for the key (what the kubelet makes
    /// of a Secret with defaultMode 0440 and fsGroup), else the test user's own 0600.
    fn write_tls(&self, name: &str, content: &str) {
        let path = self.path("tls").join(name);
        fs::write(&path, content).unwrap();
        if self.as_root {
            std::os::unix::fs::chown(&path, Some(0), Some(id_of("-g"))).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(TLS_FILE_MODE as u32)).unwrap();
        } else {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    fn run(&self, runner: &Runner, program: &Path, argv: Vec<OsString>) -> Result<String, String> {
        runner.run(program, &argv).map(|out| out.stdout).map_err(|e| e.to_string())
    }

    fn pgbackrest(&self, runner: &Runner, argv: Vec<String>) -> Result<String, String> {
        self.run(runner, Path::new("pgbackrest"), args(&argv[1..]))
    }

    fn psql(&self, port: u16, sql: &str) -> String {
        let mut argv =
            args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres"]);
        argv.extend(args(["-h", &self.s("sock"), "-p", &port.to_string(), "-c", sql]));
        let out = self.run(&self.pg_side, &self.pg_bin.join("psql"), argv);
        out.unwrap_or_else(|e| panic!("{sql}: {e}")).trim().to_string()
    }

    /// `pgbackrest server` as a background process in its own group, logging to a file. As
    /// root, `read_only` is remounted read-only in a mount namespace of the server's own, as
    /// the sidecar mounts the data volume.
    fn spawn_server(&self, runner: &Runner, config: &Path, log: &str, read_only: Option<&Path>) -> Child {
        let log = fs::File::create(self.path(log)).unwrap();
        let mut command = match (read_only.filter(|_| self.as_root), runner.wrapper.split_first()) {
            (Some(dir), Some((first, rest))) => {
                let mut c = Command::new("unshare");
                c.args(["-m", "sh", "-c", RO_MOUNT_THEN_EXEC, "sh"]).arg(dir).arg(first).args(rest);
                c.arg("pgbackrest");
                c
            }
            (_, Some((first, rest))) => {
                let mut c = Command::new(first);
                c.args(rest).arg("pgbackrest");
                c
            }
            (_, None) => Command::new("pgbackrest"),
        };
        command
            .arg(format!("--config={}", config.display()))
            .arg("server")
            .envs(runner.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap()
    }

    fn log_tail(&self, name: &str) -> String {
        let text = fs::read_to_string(self.path(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.supervisor_stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.supervisor.take() {
            let _ = handle.join();
        }
        if let Some(mut server) = self.pg_server.take() {
            let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", server.id())]).status();
            let _ = server.wait();
        }
        if self.pg_started {
            let mut argv = args(["stop", "-m", "immediate", "-D"]);
            argv.push(self.path("data").into());
            let _ = self.pg_side.run(&self.pg_bin.join("pg_ctl"), &argv);
        }
        if !std::thread::panicking() || std::env::var_os("RELEVO_KEEP_TEST_DIR").is_none() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Mount options of `dir` as the `pgbackrest --config=<config> server` process sees it.
fn mount_seen_by_server(config: &Path, dir: &Path) -> Option<String> {
    let wanted = format!("--config={}", config.display());
    // Every matching process, not the first: a connection's child that is exiting (or a
    // zombie) has no readable mountinfo, while the server beside it does.
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if words.first() != Some(&&b"pgbackrest"[..]) || !words.contains(&wanted.as_bytes()) {
            return None;
        }
        let mountinfo = fs::read_to_string(entry.path().join("mountinfo")).ok()?;
        // id parent major:minor root mount-point options ...
        mountinfo.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(4) == Some(&dir.to_str()?)).then(|| fields.get(5).map(|o| o.to_string())).flatten()
        })
    })
}

/// How many `pgbackrest ... server` processes run, and `(pid, parent pid)` of defunct
/// processes whose parent is one of them.
fn zombie_children_of_servers() -> (usize, Vec<(String, String)>) {
    let stat_of = |pid: &str| fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let is_server = |pid: &str| {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        words.first() == Some(&&b"pgbackrest"[..]) && words.contains(&&b"server"[..])
    };
    let mut zombies = Vec::new();
    let mut servers = 0;
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if pid.starts_with(|c: char| c.is_ascii_digit()) && is_server(&pid) {
            servers += 1;
        }
        let stat = stat_of(&pid);
        // pid (comm) state ppid ...: comm may contain spaces, so parse after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1).is_some_and(|ppid| is_server(ppid)) {
            zombies.push((pid, fields[1].to_string()));
        }
    }
    (servers, zombies)
}

/// What [`start`] leaves running: PostgreSQL, its sidecar, and the repo host past `check`.
struct Started {
    pg_port: u16,
    pg_conf: PathBuf,
    repo_conf: PathBuf,
    ready_file: PathBuf,
}

/// Steps 1 to 5 of a cluster's pgBackRest on loopback, `encrypted` as the builders make it
/// (the repo side's runner must then carry the passphrase).
fn start(bed: &mut Bed, encrypted: bool) -> Started {
    let (pg_port, pg_tls_port, repo_tls_port) = (free_port(), free_port(), free_port());

    // 1. Certificates: the cluster's names, plus `localhost` for this machine.
    let ca = CertificateAuthority::generate(CLUSTER).unwrap();
    let mut dns_names = pki::pgbackrest_dns_names(CLUSTER, NAMESPACE);
    dns_names.push("localhost".into());
    let leaf = ca.issue(names::PGBACKREST_CLIENT_CN, &dns_names).unwrap();
    bed.write_tls("ca.crt", &ca.pem().cert_pem);
    bed.write_tls("tls.crt", &leaf.cert_pem);
    bed.write_tls("tls.key", &leaf.key_pem);
    let key_mode = fs::metadata(bed.path("tls").join("tls.key")).unwrap();
    eprintln!("tls.key: uid {} gid {} mode {:o}", key_mode.uid(), key_mode.gid(), key_mode.mode() & 0o777);

    // 2. Configuration from the builders; hosts, ports and paths substituted.
    let files = crate::pgbackrest::config::TlsFiles {
        ca_file: bed.s("tls/ca.crt"),
        cert_file: bed.s("tls/tls.crt"),
        key_file: bed.s("tls/tls.key"),
    };
    let repo_path = bed.path("repo-volume").join("repo").display().to_string();
    let mut pg_host = pg_host_config(CLUSTER, NAMESPACE);
    assert_eq!(pg_host.repo_host, names::repo_fqdn(CLUSTER, NAMESPACE));
    pg_host.repo_host = "localhost".into();
    pg_host.repo_host_port = repo_tls_port;
    pg_host.repo_path = repo_path.clone();
    pg_host.spool_path = bed.s("spool");
    pg_host.server.port = pg_tls_port;
    pg_host.server.files = files.clone();
    pg_host.pg_path = bed.s("data");
    pg_host.pg_port = pg_port;
    pg_host.pg_socket_path = bed.s("sock");
    let pg_conf = bed.path("conf").join("pg-host.conf");
    fs::write(&pg_conf, pg_host.render().unwrap()).unwrap();

    let mut repo_host = repo_host_config(CLUSTER, NAMESPACE, &[1]);
    repo_host.encrypted = encrypted;
    assert_eq!(repo_host.pg_hosts[0].host, names::pod_fqdn(CLUSTER, "demo-1", NAMESPACE));
    repo_host.repo_path = repo_path;
    repo_host.server.port = repo_tls_port;
    repo_host.server.files = files;
    repo_host.pg_hosts[0].host = "localhost".into();
    repo_host.pg_hosts[0].path = bed.s("data");
    repo_host.pg_hosts[0].port = pg_port;
    repo_host.pg_hosts[0].socket_path = Some(bed.s("sock"));
    repo_host.pg_host_port = pg_tls_port;
    let repo_conf = bed.path("conf").join("repo-host.conf");
    fs::write(&repo_conf, repo_host.render().unwrap()).unwrap();

    // 3. PostgreSQL with the operator's archive settings: the production archive_command,
    //    with only the path of pg-host.conf replaced. Local connections are peer, as in pods.
    let archive_command = instance_pgbackrest(CLUSTER)
        .unwrap()
        .archive_command()
        .unwrap()
        .replace(&conf_path(PG_HOST_CONF_KEY), &pg_conf.display().to_string());
    eprintln!("archive_command = {archive_command}");
    let mut argv =
        args(["-D", &bed.s("data"), "-U", "postgres", "--auth-local=peer", "--auth-host=scram-sha-256"]);
    argv.push("--no-sync".into());
    bed.run(&bed.pg_side, &bed.pg_bin.join("initdb"), argv).unwrap();
    let mut conf = format!(
        "\nlisten_addresses = ''\nunix_socket_directories = {}\nport = {pg_port}\nfsync = off\nshared_buffers = '16MB'\n",
        quote(&bed.s("sock"))
    );
    for (name, value) in archive_settings(&archive_command) {
        conf.push_str(&format!("{name} = {}\n", quote(&value)));
    }
    let postgresql_conf = bed.path("data").join("postgresql.conf");
    let mut text = fs::read_to_string(&postgresql_conf).unwrap();
    text.push_str(&conf);
    fs::write(&postgresql_conf, text).unwrap();
    let argv = args(["start", "-w", "-t", "60", "-D", &bed.s("data"), "-l", &bed.s("postgres.log")]);
    bed.run(&bed.pg_side, &bed.pg_bin.join("pg_ctl"), argv).unwrap();
    bed.pg_started = true;

    // 4. The instance's sidecar: pgbackrest server with pg-host.conf, seeing the data
    //    directory read-only.
    bed.pg_server = Some(bed.spawn_server(&bed.pg_side, &pg_conf, "pg-server.log", Some(&bed.path("data"))));

    // 5. The repo host, run by the `relevo repo-host` supervisor itself.
    let supervisor = Supervisor {
        args: RepoHostArgs {
            config: repo_conf.clone(),
            stanza: names::stanza(CLUSTER),
            ready_file: bed.path("run").join("ready"),
            port: repo_tls_port,
        },
        runner: bed.repo_side.clone(),
        backoff: Backoff { first: Duration::from_millis(200), max: Duration::from_secs(2) },
    };
    let stop = bed.supervisor_stop.clone();
    bed.supervisor = Some(std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(supervisor.supervise(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }))
    }));
    let ready_file = bed.path("run").join("ready");
    let ready_after =
        wait_until("the repo host to be ready (stanza created)", Duration::from_secs(120), || {
            let text = fs::read_to_string(&ready_file).unwrap_or_default();
            (
                text.contains(STANZA_CREATED),
                format!("{text:?}; pg server log:\n{}", bed.log_tail("pg-server.log")),
            )
        });
    eprintln!("repo host ready (server up, stanza created) after {ready_after:?}");
    let checked_after = wait_until("the repo host's check to pass", Duration::from_secs(150), || {
        let text = fs::read_to_string(&ready_file).unwrap_or_default();
        (text.contains(CHECK_PASSED), format!("{text:?}"))
    });
    eprintln!("repo host check passed {checked_after:?} later");
    Started { pg_port, pg_conf, repo_conf, ready_file }
}

#[test]
fn archives_and_backs_up_over_tls_with_the_operator_s_configuration() {
    let started = Instant::now();
    let mut bed = Bed::new();
    let Started { pg_port, pg_conf, repo_conf, ready_file } = start(&mut bed, false);

    // 6. A full backup from the repo side, through the instance's TLS server.
    let repo =
        Pgbackrest::new(&names::stanza(CLUSTER)).unwrap().with_config(&repo_conf.display().to_string());
    let backup_started = Instant::now();
    bed.pgbackrest(&bed.repo_side, repo.backup(BackupType::Full)).unwrap_or_else(|e| {
        panic!("full backup failed: {e}\npg server log:\n{}", bed.log_tail("pg-server.log"))
    });
    eprintln!("full backup took {:?}", backup_started.elapsed());
    if bed.as_root {
        let view = mount_seen_by_server(&pg_conf, &bed.path("data"));
        assert!(view.as_deref().is_some_and(|options| options.split(',').any(|o| o == "ro")), "{view:?}");
        eprintln!("the pg host's server saw the data directory mounted {}", view.unwrap_or_default());
    }
    let info_json = bed.pgbackrest(&bed.repo_side, repo.info_json()).unwrap();
    let stanzas = info::parse(&info_json).unwrap();
    let stanza = info::find_stanza(&stanzas, CLUSTER).expect("stanza in info");
    assert_eq!(stanza.status.code, 0, "{}", stanza.status.message);
    assert_eq!(stanza.backup.len(), 1, "{info_json}");
    assert_eq!(stanza.backup[0].backup_type, BackupType::Full);
    eprintln!("backup {} ({} bytes)", stanza.backup[0].label, stanza.backup[0].info.size);

    // 7. archive-push: a switched segment shows up as the archive's max.
    bed.psql(pg_port, "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g");
    let segment = bed.psql(pg_port, "SELECT pg_walfile_name(pg_switch_wal())");
    let archived_after = wait_until(&format!("{segment} in the archive"), Duration::from_secs(60), || {
        let json = bed.pgbackrest(&bed.repo_side, repo.info_json()).unwrap_or_else(|e| e);
        let max = info::parse(&json)
            .ok()
            .and_then(|s| info::find_stanza(&s, CLUSTER).cloned())
            .and_then(|s| s.archive.first().and_then(|a| a.max.clone()));
        (max.as_deref() >= Some(segment.as_str()), format!("archive max {max:?}"))
    });
    eprintln!("{segment} archived {archived_after:?} after pg_switch_wal");

    // The operator's status query sees it too. With archive-async the repository can be
    // ahead of pg_stat_archiver: the async process pushes every .ready segment it finds, and
    // PostgreSQL's archive_command for it returns once pgBackRest has acknowledged it.
    let mut archiver = String::new();
    let counted_after =
        wait_until(&format!("pg_stat_archiver to count {segment}"), Duration::from_secs(30), || {
            archiver = bed.psql(pg_port, ARCHIVER_QUERY);
            let last = archiver.split('|').nth(1).unwrap_or_default().to_string();
            (last.as_str() >= segment.as_str(), archiver.clone())
        });
    eprintln!("pg_stat_archiver counted it {counted_after:?} later: {archiver}");
    let fields: Vec<&str> = archiver.split('|').collect();
    assert_eq!(fields.len(), 7, "{archiver}");
    assert!(fields[0].parse::<i64>().unwrap() >= 2, "archived_count: {archiver}");
    assert_eq!(fields[6], "f", "not failing: {archiver}");
    // Asynchronous archiving: the pg host's spool holds the push acknowledgements.
    let spool = bed.path("spool").join("archive").join(CLUSTER).join("out");
    let acknowledged = fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    eprintln!("{} entries in the archive-push spool {}", acknowledged, spool.display());

    // Both servers reap the children they fork per connection: in a pod each is its
    // container's first process, and nobody else would.
    let (servers, zombies) = zombie_children_of_servers();
    assert!(servers >= 2, "the pg host's and the repo host's servers run ({servers} found)");
    assert!(zombies.is_empty(), "zombie children of pgbackrest servers: {zombies:?}");

    // The supervisor stops its server on shutdown and clears readiness.
    bed.supervisor_stop.store(true, Ordering::SeqCst);
    let code = bed.supervisor.take().unwrap().join().unwrap().unwrap();
    assert_eq!(code, 0);
    assert!(!ready_file.exists(), "readiness cleared on shutdown");
    eprintln!("whole test took {:?}", started.elapsed());
}

#[path = "cipher_pg_tests.rs"]
mod cipher;
