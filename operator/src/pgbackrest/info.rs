//! `pgbackrest info --output=json`, typed: the repository's own view of which backup sets
//! exist. The Backup objects and Redis records follow it, never the other way round: after a
//! backup Job, [`backup_of_run`] finds the set that the run created (label, sizes, WAL range);
//! after `expire`, [`expired_labels`] says which of our backups pgBackRest removed.
//!
//! pgBackRest keeps its JSON stable across releases; only the fields relevo uses are typed,
//! and unknown ones are ignored, so a newer pgBackRest that adds fields still parses.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::crd::BackupType;

/// Why the info output could not be used.
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    #[error("pgbackrest info output is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// One stanza of the output (the output is a JSON array of these).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StanzaInfo {
    pub name: String,
    pub status: StanzaStatus,
    /// Backup sets, oldest first, as pgBackRest lists them.
    #[serde(default)]
    pub backup: Vec<BackupSet>,
    /// WAL kept in the archive, per database history entry.
    #[serde(default)]
    pub archive: Vec<ArchiveRange>,
}

/// Health of a stanza: code 0 is "ok".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StanzaStatus {
    pub code: i32,
    pub message: String,
}

/// WAL segments kept in the archive for one database history entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ArchiveRange {
    /// `<pg version>-<history id>`, e.g. `15-1`.
    pub id: String,
    pub min: Option<String>,
    pub max: Option<String>,
}

/// One backup set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BackupSet {
    /// e.g. `20251007-120000F`, `20251007-120000F_20251008-120001I`.
    pub label: String,
    /// pgBackRest writes `full`, `diff` and `incr`, the same words as the Backup CRD.
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    pub timestamp: StartStop<i64>,
    pub info: SetSizes,
    /// WAL segments needed to make the backup consistent.
    #[serde(default)]
    pub archive: Option<StartStop<String>>,
    /// The backup this one is based on (none for a full backup).
    #[serde(default)]
    pub prior: Option<String>,
    /// Every backup whose files this one uses.
    #[serde(default)]
    pub reference: Option<Vec<String>>,
    /// Whether pgBackRest found page checksum errors while copying.
    #[serde(default)]
    pub error: Option<bool>,
}

/// A start/stop pair, as pgBackRest nests them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StartStop<T> {
    pub start: T,
    pub stop: T,
}

/// Sizes of a backup set, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SetSizes {
    /// Size of the database at backup time.
    pub size: u64,
    /// Part of the database this backup copied.
    pub delta: u64,
    pub repository: RepoSizes,
}

/// Sizes in the repository, after compression.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepoSizes {
    /// Whole backup set, including files it references in prior backups; absent for block
    /// incremental sets in recent pgBackRest releases.
    #[serde(default)]
    pub size: Option<u64>,
    /// What this backup stored itself.
    pub delta: u64,
}

impl BackupSet {
    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.timestamp.start, 0)
    }

    pub fn stopped_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.timestamp.stop, 0)
    }

    /// Whole seconds pgBackRest spent, as pgBackRest reports them.
    pub fn duration_seconds(&self) -> u64 {
        u64::try_from(self.timestamp.stop - self.timestamp.start).unwrap_or(0)
    }
}

/// Parses the whole output.
pub fn parse(json: &str) -> Result<Vec<StanzaInfo>, InfoError> {
    Ok(serde_json::from_str(json)?)
}

/// The stanza called `name`, if the output has it.
pub fn find_stanza<'a>(stanzas: &'a [StanzaInfo], name: &str) -> Option<&'a StanzaInfo> {
    stanzas.iter().find(|s| s.name == name)
}

/// The type a label stands for, from its last letter (`F`, `D`, `I`).
pub fn label_type(label: &str) -> Option<BackupType> {
    match label.chars().last()? {
        'F' => Some(BackupType::Full),
        'D' => Some(BackupType::Diff),
        'I' => Some(BackupType::Incr),
        _ => None,
    }
}

/// Where a backup set lives in the repository: `<repo path>/backup/<stanza>/<label>`
/// (the Redis record's `direccion_almacenamiento`).
pub fn backup_set_path(repo_path: &str, stanza: &str, label: &str) -> String {
    format!("{}/backup/{stanza}/{label}", repo_path.trim_end_matches('/'))
}

/// The backup set a run created: the newest set of the requested type that started at or
/// after `started` (the Job's start) and, when known, stopped by `finished` (the Job's end).
///
/// pgBackRest turns a diff or incr into a full backup when there is no full backup to base it
/// on ("no prior backup exists"), so when no set of the requested type matches, the newest
/// full set in the window is the run's. pgBackRest timestamps are whole seconds, so the window
/// is widened to whole seconds on both sides.
pub fn backup_of_run(
    stanza: &StanzaInfo,
    requested: BackupType,
    started: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
) -> Option<&BackupSet> {
    let from = started.timestamp();
    let until = finished.map(|f| f.timestamp() + i64::from(f.timestamp_subsec_nanos() > 0));
    let in_window =
        |set: &&BackupSet| set.timestamp.start >= from && until.is_none_or(|u| set.timestamp.stop <= u);
    let newest_of = |wanted: BackupType| {
        stanza.backup.iter().filter(in_window).filter(|set| set.backup_type == wanted).max_by(|a, b| {
            (a.timestamp.start, a.timestamp.stop, &a.label).cmp(&(
                b.timestamp.start,
                b.timestamp.stop,
                &b.label,
            ))
        })
    };
    newest_of(requested)
        .or_else(|| if requested == BackupType::Full { None } else { newest_of(BackupType::Full) })
}

/// Labels among `known` (those of our Backup objects or Redis records) that pgBackRest no
/// longer lists: retention expired them. Each label once, in the order given.
pub fn expired_labels<'a>(known: impl IntoIterator<Item = &'a str>, stanza: &StanzaInfo) -> Vec<String> {
    let live: BTreeSet<&str> = stanza.backup.iter().map(|set| set.label.as_str()).collect();
    let mut seen = BTreeSet::new();
    known
        .into_iter()
        .filter(|label| !live.contains(label) && seen.insert(*label))
        .map(str::to_string)
        .collect()
}

/// Every label pgBackRest still lists.
pub fn live_labels(stanza: &StanzaInfo) -> BTreeSet<String> {
    stanza.backup.iter().map(|set| set.label.clone()).collect()
}

#[cfg(test)]
#[path = "info_tests.rs"]
mod tests;
