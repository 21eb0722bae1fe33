//! Which standby may be promoted, and why another may not. Pure, shared by the machine and by
//! `failover_decision`.

use std::cmp::Ordering;

use crate::postgres::lsn::Lsn;
use crate::switchover::model::{InstanceView, Observed, SynchronousStandbys};

/// Why `target` cannot take over from a healthy `primary` in a planned switchover, if it can't:
/// it must be reachable, ready, in recovery, streaming from the primary, on its timeline, and
/// at most `max_lag_bytes` of replay behind it.
pub(crate) fn planned_target_problem(
    target: &InstanceView,
    primary: &InstanceView,
    max_lag_bytes: u64,
) -> Option<String> {
    let name = &target.name;
    if !target.reachable {
        return Some(format!("target {name} is not reachable"));
    }
    if !target.ready {
        return Some(format!("target {name} is not ready"));
    }
    if target.in_recovery != Some(true) {
        return Some(format!("target {name} is not a standby"));
    }
    if target.streams_from.as_deref() != Some(primary.name.as_str()) {
        return Some(format!("target {name} is not streaming from the primary {}", primary.name));
    }
    if let (Some(t), Some(p)) = (target.timeline, primary.timeline)
        && t != p
    {
        return Some(format!("target {name} is on timeline {t}, the primary on {p}"));
    }
    let (Some(primary_lsn), Some(replayed)) = (primary.current_lsn, target.replay_lsn) else {
        return Some(format!("the replication lag of target {name} is unknown"));
    };
    let lag = primary_lsn.bytes_after(replayed);
    if lag > max_lag_bytes {
        return Some(format!(
            "target {name} is too far behind: {lag} bytes of WAL to replay (max {max_lag_bytes})"
        ));
    }
    None
}

/// Orders by replay LSN, then received LSN, then name ascending (so the *greatest* is the
/// best, and equal positions pick the first name deterministically).
fn by_replay(a: &InstanceView, b: &InstanceView) -> Ordering {
    (a.replay_lsn, a.receive_lsn).cmp(&(b.replay_lsn, b.receive_lsn)).then_with(|| b.name.cmp(&a.name))
}

/// Orders a lost primary's standbys by how much of its WAL they hold: timeline, then the most
/// WAL received or replayed (promotion replays everything received, so that is what survives),
/// then replay LSN, then name ascending.
fn by_wal_held(a: &InstanceView, b: &InstanceView) -> Ordering {
    (a.timeline, a.wal_end(), a.replay_lsn)
        .cmp(&(b.timeline, b.wal_end(), b.replay_lsn))
        .then_with(|| b.name.cmp(&a.name))
}

/// The most caught-up healthy standby of a healthy primary (highest replay LSN; ties by name).
pub fn planned_candidate<'a>(
    observed: &'a Observed,
    primary: &InstanceView,
    max_lag_bytes: u64,
) -> Result<&'a InstanceView, String> {
    let standbys: Vec<&InstanceView> = observed.instances.iter().filter(|i| i.name != primary.name).collect();
    let healthy = standbys.iter().copied().filter(|i| planned_target_problem(i, primary, u64::MAX).is_none());
    let Some(best) = healthy.max_by(|a, b| by_replay(a, b)) else {
        return Err("no healthy standby to promote".into());
    };
    match planned_target_problem(best, primary, max_lag_bytes) {
        None => Ok(best),
        Some(problem) => Err(format!("no healthy standby close enough to promote: {problem}")),
    }
}

/// Why a standby of a lost primary cannot be promoted, if it can't: it must be reachable,
/// ready and in recovery (it cannot stream from a primary that is gone).
pub(crate) fn failover_target_problem(target: &InstanceView) -> Option<String> {
    let name = &target.name;
    if !target.reachable {
        Some(format!("target {name} is not reachable"))
    } else if !target.ready {
        Some(format!("target {name} is not ready"))
    } else if target.in_recovery != Some(true) {
        Some(format!("target {name} is not a standby"))
    } else {
        None
    }
}

/// What a standby holds of a lost primary's WAL, in [`by_wal_held`]'s order.
type Held = (Option<u32>, Option<Lsn>);

fn held(instance: &InstanceView) -> Held {
    (instance.timeline, instance.wal_end())
}

fn reported(synchronous: &SynchronousStandbys) -> String {
    if synchronous.standbys.is_empty() { "none".to_string() } else { synchronous.standbys.join(", ") }
}

