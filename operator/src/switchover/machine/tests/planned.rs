//! Planned switchover: validation, queueing, fencing, catching up, promoting.

use super::*;

fn reject_reason(request: &Request, observed: &Observed) -> String {
    let d = decide(request, &SwitchoverState::default(), observed, t(0));
    assert_eq!(d.state.phase, Phase::Failed, "{d:?}");
    match d.step {
        Step::Reject { reason } => {
            assert_eq!(d.state.reason.as_deref(), Some(reason.as_str()));
            reason
        }
        other => panic!("expected Reject, got {other:?}"),
    }
}

#[test]
fn invalid_requests_are_rejected_with_a_reason() {
    let c = cluster();
    let unknown = Observed { cluster_exists: false, ..cluster() };
    assert!(reject_reason(&planned("pg-2"), &unknown).contains("PgCluster \"pg\" not found"));
    assert!(reject_reason(&planned("pg-1"), &c).contains("target pg-1 is already the primary"));
    assert!(reject_reason(&planned("pg-9"), &c).contains("target pg-9 is not an instance"));
}

#[test]
fn unhealthy_targets_are_rejected() {
    type Breaker = fn(&mut InstanceView);
    let cases: Vec<(&str, Breaker)> = vec![
        ("is not reachable", |i| i.reachable = false),
        ("is not ready", |i| i.ready = false),
        ("is not a standby", |i| i.in_recovery = None),
        ("is not streaming from the primary pg-1", |i| i.streams_from = None),
        ("is on timeline 2, the primary on 1", |i| i.timeline = Some(2)),
        ("lag of target pg-2 is unknown", |i| i.replay_lsn = None),
    ];
    for (expected, break_it) in cases {
        let mut c = cluster();
        break_it(inst(&mut c, "pg-2"));
        let reason = reject_reason(&planned("pg-2"), &c);
        assert!(reason.contains(expected), "{expected}: {reason}");
    }
}

#[test]
fn lagging_target_is_rejected_at_the_threshold() {
    let mut c = cluster();
    let max = Params::default().max_lag_bytes;
    inst(&mut c, "pg-1").current_lsn = Some(Lsn(1000 + max));
    // exactly max bytes behind: allowed.
    let d = decide(&planned("pg-2"), &SwitchoverState::default(), &c, t(0));
    assert_eq!(d.step, Step::Checkpoint { instance: "pg-1".into() });
    inst(&mut c, "pg-1").current_lsn = Some(Lsn(1001 + max));
    let reason = reject_reason(&planned("pg-2"), &c);
    assert!(reason.contains(&format!("too far behind: {} bytes", max + 1)), "{reason}");
}

#[test]
fn primary_problems_are_rejected() {
    let mut two = cluster();
    inst(&mut two, "pg-3").in_recovery = Some(false);
    assert!(reject_reason(&planned("pg-2"), &two).contains("two primaries observed (pg-1, pg-3)"));
    let mut none = cluster();
    inst(&mut none, "pg-1").reachable = false;
    assert!(reject_reason(&planned("pg-2"), &none).contains("no reachable primary: use mode Failover"));
    let mut unready = cluster();
    inst(&mut unready, "pg-1").ready = false;
    assert!(reject_reason(&planned("pg-2"), &unready).contains("primary pg-1 is not ready"));
}

#[test]
fn omitted_target_is_the_most_caught_up_standby() {
    let mut c = cluster();
    inst(&mut c, "pg-2").replay_lsn = Some(Lsn(900));
    let d = decide(&req(None, Mode::Planned), &SwitchoverState::default(), &c, t(0));
    assert_eq!(d.state.to.as_deref(), Some("pg-3"));
    // equal replay: the first name wins, whatever the order observed.
    let mut c = cluster();
    c.instances.reverse();
    let d = decide(&req(None, Mode::Planned), &SwitchoverState::default(), &c, t(0));
    assert_eq!(d.state.to.as_deref(), Some("pg-2"));
    // an unhealthy standby is never chosen, even if ahead.
    let mut c = cluster();
    inst(&mut c, "pg-2").replay_lsn = Some(Lsn(900));
    inst(&mut c, "pg-3").ready = false;
    let d = decide(&req(None, Mode::Planned), &SwitchoverState::default(), &c, t(0));
    assert_eq!(d.state.to.as_deref(), Some("pg-2"));
}

