//! The pooler pods around a switchover: hold their clients (PAUSE) before the fence, point
//! them at the instance that accepts writes and RESUME them after. Pure, like the phases.

use super::{Ctx, Flow, elapsed};
use crate::protocol::pooler::PauseState;
use crate::switchover::model::Step;

impl Ctx<'_> {
    /// `None` once every pooler pod has confirmed its PAUSE (`confirmed` judges the answer),
    /// or once [`Params::pooler_pause_timeout`] has passed since the first PAUSE: a pod that
    /// does not answer (its node lost, its channel broken) or cannot drain (a transaction
    /// longer than the bound) must not stop a switchover, since the fence, not the pause,
    /// is what keeps writes safe. The switchover goes on and says so in its reason: those
    /// pods' clients may see errors, as without a pooler.
    pub(super) fn hold_poolers(&mut self, confirmed: fn(PauseState) -> bool) -> Option<Flow> {
        let unconfirmed: Vec<String> = self
            .obs
            .poolers
            .iter()
            .filter(|p| !p.state.is_some_and(confirmed))
            .map(|p| p.pod.clone())
            .collect();
        if unconfirmed.is_empty() {
            return None;
        }
        let started = *self.s.pooler_pause_started.get_or_insert(self.now);
        let limit = self.params.pooler_pause_timeout;
        if elapsed(self.watched_from(started), self.now) >= limit {
            self.s.reason = Some(format!(
                "pooler pods {} did not confirm the PAUSE within {}s: went on without holding their clients",
                unconfirmed.join(", "),
                limit.as_secs()
            ));
            return None;
        }
        Some(Step::PausePoolers { pods: unconfirmed }.into())
    }

    /// Once the new primary accepts writes: the step that points every pooler pod at it and
    /// resumes it, until each says so. A pod that did not answer this observation (a status
    /// call that timed out under load, or a pod on a lost node) is tried too, but only for
    /// [`Params::pooler_pause_timeout`] after promotion began, so that a dead pod cannot
    /// hold the role labels back; past that, its own bound resumes it, and a pod that then
    /// answers on the old target is pointed again.
    pub(super) fn release_poolers(&self, primary: &str) -> Option<Flow> {
        if self.timed_out(self.params.promote_timeout) {
            return None;
        }
        let retry_unanswered = !self.timed_out(self.params.pooler_pause_timeout);
        self.resume_step(primary, retry_unanswered).map(Flow::from)
    }

    /// A failed switchover's pooler pods that still hold their clients, pointed at the
    /// instance that accepts writes and resumed, before it ends: otherwise they would wait
    /// for their own bound and then go back to the address they had. Pods that do not
    /// answer are left to that bound; nothing is tried once the clean-up has given up.
    pub(super) fn resume_poolers_on(&self, primary: &str, gave_up: bool) -> Option<Step> {
        if gave_up {
            return None;
        }
        self.resume_step(primary, false)
    }

    /// The step that points at `primary` and resumes every pooler pod not yet running there:
    /// those that answered this observation, and with `unanswered` the others too.
    pub(crate) fn resume_step(&self, primary: &str, unanswered: bool) -> Option<Step> {
        let pods: Vec<String> = self
            .obs
            .poolers
            .iter()
            .filter(|p| (p.state.is_some() || unanswered) && !p.resumed_at(primary))
            .map(|p| p.pod.clone())
            .collect();
        (!pods.is_empty()).then(|| Step::ResumePoolers { pods, primary: primary.to_owned() })
    }
}
