//! The one writer of relevo's replication slots: [`converge`] makes an instance hold exactly
//! the slots it should. The PgCluster reconcile calls it on the primary with the slots of the
//! desired topology ([`super::topology::plan`]); while a Switchover is active, only the
//! switchover executor calls it (its `FixSlots` step), with the slots the machine wants. What
//! each instance holds is observed by the one probe ([`crate::postgres::probe`]).

use std::collections::BTreeSet;

use tokio_postgres::Client;
use tracing::debug;

use crate::switchover::sql::{CREATE_SLOT_IF_ABSENT, DROP_SLOT_IF_PRESENT, LIST_SLOTS};

use super::topology::stale_slots;

/// Makes the instance behind `client` hold exactly `wanted` among the slots relevo made for
/// `cluster`: creates missing ones (reserving WAL at once, so a clone started now finds it),
/// drops stale ones that no standby uses. An active slot is never dropped; a later round
/// drops it once its standby is gone. Slots of other tools are never touched.
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
            debug!(slot, "replication slot still active; dropped later");
        }
    }
    Ok(())
}