#[test]
fn omitted_target_without_a_healthy_standby_is_rejected() {
    let mut c = cluster();
    inst(&mut c, "pg-2").reachable = false;
    inst(&mut c, "pg-3").streams_from = None;
    assert!(reject_reason(&req(None, Mode::Planned), &c).contains("no healthy standby to promote"));
    let mut c = cluster();
    inst(&mut c, "pg-1").current_lsn = Some(Lsn(u64::MAX));
    assert!(reject_reason(&req(None, Mode::Planned), &c).contains("no healthy standby close enough"));
}

#[test]
fn pending_checkpoints_first_then_fences() {
    let c = cluster();
    let d1 = decide(&planned("pg-2"), &SwitchoverState::default(), &c, t(0));
    assert_eq!(d1.step, Step::Checkpoint { instance: "pg-1".into() });
    assert_eq!(d1.state.phase, Phase::Pending);
    assert_eq!((d1.state.from.as_deref(), d1.state.to.as_deref()), (Some("pg-1"), Some("pg-2")));
    let d2 = decide(&planned("pg-2"), &d1.state, &c, t(100));
    assert_eq!(d2.step, Step::Fence { instance: "pg-1".into() });
    assert_eq!(d2.state.phase, Phase::Fencing);
    assert_eq!(d2.state.entered(Phase::Fencing), Some(t(100)));
}

#[test]
fn primary_changing_before_the_start_is_rejected() {
    let d1 = decide(&planned("pg-2"), &SwitchoverState::default(), &cluster(), t(0));
    let mut c = cluster();
    inst(&mut c, "pg-1").in_recovery = Some(true);
    inst(&mut c, "pg-3").in_recovery = Some(false);
    let d2 = decide(&planned("pg-2"), &d1.state, &c, t(100));
    assert!(
        matches!(&d2.step, Step::Reject { reason } if reason.contains("changed from pg-1 to pg-3")),
        "{d2:?}"
    );
}

fn other(name: &str, mode: Mode, phase: Phase, created: i64) -> ActiveSwitchover {
    ActiveSwitchover { name: name.into(), mode, phase, created: t(created) }
}

#[test]
fn one_switchover_at_a_time() {
    let mut c = cluster();
    let me = planned("pg-2"); // created at t(0)
    let wait = |c: &Observed, now| decide(&me, &SwitchoverState::default(), c, now).step;
    c.active_switchovers = vec![other("so-1", Mode::Planned, Phase::Pending, 0)];
    assert_eq!(wait(&c, t(0)), Step::Checkpoint { instance: "pg-1".into() }, "itself is not in the way");
    c.active_switchovers = vec![other("so-0", Mode::Planned, Phase::Rebuilding, 50)];
    assert_eq!(wait(&c, t(0)), Step::WaitForTurn { behind: "so-0".into() }, "a started one, even if younger");
    c.active_switchovers = vec![other("so-0", Mode::Planned, Phase::Pending, -10)];
    assert_eq!(wait(&c, t(0)), Step::WaitForTurn { behind: "so-0".into() }, "an older pending one");
    c.active_switchovers = vec![other("so-2", Mode::Planned, Phase::Pending, 10)];
    assert_eq!(
        wait(&c, t(0)),
        Step::Checkpoint { instance: "pg-1".into() },
        "a younger pending one waits for us"
    );
    c.active_switchovers = vec![other("so-2", Mode::Failover, Phase::Pending, 10)];
    assert_eq!(wait(&c, t(0)), Step::WaitForTurn { behind: "so-2".into() }, "failovers go first");
    c.active_switchovers = vec![other("so-0", Mode::Planned, Phase::Pending, 0)];
    assert_eq!(wait(&c, t(0)), Step::WaitForTurn { behind: "so-0".into() }, "same time: by name");
}

#[test]
fn waiting_too_long_for_a_turn_fails() {
    let mut c = cluster();
    c.active_switchovers = vec![other("so-0", Mode::Planned, Phase::CatchingUp, -5)];
    let d1 = decide(&planned("pg-2"), &SwitchoverState::default(), &c, t(0));
    assert_eq!(d1.state.entered(Phase::Pending), Some(t(0)));
    let limit = Params::default().queue_timeout.as_secs() as i64;
    let d2 = decide(&planned("pg-2"), &d1.state, &c, secs(limit - 1));
    assert!(matches!(d2.step, Step::WaitForTurn { .. }));
    let d3 = decide(&planned("pg-2"), &d1.state, &c, secs(limit));
    assert!(matches!(&d3.step, Step::Reject { reason } if reason.contains("for switchover so-0")), "{d3:?}");
}

