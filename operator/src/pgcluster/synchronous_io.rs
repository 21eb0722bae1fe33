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

use super::synchronous::StandbyNamesChange;

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
