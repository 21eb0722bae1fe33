//! Failover mode: fence the lost primary by scale-down, promote the standby with the most WAL,
//! rebuild the lost one when it returns.

use super::*;

fn failover(target: Option<&str>) -> Request {
    req(target, Mode::Failover)
}

/// pg-1 unreachable; pg-2 received 1100 but replayed 1050; pg-3 at 1080.
fn lost() -> Observed {
    let mut c = cluster();
    let p = inst(&mut c, "pg-1");
    *p = InstanceView { name: "pg-1".into(), sts_replicas: 1, pod_exists: true, ..Default::default() };
    let a = inst(&mut c, "pg-2");
    a.receive_lsn = Some(Lsn(1100));
    a.replay_lsn = Some(Lsn(1050));
    a.streams_from = None;
    let b = inst(&mut c, "pg-3");
    b.receive_lsn = Some(Lsn(1080));
    b.replay_lsn = Some(Lsn(1080));
    b.streams_from = None;
    // Not renewed since the primary was lost.
    c.lease = Some(lease_of("pg-1", 60));
    c
}

fn reject(request: &Request, observed: &Observed) -> String {
    match decide(request, &SwitchoverState::default(), observed, t(0)).step {
        Step::Reject { reason } => reason,
        other => panic!("expected Reject, got {other:?}"),
    }
}

#[test]
fn failover_validation() {
    assert!(reject(&failover(None), &cluster()).contains("pg-1 is reachable and ready: use mode Planned"));
    assert!(reject(&failover(Some("pg-1")), &lost()).contains("target pg-1 is the lost primary"));
    assert!(reject(&failover(Some("pg-7")), &lost()).contains("target pg-7 is not an instance"));
    let mut c = lost();
    inst(&mut c, "pg-3").in_recovery = Some(false);
    assert!(reject(&failover(None), &c).contains("pg-3 is already out of recovery"));
    let c = Observed { current_primary: None, ..lost() };
    assert!(reject(&failover(None), &c).contains("no recorded primary"));
    let mut c = lost();
    inst(&mut c, "pg-2").reachable = false;
    inst(&mut c, "pg-3").ready = false;
    assert!(reject(&failover(None), &c).contains("no healthy standby to promote"));
    assert!(reject(&failover(Some("pg-3")), &c).contains("target pg-3 is not ready"));
    let mut c = lost();
    inst(&mut c, "pg-3").receive_lsn = Some(Lsn(0));
    inst(&mut c, "pg-3").replay_lsn = Some(Lsn(0));
    let mut tight = failover(Some("pg-3"));
    tight.target = Some("pg-3".into());
    let reason = next(
        &tight,
        &SwitchoverState::default(),
        &c,
        &Params { max_lag_bytes: 10, ..Params::default() },
        t(0),
    );
    assert!(
        matches!(&reason.step, Step::Reject { reason } if reason.contains("1100 bytes less WAL than pg-2")),
        "{reason:?}"
    );
}

#[test]
fn the_lost_primary_is_scaled_to_zero_first() {
    let mut c = lost();
    let d = decide(&failover(None), &SwitchoverState::default(), &c, t(0));
    assert_eq!(d.step, Step::ScaleToZero { instance: "pg-1".into() });
    assert_eq!(d.state.phase, Phase::Fencing);
    assert_eq!(d.state.to, None, "the target is picked once the old primary is gone");
    inst(&mut c, "pg-1").sts_replicas = 0; // pod still terminating: nothing waits for it
    let d2 = decide(&failover(None), &d.state, &c, t(100));
    assert_eq!(d2.step, Step::RevokeLease { from: "pg-1".into(), resource_version: "7".into() });
    // A Lease renewed lately means a live primary: wait (up to the fence timeout).
    c.lease = Some(lease_of("pg-1", 1));
    let d3 = decide(&failover(None), &d.state, &c, t(100));
    assert_eq!(d3.step, Step::WaitForFence { instance: "pg-1".into() });
    // Reachable and in recovery (it fenced itself): no need to wait out the Lease.
    let p = inst(&mut c, "pg-1");
    (p.reachable, p.in_recovery) = (true, Some(true));
    let d4 = decide(&failover(None), &d.state, &c, t(100));
    assert_eq!(d4.step, Step::RevokeLease { from: "pg-1".into(), resource_version: "7".into() });
}

