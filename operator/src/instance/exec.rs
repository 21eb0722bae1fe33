//! Carries out the [`plan`](super::plan) inside the pod: files, initdb, pg_basebackup, and
//! PostgreSQL itself. Everything decided here is I/O; the decisions are in `plan`.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use super::conf;
use super::plan::{self, Bootstrap, BootstrapStep, DataDir, PlanError};
use crate::pgbackrest::command::{Pgbackrest, RestoreOptions, RestoreTarget};
use crate::protocol::layout::{self, env};

/// How often and how long a standby retries cloning while its primary is not up yet (the
/// first primary is still in initdb, or the operator has not created the slot).
const CLONE_ATTEMPTS: u32 = 150;
const CLONE_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Arguments of `relevo instance`, each also read from the environment the StatefulSet sets.
/// Passwords are deliberately not arguments: they are read from the environment only, so
/// they never appear in the process list.
#[derive(clap::Args, Debug, Clone)]
pub struct InstanceArgs {
    /// Name of the PgCluster.
    #[arg(long, env = env::CLUSTER)]
    pub cluster: String,
    /// Name of this instance, <cluster>-<N>.
    #[arg(long, env = env::INSTANCE)]
    pub instance: String,
    /// What to do with an empty data directory: initdb or clone.
    #[arg(long, env = env::BOOTSTRAP)]
    pub bootstrap: Bootstrap,
    /// Host to clone from and stream from.
    #[arg(long, env = env::PRIMARY_HOST)]
    pub primary_host: String,
    /// PostgreSQL data directory. In a pod it is always layout::PGDATA, which is where the
    /// operator's postgresql.conf includes relevo-instance.conf from.
    #[arg(long, env = env::PGDATA, default_value = layout::PGDATA)]
    pub pgdata: PathBuf,
    /// Application database created by initdb.
    #[arg(long, env = env::APP_DATABASE, default_value = "app")]
    pub app_database: String,
    /// Owner of the application database.
    #[arg(long, env = env::APP_OWNER, default_value = "app")]
    pub app_owner: String,
    /// Bootstrap restore: the source cluster's stanza.
    #[arg(long, env = env::RESTORE_STANZA)]
    pub restore_stanza: Option<String>,
    /// Bootstrap restore: pgBackRest config reaching the source repository.
    #[arg(long, env = env::RESTORE_CONFIG)]
    pub restore_config: Option<String>,
    /// Bootstrap restore: the backup set to restore (default: the latest).
    #[arg(long, env = env::RESTORE_LABEL)]
    pub restore_label: Option<String>,
    /// Bootstrap restore: recover to this point in time (RFC 3339) instead of the end of the
    /// backup.
    #[arg(long, env = env::RESTORE_TARGET_TIME)]
    pub restore_target_time: Option<String>,
}

/// Why the entrypoint stopped. Messages never contain a password.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
    #[error("{action} failed")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} exited with {status}")]
    CommandFailed { command: &'static str, status: ExitStatus },
    #[error("could not clone the primary {host} after {attempts} attempts")]
    CloneGaveUp { host: String, attempts: u32 },
    #[error("cannot restore: {0}")]
    Restore(String),
}

pub(super) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExecError {
    let action = action.into();
    move |source| ExecError::Io { action, source }
}

/// Passwords from the environment, read once. Debug is redacted.
struct Passwords {
    superuser: String,
    replication: String,
    app: Option<String>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passwords { <redacted> }")
    }
}

impl Passwords {
    fn from_env(bootstrap: Bootstrap) -> Result<Self, ExecError> {
        let read = |name: &'static str| std::env::var(name).map_err(|_| ExecError::MissingEnv(name));
        Ok(Self {
            superuser: read(env::SUPERUSER_PASSWORD)?,
            replication: read(env::REPLICATION_PASSWORD)?,
            // A restored cluster's roles get this cluster's passwords once it is promoted.
            app: match bootstrap {
                Bootstrap::Initdb | Bootstrap::Restore => Some(read(env::APP_PASSWORD)?),
                Bootstrap::Clone => None,
            },
        })
    }
}

