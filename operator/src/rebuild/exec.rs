//! The rebuild executor: inspects the data directory, asks `plan` what to do, and does it
//! with PostgreSQL's own tools, falling back to pg_basebackup when pg_rewind fails.
//!
//! It runs where the data volume is (the instance manager of the pod, while PostgreSQL is
//! stopped; see `instance::supervise`), and it is synchronous: `std::process` needs no
//! runtime.
//!
//! Credentials: the executor never sees a password. The caller points `PGPASSFILE` (in
//! `Runner::env`) at a password file mounted from a Secret (mode 0600, owned by the postgres
//! user, as libpq insists), which pg_rewind and pg_basebackup read; the standby's own
//! `primary_conninfo` names the same file with `passfile=`. `PGPASSWORD` is not used: it
//! would sit in the environment of every child and in /proc.
//!
//! Interruptions: a pg_rewind interrupted half-way leaves a data directory that looks valid
//! but is not. A marker file beside the data directory (`<pgdata>.relevo-rewind`) is created
//! before pg_rewind and removed only after it succeeded, or after a base backup replaced
//! everything; while it exists the planner goes straight to pg_basebackup. The data
//! directory must therefore not be a volume's mount point itself, but a directory in it.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::controldata::ControlData;
use super::plan::{DataDirState, RebuildInput, RebuildStep, plan};
use super::process::ToolError;
use super::process::{Runner, args};
use super::standby_config::rewrite_auto_conf;

/// How PostgreSQL is started at the end, if at all.
#[derive(Clone, Debug)]
pub enum StartMode {
    /// Leave it stopped: the pod's main container starts it (the init-step case).
    LeaveStopped,
    /// `pg_ctl start -w` with these server options and log file.
    PgCtl { options: String, log_file: PathBuf },
}

/// Where to rebuild from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebuildSource {
    /// For pg_rewind (needs a `dbname`) and pg_basebackup. No password.
    pub conninfo: String,
    /// The standby's future `primary_conninfo` (with `application_name`, `passfile`).
    pub primary_conninfo: String,
    pub slot: Option<String>,
    pub system_identifier: Option<u64>,
    pub timeline: Option<u32>,
}

/// What a rebuild did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebuildReport {
    pub executed: Vec<RebuildStep>,
    /// Why pg_rewind failed, when the rebuild fell back to pg_basebackup because of it.
    pub rewind_error: Option<String>,
}

/// Runs the rebuild of one data directory.
#[derive(Clone, Debug)]
pub struct Executor {
    pub bin_dir: PathBuf,
    pub data_dir: PathBuf,
    pub runner: Runner,
    pub start: StartMode,
}

