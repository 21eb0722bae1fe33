//! Failover under synchronous replication: only a standby the primary last reported as
//! synchronous is promoted, the most advanced of them by WAL received, or none at all.

use super::*;

fn failover(target: Option<&str>) -> Request {
    req(target, Mode::Failover)
}

/// pg-1 lost; pg-2 received 1100, pg-3 1080; `synchronous`: the primary's last report, of
/// which a failover must see one (FIRST, or ANY as many as were reported).
fn lost(synchronous: Option<&[&str]>) -> Observed {
    lost_seeing(synchronous, 1)
}

fn lost_seeing(synchronous: Option<&[&str]>, must_see: usize) -> Observed {
    let mut c = cluster();
    *inst(&mut c, "pg-1") =
        InstanceView { name: "pg-1".into(), sts_replicas: 1, pod_exists: true, ..Default::default() };
    for (name, received) in [("pg-2", 1100), ("pg-3", 1080)] {
        let s = inst(&mut c, name);
        (s.receive_lsn, s.replay_lsn, s.streams_from) = (Some(Lsn(received)), Some(Lsn(1000)), None);
    }
    c.lease = Some(lease_of("pg-1", 60));
    c.synchronous_standbys = synchronous
        .map(|list| SynchronousStandbys { standbys: list.iter().map(|s| s.to_string()).collect(), must_see });
    c
}

/// The target the machine picks once the lost primary is fenced.
fn picked(observed: &Observed) -> Result<String, String> {
    let mut w = World::new(observed.clone());
    w.apply(&Step::ScaleToZero { instance: "pg-1".into() });
    w.apply(&Step::RevokeLease { from: "pg-1".into(), resource_version: "7".into() });
    let mut s = SwitchoverState { from: Some("pg-1".into()), ..Default::default() };
    s.enter(Phase::Pending, t(0));
    s.enter(Phase::Fencing, t(0));
    let d = decide(&failover(None), &s, &w.observed, t(500));
    match (d.state.to, d.state.reason) {
        (Some(to), _) => Ok(to),
        (None, reason) => Err(reason.unwrap_or_default()),
    }
}

fn reject(request: &Request, observed: &Observed) -> String {
    match decide(request, &SwitchoverState::default(), observed, t(0)).step {
        Step::Reject { reason } => reason,
        other => panic!("expected Reject, got {other:?}"),
    }
}

#[test]
fn quorum_any_1_promotes_the_synchronous_standby_with_the_newest_wal() {
    // ANY 1 over two standbys: both are `quorum`, and a commit waited for either one, so
    // only the one that received the most WAL surely has every acknowledged commit.
    assert_eq!(picked(&lost_seeing(Some(&["pg-2", "pg-3"]), 2)), Ok("pg-2".into()));
    let mut c = lost_seeing(Some(&["pg-2", "pg-3"]), 2);
    inst(&mut c, "pg-3").receive_lsn = Some(Lsn(1200));
    assert_eq!(picked(&c), Ok("pg-3".into()), "received, not replayed, decides");
}

#[test]
fn a_standby_that_was_not_synchronous_is_never_promoted() {
    // pg-2 received more WAL, but only pg-3 was confirming commits: the rule stays strict and
    // never leans on positions observed after the primary is gone.
    assert_eq!(picked(&lost(Some(&["pg-3"]))), Ok("pg-3".into()));
    let reason = reject(&failover(Some("pg-2")), &lost(Some(&["pg-3"])));
    assert!(reason.contains("target pg-2 was not a synchronous standby"), "{reason}");
    assert!(reason.contains("synchronous: pg-3"), "{reason}");
}

#[test]
fn with_no_synchronous_standby_healthy_the_failover_does_not_start() {
    let mut c = lost(Some(&["pg-3"]));
    inst(&mut c, "pg-3").reachable = false;
    let reason = reject(&failover(None), &c);
    assert!(reason.starts_with("no healthy standby to promote: synchronous replication is on"), "{reason}");
    assert!(reason.contains("(synchronous: pg-3)"), "{reason}");
    let none = lost(Some(&[]));
    assert!(reject(&failover(None), &none).contains("(synchronous: none)"));
}

#[test]
fn a_synchronous_standby_lost_during_fencing_fails_the_failover_with_the_reason() {
    let mut c = lost(Some(&["pg-3"]));
    inst(&mut c, "pg-3").ready = false;
    let reason = picked(&c).unwrap_err();
    assert!(
        reason.starts_with("no healthy standby left to promote: synchronous replication is on"),
        "{reason}"
    );
}

#[test]
fn asynchronous_clusters_promote_the_most_advanced_standby_as_before() {
    assert_eq!(picked(&lost(None)), Ok("pg-2".into()));
    let mut c = lost(None);
    inst(&mut c, "pg-2").reachable = false;
    inst(&mut c, "pg-3").reachable = false;
    assert_eq!(reject(&failover(None), &c), "no healthy standby to promote");
}

#[test]
fn planned_switchovers_ignore_the_synchronous_report() {
    let mut c = cluster();
    c.synchronous_standbys = Some(SynchronousStandbys { standbys: vec!["pg-3".into()], must_see: 1 });
    let d = decide(&planned("pg-2"), &SwitchoverState::default(), &c, t(0));
    assert!(!matches!(d.step, Step::Reject { .. }), "{d:?}");
}

#[test]
fn a_quorum_member_that_did_not_answer_may_hold_the_newest_commit() {
    // ANY 1 over pg-2 and pg-3: a commit may be on pg-2 alone, so with pg-2 silent nothing
    // says pg-3 has it.
    let mut c = lost_seeing(Some(&["pg-2", "pg-3"]), 2);
    inst(&mut c, "pg-2").reachable = false;
    let reason = reject(&failover(None), &c);
    assert!(reason.contains("1 of the standbys that were synchronous"), "{reason}");
    assert!(reason.contains("and 2 must"), "{reason}");
    // Seen but not ready: pg-2 answers and holds more, so pg-3 may lack what pg-2 confirmed.
    let mut c = lost_seeing(Some(&["pg-2", "pg-3"]), 2);
    inst(&mut c, "pg-2").ready = false;
    let reason = reject(&failover(Some("pg-3")), &c);
    assert!(reason.contains("target pg-3 holds less WAL than another synchronous standby"), "{reason}");
    // Under FIRST (each commit on both), pg-3 holds every acknowledged commit.
    let mut c = lost(Some(&["pg-2", "pg-3"]));
    inst(&mut c, "pg-2").ready = false;
    assert_eq!(picked(&c), Ok("pg-3".into()));
}
