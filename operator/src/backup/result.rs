//! What a backup Job hands back to the operator: one compact JSON document in the container's
//! termination message (`/dev/termination-log`, which Kubernetes keeps in the pod status and
//! truncates at 4096 bytes). The operator needs no access to the repository or the Job's logs
//! to fill the Backup's status and write its Redis record.
//!
//! Pure: building the result from `pgbackrest info`, encoding it within the size limit, and
//! decoding it again. [`super::run`] does the I/O in the pod.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crd::BackupType;
use crate::pgbackrest::info::{BackupSet, StanzaInfo, backup_set_path};

/// Where Kubernetes reads a container's termination message from by default.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// Kubernetes truncates a container's termination message to this many bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Lines of pgBackRest's output kept in a failure's error.
pub const ERROR_TAIL_LINES: usize = 20;

/// The outcome of one `relevo backup-job` run.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum JobResult {
    /// pgBackRest made this backup set.
    Completed(BackupDone),
    /// pgBackRest (or finding its backup set) failed.
    Failed {
        /// The command that failed and the last lines it printed.
        error: String,
    },
}

/// A backup set, as the Backup status and the Redis record need it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackupDone {
    /// pgBackRest label, e.g. `20251007-120000F`.
    pub label: String,
    /// The type pgBackRest made: a diff or incr without a prior full backup becomes a full.
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    pub start: DateTime<Utc>,
    pub stop: DateTime<Utc>,
    /// Size of the database.
    pub size_bytes: u64,
    /// What this backup stored in the repository.
    pub repo_size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_stop: Option<String>,
    /// Path of the backup set in the repository.
    pub path: String,
    /// What the repository holds once pgBackRest has applied retention at the end of this
    /// backup: how the operator learns which backups expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepoContents>,
}

/// The backup sets pgBackRest lists after a backup (and the expire that ends it).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RepoContents {
    /// Label of the oldest set left: every older set is gone, since retention removes the
    /// oldest full backups together with their dependants.
    pub oldest: String,
    /// Every label left, oldest first; `None` when they do not fit in the termination
    /// message (hundreds of sets), and then only `oldest` is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
}

impl RepoContents {
    /// The contents of a stanza as `pgbackrest info` lists it; `None` for an empty one.
    pub fn of(stanza: &StanzaInfo) -> Option<Self> {
        let mut labels: Vec<String> = stanza.backup.iter().map(|set| set.label.clone()).collect();
        labels.sort();
        Some(Self { oldest: labels.first()?.clone(), labels: Some(labels) })
    }
}

/// Why a termination message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the Job left no termination message")]
    Empty,
    #[error("the Job's termination message is not a backup result: {0}")]
    Json(#[from] serde_json::Error),
}

impl BackupDone {
    /// The result of a backup set listed by `pgbackrest info`; `None` when pgBackRest's
    /// timestamps are out of range.
    pub fn from_set(set: &BackupSet, repo_path: &str, stanza: &str) -> Option<Self> {
        Some(Self {
            label: set.label.clone(),
            backup_type: set.backup_type,
            start: set.started_at()?,
            stop: set.stopped_at()?,
            size_bytes: set.info.size,
            repo_size_bytes: set.info.repository.delta,
            wal_start: set.archive.as_ref().map(|a| a.start.clone()),
            wal_stop: set.archive.as_ref().map(|a| a.stop.clone()),
            path: backup_set_path(repo_path, stanza, &set.label),
            repository: None,
        })
    }
}

/// The JSON of a result, at most [`MAX_MESSAGE_BYTES`] long: a failure's error loses its
/// oldest text first, since pgBackRest prints the reason last; a success too long for its
/// list of the repository's labels keeps only the oldest one.
pub fn encode(result: &JobResult) -> String {
    let json = |r: &JobResult| serde_json::to_string(r).expect("a JobResult always serialises");
    let text = json(result);
    if text.len() <= MAX_MESSAGE_BYTES {
        return text;
    }
    let error = match result {
        JobResult::Failed { error } => error,
        // Too many sets to list: the oldest one still tells which backups expired.
        JobResult::Completed(done) => {
            let mut done = done.clone();
            if let Some(repository) = &mut done.repository {
                repository.labels = None;
            }
            return json(&JobResult::Completed(done));
        }
    };
    // JSON escaping makes the text longer than the error by an amount that depends on what
    // is cut, so search for the longest tail that fits.
    let shortened =
        |keep: usize| json(&JobResult::Failed { error: format!("…{}", tail_bytes(error, keep)) });
    let (mut fits, mut too_long) = (0, error.len());
    while too_long - fits > 1 {
        let middle = fits + (too_long - fits) / 2;
        if shortened(middle).len() <= MAX_MESSAGE_BYTES {
            fits = middle;
        } else {
            too_long = middle;
        }
    }
    shortened(fits)
}

/// The last `n` bytes of `text`, or a little fewer to start on a character boundary.
fn tail_bytes(text: &str, n: usize) -> &str {
    let mut start = text.len().saturating_sub(n);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Reads a termination message back.
pub fn decode(message: &str) -> Result<JobResult, DecodeError> {
    let message = message.trim();
    if message.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(serde_json::from_str(message)?)
}

/// The error of a failed command: what ran, how it ended, and the last lines it printed.
pub fn command_error(what: &str, ended: &str, output: &str) -> String {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(ERROR_TAIL_LINES)..];
    if tail.is_empty() {
        format!("{what} {ended} without output")
    } else {
        format!("{what} {ended}:\n{}", tail.join("\n"))
    }
}

/// Bytes for people, in binary units with one decimal: `512B`, `1.5KiB`, `24.1MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Rounding to one decimal must not print "1024.0KiB".
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

#[cfg(test)]
#[path = "result_tests.rs"]
mod tests;
