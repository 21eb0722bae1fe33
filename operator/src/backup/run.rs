//! `relevo backup-job`: the entrypoint of a backup Job's pod.
//!
//! pgBackRest 2.45 runs `backup` only on the repository host, so the Job mounts the repo
//! volume and the repo host's configuration and is, for that moment, a second repo host. It
//! runs `pgbackrest backup`, then `pgbackrest info --output=json` to find the set it made
//! ([`backup_of_run`]), and leaves a [`JobResult`] in the termination message, where the
//! operator reads it. pgBackRest's own output goes to the pod's log as it comes.
//!
//! pgBackRest expires old backups itself at the end of `backup`, with the retention the
//! Job passes (`--retention-full`, the cluster's BackupSchedules'); the result lists the sets
//! left, so the operator can mark the expired Backups and clean their Redis records.
//!
//! Exit status: 0 only when the backup set was made and recorded in the termination message.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use chrono::Utc;

use super::result::{BackupDone, JobResult, RepoContents, TERMINATION_LOG, command_error, encode};
use crate::crd::BackupType;
use crate::pgbackrest::command::{PGBACKREST, Pgbackrest};
use crate::pgbackrest::info::{backup_of_run, find_stanza, parse};
use crate::protocol::names;

/// Lines of a command's output kept in memory for the error; the rest only goes to the log.
const KEPT_LINES: usize = 200;

/// Arguments of `relevo backup-job`, all set by the Job builder.
#[derive(clap::Args, Debug, Clone)]
pub struct BackupJobArgs {
    /// pgBackRest configuration of the repo host.
    #[arg(long)]
    pub config: String,
    /// pgBackRest stanza.
    #[arg(long)]
    pub stanza: String,
    /// full, diff or incr.
    #[arg(long = "type", value_parser = parse_backup_type)]
    pub backup_type: BackupType,
    /// Path of the repository (repo1-path), for the backup set's path in the result.
    #[arg(long, default_value = names::REPO_PATH)]
    pub repo_path: String,
    /// Where to write the result: the container's termination message file.
    #[arg(long, default_value = TERMINATION_LOG)]
    pub termination_log: PathBuf,
    /// Full backups pgBackRest keeps when it expires at the end of the backup
    /// (repo1-retention-full); unset keeps the configuration's value.
    #[arg(long)]
    pub retention_full: Option<u32>,
}

/// clap's parser of `--type`.
pub fn parse_backup_type(text: &str) -> Result<BackupType, String> {
    text.parse()
}

/// Runs the backup and writes its result to the termination message file. `program` is the
/// pgBackRest command itself: `["pgbackrest"]` in the pod, a `runuser` wrapper in tests that
/// run as root. Returns the result, a failed backup included; `Err` only when the result
/// could not be written, which the caller must also treat as a failure.
pub fn run(args: &BackupJobArgs, program: &[String]) -> std::io::Result<JobResult> {
    let result = backup(args, program);
    let message = encode(&result);
    // The pod log shows the result too, for people reading `kubectl logs`.
    println!("{message}");
    std::fs::write(&args.termination_log, &message)?;
    Ok(result)
}

/// The default `program` of [`run`].
pub fn pgbackrest_program() -> Vec<String> {
    vec![PGBACKREST.to_string()]
}

fn backup(args: &BackupJobArgs, program: &[String]) -> JobResult {
    let failed = |error: String| JobResult::Failed { error };
    let base = match Pgbackrest::new(&args.stanza) {
        Ok(base) => base.with_config(&args.config),
        Err(error) => return failed(error.to_string()),
    };

    let started = Utc::now();
    let mut backup = base.clone().with_log_level_console("info").backup(args.backup_type);
    if let Some(full) = args.retention_full {
        // An option of the command line overrides the file; it goes before the command word.
        backup.insert(backup.len() - 1, format!("--repo1-retention-full={full}"));
    }
    match run_streaming(&with_program(program, backup)) {
        Ok((status, _)) if status.success() => {}
        Ok((status, output)) => return failed(command_error("pgbackrest backup", &ended(status), &output)),
        Err(error) => return failed(format!("could not run pgbackrest backup: {error}")),
    }
    let finished = Utc::now();

    // Console logging off: stdout must be the JSON alone; errors still reach stderr.
    let info = base.with_log_level_console("off").info_json();
    let output = match Command::new(&program[0]).args(&with_program(program, info)[1..]).output() {
        Ok(output) => output,
        Err(error) => return failed(format!("could not run pgbackrest info: {error}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let printed = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
        return failed(command_error("pgbackrest info", &ended(output.status), &printed));
    }
    let stanzas = match parse(&stdout) {
        Ok(stanzas) => stanzas,
        Err(error) => return failed(error.to_string()),
    };
    let Some(stanza) = find_stanza(&stanzas, &args.stanza) else {
        return failed(format!("pgbackrest info does not list stanza {}", args.stanza));
    };
    let requested = args.backup_type;
    match backup_of_run(stanza, requested, started, Some(finished)) {
        Some(set) => match BackupDone::from_set(set, &args.repo_path, &args.stanza) {
            Some(done) => JobResult::Completed(BackupDone { repository: RepoContents::of(stanza), ..done }),
            None => failed(format!("backup set {} has timestamps out of range", set.label)),
        },
        None => failed(format!(
            "pgbackrest backup succeeded, but pgbackrest info lists no {} backup set made between {} and {}",
            requested.as_pgbackrest(),
            started.to_rfc3339(),
            finished.to_rfc3339()
        )),
    }
}

/// `argv` of a [`Pgbackrest`] builder with its program replaced by `program`.
fn with_program(program: &[String], argv: Vec<String>) -> Vec<String> {
    program.iter().cloned().chain(argv.into_iter().skip(1)).collect()
}

/// How a process ended, for messages.
fn ended(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended".to_string(),
    }
}

/// Runs `argv` with its output passed through to ours as it comes, and returns how it ended
/// with the last [`KEPT_LINES`] lines it printed (stdout and stderr, in arrival order).
fn run_streaming(argv: &[String]) -> std::io::Result<(ExitStatus, String)> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let kept = Arc::new(Mutex::new(VecDeque::new()));
    let stdout = child.stdout.take().map(|pipe| pass_through(pipe, kept.clone(), false));
    let stderr = child.stderr.take().map(|pipe| pass_through(pipe, kept.clone(), true));
    let status = child.wait()?;
    for reader in [stdout, stderr].into_iter().flatten() {
        let _ = reader.join();
    }
    let lines = kept.lock().map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"));
    Ok((status, lines.unwrap_or_default()))
}

fn pass_through<R: std::io::Read + Send + 'static>(
    pipe: R,
    kept: Arc<Mutex<VecDeque<String>>>,
    to_stderr: bool,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let _ = if to_stderr {
                writeln!(std::io::stderr(), "{line}")
            } else {
                writeln!(std::io::stdout(), "{line}")
            };
            if let Ok(mut kept) = kept.lock() {
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        }
    })
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
