//! The Switchover controller: observe → decide ([`machine::next`], pure) → persist the new
//! state to the status → execute the step. Persisting first is the machine's contract: after
//! a crash between the two, the next reconcile computes the same step again, and every step
//! is idempotent.
//!
//! Requeues are short while a switchover is active, because the write-unavailable window is
//! measured in reconcile round trips (fence → observe fenced → promote → labels).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::{Controller, watcher};
use kube::{Resource, ResourceExt};
use tracing::{debug, info};

use super::convert::{from_status, request_from, to_status};
use super::executor::{self, Requester};
use super::model::{Mode, Params, Phase, Step, SwitchoverState};
use super::{machine, observe, role_move};
use crate::crd::Switchover;
use crate::error::Result;
use crate::runtime::api::apply_status;
use crate::runtime::context::Context;
use crate::runtime::{self, events, kube_error};

/// Label value of this controller in metrics.
pub const CONTROLLER: &str = "switchover";
/// While a switchover runs: each round trip adds to the write-unavailable window.
const ACTIVE_INTERVAL: Duration = Duration::from_millis(300);
/// After a step whose effect the very next observation sees (the Lease as written is recorded
/// at once; promotion and role labels are read back from PostgreSQL and the API): decide again
/// almost at once, since the write gap is the sum of these round trips. Not zero, so a step
/// that somehow takes no effect is repeated at most 20 times a second until its phase times out.
const FOLLOW_UP_INTERVAL: Duration = Duration::from_millis(50);
/// While it waits for another Switchover of the same cluster (whose phase changes also wake
/// it up, through the watch).
const QUEUED_INTERVAL: Duration = Duration::from_secs(2);

pub async fn run(ctx: Arc<Context>) {
    let controller = Controller::new(ctx.scoped::<Switchover>(), watcher::Config::default());
    runtime::run(CONTROLLER, controller, ctx, reconcile).await;
}

pub async fn reconcile(switchover: Arc<Switchover>, ctx: Arc<Context>) -> Result<Action> {
    reconcile_switchover(&switchover, &ctx).await
}

async fn reconcile_switchover(cached: &Switchover, ctx: &Context) -> Result<Action> {
    let namespace = cached.namespace().unwrap_or_default();
    let api: Api<Switchover> = Api::namespaced(ctx.client.clone(), &namespace);
    // The cache may not have our own last status write yet; deciding from it would repeat
    // or undo a transition. Read the object itself.
    let Some(switchover) =
        api.get_opt(&cached.name_any()).await.map_err(kube_error("reading the Switchover"))?
    else {
        return Ok(Action::await_change());
    };
    let request = request_from(&switchover)?;
    let state = from_status(switchover.status.as_ref())?;
    if state.phase.is_terminal() {
        return Ok(Action::await_change());
    }
    let lost = match (request.mode, state.from.as_deref()) {
        (Mode::Failover, Some(from)) => observe::Lost::Instance(from),
        (Mode::Failover, None) => observe::Lost::CurrentPrimary,
        (Mode::Planned, _) => observe::Lost::Nothing,
    };
    let snapshot = observe::observe(ctx, &namespace, &request.cluster, &request.name, lost).await?;
    let decision = machine::next(&request, &state, &snapshot.observed, &Params::default(), Utc::now());

    // Persist first, then act.
    if decision.state != state {
        write_status(&api, &switchover, &decision.state).await?;
    }
    if decision.state.phase != state.phase || matches!(decision.step, Step::Reject { .. }) {
        publish_transition(ctx, &switchover, &state, &decision.state, request.mode).await;
    }
    if !matches!(decision.step, Step::Done) {
        debug!(step = ?decision.step, phase = ?decision.state.phase, "executing");
    }
    let who =
        Requester { name: &request.name, namespace: &namespace, mode: request.mode, state: &decision.state };
    executor::execute(ctx, &snapshot, &decision.step, &who).await?;
    let held = snapshot.observed.role_move.holder.as_deref() == Some(request.name.as_str());
    if decision.state.phase.is_terminal() && held {
        role_move::release(ctx, &namespace, &request.cluster, &request.name).await;
    }
    if decision.state.phase.is_terminal() {
        // The cluster's next move (a failover held back by this one, its status) need not
        // wait for its timer: it waited 11 s in one run after a lost planned switchover.
        ctx.cluster_wake.wake(&namespace, &request.cluster);
    }

    Ok(match decision.step {
        _ if decision.state.phase.is_terminal() => Action::await_change(),
        Step::WaitForTurn { .. } => Action::requeue(QUEUED_INTERVAL),
        // Holding the role move, the switchover starts on the very next decision.
        Step::ClaimRoleMove { .. } => Action::requeue(Duration::ZERO),
        Step::RevokeLease { .. }
        | Step::HandOverLease { .. }
        | Step::Promote { .. }
        | Step::MoveRoleLabels { .. } => Action::requeue(FOLLOW_UP_INTERVAL),
        _ => Action::requeue(ACTIVE_INTERVAL),
    })
}