/// pg-1 fenced: in recovery, marker set, its final LSN replayed.
fn fenced(mut c: Observed, final_lsn: u64) -> Observed {
    let p = inst(&mut c, "pg-1");
    p.fence_marker = true;
    p.in_recovery = Some(true);
    p.current_lsn = None;
    p.replay_lsn = Some(Lsn(final_lsn));
    c
}

#[test]
fn fencing_requests_the_fence_once_then_waits() {
    let s = state_in(Phase::Fencing, "pg-1", "pg-2", t(0));
    let mut c = cluster();
    assert_eq!(decide(&planned("pg-2"), &s, &c, t(10)).step, Step::Fence { instance: "pg-1".into() });
    inst(&mut c, "pg-1").fence_marker = true;
    assert_eq!(decide(&planned("pg-2"), &s, &c, t(20)).step, Step::WaitForFence { instance: "pg-1".into() });
    inst(&mut c, "pg-1").reachable = false; // restarting
    assert_eq!(decide(&planned("pg-2"), &s, &c, t(30)).step, Step::WaitForFence { instance: "pg-1".into() });
}

#[test]
fn fenced_and_caught_up_promotes_in_the_same_decision() {
    let s = state_in(Phase::Fencing, "pg-1", "pg-2", t(0));
    let mut c = fenced(cluster(), 1200);
    inst(&mut c, "pg-2").replay_lsn = Some(Lsn(1200));
    let d = decide(&planned("pg-2"), &s, &c, t(500));
    // The Lease moves first: the fenced old primary stops for good when it sees another name.
    assert_eq!(d.step, Step::HandOverLease { from: "pg-1".into(), to: "pg-2".into() });
    assert_eq!(d.state.phase, Phase::Promoting);
    assert_eq!(d.state.fence_lsn, Some(Lsn(1200)));
    assert_eq!(d.state.promotion_lsn, Some(Lsn(1200)));
    let phases: Vec<Phase> = d.state.phase_times.iter().map(|p| p.phase).collect();
    assert_eq!(phases, vec![Phase::Pending, Phase::Fencing, Phase::CatchingUp, Phase::Promoting]);
    c.lease = Some(lease_of("pg-2", 0));
    let d2 = decide(&planned("pg-2"), &d.state, &c, t(600));
    assert_eq!(d2.step, Step::Promote { target: "pg-2".into(), wait_seconds: 30 });
}

#[test]
fn target_behind_the_fence_lsn_is_waited_for() {
    let s = state_in(Phase::Fencing, "pg-1", "pg-2", t(0));
    let c = fenced(cluster(), 1200); // pg-2 replayed 1000 only
    let d = decide(&planned("pg-2"), &s, &c, t(500));
    assert_eq!(d.step, Step::WaitForCatchUp { target: "pg-2".into(), lsn: Lsn(1200) });
    assert_eq!(d.state.phase, Phase::CatchingUp);
}

#[test]
fn old_primary_never_fenced_times_out_and_unfences() {
    let s = state_in(Phase::Fencing, "pg-1", "pg-2", t(0));
    let mut c = cluster();
    inst(&mut c, "pg-1").fence_marker = true; // requested, never took effect
    let limit = Params::default().fence_timeout.as_secs() as i64;
    assert!(matches!(
        decide(&planned("pg-2"), &s, &c, secs(limit) - chrono::TimeDelta::milliseconds(1)).step,
        Step::WaitForFence { .. }
    ));
    let d = decide(&planned("pg-2"), &s, &c, secs(limit));
    assert!(d.state.reason.as_deref().unwrap().contains("was not fenced within 30s"));
    assert_unfenced_then_failed(&planned("pg-2"), d, c, "pg-1", secs(limit + 1));
}