/// Marker left by a restore: the restored roles still have the source cluster's passwords
/// until the supervisor sets this cluster's, once PostgreSQL has left recovery.
pub fn passwords_pending_marker(pgdata: &Path) -> PathBuf {
    pgdata.with_file_name("relevo-passwords-pending")
}

/// Marker of a bootstrap in progress, beside PGDATA on the same volume.
pub fn bootstrap_marker(pgdata: &Path) -> PathBuf {
    pgdata.with_file_name("relevo-bootstrapping")
}

/// Looks at the volume. See [`DataDir`] for what each answer means.
pub fn inspect(pgdata: &Path) -> std::io::Result<DataDir> {
    if bootstrap_marker(pgdata).exists() {
        return Ok(DataDir::Interrupted);
    }
    let mut entries = match fs::read_dir(pgdata) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(DataDir::Empty),
        Err(error) => return Err(error),
    };
    if entries.next().is_none() {
        return Ok(DataDir::Empty);
    }
    if pgdata.join("PG_VERSION").is_file() {
        return Ok(DataDir::Initialised { standby: pgdata.join("standby.signal").is_file() });
    }
    Ok(DataDir::Unrecognised)
}

/// What PostgreSQL starts with once the data directory is ready.
pub struct Prepared {
    pub superuser_password: String,
    /// SQL that sets the passwords once PostgreSQL accepts connections (after a restore).
    pub set_passwords: Option<String>,
}

/// Runs the plan up to the start of PostgreSQL, which [`super::supervise`] then runs.
pub fn prepare(args: &InstanceArgs) -> Result<Prepared, ExecError> {
    let passwords = Passwords::from_env(args.bootstrap)?;
    let data_dir = inspect(&args.pgdata).map_err(io(format!("reading {}", args.pgdata.display())))?;
    let steps = plan::plan(data_dir, args.bootstrap)?;
    log(args, &format!("data directory is {data_dir:?}; steps: {steps:?}"));
    for step in steps {
        match step {
            BootstrapStep::WritePassfile => {
                write_private(Path::new(layout::PGPASSFILE), &conf::passfile(&passwords.replication))?
            }
            BootstrapStep::WipeData => wipe(&args.pgdata)?,
            BootstrapStep::MarkBootstrapping => {
                fs::write(bootstrap_marker(&args.pgdata), b"").map_err(io("writing the bootstrap marker"))?
            }
            BootstrapStep::Initdb => initdb(args, &passwords)?,
            BootstrapStep::CreateRoles => create_roles(args, &passwords)?,
            BootstrapStep::CloneFromPrimary => clone_from_primary(args)?,
            BootstrapStep::RestoreFromBackup => restore_from_backup(args)?,
            BootstrapStep::WriteStandbySignal => {
                fs::write(args.pgdata.join("standby.signal"), b"").map_err(io("writing standby.signal"))?
            }
            BootstrapStep::ClearBootstrapping => fs::remove_file(bootstrap_marker(&args.pgdata))
                .map_err(io("removing the bootstrap marker"))?,
            BootstrapStep::WriteInstanceConf => fs::write(
                args.pgdata.join(Path::new(layout::INSTANCE_CONF).file_name().unwrap_or_default()),
                conf::instance_conf(&args.instance, &args.primary_host),
            )
            .map_err(io("writing the instance configuration"))?,
            BootstrapStep::StartPostgres => {
                let pending = passwords_pending_marker(&args.pgdata).exists();
                let set_passwords = match (&passwords.app, pending) {
                    (Some(app), true) => Some(conf::after_restore_sql(
                        &args.app_owner,
                        &passwords.superuser,
                        &passwords.replication,
                        app,
                    )),
                    _ => None,
                };
                return Ok(Prepared { superuser_password: passwords.superuser.clone(), set_passwords });
            }
        }
    }
    unreachable!("every plan ends with StartPostgres")
}

pub(super) fn log(args: &InstanceArgs, message: &str) {
    eprintln!("relevo instance {}: {message}", args.instance);
}

/// A file only the postgres user can read: libpq refuses a group-readable passfile.
pub(super) fn write_private(path: &Path, content: &str) -> Result<(), ExecError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("opening {}", path.display())))?;
    file.write_all(content.as_bytes()).map_err(io(format!("writing {}", path.display())))
}

