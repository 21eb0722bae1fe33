use super::*;

const OLD: &str = "demo-1-0.demo.db.svc";
const NEW: &str = "demo-2-0.demo.db.svc";

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

fn planned(phase: Phase) -> SwitchoverView {
    SwitchoverView {
        mode: Mode::Planned,
        phase,
        fencing: phase == Phase::Fencing,
        fence_requested: false,
        fencing_since: Some(t(0)),
        new_primary_writable: false,
        new_primary_host: Some(NEW.into()),
    }
}

fn pod(name: &str, state: PauseState, target: &str) -> PoolerView {
    PoolerView {
        pod: name.into(),
        answer: Ok(PoolerStatus { state, target: target.into(), pause_remaining_ms: None }),
    }
}

fn missing(name: &str) -> PoolerView {
    PoolerView { pod: name.into(), answer: Err("connection refused".into()) }
}

#[test]
fn planned_pauses_from_the_fence_until_the_new_primary_is_writable() {
    assert!(!pause_wanted(&planned(Phase::Pending)), "a checkpoint before the fence holds nobody");
    for phase in [Phase::Fencing, Phase::CatchingUp, Phase::Promoting] {
        assert!(pause_wanted(&planned(phase)), "{phase:?}");
    }
    let writable = SwitchoverView { new_primary_writable: true, ..planned(Phase::Promoting) };
    assert!(!pause_wanted(&writable));
    for phase in [Phase::Rebuilding, Phase::Completed, Phase::Failed] {
        assert!(!pause_wanted(&planned(phase)), "{phase:?}");
    }
}

#[test]
fn a_failover_pauses_as_soon_as_it_starts_and_never_waits_for_poolers() {
    let view = SwitchoverView { mode: Mode::Failover, fencing: true, ..planned(Phase::Pending) };
    assert!(pause_wanted(&view));
    assert_eq!(gate(&view, &[missing("p-a")], Bounds::default(), t(60)), Gate::Proceed);
}

#[test]
fn the_fence_waits_for_draining_poolers_up_to_the_drain_bound_then_goes_on() {
    let view = planned(Phase::Fencing);
    let poolers = [pod("p-a", PauseState::Paused, OLD), pod("p-b", PauseState::Pausing, OLD)];
    let bounds = Bounds::default();
    match gate(&view, &poolers, bounds, t(1)) {
        Gate::Hold { reason } => assert!(reason.contains("p-b") && !reason.contains("p-a"), "{reason}"),
        other => panic!("expected Hold, got {other:?}"),
    }
    assert_eq!(gate(&view, &poolers, bounds, t(2)), Gate::Proceed);
    let drained = [pod("p-a", PauseState::Paused, OLD), pod("p-b", PauseState::Paused, OLD)];
    assert_eq!(gate(&view, &drained, bounds, t(0)), Gate::Proceed);
    assert_eq!(gate(&view, &[], bounds, t(0)), Gate::Proceed, "no pooler, no wait");
}

#[test]
fn a_pooler_that_missed_the_pause_holds_then_fails_before_anything_is_fenced() {
    let view = planned(Phase::Fencing);
    let poolers = [pod("p-a", PauseState::Paused, OLD), missing("p-b")];
    let bounds = Bounds::default();
    assert!(matches!(gate(&view, &poolers, bounds, t(3)), Gate::Hold { .. }));
    match gate(&view, &poolers, bounds, t(5)) {
        Gate::Fail { reason } => {
            assert!(reason.contains("p-b (connection refused)"), "{reason}");
            assert!(reason.contains("nothing was fenced"), "{reason}");
        }
        other => panic!("expected Fail, got {other:?}"),
    }
    // Once a fence may have been requested, failing would leave the old primary fenced.
    let fenced = SwitchoverView { fence_requested: true, ..view };
    assert_eq!(gate(&fenced, &poolers, bounds, t(5)), Gate::Proceed);
}

#[test]
fn only_the_fence_step_is_gated() {
    let view = SwitchoverView { fencing: false, ..planned(Phase::CatchingUp) };
    assert_eq!(gate(&view, &[missing("p-a")], Bounds::default(), t(0)), Gate::Proceed);
}

#[test]
fn once_writable_every_pooler_targets_the_new_primary_and_resumes() {
    let view = SwitchoverView { new_primary_writable: true, ..planned(Phase::Promoting) };
    let poolers = [pod("p-a", PauseState::Paused, OLD), pod("p-b", PauseState::Running, NEW), missing("p-c")];
    let after = after_step(&view, &poolers);
    assert_eq!(after.target, vec![("p-a".to_string(), NEW.to_string())]);
    assert_eq!(after.resume, vec!["p-a".to_string()]);
    // Not yet writable: nothing moves.
    assert_eq!(after_step(&planned(Phase::Promoting), &poolers), AfterStep::default());
}

#[test]
fn a_failed_switchover_resumes_without_moving_the_target() {
    let poolers = [pod("p-a", PauseState::Paused, OLD), pod("p-b", PauseState::Pausing, OLD)];
    let after = after_step(&planned(Phase::Failed), &poolers);
    assert!(after.target.is_empty());
    assert_eq!(after.resume, vec!["p-a".to_string(), "p-b".to_string()]);
}

#[test]
fn steady_state_retargets_only_running_pods_that_point_elsewhere() {
    let poolers = [
        pod("p-a", PauseState::Running, "demo-rw.db.svc"),
        pod("p-b", PauseState::Paused, OLD),
        pod("p-c", PauseState::Running, NEW),
        missing("p-d"),
    ];
    assert_eq!(steady_targets(NEW, &poolers), vec![("p-a".to_string(), NEW.to_string())]);
}
