//! `relevo repo-host`: the entrypoint of a cluster's pgBackRest repo host.
//!
//! It runs `pgbackrest server` (TLS) for as long as the pod lives, and gets the stanza created
//! as soon as the primary can be reached: `stanza-create`, then `check`, each retried with a
//! bounded backoff until it succeeds. The readiness file exists while the server runs and the
//! stanza exists, which is when instances' archive-push can succeed.
//!
//! pgBackRest's output is logged as it is: it never contains secrets (the TLS key is a path,
//! and an encrypted repository's passphrase comes from the environment, which pgBackRest
//! prints as `<redacted>`). The server's own output goes straight to the container log.

use std::ffi::OsString;
use std::fs;
use std::future::Future;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::pgbackrest::command::{PGBACKREST, Pgbackrest};
use crate::pgbackrest::config::DEFAULT_TLS_PORT;
use crate::rebuild::process::{Runner, args};

/// The readiness file in the pod (an emptyDir, so it must be cleared on every start).
pub const READY_FILE: &str = "/run/relevo/repo-host-ready";

/// Lines of the readiness file, for people and tests looking into the pod.
pub const STANZA_CREATED: &str = "stanza created";
pub const CHECK_PASSED: &str = "check passed";

/// How long one stanza-create or check may take: check waits up to pgBackRest's
/// archive-timeout (60 s) for the WAL segment it forced.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// stanza-create holds the repository's archive lock while it reaches every pg host, so
/// every archive-push of the primary fails meanwhile. A pg host whose pod does not exist yet
/// (a new cluster's standbys) held it for up to pgBackRest's 60 s io-timeout, which also
/// bounds connecting: a new cluster archived nothing for 40 s, and its first fences waited
/// for the failing archiver. A short timeout fails the attempt fast; it is retried.
const STANZA_CREATE_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server gets to stop after SIGTERM.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Clone)]
pub struct RepoHostArgs {
    /// repo-host.conf: repository, TLS server and every instance as a pg host.
    #[arg(long, env = "RELEVO_PGBACKREST_CONFIG")]
    pub config: PathBuf,
    /// The cluster's stanza.
    #[arg(long, env = "RELEVO_STANZA")]
    pub stanza: String,
    /// Exists while the server runs and the stanza exists; the readiness probe tests it.
    #[arg(long, default_value = READY_FILE)]
    pub ready_file: PathBuf,
    /// Port of the TLS server (as in the config), awaited before the first stanza-create.
    #[arg(long, default_value_t = DEFAULT_TLS_PORT)]
    pub port: u16,
}

/// Why the repo host could not run at all. Failures of stanza-create and check are not
/// errors here: they are logged and retried.
#[derive(Debug, thiserror::Error)]
pub enum RepoHostError {
    #[error("{action} failed")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Command(#[from] crate::pgbackrest::command::CommandError),
}

fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> RepoHostError {
    move |source| RepoHostError::Io { action, source }
}

fn log(message: &str) {
    eprintln!("relevo repo-host: {message}");
}

/// Delays between attempts: doubling from `first`, never above `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { first: Duration::from_secs(1), max: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// The pause after the `failures`-th consecutive failure (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// The repo host's processes: how pgBackRest is run and how patiently.
#[derive(Debug, Clone)]
pub struct Supervisor {
    pub args: RepoHostArgs,
    /// Wrapper (e.g. `runuser -u postgres --` in tests run as root), environment and the
    /// deadline of each stanza-create or check.
    pub runner: Runner,
    pub backoff: Backoff,
}

impl Supervisor {
    pub fn new(args: RepoHostArgs) -> Self {
        let runner = Runner { wrapper: Vec::new(), env: Vec::new(), timeout: COMMAND_TIMEOUT };
        Self { args, runner, backoff: Backoff::default() }
    }

    fn pgbackrest(&self) -> Result<Pgbackrest, RepoHostError> {
        Ok(Pgbackrest::new(&self.args.stanza)?.with_config(&self.args.config.to_string_lossy()))
    }