#[test]
fn an_old_primary_lost_while_fencing_is_given_up_once_its_lease_expires() {
    // Its node died with the operator that sent the fence: it never answers again.
    let s = state_in(Phase::Fencing, "pg-1", "pg-2", t(0));
    let mut c = cluster();
    let old = inst(&mut c, "pg-1");
    old.fence_marker = true;
    old.reachable = false;
    old.in_recovery = None;
    let expiry = (crate::lease::TTL + crate::lease::SKEW_MARGIN).as_secs();
    // A Lease that is stale but not yet expired: it may still be renewing, so wait.
    c.lease = Some(lease_of("pg-1", expiry - 1));
    assert!(matches!(decide(&planned("pg-2"), &s, &c, t(5)).step, Step::WaitForFence { .. }));
    // An expired one is the end of it, well before the fence timeout: the fence is lifted,
    // then the switchover fails and leaves the cluster to automatic failover.
    c.lease = Some(lease_of("pg-1", expiry));
    let d = decide(&planned("pg-2"), &s, &c, t(5));
    assert_eq!(d.step, Step::Unfence { instance: "pg-1".into() }, "{d:?}");
    inst(&mut c, "pg-1").fence_marker = false;
    let d = decide(&planned("pg-2"), &d.state, &c, t(6));
    assert_eq!(d.state.phase, Phase::Failed, "{d:?}");
    assert!(d.state.reason.as_deref().unwrap().contains("was lost during the switchover"), "{d:?}");
    // One that answers, or a Lease held by another, is not lost: the fence timeout applies.
    let mut answering = c.clone();
    inst(&mut answering, "pg-1").reachable = true;
    let mut other = c.clone();
    other.lease = Some(lease_of("pg-3", expiry));
    for c in [answering, other] {
        assert!(!matches!(decide(&planned("pg-2"), &s, &c, t(6)).state.phase, Phase::Failed));
    }
}

#[test]
fn target_disappearing_before_promotion_unfences() {
    for phase in [Phase::Fencing, Phase::CatchingUp] {
        let s = state_in(phase, "pg-1", "pg-2", t(0));
        let mut c = fenced(cluster(), 1000);
        c.instances.retain(|i| i.name != "pg-2");
        let d = decide(&planned("pg-2"), &s, &c, t(10));
        assert!(d.state.reason.as_deref().unwrap().contains("target pg-2 disappeared"), "{phase:?}");
        assert_unfenced_then_failed(&planned("pg-2"), d, c, "pg-1", t(20));
    }
}

#[test]
fn lsn_not_reached_before_the_timeout_unfences() {
    let s = state_in(Phase::CatchingUp, "pg-1", "pg-2", t(0));
    let mut s = s;
    s.fence_lsn = Some(Lsn(1200));
    let c = fenced(cluster(), 1200);
    let limit = Params::default().catchup_timeout.as_secs() as i64;
    let wait = decide(&planned("pg-2"), &s, &c, secs(limit - 1));
    assert_eq!(wait.step, Step::WaitForCatchUp { target: "pg-2".into(), lsn: Lsn(1200) });
    let d = decide(&planned("pg-2"), &s, &c, secs(limit));
    let reason = d.state.reason.clone().unwrap();
    assert!(
        reason.contains("did not replay the old primary's final LSN 0/4B0 within 30s (replayed 0/3E8)"),
        "{reason}"
    );
    assert_unfenced_then_failed(&planned("pg-2"), d, c, "pg-1", secs(limit + 1));
}

#[test]
fn old_primary_leaving_the_fence_aborts() {
    let s = state_in(Phase::CatchingUp, "pg-1", "pg-2", t(0));
    let mut c = cluster(); // pg-1 is a primary again, marker still set
    inst(&mut c, "pg-1").fence_marker = true;
    let d = decide(&planned("pg-2"), &s, &c, t(10));
    assert!(d.state.reason.as_deref().unwrap().contains("left the fence"));
    assert_unfenced_then_failed(&planned("pg-2"), d, c, "pg-1", t(20));
}

#[test]
fn timeline_mismatch_before_promotion_aborts() {
    let s = state_in(Phase::CatchingUp, "pg-1", "pg-2", t(0));
    let mut c = fenced(cluster(), 1000);
    inst(&mut c, "pg-2").timeline = Some(3);
    let d = decide(&planned("pg-2"), &s, &c, t(10));
    assert!(d.state.reason.as_deref().unwrap().contains("timeline 3, the old primary on 1"));
    assert_eq!(d.step, Step::Unfence { instance: "pg-1".into() });
}

