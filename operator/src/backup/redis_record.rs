//! The Redis record of a backup, exactly as the users' `ver_backups.sh` and `listar_backups.sh`
//! read it, plus the index and pointers relevo adds. Pure: it builds keys, fields and the
//! list of Redis commands as data; [`super::redis_io`] executes them.
//!
//! Layout (namespace and cluster are the PgCluster's):
//!
//! | key | type | content |
//! |---|---|---|
//! | `backup:YYYY-MM-DD_HH-MM-SS` | hash | one backup; the time is pgBackRest's start time |
//! | `backup:YYYY-MM-DD_HH-MM-SS_N` (N ≥ 2) | hash | another backup that started in the same second |
//! | `backups:<namespace>/<cluster>` | sorted set | member = record key, score = start (Unix seconds) |
//! | `backups:latest:<namespace>/<cluster>:<tipo>` | string | key of the newest record of that `tipo_backup` |
//!
//! The index and pointers start with `backups:`, not `backup:`, on purpose: the users' scripts
//! list records with `KEYS backup:*` and `HGETALL` each one, which a string or sorted set under
//! that prefix would break.
//!
//! A record key is never reused for another backup: [`resolve_key`] keeps the key when the
//! record under it has the same pgBackRest label (an idempotent rewrite) and otherwise
//! appends `_2`, `_3`, … The time in the key, `fecha` and `hora` are in the time zone passed
//! in (the schedule's), UTC by default.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::crd::BackupType;
use crate::pgbackrest::info::{BackupSet, backup_set_path};

/// Prefix of every record key; what the users' scripts match.
pub const RECORD_PREFIX: &str = "backup:";

/// One backup, as recorded in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    pub namespace: String,
    pub cluster: String,
    pub stanza: String,
    /// pgBackRest label, e.g. `20251007-120000F`; what makes a record unique.
    pub label: String,
    pub backup_type: BackupType,
    /// When pgBackRest started the backup; gives the key, `fecha` and `hora`.
    pub start: DateTime<Utc>,
    /// Path of the backup set in the repository (`direccion_almacenamiento`).
    pub storage_path: String,
    /// Instance that was primary (`maestro_usado`).
    pub primary: String,
    pub size_bytes: u64,
    pub repo_size_bytes: u64,
    pub duration_seconds: u64,
    /// Phase of the Backup object, e.g. `Completed`.
    pub status: String,
    /// Day of the cycle; empty in Redis for an on-demand backup outside the cycle.
    pub cycle_day: Option<u32>,
}

/// What a backup set alone does not say: where it belongs and what the operator saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordContext {
    pub namespace: String,
    pub cluster: String,
    pub stanza: String,
    /// `repo1-path` on the repo host.
    pub repo_path: String,
    pub primary: String,
    pub status: String,
    pub cycle_day: Option<u32>,
}

/// The record of a backup set as `pgbackrest info` lists it. `size_bytes` is the database
/// size; `repo_size_bytes` is what this backup stored in the repository (pgBackRest's
/// "backup size", `info.repository.delta`), so that adding the records up gives the space the
/// repository uses. `None` when pgBackRest's timestamp is out of range.
pub fn record_from_set(context: &RecordContext, set: &BackupSet) -> Option<BackupRecord> {
    Some(BackupRecord {
        namespace: context.namespace.clone(),
        cluster: context.cluster.clone(),
        stanza: context.stanza.clone(),
        label: set.label.clone(),
        backup_type: set.backup_type,
        start: set.started_at()?,
        storage_path: backup_set_path(&context.repo_path, &context.stanza, &set.label),
        primary: context.primary.clone(),
        size_bytes: set.info.size,
        repo_size_bytes: set.info.repository.delta,
        duration_seconds: set.duration_seconds(),
        status: context.status.clone(),
        cycle_day: context.cycle_day,
    })
}

/// `tipo_backup` value of a type: the users' Spanish names.
pub fn tipo_backup(backup_type: BackupType) -> &'static str {
    match backup_type {
        BackupType::Full => "completo",
        BackupType::Incr => "incremental",
        BackupType::Diff => "diferencial",
    }
}

/// Every `tipo_backup` value, in a stable order.
pub const TIPOS: [&str; 3] = ["completo", "diferencial", "incremental"];

/// `backup:YYYY-MM-DD_HH-MM-SS` of a start time, in `tz`.
pub fn record_key(start: DateTime<Utc>, tz: Tz) -> String {
    format!("{RECORD_PREFIX}{}", start.with_timezone(&tz).format("%Y-%m-%d_%H-%M-%S"))
}

/// Sorted set listing a cluster's records in time order.
pub fn index_key(namespace: &str, cluster: &str) -> String {
    format!("backups:{namespace}/{cluster}")
}

/// String key holding the key of the newest record of one `tipo_backup`.
pub fn latest_key(namespace: &str, cluster: &str, tipo: &str) -> String {
    format!("backups:latest:{namespace}/{cluster}:{tipo}")
}

