//! Integration tests against a real `redis-server` process on a free loopback port.
//! A missing `redis-server` fails these tests: it must never pass silently.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use redis::aio::MultiplexedConnection;

use super::*;
use crate::backup::redis_record::fields;
use crate::backup::redis_target::Credentials;
use crate::crd::BackupType;
use crate::pgcluster::builders::redis::{REDIS_USER, acl_conf};

/// A throw-away redis-server, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    /// How relevo authenticates to it.
    credentials: Credentials,
}

const PASSWORD: &str = "s3cret";

impl RedisServer {
    /// Configured as the managed Redis is: its users from [`acl_conf`], `default` off, and
    /// relevo's user limited to the record commands and keys. Every test on it shows that
    /// those limits are enough for what it does.
    fn start() -> Self {
        let conf = std::env::temp_dir().join(format!(
            "relevo-redis-acl-{}-{}.conf",
            std::process::id(),
            crate::test_pg::free_port()
        ));
        std::fs::write(&conf, acl_conf(PASSWORD)).unwrap();
        let credentials = Credentials { username: Some(REDIS_USER.into()), password: Some(PASSWORD.into()) };
        let mut server = Self::spawn(Some(&conf), &[]);
        server.credentials = credentials;
        server
    }

    /// A redis-server with `default` open, plus `extra` settings.
    fn start_with(extra: &[&str]) -> Self {
        Self::spawn(None, extra)
    }

