//! One probe per instance: a single query that answers everything the PgCluster status and
//! the switchover machine need, run against every instance at once with a short timeout, so
//! that one dead pod costs one timeout per decision, not one per instance.
//!
//! One meaning per fact:
//! - **timeline**: the newest timeline the instance has WAL of. A primary's is its WAL file
//!   name's; a standby's is the newest of what its walreceiver receives, its last
//!   restartpoint's and its minimum recovery point's, all of which can lag what it replayed
//!   but never lead it. (The checkpoint timeline alone lags a standby's until its next
//!   restartpoint: a standby that replayed timeline 13 could show 8.) The checkpoint timeline
//!   is reported beside it, for pgBackRest's wait after a promotion.
//! - **LSN**: the flush LSN of a primary (what a standby can receive) and the replay LSN of a
//!   standby (what it has applied); [`Probe::lsn`] is the one of its role.

use std::collections::{BTreeMap, HashSet};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use futures::future::join_all;
use tokio_postgres::Row;

use super::lsn::Lsn;
use super::{ClusterCa, Connection, PgError};

/// Role, LSNs and timelines (columns: in_recovery, flush_lsn, receive_lsn, replay_lsn,
/// timeline, checkpoint_timeline, sender_host, receiver_slot); see the module doc for the
/// meaning of each. `pg_current_wal_*` fail during recovery, so they sit behind `CASE`.
pub const INSTANCE_STATUS: &str = "\
SELECT pg_is_in_recovery() AS in_recovery, \
CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn()::text END AS flush_lsn, \
pg_last_wal_receive_lsn()::text AS receive_lsn, \
pg_last_wal_replay_lsn()::text AS replay_lsn, \
CASE WHEN pg_is_in_recovery() \
THEN greatest((SELECT nullif(received_tli, 0) FROM pg_stat_wal_receiver), \
(SELECT timeline_id FROM pg_control_checkpoint()), \
(SELECT nullif(min_recovery_end_timeline, 0) FROM pg_control_recovery())) \
ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS timeline, \
(SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_timeline, \
(SELECT sender_host FROM pg_stat_wal_receiver WHERE status = 'streaming') AS sender_host, \
(SELECT slot_name FROM pg_stat_wal_receiver) AS receiver_slot";

/// The archiver: counts, last WAL names and times (RFC 3339, UTC), and whether the last
/// failure is newer than the last success. Meaningful on a primary only.
pub const ARCHIVER_QUERY: &str = "SELECT archived_count, last_archived_wal, \
     to_char(last_archived_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
     failed_count, last_failed_wal, \
     to_char(last_failed_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
     last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR last_failed_time > last_archived_time) \
     FROM pg_stat_archiver";

/// relevo's physical slots on this instance; slots of other tools are never touched.
pub const LIST_SLOTS: &str = "\
SELECT slot_name::text FROM pg_replication_slots \
WHERE slot_type = 'physical' AND slot_name LIKE 'relevo\\_%' ORDER BY slot_name";

/// The whole probe in one round trip: [`INSTANCE_STATUS`]'s 8 columns, then primary_conninfo,
/// relevo's slots, the application_name of every standby streaming from it (relevo puts the
/// instance name there), then [`ARCHIVER_QUERY`]'s 7 columns, then the standbys the instance
/// counts as synchronous and its synchronous_standby_names.
pub static PROBE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT s.*, current_setting('primary_conninfo') AS primary_conninfo, \
         ARRAY({LIST_SLOTS}) AS slots, \
         ARRAY(SELECT application_name FROM pg_stat_replication \
               WHERE state = 'streaming' AND application_name <> '' ORDER BY application_name) AS streaming, \
         a.*, \
         ARRAY(SELECT application_name FROM pg_stat_replication \
               WHERE sync_state IN ('sync', 'quorum') AND application_name <> '' \
               ORDER BY application_name) AS synchronous, \
         current_setting('synchronous_standby_names') AS synchronous_standby_names \
         FROM ({INSTANCE_STATUS}) s, ({ARCHIVER_QUERY}) a"
    )
});

