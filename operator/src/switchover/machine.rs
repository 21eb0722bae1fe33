//! The switchover state machine: a pure function from (request, persisted state, observed
//! cluster, now) to the next [`Step`] and the state to persist.
//!
//! # Contract with the controller: persist, then execute
//! The controller writes `Decision::state` to the Switchover status first (with optimistic
//! concurrency on resourceVersion), and only then executes `Decision::step`. The persisted
//! state therefore never lags behind what may have happened: once `Promoting` is stored, a
//! promotion may be under way, and the old primary is never given its role back. A crash
//! between the two leaves the same state, so the next run computes the same step again; that
//! is why every step must be harmless to repeat:
//!
//! | step | how the executor makes it idempotent |
//! |---|---|
//! | Checkpoint | `CHECKPOINT` twice is two checkpoints; the second is cheap |
//! | Fence | server-side apply of the fence marker (same content = no-op); the instance manager acts on the marker's presence, not on the write |
//! | ScaleToZero, Unfence, Rebuild | a merge patch of replicas / markers on the StatefulSet (the same values = no change); Rebuild's token (the Switchover name) makes the instance manager rebuild once per switchover |
//! | Promote | `SELECT CASE WHEN pg_is_in_recovery() THEN pg_promote(...) ELSE true END` |
//! | MoveRoleLabels | server-side apply of labels |
//! | FixSlots | create only if absent, drop only if present (see `sql.rs`) |
//! | RepointStandby | removal of the fence markers (absent = no-op); the instance manager then restarts the standby following `<cluster>-rw` |
//! | Reject, Fail, Complete, Done, Wait* | no side effect but an Event, emitted only on a phase change |
//!
//! # Planned switchover and its fence
//! The fence is a *clean fast shutdown followed by a restart in recovery* ("demotion"): the
//! executor sets a fence marker, and the instance manager in the pod runs `pg_ctl stop -m
//! fast` and starts PostgreSQL again with `standby.signal` and no upstream. Why this and not
//! `default_transaction_read_only` or a synchronous-commit trick: those are session settings a
//! client can override, so a write could still be acknowledged after we read the final LSN.
//! A server in recovery cannot write at all. Why it loses no acknowledged commit:
//! 1. a fast shutdown ends every session, so nothing is acknowledged afterwards, and every
//!    commit acknowledged before it lies below the shutdown checkpoint;
//! 2. at shutdown the walsenders send all WAL up to and including the shutdown checkpoint,
//!    and wait for the standbys to confirm it, before exiting;
//! 3. after the restart the fenced instance reports `pg_last_wal_replay_lsn()` = the end of
//!    its own WAL = its final LSN, over SQL, with no exec into the pod: that is `fence_lsn`;
//! 4. the target is promoted only once its replay LSN has reached `fence_lsn` on the same
//!    timeline, i.e. it holds every record the old primary ever wrote. If the walsender could
//!    not deliver everything, the target catches up by streaming from the fenced instance
//!    (a standby can feed a cascade), or the switchover aborts and unfences.
//!
//! Because the old primary's WAL ends exactly where the new timeline forks, it can follow the
//! new primary with a plain re-point; pg_rewind is needed only if it diverged anyway. A CHECKPOINT
//! on the old primary before the fence keeps the shutdown checkpoint, and so the
//! write-unavailable window, short.
//!
//! # Failover
//! The lost primary is fenced by scaling its StatefulSet to zero and by its primary Lease:
//! once the Lease is expired (its instance manager stops accepting writes before that) the
//! operator revokes it with a compare-and-swap, so nothing waits for a pod on a dead or
//! cut-off node to go away. Then the standby with the most WAL is promoted, and the lost
//! instance is scaled back to one with a rebuild marker, so it comes back as a standby.
//!
//! # Timeouts and a missing operator
//! Every wait is bounded by a [`Params`] timeout, counted from the phase's start or from the
//! moment this operator started leading, whichever is later: an operator that takes over
//! after its predecessor's node died does not fail a phase for the time nobody watched it.
//!
//! # Never two primaries
//! Before promotion, a failure unfences the old primary (it is still the only one). From
//! `Promoting` on, a failure never unfences it; any instance other than the target found
//! accepting writes is scaled to zero before the switchover ends Failed.

use chrono::{DateTime, Utc};

use super::model::{Decision, Mode, Observed, Params, Phase, Request, Step, SwitchoverState};

mod phases;
mod poolers;
mod rebuilding;
mod select;

pub use select::{failover_candidate, no_failover_candidate_reason, planned_candidate};

/// Computes the next step. Pure: same input, same output.
pub fn next(
    request: &Request,
    state: &SwitchoverState,
    observed: &Observed,
    params: &Params,
    now: DateTime<Utc>,
) -> Decision {
    let mut ctx = Ctx { req: request, obs: observed, params, now, s: state.clone() };
    if ctx.s.phase.is_terminal() {
        return Decision { step: Step::Done, state: ctx.s };
    }
    if ctx.s.phase_times.is_empty() {
        ctx.s.enter(Phase::Pending, now);
    }
    // Each transition either yields a step or moves to a new phase to be evaluated at once, so
    // a single reconcile can go Fencing -> CatchingUp -> Promoting without waiting. Phases
    // only move forward, so the loop ends; the bound is a safety net against a bug.
    for _ in 0..8 {
        match ctx.decide() {
            Flow::Step(step) => return Decision { step, state: ctx.s },
            Flow::Continue => {}
        }
    }
    let step = ctx.fail("internal error: the switchover state machine did not settle".into());
    Decision { step, state: ctx.s }
}

