//! Synchronous replication, purely: the `synchronous_standby_names` relevo wants on the
//! primary, what the status and its condition say, and which standbys a failover may promote.
//!
//! The value lists every instance the cluster could ever have, in instance order (a standby's
//! application_name is its instance name, see `instance::conf`). A primary never streams to
//! itself, so the same value is right on whichever instance is primary, after any switchover
//! and any scaling: only `number` and `method` (and, for `preferred`, the standbys streaming
//! now) change it.

use crate::crd::pgcluster::{DataDurability, SynchronousMethod, SynchronousSpec, SynchronousStatus};
use crate::switchover::model::SynchronousStandbys;

use crate::protocol::names;

pub const CONDITION_SYNCHRONOUS: &str = "SynchronousReplication";

/// `ANY 1 ("demo-1", "demo-2", …, "demo-9")` for `number` standbys.
fn standby_names(cluster: &str, spec: &SynchronousSpec, number: i32) -> String {
    let method = match spec.method {
        SynchronousMethod::Any => "ANY",
        SynchronousMethod::First => "FIRST",
    };
    let listed: Vec<String> =
        (1..=names::MAX_INSTANCES).map(|n| format!("\"{}\"", names::instance(cluster, n))).collect();
    format!("{method} {number} ({})", listed.join(", "))
}

/// The value the primary must run with. Asynchronous (`spec` None): empty. `required`: the
/// full list, whoever streams. `preferred`: as many as stream now, up to `number`, and empty
/// when none streams, so that writes carry on.
pub fn wanted_standby_names(cluster: &str, spec: Option<&SynchronousSpec>, streaming: usize) -> String {
    let Some(spec) = spec else { return String::new() };
    let number = match spec.data_durability {
        DataDurability::Required => spec.number,
        DataDurability::Preferred => spec.number.min(i32::try_from(streaming).unwrap_or(i32::MAX)),
    };
    if number < 1 { String::new() } else { standby_names(cluster, spec, number) }
}

/// What to do to the primary's synchronous_standby_names, running `current` with `streaming`
/// standbys: nothing when it is right. An asynchronous cluster's value is left alone unless
/// relevo wrote it (synchronous replication was just turned off), so that today's clusters
/// see no SQL at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandbyNamesChange {
    Set(String),
    /// ALTER SYSTEM RESET: back to asynchronous.
    Reset,
}

pub fn standby_names_change(
    cluster: &str,
    spec: Option<&SynchronousSpec>,
    streaming: usize,
    current: &str,
) -> Option<StandbyNamesChange> {
    if spec.is_none() {
        return written_by_relevo(cluster, current).then_some(StandbyNamesChange::Reset);
    }
    let wanted = wanted_standby_names(cluster, spec, streaming);
    (wanted != current).then_some(StandbyNamesChange::Set(wanted))
}

/// What to do to a standby's synchronous_standby_names so that it runs right the moment it
/// is promoted, before any reconcile reaches it as primary: `required` the full list (its
/// commits wait for a standby, as they must), `preferred` empty (no standby streams to a
/// primary just promoted, and writes must carry on), asynchronous as
/// [`standby_names_change`]. In recovery the value has no effect.
pub fn standby_names_on_promotion(
    cluster: &str,
    spec: Option<&SynchronousSpec>,
    current: &str,
) -> Option<StandbyNamesChange> {
    standby_names_change(cluster, spec, 0, current)
}

/// Whether `value` has the shape [`standby_names`] gives it for this cluster.
fn written_by_relevo(cluster: &str, value: &str) -> bool {
    let any = SynchronousSpec::default();
    let list = standby_names(cluster, &any, 1);
    let listed = &list[list.find('(').unwrap_or(0)..];
    !value.is_empty() && value.ends_with(listed)
}

/// How many of the `streaming` application_names are instances of the cluster: what
/// `preferred` counts. pg_basebackup's WAL stream (a standby being cloned) also shows as
/// `streaming`, and must not raise the number above the standbys that can confirm.
pub fn streaming_instances(cluster: &str, streaming: &[String]) -> usize {
    streaming.iter().filter(|name| names::ordinal(cluster, name).is_some()).count()
}

/// The new status from the primary's report (`None`: the primary did not answer, so the last
/// report is kept; a failover must still know who was synchronous).
pub fn status(
    spec: &SynchronousSpec,
    report: Option<&[String]>,
    previous: Option<&SynchronousStatus>,
) -> SynchronousStatus {
    let Some(report) = report else { return previous.cloned().unwrap_or_default() };
    let mut standbys = report.to_vec();
    standbys.sort();
    let shortfall = shortfall(spec, standbys.len());
    SynchronousStatus { standbys, shortfall }
}

fn shortfall(spec: &SynchronousSpec, synchronous: usize) -> Option<String> {
    let wanted = usize::try_from(spec.number).unwrap_or(0);
    if synchronous >= wanted {
        return None;
    }
    let streaming = match synchronous {
        0 => format!("no synchronous standby streams ({wanted} wanted)"),
        n => format!("{n} of {wanted} synchronous standbys stream"),
    };
    let consequence = match spec.data_durability {
        DataDurability::Required => "commits wait until enough standbys stream",
        DataDurability::Preferred => {
            "commits carry on with fewer synchronous standbys (preferred durability)"
        }
    };
    Some(format!("{streaming}: {consequence}"))
}