/// What one instance answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    pub in_recovery: bool,
    pub flush_lsn: Option<Lsn>,
    pub receive_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    pub timeline: Option<u32>,
    pub checkpoint_timeline: Option<u32>,
    pub primary_conninfo: String,
    pub slots: Vec<String>,
    /// application_name of every standby streaming from this instance.
    pub streaming_standbys: Vec<String>,
    /// application_name of every standby this instance counts as synchronous (sync_state
    /// `sync` or `quorum`); empty on a standby.
    pub synchronous_standbys: Vec<String>,
    /// Its synchronous_standby_names, as it runs now.
    pub synchronous_standby_names: String,
    /// pg_stat_archiver; `None` on a standby (standbys do not archive).
    pub archiver: Option<ArchiverState>,
}

impl Probe {
    /// The LSN of its role: flushed on a primary, replayed on a standby.
    pub fn lsn(&self) -> Option<Lsn> {
        if self.in_recovery { self.replay_lsn } else { self.flush_lsn }
    }
}

/// pg_stat_archiver of a primary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiverState {
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    /// RFC 3339.
    pub last_archived_time: Option<String>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<String>,
    /// The last attempt failed after the last success (or nothing ever succeeded).
    pub failing: bool,
}

/// Probes one instance.
pub async fn probe(connection: &Connection<'_>) -> Result<Probe, PgError> {
    let work = async {
        let client = connection.connect().await?;
        let row = client.query_one(PROBE.as_str(), &[]).await?;
        from_row(&row)
    };
    tokio::time::timeout(connection.timeout, work).await?
}

/// Where one instance is probed: its pod IP and the DNS name its certificate carries.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    pub instance: String,
    pub host: String,
    pub server_name: String,
    /// Already judged lost by the decision that probes it: a failover's old primary, or a
    /// primary whose Lease is not being renewed. See [`Unanswered::bounds`].
    pub presumed_lost: bool,
}

/// How long the TCP connect to a host that did not answer its last probe may take: a dead
/// node's pod IP drops packets, so every probe of it would last its whole timeout, and a
/// failover decides once per probe round. Only the connect is bounded so: a live kernel
/// completes it in well under a millisecond however loaded PostgreSQL is, while the TLS
/// handshake, authentication and query of a busy instance can take longer than this, and a
/// bound on them too would keep a slow instance unanswered for good (the new operator of the
/// operator-node story never saw the fenced primary again that way).
pub const UNANSWERED_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long the whole probe of an instance presumed lost may take once it has gone
/// unanswered. A frozen node's kernel completes the TCP connect, and its PostgreSQL then never
/// answers, so the connect bound does not help: without this, every decision of a failover
/// waited the whole timeout for it (the frozen-node scenario: 2 s a round, about 10 s in all).
/// A primary that is only slow still renews its Lease, so it is not presumed lost, and a
/// lost one that answers within this bound gets the whole timeout again.
pub const LOST_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The hosts (pod IPs) whose last probe went unanswered, shared by every probe of the
/// operator. A recreated pod has a new IP, so it starts with the full timeout.
#[derive(Default)]
pub struct Unanswered(Mutex<HashSet<String>>);

impl Unanswered {
    /// Enough for every pod of a large installation; past it the memory starts over, which
    /// costs one full timeout per silent host.
    const CAPACITY: usize = 4096;

    /// The bound on the TCP connect of the next probe of `host`; `None`: the whole timeout.
    fn connect_timeout(&self, host: &str) -> Option<Duration> {
        let silent = self.0.lock().unwrap_or_else(|e| e.into_inner()).contains(host);
        silent.then_some(UNANSWERED_CONNECT_TIMEOUT)
    }

