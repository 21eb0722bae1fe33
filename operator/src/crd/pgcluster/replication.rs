//! `spec.replication` of a PgCluster: synchronous replication on request, and what the
//! status reports of it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Streaming replication settings. Asynchronous unless `synchronous` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSpec {
    /// Commits wait for `number` standbys to have flushed them. A failover then promotes only
    /// a standby the primary reported as synchronous, and loses no acknowledged commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<SynchronousSpec>,
}

/// Synchronous standbys. relevo writes PostgreSQL's synchronous_standby_names from the
/// cluster's instance names; spec.postgresql.parameters may not set it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SynchronousSpec {
    /// How many standbys must confirm each commit: at least 1, at most spec.instances - 1.
    #[serde(default = "default_number")]
    #[schemars(range(min = 1, max = 8))]
    pub number: i32,

    /// `any`: any `number` standbys confirm (quorum). `first`: the first `number` streaming
    /// standbys in instance order confirm (priority).
    #[serde(default)]
    pub method: SynchronousMethod,

    /// `required`: commits wait while fewer synchronous standbys stream, so no acknowledged
    /// commit is ever only on the primary. `preferred`: writes carry on asynchronously
    /// meanwhile, and the status says so.
    #[serde(default)]
    pub data_durability: DataDurability,
}

fn default_number() -> i32 {
    1
}

impl Default for SynchronousSpec {
    fn default() -> Self {
        Self {
            number: default_number(),
            method: SynchronousMethod::default(),
            data_durability: DataDurability::default(),
        }
    }
}

/// How the synchronous standbys are chosen (PostgreSQL's ANY and FIRST).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SynchronousMethod {
    /// Quorum: any `number` standbys.
    #[default]
    Any,
    /// Priority: the first `number` streaming standbys in instance order.
    First,
}

/// What commits do while fewer synchronous standbys stream than `number`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataDurability {
    /// Commits wait for the synchronous standbys, even when none is there.
    #[default]
    Required,
    /// Commits go on with as many synchronous standbys as stream, down to none.
    Preferred,
}

/// Synchronous replication as the primary last reported it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SynchronousStatus {
    /// Standbys the primary's pg_stat_replication reported as `sync` or `quorum`. Kept while
    /// the primary does not answer: a failover promotes only one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standbys: Vec<String>,
    /// Set while fewer synchronous standbys stream than spec.replication.synchronous.number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<String>,
}
