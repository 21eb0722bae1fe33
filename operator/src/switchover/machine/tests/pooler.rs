//! The pooler in a switchover: PAUSE before the fence (failover: when it starts), point at
//! the new primary and RESUME once it is writable; a pod that does not confirm is waited for
//! a bounded time, then the switchover goes on and says so.

use super::*;
use crate::protocol::pooler::PauseState;

fn pooler(pod: &str, state: Option<PauseState>, points_at: Option<&str>) -> PoolerView {
    PoolerView { pod: pod.into(), state, points_at: points_at.map(Into::into) }
}

fn with_poolers(mut c: Observed, states: &[Option<PauseState>]) -> Observed {
    c.poolers = states.iter().enumerate().map(|(i, s)| pooler(&format!("pooler-{i}"), *s, None)).collect();
    c
}

const RUNNING: Option<PauseState> = Some(PauseState::Running);
const PAUSING: Option<PauseState> = Some(PauseState::Pausing);
const PAUSED: Option<PauseState> = Some(PauseState::Paused);

fn pods(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// A planned switchover's state after its first decision (pg-1 checkpointed).
fn checkpointed() -> SwitchoverState {
    decide(&planned("pg-2"), &SwitchoverState::default(), &cluster(), t(0)).state
}

#[test]
fn a_planned_switchover_fences_only_once_every_pooler_is_paused() {
    // (pooler states observed, step expected)
    let table: Vec<(Vec<Option<PauseState>>, Step)> = vec![
        (vec![RUNNING, RUNNING], Step::PausePoolers { pods: pods(&["pooler-0", "pooler-1"]) }),
        // Pausing: in-flight transactions are still running on the old primary.
        (vec![PAUSED, PAUSING], Step::PausePoolers { pods: pods(&["pooler-1"]) }),
        (vec![PAUSED, None], Step::PausePoolers { pods: pods(&["pooler-1"]) }),
        (vec![PAUSED, PAUSED], Step::Fence { instance: "pg-1".into() }),
        (vec![], Step::Fence { instance: "pg-1".into() }),
    ];
    for (states, expected) in table {
        let d = decide(&planned("pg-2"), &checkpointed(), &with_poolers(cluster(), &states), t(100));
        assert_eq!(d.step, expected, "{states:?}");
        let fencing = matches!(expected, Step::Fence { .. });
        assert_eq!(d.state.phase, if fencing { Phase::Fencing } else { Phase::Pending }, "{states:?}");
        // The bound starts at the first PAUSE; a cluster without a pooler never starts it.
        let paused_first = !states.is_empty() && !states.iter().all(|s| *s == PAUSED);
        assert_eq!(d.state.pooler_pause_started.is_some(), paused_first, "{states:?}");
    }
}

#[test]
fn a_pooler_that_never_confirms_is_waited_for_a_bounded_time_then_the_switchover_goes_on() {
    let c = with_poolers(cluster(), &[PAUSED, PAUSING]);
    let first = decide(&planned("pg-2"), &checkpointed(), &c, secs(1));
    assert_eq!(first.state.pooler_pause_started, Some(secs(1)));
    let limit = Params::default().pooler_pause_timeout.as_secs() as i64;
    let before =
        decide(&planned("pg-2"), &first.state, &c, secs(1 + limit) - chrono::TimeDelta::milliseconds(1));
    assert_eq!(before.step, Step::PausePoolers { pods: pods(&["pooler-1"]) });
    let after = decide(&planned("pg-2"), &first.state, &c, secs(1 + limit));
    assert_eq!(after.step, Step::Fence { instance: "pg-1".into() });
    let reason = after.state.reason.unwrap();
    assert!(reason.contains("pooler pods pooler-1 did not confirm the PAUSE within 5s"), "{reason}");
    // The bound counts only time this operator watched.
    let taken_over = Observed { watching_since: Some(secs(1 + limit)), ..c };
    let d = decide(&planned("pg-2"), &first.state, &taken_over, secs(1 + limit));
    assert_eq!(d.step, Step::PausePoolers { pods: pods(&["pooler-1"]) });
}

/// pg-1 unreachable, its Lease not renewed for a minute.
fn lost() -> Observed {
    let mut c = cluster();
    let p = inst(&mut c, "pg-1");
    *p = InstanceView { name: "pg-1".into(), sts_replicas: 1, pod_exists: true, ..Default::default() };
    c.lease = Some(lease_of("pg-1", 60));
    c
}

#[test]
fn a_failover_pauses_when_it_starts_and_an_answer_is_enough() {
    let failover = req(None, Mode::Failover);
    let table: Vec<(Vec<Option<PauseState>>, bool)> = vec![
        (vec![RUNNING, RUNNING], false),
        (vec![PAUSING, None], false),
        // The lost primary cannot end anyone's transaction: Pausing is as good as Paused.
        (vec![PAUSING, PAUSED], true),
    ];
    for (states, fences) in table {
        let d = decide(&failover, &SwitchoverState::default(), &with_poolers(lost(), &states), t(0));
        if fences {
            assert_eq!(d.state.phase, Phase::Fencing, "{states:?}");
            assert_eq!(d.step, Step::ScaleToZero { instance: "pg-1".into() });
        } else {
            assert!(matches!(d.step, Step::PausePoolers { .. }), "{states:?}: {d:?}");
            assert_eq!(d.state.phase, Phase::Pending);
        }
    }
}

#[test]
fn once_the_new_primary_is_writable_every_pooler_is_pointed_at_it_and_resumed_an_unanswering_one_for_a_bounded_time()
 {
    let s = state_in(Phase::Promoting, "pg-1", "pg-2", t(0));
    let mut c = promoted();
    c.poolers = vec![
        pooler("pooler-0", PAUSED, None),
        // Resumed by its own bound, still on the old target: pointed again.
        pooler("pooler-1", RUNNING, Some("pg-1")),
        pooler("pooler-2", RUNNING, Some("pg-2")),
        // Not answering this time: tried too, for a bounded time.
        pooler("pooler-3", None, None),
    ];
    let d = decide(&planned("pg-2"), &s, &c, secs(1));
    assert_eq!(
        d.step,
        Step::ResumePoolers { pods: pods(&["pooler-0", "pooler-1", "pooler-3"]), primary: "pg-2".into() }
    );
    for p in &mut c.poolers[..2] {
        *p = pooler(&p.pod.clone(), RUNNING, Some("pg-2"));
    }
    let d = decide(&planned("pg-2"), &s, &c, secs(2));
    assert_eq!(d.step, Step::ResumePoolers { pods: pods(&["pooler-3"]), primary: "pg-2".into() });
    // Past the pause timeout, a pod that still does not answer no longer holds the labels
    // back (its own bound resumes it).
    let d = decide(&planned("pg-2"), &s, &c, secs(10));
    assert!(matches!(d.step, Step::MoveRoleLabels { .. }), "{d:?}");
    // Not before the target accepts writes.
    let mut still_standby = c.clone();
    inst(&mut still_standby, "pg-2").in_recovery = Some(true);
    still_standby.poolers[0].state = PAUSED;
    let d = decide(&planned("pg-2"), &s, &still_standby, t(20));
    assert!(!matches!(d.step, Step::ResumePoolers { .. }), "{d:?}");
}

#[test]
fn a_failed_switchover_resumes_its_poolers_on_the_instance_that_accepts_writes_before_it_ends() {
    // The fence never took effect: the old primary is unfenced, then the paused poolers are
    // pointed at it and resumed, and only then does the switchover end Failed.
    let s = state_in(Phase::Fencing, "pg-1", "pg-2", t(0));
    let mut c = with_poolers(cluster(), &[PAUSED, PAUSED, None]);
    inst(&mut c, "pg-1").fence_marker = true;
    let limit = Params::default().fence_timeout.as_secs() as i64;
    let d = decide(&planned("pg-2"), &s, &c, secs(limit));
    assert_eq!(d.step, Step::Unfence { instance: "pg-1".into() }, "{d:?}");
    inst(&mut c, "pg-1").fence_marker = false;
    let d = decide(&planned("pg-2"), &d.state, &c, secs(limit + 1));
    // The pod that does not answer is left to its own bound.
    assert_eq!(d.step, Step::ResumePoolers { pods: pods(&["pooler-0", "pooler-1"]), primary: "pg-1".into() });
    assert_ne!(d.state.phase, Phase::Failed);
    c.poolers[0] = pooler("pooler-0", RUNNING, Some("pg-1"));
    c.poolers[1] = pooler("pooler-1", RUNNING, Some("pg-1"));
    let d = decide(&planned("pg-2"), &d.state, &c, secs(limit + 2));
    assert_eq!(d.state.phase, Phase::Failed, "{d:?}");
    // Past the clean-up bound, a pod that never resumes does not hold the failure open.
    c.poolers[1] = pooler("pooler-1", PAUSED, None);
    let cleanup = Params::default().cleanup_timeout.as_secs() as i64;
    let mut failing = d.state.clone();
    failing.phase = Phase::Fencing;
    failing.failing_since = Some(secs(limit));
    let d = decide(&planned("pg-2"), &failing, &c, secs(limit + cleanup));
    assert_eq!(d.state.phase, Phase::Failed, "{d:?}");
}
