//! Stopping PostgreSQL for a fence or the pod's SIGTERM without being held hostage by the
//! WAL archiver.
//!
//! A fast shutdown ends the sessions, writes the shutdown checkpoint, and then waits for the
//! archiver to archive every ready segment and for the walsenders to send the rest. When the
//! repository cannot take WAL (the repo host still creating the stanza and holding its
//! archive lock, or gone with its node), each segment is retried at every attempt, and a new
//! cluster's first planned switchover saw its fence outlast the operator's 30 s. Once the
//! control file says "shut down", the checkpoint is on disk: nothing the database holds is
//! lost by no longer waiting. After a short grace for the walsenders and the archiver, an
//! immediate shutdown ends it, and the segments left unarchived are named in the log; they
//! stay in pg_wal as `.ready`.

use std::path::Path;
use std::time::{Duration, Instant};

pub use super::tools::Tools;
use crate::rebuild::controldata::ControlData;
use crate::rebuild::plan::ClusterState;

/// After the shutdown checkpoint, how long the archiver and the walsenders get. Walsenders
/// need milliseconds; a short grace keeps a planned switchover's write gap short, and what
/// the archiver had not done the new primary pushes ([`super::archive_backfill`]).
pub const AFTER_CHECKPOINT_GRACE: Duration = Duration::from_secs(2);
/// However far the shutdown got, it ends by then (below the pod's grace period).
pub const STOP_LIMIT: Duration = Duration::from_secs(50);
const POLL: Duration = Duration::from_millis(100);
/// pg_ctl's own default wait, for an immediate shutdown.
pub const IMMEDIATE_WAIT_SECONDS: &str = "60";

/// How long a freshly spawned postmaster gets to write postmaster.pid.
const PID_FILE_WAIT: Duration = Duration::from_secs(10);
/// How long PostgreSQL gets to exit once its stop has returned. [`stop_unheld`] escalates
/// by [`STOP_LIMIT`] already, so this only bounds what should never happen: a supervisor
/// waiting forever.
pub const EXIT_WAIT: Duration = Duration::from_secs(STOP_LIMIT.as_secs() + 5);