#[test]
fn lagging_reported_timeline_gets_a_restartpoint_then_promotes() {
    // The old primary is on timeline 2 (a failback); the target rejoined without a restart,
    // so with its WAL receiver down it reports its last restartpoint's timeline, 1.
    let s = state_in(Phase::CatchingUp, "pg-1", "pg-2", t(0));
    let mut c = fenced(cluster(), 1000);
    inst(&mut c, "pg-1").timeline = Some(2);
    inst(&mut c, "pg-2").replay_lsn = Some(Lsn(900));
    let d = decide(&planned("pg-2"), &s, &c, secs(1));
    assert_eq!(d.step, Step::WaitForCatchUp { target: "pg-2".into(), lsn: Lsn(1000) });
    inst(&mut c, "pg-2").replay_lsn = Some(Lsn(1000));
    let d = decide(&planned("pg-2"), &d.state, &c, secs(2));
    assert_eq!(d.step, Step::Checkpoint { instance: "pg-2".into() });
    assert_eq!(d.state.phase, Phase::CatchingUp);
    inst(&mut c, "pg-2").timeline = Some(2);
    let d = decide(&planned("pg-2"), &d.state, &c, secs(3));
    assert_eq!(d.state.phase, Phase::Promoting);
}

#[test]
fn lagging_reported_timeline_fails_at_the_catchup_timeout() {
    let s = state_in(Phase::CatchingUp, "pg-1", "pg-2", t(0));
    let mut c = fenced(cluster(), 1000);
    inst(&mut c, "pg-1").timeline = Some(2);
    let late = secs(Params::default().catchup_timeout.as_secs() as i64 + 1);
    let d = decide(&planned("pg-2"), &s, &c, late);
    assert!(d.state.reason.as_deref().unwrap().contains("timeline 1, the old primary on 2"), "{d:?}");
}

#[test]
fn foreign_promotions_before_ours() {
    // our target was promoted by someone else: carry on, the old primary is fenced.
    let s = state_in(Phase::CatchingUp, "pg-1", "pg-2", t(0));
    let mut c = fenced(cluster(), 1000);
    inst(&mut c, "pg-2").in_recovery = Some(false);
    let d = decide(&planned("pg-2"), &s, &c, t(10));
    assert_eq!(d.state.phase, Phase::Promoting);
    assert!(matches!(d.step, Step::MoveRoleLabels { .. }), "{d:?}");
    // another instance was: fail, and never unfence pg-1 (that would make two primaries).
    let mut c = fenced(cluster(), 1000);
    inst(&mut c, "pg-3").in_recovery = Some(false);
    let d = decide(&planned("pg-2"), &s, &c, t(10));
    assert!(
        matches!(&d.step, Step::Fail { reason } if reason.contains("pg-3 was promoted outside")),
        "{d:?}"
    );
}

#[test]
fn clean_up_never_unfences_next_to_another_primary_and_gives_up_in_time() {
    let mut s = state_in(Phase::CatchingUp, "pg-1", "pg-2", t(0));
    s.failing_since = Some(t(0));
    s.reason = Some("boom".into());
    let mut c = fenced(cluster(), 1000);
    inst(&mut c, "pg-2").in_recovery = Some(false);
    let d = decide(&planned("pg-2"), &s, &c, t(10));
    assert!(
        matches!(&d.step, Step::Fail { reason } if reason.contains("pg-2 accepts writes, so pg-1 stays fenced"))
    );
    let c = fenced(cluster(), 1000);
    let limit = Params::default().cleanup_timeout.as_secs() as i64;
    assert_eq!(
        decide(&planned("pg-2"), &s, &c, secs(limit - 1)).step,
        Step::Unfence { instance: "pg-1".into() }
    );
    let d = decide(&planned("pg-2"), &s, &c, secs(limit));
    assert!(
        matches!(&d.step, Step::Fail { reason } if reason.starts_with("boom; could not unfence pg-1")),
        "{d:?}"
    );
}

#[test]
fn terminal_states_do_nothing() {
    for phase in [Phase::Completed, Phase::Failed] {
        let mut s = state_in(Phase::Rebuilding, "pg-1", "pg-2", t(0));
        s.enter(phase, t(5));
        let d = decide(&planned("pg-2"), &s, &Observed::default(), t(10));
        assert_eq!(d, Decision { step: Step::Done, state: s });
    }
}

