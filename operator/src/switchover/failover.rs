//! When to fail over on our own: a pure decision, so every case is a table row in a test.
//!
//! The controller tracks since when the recorded primary has been unreachable or not ready
//! (`primary_unready_since`, reset whenever it is seen reachable and ready) and, when this
//! returns a trigger, creates a Switchover with mode Failover. The Switchover machine then
//! re-validates everything, so a trigger is a proposal, never an action by itself.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::machine::failover_candidate;
use super::model::Observed;

/// Why an automatic failover should start now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverTrigger {
    pub lost_primary: String,
    /// The standby the machine would promote if nothing changes (informational: the machine
    /// picks again once the lost primary is fenced).
    pub candidate: String,
    pub unready_for: Duration,
}

/// Trigger when failover is enabled, no Switchover of the cluster is active, the recorded
/// primary has been unreachable or not ready for at least `delay`, no other instance already
/// accepts writes, and at least one standby is healthy enough to promote. Never when the
/// primary is reachable and ready, whatever `primary_unready_since` says.
pub fn failover_decision(
    observed: &Observed,
    primary_unready_since: Option<DateTime<Utc>>,
    delay: Duration,
    now: DateTime<Utc>,
    enabled: bool,
) -> Option<FailoverTrigger> {
    if !enabled || !observed.cluster_exists || !observed.active_switchovers.is_empty() {
        return None;
    }
    let lost = observed.instance(observed.current_primary.as_deref()?)?;
    if lost.is_primary() && lost.ready {
        return None;
    }
    if observed.primaries().iter().any(|p| p.name != lost.name) {
        return None;
    }
    let unready_for = (now - primary_unready_since?).to_std().ok()?;
    if unready_for < delay {
        return None;
    }
    let candidate = failover_candidate(observed, &lost.name)?.name.clone();
    Some(FailoverTrigger { lost_primary: lost.name.clone(), candidate, unready_for })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::switchover::model::{ActiveSwitchover, InstanceView, Mode, Phase, SynchronousStandbys};

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn primary(up: bool, ready: bool) -> InstanceView {
        InstanceView {
            name: "pg-1".into(),
            sts_replicas: 1,
            pod_exists: true,
            ready,
            reachable: up,
            in_recovery: up.then_some(false),
            ..Default::default()
        }
    }

    fn standby(name: &str, healthy: bool, replay: u64) -> InstanceView {
        InstanceView {
            name: name.into(),
            sts_replicas: 1,
            pod_exists: true,
            ready: healthy,
            reachable: healthy,
            in_recovery: healthy.then_some(true),
            replay_lsn: healthy.then_some(crate::postgres::lsn::Lsn(replay)),
            receive_lsn: healthy.then_some(crate::postgres::lsn::Lsn(replay)),
            timeline: Some(1),
            ..Default::default()
        }
    }

    fn cluster(primary: InstanceView, standbys: Vec<InstanceView>) -> Observed {
        let mut instances = vec![primary];
        instances.extend(standbys);
        Observed {
            cluster_exists: true,
            current_primary: Some("pg-1".into()),
            instances,
            active_switchovers: vec![],
            lease: None,
            role_move: Default::default(),
            watching_since: None,
            synchronous_standbys: None,
            poolers: vec![],
        }
    }

    const DELAY: Duration = Duration::from_secs(5);

    /// (description, observed, unready since, now, enabled, expected candidate)
    type Row = (&'static str, Observed, Option<DateTime<Utc>>, DateTime<Utc>, bool, Option<&'static str>);

    #[test]
    fn decision_table() {
        let healthy = || vec![standby("pg-2", true, 100), standby("pg-3", true, 200)];
        let active =
            ActiveSwitchover { name: "so".into(), mode: Mode::Planned, phase: Phase::Pending, created: t(0) };
        let rows: Vec<Row> = vec![
            (
                "down for the delay",
                cluster(primary(false, false), healthy()),
                Some(t(0)),
                t(5),
                true,
                Some("pg-3"),
            ),
            ("down longer", cluster(primary(false, false), healthy()), Some(t(0)), t(60), true, Some("pg-3")),
            (
                "reachable but not ready",
                cluster(primary(true, false), healthy()),
                Some(t(0)),
                t(5),
                true,
                Some("pg-3"),
            ),
            ("not yet the delay", cluster(primary(false, false), healthy()), Some(t(0)), t(4), true, None),
            ("disabled", cluster(primary(false, false), healthy()), Some(t(0)), t(60), false, None),
            (
                "healthy primary, stale timer",
                cluster(primary(true, true), healthy()),
                Some(t(0)),
                t(60),
                true,
                None,
            ),
            ("no timer", cluster(primary(false, false), healthy()), None, t(60), true, None),
            (
                "timer in the future",
                cluster(primary(false, false), healthy()),
                Some(t(90)),
                t(60),
                true,
                None,
            ),
            (
                "no healthy standby",
                cluster(primary(false, false), vec![standby("pg-2", false, 0)]),
                Some(t(0)),
                t(60),
                true,
                None,
            ),
            ("single instance", cluster(primary(false, false), vec![]), Some(t(0)), t(60), true, None),
            (
                "switchover active",
                Observed { active_switchovers: vec![active], ..cluster(primary(false, false), healthy()) },
                Some(t(0)),
                t(60),
                true,
                None,
            ),
            (
                "unknown cluster",
                Observed { cluster_exists: false, ..cluster(primary(false, false), healthy()) },
                Some(t(0)),
                t(60),
                true,
                None,
            ),
            (
                "no recorded primary",
                Observed { current_primary: None, ..cluster(primary(false, false), healthy()) },
                Some(t(0)),
                t(60),
                true,
                None,
            ),
            (
                "another instance already primary",
                cluster(primary(false, false), {
                    let mut s = healthy();
                    s[0].in_recovery = Some(false);
                    s
                }),
                Some(t(0)),
                t(60),
                true,
                None,
            ),
        ];
        for (what, observed, since, now, enabled, expected) in rows {
            let got = failover_decision(&observed, since, DELAY, now, enabled);
            assert_eq!(got.as_ref().map(|g| g.candidate.as_str()), expected, "{what}: {got:?}");
            if let Some(trigger) = got {
                assert_eq!(trigger.lost_primary, "pg-1", "{what}");
                assert!(trigger.unready_for >= DELAY, "{what}");
            }
        }
    }

    #[test]
    fn with_synchronous_replication_only_a_synchronous_standby_triggers_a_failover() {
        let healthy = || vec![standby("pg-2", true, 100), standby("pg-3", true, 200)];
        let only = |names: &[&str]| Observed {
            synchronous_standbys: Some(SynchronousStandbys {
                standbys: names.iter().map(|s| s.to_string()).collect(),
                must_see: 1,
            }),
            ..cluster(primary(false, false), healthy())
        };
        let decide = |observed: &Observed| {
            failover_decision(observed, Some(t(0)), DELAY, t(10), true).map(|t| t.candidate)
        };
        assert_eq!(decide(&only(&["pg-2"])).as_deref(), Some("pg-2"), "not pg-3, which was not synchronous");
        assert_eq!(decide(&only(&["pg-2", "pg-3"])).as_deref(), Some("pg-3"), "the most advanced of them");
        assert_eq!(decide(&only(&[])), None, "none was synchronous: no failover");
        assert_eq!(decide(&only(&["pg-4"])), None);
    }

    #[test]
    fn candidate_ties_break_by_name() {
        let observed =
            cluster(primary(false, false), vec![standby("pg-3", true, 100), standby("pg-2", true, 100)]);
        let got = failover_decision(&observed, Some(t(0)), DELAY, t(10), true).unwrap();
        assert_eq!(got.candidate, "pg-2");
    }
}
