//! What the control channel and the bound share: PgBouncer's pause state, its target, and
//! the files it reads. Every change of PgBouncer goes through here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::protocol::pooler::{PauseState, PoolerState, TEMPLATE_KEY, valid_target};

use super::admin::{Admin, AdminError};
use super::ini::{self, INI_FILE, USERLIST_FILE};
use super::pause::{Command, Pause};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("not a host name or IP address")]
    Invalid,
    #[error("writing pgbouncer.ini: {0}")]
    Write(#[source] std::io::Error),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// What PgBouncer reads, as the supervisor assembles it.
pub struct Files {
    pub template: String,
    pub user: String,
    pub password: String,
    pub admin_password: String,
    pub databases: Vec<String>,
    pub target_port: u16,
    pub run_dir: PathBuf,
    /// Owner to give the written files, when PgBouncer runs as another user than the
    /// supervisor (the real-process tests, run as root; never in a pod).
    pub file_owner: Option<(u32, u32)>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("user", &self.user)
            .field("run_dir", &self.run_dir)
            .finish_non_exhaustive()
    }
}

impl Files {
    /// The template from `template_dir`, the application user from `credentials_dir` (the
    /// mounted Secret's `username` and `password`), and a fresh admin password.
    pub fn read(template_dir: &Path, credentials_dir: &Path) -> anyhow::Result<(String, String, String)> {
        use anyhow::Context as _;
        let read = |path: PathBuf| {
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        Ok((
            read(template_dir.join(TEMPLATE_KEY))?,
            read(credentials_dir.join("username"))?.trim().to_string(),
            read(credentials_dir.join("password"))?.trim_end_matches('\n').to_string(),
        ))
    }

    fn write(&self, target: &str, port: u16) -> std::io::Result<()> {
        let userlist = ini::userlist(&self.user, &self.password, &self.admin_password);
        write_private(&self.run_dir.join(USERLIST_FILE), &userlist, self.file_owner)?;
        let ini = ini::with_target(&self.template, target, port, &self.databases);
        write_private(&self.run_dir.join(INI_FILE), &ini, self.file_owner)
    }
}

pub struct Supervisor {
    pub admin: Admin,
    files: Files,
    pause: Mutex<Pause>,
    /// Host and port every database points at.
    target: Mutex<(String, u16)>,
    pause_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Supervisor {
    /// Writes PgBouncer's files for `target`; PgBouncer is started by the caller after this.
    pub fn new(files: Files, target: &str, bound: Duration, admin: Admin) -> Result<Arc<Self>, TargetError> {
        if !valid_target(target) {
            return Err(TargetError::Invalid);
        }
        files.write(target, files.target_port).map_err(TargetError::Write)?;
        let port = files.target_port;
        Ok(Arc::new(Self {
            admin,
            files,
            pause: Mutex::new(Pause::new(bound)),
            target: Mutex::new((target.to_string(), port)),
            pause_task: Mutex::new(None),
        }))
    }

    pub fn ini_path(&self) -> PathBuf {
        self.files.run_dir.join(INI_FILE)
    }

    pub fn state(&self) -> PoolerState {
        let pause = lock(&self.pause);
        PoolerState {
            state: pause.state(),
            target: lock(&self.target).0.clone(),
            resumes_by_itself_in_ms: pause.remaining(Instant::now()).map(|d| d.as_millis() as u64),
        }
    }

    /// Starts a pause (or restarts its bound), and waits up to `wait` for PgBouncer to have
    /// released every server connection (in-flight transactions ended).
    pub async fn pause(self: &Arc<Self>, wait: Duration) -> PoolerState {
        let command = lock(&self.pause).request_pause(Instant::now());
        if command == Command::Pause {
            info!("PAUSE: holding clients, waiting for in-flight transactions");
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
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.state()
    }

    /// Points every database at `target` (when given and different), then RESUMEs.
    pub async fn resume(&self, target: Option<&str>, port: Option<u16>) -> Result<PoolerState, TargetError> {
        if let Some(target) = target {
            self.set_target(target, port.unwrap_or(self.files.target_port)).await?;
        }
        let command = lock(&self.pause).request_resume();
        self.send_resume(command).await?;
        Ok(self.state())
    }

    async fn set_target(&self, host: &str, port: u16) -> Result<(), TargetError> {
        if !valid_target(host) {
            return Err(TargetError::Invalid);
        }
        let wanted = (host.to_string(), port);
        if *lock(&self.target) == wanted {
            return Ok(());
        }
        self.files.write(host, port).map_err(TargetError::Write)?;
        *lock(&self.target) = wanted;
        self.admin.command("RELOAD").await?;
        info!(target = host, "every database now points at the new target");
        Ok(())
    }

    async fn send_resume(&self, command: Command) -> Result<(), AdminError> {
        if command != Command::Resume {
            return Ok(());
        }
        // A PAUSE still draining holds its own admin connection; PgBouncer's pause is
        // global, so ending that connection does not undo the RESUME.
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

    /// One tick of the bound: a pause past it is resumed by the pooler itself.
    pub async fn enforce_bound(&self) {
        let command = lock(&self.pause).expire(Instant::now());
        if command == Command::Resume {
            warn!("no RESUME within the pause bound: resuming by ourselves");
            if let Err(error) = self.send_resume(command).await {
                warn!(%error, "RESUME failed; retrying");
            }
        }
    }
}

/// Written whole and renamed into place, mode 0600: PgBouncer never reads half a file, and
/// nobody else reads the passwords.
fn write_private(path: &Path, contents: &str, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let partial = path.with_extension("partial");
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&partial)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&partial, Some(uid), Some(gid))?;
    }
    std::fs::rename(partial, path)
}

/// A fresh password for the admin console, never written anywhere but the userlist.
pub fn admin_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
