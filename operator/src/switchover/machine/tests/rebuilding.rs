//! Promoting and Rebuilding: after promotion may have happened, the old primary never gets its
//! role back, and the cluster converges on the new primary.

use super::*;

#[test]
fn promote_is_requested_while_the_target_is_in_recovery() {
    let s = state_in(Phase::Promoting, "pg-1", "pg-2", t(0));
    let c = super::super::tests::cluster();
    let mut c = c;
    inst(&mut c, "pg-1").in_recovery = Some(true);
    let d = decide(&planned("pg-2"), &s, &c, t(10));
    assert_eq!(d.step, Step::HandOverLease { from: "pg-1".into(), to: "pg-2".into() });
    c.lease = Some(lease_of("pg-2", 0));
    let d = decide(&planned("pg-2"), &s, &c, t(10));
    assert_eq!(d.step, Step::Promote { target: "pg-2".into(), wait_seconds: 30 });
    inst(&mut c, "pg-2").reachable = false;
    let d = decide(&planned("pg-2"), &s, &c, t(20));
    assert_eq!(d.step, Step::WaitForPromotion { target: "pg-2".into() });
}

#[test]
fn promote_issued_twice_is_not_reissued_once_promoted() {
    let s = state_in(Phase::Promoting, "pg-1", "pg-2", secs(10));
    let d = decide(&planned("pg-2"), &s, &promoted(), secs(11));
    assert_eq!(
        d.step,
        Step::MoveRoleLabels { primary: "pg-2".into(), standbys: vec!["pg-1".into(), "pg-3".into()] }
    );
    assert_eq!(d.state.promotion_timeline, Some(2));
    assert_eq!(
        d.state.write_unavailable,
        Some(std::time::Duration::from_secs(1)),
        "from the fence to the label move"
    );
}

#[test]
fn checkpoint_on_the_new_timeline_before_rebuilding() {
    let s = state_in(Phase::Promoting, "pg-1", "pg-2", t(0));
    let mut c = promoted();
    let mut w = World::new(c.clone());
    w.apply(&decide(&planned("pg-2"), &s, &c, t(10)).step);
    c = w.observed.clone();
    let d = decide(&planned("pg-2"), &s, &c, t(20));
    assert_eq!(d.step, Step::Checkpoint { instance: "pg-2".into() });
    inst(&mut c, "pg-2").checkpoint_timeline = Some(2);
    let d = decide(&planned("pg-2"), &s, &c, t(30));
    assert_eq!(d.state.phase, Phase::Rebuilding);
    // first rebuild action: slots on the new primary, for everyone else.
    assert_eq!(
        d.step,
        Step::FixSlots { instance: "pg-2".into(), wanted: vec!["relevo_pg_1".into(), "relevo_pg_3".into()] }
    );
}

#[test]
fn promotion_timeout_fails_and_keeps_the_old_primary_fenced() {
    let s = state_in(Phase::Promoting, "pg-1", "pg-2", t(0));
    let mut c = promoted();
    inst(&mut c, "pg-2").in_recovery = Some(true);
    let limit = Params::default().promote_timeout.as_secs() as i64;
    let d = decide(&planned("pg-2"), &s, &c, secs(limit));
    assert_eq!(d.state.phase, Phase::Failed);
    assert!(
        matches!(&d.step, Step::Fail { reason } if reason.contains("not promoted within 60s; pg-1 stays fenced"))
    );
}

#[test]
fn target_disappearing_after_promote_fails_without_unfencing() {
    for phase in [Phase::Promoting, Phase::Rebuilding] {
        let s = state_in(phase, "pg-1", "pg-2", t(0));
        let mut c = promoted();
        c.instances.retain(|i| i.name != "pg-2");
        let d = decide(&planned("pg-2"), &s, &c, t(10));
        assert_eq!(d.state.phase, Phase::Failed, "{phase:?}");
        assert!(matches!(d.step, Step::Fail { .. }), "{phase:?}: never Unfence");
    }
}