/// Waits until a PostgreSQL this process spawned has written postmaster.pid, has exited, or
/// [`PID_FILE_WAIT`] passed. pg_ctl signals through that file: a stop asked a moment after
/// the spawn (a restart decided on the first tick) would otherwise reach nobody.
pub async fn until_pid_file(postmaster: &mut tokio::process::Child, pgdata: &Path) {
    let deadline = Instant::now() + PID_FILE_WAIT;
    while !pgdata.join("postmaster.pid").exists() && Instant::now() < deadline {
        if postmaster.try_wait().ok().flatten().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The exit of a PostgreSQL whose shutdown was requested, and whether it had to be killed
/// after [`EXIT_WAIT`]. Never waits forever: a supervisor stuck here would answer neither the
/// pod's SIGTERM nor the operator, and would keep the volume's lock from its replacement.
pub async fn exit_within(
    postmaster: &mut tokio::process::Child,
) -> std::io::Result<(std::process::ExitStatus, bool)> {
    if let Ok(status) = tokio::time::timeout(EXIT_WAIT, postmaster.wait()).await {
        return Ok((status?, false));
    }
    postmaster.start_kill()?;
    Ok((postmaster.wait().await?, true))
}

/// What the stop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Wait,
    /// Stop waiting: an immediate shutdown.
    Immediate,
}

/// `checkpointed_for`: how long the control file has said the shutdown checkpoint is written.
pub fn next(since_request: Duration, checkpointed_for: Option<Duration>) -> Next {
    let archiver_holds = checkpointed_for.is_some_and(|c| c >= AFTER_CHECKPOINT_GRACE);
    if archiver_holds || since_request >= STOP_LIMIT { Next::Immediate } else { Next::Wait }
}

/// The shutdown checkpoint is written (a primary's, or a standby's restartpoint at shutdown).
pub fn checkpointed(state: Option<&ClusterState>) -> bool {
    matches!(state, Some(ClusterState::ShutDown | ClusterState::ShutDownInRecovery))
}

/// `pg_ctl stop -m MODE`; with `wait_seconds`, waits up to that long for PostgreSQL to exit,
/// else only sends the signal.
pub async fn pg_ctl_stop(tools: &Tools, pgdata: &Path, mode: &str, wait_seconds: Option<&str>) {
    let mut command = tools.command("pg_ctl");
    command.args(["stop", "-m", mode]);
    match wait_seconds {
        Some(seconds) => command.args(["-w", "-t", seconds]),
        None => command.arg("-W"),
    };
    let status = command.arg("-D").arg(pgdata).status().await;
    if let Err(error) = status {
        eprintln!("relevo instance: pg_ctl stop -m {mode} could not run: {error}");
    }
}

async fn cluster_state(tools: &Tools, pgdata: &Path) -> Option<ClusterState> {
    let output = tools.command("pg_controldata").arg("-D").arg(pgdata).output().await.ok()?;
    ControlData::parse(&String::from_utf8_lossy(&output.stdout)).cluster_state
}

/// WAL segments still waiting for the archiver, sorted.
pub fn unarchived_segments(pgdata: &Path) -> Vec<String> {
    let mut ready: Vec<String> = std::fs::read_dir(pgdata.join("pg_wal/archive_status"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(".ready").map(str::to_owned))
        .collect();
    ready.sort();
    ready
}

/// How a stop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// PostgreSQL exited on the fast shutdown.
    Clean,
    /// The immediate shutdown ended it; `unarchived` were still waiting for the archiver.
    Escalated { checkpointed: bool, unarchived: Vec<String> },
}

/// Requests a fast shutdown and returns once PostgreSQL (whose postmaster.pid is in `pgdata`)
/// is gone, escalating as [`next`] decides.
pub async fn stop_unheld(tools: &Tools, pgdata: &Path) -> Stopped {
    let pid_file = pgdata.join("postmaster.pid");
    let requested = Instant::now();
    pg_ctl_stop(tools, pgdata, "fast", None).await;
    let mut checkpointed_at: Option<Instant> = None;
    loop {
        if !pid_file.exists() {
            return Stopped::Clean;
        }
        if checkpointed_at.is_none() && checkpointed(cluster_state(tools, pgdata).await.as_ref()) {
            checkpointed_at = Some(Instant::now());
        }
        if next(requested.elapsed(), checkpointed_at.map(|at| at.elapsed())) == Next::Immediate {
            let unarchived = unarchived_segments(pgdata);
            pg_ctl_stop(tools, pgdata, "immediate", Some(IMMEDIATE_WAIT_SECONDS)).await;
            return Stopped::Escalated { checkpointed: checkpointed_at.is_some(), unarchived };
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The log line for a stop that had to be escalated.
pub fn describe(stopped: &Stopped) -> Option<String> {
    let Stopped::Escalated { checkpointed, unarchived } = stopped else { return None };
    let why = if *checkpointed {
        format!("the shutdown checkpoint was written {}s before", AFTER_CHECKPOINT_GRACE.as_secs())
    } else {
        format!("the fast shutdown did not finish within {}s", STOP_LIMIT.as_secs())
    };
    let left = match unarchived.as_slice() {
        [] => "no WAL segment was waiting for the archiver".to_owned(),
        [one] => format!("WAL segment {one} was not archived yet (it stays in pg_wal)"),
        [first, .., last] => {
            format!(
                "{} WAL segments, {first} to {last}, were not archived yet (they stay in pg_wal)",
                unarchived.len()
            )
        }
    };
    Some(format!("immediate shutdown: {why}; {left}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn waits_for_the_checkpoint_then_gives_the_archiver_a_grace() {
        assert_eq!(next(S(1), None), Next::Wait, "checkpoint not written yet");
        assert_eq!(next(S(30), None), Next::Wait, "a long checkpoint is waited for");
        assert_eq!(next(S(3), Some(S(1))), Next::Wait, "walsenders and archiver get their grace");
        assert_eq!(next(S(3), Some(AFTER_CHECKPOINT_GRACE)), Next::Immediate);
    }

    #[test]
    fn no_stop_outlasts_the_limit() {
        assert_eq!(next(STOP_LIMIT, None), Next::Immediate);
        assert_eq!(next(STOP_LIMIT, Some(S(0))), Next::Immediate);
    }

    #[test]
    fn only_a_written_shutdown_checkpoint_counts() {
        assert!(checkpointed(Some(&ClusterState::ShutDown)));
        assert!(checkpointed(Some(&ClusterState::ShutDownInRecovery)));
        for state in [ClusterState::InProduction, ClusterState::ShuttingDown, ClusterState::InArchiveRecovery]
        {
            assert!(!checkpointed(Some(&state)), "{state:?}");
        }
        assert!(!checkpointed(None), "pg_controldata failed");
    }

    #[test]
    fn the_log_names_what_was_left_unarchived() {
        assert_eq!(describe(&Stopped::Clean), None);
        let some = Stopped::Escalated {
            checkpointed: true,
            unarchived: vec!["000000010000000000000003".into(), "000000010000000000000004".into()],
        };
        let line = describe(&some).unwrap();
        assert!(
            line.contains("2 WAL segments, 000000010000000000000003 to 000000010000000000000004"),
            "{line}"
        );
        let none = Stopped::Escalated { checkpointed: false, unarchived: vec![] };
        assert!(describe(&none).unwrap().contains("did not finish within 50s"));
    }

    #[test]
    fn ready_files_are_listed_in_order() {
        let dir = std::env::temp_dir().join(format!("relevo-shutdown-{}", std::process::id()));
        let status = dir.join("pg_wal/archive_status");
        std::fs::create_dir_all(&status).unwrap();
        for name in [
            "000000010000000000000002.ready",
            "000000010000000000000001.ready",
            "000000010000000000000000.done",
        ] {
            std::fs::write(status.join(name), "").unwrap();
        }
        assert_eq!(unarchived_segments(&dir), ["000000010000000000000001", "000000010000000000000002"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
