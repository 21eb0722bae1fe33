//! The primary lease: one `coordination.k8s.io` Lease per cluster, `<cluster>-primary`, names
//! the only instance allowed to accept writes. Safety never depends on the old primary's pod
//! going away, or on it cooperating:
//!
//! - The primary's instance manager renews the Lease every [`RENEW_INTERVAL`], by a
//!   compare-and-swap on its resourceVersion, and only while the Lease names it.
//! - When it has not renewed for [`TTL`] − [`SELF_FENCE_MARGIN`], counted from the moment the
//!   last *successful* renewal was sent, or when the Lease names someone else, it stops
//!   accepting writes by itself (fast shutdown, restart in recovery).
//! - The operator measures the Lease's age on its own clock, from the moment it *saw* the
//!   current resourceVersion (never from `renewTime`, which is the holder's clock). It takes
//!   the Lease away only once that age exceeds [`TTL`] + [`SKEW_MARGIN`], and by a
//!   compare-and-swap on the very resourceVersion it judged expired: a primary that renewed
//!   meanwhile makes the revocation fail, so a live primary is never replaced.
//! - Only then is a standby promoted, and only after the Lease has been handed to it.
//!
//! The old primary's last acknowledged write therefore precedes the revocation by at least
//! `SELF_FENCE_MARGIN + SKEW_MARGIN` minus the time a fast shutdown takes to end sessions
//! (milliseconds), whatever the network does. An operator restart starts every age at zero:
//! it can delay a failover, never hasten one.
//!
//! This module is pure (names, timings, decisions); [`api`] holds the Kubernetes calls that
//! both the operator and the instance manager make, [`watch`] the operator's watcher.

pub mod api;
pub mod watch;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `spec.leaseDurationSeconds` of every primary Lease.
pub const TTL: Duration = Duration::from_secs(10);
/// How often the primary renews.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(2);
/// The primary stops accepting writes this long before its Lease could expire.
pub const SELF_FENCE_MARGIN: Duration = Duration::from_secs(3);
/// The operator waits this much beyond the TTL before taking a Lease away: clock-rate
/// differences and the time the old primary's fence takes.
pub const SKEW_MARGIN: Duration = Duration::from_secs(2);
/// One Kubernetes call of the renewal may take this long; a slower API counts as down.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(1500);
/// No renewal seen for this long: the primary is suspect, look at the cluster now.
pub const STALE_AFTER: Duration = Duration::from_millis(4500);

/// Label on every primary Lease, so the operator watches only those.
pub const LABEL_LEASE: &str = "relevo.dev/lease";
pub const LABEL_LEASE_PRIMARY: &str = "primary";

/// The fence token an instance records when it fences itself for want of the Lease.
pub const SELF_FENCE_TOKEN: &str = "relevo.dev/lease-lost";

pub fn name(cluster: &str) -> String {
    format!("{cluster}-primary")
}

/// What the instance manager knows about the Lease right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// The Lease names this instance.
    Me,
    /// The Lease names another instance, or nobody (revoked by a failover).
    Other(Option<String>),
    /// The Lease could not be read (API unreachable, no Lease yet).
    Unknown,
}

impl Holder {
    pub fn from_holder(holder: Option<&str>, me: &str) -> Self {
        match holder {
            Some(h) if h == me => Holder::Me,
            other => Holder::Other(other.filter(|h| !h.is_empty()).map(str::to_owned)),
        }
    }
}

/// The primary's renewal record: when the last successful renewal was *sent*, and since when
/// this instance has been running as the primary (a renewal is owed from then on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renewals {
    pub primary_since: Instant,
    pub last_confirmed_sent: Option<Instant>,
}

/// Why a primary must stop accepting writes now, if it must.
pub fn self_fence_reason(renewals: &Renewals, holder: &Holder, now: Instant) -> Option<String> {
    if let Holder::Other(other) = holder {
        let who = other.as_deref().unwrap_or("nobody (revoked)");
        return Some(format!("the primary lease now names {who}"));
    }
    let deadline = TTL - SELF_FENCE_MARGIN;
    match renewals.last_confirmed_sent {
        Some(sent) if now.saturating_duration_since(sent) >= deadline => Some(format!(
            "the primary lease was last renewed {:.1}s ago (limit {}s)",
            now.saturating_duration_since(sent).as_secs_f64(),
            deadline.as_secs()
        )),
        Some(_) => None,
        // Promoted, but not one renewal through yet: the operator renewed the Lease when it
        // handed it over, just before the promotion, so two renewal periods are safe.
        None if now.saturating_duration_since(renewals.primary_since) >= 2 * RENEW_INTERVAL => {
            Some("the primary lease could not be renewed since this instance became primary".into())
        }
        None => None,
    }
}

/// The operator's view of one Lease, measured on its own clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseView {
    pub holder: Option<String>,
    pub resource_version: String,
    /// How long the current resourceVersion has been seen unchanged.
    pub unchanged_for: Duration,
}

impl LeaseView {
    /// Old enough to be taken away: its holder has fenced itself, or is cut off for good.
    pub fn expired(&self) -> bool {
        self.unchanged_for >= TTL + SKEW_MARGIN
    }

    /// Not renewed for a while: worth looking at the cluster now.
    pub fn stale(&self) -> bool {
        self.unchanged_for >= STALE_AFTER
    }

    pub fn held_by(&self, instance: &str) -> bool {
        self.holder.as_deref() == Some(instance)
    }

    /// The holder of a [`stale`](Self::stale) Lease: a primary presumed lost, since its
    /// instance manager renews however slow PostgreSQL is. Probed with the short bound, and
    /// its failover delay counted from the missed renewal.
    pub fn stale_holder(&self) -> Option<&str> {
        self.holder.as_deref().filter(|_| self.stale())
    }

    /// Time until [`LeaseView::expired`] turns true.
    pub fn expires_in(&self) -> Duration {
        (TTL + SKEW_MARGIN).saturating_sub(self.unchanged_for)
    }
}

#[derive(Clone, Debug)]
struct Seen {
    holder: Option<String>,
    resource_version: String,
    since: Instant,
}

/// The operator's record of every primary Lease (`namespace/name` → what it saw and since
/// when), fed by the watcher and read by the failover and switchover decisions.
#[derive(Default)]
pub struct Tracker(Mutex<HashMap<String, Seen>>);

impl Tracker {
    pub fn key(namespace: &str, cluster: &str) -> String {
        format!("{namespace}/{}", name(cluster))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a version of the Lease; the clock restarts only when the version changes.
    pub fn record(&self, key: &str, holder: Option<String>, resource_version: &str, now: Instant) {
        let mut map = self.lock();
        match map.get_mut(key) {
            Some(seen) if seen.resource_version == resource_version => seen.holder = holder,
            _ => {
                let seen = Seen { holder, resource_version: resource_version.to_owned(), since: now };
                map.insert(key.to_owned(), seen);
            }
        }
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    pub fn view(&self, key: &str, now: Instant) -> Option<LeaseView> {
        self.lock().get(key).map(|seen| LeaseView {
            holder: seen.holder.clone(),
            resource_version: seen.resource_version.clone(),
            unchanged_for: now.saturating_duration_since(seen.since),
        })
    }

    /// Every Lease whose age is in `[from, to)` now: the ones that just turned stale.
    pub fn aged_between(&self, from: Duration, to: Duration, now: Instant) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, seen)| {
                let age = now.saturating_duration_since(seen.since);
                age >= from && age < to
            })
            .map(|(key, _)| key.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