    fn spawn(conf: Option<&std::path::Path>, extra: &[&str]) -> Self {
        let port = crate::test_pg::free_port();
        let child = Command::new("redis-server")
            .args(conf)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install it (Debian: apt-get install redis-server)")
            });
        Self { child, port, credentials: Credentials::default() }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn info(&self, credentials: &Credentials) -> redis::ConnectionInfo {
        crate::backup::redis_target::connection_info(&self.url(), credentials).unwrap()
    }

    async fn connect(&self) -> MultiplexedConnection {
        let client = redis::Client::open(self.info(&self.credentials)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let pong: RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
                if pong.as_deref() == Ok("PONG") {
                    return conn;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 10, day, hour, 0, 0).unwrap()
}

fn record(label: &str, backup_type: BackupType, start: DateTime<Utc>) -> BackupRecord {
    BackupRecord {
        namespace: "prod".into(),
        cluster: "pg".into(),
        stanza: "db".into(),
        label: label.into(),
        backup_type,
        start,
        storage_path: format!("/pgbackrest/repo/backup/db/{label}"),
        primary: "pg-1".into(),
        size_bytes: 100,
        repo_size_bytes: 10,
        duration_seconds: 3,
        status: "Completed".into(),
        cycle_day: Some(1),
    }
}

async fn hgetall(conn: &mut MultiplexedConnection, key: &str) -> BTreeMap<String, String> {
    redis::cmd("HGETALL").arg(key).query_async(conn).await.unwrap()
}

async fn get(conn: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

async fn index(conn: &mut MultiplexedConnection) -> Vec<(String, i64)> {
    redis::cmd("ZRANGE")
        .arg("backups:prod/pg")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(conn)
        .await
        .unwrap()
}

/// Every key (relevo's user may not run DBSIZE; SCAN lists every name).
async fn dbsize(conn: &mut MultiplexedConnection) -> i64 {
    let mut cursor = 0u64;
    let mut count = 0;
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(100).query_async(conn).await.unwrap();
        count += batch.len() as i64;
        if next == 0 {
            return count;
        }
        cursor = next;
    }
}

fn expected_fields(r: &BackupRecord) -> BTreeMap<String, String> {
    fields(r, Tz::UTC).into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[tokio::test]
async fn write_record_creates_hash_index_and_pointer() {
    let server = RedisServer::start();
    let mut conn = server.connect().await;
    let full = record("20251007-120000F", BackupType::Full, at(7, 12));
    let key = write_record(&mut conn, &full, Tz::UTC).await.unwrap();
    assert_eq!(key, "backup:2025-10-07_12-00-00");
    let hash = hgetall(&mut conn, &key).await;
    assert_eq!(hash, expected_fields(&full));
    assert_eq!(hash["tipo_backup"], "completo");
    assert_eq!(hash["metodo"], "pgBackRest");
    assert_eq!(index(&mut conn).await, vec![(key.clone(), 1_759_838_400)]);
    assert_eq!(get(&mut conn, "backups:latest:prod/pg:completo").await, Some(key));
    assert_eq!(dbsize(&mut conn).await, 3);
}

#[tokio::test]
async fn write_record_is_idempotent() {
    let server = RedisServer::start();
    let mut conn = server.connect().await;
    let full = record("20251007-120000F", BackupType::Full, at(7, 12));
    let first = write_record(&mut conn, &full, Tz::UTC).await.unwrap();
    let mut again = full.clone();
    again.status = "Expired".into();
    let second = write_record(&mut conn, &again, Tz::UTC).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(hgetall(&mut conn, &first).await["status"], "Expired");
    assert_eq!(index(&mut conn).await.len(), 1);
    assert_eq!(dbsize(&mut conn).await, 3);
}

#[tokio::test]
async fn write_record_never_overwrites_another_backup() {
    let server = RedisServer::start();
    let mut conn = server.connect().await;
    // A record the users' old scripts wrote, in the same second, without a label.
    let legacy = "backup:2025-10-07_12-00-00";
    let _: () = redis::cmd("HSET")
        .arg(legacy)
        .arg("tipo_backup")
        .arg("completo")
        .query_async(&mut conn)
        .await
        .unwrap();
    let a = record("20251007-120000F", BackupType::Full, at(7, 12));
    let b = record("20251007-120000F_20251007-120000I", BackupType::Incr, at(7, 12));
    let key_a = write_record(&mut conn, &a, Tz::UTC).await.unwrap();
    let key_b = write_record(&mut conn, &b, Tz::UTC).await.unwrap();
    assert_eq!(key_a, "backup:2025-10-07_12-00-00_2");
    assert_eq!(key_b, "backup:2025-10-07_12-00-00_3");
    assert_eq!(hgetall(&mut conn, legacy).await.len(), 1, "the legacy record is untouched");
    assert_eq!(hgetall(&mut conn, &key_a).await["label"], a.label);
    assert_eq!(hgetall(&mut conn, &key_b).await["label"], b.label);
    // Rewriting b finds its own key again.
    assert_eq!(write_record(&mut conn, &b, Tz::UTC).await.unwrap(), key_b);
}

#[tokio::test]
async fn a_foreign_key_of_another_type_is_skipped_not_fatal() {
    let server = RedisServer::start();
    let mut conn = server.connect().await;
    let _: () =
        redis::cmd("SET").arg("backup:2025-10-07_12-00-00").arg("x").query_async(&mut conn).await.unwrap();
    let full = record("20251007-120000F", BackupType::Full, at(7, 12));
    assert_eq!(write_record(&mut conn, &full, Tz::UTC).await.unwrap(), "backup:2025-10-07_12-00-00_2");
    let kept: String =
        redis::cmd("GET").arg("backup:2025-10-07_12-00-00").query_async(&mut conn).await.unwrap();
    assert_eq!(kept, "x");
}

#[tokio::test]
async fn an_older_record_does_not_take_the_latest_pointer() {
    let server = RedisServer::start();
    let mut conn = server.connect().await;
    let newer = record("20251008-120000F", BackupType::Full, at(8, 12));
    let older = record("20251001-120000F", BackupType::Full, at(1, 12));
    let newer_key = write_record(&mut conn, &newer, Tz::UTC).await.unwrap();
    write_record(&mut conn, &older, Tz::UTC).await.unwrap();
    assert_eq!(get(&mut conn, "backups:latest:prod/pg:completo").await, Some(newer_key));
    let keys: Vec<String> = index(&mut conn).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec!["backup:2025-10-01_12-00-00", "backup:2025-10-08_12-00-00"]);
}

#[tokio::test]
async fn delete_record_repoints_latest() {
    let server = RedisServer::start();
    let mut conn = server.connect().await;
    let old_full = record("20251001-120000F", BackupType::Full, at(1, 12));
    let new_full = record("20251008-120000F", BackupType::Full, at(8, 12));
    let incr = record("20251008-120000F_20251009-120000I", BackupType::Incr, at(9, 12));
    let old_key = write_record(&mut conn, &old_full, Tz::UTC).await.unwrap();
    let new_key = write_record(&mut conn, &new_full, Tz::UTC).await.unwrap();
    let incr_key = write_record(&mut conn, &incr, Tz::UTC).await.unwrap();

    delete_record(&mut conn, "prod", "pg", &new_key).await.unwrap();
    assert!(hgetall(&mut conn, &new_key).await.is_empty());
    assert_eq!(get(&mut conn, "backups:latest:prod/pg:completo").await, Some(old_key.clone()));
    assert_eq!(get(&mut conn, "backups:latest:prod/pg:incremental").await, Some(incr_key.clone()));

    delete_record(&mut conn, "prod", "pg", &old_key).await.unwrap();
    assert_eq!(get(&mut conn, "backups:latest:prod/pg:completo").await, None);
    assert_eq!(index(&mut conn).await, vec![(incr_key, 1_760_011_200)]);
    // Deleting again is harmless.
    delete_record(&mut conn, "prod", "pg", &old_key).await.unwrap();
    assert_eq!(dbsize(&mut conn).await, 3);
}

#[tokio::test]
async fn orphans_are_deleted_and_the_rest_listed_in_time_order() {
    let server = RedisServer::start();
    let mut conn = server.connect().await;
    let expired = record("20251001-120000F", BackupType::Full, at(1, 12));
    let kept = record("20251008-120000F", BackupType::Full, at(8, 12));
    let kept_incr = record("20251008-120000F_20251009-120000I", BackupType::Incr, at(9, 12));
    for r in [&kept_incr, &expired, &kept] {
        write_record(&mut conn, r, Tz::UTC).await.unwrap();
    }
    let live: std::collections::BTreeSet<String> = [kept.label.clone(), kept_incr.label.clone()].into();
    let before = list_records(&mut conn, "prod", "pg").await.unwrap();
    let labelled = before.iter().map(|(key, f)| (key.as_str(), f["label"].as_str()));
    let deleted = crate::backup::redis_record::orphans(labelled, &live);
    assert_eq!(deleted, vec!["backup:2025-10-01_12-00-00".to_string()]);
    delete_records(&mut conn, "prod", "pg", &deleted).await.unwrap();
    let listed = list_records(&mut conn, "prod", "pg").await.unwrap();
    let labels: Vec<&str> = listed.iter().map(|(_, f)| f["label"].as_str()).collect();
    assert_eq!(labels, vec![kept.label.as_str(), kept_incr.label.as_str()]);
    assert!(list_records(&mut conn, "prod", "other").await.unwrap().is_empty());
}

#[tokio::test]
async fn connect_authenticates_with_the_password_setting() {
    let server = RedisServer::start_with(&["--requirepass", PASSWORD]);
    let with = |password: Option<&str>| {
        server.info(&Credentials { username: None, password: password.map(Into::into) })
    };
    // redis-server may still be starting: retry the right password for a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match connect(with(Some(PASSWORD))).await {
            Ok(conn) => break conn,
            Err(e) if Instant::now() < deadline && e.is_io_error() => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("connecting with the password: {e}"),
        }
    };
    let key = write_record(&mut conn, &record("20251007-120000F", BackupType::Full, at(7, 12)), Tz::UTC)
        .await
        .unwrap();
    assert_eq!(key, "backup:2025-10-07_12-00-00");
    let wrong = connect(with(Some("wrong"))).await.map(|_| ()).unwrap_err();
    assert!(!wrong.to_string().contains("wrong"), "the password is not in the error: {wrong}");
    assert!(connect(with(None)).await.is_err(), "no password, no records");
}

