//! Runs PostgreSQL until the pod stops, and carries out the operator's markers meanwhile
//! (decided in [`super::marker_decision`]): fence = fast shutdown and restart in recovery with no
//! upstream; lifting it = follow `-rw` (reload) or, when asked, restart as the primary;
//! rebuild = stop, pg_rewind (pg_basebackup fallback), start as a standby.
//!
//! While PostgreSQL runs as the primary, [`super::lease_keeper`] renews the primary Lease;
//! when it cannot, this supervisor fences PostgreSQL itself, before the operator may promote
//! another instance (see [`crate::lease`]). It starts PostgreSQL out of recovery only while
//! the Lease names this instance.
//!
//! A fence and the pod's SIGTERM stop PostgreSQL with [`super::shutdown::stop_unheld`]: a
//! fast shutdown that an archiver unable to archive cannot hold. PostgreSQL's own answer
//! to SIGTERM is a "smart" shutdown that waits for every client to disconnect, which would
//! outlast the grace period and end in SIGKILL. A signal during long work (the bootstrap, a
//! rebuild) ends the entrypoint at once: that work runs off the signal path (and off the
//! thread the lease keeper and the fence channel share), and is repeated at the next start.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::conf;
use super::control;
use super::exec::{ExecError, InstanceArgs, clone_from_primary, io, log, wipe, write_private};
use super::lease_keeper::{self, Inputs, LeaseClient};
use super::marker_decision::{Action, Local, decide};
use super::{archive_backfill, orphans, shutdown};
use crate::lease::{Holder, SELF_FENCE_TOKEN};
use crate::protocol::layout;
use crate::protocol::markers::{ANNOTATIONS_FILE, Markers, parse_annotations_file};
use crate::protocol::names;
use crate::rebuild::{self, RebuildSource, StartMode};

/// How often the annotations file is read: a fence waits at most this long for us.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often the orphans this PID 1 inherits are reaped ([`super::orphans`]).
const REAP_INTERVAL: Duration = Duration::from_secs(5);
/// A self-fence escalates to an immediate shutdown after this long.
const SELF_FENCE_STOP_SECONDS: &str = "2";
/// A rebuild (a pg_basebackup of the whole database in the worst case) is bounded too.
const REBUILD_TIMEOUT: Duration = Duration::from_secs(3600);

/// Beside PGDATA on the volume, so they survive a container restart.
fn fenced_file(pgdata: &Path) -> PathBuf {
    pgdata.with_file_name("relevo-fenced")
}
fn rebuild_file(pgdata: &Path) -> PathBuf {
    pgdata.with_file_name("relevo-rebuild-token")
}

fn read_token(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

fn read_markers() -> Markers {
    let text = fs::read_to_string(ANNOTATIONS_FILE).unwrap_or_default();
    Markers::from_annotations(&parse_annotations_file(&text))
}

fn read_local(pgdata: &Path) -> Local {
    Local { fenced_by: read_token(&fenced_file(pgdata)), last_rebuild: read_token(&rebuild_file(pgdata)) }
}

fn conf_path(args: &InstanceArgs) -> PathBuf {
    args.pgdata.join(Path::new(layout::INSTANCE_CONF).file_name().unwrap_or_default())
}

/// The pod's SIGTERM (and SIGINT, by hand), installed once for the whole entrypoint: the
/// entrypoint is the container's PID 1, which the kernel delivers no signal to that it has no
/// handler for, so without this a pod being deleted during a bootstrap or a rebuild would sit
/// out its whole grace period.
pub struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn install() -> Result<Self, ExecError> {
        use tokio::signal::unix::SignalKind;
        Self::listening(SignalKind::terminate(), SignalKind::interrupt())
    }

    fn listening(
        terminate: tokio::signal::unix::SignalKind,
        interrupt: tokio::signal::unix::SignalKind,
    ) -> Result<Self, ExecError> {
        use tokio::signal::unix::signal;
        Ok(StopSignals {
            terminate: signal(terminate).map_err(io("installing the SIGTERM handler"))?,
            interrupt: signal(interrupt).map_err(io("installing the SIGINT handler"))?,
        })
    }

    async fn received(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }

    /// Runs blocking `work` (a bootstrap, a rebuild: minutes to an hour) off the signal path;
    /// `None` when a stop signal came first. The work is abandoned, not awaited: it records
    /// its result on the volume last, so the next start repeats it, and its programs die with
    /// the container.
    pub async fn unless_stopped<T: Send + 'static>(
        &mut self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Option<T>, ExecError> {
        let task = tokio::task::spawn_blocking(work);
        tokio::select! {
            done = task => done.map(Some).map_err(|e| io("running blocking work")(std::io::Error::other(e))),
            () = self.received() => Ok(None),
        }
    }
}

