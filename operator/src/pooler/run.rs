//! `relevo pooler`: the pooler pod's entrypoint. It writes PgBouncer's files, runs PgBouncer
//! as its child, serves the control endpoint, enforces the pause bound and follows changes
//! of the template and userlist (a ConfigMap or Secret update) with a RELOAD, so that a
//! configuration change never drops a client.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracing::{info, warn};

use super::admin::{Admin, AdminError};
use super::client::PoolerStatus;
use super::ini::{self, INI_FILE, USERLIST_FILE};
use super::pause::{Command, Pause, PauseState};
use super::{AUTH_DIR, CONTROL_PORT, INI_KEY, RUN_DIR, TEMPLATE_DIR, TOKEN_KEY, USERLIST_KEY};

/// How often the watchdog checks the pause bound.
const WATCHDOG_TICK: Duration = Duration::from_millis(200);
/// How often the mounted template and userlist are compared with what PgBouncer reads.
const CONFIG_TICK: Duration = Duration::from_secs(5);
/// At shutdown, how long in-flight transactions get before PgBouncer stops.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct PoolerArgs {
    /// Host of the first `[databases]` target, until the operator sets the primary's own.
    #[arg(long)]
    pub initial_target: String,
    /// A database of the cluster, named in `[databases]` (repeatable).
    #[arg(long = "database")]
    pub databases: Vec<String>,
    /// A PAUSE not renewed within this many seconds is resumed by the pooler itself.
    #[arg(long, default_value_t = 10)]
    pub pause_bound_seconds: u64,
    /// Directory of the pgbouncer.ini template (the ConfigMap).
    #[arg(long, default_value = TEMPLATE_DIR)]
    pub template_dir: PathBuf,
    /// Directory of the userlist and the control token (the Secret).
    #[arg(long, default_value = AUTH_DIR)]
    pub auth_dir: PathBuf,
    /// Writable directory for the files PgBouncer reads.
    #[arg(long, default_value = RUN_DIR)]
    pub run_dir: PathBuf,
    /// Port of the control endpoint.
    #[arg(long, default_value_t = CONTROL_PORT as u16)]
    pub control_port: u16,
    /// The PgBouncer program.
    #[arg(long, default_value = "pgbouncer")]
    pub pgbouncer: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("not a host name or IP address")]
    Invalid,
    #[error("writing pgbouncer.ini: {0}")]
    Write(#[source] std::io::Error),
    #[error(transparent)]
    Reload(#[from] AdminError),
}

/// Everything the control endpoint and the watchdog share.
pub struct Pooler {
    admin: Admin,
    token: String,
    pause: Mutex<Pause>,
    target: Mutex<String>,
    /// The template and userlist PgBouncer's files were last written from.
    sources: Mutex<(String, String)>,
    admin_password: String,
    databases: Vec<String>,
    run_dir: PathBuf,
    pause_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pooler {
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn status(&self) -> PoolerStatus {
        let pause = lock(&self.pause);
        PoolerStatus {
            state: pause.state(),
            target: lock(&self.target).clone(),
            pause_remaining_ms: pause.remaining(Instant::now()).map(|d| d.as_millis() as u64),
        }
    }

    pub async fn healthy(&self) -> Result<(), AdminError> {
        self.admin.command("SHOW VERSION").await
    }

    /// Starts (or renews) a pause, and waits up to `wait` for PgBouncer to drain.
    pub async fn pause(self: &Arc<Self>, wait: Duration) -> PoolerStatus {
        let command = lock(&self.pause).request_pause(Instant::now());
        if command == Command::Pause {
            info!("PAUSE: holding clients, draining in-flight transactions");
            let me = Arc::clone(self);
            let task = tokio::spawn(async move {
                let result = me.admin.command("PAUSE").await;
                let mut pause = lock(&me.pause);
                match result {
                    Ok(()) => pause.pause_completed(),
                    Err(error) => {
                        warn!(%error, "PAUSE failed");
                        pause.pause_failed();
                    }
                }
            });
            *lock(&self.pause_task) = Some(task);
        }
        let until = Instant::now() + wait;
        while lock(&self.pause).state() == PauseState::Pausing && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.status()
    }

    pub async fn resume(&self) -> Result<PoolerStatus, AdminError> {
        let command = lock(&self.pause).request_resume();
        self.send_resume(command).await?;
        Ok(self.status())
    }

    async fn send_resume(&self, command: Command) -> Result<(), AdminError> {
        if command != Command::Resume {
            return Ok(());
        }
        // A PAUSE still draining holds its own connection; PgBouncer's pause state is global,
        // so dropping that connection does not undo the RESUME below.
        if let Some(task) = lock(&self.pause_task).take() {
            task.abort();
        }
        match self.admin.command("RESUME").await {
            Ok(()) => {
                info!("RESUME: clients flow again");
                Ok(())
            }
            Err(error) => {
                lock(&self.pause).resume_failed(Instant::now());
                Err(error)
            }
        }
    }

    /// Points `[databases]` at `host` and reloads PgBouncer. While paused, the new target
    /// takes effect at RESUME; running, server connections move as they are released.
    pub async fn set_target(&self, host: &str) -> Result<PoolerStatus, TargetError> {
        if !ini::valid_target(host) {
            return Err(TargetError::Invalid);
        }
        let changed = {
            let mut target = lock(&self.target);
            let changed = *target != host;
            *target = host.to_string();
            changed
        };
        if changed {
            self.write_files().map_err(TargetError::Write)?;
            self.admin.command("RELOAD").await?;
            info!(target = host, "target changed");
        }
        Ok(self.status())
    }

    fn write_files(&self) -> std::io::Result<()> {
        let (template, userlist) = lock(&self.sources).clone();
        let target = lock(&self.target).clone();
        write_private(
            &self.run_dir.join(USERLIST_FILE),
            &ini::userlist_with_admin(&userlist, &self.admin_password),
        )?;
        write_private(&self.run_dir.join(INI_FILE), &ini::with_target(&template, &target, &self.databases))
    }

    /// One watchdog tick: the pause bound.
    async fn enforce_bound(&self) {
        let command = lock(&self.pause).expire(Instant::now());
        if command == Command::Resume {
            warn!("pause not renewed within its bound: resuming by ourselves");
            if let Err(error) = self.send_resume(command).await {
                warn!(%error, "RESUME failed; retrying");
            }
        }
    }

    /// One config tick: a changed template or userlist is written and reloaded.
    async fn follow_sources(&self, template_dir: &Path, auth_dir: &Path) {
        let Ok(fresh) = read_sources(template_dir, auth_dir) else { return };
        if *lock(&self.sources) == fresh {
            return;
        }
        *lock(&self.sources) = fresh;
        let result = match self.write_files() {
            Ok(()) => self.admin.command("RELOAD").await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match result {
            Ok(()) => info!("configuration changed: reloaded"),
            Err(error) => warn!(%error, "configuration changed but could not be reloaded"),
        }
    }
}

fn read_sources(template_dir: &Path, auth_dir: &Path) -> std::io::Result<(String, String)> {
    Ok((
        std::fs::read_to_string(template_dir.join(INI_KEY))?,
        std::fs::read_to_string(auth_dir.join(USERLIST_KEY))?,
    ))
}

/// Written whole and renamed into place, mode 0600: PgBouncer never reads half a file, and
/// nobody else reads the passwords.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let partial = path.with_extension("partial");
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&partial)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(partial, path)
}

fn admin_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs until PgBouncer exits; PgBouncer's exit code becomes the container's.
pub fn run(args: PoolerArgs) -> anyhow::Result<i32> {
    tracing_subscriber::fmt().with_target(false).init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: PoolerArgs) -> anyhow::Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    anyhow::ensure!(ini::valid_target(&args.initial_target), "--initial-target is not a host name");
    if let Some(bad) = args.databases.iter().find(|db| !ini::valid_database(db)) {
        anyhow::bail!("--database {bad:?} is not a plain database name");
    }
    let token = std::fs::read_to_string(args.auth_dir.join(TOKEN_KEY))
        .with_context(|| format!("reading the control token in {}", args.auth_dir.display()))?
        .trim()
        .to_string();
    anyhow::ensure!(!token.is_empty(), "the control token is empty");
    let sources =
        read_sources(&args.template_dir, &args.auth_dir).context("reading the template and userlist")?;
    let admin_password = admin_password()?;
    let pooler = Arc::new(Pooler {
        admin: Admin::new(admin_password.clone()),
        token,
        pause: Mutex::new(Pause::new(Duration::from_secs(args.pause_bound_seconds.max(1)))),
        target: Mutex::new(args.initial_target.clone()),
        sources: Mutex::new(sources),
        admin_password,
        databases: args.databases.clone(),
        run_dir: args.run_dir.clone(),
        pause_task: Mutex::new(None),
    });
    pooler.write_files().context("writing PgBouncer's files")?;
    let mut pgbouncer = tokio::process::Command::new(&args.pgbouncer)
        .arg(args.run_dir.join(INI_FILE))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", args.pgbouncer.display()))?;
    info!(target = %args.initial_target, "PgBouncer started");

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", args.control_port))
        .await
        .with_context(|| format!("binding the control port {}", args.control_port))?;
    let server = axum::serve(listener, super::server::router(pooler.clone()));
    tokio::spawn(async move {
        if let Err(error) = server.await {
            warn!(%error, "control endpoint stopped");
        }
    });

    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut watchdog = tokio::time::interval(WATCHDOG_TICK);
    let mut config = tokio::time::interval(CONFIG_TICK);
    loop {
        tokio::select! {
            status = pgbouncer.wait() => {
                let status = status.context("waiting for PgBouncer")?;
                warn!(%status, "PgBouncer exited");
                return Ok(status.code().unwrap_or(1));
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = watchdog.tick() => pooler.enforce_bound().await,
            _ = config.tick() => pooler.follow_sources(&args.template_dir, &args.auth_dir).await,
        }
    }
    // The pod is leaving the Service: let in-flight transactions finish, then stop.
    info!("stopping: draining in-flight transactions, then SHUTDOWN");
    let _ = tokio::time::timeout(SHUTDOWN_DRAIN, pooler.admin.command("PAUSE")).await;
    let _ = pooler.admin.command("SHUTDOWN").await;
    let status = match tokio::time::timeout(SHUTDOWN_DRAIN, pgbouncer.wait()).await {
        Ok(status) => status.context("waiting for PgBouncer")?,
        Err(_) => {
            pgbouncer.kill().await.context("killing PgBouncer")?;
            pgbouncer.wait().await.context("waiting for PgBouncer")?
        }
    };
    Ok(status.code().unwrap_or(0))
}