/// The lost primary scaled away and its Lease revoked, as the executor leaves them.
fn fenced_by_lease() -> World {
    let mut w = World::new(lost());
    w.apply(&Step::ScaleToZero { instance: "pg-1".into() });
    w.apply(&Step::RevokeLease { from: "pg-1".into(), resource_version: "7".into() });
    w
}

#[test]
fn the_standby_with_most_wal_is_promoted_after_replaying_it() {
    let mut c = fenced_by_lease().observed;
    let mut s = SwitchoverState { from: Some("pg-1".into()), ..Default::default() };
    s.enter(Phase::Pending, t(0));
    s.enter(Phase::Fencing, t(0));
    let d = decide(&failover(None), &s, &c, t(500));
    assert_eq!(d.state.to.as_deref(), Some("pg-2"), "1100 received beats 1080 replayed");
    assert_eq!(d.step, Step::WaitForCatchUp { target: "pg-2".into(), lsn: Lsn(1100) });
    inst(&mut c, "pg-2").replay_lsn = Some(Lsn(1100));
    let d2 = decide(&failover(None), &d.state, &c, t(600));
    assert_eq!(d2.step, Step::HandOverLease { from: "pg-1".into(), to: "pg-2".into() });
    assert_eq!(d2.state.promotion_lsn, Some(Lsn(1100)));
    let mut w = World::new(c);
    w.apply(&d2.step);
    let d3 = decide(&failover(None), &d2.state, &w.observed, t(700));
    assert_eq!(d3.step, Step::Promote { target: "pg-2".into(), wait_seconds: 30 });
}

#[test]
fn replay_that_does_not_catch_up_promotes_anyway_after_the_short_wait() {
    let mut s = state_in(Phase::CatchingUp, "pg-1", "pg-2", t(0));
    s.fence_lsn = None;
    let w = fenced_by_lease();
    let wait = Params::default().failover_replay_wait.as_millis() as i64;
    assert!(matches!(
        decide(&failover(None), &s, &w.observed, t(wait - 1)).step,
        Step::WaitForCatchUp { .. }
    ));
    let d = decide(&failover(None), &s, &w.observed, t(wait));
    assert_eq!(d.step, Step::HandOverLease { from: "pg-1".into(), to: "pg-2".into() });
    assert_eq!(d.state.promotion_lsn, Some(Lsn(1100)), "promotion replays all it received");
}

#[test]
fn a_lost_primary_that_cannot_be_fenced_is_scaled_back_and_the_failover_fails() {
    let mut s = state_in(Phase::Fencing, "pg-1", "", t(0));
    s.to = None;
    let mut c = lost();
    inst(&mut c, "pg-1").sts_replicas = 0; // scaled away, but out of the operator's reach
    c.lease = Some(lease_of("pg-1", 1)); // and it keeps renewing its Lease: it is alive
    let limit = Params::default().fence_timeout.as_secs() as i64;
    let d = decide(&failover(None), &s, &c, secs(limit));
    assert!(d.state.reason.as_deref().unwrap().contains("still renews the primary lease"), "{d:?}");
    assert_unfenced_then_failed(&failover(None), d, c, "pg-1", secs(limit + 1));
}

#[test]
fn a_lost_primary_scaled_back_up_before_promotion_is_fenced_again() {
    let s = state_in(Phase::CatchingUp, "pg-1", "pg-2", t(0));
    let c = lost(); // replicas 1 again
    assert_eq!(decide(&failover(None), &s, &c, t(10)).step, Step::ScaleToZero { instance: "pg-1".into() });
}

