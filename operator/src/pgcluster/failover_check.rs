//! Automatic failover, as seen from the PgCluster controller: track since when the recorded
//! primary has been unhealthy, ask [`failover_decision`] (pure), and when it triggers create a
//! Switchover of mode Failover. The Switchover controller does the rest; the Switchover
//! objects are the audit trail (`kubectl get switchovers`).
//!
//! The "unhealthy since" clock lives in memory, the PgCluster controller's own
//! ([`FAILOVER_CLOCK`]): after an operator restart it starts again, which can only delay a
//! failover by at most `failover.delay`, never cause one.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use tracing::info;

use super::builders::Owner;
use super::status::InstanceObservation;
use crate::crd::{PgCluster, Switchover, SwitchoverMode, SwitchoverSpec};
use crate::error::Result;
use crate::lease::{LeaseView, Tracker};
use crate::runtime::context::Context;
use crate::runtime::conventions::is_conflict;
use crate::runtime::{events, kube_error};
use crate::switchover::machine::no_failover_candidate_reason;
use crate::switchover::model::{InstanceView, Observed};
use crate::switchover::{FailoverTrigger, failover_decision, observe};

/// How often a cluster whose primary is unhealthy is looked at, so that a failover starts
/// within this much of `failover.delay`.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How long after `failover.delay` a failover that cannot start (no standby to promote) is
/// still looked at every [`WATCH_INTERVAL`]; after that, every [`STALLED_INTERVAL`]. A standby
/// that becomes ready wakes the controller through its StatefulSet anyway.
pub const STALLED_AFTER: Duration = Duration::from_secs(30);
pub const STALLED_INTERVAL: Duration = Duration::from_secs(10);

/// The PgCluster controller's memory of unhealthy primaries: one per process, like the
/// controller itself.
pub static FAILOVER_CLOCK: FailoverClock = FailoverClock(Mutex::new(BTreeMap::new()));

/// Per cluster (`namespace/name`): its primary's current unhealthy stretch.
#[derive(Default)]
pub struct FailoverClock(Mutex<BTreeMap<String, Stretch>>);

struct Stretch {
    since: DateTime<Utc>,
    /// Why no failover could start, as last published in an Event during this stretch.
    announced: Option<String>,
}