/// The exit status of an entrypoint stopped before PostgreSQL ran.
pub fn stopped_before_postgres() -> ExitStatus {
    use std::os::unix::process::ExitStatusExt as _;
    ExitStatus::from_raw(0)
}

/// `set_passwords`: SQL to run once PostgreSQL has left recovery, after a restore (see
/// [`super::exec::passwords_pending_marker`]).
pub async fn supervise_postgres(
    args: &InstanceArgs,
    superuser_password: &str,
    mut set_passwords: Option<String>,
    signals: &mut StopSignals,
) -> Result<ExitStatus, ExecError> {
    let inputs = Arc::new(Inputs {
        running: AtomicBool::new(false),
        standby_signal: args.pgdata.join("standby.signal"),
        self_fenced: AtomicBool::new(false),
    });
    let keeper = lease_keeper::spawn(args.cluster.clone(), args.instance.clone(), inputs.clone());
    let channel = start_control_channel(args);
    // Markers set while the pod was down (a fence held across a restart, a rebuild
    // requested for a pod that comes back after a failover) act before PostgreSQL starts.
    let mut pending = decide(&read_markers(), &read_local(&args.pgdata), &Holder::Unknown);
    let mut self_fence = false;
    loop {
        if pending != Action::Nothing {
            let (owned_args, action, password) =
                (args.clone(), pending.clone(), superuser_password.to_owned());
            let done = signals.unless_stopped(move || carry_out(&owned_args, &action, &password)).await?;
            match done {
                Some(result) => result?,
                None => {
                    log(args, &format!("stopped during {pending:?}; it is repeated at the next start"));
                    return Ok(stopped_before_postgres());
                }
            }
        }
        gate_primary_start(args, &inputs).await?;
        let mut postgres = tokio::process::Command::new("postgres")
            .arg("-D")
            .arg(&args.pgdata)
            .arg("-c")
            .arg(format!("config_file={}", layout::POSTGRESQL_CONF))
            .spawn()
            .map_err(io("starting postgres"))?;
        inputs.running.store(true, Ordering::SeqCst);
        let mut in_recovery = inputs.standby_signal.exists();
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        // Why a fenced instance stays fenced, logged once per change.
        let mut last_waiting: Option<String> = None;
        let mut last_reap = Instant::now();
        let restart = loop {
            tokio::select! {
                status = postgres.wait() => return status.map_err(io("waiting for postgres")),
                () = signals.received() => break None,
                _ = tick.tick() => {}
                () = channel.wake.notified() => {}
            }
            if last_reap.elapsed() >= REAP_INTERVAL {
                orphans::reap(postgres.id().as_slice());
                last_reap = Instant::now();
            }
            let report = keeper.borrow().clone();
            // PostgreSQL removes standby.signal when it is promoted.
            let was_in_recovery = std::mem::replace(&mut in_recovery, inputs.standby_signal.exists());
            if was_in_recovery && !in_recovery {
                backfill_archive(args);
            }
            if !in_recovery && let Some(reason) = report.self_fence_reason(Instant::now()) {
                log(args, &format!("fencing myself: {reason}"));
                self_fence = true;
                break Some(Action::Fence { token: SELF_FENCE_TOKEN.into() });
            }
            if let Some(sql) = &set_passwords
                && set_passwords_once_promoted(args, sql).await
            {
                set_passwords = None;
            }
            let local = read_local(&args.pgdata);
            inputs.self_fenced.store(local.fenced_by.as_deref() == Some(SELF_FENCE_TOKEN), Ordering::SeqCst);
            let markers = channel.effective(&read_markers());
            let action = decide(&markers, &local, &report.holder);
            let waiting = (action == Action::Nothing && local.fenced_by.is_some()).then(|| {
                format!("fenced by {:?}; lease {:?}; markers {markers:?}", local.fenced_by, report.holder)
            });
            if waiting.is_some() && waiting != last_waiting {
                log(args, &format!("staying fenced: {}", waiting.as_deref().unwrap_or_default()));
            }
            last_waiting = waiting;
            if action.needs_restart() {
                break Some(action);
            }
            if action != Action::Nothing {
                carry_out(args, &action, superuser_password)?;
                reload(&args.pgdata).await;
            }
        };
        // pg_ctl signals PostgreSQL through postmaster.pid: a stop asked before it exists
        // (a restart decided on the first tick after a start) would reach nobody.
        shutdown::until_pid_file(&mut postgres, &args.pgdata).await;
        if self_fence {
            // Sessions end at the first signal; the escalation bounds a shutdown that
            // waits for walsenders with nowhere to send (a partition).
            let tools = shutdown::Tools::default();
            shutdown::pg_ctl_stop(&tools, &args.pgdata, "fast", Some(SELF_FENCE_STOP_SECONDS)).await;
            if postgres.try_wait().ok().flatten().is_none() {
                log(args, "fast shutdown did not finish: immediate shutdown");
                let wait = Some(shutdown::IMMEDIATE_WAIT_SECONDS);
                shutdown::pg_ctl_stop(&tools, &args.pgdata, "immediate", wait).await;
            }
            self_fence = false;
        } else {
            log(args, "stopping PostgreSQL (fast shutdown)");
            let stopped = shutdown::stop_unheld(&shutdown::Tools::default(), &args.pgdata).await;
            if let Some(line) = shutdown::describe(&stopped) {
                log(args, &line);
            }
        }
        let (status, killed) =
            shutdown::exit_within(&mut postgres).await.map_err(io("waiting for postgres"))?;
        if killed {
            let secs = shutdown::EXIT_WAIT.as_secs();
            log(args, &format!("PostgreSQL had not exited {secs}s after its shutdown: killed it"));
        }
        inputs.running.store(false, Ordering::SeqCst);
        match restart {
            None => return Ok(status),
            Some(action) => pending = action,
        }
    }
}

