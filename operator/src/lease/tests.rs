use super::*;

fn at(base: Instant, secs: f64) -> Instant {
    base + Duration::from_secs_f64(secs)
}

#[test]
fn a_primary_fences_itself_before_the_operator_may_take_the_lease() {
    let base = Instant::now();
    let renewals = Renewals { primary_since: base, last_confirmed_sent: Some(base) };
    assert_eq!(self_fence_reason(&renewals, &Holder::Me, at(base, 6.9)), None);
    let reason = self_fence_reason(&renewals, &Holder::Me, at(base, 7.0)).unwrap();
    assert!(reason.contains("last renewed 7.0s ago"), "{reason}");
    // The operator's earliest revocation is TTL + skew after it *saw* the renewal, which is
    // after the renewal was sent: the gap is the margin the fence has to finish in.
    let operator_earliest = TTL + SKEW_MARGIN;
    let primary_latest = TTL - SELF_FENCE_MARGIN;
    assert!(operator_earliest - primary_latest >= Duration::from_secs(5));
}

#[test]
fn a_lease_that_names_someone_else_fences_at_once() {
    let base = Instant::now();
    let renewals = Renewals { primary_since: base, last_confirmed_sent: Some(base) };
    let reason = self_fence_reason(&renewals, &Holder::Other(Some("pg-2".into())), base).unwrap();
    assert!(reason.contains("pg-2"), "{reason}");
    let revoked = self_fence_reason(&renewals, &Holder::Other(None), base).unwrap();
    assert!(revoked.contains("revoked"), "{revoked}");
}

#[test]
fn a_new_primary_gets_two_renewal_periods_for_its_first_renewal() {
    let base = Instant::now();
    let renewals = Renewals { primary_since: base, last_confirmed_sent: None };
    assert_eq!(self_fence_reason(&renewals, &Holder::Unknown, at(base, 3.9)), None);
    assert!(self_fence_reason(&renewals, &Holder::Unknown, at(base, 4.0)).is_some());
}

#[test]
fn holders_are_told_apart() {
    assert_eq!(Holder::from_holder(Some("pg-1"), "pg-1"), Holder::Me);
    assert_eq!(Holder::from_holder(Some("pg-2"), "pg-1"), Holder::Other(Some("pg-2".into())));
    assert_eq!(Holder::from_holder(Some(""), "pg-1"), Holder::Other(None));
    assert_eq!(Holder::from_holder(None, "pg-1"), Holder::Other(None));
}

#[test]
fn the_tracker_ages_a_version_only_while_it_stays_the_same() {
    let tracker = Tracker::default();
    let base = Instant::now();
    let key = Tracker::key("db", "demo");
    assert_eq!(key, "db/demo-primary");
    tracker.record(&key, Some("pg-1".into()), "10", base);
    // The same version seen again (a relist) does not restart the clock.
    tracker.record(&key, Some("pg-1".into()), "10", at(base, 5.0));
    let view = tracker.view(&key, at(base, 11.9)).unwrap();
    assert!(!view.expired() && view.stale());
    assert_eq!(view.stale_holder(), Some("pg-1"));
    assert!(tracker.view(&key, at(base, 12.0)).unwrap().expired());
    // A renewal restarts it.
    tracker.record(&key, Some("pg-1".into()), "11", at(base, 12.0));
    let view = tracker.view(&key, at(base, 13.0)).unwrap();
    assert_eq!(view.unchanged_for, Duration::from_secs(1));
    assert_eq!(view.expires_in(), Duration::from_secs(11));
    assert!(view.held_by("pg-1") && !view.held_by("pg-2"));
    assert_eq!(view.stale_holder(), None, "a fresh Lease presumes nobody lost");
    assert_eq!(
        tracker.aged_between(Duration::ZERO, Duration::from_secs(2), at(base, 13.0)),
        vec![key.clone()]
    );
    tracker.forget(&key);
    assert_eq!(tracker.view(&key, at(base, 13.0)), None);
}
