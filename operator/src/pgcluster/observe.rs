//! The operator's connections to PostgreSQL (tokio-postgres, as the superuser, over the pod
//! network, TLS verified by [`crate::postgres::connect`]): each instance's role, timeline and
//! LSN, and the primary's replication slots.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_postgres::Client;

use crate::instance::layout;
use crate::postgres::{self, ClusterCa, Target};
use crate::switchover::Lsn;

use super::status::{ArchiverState, PostgresState};

/// One query answers everything the status needs. The timeline of a standby is the one it
/// receives (its checkpoint timeline lags until the next restartpoint).
const STATE_QUERY: &str = "SELECT pg_is_in_recovery(), \
     COALESCE((SELECT received_tli FROM pg_stat_wal_receiver WHERE pg_is_in_recovery()), \
              (SELECT timeline_id FROM pg_control_checkpoint()))::int8, \
     (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text";

/// The primary's archiver: counts, last WAL names and times (RFC 3339, UTC), and whether the
/// last failure is newer than the last success.
pub const ARCHIVER_QUERY: &str = "SELECT archived_count, last_archived_wal, \
     to_char(last_archived_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
     failed_count, last_failed_wal, \
     to_char(last_failed_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
     last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR last_failed_time > last_archived_time) \
     FROM pg_stat_archiver";

/// Where and how to connect: an instance's pod IP, verified as its pod DNS name
/// ([`crate::pgcluster::names::pod_fqdn`]) against the cluster CA.
#[derive(Clone)]
pub struct Connection<'a> {
    pub host: String,
    pub server_name: String,
    pub superuser_password: &'a str,
    pub ca: &'a ClusterCa,
    pub timeout: Duration,
}

impl std::fmt::Debug for Connection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

pub use crate::postgres::PgError;

impl Connection<'_> {
    pub fn target(&self) -> Target<'_> {
        Target {
            host: &self.host,
            server_name: Some(&self.server_name),
            port: layout::POSTGRES_PORT as u16,
            user: layout::SUPERUSER,
            password: self.superuser_password,
            dbname: "postgres",
            timeout: self.timeout,
        }
    }
}

pub async fn connect(connection: &Connection<'_>) -> Result<Client, PgError> {
    postgres::connect(&connection.target(), connection.ca).await
}

/// Role, timeline and LSN of one instance.
pub async fn instance_state(connection: &Connection<'_>) -> Result<PostgresState, PgError> {
    let client = connect(connection).await?;
    let row = tokio::time::timeout(connection.timeout, client.query_one(STATE_QUERY, &[])).await??;
    let lsn: Option<String> = row.get(2);
    Ok(PostgresState {
        in_recovery: row.get(0),
        timeline: row.get(1),
        lsn: lsn.map(|text| text.parse::<Lsn>()).transpose()?,
    })
}

/// pg_stat_archiver of an instance (meaningful on a primary only: standbys do not archive).
pub async fn archiver_state(connection: &Connection<'_>) -> Result<ArchiverState, PgError> {
    let client = connect(connection).await?;
    let row = tokio::time::timeout(connection.timeout, client.query_one(ARCHIVER_QUERY, &[])).await??;
    Ok(ArchiverState {
        archived_count: row.get(0),
        last_archived_wal: row.get(1),
        last_archived_time: row.get(2),
        failed_count: row.get(3),
        last_failed_wal: row.get(4),
        last_failed_time: row.get(5),
        failing: row.get(6),
    })
}

/// Makes the primary hold exactly `wanted` among relevo's slots: creates missing ones
/// (reserving WAL at once, so a clone started now finds it), drops `stale` ones that no
/// standby uses. An active slot is never dropped; it is retried on a later reconcile.
pub async fn reconcile_slots(
    connection: &Connection<'_>,
    wanted: &BTreeSet<String>,
    cluster: &str,
) -> Result<(), PgError> {
    let client = connect(connection).await?;
    let present: Vec<String> = client
        .query("SELECT slot_name::text FROM pg_replication_slots WHERE slot_type = 'physical'", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for slot in wanted.iter().filter(|slot| !present.contains(slot)) {
        client.execute("SELECT pg_create_physical_replication_slot($1, true)", &[slot]).await?;
    }
    for slot in super::topology::stale_slots(cluster, &present, wanted) {
        client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND NOT active",
                &[slot],
            )
            .await?;
    }
    Ok(())
}
