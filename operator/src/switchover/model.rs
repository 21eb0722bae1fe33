//! The machine's own vocabulary: what is persisted, what is requested, what is observed, and
//! what to do next.
//!
//! These types are deliberately independent of the CRD structs (see `convert.rs` for the
//! mapping): the machine should not change when a printer column or a serde attribute does,
//! and its tests build these small values directly.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::postgres::lsn::Lsn;

/// How the primary role moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// The primary is healthy: fence it cleanly, wait for the target, promote. No commit lost.
    #[default]
    Planned,
    /// The primary is lost: scale it to zero, promote the most advanced standby.
    Failover,
}

/// Phases, in the order a switchover passes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Fencing,
    CatchingUp,
    Promoting,
    Rebuilding,
    Completed,
    Failed,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::Failed)
    }

    /// From `Promoting` on, a promotion may have been issued (the state is persisted *before*
    /// the step runs), so the old primary must never be given its role back.
    pub fn promotion_may_have_happened(self) -> bool {
        matches!(self, Phase::Promoting | Phase::Rebuilding | Phase::Completed)
    }
}

/// When a phase was entered.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseTime {
    pub phase: Phase,
    pub at: DateTime<Utc>,
}

/// The persisted state machine: everything the next decision needs besides the observation.
#[derive(Clone, Debug, PartialEq)]
pub struct SwitchoverState {
    pub phase: Phase,
    /// The primary when the switchover started (set in Pending).
    pub from: Option<String>,
    /// The instance being promoted (set in Pending, or after fencing when a failover picks it).
    pub to: Option<String>,
    /// Entry time of each phase, in order; empty until the machine first runs.
    pub phase_times: Vec<PhaseTime>,
    /// Planned: the fenced old primary's final LSN (end of its shutdown checkpoint record).
    pub fence_lsn: Option<Lsn>,
    /// WAL position the target had reached when promotion was requested; its new timeline
    /// starts there.
    pub promotion_lsn: Option<Lsn>,
    /// Timeline of the new primary after promotion.
    pub promotion_timeline: Option<u32>,
    /// From the fence request to the moment the role labels were moved to the new primary.
    pub write_unavailable: Option<Duration>,
    /// Set when a failure has been decided but its clean-up step (unfence the old primary
    /// before promotion, fence a rogue primary after it) has not been observed done yet.
    pub failing_since: Option<DateTime<Utc>>,
    /// When this switchover first asked the pooler pods to PAUSE (unset without a pooler).
    pub pooler_pause_started: Option<DateTime<Utc>>,
    /// Why the switchover is where it is; always set when Failed.
    pub reason: Option<String>,
}

impl Default for SwitchoverState {
    fn default() -> Self {
        SwitchoverState {
            phase: Phase::Pending,
            from: None,
            to: None,
            phase_times: Vec::new(),
            fence_lsn: None,
            promotion_lsn: None,
            promotion_timeline: None,
            write_unavailable: None,
            failing_since: None,
            pooler_pause_started: None,
            reason: None,
        }
    }
}

impl SwitchoverState {
    /// When `phase` was (last) entered.
    pub fn entered(&self, phase: Phase) -> Option<DateTime<Utc>> {
        self.phase_times.iter().rev().find(|t| t.phase == phase).map(|t| t.at)
    }

    pub(crate) fn enter(&mut self, phase: Phase, now: DateTime<Utc>) {
        self.phase = phase;
        self.phase_times.push(PhaseTime { phase, at: now });
    }

    /// From the first recorded phase to the terminal one, once terminal.
    pub fn duration(&self) -> Option<Duration> {
        if !self.phase.is_terminal() {
            return None;
        }
        let first = self.phase_times.first()?.at;
        let last = self.phase_times.last()?.at;
        (last - first).to_std().ok()
    }
}

/// The Switchover's spec, plus the identity the machine needs (its name is the rebuild token).
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub name: String,
    pub created: DateTime<Utc>,
    pub cluster: String,
    pub target: Option<String>,
    pub mode: Mode,
}