#[test]
fn unreachable_target_before_promotion_times_out_and_unfences() {
    let s = state_in(Phase::CatchingUp, "pg-1", "pg-2", t(0));
    let mut w = fenced_by_lease();
    inst(&mut w.observed, "pg-2").reachable = false;
    let limit = Params::default().catchup_timeout.as_secs() as i64;
    assert!(matches!(
        decide(&failover(None), &s, &w.observed, secs(limit - 1)).step,
        Step::WaitForCatchUp { .. }
    ));
    let d = decide(&failover(None), &s, &w.observed, secs(limit));
    assert!(d.state.reason.as_deref().unwrap().contains("target pg-2 was not reachable within 30s"));
    assert_unfenced_then_failed(&failover(None), d, w.observed, "pg-1", secs(limit + 1));
}

#[test]
fn the_lost_primary_is_rebuilt_with_the_switchover_token() {
    let mut s = state_in(Phase::Rebuilding, "pg-1", "pg-2", t(0));
    s.promotion_timeline = Some(2);
    s.promotion_lsn = Some(Lsn(1100));
    let mut w = fenced_by_lease();
    for step in [
        Step::HandOverLease { from: "pg-1".into(), to: "pg-2".into() },
        Step::Promote { target: "pg-2".into(), wait_seconds: 30 },
        Step::MoveRoleLabels { primary: "pg-2".into(), standbys: vec!["pg-3".into()] },
        Step::Checkpoint { instance: "pg-2".into() },
        Step::FixSlots { instance: "pg-2".into(), wanted: vec!["relevo_pg_1".into(), "relevo_pg_3".into()] },
    ] {
        w.apply(&step);
    }
    let d = decide(&failover(None), &s, &w.observed, t(10));
    assert_eq!(
        d.step,
        Step::Rebuild { instance: "pg-1".into(), source: "pg-2".into(), token: "so-1".into() }
    );
    inst(&mut w.observed, "pg-1").rebuild_token = Some("so-1".into()); // requested, node still down
    let d = decide(&failover(None), &s, &w.observed, t(20));
    assert_eq!(d.step, Step::RepointStandby { instance: "pg-3".into(), new_primary: "pg-2".into() });
    w.apply(&d.step);
    // Its pod hangs terminating on a node that is not ready: deleted at once, since the
    // Lease no longer names it.
    let lost = inst(&mut w.observed, "pg-1");
    (lost.pod_exists, lost.pod_terminating, lost.node_ready) = (true, true, Some(false));
    lost.role_label = Some(Role::Standby);
    let d = decide(&failover(None), &s, &w.observed, t(30));
    assert_eq!(d.step, Step::ForceDeletePod { instance: "pg-1".into() });
    // Not while its node might still be running it.
    inst(&mut w.observed, "pg-1").node_ready = None;
    let d = decide(&failover(None), &s, &w.observed, t(30));
    // The node never comes back: the failover completes now, and says what is left.
    assert_eq!((d.step, d.state.phase), (Step::Complete, Phase::Completed));
    assert!(d.state.reason.as_deref().unwrap().contains("pg-1 unreachable, and follows pg-2 when back"));
}

#[test]
fn a_pod_on_a_dead_node_is_never_force_deleted_while_it_holds_the_lease() {
    let s = state_in(Phase::Rebuilding, "pg-1", "pg-2", t(0));
    let mut w = fenced_by_lease();
    w.apply(&Step::HandOverLease { from: "pg-1".into(), to: "pg-2".into() });
    w.observed.lease = Some(lease_of("pg-1", 60)); // as if it were somehow still its own
    let lost = inst(&mut w.observed, "pg-1");
    (lost.pod_exists, lost.pod_terminating, lost.node_ready) = (true, true, Some(false));
    (lost.rebuild_token, lost.role_label) = (Some("so-1".into()), Some(Role::Standby));
    let d = decide(&failover(None), &s, &w.observed, t(30));
    assert_ne!(d.step, Step::ForceDeletePod { instance: "pg-1".into() }, "{d:?}");
}
