//! Synchronous replication, purely: the `synchronous_standby_names` relevo writes, and which
//! standbys a failover may promote.
//!
//! The list names every instance the cluster could ever have, in instance order (a standby's
//! application_name is its instance name). A primary never streams to itself, so the same
//! value is right on whichever instance is primary, after any switchover and any scaling:
//! the configuration never has to change under a running cluster.

use crate::crd::replication::{SynchronousMethod, SynchronousSpec};

use super::names;

/// The value of `synchronous_standby_names`, e.g. `ANY 1 ("demo-1", "demo-2", …)`.
pub fn standby_names(cluster: &str, spec: &SynchronousSpec) -> String {
    let method = match spec.method {
        SynchronousMethod::Any => "ANY",
        SynchronousMethod::First => "FIRST",
    };
    let listed: Vec<String> =
        (1..=names::MAX_INSTANCES).map(|n| format!("\"{}\"", names::instance(cluster, n))).collect();
    format!("{method} {} ({})", spec.number, listed.join(", "))
}

/// `preferred`: as many synchronous standbys as stream now, up to `number`; none streaming
/// means asynchronous (an empty value), so that writes carry on.
pub fn preferred_names(cluster: &str, spec: &SynchronousSpec, streaming: usize) -> String {
    let number = (spec.number as usize).min(streaming);
    if number == 0 {
        return String::new();
    }
    standby_names(cluster, &SynchronousSpec { number: number as i32, ..spec.clone() })
}

/// The standbys a failover may promote when replication is synchronous: only those the
/// primary last reported as synchronous (`sync` or `quorum` in pg_stat_replication). Every
/// acknowledged commit is on at least one of them, so the most advanced of them has all.
/// Asynchronous replication (`synchronous` is None) keeps every candidate.
pub fn failover_candidates<'a>(candidates: &[&'a str], synchronous: Option<&[String]>) -> Vec<&'a str> {
    match synchronous {
        None => candidates.to_vec(),
        Some(sync) => candidates.iter().copied().filter(|c| sync.iter().any(|s| s == c)).collect(),
    }
}

/// When fewer synchronous standbys stream than required: the message for the status.
pub fn shortfall(spec: &SynchronousSpec, synchronous_now: usize) -> Option<String> {
    let wanted = spec.number as usize;
    (synchronous_now < wanted).then(|| match synchronous_now {
        0 => format!("no synchronous standby is streaming ({wanted} wanted)"),
        n => format!("{n} of {wanted} synchronous standbys streaming"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::replication::DataDurability;

    fn spec(number: i32, method: SynchronousMethod) -> SynchronousSpec {
        SynchronousSpec { number, method, data_durability: DataDurability::Required }
    }

    #[test]
    fn every_possible_instance_is_listed_in_instance_order() {
        let any = standby_names("demo", &spec(1, SynchronousMethod::Any));
        assert!(any.starts_with("ANY 1 (\"demo-1\", \"demo-2\", "), "{any}");
        assert!(any.ends_with("\"demo-9\")"), "{any}");
        let first = standby_names("shop", &spec(2, SynchronousMethod::First));
        assert!(first.starts_with("FIRST 2 (\"shop-1\", "), "{first}");
    }

    #[test]
    fn preferred_follows_the_streaming_standbys() {
        let two =
            SynchronousSpec { data_durability: DataDurability::Preferred, ..spec(2, SynchronousMethod::Any) };
        assert_eq!(preferred_names("demo", &two, 0), "");
        assert!(preferred_names("demo", &two, 1).starts_with("ANY 1 ("));
        assert!(preferred_names("demo", &two, 5).starts_with("ANY 2 ("));
    }

    #[test]
    fn a_failover_promotes_only_a_standby_that_was_synchronous() {
        let sync = vec!["demo-3".to_string()];
        assert_eq!(failover_candidates(&["demo-2", "demo-3"], Some(&sync)), vec!["demo-3"]);
        assert!(failover_candidates(&["demo-2"], Some(&sync)).is_empty());
        assert_eq!(failover_candidates(&["demo-2", "demo-3"], None), vec!["demo-2", "demo-3"]);
    }

    #[test]
    fn the_status_says_when_synchronous_standbys_are_missing() {
        let two = spec(2, SynchronousMethod::Any);
        assert_eq!(shortfall(&two, 0).as_deref(), Some("no synchronous standby is streaming (2 wanted)"));
        assert_eq!(shortfall(&two, 1).as_deref(), Some("1 of 2 synchronous standbys streaming"));
        assert_eq!(shortfall(&two, 2), None);
    }
}