#[test]
fn two_primaries_after_promotion_fence_the_rogue_then_fail() {
    for phase in [Phase::Promoting, Phase::Rebuilding] {
        let s = state_in(phase, "pg-1", "pg-2", t(0));
        let mut c = promoted();
        let old = inst(&mut c, "pg-1");
        old.in_recovery = Some(false); // someone restarted it as a primary
        old.current_lsn = Some(Lsn(1300));
        let d = decide(&planned("pg-2"), &s, &c, t(10));
        assert_eq!(d.step, Step::ScaleToZero { instance: "pg-1".into() }, "{phase:?}");
        assert!(d.state.reason.as_deref().unwrap().contains("two primaries observed (pg-2 and pg-1)"));
        assert_eq!(d.state.phase, phase, "stays until the rogue is fenced");
        // scaled, pod terminating, still answering:
        inst(&mut c, "pg-1").sts_replicas = 0;
        assert_eq!(
            decide(&planned("pg-2"), &d.state, &c, t(20)).step,
            Step::WaitForFence { instance: "pg-1".into() }
        );
        // a crash before the scale-down executed: the same step again.
        inst(&mut c, "pg-1").sts_replicas = 1;
        assert_eq!(
            decide(&planned("pg-2"), &d.state, &c, t(20)).step,
            Step::ScaleToZero { instance: "pg-1".into() }
        );
        let mut w = World::new(c.clone());
        w.apply(&Step::ScaleToZero { instance: "pg-1".into() });
        let done = decide(&planned("pg-2"), &d.state, &w.observed, t(30));
        assert_eq!(done.state.phase, Phase::Failed);
        assert!(matches!(done.step, Step::Fail { .. }));
        assert!(!w.observed.instances.iter().any(|i| i.name != "pg-2" && i.is_primary()));
    }
}

fn rebuilding_world() -> (SwitchoverState, World) {
    let mut s = state_in(Phase::Rebuilding, "pg-1", "pg-2", t(0));
    s.promotion_timeline = Some(2);
    let mut w = World::new(promoted());
    w.apply(&Step::MoveRoleLabels { primary: "pg-2".into(), standbys: vec!["pg-1".into(), "pg-3".into()] });
    w.apply(&Step::Checkpoint { instance: "pg-2".into() });
    (s, w)
}

#[test]
fn rebuilding_repoints_cleans_slots_unfences_and_completes() {
    let (s, mut w) = rebuilding_world();
    inst(&mut w.observed, "pg-1").slots = vec!["relevo_pg_2".into(), "relevo_pg_3".into()];
    inst(&mut w.observed, "pg-2").slots = vec!["relevo_pg_3".into(), "relevo_pg_2".into()];
    let expected = [
        Step::FixSlots { instance: "pg-2".into(), wanted: vec!["relevo_pg_1".into(), "relevo_pg_3".into()] },
        Step::FixSlots { instance: "pg-1".into(), wanted: vec![] },
        Step::RepointStandby { instance: "pg-1".into(), new_primary: "pg-2".into() },
        Step::Unfence { instance: "pg-1".into() },
        Step::RepointStandby { instance: "pg-3".into(), new_primary: "pg-2".into() },
        Step::Complete,
    ];
    for (n, want) in expected.iter().enumerate() {
        let d = decide(&planned("pg-2"), &s, &w.observed, t(100 + n as i64));
        assert_eq!(&d.step, want, "step {n}");
        w.apply(&d.step);
        if d.step == Step::Complete {
            assert_eq!(d.state.phase, Phase::Completed);
            assert_eq!(d.state.reason, None);
        }
    }
}

