//! Running PostgreSQL's tools: never through a shell, always with a deadline, with their
//! output kept for the error message.
//!
//! Every program runs in its own process group, so a deadline kills it together with whatever
//! it started (pg_basebackup's WAL streamer, a `runuser` wrapper's child). `LC_ALL=C` makes
//! pg_controldata print the labels `controldata.rs` parses. Secrets never reach an argument
//! vector: passwords come from the password file named by `PGPASSFILE`.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::protocol::quote::redact_conninfo;

/// Why a rebuild step failed. Messages carry the tool's last output lines, with passwords in
/// connection strings masked.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {output}")]
    Failed { program: String, status: String, output: String },
    #[error("{program} did not finish within {after:?}: {output}")]
    TimedOut { program: String, after: std::time::Duration, output: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("PostgreSQL is running on this data directory (pid {pid}); stop it before a rebuild")]
    PostgresRunning { pid: String },
    #[error("{0}")]
    Unexpected(String),
}

/// How to run a program: an optional wrapper (e.g. `runuser -u postgres --` when the caller is
/// root; empty in the pod, which already runs as the postgres user), extra environment, and a
/// deadline.
#[derive(Clone, Debug, Default)]
pub struct Runner {
    pub wrapper: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub timeout: Duration,
}

/// What a finished program printed.
#[derive(Clone, Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// `program` run through `wrapper` (e.g. `runuser -u postgres --`), or directly when it is
/// empty.
pub fn wrapped(wrapper: &[OsString], program: &Path) -> Command {
    match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl Runner {
    /// Runs `program args...` with stdin closed, and fails unless it exits 0 in time.
    pub fn run(&self, program: &Path, args: &[OsString]) -> Result<Output, ToolError> {
        let shown = describe(program, args);
        let mut command = wrapped(&self.wrapper, program);
        command
            .args(args)
            .env("LC_ALL", "C")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child =
            command.spawn().map_err(|source| ToolError::Spawn { program: shown.clone(), source })?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let deadline = Instant::now() + self.timeout;
        let status: Option<ExitStatus> = loop {
            match child.try_wait().map_err(|source| ToolError::Spawn { program: shown.clone(), source })? {
                Some(status) => break Some(status),
                None if Instant::now() >= deadline => {
                    kill_group(child.id());
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                None => thread::sleep(Duration::from_millis(20)),
            }
        };
        let output = Output { stdout: join(stdout), stderr: join(stderr) };
        match status {
            None => Err(ToolError::TimedOut { program: shown, after: self.timeout, output: tail(&output) }),
            Some(status) if !status.success() => {
                Err(ToolError::Failed { program: shown, status: status.to_string(), output: tail(&output) })
            }
            Some(_) => Ok(output),
        }
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<thread::JoinHandle<String>> {
    pipe.map(|mut pipe| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    })
}

fn join(handle: Option<thread::JoinHandle<String>>) -> String {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

fn kill_group(pid: u32) {
    // std cannot signal a process group; kill(1) can, without a shell.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The command line for messages, with any `password=` in a conninfo argument masked.
pub fn describe(program: &Path, args: &[OsString]) -> String {
    let mut shown = program.display().to_string();
    for arg in args {
        shown.push(' ');
        shown.push_str(&redact_conninfo(&arg.to_string_lossy()));
    }
    shown
}

/// The last lines of both streams, enough to see why a tool failed.
fn tail(output: &Output) -> String {
    let text = format!("{}{}", output.stdout, output.stderr);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(15);
    redact_conninfo(&lines[start..].join("\n"))
}

/// `OsString` arguments from anything path- or string-like.
pub fn args<I, S>(items: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    items.into_iter().map(|s| s.as_ref().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(timeout_ms: u64) -> Runner {
        Runner {
            wrapper: vec![],
            env: vec![("RELEVO_TEST".into(), "42".into())],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn runs_without_a_shell_and_passes_env() {
        let out = runner(5000).run(Path::new("/usr/bin/env"), &[]).unwrap();
        assert!(out.stdout.contains("RELEVO_TEST=42"));
        assert!(out.stdout.contains("LC_ALL=C"));
        // a shell metacharacter is just an argument:
        let out = runner(5000).run(Path::new("/bin/echo"), &args(["a;", "$(id)"])).unwrap();
        assert_eq!(out.stdout, "a; $(id)\n");
    }

    #[test]
    fn failures_and_timeouts_are_reported_with_output() {
        let err = runner(5000).run(Path::new("/bin/ls"), &args(["/nonexistent-relevo"])).unwrap_err();
        assert!(
            matches!(&err, ToolError::Failed { output, .. } if output.contains("nonexistent-relevo")),
            "{err}"
        );
        let started = Instant::now();
        let err = runner(200).run(Path::new("/bin/sleep"), &args(["10"])).unwrap_err();
        assert!(matches!(err, ToolError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "killed at the deadline");
        let err = runner(200).run(Path::new("/nonexistent/bin"), &[]).unwrap_err();
        assert!(matches!(err, ToolError::Spawn { .. }), "{err}");
    }

    #[test]
    fn passwords_are_masked_in_descriptions() {
        let shown = describe(Path::new("pg_rewind"), &args(["--source-server=host=a password=hunter2"]));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