/// The hash fields, in a fixed order: the seven the users' tooling reads, then relevo's.
pub fn fields(record: &BackupRecord, tz: Tz) -> Vec<(&'static str, String)> {
    let local = record.start.with_timezone(&tz);
    vec![
        ("fecha", local.format("%Y-%m-%d").to_string()),
        ("hora", local.format("%H:%M:%S").to_string()),
        ("tipo_backup", tipo_backup(record.backup_type).to_string()),
        ("direccion_almacenamiento", record.storage_path.clone()),
        ("maestro_usado", record.primary.clone()),
        ("metodo", "pgBackRest".to_string()),
        ("stanza", record.stanza.clone()),
        ("cluster", record.cluster.clone()),
        ("namespace", record.namespace.clone()),
        ("label", record.label.clone()),
        ("size_bytes", record.size_bytes.to_string()),
        ("repo_size_bytes", record.repo_size_bytes.to_string()),
        ("duration_seconds", record.duration_seconds.to_string()),
        ("status", record.status.clone()),
        ("cycle_day", record.cycle_day.map(|d| d.to_string()).unwrap_or_default()),
    ]
}

/// Whether `key` is `base` or `base_N` with N ≥ 2: a candidate for the same start second.
pub fn is_candidate(base: &str, key: &str) -> bool {
    match key.strip_prefix(base) {
        Some("") => true,
        Some(rest) => rest.strip_prefix('_').is_some_and(|n| {
            !n.starts_with('0')
                && n.bytes().all(|b| b.is_ascii_digit())
                && n.parse::<u32>().is_ok_and(|n| n >= 2)
        }),
        None => false,
    }
}

/// The key to write a record with label `label` under, given the records that already exist
/// among `base`, `base_2`, `base_3`, … (`existing`: key → label, empty for a record without
/// one, such as those the old scripts wrote):
/// - a record with the same label already exists: its key (rewriting it is idempotent);
/// - otherwise the first of `base`, `base_2`, `base_3`, … that is free.
///
/// An empty label never matches, so a label-less record is never taken over.
pub fn resolve_key(base: &str, label: &str, existing: &BTreeMap<String, String>) -> String {
    if let Some((key, _)) =
        existing.iter().find(|(key, l)| !label.is_empty() && is_candidate(base, key) && l.as_str() == label)
    {
        return key.clone();
    }
    (1..)
        .map(|n| if n == 1 { base.to_string() } else { format!("{base}_{n}") })
        .find(|key| !existing.contains_key(key))
        .expect("an unbounded range always has a free key")
}

/// A Redis command, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisCommand {
    Del { key: String },
    HSet { key: String, fields: Vec<(&'static str, String)> },
    ZAdd { key: String, score: i64, member: String },
    ZRem { key: String, member: String },
    Set { key: String, value: String },
}

/// Current latest-pointer of the record's type: the key it names and that key's score in the
/// index (`None` when the pointed record is no longer indexed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestPointer {
    pub key: String,
    pub score: Option<i64>,
}

/// Commands that write `record` under `key` (from [`resolve_key`]): replace the hash, index it
/// and move the latest pointer of its type unless a newer record of that type holds it. Run
/// atomically (MULTI/EXEC), the result is the same however often it runs.
pub fn write_commands(
    record: &BackupRecord,
    key: &str,
    tz: Tz,
    latest: Option<&LatestPointer>,
) -> Vec<RedisCommand> {
    let score = record.start.timestamp();
    let mut commands = vec![
        // Deleting first makes the hash exactly these fields, even over an older layout.
        RedisCommand::Del { key: key.to_string() },
        RedisCommand::HSet { key: key.to_string(), fields: fields(record, tz) },
        RedisCommand::ZAdd {
            key: index_key(&record.namespace, &record.cluster),
            score,
            member: key.to_string(),
        },
    ];
    let newer_exists = latest.is_some_and(|p| p.key != key && p.score.is_some_and(|s| s > score));
    if !newer_exists {
        commands.push(RedisCommand::Set {
            key: latest_key(&record.namespace, &record.cluster, tipo_backup(record.backup_type)),
            value: key.to_string(),
        });
    }
    commands
}

/// A record of the cluster's index, newest first when passed to [`delete_commands`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRecord {
    pub key: String,
    pub tipo: String,
}

/// Commands that delete the record `key`: the hash, its index entry, and every latest pointer
/// that named it, which moves to the newest remaining record of that type or is deleted.
/// `pointers` holds the current value of each type's pointer; `newest_first` the index.
pub fn delete_commands(
    namespace: &str,
    cluster: &str,
    key: &str,
    pointers: &[(&str, Option<String>)],
    newest_first: &[IndexedRecord],
) -> Vec<RedisCommand> {
    let mut commands = vec![
        RedisCommand::Del { key: key.to_string() },
        RedisCommand::ZRem { key: index_key(namespace, cluster), member: key.to_string() },
    ];
    for (tipo, current) in pointers {
        if current.as_deref() != Some(key) {
            continue;
        }
        let pointer = latest_key(namespace, cluster, tipo);
        match newest_first.iter().find(|r| r.key != key && r.tipo == *tipo) {
            Some(next) => commands.push(RedisCommand::Set { key: pointer, value: next.key.clone() }),
            None => commands.push(RedisCommand::Del { key: pointer }),
        }
    }
    commands
}

/// Records to delete because their backup no longer exists (what `limpiar_backups.sh` did):
/// those whose label is not among `live_labels`. A record without a label was not written by
/// relevo and is left alone.
pub fn orphans<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a str)>,
    live_labels: &BTreeSet<String>,
) -> Vec<String> {
    records
        .into_iter()
        .filter(|(_, label)| !label.is_empty() && !live_labels.contains(*label))
        .map(|(key, _)| key.to_string())
        .collect()
}

#[cfg(test)]
#[path = "redis_record_tests.rs"]
mod tests;