impl Executor {
    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    fn io(&self, what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> ToolError {
        let what = format!("{what} {}", path.display());
        move |source| ToolError::Io { what, source }
    }

    /// The marker that says a rewind of this directory has not succeeded yet.
    pub fn rewind_marker(&self) -> PathBuf {
        let mut name = self.data_dir.file_name().map(OsString::from).unwrap_or_else(|| "pgdata".into());
        name.push(".relevo-rewind");
        self.data_dir.with_file_name(name)
    }

    /// Looks at the data directory; never fails, an unreadable directory is just not valid.
    pub fn inspect(&self) -> DataDirState {
        let exists = fs::read_dir(&self.data_dir).map(|mut d| d.next().is_some()).unwrap_or(false);
        let control = if exists && self.data_dir.join("PG_VERSION").is_file() {
            let run = self.runner.run(&self.bin("pg_controldata"), &args([&self.data_dir]));
            run.ok().map(|out| ControlData::parse(&out.stdout))
        } else {
            None
        };
        let control = control.filter(|c| c.cluster_state.is_some());
        DataDirState {
            exists,
            valid: control.is_some(),
            has_postmaster_pid: self.data_dir.join("postmaster.pid").exists(),
            cluster_state: control.as_ref().and_then(|c| c.cluster_state.clone()),
            timeline: control.as_ref().and_then(ControlData::timeline),
            system_identifier: control.as_ref().and_then(|c| c.system_identifier),
        }
    }

    /// Inspects, plans, executes; on a pg_rewind failure, re-plans with the failure known and
    /// executes the fallback.
    pub fn rebuild(&self, source: &RebuildSource) -> Result<RebuildReport, ToolError> {
        let mut input = RebuildInput {
            data: self.inspect(),
            rewind_failed: self.rewind_marker().exists(),
            source_system_identifier: source.system_identifier,
            source_timeline: source.timeline,
            source_conninfo: source.conninfo.clone(),
            primary_conninfo: source.primary_conninfo.clone(),
            slot: source.slot.clone(),
        };
        let mut report = RebuildReport { executed: Vec::new(), rewind_error: None };
        let mut steps = plan(&input);
        let mut index = 0;
        while index < steps.len() {
            let step = steps[index].clone();
            match self.run_step(&step) {
                Ok(()) => report.executed.push(step),
                Err(error)
                    if matches!(step, RebuildStep::PgRewind { .. }) && report.rewind_error.is_none() =>
                {
                    report.rewind_error = Some(error.to_string());
                    input.data = self.inspect();
                    input.rewind_failed = true;
                    steps = plan(&input);
                    index = 0;
                    continue;
                }
                Err(error) => return Err(error),
            }
            index += 1;
        }
        Ok(report)
    }

    pub fn run_step(&self, step: &RebuildStep) -> Result<(), ToolError> {
        match step {
            RebuildStep::EnsureCleanShutdown => self.ensure_clean_shutdown(),
            RebuildStep::PgRewind { source_conninfo } => self.pg_rewind(source_conninfo),
            RebuildStep::FallbackBaseBackup { source_conninfo, slot } => {
                self.base_backup(source_conninfo, slot)
            }
            RebuildStep::WriteStandbyConfig { primary_conninfo, primary_slot_name } => {
                self.write_standby_config(primary_conninfo, primary_slot_name.as_deref())
            }
            RebuildStep::StartPostgres => self.start_postgres(),
        }
    }

    fn ensure_clean_shutdown(&self) -> Result<(), ToolError> {
        let pid_file = self.data_dir.join("postmaster.pid");
        if let Ok(text) = fs::read_to_string(&pid_file) {
            let pid = text.lines().next().unwrap_or("").trim().to_owned();
            if self.postmaster_alive(&pid) {
                return Err(ToolError::PostgresRunning { pid });
            }
            // Left by a container that died: the process is gone.
            fs::remove_file(&pid_file).map_err(self.io("removing stale", &pid_file))?;
        }
        // Single-user mode refuses to run with standby mode requested.
        for signal in ["standby.signal", "recovery.signal"] {
            let path = self.data_dir.join(signal);
            if path.exists() {
                fs::remove_file(&path).map_err(self.io("removing", &path))?;
            }
        }
        let mut single = args(["--single", "-F", "-D"]);
        single.push(self.data_dir.clone().into());
        single.push("template1".into());
        self.runner.run(&self.bin("postgres"), &single)?;
        match self.inspect().cluster_state {
            Some(state) if state.is_clean_shutdown() => Ok(()),
            other => {
                Err(ToolError::Unexpected(format!("still not cleanly shut down after recovery: {other:?}")))
            }
        }
    }

    /// Is `pid` a postmaster serving this data directory? A postmaster's working directory is
    /// its data directory, which tells it apart from an unrelated process that reused the pid.
    fn postmaster_alive(&self, pid: &str) -> bool {
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !(comm.starts_with("postgres") || comm.starts_with("postmaster")) {
            return false;
        }
        match (fs::read_link(format!("/proc/{pid}/cwd")), fs::canonicalize(&self.data_dir)) {
            (Ok(cwd), Ok(data_dir)) => cwd == data_dir,
            // Not allowed to look: assume the worst.
            _ => true,
        }
    }

    fn pg_rewind(&self, source_conninfo: &str) -> Result<(), ToolError> {
        let marker = self.rewind_marker();
        fs::write(&marker, b"pg_rewind started; remove only after a successful rebuild\n")
            .map_err(self.io("writing", &marker))?;
        let mut rewind = args(["--target-pgdata"]);
        rewind.push(self.data_dir.clone().into());
        rewind.push(format!("--source-server={source_conninfo}").into());
        self.runner.run(&self.bin("pg_rewind"), &rewind)?;
        fs::remove_file(&marker).map_err(self.io("removing", &marker))
    }

    fn base_backup(&self, source_conninfo: &str, slot: &Option<String>) -> Result<(), ToolError> {
        // Empty the directory but keep it: it may be a volume, and keeps its owner and mode.
        if self.data_dir.exists() {
            for entry in fs::read_dir(&self.data_dir).map_err(self.io("reading", &self.data_dir))? {
                let path = entry.map_err(self.io("reading", &self.data_dir))?.path();
                let removed = if path.is_dir() && !path.is_symlink() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                removed.map_err(self.io("removing", &path))?;
            }
        }
        let mut backup = args(["-D"]);
        backup.push(self.data_dir.clone().into());
        backup.extend(args(["-X", "stream", "--checkpoint=fast", "--no-password"]));
        backup.push(format!("--dbname={source_conninfo}").into());
        if let Some(slot) = slot {
            backup.extend(args(["-S", slot]));
        }
        self.runner.run(&self.bin("pg_basebackup"), &backup)?;
        let marker = self.rewind_marker();
        if marker.exists() {
            fs::remove_file(&marker).map_err(self.io("removing", &marker))?;
        }
        Ok(())
    }

    fn write_standby_config(&self, primary_conninfo: &str, slot: Option<&str>) -> Result<(), ToolError> {
        let owner = fs::metadata(&self.data_dir).map_err(self.io("reading", &self.data_dir))?;
        let auto_conf = self.data_dir.join("postgresql.auto.conf");
        let existing = match fs::read_to_string(&auto_conf) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(self.io("reading", &auto_conf)(e)),
        };
        let temp = self.data_dir.join("postgresql.auto.conf.relevo-tmp");
        fs::write(&temp, rewrite_auto_conf(&existing, primary_conninfo, slot))
            .map_err(self.io("writing", &temp))?;
        self.give_to_owner(&temp, &owner)?;
        fs::rename(&temp, &auto_conf).map_err(self.io("replacing", &auto_conf))?;
        let _ = fs::remove_file(self.data_dir.join("recovery.signal"));
        let signal = self.data_dir.join("standby.signal");
        fs::write(&signal, b"").map_err(self.io("writing", &signal))?;
        self.give_to_owner(&signal, &owner)
    }

    /// Files we create belong to the data directory's owner, with private permissions, even
    /// when the executor runs as root (tests).
    fn give_to_owner(&self, path: &Path, owner: &fs::Metadata) -> Result<(), ToolError> {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(self.io("chmod", path))?;
        std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid())).map_err(self.io("chown", path))
    }

    fn start_postgres(&self) -> Result<(), ToolError> {
        let StartMode::PgCtl { options, log_file } = &self.start else { return Ok(()) };
        let mut start = args(["start", "-w", "-t", "60", "-D"]);
        start.push(self.data_dir.clone().into());
        start.push("-l".into());
        start.push(log_file.clone().into());
        start.extend(args(["-o", options]));
        self.runner.run(&self.bin("pg_ctl"), &start).map(|_| ())
    }
}