/// Once promoted, pushes the earlier timelines' WAL the repository may lack, in the background
/// ([`archive_backfill`]).
fn backfill_archive(args: &InstanceArgs) {
    let (args, pgbackrest) = match crate::pgbackrest::command::instance_pgbackrest(&args.cluster) {
        Ok(p) => (args.clone(), p),
        Err(error) => return log(args, &format!("no archive backfill: {error}")),
    };
    tokio::spawn(async move {
        let summary =
            archive_backfill::push_earlier_timelines(&Default::default(), &pgbackrest, &args.pgdata).await;
        log(&args, &summary.describe());
    });
}

/// The operator's direct channel (mutual TLS with the cluster's certificate); without the
/// certificate files the markers still arrive through the annotations file.
fn start_control_channel(args: &InstanceArgs) -> Arc<control::Channel> {
    let channel = Arc::new(control::Channel::default());
    let tls = |key: &str| Path::new(names::PGBACKREST_TLS_DIR).join(key);
    match control::server_config(&tls("ca.crt"), &tls("tls.crt"), &tls("tls.key")) {
        Ok(config) => {
            let addr = std::net::SocketAddr::from(([0, 0, 0, 0], crate::protocol::markers::PORT));
            let served = channel.clone();
            tokio::spawn(async move {
                if let Err(error) = control::serve(addr, config, served).await {
                    eprintln!("relevo instance: the fence channel stopped: {error}");
                }
            });
        }
        Err(error) => log(args, &format!("no direct fence channel ({error}); markers come by file only")),
    }
    channel
}

