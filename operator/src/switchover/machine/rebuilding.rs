//! The Rebuilding phase: every instance but the new primary must end up streaming from it, with
//! the replication slots in order. One step per decision, in a fixed order (slots on the new
//! primary first, so that re-pointed standbys find theirs; then each other instance by name),
//! skipping whatever is already requested, so progress never stalls on one slow instance.

use super::{Ctx, Flow};
use crate::switchover::model::{InstanceView, Mode, Phase, Step};
use crate::switchover::sql::slot_name;

impl Ctx<'_> {
    /// Must `x` be rebuilt (pg_rewind / pg_basebackup) rather than just re-pointed?
    fn needs_rebuild(&self, x: &InstanceView, target: &str) -> bool {
        if self.req.mode == Mode::Failover && self.s.from.as_deref() == Some(x.name.as_str()) {
            // A lost primary may have written WAL nobody received: always rewind it. pg_rewind
            // finds nothing to do, quickly, when it did not diverge.
            return true;
        }
        if x.sts_replicas == 0 {
            return true;
        }
        // Still on an older timeline, and past the fork point: its history diverged.
        if let (Some(tl), Some(new_tl), Some(replayed), Some(fork)) =
            (x.timeline, self.s.promotion_timeline, x.replay_lsn, self.s.promotion_lsn)
            && tl < new_tl
            && replayed > fork
        {
            return true;
        }
        // Pointed at the new primary for a while and still not streaming: it cannot follow.
        let stuck = x.is_standby()
            && x.upstream.as_deref() == Some(target)
            && x.streams_from.as_deref() != Some(target);
        stuck && self.timed_out(self.params.repoint_grace)
    }

    pub(super) fn rebuilding(&mut self) -> Flow {
        let to_name = self.s.to.clone().unwrap_or_default();
        let Some(target) = self.obs.instance(&to_name).cloned() else {
            return self
                .fail(format!("new primary {to_name} disappeared while rebuilding the others"))
                .into();
        };
        if let Some(flow) = self.rogue_primary() {
            return flow;
        }
        if !target.is_primary() {
            if self.timed_out(self.params.rebuild_timeout) {
                return self
                    .fail(format!("new primary {to_name} is no longer reachable as a primary"))
                    .into();
            }
            return Step::WaitForPromotion { target: to_name }.into();
        }
        if let Some(step) = self.labels_wrong(&to_name) {
            return step.into();
        }
        let mut others: Vec<&InstanceView> =
            self.obs.instances.iter().filter(|i| i.name != to_name).collect();
        others.sort_by(|a, b| a.name.cmp(&b.name));
        let mut wanted: Vec<String> = others.iter().map(|i| slot_name(&i.name)).collect();
        wanted.sort();
        let mut present = target.slots.clone();
        present.sort();
        // The first thing to do, in order; and everyone not done yet, for the timeout.
        let mut action = (present != wanted).then(|| Step::FixSlots { instance: to_name.clone(), wanted });
        let mut pending = Vec::new();
        for x in others {
            if let Some(step) = self.next_for_standby(x, &to_name) {
                action = action.or(step);
                pending.push(x.name.clone());
            }
        }
        if pending.is_empty() && action.is_none() {
            self.s.enter(Phase::Completed, self.now);
            return Step::Complete.into();
        }
        if action.is_none() && pending.iter().all(|name| self.away_until_its_node_returns(name)) {
            // A lost node may take hours to return; nothing more can be done for what is on
            // it until then, and the new primary is writable: the switchover is done.
            // What returns catches up by itself: the lost primary of a failover is rebuilt
            // (its markers are on the pod and its template), a standby follows `-rw`.
            self.s.reason = Some(format!(
                "{to_name} is the primary; {} unreachable, and {} {to_name} when back",
                pending.join(", "),
                if pending.len() == 1 { "follows" } else { "follow" }
            ));
            self.s.enter(Phase::Completed, self.now);
            return Step::Complete.into();
        }
        if self.timed_out(self.params.rebuild_timeout) {
            let secs = self.params.rebuild_timeout.as_secs();
            let list =
                if pending.is_empty() { "the replication slots".to_owned() } else { pending.join(", ") };
            return match self.req.mode {
                Mode::Planned => self
                    .fail(format!(
                        "{to_name} is the primary, but {list} did not stream from it within {secs}s"
                    ))
                    .into(),
                Mode::Failover => {
                    // The failover itself succeeded; a lost node may take hours to return. Its
                    // rebuild marker stays, so it is rebuilt whenever it does.
                    self.s.reason = Some(format!(
                        "{to_name} is the primary; {list} not streaming yet after {secs}s, rebuilt when back"
                    ));
                    self.s.enter(Phase::Completed, self.now);
                    Step::Complete.into()
                }
            };
        }
        action.unwrap_or(Step::WaitForStandbys { pending }).into()
    }

    /// `name` cannot be reached and will set itself right when it comes back: the lost
    /// primary of a failover whose rebuild is requested, or an unfenced instance whose node
    /// is not ready (a fenced one would come back with no upstream, so it is waited for).
    fn away_until_its_node_returns(&self, name: &str) -> bool {
        let Some(x) = self.obs.instance(name).filter(|x| !x.reachable) else { return false };
        let lost_primary = self.req.mode == Mode::Failover && self.s.from.as_deref() == Some(name);
        if lost_primary {
            return x.rebuild_token.as_deref() == Some(self.req.name.as_str());
        }
        x.node_ready == Some(false) && !x.fence_marker && x.sts_replicas > 0
    }

    /// A lost primary's pod stuck terminating on a node that is not ready: delete it, so its
    /// StatefulSet can replace it. Safe only because the Lease no longer names it: it stopped
    /// writing by itself before the Lease could be revoked (see `crate::lease`).
    fn stuck_on_a_dead_node(&self, x: &InstanceView) -> bool {
        let lease_gone = self.obs.lease.as_ref().is_some_and(|l| !l.held_by(&x.name));
        self.req.mode == Mode::Failover
            && self.s.from.as_deref() == Some(x.name.as_str())
            && x.pod_terminating
            && x.node_ready == Some(false)
            && lease_gone
    }

    /// `None` when `x` is done (a clean standby streaming from the new primary); otherwise
    /// `Some` of the action it needs, or `Some(None)` when it only needs time.
    fn next_for_standby(&self, x: &InstanceView, to_name: &str) -> Option<Option<Step>> {
        let token = &self.req.name;
        let rebuilding = self.needs_rebuild(x, to_name);
        if rebuilding && x.rebuild_token.as_ref() != Some(token) {
            let (instance, source, token) = (x.name.clone(), to_name.to_owned(), token.clone());
            return Some(Some(Step::Rebuild { instance, source, token }));
        }
        if self.stuck_on_a_dead_node(x) {
            return Some(Some(Step::ForceDeletePod { instance: x.name.clone() }));
        }
        if !x.is_standby() {
            return Some(None);
        }
        // While a requested rebuild is under way, the rebuild writes the standby's
        // configuration; touching it over SQL would race with the restart.
        let streaming = x.streams_from.as_deref() == Some(to_name);
        if !x.slots.is_empty() && (streaming || !rebuilding) {
            // A slot left on a standby (e.g. the demoted primary's) pins WAL there forever.
            return Some(Some(Step::FixSlots { instance: x.name.clone(), wanted: Vec::new() }));
        }
        if !streaming && !rebuilding && x.upstream.as_deref() != Some(to_name) {
            let (instance, new_primary) = (x.name.clone(), to_name.to_owned());
            return Some(Some(Step::RepointStandby { instance, new_primary }));
        }
        if streaming && x.fence_marker {
            // It is a streaming standby now; the marker must not outlive the switchover, or a
            // later failback could not make it primary.
            return Some(Some(Step::Unfence { instance: x.name.clone() }));
        }
        if streaming { None } else { Some(None) }
    }
}
