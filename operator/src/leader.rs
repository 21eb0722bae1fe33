//! One operator at a time: the `relevo-operator` Lease in the operator's own namespace.
//!
//! The Deployment runs two replicas on different nodes: one leads, the other stands by,
//! watching this Lease (and reading it every [`RENEW_INTERVAL`]), and takes over when the
//! leader stops: at once when it released the Lease on SIGTERM; [`TTL`] + [`SKEW_MARGIN`]
//! after its last renewal when its node died or was cut off, whose process may still run.
//! So an operator acts only while it holds this Lease:
//!
//! - it waits until the Lease is free, its own, or unchanged for [`TTL`] + [`SKEW_MARGIN`]
//!   on its own clock (never the holder's `renewTime`), and takes it by compare-and-swap;
//! - it renews every [`RENEW_INTERVAL`], and stops (the process exits, kubelet restarts
//!   it as a follower) when it has not renewed for [`RENEW_DEADLINE`], which is shorter
//!   than the TTL: a cut-off leader has stopped before anyone may take over;
//! - on SIGTERM it releases the Lease, so its successor starts at once.
//!
//! The decisions are pure ([`decide`], [`renewal_overdue`]); the calls are below them.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use tracing::{info, warn};

use crate::runtime::conventions::is_conflict;

/// Name of the operator's Lease.
pub const NAME: &str = "relevo-operator";
/// `spec.leaseDurationSeconds`.
pub const TTL: Duration = Duration::from_secs(15);
pub const RENEW_INTERVAL: Duration = Duration::from_secs(2);
/// A leader that has not renewed for this long stops leading (well inside the TTL).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Beyond the TTL, for clock-rate differences, before a follower takes over.
pub const SKEW_MARGIN: Duration = Duration::from_secs(2);
/// One call may take this long; a slower API counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What a candidate does after reading the Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderStep {
    Create,
    /// Write the Lease naming this operator (renew it, or take it over).
    Take,
    Wait,
}

/// `lease`: the holder and how long this operator has seen the Lease's version unchanged.
pub fn decide(lease: Option<(Option<&str>, Duration)>, me: &str) -> LeaderStep {
    match lease {
        None => LeaderStep::Create,
        Some((Some(holder), _)) if holder == me => LeaderStep::Take,
        Some((None, _)) => LeaderStep::Take,
        Some((Some(_), unchanged_for)) if unchanged_for >= TTL + SKEW_MARGIN => LeaderStep::Take,
        Some(_) => LeaderStep::Wait,
    }
}

/// The leader must stop: its last successful renewal was sent `RENEW_DEADLINE` ago.
pub fn renewal_overdue(last_sent: Instant, now: Instant) -> bool {
    now.saturating_duration_since(last_sent) >= RENEW_DEADLINE
}

/// Why leadership ended.
#[derive(Debug, thiserror::Error)]
pub enum LeadershipLost {
    #[error("the operator lease now names {0}")]
    TakenBy(String),
    #[error("the operator lease was not renewed for {0:.1}s (limit {limit}s)", limit = RENEW_DEADLINE.as_secs())]
    NotRenewed(f64),
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn holder_of(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()).filter(|h| !h.is_empty())
}

