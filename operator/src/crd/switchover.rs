//! `Switchover`: one planned switchover or automatic failover, and its audit trail.
//!
//! The status is the persisted state machine: the controller computes the next step from it
//! and the observed cluster, so an operator restart resumes at the recorded phase.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::DNS_LABEL_PATTERN;

/// Request to move the primary role of a PgCluster to another instance.
// Clippy reads the repeated `type_ = "string"` of separate printcolumn(...) entries as
// duplicated attributes; they are distinct columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "relevo.dev",
    version = "v1alpha1",
    kind = "Switchover",
    plural = "switchovers",
    shortname = "so",
    category = "relevo",
    namespaced,
    status = "SwitchoverStatus",
    derive = "PartialEq",
    doc = "A planned switchover or an automatic failover of a PgCluster. Immutable once created.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "From", type_ = "string", json_path = ".status.from"),
    printcolumn(name = "To", type_ = "string", json_path = ".status.to"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Duration",
        type_ = "number",
        json_path = ".status.durationSeconds",
        description = "Seconds from start to Completed or Failed"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("a Switchover is immutable: create a new one"))]
pub struct SwitchoverSpec {
    /// Name of the PgCluster, in the same namespace.
    #[schemars(regex(pattern = DNS_LABEL_PATTERN), length(min = 1, max = 50))]
    pub cluster: String,

    /// Instance to promote, e.g. "<cluster>-2". Unset means the most caught-up healthy standby.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_LABEL_PATTERN), length(min = 1, max = 63))]
    pub target_instance: Option<String>,

    /// Planned: fence the primary, wait for the target to catch up, then promote (no commit
    /// is lost). Failover: the primary is gone; promote the standby with the highest LSN.
    #[serde(default)]
    pub mode: SwitchoverMode,
}

/// How the primary role moves.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum SwitchoverMode {
    /// The primary is healthy: a clean handover with zero lost commits.
    #[default]
    Planned,
    /// The primary is unreachable: fence it, promote the most advanced standby.
    Failover,
}

/// Progress of a switchover.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverStatus {
    /// Current phase of the state machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SwitchoverPhase>,

    /// Instance that was primary when the switchover started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,

    /// Instance being promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,

    /// When each phase was entered, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phase_timestamps: Vec<PhaseTimestamp>,

    /// LSN at which the target was promoted, e.g. "0/3000060".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_lsn: Option<String>,

    /// Timeline the new primary started after promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_timeline: Option<i64>,

    /// Measured time during which no instance accepted writes, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_unavailable_seconds: Option<f64>,

    /// Time from Pending to Completed or Failed, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,

    /// Why the switchover is in its phase; always set when it Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// Final LSN of the fenced old primary (planned switchover), e.g. "0/3000060". Persisted
    /// so that an operator restart during CatchingUp waits for the same position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_lsn: Option<String>,

    /// When a failure was decided whose clean-up (unfence the old primary before promotion,
    /// fence a rogue primary after it) is still running; RFC 3339. Unset otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,

    /// When the switchover first asked the pooler pods to PAUSE; RFC 3339. Unset without a
    /// pooler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler_pause_started: Option<String>,
}

/// Phases of a switchover, in the order a planned one passes through them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SwitchoverPhase {
    /// Accepted, not started.
    Pending,
    /// The old primary is being stopped from accepting writes.
    Fencing,
    /// Waiting for the target to replay the old primary's final LSN.
    CatchingUp,
    /// pg_promote() on the target, then a checkpoint.
    Promoting,
    /// The old primary is being rebuilt as a standby of the new one.
    Rebuilding,
    /// Done: the new primary takes writes and the old one streams from it.
    Completed,
    /// Stopped; see reason.
    Failed,
}

/// The moment a phase was entered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTimestamp {
    /// The phase entered.
    pub phase: SwitchoverPhase,
    /// When, RFC 3339 with sub-second precision.
    pub time: String,
}
