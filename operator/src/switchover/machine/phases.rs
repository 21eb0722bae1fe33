//! One method per phase. Each returns the step to run, or `Flow::Continue` after entering the
//! next phase. The guards at the top of each method are the safety rules; read them first.

use super::select::{
    failover_candidate, failover_target_check, no_failover_candidate_reason, planned_candidate,
    planned_target_problem,
};
use super::{Ctx, Flow, elapsed};
use crate::protocol::pooler::PauseState;
use crate::switchover::model::{ActiveSwitchover, InstanceView, Mode, Phase, Role, Step};

/// Failover Switchovers go before planned ones, then the oldest, then by name.
fn queue_key(mode: Mode, created: chrono::DateTime<chrono::Utc>, name: &str) -> (bool, i64, String) {
    (mode != Mode::Failover, created.timestamp_micros(), name.to_owned())
}

impl Ctx<'_> {
    fn instance(&self, name: &Option<String>) -> Option<&InstanceView> {
        name.as_deref().and_then(|n| self.obs.instance(n))
    }

    /// The Switchover this one must wait for, if any: one already started, or one ahead in
    /// the queue.
    fn ahead_of_us(&self) -> Option<&ActiveSwitchover> {
        let mine = queue_key(self.req.mode, self.req.created, &self.req.name);
        let others = self.obs.active_switchovers.iter().filter(|o| o.name != self.req.name);
        let mut ahead: Vec<&ActiveSwitchover> = others
            .filter(|o| o.phase != Phase::Pending || queue_key(o.mode, o.created, &o.name) < mine)
            .collect();
        ahead.sort_by_key(|o| (o.phase == Phase::Pending, queue_key(o.mode, o.created, &o.name)));
        ahead.first().copied()
    }

    pub(super) fn pending(&mut self) -> Flow {
        if let Some(other) = self.ahead_of_us() {
            let other = other.name.clone();
            if self.timed_out(self.params.queue_timeout) {
                let waited = self.params.queue_timeout.as_secs();
                return self
                    .reject(format!("waited {waited}s for switchover {other} of the same cluster"))
                    .into();
            }
            return Step::WaitForTurn { behind: other }.into();
        }
        match self.req.mode {
            Mode::Planned => self.pending_planned(),
            Mode::Failover => self.pending_failover(),
        }
    }

    fn pending_planned(&mut self) -> Flow {
        let primaries = self.obs.primaries();
        if primaries.len() > 1 {
            let names: Vec<&str> = primaries.iter().map(|p| p.name.as_str()).collect();
            return self
                .reject(format!("two primaries observed ({}): refusing to act", names.join(", ")))
                .into();
        }
        let Some(primary) = primaries.first().copied() else {
            return self.reject("no reachable primary: use mode Failover for a lost primary".into()).into();
        };
        if !primary.ready {
            return self.reject(format!("primary {} is not ready: use mode Failover", primary.name)).into();
        }
        if let Some(from) = &self.s.from
            && from != &primary.name
        {
            let reason =
                format!("the primary changed from {from} to {} before the switchover started", primary.name);
            return self.reject(reason).into();
        }
        let wanted = self.s.to.clone().or_else(|| self.req.target.clone());
        let target = match wanted {
            Some(name) => match self.obs.instance(&name) {
                None => {
                    return self.reject(format!("target {name} is not an instance of this cluster")).into();
                }
                Some(t) if t.name == primary.name => {
                    return self.reject(format!("target {name} is already the primary")).into();
                }
                Some(t) => match planned_target_problem(t, primary, self.params.max_lag_bytes) {
                    Some(problem) => return self.reject(problem).into(),
                    None => t,
                },
            },
            None => match planned_candidate(self.obs, primary, self.params.max_lag_bytes) {
                Ok(t) => t,
                Err(problem) => return self.reject(problem).into(),
            },
        };
        if self.s.from.is_none() {
            // First pass: record the choice and checkpoint the primary, so that the shutdown
            // checkpoint inside the fence (and the write-unavailable window) stays short.
            // Skipped if the operator restarts right here: an optimisation, not a guarantee.
            self.s.from = Some(primary.name.clone());
            self.s.to = Some(target.name.clone());
            return Step::Checkpoint { instance: primary.name.clone() }.into();
        }
        if let Some(flow) = self.without_the_role_move() {
            return flow;
        }
        // Before the fence: clients wait in the pooler instead of failing on a fenced primary.
        if let Some(flow) = self.hold_poolers(|state| state == PauseState::Paused) {
            return flow;
        }
        self.s.enter(Phase::Fencing, self.now);
        Flow::Continue
    }

    /// `None` once this Switchover holds the cluster's role move; otherwise the step that
    /// claims it (free, or held by a Switchover that ended) or waits for its holder.
    fn without_the_role_move(&self) -> Option<Flow> {
        let claim = &self.obs.role_move;
        match claim.holder.as_deref() {
            Some(holder) if holder == self.req.name => None,
            Some(holder) if claim.holder_active => {
                Some(Step::WaitForTurn { behind: holder.to_owned() }.into())
            }
            _ => Some(
                Step::ClaimRoleMove {
                    switchover: self.req.name.clone(),
                    cluster_version: claim.cluster_version.clone(),
                }
                .into(),
            ),
        }
    }

    fn pending_failover(&mut self) -> Flow {
        let Some(lost_name) = self.obs.current_primary.clone() else {
            return self.reject("the cluster has no recorded primary to fail over from".into()).into();
        };
        let Some(lost) = self.obs.instance(&lost_name) else {
            return self.reject(format!("the recorded primary {lost_name} is not an instance")).into();
        };
        if lost.is_primary() && lost.ready {
            return self
                .reject(format!("primary {lost_name} is reachable and ready: use mode Planned"))
                .into();
        }
        if let Some(other) = self.obs.primaries().into_iter().find(|p| p.name != lost_name) {
            return self.reject(format!("{} is already out of recovery", other.name)).into();
        }
        match self.req.target.clone() {
            Some(name) if name == lost_name => {
                return self.reject(format!("target {name} is the lost primary")).into();
            }
            Some(name) => {
                let Some(target) = self.obs.instance(&name) else {
                    return self.reject(format!("target {name} is not an instance of this cluster")).into();
                };
                if let Some(problem) =
                    failover_target_check(self.obs, &lost_name, target, self.params.max_lag_bytes)
                {
                    return self.reject(problem).into();
                }
                self.s.to = Some(name);
            }
            None if failover_candidate(self.obs, &lost_name).is_none() => {
                let reason =
                    no_failover_candidate_reason(self.obs, &lost_name, "no healthy standby to promote");
                return self.reject(reason).into();
            }
            None => {}
        }
        if let Some(flow) = self.without_the_role_move() {
            return flow;
        }
        // The lost primary cannot finish anyone's transaction: an answer is enough, no drain.
        if let Some(flow) = self.hold_poolers(|state| state != PauseState::Running) {
            return flow;
        }
        self.s.from = Some(lost_name);
        self.s.enter(Phase::Fencing, self.now);
        Flow::Continue
    }

    /// Before promotion: an instance other than the old primary accepting writes was promoted
    /// behind our back. If it is our target, carry on from Promoting (the old primary is
    /// fenced); otherwise stop, leaving the old primary fenced.
    fn foreign_primary_before_promotion(&mut self) -> Option<Flow> {
        let from = self.s.from.clone().unwrap_or_default();
        let other = self.obs.primaries().into_iter().find(|p| p.name != from)?.name.clone();
        if Some(&other) == self.s.to.as_ref() {
            self.s.promotion_lsn = self.s.promotion_lsn.or(self.s.fence_lsn);
            self.s.enter(Phase::Promoting, self.now);
            return Some(Flow::Continue);
        }
        Some(self.fail(format!("{other} was promoted outside this switchover; {from} stays fenced")).into())
    }

    pub(super) fn fencing_planned(&mut self) -> Flow {
        let from_name = self.s.from.clone().unwrap_or_default();
        let Some(from) = self.obs.instance(&from_name) else {
            return self.fail(format!("old primary {from_name} disappeared during fencing")).into();
        };
        if self.instance(&self.s.to).is_none() {
            let to = self.s.to.clone().unwrap_or_default();
            return self.begin_failure(format!("target {to} disappeared during fencing"));
        }
        if let Some(flow) = self.foreign_primary_before_promotion() {
            return flow;
        }
        if from.fence_marker && from.is_standby() {
            let Some(fence_lsn) = from.replay_lsn else {
                return Step::WaitForFence { instance: from_name }.into();
            };
            self.s.fence_lsn = Some(fence_lsn);
            self.s.enter(Phase::CatchingUp, self.now);
            return Flow::Continue;
        }
        if self.lost_during_planned(from) {
            // Nothing it could acknowledge will come. Its fence is lifted in the annotation (a
            // returning instance resumes only if its Lease was not revoked meanwhile), and the
            // switchover ends, so that automatic failover may pick the best standby now.
            if from.fence_marker {
                return Step::Unfence { instance: from_name }.into();
            }
            return self
                .fail(format!(
                    "old primary {from_name} was lost during the switchover: it does not answer and its \
                     primary Lease has expired; automatic failover, when enabled, takes over"
                ))
                .into();
        }
        if self.timed_out(self.params.fence_timeout) {
            let secs = self.params.fence_timeout.as_secs();
            return self.begin_failure(format!("old primary {from_name} was not fenced within {secs}s"));
        }
        if from.fence_marker {
            Step::WaitForFence { instance: from_name }
        } else {
            Step::Fence { instance: from_name }
        }
        .into()
    }

    pub(super) fn catching_up_planned(&mut self) -> Flow {
        let from_name = self.s.from.clone().unwrap_or_default();
        let to_name = self.s.to.clone().unwrap_or_default();
        // Not persisted (an older status)? The fenced instance has no upstream, so its replay
        // LSN is still its final one.
        let fenced_end = self
            .obs
            .instance(&from_name)
            .filter(|f| f.fence_marker && f.is_standby())
            .and_then(|f| f.replay_lsn);
        let Some(fence_lsn) = self.s.fence_lsn.or(fenced_end) else {
            if self.timed_out(self.params.catchup_timeout) {
                return self.begin_failure(format!("the final LSN of the fenced {from_name} is unknown"));
            }
            return Step::WaitForFence { instance: from_name }.into();
        };
        self.s.fence_lsn = Some(fence_lsn);
        let Some(target) = self.obs.instance(&to_name) else {
            return self.begin_failure(format!("target {to_name} disappeared while catching up"));
        };
        if let Some(flow) = self.foreign_primary_before_promotion() {
            return flow;
        }
        let from = self.obs.instance(&from_name);
        if from.is_some_and(|f| f.is_primary()) {
            return self
                .begin_failure(format!("old primary {from_name} left the fence and accepts writes again"));
        }
        let replayed = target.replay_lsn.filter(|r| target.is_standby() && *r >= fence_lsn);
        let old_timeline = from.and_then(|f| f.timeline);
        if let (Some(old), Some(new)) = (old_timeline, target.timeline)
            && old != new
        {
            let mismatch = format!("target {to_name} is on timeline {new}, the old primary on {old}");
            // A standby whose WAL receiver is down reports the timeline of its last restartpoint,
            // which lags what it replayed. Once it holds the final LSN, a restartpoint (CHECKPOINT
            // on the standby) moves it to the fence's shutdown checkpoint and shows the truth.
            if new > old || self.timed_out(self.params.catchup_timeout) {
                return self.begin_failure(mismatch);
            }
            return match replayed {
                Some(_) => Step::Checkpoint { instance: to_name },
                None => Step::WaitForCatchUp { target: to_name, lsn: fence_lsn },
            }
            .into();
        }
        if let Some(replayed) = replayed {
            self.s.promotion_lsn = Some(replayed);
            self.s.enter(Phase::Promoting, self.now);
            return Flow::Continue;
        }
        if self.timed_out(self.params.catchup_timeout) {
            let secs = self.params.catchup_timeout.as_secs();
            let replayed = target.replay_lsn.map_or("nothing".to_string(), |l| l.to_string());
            return self.begin_failure(format!(
                "target {to_name} did not replay the old primary's final LSN {fence_lsn} within {secs}s (replayed {replayed})"
            ));
        }
        Step::WaitForCatchUp { target: to_name, lsn: fence_lsn }.into()
    }

    /// The old primary of a planned switchover is lost: it does not answer, and the primary
    /// Lease still names it but has expired on this operator's clock. Its instance manager,
    /// if it runs at all, fenced itself before that (as when its node died with the operator
    /// that sent the fence).
    fn lost_during_planned(&self, from: &InstanceView) -> bool {
        !from.reachable && self.obs.lease.as_ref().is_some_and(|l| l.held_by(&from.name) && l.expired())
    }

    /// Is the lost primary unable to accept writes? With a primary Lease, only once the Lease
    /// no longer names it: its instance manager stops writing before the Lease can expire,
    /// and the revocation is a compare-and-swap on the expired version. Without one (a
    /// cluster from before Leases), only once its pod is gone.
    fn lost_primary_fenced(&self, from: &str) -> bool {
        match &self.obs.lease {
            Some(lease) => !lease.held_by(from),
            None => self.obs.instance(from).is_none_or(InstanceView::scaled_away),
        }
    }

    /// The step that fences the lost primary, while [`Self::lost_primary_fenced`] is false.
    /// Nothing waits for its pod to go away: its node may be dead or cut off.
    fn fence_lost_primary(&mut self, from_name: &str) -> Flow {
        let from = self.obs.instance(from_name);
        let replicas = from.map_or(0, |f| f.sts_replicas);
        if replicas != 0 {
            return Step::ScaleToZero { instance: from_name.to_owned() }.into();
        }
        if let Some(lease) = &self.obs.lease {
            // Reachable and in recovery is not writing now; taking the Lease at this version
            // (it must not have been renewed since) keeps it from coming back on its own.
            let confirmed_down = from.is_some_and(InstanceView::is_standby);
            if lease.expired() || confirmed_down {
                return Step::RevokeLease {
                    from: from_name.to_owned(),
                    resource_version: lease.resource_version.clone(),
                }
                .into();
            }
        }
        if self.timed_out(self.params.fence_timeout) {
            let secs = self.params.fence_timeout.as_secs();
            let why = match &self.obs.lease {
                Some(_) => "it still renews the primary lease, so it is alive: not promoting another",
                None => "its pod still exists and the cluster has no primary lease",
            };
            return self
                .begin_failure(format!("lost primary {from_name} was not fenced within {secs}s: {why}"));
        }
        Step::WaitForFence { instance: from_name.to_owned() }.into()
    }

    pub(super) fn fencing_failover(&mut self) -> Flow {
        let from_name = self.s.from.clone().unwrap_or_default();
        if let Some(other) = self.obs.primaries().into_iter().find(|p| p.name != from_name) {
            let other = other.name.clone();
            return self.fail(format!("{other} is out of recovery; {from_name} stays fenced")).into();
        }
        if !self.lost_primary_fenced(&from_name) {
            return self.fence_lost_primary(&from_name);
        }
        if self.s.to.is_none() {
            // The lost primary is fenced, so the standbys' WAL can only grow by replay now:
            // this is the moment to compare them.
            match failover_candidate(self.obs, &from_name) {
                Some(best) => self.s.to = Some(best.name.clone()),
                None => {
                    let no_candidate = "no healthy standby left to promote";
                    return self.begin_failure(no_failover_candidate_reason(
                        self.obs,
                        &from_name,
                        no_candidate,
                    ));
                }
            }
        }
        self.s.enter(Phase::CatchingUp, self.now);
        Flow::Continue
    }

    pub(super) fn catching_up_failover(&mut self) -> Flow {
        let from_name = self.s.from.clone().unwrap_or_default();
        let to_name = self.s.to.clone().unwrap_or_default();
        if !self.lost_primary_fenced(&from_name) {
            // The Lease names the lost primary again, or its pod came back: fence it again
            // before promoting.
            if self.timed_out(self.params.catchup_timeout) {
                return self
                    .begin_failure(format!("lost primary {from_name} keeps coming back; not promoting"));
            }
            return self.fence_lost_primary(&from_name);
        }
        let Some(target) = self.obs.instance(&to_name) else {
            return self.begin_failure(format!("target {to_name} disappeared before promotion"));
        };
        if let Some(flow) = self.foreign_primary_before_promotion() {
            return flow;
        }
        if !target.is_standby() {
            if self.timed_out(self.params.catchup_timeout) {
                let secs = self.params.catchup_timeout.as_secs();
                return self.begin_failure(format!("target {to_name} was not reachable within {secs}s"));
            }
            return Step::WaitForCatchUp { target: to_name, lsn: target.wal_end().unwrap_or_default() }
                .into();
        }
        let wal_end = target.wal_end().unwrap_or_default();
        let replayed = target.replay_lsn.unwrap_or_default();
        if replayed >= wal_end || self.timed_out(self.params.failover_replay_wait) {
            self.s.promotion_lsn = Some(wal_end);
            self.s.enter(Phase::Promoting, self.now);
            return Flow::Continue;
        }
        Step::WaitForCatchUp { target: to_name, lsn: wal_end }.into()
    }

    /// After promotion may have happened: any instance but the target accepting writes is a
    /// split brain. Fence it (scale to zero) and end Failed once it is fenced.
    pub(super) fn rogue_primary(&mut self) -> Option<Flow> {
        let to = self.s.to.clone().unwrap_or_default();
        let rogue = self.obs.primaries().into_iter().find(|p| p.name != to)?.name.clone();
        Some(self.begin_failure(format!(
            "two primaries observed ({to} and {rogue}): {rogue} is fenced by scaling it to zero"
        )))
    }

    /// Labels wanted on every pod that exists: the target is the primary, the rest standbys.
    pub(super) fn labels_wrong(&self, primary: &str) -> Option<Step> {
        let pods = self.obs.instances.iter().filter(|i| i.pod_exists);
        let wrong = pods.clone().any(|i| {
            let want = if i.name == primary { Role::Primary } else { Role::Standby };
            i.role_label != Some(want)
        });
        wrong.then(|| Step::MoveRoleLabels {
            primary: primary.to_owned(),
            standbys: pods.filter(|i| i.name != primary).map(|i| i.name.clone()).collect(),
        })
    }

    pub(super) fn promoting(&mut self) -> Flow {
        let to_name = self.s.to.clone().unwrap_or_default();
        let from_name = self.s.from.clone().unwrap_or_default();
        let Some(target) = self.obs.instance(&to_name).cloned() else {
            return self
                .fail(format!(
                    "target {to_name} disappeared after promotion was requested; {from_name} stays fenced"
                ))
                .into();
        };
        if let Some(flow) = self.rogue_primary() {
            return flow;
        }
        if !target.is_primary() {
            // Promotion only ever follows the Lease: the old primary stops writing when it
            // sees another name there (planned) or has already (failover, revoked).
            let lease_is_targets = self.obs.lease.as_ref().is_some_and(|l| l.held_by(&to_name));
            if !lease_is_targets && !self.timed_out(self.params.promote_timeout) {
                return Step::HandOverLease { from: from_name, to: to_name }.into();
            }
            if self.timed_out(self.params.promote_timeout) {
                let secs = self.params.promote_timeout.as_secs();
                return self
                    .fail(format!(
                        "target {to_name} was not promoted within {secs}s; {from_name} stays fenced \
                         (create a Failover Switchover to recover)"
                    ))
                    .into();
            }
            let step = if target.is_standby() {
                Step::Promote { target: to_name, wait_seconds: self.params.promote_wait_seconds }
            } else {
                Step::WaitForPromotion { target: to_name }
            };
            return step.into();
        }
        // Writable: the held clients go on, straight to the new primary's own pod.
        if let Some(flow) = self.release_poolers(&to_name) {
            return flow;
        }
        self.s.promotion_timeline = self.s.promotion_timeline.or(target.timeline);
        if let Some(step) = self.labels_wrong(&to_name) {
            if self.s.write_unavailable.is_none() {
                let fenced_at = self.s.entered(Phase::Fencing).unwrap_or(self.now);
                self.s.write_unavailable = Some(elapsed(fenced_at, self.now));
            }
            return step.into();
        }
        if self.s.write_unavailable.is_none() {
            let fenced_at = self.s.entered(Phase::Fencing).unwrap_or(self.now);
            self.s.write_unavailable = Some(elapsed(fenced_at, self.now));
        }
        // pgBackRest refuses to back up a new primary until a checkpoint on its timeline.
        if target.checkpoint_timeline.is_none() || target.checkpoint_timeline < target.timeline {
            return Step::Checkpoint { instance: to_name }.into();
        }
        self.s.enter(Phase::Rebuilding, self.now);
        Flow::Continue
    }
}