impl FailoverClock {
    fn stretches(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Stretch>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets a deleted cluster.
    pub fn forget(&self, key: &str) {
        self.stretches().remove(key);
    }

    /// Records this observation and returns the start of the current unhealthy stretch.
    pub fn observe(&self, key: &str, primary_healthy: bool, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut map = self.stretches();
        let next = unready_since(map.get(key).map(|s| s.since), primary_healthy, now);
        match next {
            Some(since) => {
                map.entry(key.to_owned()).or_insert(Stretch { since, announced: None });
            }
            None => {
                map.remove(key);
            }
        };
        next
    }

    /// Whether `reason` is new for this stretch (and records it): a blocked failover is
    /// announced once per cause, not at every look.
    pub fn first_announcement(&self, key: &str, reason: &str) -> bool {
        let mut map = self.stretches();
        let Some(stretch) = map.get_mut(key) else { return false };
        if stretch.announced.as_deref() == Some(reason) {
            return false;
        }
        stretch.announced = Some(reason.to_owned());
        true
    }
}

/// The clock's rule: reset whenever the primary is seen healthy, otherwise keep the start.
pub fn unready_since(
    previous: Option<DateTime<Utc>>,
    primary_healthy: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if primary_healthy { None } else { Some(previous.unwrap_or(now)) }
}

/// How long a failed primary must have been seen failing before its stretch can be
/// backdated to its Lease's missed renewal ([`delay_counted_from`]): a single failed probe
/// beside a Lease watch that lags is not enough.
pub const LEASE_BACKDATE_AFTER: Duration = Duration::from_secs(1);

/// Where `failover.delay` is counted from: the first failed observation of the primary, or
/// earlier, the moment its Lease renewal fell due and did not come, when the Lease still names
/// it and has gone stale and the primary does not answer at all. A primary cut off like that
/// fences itself before its Lease expires anyway, so waiting the whole delay after the
/// operator's own probes notice only postpones the promotion; the promotion itself still waits
/// for the Lease to expire and be revoked. A primary that answers in recovery gets the whole
/// delay: after an API server outage every Lease looks stale and every primary has fenced
/// itself, and each comes back as primary once it renews again.
pub fn delay_counted_from(
    first_failure: DateTime<Utc>,
    lease: Option<&LeaseView>,
    primary: &str,
    answers: bool,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let confirmed = (now - first_failure).to_std().is_ok_and(|seen| seen >= LEASE_BACKDATE_AFTER);
    let silent = confirmed && !answers;
    let overdue = lease.filter(|l| silent && l.stale_holder() == Some(primary)).and_then(|l| {
        let unrenewed = l.unchanged_for.saturating_sub(crate::lease::RENEW_INTERVAL);
        chrono::Duration::from_std(unrenewed).ok().map(|d| now - d)
    });
    overdue.map_or(first_failure, |overdue| overdue.min(first_failure))
}

/// The machine's view from what the PgCluster controller already observed (no second round
/// of connections).
pub fn observed_from(
    current_primary: Option<&str>,
    instances: &[InstanceObservation],
    pod_exists: impl Fn(&str) -> bool,
) -> Observed {
    let instances = instances
        .iter()
        .map(|i| {
            let pg = i.postgres;
            let standby = pg.is_some_and(|pg| pg.in_recovery);
            let lsn = pg.and_then(|pg| pg.lsn);
            InstanceView {
                name: i.name.clone(),
                sts_replicas: 1,
                pod_exists: pod_exists(&i.name),
                ready: i.pod_ready,
                reachable: pg.is_some(),
                in_recovery: pg.map(|pg| pg.in_recovery),
                timeline: pg.and_then(|pg| pg.timeline).and_then(|t| u32::try_from(t).ok()),
                current_lsn: if standby { None } else { lsn },
                replay_lsn: if standby { lsn } else { None },
                ..InstanceView::default()
            }
        })
        .collect();
    Observed {
        cluster_exists: true,
        current_primary: current_primary.map(str::to_owned),
        instances,
        active_switchovers: Vec::new(),
        ..Observed::default()
    }
}

/// Deterministic per unhealthy stretch, so a retried reconcile never starts two failovers.
pub fn switchover_name(cluster: &str, since: DateTime<Utc>) -> String {
    format!("{cluster}-failover-{}", since.timestamp())
}

/// When to look again while the primary is unhealthy: at the end of the delay, so that a
/// failover starts on time, and never later than [`WATCH_INTERVAL`].
pub fn look_again_after(unhealthy_for: Duration, delay: Duration) -> Duration {
    delay.saturating_sub(unhealthy_for).clamp(Duration::from_millis(50), WATCH_INTERVAL)
}

/// When to look again once the delay has passed and no failover could start.
pub fn stalled_look_again(unhealthy_for: Duration, delay: Duration) -> Duration {
    if unhealthy_for < delay + STALLED_AFTER { WATCH_INTERVAL } else { STALLED_INTERVAL }
}

/// `Some(when to look again)` while a failover decision is pending: the primary is unhealthy,
/// failover is enabled and no Switchover of the cluster is active. `None` otherwise: with
/// failover disabled, or a Switchover in charge, the normal cadence is enough.
pub async fn check(
    ctx: &Context,
    clock: &FailoverClock,
    cluster: &PgCluster,
    owner: &Owner,
    mut observed: Observed,
) -> Result<Option<Duration>> {
    let primary = observed.current_primary.as_deref().and_then(|p| observed.instance(p));
    let Some(primary) = primary else { return Ok(None) };
    let healthy = primary.is_primary() && primary.ready;
    let key = format!("{}/{}", owner.namespace, owner.name);
    let now = Utc::now();
    let since = clock.observe(&key, healthy, now);
    let Some(since) = since else { return Ok(None) };
    let spec = &cluster.spec.failover;
    if !spec.enabled {
        return Ok(None);
    }
    let delay = crate::duration::parse(&spec.delay).unwrap_or(Duration::from_secs(5));
    let lease = ctx.leases.view(&Tracker::key(&owner.namespace, &owner.name), std::time::Instant::now());
    let counted_from = delay_counted_from(since, lease.as_ref(), &primary.name, primary.reachable, now);
    let unhealthy_for = (now - counted_from).to_std().unwrap_or_default();
    if unhealthy_for < delay {
        return Ok(Some(look_again_after(unhealthy_for, delay)));
    }
    let all = ctx.caches.switchovers(&owner.namespace).await?;
    observed.active_switchovers = observe::active_of(all.iter().map(AsRef::as_ref), &owner.name);
    if !observed.active_switchovers.is_empty() {
        return Ok(None);
    }
    match failover_decision(&observed, Some(counted_from), delay, now, spec.enabled) {
        Some(trigger) => {
            start(ctx, cluster, owner, &trigger, since).await?;
            Ok(Some(WATCH_INTERVAL))
        }
        None => {
            let lost = observed.current_primary.as_deref().unwrap_or_default();
            let reason = no_failover_candidate_reason(&observed, lost, "no healthy standby to promote");
            let another_primary = observed.primaries().iter().any(|p| p.name != lost);
            if !another_primary && clock.first_announcement(&key, &reason) {
                tracing::warn!(%reason, "the lost primary is not failed over");
                let note = format!("primary {lost} is unhealthy and no failover can start: {reason}");
                let event = events::transition(EventType::Warning, "FailoverBlocked", note, "Failover");
                events::publish(ctx, &kube::Resource::object_ref(cluster, &()), event).await;
            }
            Ok(Some(stalled_look_again(unhealthy_for, delay)))
        }
    }
}

async fn start(
    ctx: &Context,
    cluster: &PgCluster,
    owner: &Owner,
    trigger: &FailoverTrigger,
    since: DateTime<Utc>,
) -> Result<()> {
    let name = switchover_name(&owner.name, since);
    let mut switchover = Switchover::new(
        &name,
        SwitchoverSpec { cluster: owner.name.clone(), target_instance: None, mode: SwitchoverMode::Failover },
    );
    switchover.metadata = owner.child_meta(&name, "switchover");
    let params = PostParams {
        field_manager: Some(crate::runtime::conventions::FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let api: Api<Switchover> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    match api.create(&params, &switchover).await {
        Ok(_) => {}
        // Created by an earlier reconcile of the same stretch: one failover per stretch.
        Err(error) if is_conflict(&error) => return Ok(()),
        Err(source) => return Err(kube_error("creating a failover Switchover")(source)),
    }
    ctx.metrics.failover_started();
    let secs = trigger.unready_for.as_secs_f64();
    info!(switchover = %name, lost = %trigger.lost_primary, candidate = %trigger.candidate, secs, "failover started");
    let note = format!(
        "primary {} unhealthy for {secs:.1}s; Switchover {name} promotes the most advanced standby ({} now)",
        trigger.lost_primary, trigger.candidate
    );
    let event = events::transition(EventType::Warning, "FailoverStarted", note, "Failover");
    events::publish(ctx, &kube::Resource::object_ref(cluster, &()), event).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::pgcluster::status::PostgresState;
    use crate::switchover::Lsn;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_blocked_failover_is_announced_once_per_cause_and_stretch() {
        let clock = FailoverClock::default();
        assert!(!clock.first_announcement("ns/demo", "no standby"), "no unhealthy stretch");
        clock.observe("ns/demo", false, t(0));
        assert!(clock.first_announcement("ns/demo", "no standby"));
        clock.observe("ns/demo", false, t(1));
        assert!(!clock.first_announcement("ns/demo", "no standby"), "same cause, same stretch");
        assert!(clock.first_announcement("ns/demo", "another cause"));
        clock.observe("ns/demo", true, t(2));
        clock.observe("ns/demo", false, t(3));
        assert!(clock.first_announcement("ns/demo", "another cause"), "a new stretch");
    }

    #[test]
    fn looks_again_right_at_the_end_of_the_delay() {
        let ms = Duration::from_millis;
        assert_eq!(look_again_after(ms(4_600), ms(5_000)), ms(400));
        assert_eq!(look_again_after(ms(0), ms(5_000)), WATCH_INTERVAL);
        assert_eq!(look_again_after(ms(4_990), ms(5_000)), ms(50));
        assert_eq!(look_again_after(ms(9_000), ms(5_000)), ms(50));
    }

    #[test]
    fn a_failover_that_cannot_start_is_looked_at_less_often_after_a_while() {
        let s = Duration::from_secs;
        assert_eq!(stalled_look_again(s(6), s(5)), WATCH_INTERVAL);
        assert_eq!(stalled_look_again(s(34), s(5)), WATCH_INTERVAL);
        assert_eq!(stalled_look_again(s(35), s(5)), STALLED_INTERVAL);
    }

    #[test]
    fn the_clock_keeps_its_start_and_resets_on_health() {
        assert_eq!(unready_since(None, false, t(1)), Some(t(1)));
        assert_eq!(unready_since(Some(t(1)), false, t(9)), Some(t(1)));
        assert_eq!(unready_since(Some(t(1)), true, t(9)), None);
        let clock = FailoverClock::default();
        assert_eq!(clock.observe("db/pg", false, t(1)), Some(t(1)));
        assert_eq!(clock.observe("db/pg", false, t(3)), Some(t(1)));
        assert_eq!(clock.observe("db/other", false, t(3)), Some(t(3)));
        assert_eq!(clock.observe("db/pg", true, t(4)), None);
        assert_eq!(clock.observe("db/pg", false, t(5)), Some(t(5)));
    }

    #[test]
    fn the_delay_counts_from_a_missed_lease_renewal_once_the_failure_is_confirmed() {
        let lease = |holder: &str, unchanged_for: u64| LeaseView {
            holder: Some(holder.into()),
            resource_version: "7".into(),
            unchanged_for: Duration::from_secs(unchanged_for),
        };
        let stale = lease("pg-1", 6);
        // Seen failing for 2 s; the Lease was last renewed 6 s ago, so the renewal due 4 s ago
        // never came.
        assert_eq!(delay_counted_from(t(8), Some(&stale), "pg-1", false, t(10)), t(6));
        // Not confirmed yet: one failed observation.
        assert_eq!(delay_counted_from(t(10), Some(&stale), "pg-1", false, t(10)), t(10));
        // It answers (in recovery: fenced by itself, maybe only for want of the API server).
        assert_eq!(delay_counted_from(t(8), Some(&stale), "pg-1", true, t(10)), t(8));
        // A fresh Lease, a Lease of another instance, or none: the first failure.
        assert_eq!(delay_counted_from(t(8), Some(&lease("pg-1", 3)), "pg-1", false, t(10)), t(8));
        assert_eq!(delay_counted_from(t(8), Some(&lease("pg-2", 6)), "pg-1", false, t(10)), t(8));
        assert_eq!(delay_counted_from(t(8), None, "pg-1", false, t(10)), t(8));
        // Never later than the first failure.
        assert_eq!(delay_counted_from(t(2), Some(&stale), "pg-1", false, t(10)), t(2));
    }

    #[test]
    fn a_dead_primary_with_a_healthy_standby_triggers_after_the_delay() {
        let pg =
            |in_recovery, lsn| Some(PostgresState { in_recovery, timeline: Some(1), lsn: Some(Lsn(lsn)) });
        let instances = vec![
            InstanceObservation { name: "pg-1".into(), pod_ready: false, postgres: None },
            InstanceObservation { name: "pg-2".into(), pod_ready: true, postgres: pg(true, 90) },
            InstanceObservation { name: "pg-3".into(), pod_ready: true, postgres: pg(true, 100) },
        ];
        let observed = observed_from(Some("pg-1"), &instances, |_| true);
        let delay = Duration::from_secs(5);
        assert_eq!(failover_decision(&observed, Some(t(0)), delay, t(4), true), None);
        let trigger = failover_decision(&observed, Some(t(0)), delay, t(5), true).unwrap();
        assert_eq!((trigger.lost_primary.as_str(), trigger.candidate.as_str()), ("pg-1", "pg-3"));
        assert_eq!(switchover_name("pg", t(0)), "pg-failover-1700000000");
    }
}
