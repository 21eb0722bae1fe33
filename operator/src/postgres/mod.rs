//! The operator's PostgreSQL client (tokio-postgres, as the superuser, over the pod network):
//! one way to connect ([`connect`]) and one observation per instance ([`probe`]), shared by
//! the PgCluster status and the switchover machine.

pub mod probe;

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::instance::layout;

/// Where and how to connect.
#[derive(Clone)]
pub struct Connection<'a> {
    pub host: String,
    pub superuser_password: &'a str,
    pub timeout: Duration,
}

impl std::fmt::Debug for Connection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("host", &self.host).finish_non_exhaustive()
    }
}

/// An error from PostgreSQL or from the way to it.
pub type PgError = Box<dyn std::error::Error + Send + Sync>;

/// The one place the operator opens a PostgreSQL connection, bounded by the timeout.
pub async fn connect(connection: &Connection<'_>) -> Result<Client, PgError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&connection.host)
        .port(layout::POSTGRES_PORT as u16)
        .user(layout::SUPERUSER)
        .password(connection.superuser_password)
        .dbname("postgres")
        .application_name("relevo-operator")
        .connect_timeout(connection.timeout);
    let (client, conn) = tokio::time::timeout(connection.timeout, config.connect(NoTls)).await??;
    // The connection task ends when the client is dropped.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}
