//! The replication slots of the primary, over the operator's one PostgreSQL client
//! ([`crate::postgres`]). What each instance reports is observed by [`crate::postgres::probe`].

use std::collections::BTreeSet;

use crate::postgres::{Connection, PgError};
use crate::switchover::sql::LIST_SLOTS;

/// Makes the primary hold exactly `wanted` among relevo's slots: creates missing ones
/// (reserving WAL at once, so a clone started now finds it), drops `stale` ones that no
/// standby uses. An active slot is never dropped; it is retried on a later reconcile.
pub async fn reconcile_slots(
    connection: &Connection<'_>,
    wanted: &BTreeSet<String>,
    cluster: &str,
) -> Result<(), PgError> {
    let client = connection.connect().await?;
    let present: Vec<String> = client.query(LIST_SLOTS, &[]).await?.iter().map(|row| row.get(0)).collect();
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