/// Under synchronous replication, the least WAL a standby must hold to surely have every commit
/// the lost primary `lost` acknowledged; `Err` says why no standby can be known to hold them.
///
/// Each acknowledged commit is on at least `n - must_see + 1` of the n standbys reported as
/// synchronous, so among the `seen` of them that answered at least `seen - must_see + 1` hold
/// it: the floor is the (seen - must_see + 1)-th most advanced of those seen.
fn synchronous_floor(
    lost: &str,
    observed: &Observed,
    synchronous: &SynchronousStandbys,
) -> Result<Held, String> {
    let mut seen: Vec<Held> = observed
        .instances
        .iter()
        .filter(|i| i.name != lost && i.reachable && i.wal_end().is_some())
        .filter(|i| synchronous.standbys.contains(&i.name))
        .map(held)
        .collect();
    let must_see = synchronous.must_see.max(1);
    if seen.len() < must_see {
        return Err(format!(
            "{} of the standbys that were synchronous when the primary was last seen (synchronous: {}) \
             answered, and {must_see} must, to know which one holds every acknowledged commit",
            seen.len(),
            reported(synchronous)
        ));
    }
    seen.sort_unstable_by(|a, b| b.cmp(a));
    Ok(seen[seen.len() - must_see])
}

/// Why a standby may not take over from a lost primary under synchronous replication, if it
/// may not: only a standby the primary last reported as synchronous, and holding as much WAL
/// as [`synchronous_floor`] asks, surely holds every acknowledged commit.
fn synchronous_problem(observed: &Observed, lost: &str, target: &InstanceView) -> Option<String> {
    let synchronous = observed.synchronous_standbys.as_ref()?;
    if !synchronous.standbys.contains(&target.name) {
        return Some(format!(
            "target {} was not a synchronous standby when the primary was last seen (synchronous: {}), \
             so it may lack acknowledged commits",
            target.name,
            reported(synchronous)
        ));
    }
    match synchronous_floor(lost, observed, synchronous) {
        Err(reason) => Some(reason),
        Ok(floor) if held(target) < floor => Some(format!(
            "target {} holds less WAL than another synchronous standby, which may have acknowledged \
             commits it lacks",
            target.name
        )),
        Ok(_) => None,
    }
}

/// The healthy standby holding the most WAL of the lost primary `lost`; with synchronous
/// replication, among those [`synchronous_problem`] allows only.
pub fn failover_candidate<'a>(observed: &'a Observed, lost: &str) -> Option<&'a InstanceView> {
    observed
        .instances
        .iter()
        .filter(|i| i.name != lost && failover_target_problem(i).is_none())
        .filter(|i| synchronous_problem(observed, lost, i).is_none())
        .max_by(|a, b| by_wal_held(a, b))
}

/// Why [`failover_candidate`] found no one, starting with `no_candidate` ("no healthy standby
/// to promote"): with synchronous replication, say why the healthy standbys were left out.
pub fn no_failover_candidate_reason(observed: &Observed, lost: &str, no_candidate: &str) -> String {
    let Some(synchronous) = &observed.synchronous_standbys else { return no_candidate.to_string() };
    let healthy = observed.instances.iter().any(|i| i.name != lost && failover_target_problem(i).is_none());
    if !healthy {
        return no_candidate.to_string();
    }
    let why = match synchronous_floor(lost, observed, synchronous) {
        Err(reason) => reason,
        Ok(_) => format!(
            "no healthy standby holds every commit a synchronous standby may have acknowledged \
             (synchronous when the primary was last seen: {})",
            reported(synchronous)
        ),
    };
    format!(
        "{no_candidate}: synchronous replication is on and {why}; promoting another could lose acknowledged commits"
    )
}

/// Why an explicitly requested failover target may not be promoted: unhealthy, or more than
/// `max_lag_bytes` behind the best candidate (promoting it would drop WAL another standby has).
pub(crate) fn failover_target_check(
    observed: &Observed,
    lost: &str,
    target: &InstanceView,
    max_lag_bytes: u64,
) -> Option<String> {
    if let Some(problem) =
        failover_target_problem(target).or_else(|| synchronous_problem(observed, lost, target))
    {
        return Some(problem);
    }
    let best = failover_candidate(observed, lost)?;
    let behind = best.wal_end()?.bytes_after(target.wal_end().unwrap_or_default());
    (behind > max_lag_bytes).then(|| {
        format!(
            "target {} is too far behind: {behind} bytes less WAL than {} (max {max_lag_bytes})",
            target.name, best.name
        )
    })
}