pub(crate) enum Flow {
    Step(Step),
    /// The phase changed; evaluate again.
    Continue,
}

impl From<Step> for Flow {
    fn from(step: Step) -> Self {
        Flow::Step(step)
    }
}

pub(crate) struct Ctx<'a> {
    pub req: &'a Request,
    pub obs: &'a Observed,
    pub params: &'a Params,
    pub now: DateTime<Utc>,
    pub s: SwitchoverState,
}

impl Ctx<'_> {
    fn decide(&mut self) -> Flow {
        if self.s.phase.is_terminal() {
            return Step::Done.into();
        }
        if !self.obs.cluster_exists {
            let reason = format!("PgCluster {:?} not found", self.req.cluster);
            return if self.s.phase == Phase::Pending { self.reject(reason) } else { self.fail(reason) }
                .into();
        }
        if self.s.failing_since.is_some() {
            return self.clean_up_failure().into();
        }
        match (self.s.phase, self.req.mode) {
            (Phase::Pending, _) => self.pending(),
            (Phase::Fencing, Mode::Planned) => self.fencing_planned(),
            (Phase::Fencing, Mode::Failover) => self.fencing_failover(),
            (Phase::CatchingUp, Mode::Planned) => self.catching_up_planned(),
            (Phase::CatchingUp, Mode::Failover) => self.catching_up_failover(),
            (Phase::Promoting, _) => self.promoting(),
            (Phase::Rebuilding, _) => self.rebuilding(),
            (Phase::Completed | Phase::Failed, _) => Step::Done.into(),
        }
    }

    /// Has the current phase lasted longer than `limit`, counting only time this operator
    /// watched it ([`Observed::watching_since`])?
    pub(crate) fn timed_out(&self, limit: std::time::Duration) -> bool {
        let since = self.s.entered(self.s.phase).unwrap_or(self.now);
        elapsed(self.watched_from(since), self.now) >= limit
    }

    /// `since`, or the moment this operator started leading if that is later.
    fn watched_from(&self, since: DateTime<Utc>) -> DateTime<Utc> {
        self.obs.watching_since.map_or(since, |leading| since.max(leading))
    }

    /// Invalid request: Failed, nothing changed.
    pub(crate) fn reject(&mut self, reason: String) -> Step {
        self.s.reason = Some(reason.clone());
        self.s.enter(Phase::Failed, self.now);
        Step::Reject { reason }
    }

    /// Failed with no clean-up left to do.
    pub(crate) fn fail(&mut self, reason: String) -> Step {
        self.s.reason = Some(reason.clone());
        self.s.failing_since = None;
        self.s.enter(Phase::Failed, self.now);
        Step::Fail { reason }
    }

    /// A failure that needs clean-up first: before promotion, unfence the old primary; after
    /// it, fence any rogue primary. The phase stays until the clean-up is observed.
    pub(crate) fn begin_failure(&mut self, reason: String) -> Flow {
        self.s.reason = Some(reason);
        self.s.failing_since = Some(self.now);
        Flow::Continue
    }

    fn clean_up_failure(&mut self) -> Step {
        let reason = self.s.reason.clone().unwrap_or_else(|| "failed".into());
        let since = self.watched_from(self.s.failing_since.unwrap_or(self.now));
        let gave_up = elapsed(since, self.now) >= self.params.cleanup_timeout;
        if self.s.phase.promotion_may_have_happened() {
            let target = self.s.to.clone().unwrap_or_default();
            let rogue = self.obs.instances.iter().find(|i| i.name != target && i.is_primary());
            return match rogue {
                None => {
                    let writable = self.obs.instance(&target).is_some_and(|t| t.is_primary());
                    let resume = writable.then(|| self.resume_poolers_on(&target, gave_up)).flatten();
                    resume.unwrap_or_else(|| self.fail(reason))
                }
                Some(r) if gave_up => {
                    let name = r.name.clone();
                    self.fail(format!("{reason}; could not fence {name}: fence it by hand"))
                }
                Some(r) if r.sts_replicas != 0 => Step::ScaleToZero { instance: r.name.clone() },
                Some(r) => Step::WaitForFence { instance: r.name.clone() },
            };
        }
        let Some(from_name) = self.s.from.clone() else { return self.fail(reason) };
        if let Some(other) = self.obs.instances.iter().find(|i| i.name != from_name && i.is_primary()) {
            let other = other.name.clone();
            return self.resume_poolers_on(&other, gave_up).unwrap_or_else(|| {
                self.fail(format!("{reason}; {other} accepts writes, so {from_name} stays fenced"))
            });
        }
        let Some(from) = self.obs.instance(&from_name) else { return self.fail(reason) };
        let unfenced = match self.req.mode {
            Mode::Planned => from.is_primary() && !from.fence_marker,
            Mode::Failover => from.sts_replicas > 0 && !from.fence_marker,
        };
        if unfenced {
            let writable = from.is_primary();
            let resume = writable.then(|| self.resume_poolers_on(&from_name, gave_up)).flatten();
            return resume.unwrap_or_else(|| self.fail(reason));
        }
        if gave_up {
            return self.fail(format!("{reason}; could not unfence {from_name}: restore it by hand"));
        }
        if from.fence_marker || from.sts_replicas == 0 {
            Step::Unfence { instance: from_name }
        } else {
            Step::WaitForUnfence { instance: from_name }
        }
    }
}

pub(crate) fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> std::time::Duration {
    (now - since).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests;
