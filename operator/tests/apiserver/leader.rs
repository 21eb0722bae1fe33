//! One operator at a time: two candidates for the operator Lease, as the operator's
//! ServiceAccount, against the real apiserver.

use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use relevo::leader;

use super::*;

/// The first candidate leads; the second waits while the first renews, takes over only
/// once the first has stopped renewing for the TTL plus the skew margin, and the first then
/// learns that it lost. A release hands the Lease over at once, to a standby already waiting
/// before its next timed look.
#[tokio::test]
async fn a_second_operator_waits_for_the_first_and_takes_over_only_when_it_stops() {
    let operator = setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let ns = &namespace(&admin, "it-leader").await;
    let leases: Api<Lease> = Api::namespaced(operator, ns);

    let a_since = tokio::time::timeout(WAIT, leader::acquire(&leases, "operator-a"))
        .await
        .expect("the first operator leads at once");
    let a_renewing = tokio::spawn({
        let leases = leases.clone();
        async move { leader::hold(&leases, "operator-a", a_since).await }
    });

    // While a renews, b keeps waiting, well past the TTL.
    let b_waits = tokio::time::timeout(
        leader::TTL + leader::SKEW_MARGIN + Duration::from_secs(3),
        leader::acquire(&leases, "operator-b"),
    )
    .await;
    assert!(b_waits.is_err(), "b took the Lease while a was renewing it");
    assert!(!a_renewing.is_finished(), "a stopped leading while it could renew");

    // a stops renewing (as a dead or cut-off operator does): b takes over, not before the TTL.
    a_renewing.abort();
    let stopped = Instant::now();
    let b_since = tokio::time::timeout(
        leader::TTL + leader::SKEW_MARGIN + WAIT,
        leader::acquire(&leases, "operator-b"),
    )
    .await
    .expect("b takes the Lease once a stopped renewing");
    let waited = b_since.duration_since(stopped);
    assert!(waited >= leader::TTL, "b took over {waited:?} after a's last renewal, inside the TTL");
    let lease = leases.get(leader::NAME).await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("operator-b"));

    // a, coming back, learns at its next renewal that it no longer leads.
    let lost = tokio::time::timeout(WAIT, leader::hold(&leases, "operator-a", Instant::now()))
        .await
        .expect("a learns it lost the Lease");
    assert!(matches!(lost, leader::LeadershipLost::TakenBy(_)), "a stopped for another reason: {lost}");

    // b releases (SIGTERM): a leads at once, with no TTL to wait.
    leader::release(&leases, "operator-b").await;
    let released = Instant::now();
    tokio::time::timeout(WAIT, leader::acquire(&leases, "operator-a"))
        .await
        .expect("a leads after b released");
    assert!(released.elapsed() < leader::TTL, "a waited {:?} after the release", released.elapsed());

    // b stands by (as the second replica does) while a leads; a releases half a second after
    // b's first look, well before its next timed one: b, woken by the Lease's change, leads
    // at once, ahead of any replica that would only be starting.
    let b_standing_by = tokio::spawn({
        let leases = leases.clone();
        async move { leader::acquire(&leases, "operator-b").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b_standing_by.is_finished(), "b led while a held the Lease");
    leader::release(&leases, "operator-a").await;
    let released = Instant::now();
    let b_since = tokio::time::timeout(WAIT, b_standing_by).await.expect("b leads after a released").unwrap();
    let took = b_since.saturating_duration_since(released);
    assert!(took < leader::RENEW_INTERVAL / 2, "the standby b took {took:?} to take the released Lease");
}
