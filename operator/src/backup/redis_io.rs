//! Executes the plans of [`super::redis_record`] against Redis: a few reads, then one
//! MULTI/EXEC transaction, so a reader never sees a record without its index entry.
//!
//! The reads and the transaction are not one atomic step. That is safe because relevo is the
//! only writer of a cluster's records and writes them from one controller at a time (one
//! backup at a time per cluster); a concurrent foreign writer could at worst make two records
//! of the same second pick different `_N` suffixes, never overwrite one another's record,
//! because a key is only reused when its label matches.
//!
//! Every function is idempotent, so the controller simply retries while Redis is down: the
//! Backup object stays the source of truth until the record is written.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use redis::RedisResult;
use redis::aio::ConnectionLike;

use super::redis_record::{
    BackupRecord, IndexedRecord, LatestPointer, RedisCommand, TIPOS, delete_commands, index_key,
    is_candidate, latest_key, record_key, resolve_key, write_commands,
};

/// How long connecting, and then each command, may take: a Redis that does not answer must
/// not hold a reconcile (or `relevo backups`) for long.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Connects (authenticating with the password in `info`, if any) and checks with PING.
pub async fn connect(info: redis::ConnectionInfo) -> RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT));
    let mut conn = redis::Client::open(info)?.get_multiplexed_async_connection_with_config(&config).await?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    Ok(conn)
}

/// The commands as one MULTI/EXEC transaction whose replies are discarded.
pub fn transaction(commands: &[RedisCommand]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for command in commands {
        match command {
            RedisCommand::Del { key } => pipe.cmd("DEL").arg(key),
            RedisCommand::HSet { key, fields } => {
                let pipe = pipe.cmd("HSET").arg(key);
                for (field, value) in fields {
                    pipe.arg(*field).arg(value);
                }
                pipe
            }
            RedisCommand::ZAdd { key, score, member } => pipe.cmd("ZADD").arg(key).arg(*score).arg(member),
            RedisCommand::ZRem { key, member } => pipe.cmd("ZREM").arg(key).arg(member),
            RedisCommand::Set { key, value } => pipe.cmd("SET").arg(key).arg(value),
        }
        .ignore();
    }
    pipe
}

/// Writes (or rewrites) the record of a backup and returns its key. `tz` is the time zone of
/// the key, `fecha` and `hora`.
pub async fn write_record<C: ConnectionLike + Send>(
    conn: &mut C,
    record: &BackupRecord,
    tz: Tz,
) -> RedisResult<String> {
    let base = record_key(record.start, tz);
    let existing = candidate_labels(conn, &base).await?;
    let key = resolve_key(&base, &record.label, &existing);

    let index = index_key(&record.namespace, &record.cluster);
    let pointer =
        latest_key(&record.namespace, &record.cluster, super::redis_record::tipo_backup(record.backup_type));
    let current: Option<String> = redis::cmd("GET").arg(&pointer).query_async(conn).await?;
    let latest = match current {
        Some(pointed) => {
            let score: Option<f64> = redis::cmd("ZSCORE").arg(&index).arg(&pointed).query_async(conn).await?;
            Some(LatestPointer { key: pointed, score: score.map(|s| s as i64) })
        }
        None => None,
    };

    transaction(&write_commands(record, &key, tz, latest.as_ref())).exec_async(conn).await?;
    Ok(key)
}

/// Labels of the records that share a start second with `base` (`base`, `base_2`, …); a
/// record without a label maps to "".
async fn candidate_labels<C: ConnectionLike + Send>(
    conn: &mut C,
    base: &str,
) -> RedisResult<BTreeMap<String, String>> {
    // The base is `backup:` plus digits, '-' and '_': no glob metacharacters to escape. SCAN
    // walks the keyspace, which in a backup Redis is a few hundred keys.
    let pattern = format!("{base}*");
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        keys.extend(batch.into_iter().filter(|k| is_candidate(base, k)));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut labels = BTreeMap::new();
    for key in keys {
        // Someone else's key of another type is taken too, and HGET on it would fail.
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(conn).await?;
        let label: Option<String> = match kind.as_str() {
            "hash" => redis::cmd("HGET").arg(&key).arg("label").query_async(conn).await?,
            _ => None,
        };
        labels.insert(key, label.unwrap_or_default());
    }
    Ok(labels)
}

/// Deletes a record, its index entry, and repoints any latest pointer that named it.
pub async fn delete_record<C: ConnectionLike + Send>(
    conn: &mut C,
    namespace: &str,
    cluster: &str,
    key: &str,
) -> RedisResult<()> {
    let mut pointers: Vec<(&str, Option<String>)> = Vec::new();
    for tipo in TIPOS {
        let current: Option<String> =
            redis::cmd("GET").arg(latest_key(namespace, cluster, tipo)).query_async(conn).await?;
        pointers.push((tipo, current));
    }
    let mut newest_first = Vec::new();
    if pointers.iter().any(|(_, current)| current.as_deref() == Some(key)) {
        let keys: Vec<String> = redis::cmd("ZREVRANGE")
            .arg(index_key(namespace, cluster))
            .arg(0)
            .arg(-1)
            .query_async(conn)
            .await?;
        for member in keys.into_iter().filter(|k| k != key) {
            let tipo: Option<String> =
                redis::cmd("HGET").arg(&member).arg("tipo_backup").query_async(conn).await?;
            if let Some(tipo) = tipo {
                newest_first.push(IndexedRecord { key: member, tipo });
            }
        }
    }
    transaction(&delete_commands(namespace, cluster, key, &pointers, &newest_first)).exec_async(conn).await
}

/// A cluster's records in time order, as (key, fields); what `relevo backups` prints. Index
/// entries whose hash is gone are skipped.
pub async fn list_records<C: ConnectionLike + Send>(
    conn: &mut C,
    namespace: &str,
    cluster: &str,
) -> RedisResult<Vec<(String, BTreeMap<String, String>)>> {
    let keys: Vec<String> =
        redis::cmd("ZRANGE").arg(index_key(namespace, cluster)).arg(0).arg(-1).query_async(conn).await?;
    let mut records = Vec::with_capacity(keys.len());
    for key in keys {
        let fields: BTreeMap<String, String> = redis::cmd("HGETALL").arg(&key).query_async(conn).await?;
        if !fields.is_empty() {
            records.push((key, fields));
        }
    }
    Ok(records)
}

/// Deletes the cluster's records `keys`, each with its index entry and latest pointers.
pub async fn delete_records<C: ConnectionLike + Send>(
    conn: &mut C,
    namespace: &str,
    cluster: &str,
    keys: &[String],
) -> RedisResult<()> {
    for key in keys {
        delete_record(conn, namespace, cluster, key).await?;
    }
    Ok(())
}

/// Deletes the cluster's records whose backup set retention removed, as `view` tells
/// ([`super::retention::records_to_delete`]), each with its index entry and latest pointers,
/// and returns their keys.
pub async fn delete_expired<C: ConnectionLike + Send>(
    conn: &mut C,
    namespace: &str,
    cluster: &str,
    view: &super::retention::RepoView,
) -> RedisResult<Vec<String>> {
    let records = list_records(conn, namespace, cluster).await?;
    let labelled =
        records.iter().map(|(key, fields)| (key.as_str(), fields.get("label").map_or("", String::as_str)));
    let doomed = super::retention::records_to_delete(view, labelled);
    delete_records(conn, namespace, cluster, &doomed).await?;
    Ok(doomed)
}

#[cfg(test)]
#[path = "redis_io_tests.rs"]
mod tests;
