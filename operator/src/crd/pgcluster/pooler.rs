//! `spec.pooler` of a PgCluster: a managed PgBouncer in front of the primary, which the
//! switchover pauses and re-points so that clients wait instead of failing.

use k8s_openapi::api::core::v1::ResourceRequirements;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Image of PgBouncer (Debian's package) with the relevo binary as its supervisor.
/// A fixed tag, never `latest`.
pub const DEFAULT_POOLER_IMAGE: &str = "relevo/pgbouncer:1.18-1";

/// A PgBouncer Deployment and its Service `<cluster>-pooler`. Off when this section is absent;
/// removing it deletes the pooler's objects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolerSpec {
    /// Number of PgBouncer pods behind `<cluster>-pooler`. Two by default, so that one pod's
    /// restart does not cut every client off.
    #[serde(default = "default_instances")]
    #[schemars(range(min = 1, max = 10))]
    pub instances: i32,

    /// `transaction`: a server connection per transaction, so clients are held between
    /// transactions, which is what makes a switchover invisible to them. `session`: one per
    /// client session; a PAUSE then waits for whole sessions, up to the switchover's bound.
    #[serde(default)]
    pub pool_mode: PoolMode,

    /// PgBouncer's default_pool_size: server connections per user and database.
    #[serde(default = "default_pool_size")]
    #[schemars(range(min = 1, max = 10000))]
    pub default_pool_size: i32,

    /// PgBouncer's max_client_conn: client connections one pooler pod accepts.
    #[serde(default = "default_max_client_conn")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_client_conn: i32,

    /// Longest pause the pooler allows by itself: a PAUSE with no RESUME within this many
    /// seconds is resumed by the pooler, so an operator crash never leaves clients stuck.
    #[serde(default = "default_pause_bound_seconds")]
    #[schemars(range(min = 1, max = 120))]
    pub pause_bound_seconds: i32,

    /// Container image with PgBouncer and the relevo binary. Use a fixed tag.
    #[serde(default = "default_pooler_image")]
    #[schemars(length(min = 1, max = 256))]
    pub image: String,

    /// CPU and memory of each PgBouncer container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::crd::common::resource_quantities)]
    pub resources: Option<ResourceRequirements>,
}

/// How PgBouncer assigns server connections to clients.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A server connection for the duration of each transaction.
    #[default]
    Transaction,
    /// A server connection for the duration of each client session.
    Session,
}

impl PoolMode {
    /// The value of pgbouncer.ini's pool_mode.
    pub fn as_ini(self) -> &'static str {
        match self {
            PoolMode::Transaction => "transaction",
            PoolMode::Session => "session",
        }
    }
}

fn default_instances() -> i32 {
    2
}

fn default_pool_size() -> i32 {
    20
}

fn default_max_client_conn() -> i32 {
    1000
}

fn default_pause_bound_seconds() -> i32 {
    15
}

fn default_pooler_image() -> String {
    DEFAULT_POOLER_IMAGE.to_string()
}

impl Default for PoolerSpec {
    fn default() -> Self {
        Self {
            instances: default_instances(),
            pool_mode: PoolMode::default(),
            default_pool_size: default_pool_size(),
            max_client_conn: default_max_client_conn(),
            pause_bound_seconds: default_pause_bound_seconds(),
            image: default_pooler_image(),
            resources: None,
        }
    }
}
