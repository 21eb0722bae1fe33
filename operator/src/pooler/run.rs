//! `relevo pooler`: the PgBouncer pod's supervisor. It writes PgBouncer's files (the
//! userlist from the mounted Secret), runs PgBouncer as its child, serves the control
//! channel and enforces the pause bound. PgBouncer's exit ends the container.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tracing::{info, warn};

use crate::protocol::pooler::{CONTROL_PORT, CREDENTIALS_DIR, RUN_DIR, TEMPLATE_DIR, TLS_DIR};

use super::admin::Admin;
use super::ini;
use super::supervisor::{Files, Supervisor, admin_password};

/// How often the bound is checked: the pooler resumes at most this late.
const BOUND_TICK: Duration = Duration::from_millis(200);
/// At shutdown, how long in-flight transactions get before PgBouncer stops.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Clone)]
pub struct PoolerArgs {
    /// Host every database points at until the operator names the primary's own address.
    #[arg(long)]
    pub initial_target: String,
    /// A database of the cluster, named in `[databases]` (repeatable).
    #[arg(long = "database")]
    pub databases: Vec<String>,
    /// A PAUSE with no RESUME within this many seconds is resumed by the pooler itself.
    #[arg(long, default_value_t = 15)]
    pub pause_bound_seconds: u64,
    /// Port PostgreSQL listens on at the target.
    #[arg(long, default_value_t = ini::postgres_port())]
    pub target_port: u16,
    /// Port PgBouncer listens on (its Unix socket has the same number).
    #[arg(long, default_value_t = crate::protocol::pooler::POOLER_PORT as u16)]
    pub listen_port: u16,
    #[arg(long, default_value = TEMPLATE_DIR)]
    pub template_dir: PathBuf,
    #[arg(long, default_value = CREDENTIALS_DIR)]
    pub credentials_dir: PathBuf,
    /// The pooler's certificate, key and the cluster CA, for the control channel.
    #[arg(long, default_value = TLS_DIR)]
    pub tls_dir: PathBuf,
    #[arg(long, default_value = RUN_DIR)]
    pub run_dir: PathBuf,
    #[arg(long, default_value_t = CONTROL_PORT)]
    pub control_port: u16,
    #[arg(long, default_value = "pgbouncer")]
    pub pgbouncer: PathBuf,
    /// Not a flag: the real-process tests (run as root) hand the files to PgBouncer's user.
    #[arg(skip)]
    pub file_owner: Option<(u32, u32)>,
}

/// A running pooler: PgBouncer, the channel and the bound.
pub struct Running {
    pub supervisor: Arc<Supervisor>,
    pub pgbouncer: tokio::process::Child,
    pub control_addr: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Writes the files, starts PgBouncer, binds the channel and starts the bound.
pub async fn start(args: &PoolerArgs) -> anyhow::Result<Running> {
    if let Some(bad) = args.databases.iter().find(|db| !ini::valid_database(db)) {
        anyhow::bail!("--database {bad:?} is not a plain database name");
    }
    let (template, user, password) = Files::read(&args.template_dir, &args.credentials_dir)?;
    let admin_password = admin_password()?;
    let admin = Admin::new(args.run_dir.clone(), args.listen_port, admin_password.clone());
    let files = Files {
        template,
        user,
        password,
        admin_password,
        databases: args.databases.clone(),
        target_port: args.target_port,
        run_dir: args.run_dir.clone(),
        file_owner: args.file_owner,
    };
    let bound = Duration::from_secs(args.pause_bound_seconds.max(1));
    let supervisor = Supervisor::new(files, &args.initial_target, bound, admin)
        .context("writing PgBouncer's files for --initial-target")?;
    let tls = |name: &str| args.tls_dir.join(name);
    let config = crate::tls::mutual_server_config(&tls("ca.crt"), &tls("tls.crt"), &tls("tls.key"))
        .map_err(|e| anyhow::anyhow!("the control channel's TLS: {e}"))?;
    let pgbouncer = tokio::process::Command::new(&args.pgbouncer)
        .arg(supervisor.ini_path())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", args.pgbouncer.display()))?;
    info!(target = %args.initial_target, "PgBouncer started");
    let tcp = tokio::net::TcpListener::bind(("0.0.0.0", args.control_port))
        .await
        .with_context(|| format!("binding the control port {}", args.control_port))?;
    let control_addr = tcp.local_addr()?;
    let served = supervisor.clone();
    let channel = tokio::spawn(async move {
        if let Err(error) = super::control::serve(tcp, config, served).await {
            warn!(%error, "control channel stopped");
        }
    });
    let bounded = supervisor.clone();
    let bound_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(BOUND_TICK);
        loop {
            tick.tick().await;
            bounded.enforce_bound().await;
        }
    });
    Ok(Running { supervisor, pgbouncer, control_addr, tasks: vec![channel, bound_task] })
}

/// Runs until PgBouncer exits or the pod is stopped; PgBouncer's exit code becomes the
/// container's.
pub fn run(args: PoolerArgs) -> anyhow::Result<i32> {
    tracing_subscriber::fmt().with_target(false).init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: PoolerArgs) -> anyhow::Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut running = start(&args).await?;
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        status = running.pgbouncer.wait() => {
            let status = status.context("waiting for PgBouncer")?;
            warn!(%status, "PgBouncer exited");
            return Ok(status.code().unwrap_or(1));
        }
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    // The pod is leaving the Service: let in-flight transactions finish, then stop.
    info!("stopping: waiting for in-flight transactions, then SHUTDOWN");
    let admin = running.supervisor.admin.clone();
    let _ = tokio::time::timeout(SHUTDOWN_DRAIN, admin.command("PAUSE")).await;
    let _ = admin.command("SHUTDOWN").await;
    let status = match tokio::time::timeout(SHUTDOWN_DRAIN, running.pgbouncer.wait()).await {
        Ok(status) => status.context("waiting for PgBouncer")?,
        Err(_) => {
            running.pgbouncer.kill().await.context("killing PgBouncer")?;
            running.pgbouncer.wait().await.context("waiting for PgBouncer")?
        }
    };
    Ok(status.code().unwrap_or(0))
}
