//! Runs PostgreSQL until the pod stops, and carries out the operator's markers meanwhile
//! (decided in [`super::markers`]): fence = fast shutdown and restart in recovery with no
//! upstream; lifting it = follow `-rw` (reload) or, when asked, restart as the primary;
//! rebuild = stop, pg_rewind (pg_basebackup fallback), start as a standby.
//!
//! The pod's SIGTERM becomes a fast shutdown (pg_ctl stop -m fast): PostgreSQL's own answer
//! to SIGTERM is a "smart" shutdown that waits for every client to disconnect, which would
//! outlast the grace period and end in SIGKILL.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use super::conf;
use super::exec::{ExecError, InstanceArgs, clone_from_primary, io, log, wipe, write_private};
use super::layout;
use super::markers::{Action, Local, decide};
use crate::pgcluster::names;
use crate::rebuild::{self, RebuildSource, StartMode};
use crate::switchover::markers::{ANNOTATIONS_FILE, Markers, parse_annotations_file};
use crate::switchover::sql;

/// How often the annotations file is read: a fence waits at most this long for us.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Seconds pg_ctl waits for a fast shutdown; below the pod's grace period.
const STOP_TIMEOUT_SECONDS: &str = "50";
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

/// `set_passwords`: SQL to run once PostgreSQL has left recovery, after a restore (see
/// [`super::exec::passwords_pending_marker`]).
pub fn supervise_postgres(
    args: &InstanceArgs,
    superuser_password: &str,
    mut set_passwords: Option<String>,
) -> Result<ExitStatus, ExecError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("starting the supervisor runtime"))?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).map_err(io("installing the SIGTERM handler"))?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(io("installing the SIGINT handler"))?;
        // Markers set while the pod was down (a fence held across a restart, a rebuild
        // requested for a pod that comes back after a failover) act before PostgreSQL starts.
        let mut pending = decide(&read_markers(), &read_local(&args.pgdata));
        loop {
            if pending != Action::Nothing {
                carry_out(args, &pending, superuser_password)?;
            }
            let mut postgres = tokio::process::Command::new("postgres")
                .arg("-D")
                .arg(&args.pgdata)
                .arg("-c")
                .arg(format!("config_file={}", layout::POSTGRESQL_CONF))
                .spawn()
                .map_err(io("starting postgres"))?;
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            let restart = loop {
                tokio::select! {
                    status = postgres.wait() => return status.map_err(io("waiting for postgres")),
                    _ = terminate.recv() => break None,
                    _ = interrupt.recv() => break None,
                    _ = tick.tick() => {
                        if let Some(sql) = &set_passwords
                            && set_passwords_once_promoted(args, sql).await
                        {
                            set_passwords = None;
                        }
                        let action = decide(&read_markers(), &read_local(&args.pgdata));
                        if action.needs_restart() {
                            break Some(action);
                        }
                        if action != Action::Nothing {
                            carry_out(args, &action, superuser_password)?;
                            reload(&args.pgdata).await;
                        }
                    }
                }
            };
            log(args, "stopping PostgreSQL (fast shutdown)");
            stop(&args.pgdata).await;
            let status = postgres.wait().await.map_err(io("waiting for postgres"))?;
            match restart {
                None => return Ok(status),
                Some(action) => pending = action,
            }
        }
    })
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

async fn stop(pgdata: &Path) {
    let stop = tokio::process::Command::new("pg_ctl")
        .args(["stop", "-m", "fast", "-w", "-t", STOP_TIMEOUT_SECONDS, "-D"])
        .arg(pgdata)
        .status()
        .await;
    if let Err(error) = stop {
        eprintln!("relevo instance: pg_ctl stop could not run: {error}");
    }
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
    let conninfo = sql::conninfo(&[
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