/// The SynchronousReplication condition: (status, reason, message).
pub fn condition(spec: &SynchronousSpec, status: &SynchronousStatus) -> (bool, &'static str, String) {
    match (&status.shortfall, spec.data_durability) {
        (None, _) => (
            true,
            "SynchronousStandbysStreaming",
            format!("synchronous standbys: {}", status.standbys.join(", ")),
        ),
        (Some(shortfall), DataDurability::Required) => (false, "CommitsWaiting", shortfall.clone()),
        (Some(shortfall), DataDurability::Preferred) => (false, "RunningAsynchronously", shortfall.clone()),
    }
}

/// Who a failover may promote; `None`: any standby (asynchronous replication).
///
/// With synchronous replication, every acknowledged commit is on the standbys the primary last
/// reported as synchronous: all of them under FIRST, `number` of them under ANY (fewer while
/// `preferred` lowered the number to the standbys streaming, at most all of them). One
/// exception: `preferred` durability with no synchronous standby reported means commits were
/// acknowledged by the primary alone, which no standby can promise, so the asynchronous rule
/// (most WAL wins) applies and the status said so.
pub fn promotable(
    spec: Option<&SynchronousSpec>,
    status: Option<&SynchronousStatus>,
) -> Option<SynchronousStandbys> {
    let spec = spec?;
    let standbys = status.map(|s| s.standbys.clone()).unwrap_or_default();
    if spec.data_durability == DataDurability::Preferred && standbys.is_empty() {
        return None;
    }
    let on_each_commit = match spec.method {
        SynchronousMethod::First => standbys.len(),
        SynchronousMethod::Any => usize::try_from(spec.number).unwrap_or(1).clamp(1, standbys.len().max(1)),
    };
    let must_see = (standbys.len() + 1).saturating_sub(on_each_commit).max(1);
    Some(SynchronousStandbys { standbys, must_see })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(number: i32, method: SynchronousMethod, data_durability: DataDurability) -> SynchronousSpec {
        SynchronousSpec { number, method, data_durability }
    }

    fn required(number: i32) -> SynchronousSpec {
        spec(number, SynchronousMethod::Any, DataDurability::Required)
    }

    fn preferred(number: i32) -> SynchronousSpec {
        spec(number, SynchronousMethod::Any, DataDurability::Preferred)
    }

    fn names_of(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_standby_is_readied_for_promotion_full_list_when_required_and_empty_when_preferred() {
        let full = wanted_standby_names("demo", Some(&required(1)), 0);
        assert_eq!(
            standby_names_on_promotion("demo", Some(&required(1)), ""),
            Some(StandbyNamesChange::Set(full.clone()))
        );
        assert_eq!(standby_names_on_promotion("demo", Some(&required(1)), &full), None);
        // Cloned from a preferred primary with one standby streaming: promoted as is, it
        // would hold every commit until a standby connected.
        let copied = wanted_standby_names("demo", Some(&preferred(1)), 1);
        assert_eq!(
            standby_names_on_promotion("demo", Some(&preferred(1)), &copied),
            Some(StandbyNamesChange::Set(String::new()))
        );
        assert_eq!(standby_names_on_promotion("demo", Some(&preferred(1)), ""), None);
        assert_eq!(standby_names_on_promotion("demo", None, &full), Some(StandbyNamesChange::Reset));
        assert_eq!(standby_names_on_promotion("demo", None, "*"), None);
    }

    #[test]
    fn every_possible_instance_is_listed_in_instance_order_and_quoted() {
        let any = wanted_standby_names("demo", Some(&required(1)), 0);
        assert_eq!(
            any,
            "ANY 1 (\"demo-1\", \"demo-2\", \"demo-3\", \"demo-4\", \"demo-5\", \"demo-6\", \"demo-7\", \
             \"demo-8\", \"demo-9\")"
        );
        let first = spec(2, SynchronousMethod::First, DataDurability::Required);
        assert!(wanted_standby_names("shop", Some(&first), 5).starts_with("FIRST 2 (\"shop-1\", "));
    }

    #[test]
    fn asynchronous_wants_nothing() {
        assert_eq!(wanted_standby_names("demo", None, 3), "");
    }

    #[test]
    fn required_keeps_the_full_number_whoever_streams() {
        assert!(wanted_standby_names("demo", Some(&required(2)), 0).starts_with("ANY 2 ("));
    }

    #[test]
    fn preferred_follows_the_streaming_standbys_down_to_none() {
        assert_eq!(wanted_standby_names("demo", Some(&preferred(2)), 0), "");
        assert!(wanted_standby_names("demo", Some(&preferred(2)), 1).starts_with("ANY 1 ("));
        assert!(wanted_standby_names("demo", Some(&preferred(2)), 5).starts_with("ANY 2 ("));
    }

    #[test]
    fn the_primary_is_changed_only_when_its_value_is_wrong() {
        let value = wanted_standby_names("demo", Some(&required(1)), 0);
        assert_eq!(standby_names_change("demo", Some(&required(1)), 0, &value), None);
        assert_eq!(
            standby_names_change("demo", Some(&required(1)), 0, ""),
            Some(StandbyNamesChange::Set(value.clone()))
        );
        assert_eq!(
            standby_names_change("demo", Some(&preferred(1)), 0, &value),
            Some(StandbyNamesChange::Set(String::new())),
            "preferred with nothing streaming: asynchronous"
        );
    }

    #[test]
    fn an_asynchronous_cluster_is_left_alone_unless_relevo_wrote_its_value() {
        assert_eq!(standby_names_change("demo", None, 1, ""), None);
        assert_eq!(standby_names_change("demo", None, 1, "*"), None, "the user's own");
        assert_eq!(
            standby_names_change("shop", None, 1, &wanted_standby_names("demo", Some(&required(1)), 0)),
            None
        );
        let ours = wanted_standby_names(
            "demo",
            Some(&spec(2, SynchronousMethod::First, DataDurability::Required)),
            0,
        );
        assert_eq!(standby_names_change("demo", None, 1, &ours), Some(StandbyNamesChange::Reset));
    }

    #[test]
    fn only_the_cluster_s_instances_count_as_streaming() {
        let seen = names_of(&["demo-2", "pg_basebackup", "shop-3", "demo-3"]);
        assert_eq!(streaming_instances("demo", &seen), 2);
    }

    #[test]
    fn the_status_says_when_synchronous_standbys_are_missing() {
        let two = required(2);
        let none = status(&two, Some(&[]), None);
        assert_eq!(
            none.shortfall.as_deref(),
            Some("no synchronous standby streams (2 wanted): commits wait until enough standbys stream")
        );
        let one = status(&preferred(2), Some(&names_of(&["demo-3"])), None);
        assert!(
            one.shortfall
                .as_deref()
                .unwrap()
                .starts_with("1 of 2 synchronous standbys stream: commits carry on")
        );
        let both = status(&two, Some(&names_of(&["demo-3", "demo-2"])), None);
        assert_eq!(both, SynchronousStatus { standbys: names_of(&["demo-2", "demo-3"]), shortfall: None });
    }

    #[test]
    fn the_last_report_is_kept_while_the_primary_does_not_answer() {
        let last = SynchronousStatus { standbys: names_of(&["demo-2"]), shortfall: None };
        assert_eq!(status(&required(1), None, Some(&last)), last);
        assert_eq!(status(&required(1), None, None), SynchronousStatus::default());
    }

    #[test]
    fn the_condition_names_what_commits_do_meanwhile() {
        let short = status(&required(1), Some(&[]), None);
        assert_eq!(condition(&required(1), &short).1, "CommitsWaiting");
        let short = status(&preferred(1), Some(&[]), None);
        assert_eq!(condition(&preferred(1), &short).1, "RunningAsynchronously");
        let fine = status(&required(1), Some(&names_of(&["demo-2"])), None);
        assert_eq!(
            condition(&required(1), &fine),
            (true, "SynchronousStandbysStreaming", "synchronous standbys: demo-2".into())
        );
    }

    #[test]
    fn only_the_last_reported_synchronous_standbys_may_be_promoted() {
        let last = SynchronousStatus { standbys: names_of(&["demo-3"]), shortfall: None };
        let only = |list: &[&str], must_see| Some(SynchronousStandbys { standbys: names_of(list), must_see });
        assert_eq!(promotable(Some(&required(1)), Some(&last)), only(&["demo-3"], 1));
        assert_eq!(promotable(Some(&required(1)), None), only(&[], 1), "never reported: none");
        assert_eq!(promotable(Some(&preferred(1)), Some(&last)), only(&["demo-3"], 1));
        assert_eq!(promotable(Some(&preferred(1)), Some(&SynchronousStatus::default())), None);
        assert_eq!(promotable(None, Some(&last)), None, "asynchronous: any standby");
    }

    #[test]
    fn a_quorum_asks_a_failover_to_see_enough_of_its_members() {
        let three =
            SynchronousStatus { standbys: names_of(&["demo-2", "demo-3", "demo-4"]), shortfall: None };
        let must_see = |spec: &SynchronousSpec| promotable(Some(spec), Some(&three)).unwrap().must_see;
        assert_eq!(must_see(&required(1)), 3, "ANY 1 of 3: a commit may be on any one of them");
        assert_eq!(must_see(&required(2)), 2);
        assert_eq!(must_see(&required(3)), 1);
        assert_eq!(must_see(&required(5)), 1, "fewer reported than wanted: each commit is on all");
        assert_eq!(
            must_see(&spec(2, SynchronousMethod::First, DataDurability::Required)),
            1,
            "FIRST: on all"
        );
        assert_eq!(must_see(&preferred(1)), 3);
    }
}