    /// The bounds of the next probe of `host`: the whole probe, and the TCP connect alone
    /// (`None`: the whole bound). A silent host gets a short connect; a silent host presumed
    /// lost a short whole probe as well ([`LOST_PROBE_TIMEOUT`]).
    pub fn bounds(&self, host: &str, presumed_lost: bool, timeout: Duration) -> (Duration, Option<Duration>) {
        match self.connect_timeout(host) {
            Some(connect) if presumed_lost => (timeout.min(LOST_PROBE_TIMEOUT), Some(connect)),
            connect => (timeout, connect),
        }
    }

    pub fn record(&self, host: &str, answered: bool) {
        let mut hosts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if answered {
            hosts.remove(host);
        } else {
            if hosts.len() >= Self::CAPACITY {
                hosts.clear();
            }
            hosts.insert(host.to_owned());
        }
    }
}

/// Probes every target at once; an instance that does not answer within the timeout is
/// absent from the result (and logged at debug: a restarting pod is normal). A host that
/// did not answer last time gets the shorter bounds of [`Unanswered::bounds`].
pub async fn probe_all(
    targets: impl IntoIterator<Item = ProbeTarget>,
    superuser_password: &str,
    ca: &ClusterCa,
    timeout: Duration,
    unanswered: &Unanswered,
) -> BTreeMap<String, Probe> {
    let probes = targets.into_iter().map(|target| async move {
        let ProbeTarget { instance, host, server_name, presumed_lost } = target;
        let (timeout, connect_timeout) = unanswered.bounds(&host, presumed_lost, timeout);
        let connection = Connection { host, server_name, superuser_password, ca, timeout, connect_timeout };
        let result = probe(&connection).await;
        unanswered.record(&connection.host, result.is_ok());
        match result {
            Ok(answer) => Some((instance, answer)),
            Err(error) => {
                tracing::debug!(instance, %error, "PostgreSQL did not answer");
                None
            }
        }
    });
    join_all(probes).await.into_iter().flatten().collect()
}

