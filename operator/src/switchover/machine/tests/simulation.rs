//! Whole switchovers against the simulated cluster, with the operator crashing anywhere:
//! the property that matters is "it completes, and there are never two primaries".

use super::*;

/// How the executor misbehaves at step number `at`.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// The state was persisted, then the operator died before executing the step.
    CrashBeforeExecute(usize),
    /// The step ran, the operator died, and the restarted one runs it again.
    ExecuteTwice(usize),
    /// The operator died before persisting its decision (the step never ran).
    CrashBeforePersist(usize),
}

struct Run {
    state: SwitchoverState,
    steps: Vec<Step>,
    world: World,
}

fn run(request: &Request, observed: Observed, fault: Fault) -> Run {
    let mut world = World::new(observed);
    let mut state = SwitchoverState::default();
    let mut steps = Vec::new();
    for n in 0..200 {
        let now = t(100 * n as i64);
        // No other Switchover exists here: a claim of another name is one that ended.
        let claim = &mut world.observed.role_move;
        claim.holder_active = claim.holder.as_deref() == Some(request.name.as_str());
        let d = decide(request, &state, &world.observed, now);
        assert_eq!(d, decide(request, &state, &world.observed, now), "pure: same input, same decision");
        let persisted = !matches!(fault, Fault::CrashBeforePersist(k) if k == n);
        if persisted {
            state = d.state.clone();
        }
        let executed = persisted && !matches!(fault, Fault::CrashBeforeExecute(k) if k == n);
        if executed {
            world.apply(&d.step);
            if matches!(fault, Fault::ExecuteTwice(k) if k == n) {
                world.apply(&d.step);
            }
        }
        let primaries = world.observed.primaries().len();
        assert!(primaries <= 1, "two primaries after {:?} ({fault:?})", d.step);
        world.settle();
        steps.push(d.step.clone());
        if state.phase.is_terminal() {
            world.release_role_move(&request.name);
            return Run { state, steps, world };
        }
    }
    panic!("did not finish ({fault:?}): last steps {:?}", &steps[steps.len() - 5..]);
}

fn assert_converged(r: &Run, primary: &str) {
    assert_eq!(r.state.phase, Phase::Completed, "{:?}\n{:?}", r.state, r.steps);
    let c = &r.world.observed;
    assert_eq!(c.primaries().iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), vec![primary]);
    for i in c.instances.iter().filter(|i| i.name != primary) {
        assert_eq!(i.streams_from.as_deref(), Some(primary), "{} streams", i.name);
        assert!(i.slots.is_empty() && !i.fence_marker, "{} clean: {i:?}", i.name);
    }
    let p = c.instance(primary).unwrap();
    assert_eq!(p.checkpoint_timeline, p.timeline, "checkpoint on the new timeline");
    assert_eq!(p.slots.len(), c.instances.len() - 1);
}

#[test]
fn planned_switchover_end_to_end() {
    let r = run(&planned("pg-2"), cluster(), Fault::None);
    assert_converged(&r, "pg-2");
    let kinds: Vec<String> =
        r.steps.iter().map(|s| format!("{s:?}").split([' ', '{']).next().unwrap().to_string()).collect();
    let order = [
        "Checkpoint",
        "Fence",
        "HandOverLease",
        "Promote",
        "MoveRoleLabels",
        "Checkpoint",
        "FixSlots",
        "Complete",
    ];
    let mut it = kinds.iter();
    for want in order {
        assert!(it.any(|k| k == want), "{want} missing or out of order in {kinds:?}");
    }
    assert!(!kinds.contains(&"Rebuild".to_string()), "a clean demotion needs no rewind: {kinds:?}");
    assert_eq!(r.state.fence_lsn, Some(Lsn(1000)));
    assert_eq!(r.state.promotion_timeline, Some(2));
    assert!(r.state.write_unavailable.is_some());
    assert!(r.state.duration().is_some());
}