/// The role label an instance's pod carries (`relevo.dev/role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Standby,
}

/// One instance as the controller saw it, from Kubernetes and from SQL.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct InstanceView {
    pub name: String,
    /// `spec.replicas` of the instance's StatefulSet (0 = fenced by scale-down).
    pub sts_replicas: u32,
    /// The pod object exists (possibly terminating).
    pub pod_exists: bool,
    /// The pod is Ready.
    pub ready: bool,
    /// The operator's SQL connection succeeded; every SQL field is `None` otherwise.
    pub reachable: bool,
    pub in_recovery: Option<bool>,
    /// Current timeline (primary: of its insert position; standby: the one it receives).
    pub timeline: Option<u32>,
    /// Timeline of the latest completed checkpoint (`pg_control_checkpoint()`).
    pub checkpoint_timeline: Option<u32>,
    /// Primary only: `pg_current_wal_flush_lsn()`.
    pub current_lsn: Option<Lsn>,
    /// Standby only: `pg_last_wal_receive_lsn()`.
    pub receive_lsn: Option<Lsn>,
    /// Standby only: `pg_last_wal_replay_lsn()`.
    pub replay_lsn: Option<Lsn>,
    /// Instance this standby is streaming from right now (its walreceiver is `streaming`).
    pub streams_from: Option<String>,
    /// Instance its `primary_conninfo` points at, streaming or not.
    pub upstream: Option<String>,
    /// relevo-managed physical replication slots present on this instance.
    pub slots: Vec<String>,
    pub role_label: Option<Role>,
    /// The fence marker is set on the instance (it must not run as primary).
    pub fence_marker: bool,
    /// Token of the last rebuild requested for this instance (the Switchover's name).
    pub rebuild_token: Option<String>,
    /// The pod is being deleted (it may hang there forever on a node that is gone).
    pub pod_terminating: bool,
    /// Readiness of the node the pod is on, when the pod is terminating or PostgreSQL did not
    /// answer (`None`: not looked at).
    pub node_ready: Option<bool>,
}

impl InstanceView {
    /// Accepts writes right now, as far as PostgreSQL says.
    pub fn is_primary(&self) -> bool {
        self.reachable && self.in_recovery == Some(false)
    }

    /// Reachable and in recovery.
    pub fn is_standby(&self) -> bool {
        self.reachable && self.in_recovery == Some(true)
    }

    /// Scaled to zero and its pod is gone: it cannot run PostgreSQL at all.
    pub fn scaled_away(&self) -> bool {
        self.sts_replicas == 0 && !self.pod_exists
    }

    /// The most WAL this standby holds (received or replayed).
    pub fn wal_end(&self) -> Option<Lsn> {
        match (self.receive_lsn, self.replay_lsn) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Another Switchover of the same cluster that is not terminal.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveSwitchover {
    pub name: String,
    pub mode: Mode,
    pub phase: Phase,
    pub created: DateTime<Utc>,
}

/// The claim on a cluster's one role move: the `relevo.dev/role-move` annotation of the
/// PgCluster ([`crate::protocol::markers::ROLE_MOVE`]), set and cleared only by a
/// compare-and-swap on the PgCluster's resourceVersion. A Switchover leaves Pending only
/// while it holds the claim, so two Switchovers never act on one cluster at once, whatever
/// a (possibly stale) list of Switchovers says.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RoleMove {
    /// The Switchover the annotation names, if any.
    pub holder: Option<String>,
    /// That Switchover exists and has not ended (read from the API, not from a cache). A
    /// claim whose holder ended or was deleted is free to take over.
    pub holder_active: bool,
    /// The PgCluster's resourceVersion as read: the precondition of a claim.
    pub cluster_version: String,
}

/// The cluster as observed for one decision.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Observed {
    /// The PgCluster named by the request exists.
    pub cluster_exists: bool,
    /// The primary recorded in the PgCluster status (the only way to name a lost primary).
    pub current_primary: Option<String>,
    pub instances: Vec<InstanceView>,
    /// Non-terminal Switchovers of this cluster (this one may be among them; it is skipped).
    pub active_switchovers: Vec<ActiveSwitchover>,
    /// The cluster's primary Lease as the operator has seen it (`None`: not seen).
    pub lease: Option<crate::lease::LeaseView>,
    /// The cluster's one role move: who holds it, and the version a claim must match.
    pub role_move: RoleMove,
    /// Since when this operator has been leading. No phase timeout counts time before it: a
    /// replacement operator that takes over mid-phase after a minute without any operator
    /// gives the phase its full timeout, instead of failing it for waits nobody watched.
    pub watching_since: Option<DateTime<Utc>>,
    /// With synchronous replication: who may take over from a lost primary. `None`: any
    /// standby (asynchronous replication).
    pub synchronous_standbys: Option<SynchronousStandbys>,
    /// The cluster's pooler pods (none without `spec.pooler`), as their control channel
    /// answered.
    pub poolers: Vec<PoolerView>,
}

