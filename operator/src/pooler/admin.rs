//! PgBouncer's admin console, over its Unix socket in the run directory, as the
//! supervisor's own admin user. One short connection per command: a PAUSE blocks its
//! connection until PgBouncer has drained, and must not hold up a RESUME or a RELOAD.

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::NoTls;

use super::ini::ADMIN_USER;

/// A command PgBouncer refused or that could not be sent. Carries the command and
/// PgBouncer's answer, never the password.
#[derive(Debug, thiserror::Error)]
#[error("PgBouncer admin console: {command}: {message}")]
pub struct AdminError {
    pub command: &'static str,
    pub message: String,
}

#[derive(Clone)]
pub struct Admin {
    socket_dir: PathBuf,
    port: u16,
    password: String,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("socket_dir", &self.socket_dir)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Admin {
    pub fn new(socket_dir: PathBuf, port: u16, password: String) -> Self {
        Self { socket_dir, port, password }
    }

    /// Sends one command; PgBouncer's "already in that state" answers count as success, so
    /// that PAUSE and RESUME are idempotent.
    pub async fn command(&self, command: &'static str) -> Result<(), AdminError> {
        let error = |message: String| AdminError { command, message };
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(ADMIN_USER)
            .password(&self.password)
            .dbname("pgbouncer")
            .connect_timeout(Duration::from_secs(2));
        let (client, connection) = config.connect(NoTls).await.map_err(|e| error(e.to_string()))?;
        let driver = tokio::spawn(connection);
        let result = client.simple_query(command).await;
        drop(client);
        driver.abort();
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let message = e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_string());
                if is_already_there(&message) { Ok(()) } else { Err(error(message)) }
            }
        }
    }
}

/// PgBouncer's refusals that mean the command's effect is already in place.
fn is_already_there(message: &str) -> bool {
    // PAUSE while paused: "already suspended/paused"; RESUME while running:
    // "pooler is not paused/suspended".
    message.contains("already suspended/paused") || message.contains("not paused/suspended")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_pause_and_resume_are_not_errors() {
        assert!(is_already_there("already suspended/paused"));
        assert!(is_already_there("pooler is not paused/suspended"));
        assert!(!is_already_there("unknown cmd: PAUS"));
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let admin = Admin::new("/run".into(), 5432, "hunter2".into());
        assert!(!format!("{admin:?}").contains("hunter2"));
    }
}