#[test]
fn failover_end_to_end() {
    let mut c = cluster();
    let p = inst(&mut c, "pg-1");
    *p = InstanceView { name: "pg-1".into(), sts_replicas: 1, pod_exists: true, ..Default::default() };
    inst(&mut c, "pg-3").receive_lsn = Some(Lsn(1001));
    c.lease = Some(lease_of("pg-1", 60));
    let r = run(&req(None, Mode::Failover), c, Fault::None);
    assert_converged(&r, "pg-3");
    assert!(r.steps.contains(&Step::ScaleToZero { instance: "pg-1".into() }));
    assert!(r.steps.contains(&Step::Rebuild {
        instance: "pg-1".into(),
        source: "pg-3".into(),
        token: "so-1".into()
    }));
    let scale = r.steps.iter().position(|s| matches!(s, Step::ScaleToZero { .. })).unwrap();
    let revoke = r.steps.iter().position(|s| matches!(s, Step::RevokeLease { .. })).unwrap();
    let hand_over = r.steps.iter().position(|s| matches!(s, Step::HandOverLease { .. })).unwrap();
    let promote = r.steps.iter().position(|s| matches!(s, Step::Promote { .. })).unwrap();
    assert!(scale < revoke && revoke < hand_over && hand_over < promote, "fence before promotion");
    assert_eq!(r.world.observed.lease.as_ref().and_then(|l| l.holder.as_deref()), Some("pg-3"));
}

#[test]
fn failback_again_and_again() {
    let mut observed = cluster();
    for (round, (from, to)) in
        [("pg-1", "pg-2"), ("pg-2", "pg-1"), ("pg-1", "pg-2"), ("pg-2", "pg-1")].into_iter().enumerate()
    {
        let mut request = planned(to);
        request.name = format!("so-{round}");
        let r = run(&request, observed, Fault::None);
        assert_converged(&r, to);
        assert_eq!(r.state.from.as_deref(), Some(from));
        observed = r.world.observed;
    }
}

#[test]
fn an_operator_crash_anywhere_still_completes() {
    let lost_primary = || {
        let mut c = cluster();
        let p = inst(&mut c, "pg-1");
        *p = InstanceView { name: "pg-1".into(), sts_replicas: 1, pod_exists: true, ..Default::default() };
        c.lease = Some(lease_of("pg-1", 60));
        c
    };
    for (request, observed, primary) in
        [(planned("pg-2"), cluster(), "pg-2"), (req(None, Mode::Failover), lost_primary(), "pg-2")]
    {
        let clean = run(&request, observed.clone(), Fault::None);
        for k in 0..clean.steps.len() {
            for fault in [Fault::CrashBeforeExecute(k), Fault::ExecuteTwice(k), Fault::CrashBeforePersist(k)]
            {
                let r = run(&request, observed.clone(), fault);
                assert_converged(&r, primary);
            }
        }
    }
}

#[test]
fn a_restart_recomputes_the_same_step_from_the_persisted_state() {
    // Re-running the machine on what was persisted, without anything executed, must ask for
    // the same action again (not skip it, not do something else).
    let request = planned("pg-2");
    let mut world = World::new(cluster());
    let mut state = SwitchoverState::default();
    for n in 0..40 {
        let d = decide(&request, &state, &world.observed, t(10 * n));
        let again = decide(&request, &d.state, &world.observed, t(10 * n + 5));
        let waits = matches!(
            d.step,
            Step::WaitForFence { .. } | Step::WaitForCatchUp { .. } | Step::WaitForStandbys { .. }
        );
        let optional_checkpoint = d.state.phase == Phase::Pending; // the pre-fence checkpoint
        if !waits && !optional_checkpoint && !d.state.phase.is_terminal() && d.step != Step::Complete {
            assert_eq!(again.step, d.step, "after a restart at step {n}");
        }
        world.apply(&d.step);
        world.settle();
        state = d.state;
        if state.phase.is_terminal() {
            assert_eq!(state.phase, Phase::Completed);
            return;
        }
    }
    panic!("did not complete");
}

/// A failover Switchover of the cluster of [`cluster`] whose primary pg-1 was lost.
fn lost_primary() -> Observed {
    let mut c = cluster();
    let p = inst(&mut c, "pg-1");
    *p = InstanceView { name: "pg-1".into(), sts_replicas: 1, pod_exists: true, ..Default::default() };
    c.lease = Some(lease_of("pg-1", 60));
    c
}

fn named(mut request: Request, name: &str) -> Request {
    request.name = name.into();
    request
}