/// The whole status, with the resourceVersion read as a precondition ([`apply_status`]): two
/// writers (an old and a new operator pod) can never interleave transitions.
async fn write_status(api: &Api<Switchover>, switchover: &Switchover, state: &SwitchoverState) -> Result<()> {
    apply_status(api, switchover, &to_status(state), "writing the Switchover status").await?;
    Ok(())
}

/// One Event per phase change (never per reconcile), and the metrics of a finished one.
async fn publish_transition(
    ctx: &Context,
    switchover: &Switchover,
    before: &SwitchoverState,
    after: &SwitchoverState,
    mode: Mode,
) {
    let (type_, note) = transition_note(before, after);
    info!(from = ?before.phase, to = ?after.phase, "switchover phase");
    if after.phase.is_terminal() {
        let seconds = after.duration().unwrap_or_default().as_secs_f64();
        ctx.metrics.switchover_finished(mode == Mode::Failover, after.phase == Phase::Completed, seconds);
    }
    let event = events::transition(type_, format!("{:?}", after.phase), note, "Switchover");
    events::publish(ctx, &switchover.object_ref(&()), event).await;
}

/// The Event's type and text for a phase change. Pure; reasons never contain secrets (they
/// name instances, LSNs and timeouts).
pub fn transition_note(before: &SwitchoverState, after: &SwitchoverState) -> (EventType, String) {
    let from = after.from.as_deref().unwrap_or("?");
    let to = after.to.as_deref().unwrap_or("?");
    let note = match after.phase {
        Phase::Pending => format!("waiting to start ({from} -> {to})"),
        Phase::Fencing => format!("fencing {from}, the old primary; target {to}"),
        Phase::CatchingUp => match after.fence_lsn {
            Some(lsn) => format!("{from} fenced at {lsn}; waiting for {to} to replay it"),
            None => format!("{from} fenced; waiting for {to}"),
        },
        Phase::Promoting => format!("promoting {to}"),
        Phase::Rebuilding => {
            let window = after
                .write_unavailable
                .map_or(String::new(), |d| format!(" after {:.2}s without writes", d.as_secs_f64()));
            format!("{to} is the primary{window}; re-pointing and rebuilding the others")
        }
        Phase::Completed => format!(
            "{to} is the primary and every other instance follows it ({:.1}s)",
            after.duration().unwrap_or_default().as_secs_f64()
        ),
        Phase::Failed => format!("failed: {}", after.reason.as_deref().unwrap_or("no reason recorded")),
    };
    let note = if before.phase == after.phase && after.phase == Phase::Failed {
        format!("rejected: {}", after.reason.as_deref().unwrap_or(""))
    } else {
        note
    };
    let type_ = if after.phase == Phase::Failed { EventType::Warning } else { EventType::Normal };
    (type_, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_warnings_with_their_reason() {
        let before = SwitchoverState { phase: Phase::CatchingUp, ..Default::default() };
        let after = SwitchoverState {
            phase: Phase::Failed,
            reason: Some("target pg-2 did not replay".into()),
            ..Default::default()
        };
        let (type_, note) = transition_note(&before, &after);
        assert_eq!(type_, EventType::Warning);
        assert!(note.contains("target pg-2 did not replay"), "{note}");
    }

    #[test]
    fn rebuilding_reports_the_write_window() {
        let after = SwitchoverState {
            phase: Phase::Rebuilding,
            to: Some("pg-2".into()),
            write_unavailable: Some(Duration::from_millis(1250)),
            ..Default::default()
        };
        let (type_, note) = transition_note(&SwitchoverState::default(), &after);
        assert_eq!(type_, EventType::Normal);
        assert_eq!(
            note,
            "pg-2 is the primary after 1.25s without writes; re-pointing and rebuilding the others"
        );
    }
}