#[tokio::test]
async fn connect_gives_up_quickly_on_a_silent_redis() {
    use crate::backup::redis_target::connection_info;
    // Nothing listens on a port we just released: refused at once, well within TIMEOUT.
    let port = crate::test_pg::free_port();
    let started = Instant::now();
    let url = format!("redis://127.0.0.1:{port}/");
    let result = connect(connection_info(&url, &Credentials::default()).unwrap()).await;
    assert!(result.is_err());
    assert!(started.elapsed() <= TIMEOUT + Duration::from_secs(1));
}

#[tokio::test]
async fn retention_deletes_the_records_of_expired_sets_and_keeps_pointers_consistent() {
    use crate::backup::result::RepoContents;
    use crate::backup::retention::RepoView;
    let server = RedisServer::start();
    let mut conn = server.connect().await;
    let full_1 = record("20251001-120000F", BackupType::Full, at(1, 12));
    let incr_1 = record("20251001-120000F_20251002-120000I", BackupType::Incr, at(2, 12));
    let diff_1 = record("20251001-120000F_20251003-120000D", BackupType::Diff, at(3, 12));
    let full_2 = record("20251006-120000F", BackupType::Full, at(6, 12));
    let full_3 = record("20251007-120000F", BackupType::Full, at(7, 12));
    // Recorded after the report below (an incr on full_3): the report cannot judge it.
    let incr_3 = record("20251007-120000F_20251008-120000I", BackupType::Incr, at(8, 12));
    let mut keys = BTreeMap::new();
    for r in [&full_1, &incr_1, &diff_1, &full_2, &full_3, &incr_3] {
        keys.insert(r.label.clone(), write_record(&mut conn, r, Tz::UTC).await.unwrap());
    }
    // A record of the users' old scripts: no label, never touched.
    let _: () = redis::cmd("HSET")
        .arg("backup:2024-01-01_00-00-00")
        .arg("tipo_backup")
        .arg("completo")
        .query_async(&mut conn)
        .await
        .unwrap();
    // Another cluster's record with an expired label: not this cluster's business.
    let mut elsewhere = full_1.clone();
    elsewhere.cluster = "other".into();
    elsewhere.start = at(1, 13);
    let elsewhere_key = write_record(&mut conn, &elsewhere, Tz::UTC).await.unwrap();
    assert_eq!(
        get(&mut conn, "backups:latest:prod/pg:diferencial").await.as_deref(),
        Some(keys[&diff_1.label].as_str())
    );

    // pgBackRest kept two full backups after full_3 (retention full=2).
    let view = RepoView {
        reporter: full_3.label.clone(),
        contents: RepoContents {
            oldest: full_2.label.clone(),
            labels: Some(vec![full_2.label.clone(), full_3.label.clone()]),
        },
    };
    let deleted = delete_expired(&mut conn, "prod", "pg", &view).await.unwrap();
    let expected: Vec<String> = [&full_1, &incr_1, &diff_1].iter().map(|r| keys[&r.label].clone()).collect();
    assert_eq!(deleted, expected);
    for key in &expected {
        assert!(hgetall(&mut conn, key).await.is_empty(), "{key} deleted");
    }
    let left: Vec<String> = index(&mut conn).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(left, [&full_2, &full_3, &incr_3].map(|r| keys[&r.label].clone()));
    // Latest pointers: the full one unchanged, the diff one gone with its only record, the
    // incremental one still on incr_3.
    assert_eq!(get(&mut conn, "backups:latest:prod/pg:completo").await, Some(keys[&full_3.label].clone()));
    assert_eq!(get(&mut conn, "backups:latest:prod/pg:diferencial").await, None);
    assert_eq!(get(&mut conn, "backups:latest:prod/pg:incremental").await, Some(keys[&incr_3.label].clone()));
    assert_eq!(hgetall(&mut conn, "backup:2024-01-01_00-00-00").await.len(), 1);
    assert_eq!(hgetall(&mut conn, &elsewhere_key).await["label"], full_1.label);
    // Idempotent: a second pass finds nothing.
    assert!(delete_expired(&mut conn, "prod", "pg", &view).await.unwrap().is_empty());
}

