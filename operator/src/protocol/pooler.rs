//! What the operator and `relevo pooler` (the PgBouncer pod's supervisor) agree on: the
//! control channel (port, routes, bodies) and the files mounted in a pooler pod.
//!
//! The channel is the instance pods' pattern: HTTPS on the pod's own address, the pooler's
//! certificate (for `<cluster>-pooler.<namespace>.svc`) on the server side, and only client
//! certificates of the cluster CA accepted (mutual TLS). No token, no password on the wire.

use serde::{Deserialize, Serialize};

/// Port of PgBouncer for clients, on every pooler pod and on `<cluster>-pooler`.
pub const POOLER_PORT: i32 = 5432;
/// Port of the control channel on every pooler pod (never behind a Service: the operator
/// speaks to each pod).
pub const CONTROL_PORT: u16 = 8008;

/// POST [`PauseRequest`]: hold new transactions and wait (bounded) for in-flight ones.
pub const PAUSE_PATH: &str = "/v1/pause";
/// POST [`ResumeRequest`]: point at `target` (when given), then let clients flow again.
pub const RESUME_PATH: &str = "/v1/resume";
/// GET: the [`PoolerState`].
pub const STATUS_PATH: &str = "/v1/status";

/// The pgbouncer.ini template (a ConfigMap), without `[databases]`.
pub const TEMPLATE_DIR: &str = "/etc/relevo/pooler";
pub const TEMPLATE_KEY: &str = "pgbouncer.ini";
/// The application user's Secret (`username`, `password`), from which the supervisor writes
/// PgBouncer's userlist at start.
pub const CREDENTIALS_DIR: &str = "/etc/relevo/pooler-credentials";
/// The pooler's certificate (`tls.crt`, `tls.key`, `ca.crt`: the cluster CA).
pub const TLS_DIR: &str = "/etc/relevo/pooler-tls";
/// The CA PostgreSQL's server certificate chains to (`ca.crt` only), for verify-full.
pub const SERVER_CA_DIR: &str = "/etc/relevo/server-ca";
/// Written by the supervisor (a memory emptyDir): the final pgbouncer.ini, the userlist and
/// PgBouncer's Unix socket, through which only the supervisor reaches the admin console.
pub const RUN_DIR: &str = "/run/relevo-pooler";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseRequest {
    /// How long the call may wait for in-flight transactions before it answers `pausing`.
    pub wait_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeRequest {
    /// Host of the primary to send every database to; absent keeps the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Port of PostgreSQL at `target`; absent keeps the configured one (5432 in the pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// What PgBouncer is doing, as the supervisor knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PauseState {
    /// Clients' transactions go to the target.
    Running,
    /// PAUSE sent; PgBouncer waits for in-flight transactions to end.
    Pausing,
    /// No server connection is in use: nothing reaches PostgreSQL.
    Paused,
}

/// Every answer of the channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolerState {
    pub state: PauseState,
    pub target: String,
    /// Time left before the pooler resumes by itself, while paused or pausing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumes_by_itself_in_ms: Option<u64>,
}

/// A host PgBouncer can take as `host=` unquoted: letters, digits, dots, hyphens. Anything
/// else could inject connection options into `[databases]`.
pub fn valid_target(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_that_could_inject_options_are_refused() {
        for good in ["demo-2-0.demo.db.svc", "10.244.0.12", "localhost"] {
            assert!(valid_target(good), "{good}");
        }
        for bad in ["", "a b", "host password=x", "a\nb", "x'y", "a=b", &"a".repeat(254)] {
            assert!(!valid_target(bad), "{bad:?}");
        }
    }
}