/// One pooler pod as its control channel answered.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PoolerView {
    pub pod: String,
    /// `None`: it did not answer.
    pub state: Option<crate::protocol::pooler::PauseState>,
    /// The instance whose pod address it points at; `None` for anything else (`-rw`).
    pub points_at: Option<String>,
}

impl PoolerView {
    pub fn resumed_at(&self, primary: &str) -> bool {
        self.state == Some(crate::protocol::pooler::PauseState::Running)
            && self.points_at.as_deref() == Some(primary)
    }
}

/// The standbys a lost primary last reported as synchronous (`PgCluster.status.synchronous`),
/// and how many of them a failover must see to know which one holds every acknowledged commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynchronousStandbys {
    pub standbys: Vec<String>,
    /// Each acknowledged commit is on at least `standbys.len() - must_see + 1` of them: on all
    /// of them under FIRST (`must_see` 1), on `number` of them under ANY (`must_see` n - number
    /// + 1). Seeing fewer, the newest commit may be on none of those seen.
    pub must_see: usize,
}

impl Observed {
    pub fn instance(&self, name: &str) -> Option<&InstanceView> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// Instances that report they are out of recovery.
    pub fn primaries(&self) -> Vec<&InstanceView> {
        self.instances.iter().filter(|i| i.is_primary()).collect()
    }
}

/// Tunables; every wait is bounded by one of these.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// A planned target may be at most this many bytes of replay behind the primary.
    pub max_lag_bytes: u64,
    /// How long a Switchover may wait for another one of the same cluster.
    pub queue_timeout: Duration,
    pub fence_timeout: Duration,
    pub catchup_timeout: Duration,
    /// Failover: how long to let the target replay what it already received before promoting
    /// anyway (promotion replays the received WAL in any case; waiting only makes the
    /// recorded promotion LSN exact).
    pub failover_replay_wait: Duration,
    pub promote_timeout: Duration,
    pub rebuild_timeout: Duration,
    /// A re-pointed standby that still does not stream after this long is rebuilt.
    pub repoint_grace: Duration,
    /// How long to retry the clean-up of a failing switchover before giving up on it.
    pub cleanup_timeout: Duration,
    /// `wait_seconds` passed to `pg_promote()`.
    pub promote_wait_seconds: u32,
    /// How long a switchover waits for every pooler pod to confirm its PAUSE before it goes
    /// on without holding the clients of those that did not.
    pub pooler_pause_timeout: Duration,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            max_lag_bytes: 16 * 1024 * 1024,
            queue_timeout: Duration::from_secs(600),
            fence_timeout: Duration::from_secs(30),
            catchup_timeout: Duration::from_secs(30),
            failover_replay_wait: Duration::from_secs(2),
            promote_timeout: Duration::from_secs(60),
            rebuild_timeout: Duration::from_secs(300),
            repoint_grace: Duration::from_secs(15),
            cleanup_timeout: Duration::from_secs(60),
            promote_wait_seconds: 30,
            pooler_pause_timeout: Duration::from_secs(5),
        }
    }
}

