//! The one writer of relevo's replication slots: [`converge`] makes an instance hold exactly
//! the slots it should. The PgCluster reconcile calls it on the primary with the slots of the
//! desired topology ([`super::topology::plan`]); while a Switchover is active, only the
//! switchover executor calls it (its `FixSlots` step), with the slots the machine wants. What
//! each instance holds is observed by the one probe ([`crate::postgres::probe`]).

use std::collections::BTreeSet;

use tokio_postgres::Client;
use tracing::info;

use crate::switchover::sql::{CREATE_SLOT_IF_ABSENT, DROP_SLOT_IF_PRESENT, END_STREAM_OF_SLOT, LIST_SLOTS};

use super::topology::stale_slots;

/// Makes the instance behind `client` hold exactly `wanted` among the slots relevo made for
/// `cluster`: creates missing ones (reserving WAL at once, so a clone started now finds it),
/// drops stale ones. A stale slot that a stream still holds is not dropped at once: the stream
/// is ended, and a later round drops the slot once the walsender has exited. Such a stream is
/// wrong wherever it is: a removed instance's on the primary, or, on a demoted primary, a
/// standby that reconnected through `-rw` before the Service moved and now cascades from an
/// instance that will never be primary again (it would never reach the new timeline). Slots
/// of other tools are never touched.
pub async fn converge(
    client: &Client,
    wanted: &BTreeSet<String>,
    cluster: &str,
) -> Result<(), tokio_postgres::Error> {
    let present: Vec<String> = client.query(LIST_SLOTS, &[]).await?.iter().map(|row| row.get(0)).collect();
    for slot in wanted.iter().filter(|slot| !present.contains(slot)) {
        client.query(CREATE_SLOT_IF_ABSENT, &[slot]).await?;
    }
    for slot in stale_slots(cluster, &present, wanted) {
        let dropped = client.query(DROP_SLOT_IF_PRESENT, &[slot]).await?;
        if dropped.is_empty() {
            let ended = client.query(END_STREAM_OF_SLOT, &[slot]).await?;
            if !ended.is_empty() {
                info!(slot, "ended the stream holding a stale replication slot; the slot goes next round");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "slots_pg_tests.rs"]
mod pg_tests;