/// Sends `signal` (STOP or CONT) to the server: a frozen Redis accepts TCP connections (the
/// kernel does) and answers nothing, which a refused port never shows.
fn signal(server: &RedisServer, signal: &str) {
    let status = Command::new("kill").arg(format!("-{signal}")).arg(server.child.id().to_string()).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{signal} redis-server");
}

#[tokio::test]
async fn a_frozen_redis_fails_each_call_within_the_timeout_and_the_record_lands_after_the_thaw() {
    let server = RedisServer::start();
    server.connect().await;
    let mut before = connect(server.info(&server.credentials)).await.unwrap();
    let full = record("20251007-120000F", BackupType::Full, at(7, 12));

    signal(&server, "STOP");
    let started = Instant::now();
    assert!(write_record(&mut before, &full, Tz::UTC).await.is_err(), "an open connection times out");
    assert!(started.elapsed() <= TIMEOUT + Duration::from_secs(1), "took {:?}", started.elapsed());
    let started = Instant::now();
    assert!(connect(server.info(&server.credentials)).await.is_err(), "a new connection times out");
    assert!(started.elapsed() <= 2 * TIMEOUT + Duration::from_secs(1), "took {:?}", started.elapsed());

    signal(&server, "CONT");
    let mut after = connect(server.info(&server.credentials)).await.unwrap();
    let key = write_record(&mut after, &full, Tz::UTC).await.unwrap();
    assert_eq!(hgetall(&mut after, &key).await, expected_fields(&full));
    assert_eq!(index(&mut after).await.len(), 1, "one record, whatever the frozen calls left queued");
}

