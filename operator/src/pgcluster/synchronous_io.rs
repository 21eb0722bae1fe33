//! Synchronous replication on the primary: what pg_stat_replication reports, and for
//! `preferred` durability, synchronous_standby_names raised or lowered with ALTER SYSTEM
//! as standbys come and go (see [`super::synchronous`]).

use crate::crd::replication::{DataDurability, SynchronousSpec, SynchronousStatus};

use super::observe::{Connection, PgError, connect};
use super::synchronous;

pub async fn maintain(
    connection: &Connection<'_>,
    cluster: &str,
    spec: &SynchronousSpec,
) -> Result<SynchronousStatus, PgError> {
    let client = connect(connection).await?;
    let rows = tokio::time::timeout(
        connection.timeout,
        client.query(
            "SELECT application_name::text, state::text, sync_state::text FROM pg_stat_replication",
            &[],
        ),
    )
    .await??;
    let mut streaming = 0;
    let mut standbys = Vec::new();
    for row in &rows {
        let (name, state, sync_state): (String, Option<String>, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        if state.as_deref() == Some("streaming") {
            streaming += 1;
        }
        if matches!(sync_state.as_deref(), Some("sync" | "quorum")) {
            standbys.push(name);
        }
    }
    standbys.sort();
    if spec.data_durability == DataDurability::Preferred {
        let wanted = synchronous::preferred_names(cluster, spec, streaming);
        let current: String =
            client.query_one("SELECT current_setting('synchronous_standby_names')", &[]).await?.get(0);
        if current != wanted {
            // ALTER SYSTEM takes no parameters; the value is built from instance names only.
            let literal = format!("'{}'", wanted.replace('\'', "''"));
            client.batch_execute(&format!("ALTER SYSTEM SET synchronous_standby_names = {literal}")).await?;
            client.batch_execute("SELECT pg_reload_conf()").await?;
            tracing::info!(cluster, value = %wanted, "synchronous_standby_names changed");
        }
    }
    let shortfall = synchronous::shortfall(spec, standbys.len());
    Ok(SynchronousStatus { standbys, shortfall })
}
