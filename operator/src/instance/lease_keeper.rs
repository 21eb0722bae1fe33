//! The instance manager's side of the primary Lease (see [`crate::lease`] for the protocol):
//! a task that renews the Lease while this instance runs as the primary, and reads who holds
//! it while this instance has fenced itself. It only reports; the supervisor decides, every
//! tick, from the report and its own clock, so a hung API call can never delay a self-fence.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::sync::watch;

use crate::lease::{self, CALL_TIMEOUT, Holder, RENEW_INTERVAL, Renewals};

/// What the keeper last learnt.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub holder: Holder,
    /// `Some` while this instance runs as the primary.
    pub renewals: Option<Renewals>,
}

impl Report {
    /// Why the primary must stop accepting writes now, if it must.
    pub fn self_fence_reason(&self, now: Instant) -> Option<String> {
        self.renewals.as_ref().and_then(|r| lease::self_fence_reason(r, &self.holder, now))
    }
}

/// One cluster's Lease, as this instance reaches it.
#[derive(Clone)]
pub struct LeaseClient {
    api: Api<Lease>,
    name: String,
    me: String,
}

impl LeaseClient {
    /// The in-cluster client (the projected token of the postgres container). `None` when
    /// there is none: the caller then treats the holder as unknown, never as itself.
    pub async fn connect(cluster: &str, instance: &str) -> Option<Self> {
        let client = tokio::time::timeout(CALL_TIMEOUT, kube::Client::try_default()).await.ok()?.ok()?;
        let api = Api::default_namespaced(client);
        Some(Self { api, name: lease::name(cluster), me: instance.to_owned() })
    }

    /// Who holds the Lease now; `None` when the read failed or did not answer in time.
    pub async fn holder(&self) -> Option<Holder> {
        tokio::time::timeout(CALL_TIMEOUT, lease::api::holder(&self.api, &self.name, &self.me))
            .await
            .ok()?
            .ok()
    }

    /// Renews when the Lease names this instance (a compare-and-swap), `None` without an
    /// answer in time.
    pub async fn renew(&self) -> Option<Holder> {
        tokio::time::timeout(CALL_TIMEOUT, lease::api::renew(&self.api, &self.name, &self.me))
            .await
            .ok()?
            .ok()
    }
}

/// Shared between the supervisor and the keeper task.
pub struct Inputs {
    /// PostgreSQL is running (set by the supervisor around each start and stop).
    pub running: AtomicBool,
    /// PostgreSQL's standby.signal: present while in recovery, removed by a promotion.
    pub standby_signal: PathBuf,
    /// This instance has fenced itself for want of the Lease (its fence record says so).
    pub self_fenced: AtomicBool,
}

impl Inputs {
    fn primary(&self) -> bool {
        self.running.load(Ordering::SeqCst) && !self.standby_signal.exists()
    }
}

/// This tick's read of the Lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Read {
    /// Neither primary nor self-fenced: nothing to read.
    NotMade,
    /// No answer, or none in time.
    Failed,
    Answered(Holder),
}

/// The holder the keeper reports after a tick. Nobody may act on a holder that can no longer
/// be confirmed: it is forgotten when the read fails, and when this instance stops being the
/// primary (a self-fence, a stop), since what its renewals confirmed says nothing about who
/// holds the Lease now. A primary's self-fence is timed by its renewals, not by this.
pub fn holder_after(previous: Holder, stopped_being_primary: bool, read: Read) -> Holder {
    match read {
        Read::Answered(holder) => holder,
        Read::Failed => Holder::Unknown,
        Read::NotMade if stopped_being_primary => Holder::Unknown,
        Read::NotMade => previous,
    }
}

/// Spawns the keeper on the current runtime. The report starts with an unknown holder.
pub fn spawn(cluster: String, instance: String, inputs: Arc<Inputs>) -> watch::Receiver<Report> {
    let (sender, receiver) = watch::channel(Report { holder: Holder::Unknown, renewals: None });
    tokio::spawn(async move {
        let mut client: Option<LeaseClient> = None;
        let mut renewals: Option<Renewals> = None;
        let mut holder = Holder::Unknown;
        let mut tick = tokio::time::interval(RENEW_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let primary = inputs.primary();
            let stopped_being_primary = !primary && renewals.is_some();
            renewals = match (primary, renewals) {
                (true, None) => Some(Renewals { primary_since: Instant::now(), last_confirmed_sent: None }),
                (true, some) => some,
                (false, _) => None,
            };
            let wanted = primary || inputs.self_fenced.load(Ordering::SeqCst);
            if wanted && client.is_none() {
                client = LeaseClient::connect(&cluster, &instance).await;
            }
            let before = holder.clone();
            let mut read = Read::NotMade;
            if let (true, Some(lease)) = (wanted, &client) {
                let sent = Instant::now();
                let answer = if primary { lease.renew().await } else { lease.holder().await };
                if let (Some(Holder::Me), true, Some(r)) = (&answer, primary, renewals.as_mut()) {
                    r.last_confirmed_sent = Some(sent);
                }
                if answer.is_none() {
                    // A new client at the next tick: after an API server outage the old
                    // connection can stay open and never answer again.
                    client = None;
                }
                read = answer.map_or(Read::Failed, Read::Answered);
            }
            holder = holder_after(before.clone(), stopped_being_primary, read);
            if holder != before {
                eprintln!("relevo instance {instance}: the primary lease, as read: {holder:?}");
            }
            if sender.send(Report { holder: holder.clone(), renewals }).is_err() {
                return;
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_that_can_no_longer_be_confirmed_is_forgotten() {
        // The primary's last confirmed renewal said "me"; it then fenced itself. Acting on that
        // "me" would restart it as the primary at once (the deaf-supervisor hang of 2026-12-07).
        assert_eq!(holder_after(Holder::Me, true, Read::NotMade), Holder::Unknown);
        assert_eq!(holder_after(Holder::Me, false, Read::Failed), Holder::Unknown, "a failed renewal");
        assert_eq!(holder_after(Holder::Me, true, Read::Failed), Holder::Unknown);
    }

    #[test]
    fn an_answer_is_reported_and_kept_until_the_next_one() {
        let other = Holder::Other(Some("pg-2".into()));
        assert_eq!(holder_after(Holder::Unknown, true, Read::Answered(other.clone())), other);
        assert_eq!(holder_after(other.clone(), false, Read::NotMade), other);
        assert_eq!(holder_after(Holder::Unknown, false, Read::Answered(Holder::Me)), Holder::Me);
    }
}