#[tokio::test]
async fn the_managed_redis_lets_relevo_run_only_the_record_commands_on_record_keys() {
    let server = RedisServer::start();
    let mut conn = server.connect().await;
    let full = record("20251007-120000F", BackupType::Full, at(7, 12));
    write_record(&mut conn, &full, Tz::UTC).await.unwrap();
    let refused = |result: RedisResult<redis::Value>| match result {
        Err(e) => assert!(e.to_string().to_lowercase().contains("noperm"), "refused by the ACL: {e}"),
        Ok(value) => panic!("allowed: {value:?}"),
    };
    refused(redis::cmd("FLUSHALL").query_async(&mut conn).await);
    refused(redis::cmd("CONFIG").arg("GET").arg("*").query_async(&mut conn).await);
    refused(redis::cmd("CLIENT").arg("PAUSE").arg(1000).query_async(&mut conn).await);
    refused(redis::cmd("SET").arg("session:1").arg("x").query_async(&mut conn).await);
    refused(redis::cmd("GET").arg("session:1").query_async(&mut conn).await);
    refused(redis::cmd("EVAL").arg("return 1").arg(0).query_async(&mut conn).await);

    // The users' scripts read the records with the same user.
    let keys: Vec<String> = redis::cmd("KEYS").arg("backup:*").query_async(&mut conn).await.unwrap();
    assert_eq!(keys, ["backup:2025-10-07_12-00-00"]);
    let exists: i64 = redis::cmd("EXISTS").arg(&keys[0]).query_async(&mut conn).await.unwrap();
    assert_eq!(exists, 1);

    let default_user = Credentials { username: None, password: Some(PASSWORD.into()) };
    assert!(connect(server.info(&default_user)).await.is_err(), "the default user is off");
    let wrong = Credentials { username: Some(REDIS_USER.into()), password: Some("wrong".into()) };
    assert!(connect(server.info(&wrong)).await.is_err(), "a wrong password is refused");
}
