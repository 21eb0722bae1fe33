//! `spec.replication` of a PgCluster: synchronous replication on request.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Streaming replication settings. Asynchronous unless `synchronous` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSpec {
    /// Commits wait for this many standbys to have flushed them. Then a failover promotes only
    /// a standby that was synchronous, and loses no acknowledged commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<SynchronousSpec>,
}

/// Synchronous standbys, as PostgreSQL's synchronous_standby_names, which relevo writes from
/// the cluster's instances.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SynchronousSpec {
    /// How many standbys must confirm each commit; at most instances - 1.
    #[serde(default = "default_number")]
    #[schemars(range(min = 1, max = 8))]
    pub number: i32,

    /// `any`: any `number` standbys (quorum). `first`: the first `number` in instance order.
    #[serde(default)]
    pub method: SynchronousMethod,

    /// `required`: commits wait while fewer synchronous standbys are there (no acknowledged
    /// commit is ever only on the primary). `preferred`: writes carry on asynchronously
    /// meanwhile, and the status says so.
    #[serde(default)]
    pub data_durability: DataDurability,
}

fn default_number() -> i32 {
    1
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SynchronousMethod {
    /// Quorum: any `number` standbys.
    #[default]
    Any,
    /// Priority: the first `number` connected standbys in instance order.
    First,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataDurability {
    /// Commits wait for the synchronous standbys, even when none is there.
    #[default]
    Required,
    /// Commits go on without a synchronous standby while none is there.
    Preferred,
}

/// Synchronous replication as the primary last reported it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SynchronousStatus {
    /// Standbys pg_stat_replication reported as `sync` or `quorum`: a failover promotes only
    /// one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standbys: Vec<String>,
    /// Set while fewer synchronous standbys stream than spec.replication.synchronous.number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<String>,
}
