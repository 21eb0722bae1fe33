//! synchronous_standby_names on a running instance, with ALTER SYSTEM and pg_reload_conf():
//! the primary's, and each standby's for the moment it is promoted.
//!
//! Why not postgresql.conf (the ConfigMap): the ConfigMap reaches a pod's mount only at the
//! kubelet's next sync and nothing reloads PostgreSQL after it, while `preferred` must follow
//! the streaming standbys within a reconcile; and a `required` list in postgresql.conf would
//! hold every commit of the first primary's bootstrap SQL, before any standby exists. ALTER
//! SYSTEM takes effect on reload (the parameter needs no restart), and the value is the same
//! on any instance, so the copy pg_basebackup and pg_rewind carry in postgresql.auto.conf is
//! harmless. ALTER SYSTEM also works in recovery, which is how a standby is given, ahead of
//! any switchover, the value it must run with once promoted.

use tokio_postgres::Client;

use crate::postgres::PgError;
use crate::switchover::sql::quote_literal;

use crate::crd::pgcluster::SynchronousSpec;

use super::connect::InstanceConnection;
use super::synchronous::{self, StandbyNamesChange};

/// The statement for `change`. ALTER SYSTEM takes no bind parameters; the value is built from
/// instance names only, and quoted as a literal anyway.
pub fn alter_system(change: &StandbyNamesChange) -> String {
    match change {
        StandbyNamesChange::Set(value) => {
            format!("ALTER SYSTEM SET synchronous_standby_names = {}", quote_literal(value))
        }
        StandbyNamesChange::Reset => "ALTER SYSTEM RESET synchronous_standby_names".to_string(),
    }
}

/// Applies `change` and reloads. ALTER SYSTEM cannot run in a transaction block, hence two
/// simple statements.
pub async fn apply(client: &Client, change: &StandbyNamesChange) -> Result<(), PgError> {
    client.batch_execute(&alter_system(change)).await?;
    client.batch_execute("SELECT pg_reload_conf()").await?;
    Ok(())
}

/// Keeps the primary's synchronous_standby_names what [`synchronous`] wants, given its
/// `current` value and the instances `streaming` from it. A failure is logged and retried at
/// the next reconcile.
pub async fn keep_primary(
    cluster: &str,
    spec: Option<&SynchronousSpec>,
    primary: &InstanceConnection<'_>,
    current: &str,
    streaming: usize,
) {
    set(primary, synchronous::standby_names_change(cluster, spec, streaming, current)).await;
}

/// Gives a standby the value it must run with the moment it is promoted (see
/// [`synchronous::standby_names_on_promotion`]): it has no effect in recovery, and it closes
/// the window in which a just-promoted primary acknowledges commits asynchronously until a
/// reconcile reaches it.
pub async fn ready_standby(
    cluster: &str,
    spec: Option<&SynchronousSpec>,
    standby: &InstanceConnection<'_>,
    current: &str,
) {
    set(standby, synchronous::standby_names_on_promotion(cluster, spec, current)).await;
}

async fn set(instance: &InstanceConnection<'_>, change: Option<StandbyNamesChange>) {
    let Some(change) = change else { return };
    let applied = match instance.connection.connect().await {
        Ok(client) => apply(&client, &change).await,
        Err(error) => Err(error),
    };
    match applied {
        Ok(()) => tracing::info!(instance = %instance.name, ?change, "synchronous_standby_names changed"),
        Err(error) => {
            tracing::warn!(instance = %instance.name, %error, "could not set synchronous_standby_names")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_quotes_the_value_as_a_literal() {
        let set = StandbyNamesChange::Set("ANY 1 (\"demo-1\", \"demo-2\")".into());
        assert_eq!(
            alter_system(&set),
            "ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (\"demo-1\", \"demo-2\")'"
        );
        assert_eq!(
            alter_system(&StandbyNamesChange::Set(String::new())),
            "ALTER SYSTEM SET synchronous_standby_names = ''"
        );
        assert_eq!(alter_system(&StandbyNamesChange::Reset), "ALTER SYSTEM RESET synchronous_standby_names");
    }
}

#[cfg(test)]
#[path = "synchronous_pg_tests.rs"]
mod pg_tests;
