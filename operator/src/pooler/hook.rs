//! The switchover controller's two calls into the pooler, around executing a step:
//! [`before_step`] (pause, and the gate of the planned fence) and [`after_step`] (target the
//! new primary and resume, or resume on failure). The judgement is [`super::plan`]'s.
//!
//! A cluster without a pooler costs one Secret read per call and changes nothing.

use chrono::{DateTime, Utc};
use tracing::{debug, warn};

use crate::context::Context;
use crate::pgcluster::names;
use crate::switchover::model::{Decision, Phase, Request, Step, SwitchoverState};
use crate::switchover::observe::Snapshot;

use super::observe::{self, PoolerPods};
use super::plan::{self, Bounds, Gate, SwitchoverView};

/// How long one pause call waits for a pod to drain; the gate's own bound is longer, so a
/// slow drain is a few short holds (each renewing the pause), never one long call.
const PAUSE_CALL_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// The switchover as the pooler plan sees it.
pub fn view(
    namespace: &str,
    request: &Request,
    state: &SwitchoverState,
    step: &Step,
    snapshot: &Snapshot,
) -> SwitchoverView {
    let fence_requested = state
        .from
        .as_deref()
        .and_then(|from| snapshot.observed.instance(from))
        .is_some_and(|instance| instance.fence_marker);
    SwitchoverView {
        mode: request.mode,
        phase: state.phase,
        fencing: matches!(step, Step::Fence { .. }),
        fence_requested,
        fencing_since: state.entered(Phase::Fencing),
        // The machine records the write window once the target answers as a primary.
        new_primary_writable: state.to.is_some() && state.write_unavailable.is_some(),
        new_primary_host: state.to.as_deref().map(|to| names::pod_fqdn(&request.cluster, to, namespace)),
    }
}

async fn poolers(ctx: &Context, namespace: &str, cluster: &str) -> Option<PoolerPods> {
    match observe::discover(ctx, namespace, cluster).await {
        Ok(Some(pods)) if !pods.is_empty() => Some(pods),
        Ok(_) => None,
        Err(error) => {
            warn!(%error, "could not list the pooler pods; going on without them");
            None
        }
    }
}

/// Before the step: inside the pause window, pause (or renew) every pooler pod, and judge
/// the gate from their answers.
pub async fn before_step(
    ctx: &Context,
    namespace: &str,
    request: &Request,
    decision: &Decision,
    snapshot: &Snapshot,
    now: DateTime<Utc>,
) -> Gate {
    let view = view(namespace, request, &decision.state, &decision.step, snapshot);
    if !plan::pause_wanted(&view) {
        return Gate::Proceed;
    }
    let Some(pods) = poolers(ctx, namespace, &request.cluster).await else { return Gate::Proceed };
    let answers = pods.pause(PAUSE_CALL_WAIT).await;
    let gate = plan::gate(&view, &answers, Bounds::default(), now);
    if gate != Gate::Proceed {
        debug!(?gate, "pooler gate");
    }
    gate
}

/// Turns the decision into a failure that changed nothing (the gate failed before the fence).
pub fn fail(decision: &mut Decision, reason: String, now: DateTime<Utc>) {
    decision.state.reason = Some(reason.clone());
    decision.state.failing_since = None;
    decision.state.enter(Phase::Failed, now);
    decision.step = Step::Fail { reason };
}

/// After the step: once the new primary is writable, target it and resume; on failure,
/// resume. Errors are logged: the pooler's own bound resumes what this call could not.
pub async fn after_step(
    ctx: &Context,
    namespace: &str,
    request: &Request,
    state: &SwitchoverState,
    step: &Step,
    snapshot: &Snapshot,
) {
    let view = view(namespace, request, state, step, snapshot);
    let relevant = view.phase == Phase::Failed
        || (view.new_primary_writable
            && matches!(view.phase, Phase::Promoting | Phase::Rebuilding | Phase::Completed));
    if !relevant {
        return;
    }
    let Some(pods) = poolers(ctx, namespace, &request.cluster).await else { return };
    let answers = pods.status().await;
    pods.carry_out(&plan::after_step(&view, &answers)).await;
}