pub(super) fn wipe(pgdata: &Path) -> Result<(), ExecError> {
    match fs::remove_dir_all(pgdata) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(io("deleting the interrupted bootstrap")(error))
        }
        _ => Ok(()),
    }
}

fn command_status(name: &'static str, command: &mut std::process::Command) -> Result<(), ExecError> {
    let status = command.status().map_err(io(format!("starting {name}")))?;
    if status.success() { Ok(()) } else { Err(ExecError::CommandFailed { command: name, status }) }
}

fn initdb(args: &InstanceArgs, passwords: &Passwords) -> Result<(), ExecError> {
    // initdb reads the password from a file; it lives on a memory-backed emptyDir and is
    // removed as soon as initdb is done.
    let pwfile = Path::new(layout::RUN_DIR).join("superuser-password");
    write_private(&pwfile, &passwords.superuser)?;
    let result = command_status(
        "initdb",
        std::process::Command::new("initdb")
            .arg("--pgdata")
            .arg(&args.pgdata)
            .args(["--username", layout::SUPERUSER, "--pwfile"])
            .arg(&pwfile)
            .args(["--auth-local=peer", "--auth-host=scram-sha-256", "--data-checksums"])
            .args(["--encoding=UTF8", "--locale=C.UTF-8"]),
    );
    let _ = fs::remove_file(&pwfile);
    result
}

fn create_roles(args: &InstanceArgs, passwords: &Passwords) -> Result<(), ExecError> {
    let app_password = passwords.app.as_deref().ok_or(ExecError::MissingEnv(env::APP_PASSWORD))?;
    let sql = conf::bootstrap_sql(&args.app_database, &args.app_owner, &passwords.replication, app_password);
    let mut child = std::process::Command::new("postgres")
        .arg("--single")
        .arg("-D")
        .arg(&args.pgdata)
        .arg("-c")
        .arg(format!("config_file={}", layout::POSTGRESQL_CONF))
        .arg(layout::SUPERUSER)
        .stdin(Stdio::piped())
        // Single-user mode echoes what it runs; its output could contain the passwords, so
        // only its server error lines are ever shown ([`server_error_lines`]).
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("starting postgres --single"))?;
    // Read while it runs: a full pipe would stall it.
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            text
        })
    });
    let write_result = child.stdin.take().map(|mut stdin| stdin.write_all(sql.as_bytes()));
    let status = child.wait().map_err(io("waiting for postgres --single"))?;
    let stderr = stderr.and_then(|reader| reader.join().ok()).unwrap_or_default();
    if let Some(Err(error)) = write_result {
        return Err(io("sending bootstrap SQL")(error));
    }
    if status.success() {
        Ok(())
    } else {
        for line in server_error_lines(&stderr) {
            log(args, &format!("postgres --single: {line}"));
        }
        Err(ExecError::CommandFailed { command: "postgres --single", status })
    }
}

/// The lines of PostgreSQL's output that say why it could not run (a FATAL or PANIC, a
/// setting it refused), never one that mentions a password or echoes a statement.
pub fn server_error_lines(output: &str) -> Vec<&str> {
    let says_why = |l: &str| {
        l.contains("FATAL:") || l.contains("PANIC:") || (l.contains("LOG:") && l.contains("invalid value"))
    };
    let safe = |l: &str| !l.to_ascii_lowercase().contains("password") && !l.contains("STATEMENT:");
    output.lines().map(str::trim).filter(|l| says_why(l) && safe(l)).collect()
}

/// What `pgbackrest restore` is asked for, from the arguments.
pub fn restore_target(label: Option<&str>, target_time: Option<&str>) -> Result<RestoreTarget, String> {
    let label = label.filter(|l| !l.is_empty()).map(str::to_owned);
    match target_time.filter(|t| !t.is_empty()) {
        Some(time) => {
            let at = chrono::DateTime::parse_from_rfc3339(time)
                .map_err(|e| format!("target time {time:?} is not RFC 3339: {e}"))?
                .with_timezone(&chrono::Utc);
            Ok(RestoreTarget::Time { at, label })
        }
        None => Ok(match label {
            Some(label) => RestoreTarget::Backup { label },
            None => RestoreTarget::LatestBackup,
        }),
    }
}