fn from_row(row: &Row) -> Result<Probe, PgError> {
    let lsn = |i: usize| -> Result<Option<Lsn>, PgError> {
        Ok(row.try_get::<_, Option<String>>(i)?.map(|t| t.parse::<Lsn>()).transpose()?)
    };
    let timeline = |i: usize| -> Result<Option<u32>, PgError> {
        Ok(row.try_get::<_, Option<i32>>(i)?.and_then(|v| u32::try_from(v).ok()))
    };
    let in_recovery: bool = row.try_get(0)?;
    let archiver = ArchiverState {
        archived_count: row.try_get(11)?,
        last_archived_wal: row.try_get(12)?,
        last_archived_time: row.try_get(13)?,
        failed_count: row.try_get(14)?,
        last_failed_wal: row.try_get(15)?,
        last_failed_time: row.try_get(16)?,
        failing: row.try_get(17)?,
    };
    Ok(Probe {
        in_recovery,
        flush_lsn: lsn(1)?,
        receive_lsn: lsn(2)?,
        replay_lsn: lsn(3)?,
        timeline: timeline(4)?,
        checkpoint_timeline: timeline(5)?,
        primary_conninfo: row.try_get(8)?,
        slots: row.try_get(9)?,
        streaming_standbys: row.try_get(10)?,
        synchronous_standbys: row.try_get(18)?,
        synchronous_standby_names: row.try_get(19)?,
        archiver: (!in_recovery).then_some(archiver),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_one_statement_with_every_part() {
        let sql = PROBE.as_str();
        assert_eq!(sql.matches("pg_is_in_recovery() AS in_recovery").count(), 1);
        assert!(sql.contains("FROM pg_stat_archiver"), "{sql}");
        assert!(sql.contains("sync_state IN ('sync', 'quorum')"), "{sql}");
        assert!(sql.contains("relevo\\_%"), "underscore escaped in LIKE: {sql}");
        assert!(!sql.contains(';'), "a single statement: {sql}");
    }

    #[test]
    fn a_host_that_did_not_answer_gets_a_short_connect_until_it_answers() {
        let unanswered = Unanswered::default();
        assert_eq!(unanswered.connect_timeout("10.0.0.1"), None);
        unanswered.record("10.0.0.1", false);
        assert_eq!(unanswered.connect_timeout("10.0.0.1"), Some(UNANSWERED_CONNECT_TIMEOUT));
        assert_eq!(unanswered.connect_timeout("10.0.0.2"), None, "only that host");
        unanswered.record("10.0.0.1", true);
        assert_eq!(unanswered.connect_timeout("10.0.0.1"), None);
    }

    #[test]
    fn only_a_silent_host_presumed_lost_gets_a_short_whole_probe() {
        let unanswered = Unanswered::default();
        let whole = Duration::from_secs(2);
        assert_eq!(unanswered.bounds("10.0.0.1", true, whole), (whole, None), "answered last time");
        unanswered.record("10.0.0.1", false);
        assert_eq!(
            unanswered.bounds("10.0.0.1", false, whole),
            (whole, Some(UNANSWERED_CONNECT_TIMEOUT)),
            "silent but not presumed lost: a slow instance keeps the whole timeout"
        );
        assert_eq!(
            unanswered.bounds("10.0.0.1", true, whole),
            (LOST_PROBE_TIMEOUT, Some(UNANSWERED_CONNECT_TIMEOUT)),
            "silent and presumed lost"
        );
        let short = Duration::from_millis(100);
        assert_eq!(unanswered.bounds("10.0.0.1", true, short).0, short, "never longer than the timeout");
        unanswered.record("10.0.0.1", true);
        assert_eq!(unanswered.bounds("10.0.0.1", true, whole), (whole, None), "it answered again");
    }

    /// A frozen node: its kernel completes the TCP handshake (from the listen backlog of a
    /// socket nobody accepts on), and nothing ever answers.
    #[tokio::test]
    async fn a_frozen_host_presumed_lost_costs_the_short_bound_from_its_second_probe_on() {
        let host = "127.0.0.77";
        let port = crate::protocol::layout::POSTGRES_PORT as u16;
        let _frozen = std::net::TcpListener::bind((host, port))
            .unwrap_or_else(|e| panic!("a silent listener on {host}:{port}: {e}"));
        let authority = crate::pki::CertificateAuthority::generate("demo").unwrap();
        let ca = crate::postgres::ClusterCa::from_pem(&authority.pem().cert_pem).unwrap();
        let unanswered = Unanswered::default();
        let timeout = Duration::from_millis(1500);
        let round = |presumed_lost| {
            let target = ProbeTarget {
                instance: "demo-1".into(),
                host: host.into(),
                server_name: "demo-1-0.demo.ns.svc".into(),
                presumed_lost,
            };
            let (unanswered, ca) = (&unanswered, &ca);
            async move {
                let started = std::time::Instant::now();
                let answers = probe_all([target], "pw", ca, timeout, unanswered).await;
                assert!(answers.is_empty(), "nothing answers");
                started.elapsed()
            }
        };
        assert!(round(true).await >= timeout, "its first probe gets the whole timeout");
        assert!(round(false).await >= timeout, "silent, not presumed lost: the whole timeout");
        let short = round(true).await;
        assert!(short < Duration::from_millis(1000), "silent and presumed lost: {short:?}");
    }

    #[test]
    fn the_memory_of_silent_hosts_is_bounded() {
        let unanswered = Unanswered::default();
        for i in 0..=Unanswered::CAPACITY {
            unanswered.record(&format!("host-{i}"), false);
        }
        assert!(unanswered.0.lock().unwrap().len() <= Unanswered::CAPACITY);
    }

    #[test]
    fn the_lsn_of_a_role() {
        let mut probe = Probe { flush_lsn: Some(Lsn(10)), replay_lsn: Some(Lsn(7)), ..Probe::default() };
        assert_eq!(probe.lsn(), Some(Lsn(10)), "a primary: flushed");
        probe.in_recovery = true;
        assert_eq!(probe.lsn(), Some(Lsn(7)), "a standby: replayed");
    }
}
