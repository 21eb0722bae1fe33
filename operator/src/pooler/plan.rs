//! Which pooler action a switchover step needs, before and after it. Pure: the hook
//! ([`super::hook`]) gathers the pooler pods' answers and carries the plan out.
//!
//! - **Pause window.** Planned: from the fence (phase Fencing) until the new primary is
//!   writable. Failover: from the start (the primary is judged lost), until the same point.
//!   Every reconcile in the window renews the pause of every pooler pod; the pooler's own
//!   bound resumes clients if the renewals stop (operator crash).
//! - **Gate before the fence (Planned).** The fence waits until every pooler pod has
//!   drained, for at most `drain_bound`; past it the switchover goes on (a transaction still
//!   running on the old primary fails, as it would without a pooler). A pooler pod that did not
//!   answer the PAUSE holds the fence for `miss_bound`, then fails the switchover with its name
//!   and error, before anything was fenced. A failover never waits for poolers.
//! - **After promotion.** Once the new primary is writable (promoted and role labels moved),
//!   every pooler pod is pointed at its own address and resumed. A Failed switchover resumes
//!   every pooler pod, whose target is then kept on the primary by the PgCluster controller.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::switchover::{Mode, Phase};

use super::client::PoolerStatus;
use super::pause::PauseState;

/// One pooler pod as the hook saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolerView {
    pub pod: String,
    /// Its answer to the last call (pause or status), or why there was none.
    pub answer: Result<PoolerStatus, String>,
}

/// The switchover, reduced to what the poolers care about.
#[derive(Clone, Debug, PartialEq)]
pub struct SwitchoverView {
    pub mode: Mode,
    /// Phase after the machine's decision (already persisted, or about to be).
    pub phase: Phase,
    /// The step about to run is the planned fence of the old primary.
    pub fencing: bool,
    /// The old primary may already be fenced (a fence was requested and observed): failing
    /// now would leave it fenced, so the gate no longer fails, it only goes on.
    pub fence_requested: bool,
    /// When the phase Fencing was entered; the drain and miss bounds count from there.
    pub fencing_since: Option<DateTime<Utc>>,
    /// The new primary is promoted and takes writes (the machine measured its write window).
    pub new_primary_writable: bool,
    /// Address of the new primary's own pod, not of a Service.
    pub new_primary_host: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    /// Longest the fence waits for in-flight transactions to drain.
    pub drain: Duration,
    /// Longest the fence waits for a pooler pod that does not answer the PAUSE.
    pub miss: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self { drain: Duration::from_secs(2), miss: Duration::from_secs(5) }
    }
}

/// Whether the step may run.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    Proceed,
    /// Requeue without running the step.
    Hold {
        reason: String,
    },
    /// End the switchover Failed with this reason instead of running the step.
    Fail {
        reason: String,
    },
}

/// What to do after the step.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct AfterStep {
    /// (pod, host): point the pod's `[databases]` at host (before resuming it).
    pub target: Vec<(String, String)>,
    /// Pods to resume.
    pub resume: Vec<String>,
}

/// Every pooler pod must be paused (or its pause renewed) before this step.
pub fn pause_wanted(view: &SwitchoverView) -> bool {
    if view.new_primary_writable || view.phase.is_terminal() {
        return false;
    }
    match view.mode {
        Mode::Planned => matches!(view.phase, Phase::Fencing | Phase::CatchingUp | Phase::Promoting),
        Mode::Failover => {
            matches!(view.phase, Phase::Pending | Phase::Fencing | Phase::CatchingUp | Phase::Promoting)
        }
    }
}

/// The gate before the step, from the pods' answers to the PAUSE.
pub fn gate(view: &SwitchoverView, poolers: &[PoolerView], bounds: Bounds, now: DateTime<Utc>) -> Gate {
    if view.mode != Mode::Planned || !view.fencing || !pause_wanted(view) {
        return Gate::Proceed;
    }
    let waited = view.fencing_since.and_then(|since| (now - since).to_std().ok()).unwrap_or_default();
    let missed: Vec<String> = poolers
        .iter()
        .filter_map(|p| p.answer.as_ref().err().map(|error| format!("{} ({error})", p.pod)))
        .collect();
    if !missed.is_empty() {
        let names = missed.join(", ");
        if waited < bounds.miss {
            return Gate::Hold { reason: format!("waiting for pooler pods to answer the PAUSE: {names}") };
        }
        if view.fence_requested {
            return Gate::Proceed;
        }
        return Gate::Fail {
            reason: format!(
                "pooler pods did not answer the PAUSE within {}s: {names}; nothing was fenced",
                bounds.miss.as_secs()
            ),
        };
    }
    let draining: Vec<&str> = poolers
        .iter()
        .filter(|p| p.answer.as_ref().is_ok_and(|s| s.state != PauseState::Paused))
        .map(|p| p.pod.as_str())
        .collect();
    if !draining.is_empty() && waited < bounds.drain {
        return Gate::Hold {
            reason: format!("pooler pods draining in-flight transactions: {}", draining.join(", ")),
        };
    }
    Gate::Proceed
}

/// What the poolers need after the step, from their answers to a status call.
pub fn after_step(view: &SwitchoverView, poolers: &[PoolerView]) -> AfterStep {
    let answered: Vec<(&str, &PoolerStatus)> =
        poolers.iter().filter_map(|p| p.answer.as_ref().ok().map(|s| (p.pod.as_str(), s))).collect();
    let resume = || -> Vec<String> {
        answered
            .iter()
            .filter(|(_, s)| s.state != PauseState::Running)
            .map(|(pod, _)| pod.to_string())
            .collect()
    };
    let promoted = view.new_primary_writable
        && matches!(view.phase, Phase::Promoting | Phase::Rebuilding | Phase::Completed);
    if let (Some(host), true) = (&view.new_primary_host, promoted) {
        let target = answered
            .iter()
            .filter(|(_, s)| s.target != *host)
            .map(|(pod, _)| (pod.to_string(), host.clone()))
            .collect();
        return AfterStep { target, resume: resume() };
    }
    if view.phase == Phase::Failed {
        return AfterStep { target: vec![], resume: resume() };
    }
    AfterStep::default()
}

/// Outside switchovers: every running pooler pod follows the primary's own address. A
/// paused pod is left alone; the switchover that paused it owns its target.
pub fn steady_targets(primary_host: &str, poolers: &[PoolerView]) -> Vec<(String, String)> {
    poolers
        .iter()
        .filter_map(|p| p.answer.as_ref().ok().map(|s| (p, s)))
        .filter(|(_, s)| s.state == PauseState::Running && s.target != primary_host)
        .map(|(p, _)| (p.pod.clone(), primary_host.to_string()))
        .collect()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