/// The argv of the restore. Archiving stays on: once promoted, this cluster archives into its
/// own repository (its archive_command names its own stanza and config).
pub fn restore_argv(args: &InstanceArgs) -> Result<Vec<String>, String> {
    let stanza = args.restore_stanza.as_deref().ok_or("no source stanza")?;
    let config = args.restore_config.as_deref().ok_or("no pgBackRest config for the source")?;
    let target = restore_target(args.restore_label.as_deref(), args.restore_target_time.as_deref())?;
    let pgbackrest = Pgbackrest::new(stanza).map_err(|e| e.to_string())?.with_config(config);
    let mut argv = pgbackrest.restore(&RestoreOptions { target, delta: false, archive_mode_off: false });
    argv.insert(argv.len() - 1, format!("--pg1-path={}", args.pgdata.display()));
    Ok(argv)
}

fn restore_from_backup(args: &InstanceArgs) -> Result<(), ExecError> {
    let argv = restore_argv(args).map_err(ExecError::Restore)?;
    log(args, &format!("restoring: {}", argv.join(" ")));
    command_status("pgbackrest restore", std::process::Command::new(&argv[0]).args(&argv[1..]))?;
    fs::write(passwords_pending_marker(&args.pgdata), b"").map_err(io("writing the passwords marker"))
}