    /// Runs until the server exits (its exit code) or `shutdown` completes (0).
    pub async fn supervise(&self, shutdown: impl Future<Output = ()>) -> Result<i32, RepoHostError> {
        let pgbackrest = self.pgbackrest()?;
        remove_ready(&self.args.ready_file)?;
        let mut server = self.spawn_server()?;
        log(&format!("pgbackrest server started (config {})", self.args.config.display()));
        let stanza = self.ensure_stanza(&pgbackrest);
        tokio::pin!(stanza, shutdown);
        let mut stanza_done = false;
        loop {
            tokio::select! {
                status = server.wait() => {
                    remove_ready(&self.args.ready_file)?;
                    let status = status.map_err(io("waiting for pgbackrest server"))?;
                    log(&format!("pgbackrest server exited: {status}"));
                    return Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)));
                }
                _ = &mut shutdown => {
                    remove_ready(&self.args.ready_file)?;
                    log("stopping pgbackrest server");
                    stop(&mut server).await;
                    return Ok(0);
                }
                _ = &mut stanza, if !stanza_done => stanza_done = true,
            }
        }
    }

    fn spawn_server(&self) -> Result<Child, RepoHostError> {
        let mut command = match self.runner.wrapper.split_first() {
            Some((wrapper, rest)) => {
                let mut command = Command::new(wrapper);
                command.args(rest).arg(PGBACKREST);
                command
            }
            None => Command::new(PGBACKREST),
        };
        command
            .arg(format!("--config={}", self.args.config.display()))
            .arg("server")
            .envs(self.runner.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            // Its own process group: SIGTERM is delivered to it (and to a wrapper's child).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(io("starting pgbackrest server"))
    }

    /// stanza-create until it succeeds, then the readiness file, then check until it passes.
    async fn ensure_stanza(&self, pgbackrest: &Pgbackrest) {
        self.wait_for_server().await;
        let stanza_create = pgbackrest.clone().with_io_timeout(STANZA_CREATE_IO_TIMEOUT).stanza_create();
        self.until_success("stanza-create", stanza_create).await;
        match fs::write(&self.args.ready_file, format!("{STANZA_CREATED}\n")) {
            Ok(()) => log(&format!("stanza {} exists; ready", self.args.stanza)),
            Err(error) => log(&format!("could not write {}: {error}", self.args.ready_file.display())),
        }
        self.until_success("check", pgbackrest.check()).await;
        log("check passed: the primary archives into the repository");
        if let Err(error) = fs::write(&self.args.ready_file, format!("{STANZA_CREATED}\n{CHECK_PASSED}\n")) {
            log(&format!("could not write {}: {error}", self.args.ready_file.display()));
        }
    }

    async fn wait_for_server(&self) {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.args.port));
        let mut attempts: u32 = 0;
        while TcpStream::connect(address).await.is_err() {
            attempts += 1;
            // Every 10 s: the server is slow to bind (or its errors are in the log above).
            if attempts.is_multiple_of(50) {
                log(&format!("still waiting for the TLS server on port {}", self.args.port));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `argv` (as [`Pgbackrest`] builds it, program first) until it succeeds.
    async fn until_success(&self, what: &str, argv: Vec<String>) {
        let options: Vec<OsString> = args(argv.iter().skip(1));
        let mut failures = 0;
        loop {
            let runner = self.runner.clone();
            let options = options.clone();
            let result =
                tokio::task::spawn_blocking(move || runner.run(Path::new(PGBACKREST), &options)).await;
            let error = match result {
                Ok(Ok(_)) => return,
                Ok(Err(error)) => error.to_string(),
                Err(join) => join.to_string(),
            };
            failures += 1;
            let delay = self.backoff.delay(failures);
            log(&format!("{what} failed (attempt {failures}), retrying in {delay:?}: {error}"));
            tokio::time::sleep(delay).await;
        }
    }
}

fn remove_ready(path: &Path) -> Result<(), RepoHostError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != ErrorKind::NotFound => {
            Err(RepoHostError::Io { action: "removing the readiness file", source: error })
        }
        _ => Ok(()),
    }
}

/// SIGTERM to the server's process group, SIGKILL if it lingers.
async fn stop(server: &mut Child) {
    if let Some(pid) = server.id() {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    if tokio::time::timeout(SERVER_STOP_TIMEOUT, server.wait()).await.is_err() {
        log("pgbackrest server ignored SIGTERM; killing it");
        let _ = server.kill().await;
    }
}

/// The `relevo repo-host` process: supervises until SIGTERM or SIGINT; the exit code is the
/// server's when it died by itself.
pub fn run(args: RepoHostArgs) -> Result<i32, RepoHostError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("starting the runtime"))?;
    let supervisor = Supervisor::new(args);
    let code = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).map_err(io("installing the SIGTERM handler"))?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(io("installing the SIGINT handler"))?;
        let shutdown = async {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        };
        supervisor.supervise(shutdown).await
    });
    // A stanza-create in flight is not waited for: the container is going away.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (1..=7).map(|n| backoff.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff.delay(500), Duration::from_secs(30), "no overflow");
        assert_eq!(backoff.delay(0), Duration::from_secs(1));
    }

    #[test]
    fn a_stale_readiness_file_is_cleared_and_a_missing_one_is_fine() {
        let path = std::env::temp_dir().join(format!("relevo-ready-{}", std::process::id()));
        fs::write(&path, "old").unwrap();
        remove_ready(&path).unwrap();
        assert!(!path.exists());
        remove_ready(&path).unwrap();
    }
}

#[cfg(test)]
mod pg_tests;