/// One idempotent action for the controller. See the module doc of `machine` for how the
/// executor makes each of them harmless to repeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The request is invalid; nothing was changed. Terminal.
    Reject {
        reason: String,
    },
    /// Take the cluster's role move ([`RoleMove`]) for `switchover`: set the annotation with
    /// `cluster_version` as the precondition. A conflict means someone else wrote the
    /// PgCluster first; the next decision sees who.
    ClaimRoleMove {
        switchover: String,
        cluster_version: String,
    },
    /// Another Switchover of the cluster goes first.
    WaitForTurn {
        behind: String,
    },
    /// `CHECKPOINT` on the instance.
    Checkpoint {
        instance: String,
    },
    /// Planned fence: set the fence marker; the instance manager fast-shuts PostgreSQL down and
    /// restarts it in recovery with no upstream.
    Fence {
        instance: String,
    },
    /// Failover fence (and rogue-primary fence): StatefulSet replicas = 0. A second fence:
    /// nothing waits for the pod to go, since its node may be dead or cut off.
    ScaleToZero {
        instance: String,
    },
    /// Failover: take the primary Lease from the lost primary, by a compare-and-swap on the
    /// version that was judged expired (a renewal since makes it fail).
    RevokeLease {
        from: String,
        resource_version: String,
    },
    /// Before promotion: the primary Lease names the target (taken from `from`, or from
    /// nobody after a revocation).
    HandOverLease {
        from: String,
        to: String,
    },
    /// Delete a terminating pod at once: only for a pod whose node is not ready and whose
    /// instance no longer holds the Lease, so it cannot be writing (see `machine`).
    ForceDeletePod {
        instance: String,
    },
    WaitForFence {
        instance: String,
    },
    /// Remove the fence marker and make sure replicas = 1.
    Unfence {
        instance: String,
    },
    WaitForUnfence {
        instance: String,
    },
    WaitForCatchUp {
        target: String,
        lsn: Lsn,
    },
    /// `pg_promote(wait => true)`, guarded by `pg_is_in_recovery()`.
    Promote {
        target: String,
        wait_seconds: u32,
    },
    WaitForPromotion {
        target: String,
    },
    /// Set `relevo.dev/role` on every pod that exists.
    MoveRoleLabels {
        primary: String,
        standbys: Vec<String>,
    },
    /// Create missing / drop unwanted relevo slots on the instance.
    FixSlots {
        instance: String,
        wanted: Vec<String>,
    },
    /// Make a fenced standby follow the new primary: its fence markers are removed, and its
    /// instance manager restarts it with `<cluster>-rw` as upstream.
    RepointStandby {
        instance: String,
        new_primary: String,
    },
    /// Rebuild the instance from `source` (pg_rewind, falling back to pg_basebackup), by
    /// setting the rebuild marker with `token` and replicas = 1.
    Rebuild {
        instance: String,
        source: String,
        token: String,
    },
    WaitForStandbys {
        pending: Vec<String>,
    },
    /// PAUSE each pooler pod (a repeated PAUSE restarts its bound): new transactions wait,
    /// in-flight ones finish.
    PausePoolers {
        pods: Vec<String>,
    },
    /// Point each pooler pod at `primary`'s own pod address, then RESUME it.
    ResumePoolers {
        pods: Vec<String>,
        primary: String,
    },
    /// Entered Completed.
    Complete,
    /// Entered Failed after something was changed.
    Fail {
        reason: String,
    },
    /// Already terminal: nothing to do.
    Done,
}

/// The machine's answer: run `step`, after persisting `state`.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub step: Step,
    pub state: SwitchoverState,
}