pub(super) fn clone_from_primary(args: &InstanceArgs) -> Result<(), ExecError> {
    let slot = layout::slot_name(&args.instance);
    for attempt in 1..=CLONE_ATTEMPTS {
        let result = command_status(
            "pg_basebackup",
            std::process::Command::new("pg_basebackup")
                .arg("--pgdata")
                .arg(&args.pgdata)
                .args(["--host", &args.primary_host, "--port", &layout::POSTGRES_PORT.to_string()])
                .args(["--username", layout::REPLICATION_USER, "--no-password"])
                .args(["--wal-method=stream", "--slot", &slot, "--checkpoint=fast"])
                .env("PGPASSFILE", layout::PGPASSFILE)
                .env("PGSSLMODE", layout::SSLMODE)
                .env("PGSSLROOTCERT", layout::CA_FILE)
                .env("PGAPPNAME", &args.instance)
                .env("PGCONNECT_TIMEOUT", "5"),
        );
        match result {
            Ok(()) => return Ok(()),
            Err(error) => {
                log(
                    args,
                    &format!("clone attempt {attempt}/{CLONE_ATTEMPTS} from {}: {error}", args.primary_host),
                );
                // pg_basebackup refuses a non-empty target, so a failed attempt is removed.
                wipe(&args.pgdata)?;
                std::thread::sleep(CLONE_RETRY_DELAY);
            }
        }
    }
    Err(ExecError::CloneGaveUp { host: args.primary_host.clone(), attempts: CLONE_ATTEMPTS })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_server_error_lines_are_shown_and_never_a_password() {
        let output = "2026-12-07 19:00:00 UTC [9] LOG:  invalid value for parameter \"shared_buffers\": \"lots\"\n\
                      2026-12-07 19:00:00 UTC [9] FATAL:  configuration file \"/etc/x.conf\" contains errors\n\
                      backend> ALTER ROLE app PASSWORD 'secret'\n\
                      2026-12-07 19:00:00 UTC [9] FATAL:  bad PASSWORD 'secret'\n\
                      2026-12-07 19:00:00 UTC [9] STATEMENT:  FATAL: CREATE ROLE x\n\
                      2026-12-07 19:00:00 UTC [9] LOG:  database system is ready\n";
        assert_eq!(
            server_error_lines(output),
            [
                "2026-12-07 19:00:00 UTC [9] LOG:  invalid value for parameter \"shared_buffers\": \"lots\"",
                "2026-12-07 19:00:00 UTC [9] FATAL:  configuration file \"/etc/x.conf\" contains errors",
            ]
        );
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("relevo-exec-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn inspect_tells_the_volume_states_apart() {
        let volume = TempDir::new("inspect");
        let pgdata = volume.0.join("pgdata");
        assert_eq!(inspect(&pgdata).unwrap(), DataDir::Empty, "missing directory");
        fs::create_dir(&pgdata).unwrap();
        assert_eq!(inspect(&pgdata).unwrap(), DataDir::Empty, "empty directory");
        fs::write(pgdata.join("base"), b"").unwrap();
        assert_eq!(inspect(&pgdata).unwrap(), DataDir::Unrecognised);
        fs::write(pgdata.join("PG_VERSION"), b"15\n").unwrap();
        assert_eq!(inspect(&pgdata).unwrap(), DataDir::Initialised { standby: false });
        fs::write(pgdata.join("standby.signal"), b"").unwrap();
        assert_eq!(inspect(&pgdata).unwrap(), DataDir::Initialised { standby: true });
        fs::write(bootstrap_marker(&pgdata), b"").unwrap();
        assert_eq!(inspect(&pgdata).unwrap(), DataDir::Interrupted, "the marker wins");
    }

    #[test]
    fn marker_sits_beside_pgdata_on_the_volume() {
        assert_eq!(
            bootstrap_marker(Path::new(layout::PGDATA)),
            Path::new(layout::DATA_MOUNT).join("relevo-bootstrapping")
        );
    }

    #[test]
    fn wipe_removes_a_partial_clone_and_tolerates_nothing_there() {
        let volume = TempDir::new("wipe");
        let pgdata = volume.0.join("pgdata");
        fs::create_dir_all(pgdata.join("base/1")).unwrap();
        wipe(&pgdata).unwrap();
        assert!(!pgdata.exists());
        wipe(&pgdata).unwrap();
    }

    #[test]
    fn private_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = TempDir::new("private");
        let path = dir.0.join("pgpass");
        write_private(&path, "secret").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap(), "secret");
    }

    #[test]
    fn password_debug_is_redacted() {
        let passwords = Passwords { superuser: "s3cret".into(), replication: "r3p".into(), app: None };
        assert!(!format!("{passwords:?}").contains("s3cret"));
    }

    #[test]
    fn restore_targets_from_label_and_time() {
        assert_eq!(restore_target(None, None), Ok(RestoreTarget::LatestBackup));
        assert_eq!(restore_target(Some(""), Some("")), Ok(RestoreTarget::LatestBackup));
        let label = "20251007-120000F".to_string();
        assert_eq!(restore_target(Some(&label), None), Ok(RestoreTarget::Backup { label: label.clone() }));
        let at = chrono::DateTime::parse_from_rfc3339("2025-10-07T12:30:00+02:00").unwrap().to_utc();
        assert_eq!(
            restore_target(Some(&label), Some("2025-10-07T12:30:00+02:00")),
            Ok(RestoreTarget::Time { at, label: Some(label) })
        );
        let error = restore_target(None, Some("yesterday")).unwrap_err();
        assert!(error.contains("\"yesterday\" is not RFC 3339"), "{error}");
    }

    #[test]
    fn restore_runs_pgbackrest_on_the_source_stanza_into_pgdata() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: InstanceArgs,
        }
        let cli = Cli::try_parse_from([
            "relevo",
            "--cluster",
            "copy",
            "--instance",
            "copy-1",
            "--bootstrap",
            "restore",
            "--primary-host",
            "copy-rw",
            "--pgdata",
            "/data/pgdata",
            "--restore-stanza",
            "demo",
            "--restore-config",
            "/etc/pgbackrest/conf/restore.conf",
        ])
        .unwrap();
        let argv = restore_argv(&cli.args).unwrap();
        assert_eq!(argv[0], "pgbackrest");
        assert!(argv.contains(&"--stanza=demo".to_string()), "{argv:?}");
        assert!(argv.contains(&"--config=/etc/pgbackrest/conf/restore.conf".to_string()));
        assert!(argv.contains(&"--pg1-path=/data/pgdata".to_string()));
        assert!(
            argv.contains(&"--type=immediate".to_string())
                && argv.contains(&"--target-action=promote".to_string())
        );
        assert!(!argv.iter().any(|a| a.starts_with("--archive-mode")), "archiving stays on: {argv:?}");
        assert_eq!(argv.last().map(String::as_str), Some("restore"));
        let mut missing = cli.args.clone();
        missing.restore_stanza = None;
        assert_eq!(restore_argv(&missing), Err("no source stanza".to_string()));
    }
}
