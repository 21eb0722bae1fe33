//! The Kubernetes calls on a primary Lease. Every write is a compare-and-swap: `replace` with
//! the resourceVersion that was read, so two writers can never both believe they won.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

use super::{Holder, LABEL_LEASE, LABEL_LEASE_PRIMARY, TTL};
use crate::runtime::conventions::is_conflict;

pub fn holder_of(lease: &Lease) -> Option<String> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty())
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// A new primary Lease held by `holder`, with `meta` (name, namespace, owner) from the caller.
pub fn new_lease(mut meta: ObjectMeta, holder: &str) -> Lease {
    meta.labels.get_or_insert_with(Default::default).insert(LABEL_LEASE.into(), LABEL_LEASE_PRIMARY.into());
    Lease {
        metadata: meta,
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: i32::try_from(TTL.as_secs()).ok(),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

/// Creates the Lease unless one exists; an existing Lease is never touched (its holder is
/// the truth, not the spec).
pub async fn create_if_missing(api: &Api<Lease>, lease: &Lease) -> Result<bool, kube::Error> {
    match api.create(&PostParams::default(), lease).await {
        Ok(_) => Ok(true),
        Err(error) if is_conflict(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

/// The instance manager's renewal: reads the Lease and, when it names `me`, moves
/// `renewTime` forward by a compare-and-swap. Returns who holds it afterwards; a lost race
/// (409) means someone else wrote it, so it is read again.
pub async fn renew(api: &Api<Lease>, name: &str, me: &str) -> Result<Holder, kube::Error> {
    for _ in 0..2 {
        let Some(mut lease) = api.get_opt(name).await? else { return Ok(Holder::Unknown) };
        let holder = Holder::from_holder(holder_of(&lease).as_deref(), me);
        if holder != Holder::Me {
            return Ok(holder);
        }
        lease.spec.get_or_insert_with(LeaseSpec::default).renew_time = Some(now());
        match api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => return Ok(Holder::Me),
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(Holder::Unknown)
}

/// Who holds the Lease, for the instance manager's start-up and its self-fenced state.
pub async fn holder(api: &Api<Lease>, name: &str, me: &str) -> Result<Holder, kube::Error> {
    Ok(match api.get_opt(name).await? {
        Some(lease) => Holder::from_holder(holder_of(&lease).as_deref(), me),
        None => Holder::Unknown,
    })
}

/// Why a transfer was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("the primary lease changed since it was judged (now held by {holder:?}): not taking it")]
    Changed { holder: Option<String> },
    #[error("there is no primary lease")]
    Missing,
    #[error("the primary lease could not be written")]
    Kube(#[from] kube::Error),
}

/// What a transfer may assume about the Lease it replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect<'a> {
    /// The exact version that was judged expired (a failover's revocation), if any.
    pub resource_version: Option<&'a str>,
    /// The holders it may be taken from.
    pub holders: &'a [Option<&'a str>],
}

/// Sets the holder (`None` revokes it) and returns the Lease as written, by a compare-and-swap on the version read, after
/// checking that version against `expect`. Renewing on behalf of the new holder restarts its
/// TTL, so it has a whole period to take over the renewals.
pub async fn transfer(
    api: &Api<Lease>,
    name: &str,
    expect: &Expect<'_>,
    to: Option<&str>,
) -> Result<Lease, TransferError> {
    let mut lease = api.get_opt(name).await?.ok_or(TransferError::Missing)?;
    let holder = holder_of(&lease);
    if holder.as_deref() == to {
        return Ok(lease);
    }
    let version_ok =
        expect.resource_version.is_none_or(|rv| lease.metadata.resource_version.as_deref() == Some(rv));
    if !version_ok || !expect.holders.contains(&holder.as_deref()) {
        return Err(TransferError::Changed { holder });
    }
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = to.map(str::to_owned);
    spec.acquire_time = Some(now());
    spec.renew_time = Some(now());
    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    spec.lease_duration_seconds = i32::try_from(TTL.as_secs()).ok();
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(written) => Ok(written),
        Err(error) if is_conflict(&error) => {
            let holder = api.get_opt(name).await?.as_ref().and_then(holder_of);
            Err(TransferError::Changed { holder })
        }
        Err(error) => Err(error.into()),
    }
}