/// PostgreSQL starts out of recovery only while the primary Lease names this instance. A
/// primary that comes back after a failover, or cannot tell (the API is unreachable), starts
/// fenced in recovery instead, and comes back as the primary only once the Lease says so.
async fn gate_primary_start(args: &InstanceArgs, inputs: &Inputs) -> Result<(), ExecError> {
    if inputs.standby_signal.exists() {
        return Ok(());
    }
    // A renewal, not a read: it moves the version on, so a failover that judged the Lease
    // expired cannot revoke it behind our back while we start (its compare-and-swap fails).
    let holder = match LeaseClient::connect(&args.cluster, &args.instance).await {
        Some(client) => client.renew().await.unwrap_or(Holder::Unknown),
        None => Holder::Unknown,
    };
    if holder == Holder::Me {
        return Ok(());
    }
    log(args, &format!("the primary lease is not mine ({holder:?}): starting fenced, in recovery"));
    carry_out(args, &Action::Fence { token: SELF_FENCE_TOKEN.into() }, "")?;
    inputs.self_fenced.store(true, Ordering::SeqCst);
    Ok(())
}

/// psql over the local socket as the superuser (peer authentication), SQL on stdin so that
/// passwords never reach the process list. Output is discarded: it could echo them.
async fn local_psql(sql: &str, tuples: bool) -> Option<String> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", layout::SOCKET_DIR, "-U", layout::SUPERUSER])
        .args(["-d", "postgres", "-f", "-"])
        .args(if tuples { &["-A", "-t"][..] } else { &[][..] })
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    stdin.write_all(sql.as_bytes()).await.ok()?;
    drop(stdin);
    let output = child.wait_with_output().await.ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// After a restore: once recovery has promoted PostgreSQL, give the restored roles this
/// cluster's passwords and drop the marker. True when done (or nothing was pending).
async fn set_passwords_once_promoted(args: &InstanceArgs, sql: &str) -> bool {
    let marker = super::exec::passwords_pending_marker(&args.pgdata);
    if !marker.exists() {
        return true;
    }
    if local_psql("SELECT pg_is_in_recovery()", true).await.as_deref() != Some("f") {
        return false;
    }
    if local_psql(sql, false).await.is_none() {
        log(args, "setting this cluster's passwords on the restored roles failed; retrying");
        return false;
    }
    log(args, "restored roles now have this cluster's passwords");
    fs::remove_file(&marker).is_ok()
}

async fn reload(pgdata: &Path) {
    let reload = tokio::process::Command::new("pg_ctl").args(["reload", "-D"]).arg(pgdata).status().await;
    if let Err(error) = reload {
        eprintln!("relevo instance: pg_ctl reload could not run: {error}");
    }
}

/// Does what `action` asks with PostgreSQL stopped (or, for the reload-only actions, with the
/// files only). Records the result on the volume last, so an interruption repeats the action.
fn carry_out(args: &InstanceArgs, action: &Action, superuser_password: &str) -> Result<(), ExecError> {
    let pgdata = &args.pgdata;
    let write = |path: PathBuf, text: &str, what: &'static str| fs::write(path, text).map_err(io(what));
    log(args, &format!("operator marker: {action:?}"));
    match action {
        Action::Nothing => {}
        Action::Fence { token } | Action::RecordFence { token } => {
            write(pgdata.join("standby.signal"), "", "writing standby.signal")?;
            write(
                conf_path(args),
                &conf::fenced_instance_conf(&args.instance),
                "writing the fenced configuration",
            )?;
            write(fenced_file(pgdata), token, "recording the fence")?;
        }
        Action::RestorePrimary | Action::FollowPrimary => {
            // Only a restored primary leaves recovery; a follower keeps its standby.signal.
            if matches!(action, Action::RestorePrimary) {
                let _ = fs::remove_file(pgdata.join("standby.signal"));
            }
            write(
                conf_path(args),
                &conf::instance_conf(&args.instance, &args.primary_host),
                "writing the configuration",
            )?;
            fs::remove_file(fenced_file(pgdata)).map_err(io("removing the fence record"))?;
        }
        Action::Rebuild { token, source } => {
            rebuild_from(args, source, superuser_password)?;
            write(
                conf_path(args),
                &conf::instance_conf(&args.instance, &args.primary_host),
                "writing the configuration",
            )?;
            let _ = fs::remove_file(fenced_file(pgdata));
            write(rebuild_file(pgdata), token, "recording the rebuild")?;
        }
    }
    Ok(())
}