/// Two Switchovers of one cluster, decided in an order that changes from round to round,
/// while another writer changes the PgCluster now and then (so claims conflict), and with
/// the list of Switchovers always empty (the stalest cache there is): only the role-move
/// claim keeps them apart. Never both past Pending at once, never two primaries, and both
/// end.
#[test]
fn two_switchovers_never_act_at_once() {
    let cases = [
        (named(planned("pg-2"), "so-a"), named(req(None, Mode::Failover), "so-b"), cluster()),
        (named(planned("pg-2"), "so-a"), named(planned("pg-3"), "so-b"), cluster()),
        (named(req(None, Mode::Failover), "so-a"), named(planned("pg-3"), "so-b"), lost_primary()),
        (
            named(req(None, Mode::Failover), "so-a"),
            named(req(Some("pg-3"), Mode::Failover), "so-b"),
            lost_primary(),
        ),
    ];
    for (a, b, observed) in cases {
        for seed in 0..64u64 {
            let completed = two_at_once(&[a.clone(), b.clone()], observed.clone(), seed);
            assert!(completed >= 1, "{:?} then {:?}, seed {seed}: neither completed", a.mode, b.mode);
        }
    }
}

/// Runs both requests to their end; returns how many completed.
fn two_at_once(requests: &[Request; 2], observed: Observed, seed: u64) -> usize {
    let mut world = World::new(Observed {
        role_move: RoleMove { holder: None, holder_active: false, cluster_version: "1".into() },
        ..observed
    });
    let mut states = [SwitchoverState::default(), SwitchoverState::default()];
    let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut roll = move || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        rng >> 33
    };
    for n in 0..400 {
        let first = (roll() % 2) as usize;
        for who in [first, 1 - first] {
            if states[who].phase.is_terminal() {
                continue;
            }
            let mut seen = world.observed.clone();
            seen.active_switchovers = vec![];
            let holder = seen.role_move.holder.clone();
            seen.role_move.holder_active = requests
                .iter()
                .zip(&states)
                .any(|(r, s)| Some(&r.name) == holder.as_ref() && !s.phase.is_terminal());
            let d = decide(&requests[who], &states[who], &seen, t(100 * n));
            states[who] = d.state.clone();
            if roll() % 3 == 0 {
                world.bump_cluster_version(); // the PgCluster controller wrote its status
            }
            world.apply(&d.step);
            assert!(world.observed.primaries().len() <= 1, "two primaries after {:?}", d.step);
            world.settle();
            if states[who].phase.is_terminal() {
                world.release_role_move(&requests[who].name);
            }
            let acting =
                states.iter().filter(|s| s.phase != Phase::Pending && !s.phase.is_terminal()).count();
            assert!(acting <= 1, "both act (seed {seed}): {:?} / {:?}", states[0], states[1]);
        }
        if states.iter().all(|s| s.phase.is_terminal()) {
            return states.iter().filter(|s| s.phase == Phase::Completed).count();
        }
    }
    panic!("did not end (seed {seed}): {:?} / {:?}", states[0], states[1]);
}

/// A standby whose node died before the switchover does not hold it in Rebuilding: the new
/// primary is writable, and the standby follows `-rw` whenever its node returns. One that
/// merely does not answer (its node is ready: a restart) is waited for.
#[test]
fn a_standby_on_a_dead_node_does_not_hold_up_the_switchover() {
    let mut c = cluster();
    let away = inst(&mut c, "pg-3");
    (away.reachable, away.in_recovery, away.streams_from, away.node_ready) = (false, None, None, Some(false));
    let r = run(&planned("pg-2"), c, Fault::None);
    assert_eq!(r.state.phase, Phase::Completed, "{:?}", r.steps);
    let reason = r.state.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("pg-3 unreachable, and follows pg-2 when back"), "{reason}");

    let mut restarting = r.world.observed.clone();
    inst(&mut restarting, "pg-3").node_ready = None;
    let s = state_in(Phase::Rebuilding, "pg-1", "pg-2", t(0));
    let d =
        decide(&planned("pg-2"), &SwitchoverState { promotion_timeline: Some(2), ..s }, &restarting, t(10));
    assert!(matches!(d.step, Step::WaitForStandbys { .. }), "{d:?}");
}
