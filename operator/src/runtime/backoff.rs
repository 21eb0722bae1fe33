//! The retry rule of every controller, from the one error classification
//! ([`crate::error::Retry`]) and the number of consecutive failures of the same object.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::error::Retry;

/// The longest wait between two attempts at a transient error.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The pause before retrying a conflict: enough to let the watch deliver the other write.
pub const CONFLICT_DELAY: Duration = Duration::from_millis(50);
/// Consecutive conflicts retried at once before they back off like any transient error, so
/// that a writer fighting another one never hot-loops.
pub const CONFLICTS_AT_ONCE: u32 = 3;

/// What to do after the `attempt`-th consecutive failure (1 = the first) of class `retry`.
pub fn next_action(retry: Retry, attempt: u32) -> Action {
    match retry {
        Retry::WaitForChange => Action::await_change(),
        Retry::AtOnce if attempt <= CONFLICTS_AT_ONCE => Action::requeue(CONFLICT_DELAY),
        Retry::AtOnce => {
            Action::requeue(exponential(crate::error::TRANSIENT_BACKOFF, attempt - CONFLICTS_AT_ONCE))
        }
        Retry::After(first) => Action::requeue(exponential(first, attempt)),
    }
}

/// `first`, doubled for each attempt after the first, at most [`MAX_BACKOFF`].
pub fn exponential(first: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    first.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// Consecutive failures per object (`namespace/name`), forgotten on the first success.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    pub fn key<K: Resource>(object: &K) -> String {
        format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
    }

    /// Counts one more failure of `key` and returns the count.
    pub fn record(&self, key: String) -> u32 {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = map.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    pub fn reset(&self, key: &str) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TRANSIENT_BACKOFF;

    #[test]
    fn invalid_specs_wait_for_a_change() {
        assert_eq!(next_action(Retry::WaitForChange, 1), Action::await_change());
        assert_eq!(next_action(Retry::WaitForChange, 50), Action::await_change());
    }

    #[test]
    fn conflicts_retry_at_once_then_back_off() {
        for attempt in 1..=CONFLICTS_AT_ONCE {
            assert_eq!(next_action(Retry::AtOnce, attempt), Action::requeue(CONFLICT_DELAY));
        }
        assert_eq!(next_action(Retry::AtOnce, CONFLICTS_AT_ONCE + 1), Action::requeue(TRANSIENT_BACKOFF));
        assert_eq!(next_action(Retry::AtOnce, CONFLICTS_AT_ONCE + 2), Action::requeue(TRANSIENT_BACKOFF * 2));
    }

    #[test]
    fn transient_errors_double_up_to_the_cap() {
        let s = Duration::from_secs;
        let delays: Vec<Action> = (1..=8).map(|n| next_action(Retry::After(s(1)), n)).collect();
        let expected: Vec<Action> = [1, 2, 4, 8, 16, 32, 60, 60].map(|d| Action::requeue(s(d))).to_vec();
        assert_eq!(delays, expected);
        assert_eq!(exponential(s(1), u32::MAX), MAX_BACKOFF, "no overflow");
        assert_eq!(exponential(s(120), 1), MAX_BACKOFF, "a first delay above the cap is capped");
    }

    #[test]
    fn a_success_resets_the_count_of_its_object_only() {
        let failures = Failures::default();
        assert_eq!(failures.record("db/a".into()), 1);
        assert_eq!(failures.record("db/a".into()), 2);
        assert_eq!(failures.record("db/b".into()), 1);
        failures.reset("db/a");
        assert_eq!(failures.record("db/a".into()), 1);
        assert_eq!(failures.record("db/b".into()), 2);
    }
}