/// pg_rewind from the source instance (its pod DNS name), falling back to pg_basebackup
/// inside the rebuild executor, and to our own clone through `-rw` as the replication user
/// when that fails too (pg_hba lets only the replication role stream a base backup).
fn rebuild_from(args: &InstanceArgs, source: &str, superuser_password: &str) -> Result<(), ExecError> {
    let passfile = Path::new(layout::RUN_DIR).join("pgpass-rebuild");
    write_private(&passfile, &conf::rebuild_passfile(superuser_password))?;
    let host = format!("{}.{}", names::pod(source), names::service_headless(&args.cluster));
    let port = layout::POSTGRES_PORT.to_string();
    let conninfo = crate::protocol::quote::conninfo(&[
        ("host", &host),
        ("port", &port),
        ("user", layout::SUPERUSER),
        ("dbname", "postgres"),
        ("sslmode", layout::SSLMODE),
        ("sslrootcert", layout::CA_FILE),
        ("connect_timeout", "5"),
    ]);
    let executor = rebuild::Executor {
        bin_dir: bin_dir(),
        data_dir: args.pgdata.clone(),
        runner: rebuild::process::Runner {
            wrapper: Vec::new(),
            env: vec![("PGPASSFILE".into(), passfile.clone().into())],
            timeout: REBUILD_TIMEOUT,
        },
        start: StartMode::LeaveStopped,
    };
    // Empty primary_conninfo: relevo-instance.conf owns it (see rebuild::standby_config).
    let source = RebuildSource {
        conninfo,
        primary_conninfo: String::new(),
        slot: Some(layout::slot_name(&args.instance)),
        system_identifier: None,
        timeline: None,
    };
    let result = executor.rebuild(&source);
    let _ = fs::remove_file(&passfile);
    match result {
        Ok(report) => {
            log(args, &format!("rebuilt: {:?} (rewind error: {:?})", report.executed, report.rewind_error));
            Ok(())
        }
        Err(error) => {
            log(args, &format!("rebuild failed ({error}); cloning through {} instead", args.primary_host));
            wipe(&args.pgdata)?;
            clone_from_primary(args)?;
            fs::write(args.pgdata.join("standby.signal"), b"").map_err(io("writing standby.signal"))?;
            let _ = fs::remove_file(executor.rewind_marker());
            Ok(())
        }
    }
}

/// The directory of PostgreSQL's programs: where `pg_ctl` is on PATH.
fn bin_dir() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).find(|dir| dir.join("pg_ctl").is_file()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::StopSignals;

    /// SIGINT only: a handler stays installed in the test process for good, and the test
    /// runner must stay killable by SIGTERM.
    #[tokio::test]
    async fn a_stop_signal_ends_the_wait_for_blocking_work_at_once() {
        let interrupt = tokio::signal::unix::SignalKind::interrupt();
        let mut signals = StopSignals::listening(interrupt, interrupt).unwrap();
        let done = signals.unless_stopped(|| 7).await.unwrap();
        assert_eq!(done, Some(7), "work that ends first gives its result");

        let pid = std::process::id().to_string();
        let started = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
        });
        let done = signals.unless_stopped(|| std::thread::sleep(Duration::from_secs(3))).await.unwrap();
        assert_eq!(done, None, "the signal came first");
        assert!(started.elapsed() < Duration::from_secs(2), "not held by the work: {:?}", started.elapsed());
    }
}