/// The Lease naming `me`, renewed now; a new holder also gets a new acquire time.
fn naming(mut lease: Lease, me: &str) -> Lease {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(me) {
        spec.holder_identity = Some(me.to_owned());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    spec.lease_duration_seconds = i32::try_from(TTL.as_secs()).ok();
    spec.renew_time = Some(now());
    lease
}

/// Where a candidate stands after one attempt.
enum Attempt {
    Leading,
    Following { holder: Option<String> },
}

/// The candidate's memory of the Lease version it last saw, on its own clock.
#[derive(Default)]
struct Seen {
    version: Option<String>,
    since: Option<Instant>,
}

impl Seen {
    fn unchanged_for(&mut self, version: Option<&str>, now: Instant) -> Duration {
        if self.version.as_deref() != version || self.since.is_none() {
            self.version = version.map(str::to_owned);
            self.since = Some(now);
        }
        now.saturating_duration_since(self.since.unwrap_or(now))
    }
}

async fn attempt(api: &Api<Lease>, me: &str, seen: &mut Seen) -> Result<Attempt, kube::Error> {
    let lease = api.get_opt(NAME).await?;
    let observed = lease.as_ref().map(|l| {
        let age = seen.unchanged_for(l.metadata.resource_version.as_deref(), Instant::now());
        (holder_of(l), age)
    });
    let following = |lease: &Option<Lease>| Attempt::Following {
        holder: lease.as_ref().and_then(holder_of).map(str::to_owned),
    };
    let written = match decide(observed, me) {
        LeaderStep::Wait => return Ok(following(&lease)),
        LeaderStep::Create => {
            let meta = ObjectMeta { name: Some(NAME.into()), ..ObjectMeta::default() };
            api.create(&PostParams::default(), &naming(Lease { metadata: meta, spec: None }, me)).await
        }
        // A replace carries the version read: a concurrent writer makes it fail (409).
        LeaderStep::Take => {
            let lease = lease.clone().expect("Take is decided only for an existing Lease");
            api.replace(NAME, &PostParams::default(), &naming(lease, me)).await
        }
    };
    match written {
        Ok(_) => Ok(Attempt::Leading),
        Err(error) if is_conflict(&error) => Ok(following(&lease)),
        Err(error) => Err(error),
    }
}

/// Waits until this operator leads; returns when its winning write was sent.
pub async fn acquire(api: &Api<Lease>, me: &str) -> Instant {
    let mut seen = Seen::default();
    let mut last_told = None;
    // Every change of the Lease wakes the loop at once, so a standby takes a released Lease
    // before a starting replica (a rollout's new pod) gets to it; an expiry, which is no
    // change, is found by the timer. Without a watch (it ended), the timer alone.
    let config = watcher::Config::default().fields(&format!("metadata.name={NAME}"));
    let mut changes = Some(watcher(api.clone(), config).default_backoff().boxed());
    loop {
        let sent = Instant::now();
        match tokio::time::timeout(CALL_TIMEOUT, attempt(api, me, &mut seen)).await {
            Ok(Ok(Attempt::Leading)) => {
                info!(lease = NAME, identity = me, "leading");
                return sent;
            }
            // Said once per holder: a standby replica waits here for as long as its
            // leader lives, and the Lease's version changes at every renewal.
            Ok(Ok(Attempt::Following { holder })) => {
                if last_told.as_ref() != Some(&holder) {
                    info!(
                        lease = NAME,
                        holder = holder.as_deref().unwrap_or("nobody"),
                        "another operator leads; standing by until its lease is released or expires"
                    );
                    last_told = Some(holder);
                }
            }
            Ok(Err(error)) => warn!(%error, lease = NAME, "could not read or take the operator lease"),
            Err(_) => warn!(lease = NAME, "the operator lease call timed out"),
        }
        let timer = tokio::time::sleep(RENEW_INTERVAL);
        match changes.as_mut() {
            Some(stream) => {
                tokio::select! {
                    () = timer => {}
                    next = stream.next() => if next.is_none() { changes = None },
                }
            }
            None => timer.await,
        }
    }
}

/// Renews while leading; returns why leadership ended. `last_sent`: when the winning write
/// of [`acquire`] was sent.
pub async fn hold(api: &Api<Lease>, me: &str, mut last_sent: Instant) -> LeadershipLost {
    loop {
        tokio::time::sleep(RENEW_INTERVAL).await;
        let sent = Instant::now();
        match tokio::time::timeout(CALL_TIMEOUT, renew(api, me)).await {
            Ok(Ok(None)) => last_sent = sent,
            Ok(Ok(Some(other))) => return LeadershipLost::TakenBy(other),
            Ok(Err(error)) => warn!(%error, lease = NAME, "could not renew the operator lease"),
            Err(_) => warn!(lease = NAME, "renewing the operator lease timed out"),
        }
        let now = Instant::now();
        if renewal_overdue(last_sent, now) {
            return LeadershipLost::NotRenewed(now.saturating_duration_since(last_sent).as_secs_f64());
        }
    }
}

/// One renewal by compare-and-swap: `None` when renewed, `Some(holder)` when another
/// operator (or nobody) holds it now.
async fn renew(api: &Api<Lease>, me: &str) -> Result<Option<String>, kube::Error> {
    let Some(lease) = api.get_opt(NAME).await? else { return Ok(Some("nobody (the Lease is gone)".into())) };
    match holder_of(&lease) {
        Some(holder) if holder == me => {}
        other => return Ok(Some(other.unwrap_or("nobody").to_owned())),
    }
    api.replace(NAME, &PostParams::default(), &naming(lease, me)).await.map(|_| None)
}

/// Gives the Lease up, so a successor need not wait for the TTL. Best effort.
pub async fn release(api: &Api<Lease>, me: &str) {
    let released = async {
        let Some(mut lease) = api.get_opt(NAME).await? else { return Ok(()) };
        if holder_of(&lease) != Some(me) {
            return Ok(());
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
        }
        api.replace(NAME, &PostParams::default(), &lease).await.map(|_| ())
    };
    match tokio::time::timeout(CALL_TIMEOUT, released).await {
        Ok(Ok(())) => info!(lease = NAME, "operator lease released"),
        Ok(Err(error)) => warn!(%error, lease = NAME, "could not release the operator lease"),
        Err(_) => warn!(lease = NAME, "releasing the operator lease timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "relevo-operator-a";

    #[test]
    fn a_missing_lease_is_created_and_a_free_or_own_one_taken() {
        assert_eq!(decide(None, ME), LeaderStep::Create);
        assert_eq!(decide(Some((None, Duration::ZERO)), ME), LeaderStep::Take);
        assert_eq!(decide(Some((Some(ME), Duration::ZERO)), ME), LeaderStep::Take);
    }

    #[test]
    fn another_holder_is_waited_for_until_its_lease_is_old_on_our_clock() {
        let other = Some("relevo-operator-b");
        assert_eq!(decide(Some((other, Duration::ZERO)), ME), LeaderStep::Wait);
        assert_eq!(decide(Some((other, TTL + SKEW_MARGIN - Duration::from_millis(1))), ME), LeaderStep::Wait);
        assert_eq!(decide(Some((other, TTL + SKEW_MARGIN)), ME), LeaderStep::Take);
    }

    #[test]
    fn a_leader_stops_before_a_follower_may_take_over() {
        let sent = Instant::now();
        assert!(!renewal_overdue(sent, sent + RENEW_DEADLINE - Duration::from_millis(1)));
        assert!(renewal_overdue(sent, sent + RENEW_DEADLINE));
        // The follower's clock starts no earlier than the leader's last renewal was sent.
        assert!(RENEW_DEADLINE + CALL_TIMEOUT < TTL + SKEW_MARGIN);
    }

    #[test]
    fn the_age_restarts_when_the_version_changes() {
        let mut seen = Seen::default();
        let t0 = Instant::now();
        assert_eq!(seen.unchanged_for(Some("1"), t0), Duration::ZERO);
        assert_eq!(seen.unchanged_for(Some("1"), t0 + Duration::from_secs(5)), Duration::from_secs(5));
        assert_eq!(seen.unchanged_for(Some("2"), t0 + Duration::from_secs(6)), Duration::ZERO);
    }
}