#[test]
fn a_diverged_instance_is_rebuilt_once() {
    let (s, mut w) = rebuilding_world();
    w.apply(&Step::FixSlots {
        instance: "pg-2".into(),
        wanted: vec!["relevo_pg_1".into(), "relevo_pg_3".into()],
    });
    inst(&mut w.observed, "pg-1").replay_lsn = Some(Lsn(1050)); // past the fork at 1000, on timeline 1
    let d = decide(&planned("pg-2"), &s, &w.observed, t(10));
    assert_eq!(
        d.step,
        Step::Rebuild { instance: "pg-1".into(), source: "pg-2".into(), token: "so-1".into() }
    );
    inst(&mut w.observed, "pg-1").rebuild_token = Some("so-1".into());
    let d = decide(&planned("pg-2"), &s, &w.observed, t(20));
    assert_eq!(
        d.step,
        Step::RepointStandby { instance: "pg-3".into(), new_primary: "pg-2".into() },
        "moves on"
    );
    w.apply(&d.step);
    let d = decide(&planned("pg-2"), &s, &w.observed, t(30));
    assert_eq!(d.step, Step::WaitForStandbys { pending: vec!["pg-1".into()] });
    // a rebuild token from an earlier switchover does not count:
    inst(&mut w.observed, "pg-1").rebuild_token = Some("so-0".into());
    assert!(matches!(decide(&planned("pg-2"), &s, &w.observed, t(40)).step, Step::Rebuild { .. }));
}

#[test]
fn a_standby_that_cannot_follow_is_rebuilt_after_the_grace() {
    let (s, mut w) = rebuilding_world();
    w.apply(&Step::FixSlots {
        instance: "pg-2".into(),
        wanted: vec!["relevo_pg_1".into(), "relevo_pg_3".into()],
    });
    w.apply(&Step::RepointStandby { instance: "pg-3".into(), new_primary: "pg-2".into() });
    let p = inst(&mut w.observed, "pg-1");
    p.fence_marker = false;
    p.slots.clear();
    p.upstream = Some("pg-2".into()); // re-pointed, never streams
    let grace = Params::default().repoint_grace.as_secs() as i64;
    let d = decide(&planned("pg-2"), &s, &w.observed, secs(grace - 1));
    assert_eq!(d.step, Step::WaitForStandbys { pending: vec!["pg-1".into()] });
    let d = decide(&planned("pg-2"), &s, &w.observed, secs(grace));
    assert_eq!(
        d.step,
        Step::Rebuild { instance: "pg-1".into(), source: "pg-2".into(), token: "so-1".into() }
    );
}

#[test]
fn rebuild_timeout_fails_a_planned_switchover_with_the_laggards() {
    let (s, mut w) = rebuilding_world();
    w.apply(&Step::FixSlots {
        instance: "pg-2".into(),
        wanted: vec!["relevo_pg_1".into(), "relevo_pg_3".into()],
    });
    w.apply(&Step::RepointStandby { instance: "pg-1".into(), new_primary: "pg-2".into() });
    w.apply(&Step::Unfence { instance: "pg-1".into() });
    w.apply(&Step::FixSlots { instance: "pg-1".into(), wanted: vec![] });
    inst(&mut w.observed, "pg-3").reachable = false;
    inst(&mut w.observed, "pg-3").in_recovery = None;
    let limit = Params::default().rebuild_timeout.as_secs() as i64;
    let d = decide(&planned("pg-2"), &s, &w.observed, secs(limit));
    assert_eq!(d.state.phase, Phase::Failed);
    assert!(
        matches!(&d.step, Step::Fail { reason } if reason.contains("pg-2 is the primary, but pg-3 did not stream"))
    );
}

#[test]
fn labels_moved_back_by_someone_are_moved_again() {
    let (s, mut w) = rebuilding_world();
    inst(&mut w.observed, "pg-1").role_label = Some(Role::Primary);
    assert!(matches!(decide(&planned("pg-2"), &s, &w.observed, t(10)).step, Step::MoveRoleLabels { .. }));
}