#[test]
fn cluster_deleted_mid_flight_fails() {
    let s = state_in(Phase::CatchingUp, "pg-1", "pg-2", t(0));
    let d = decide(&planned("pg-2"), &s, &Observed::default(), t(10));
    assert!(matches!(&d.step, Step::Fail { reason } if reason.contains("not found")));
}

#[test]
fn a_lost_fence_lsn_is_read_again_from_the_fenced_instance() {
    let mut s = state_in(Phase::CatchingUp, "pg-1", "pg-2", t(0));
    s.fence_lsn = None;
    let c = fenced(cluster(), 1200);
    let d = decide(&planned("pg-2"), &s, &c, t(10));
    assert_eq!(d.step, Step::WaitForCatchUp { target: "pg-2".into(), lsn: Lsn(1200) });
    assert_eq!(d.state.fence_lsn, Some(Lsn(1200)));
    let mut unreachable = c.clone();
    inst(&mut unreachable, "pg-1").reachable = false;
    assert_eq!(
        decide(&planned("pg-2"), &s, &unreachable, t(10)).step,
        Step::WaitForFence { instance: "pg-1".into() }
    );
    let limit = Params::default().catchup_timeout.as_secs() as i64;
    let d = decide(&planned("pg-2"), &s, &unreachable, secs(limit));
    assert!(d.state.reason.as_deref().unwrap().contains("final LSN of the fenced pg-1 is unknown"));
}

#[test]
fn a_replacement_operator_gives_each_wait_its_full_timeout() {
    // Fencing started at 0; the operator died and its successor led from 55 s on.
    let s = state_in(Phase::Fencing, "pg-1", "pg-2", t(0));
    let mut c = cluster();
    inst(&mut c, "pg-1").fence_marker = true;
    let fence = Params::default().fence_timeout.as_secs() as i64;
    c.watching_since = Some(secs(55));
    let d = decide(&planned("pg-2"), &s, &c, secs(56));
    assert_eq!(d.step, Step::WaitForFence { instance: "pg-1".into() }, "{d:?}");
    let d = decide(&planned("pg-2"), &s, &c, secs(55 + fence));
    assert!(d.state.reason.as_deref().unwrap().contains("was not fenced within 30s"), "{d:?}");

    // A failure's clean-up likewise: failing since 0, watched only from 100 s on.
    let mut failing = state_in(Phase::CatchingUp, "pg-1", "pg-2", t(0));
    failing.failing_since = Some(t(0));
    failing.reason = Some("boom".into());
    let mut c = fenced(cluster(), 1000);
    let cleanup = Params::default().cleanup_timeout.as_secs() as i64;
    c.watching_since = Some(secs(100));
    let d = decide(&planned("pg-2"), &failing, &c, secs(100 + cleanup - 1));
    assert_eq!(d.step, Step::Unfence { instance: "pg-1".into() }, "{d:?}");
    let d = decide(&planned("pg-2"), &failing, &c, secs(100 + cleanup));
    assert!(matches!(&d.step, Step::Fail { reason } if reason.contains("could not unfence pg-1")), "{d:?}");
}

#[test]
fn pending_claims_the_role_move_before_fencing() {
    let mut c = cluster();
    let checkpointed = decide(&planned("pg-2"), &SwitchoverState::default(), &c, t(0)).state;
    c.role_move = RoleMove { holder: None, holder_active: false, cluster_version: "41".into() };
    let d = decide(&planned("pg-2"), &checkpointed, &c, t(100));
    assert_eq!(d.step, Step::ClaimRoleMove { switchover: "so-1".into(), cluster_version: "41".into() });
    assert_eq!(d.state.phase, Phase::Pending);
    c.role_move.holder = Some("so-2".into());
    c.role_move.holder_active = true;
    let d = decide(&planned("pg-2"), &checkpointed, &c, t(200));
    assert_eq!(d.step, Step::WaitForTurn { behind: "so-2".into() }, "a live holder goes first");
    c.role_move.holder_active = false;
    let d = decide(&planned("pg-2"), &checkpointed, &c, t(300));
    assert!(matches!(d.step, Step::ClaimRoleMove { .. }), "the claim of an ended one is taken over: {d:?}");
    c.role_move.holder = Some("so-1".into());
    let d = decide(&planned("pg-2"), &checkpointed, &c, t(400));
    assert_eq!(d.step, Step::Fence { instance: "pg-1".into() });
}
