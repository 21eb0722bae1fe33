//! What the instance manager does about the operator's markers (see
//! `switchover::markers` for the protocol). Pure: the supervisor reads the annotations file
//! and two small state files on the volume, and carries out what [`decide`] returns.
//!
//! With no marker set and nothing recorded, the answer is always "nothing", so an instance
//! that never takes part in a switchover runs exactly as before.

use crate::lease::{Holder, SELF_FENCE_TOKEN};
use crate::protocol::markers::Markers;

/// What this instance has recorded on its volume, so a container restart keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Local {
    /// The switchover whose fence this instance obeys (it runs in recovery, no upstream).
    pub fenced_by: Option<String>,
    /// The last rebuild token carried out.
    pub last_rebuild: Option<String>,
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing changed.
    Nothing,
    /// Stop PostgreSQL (fast), rebuild from `source`, start as a standby following `-rw`.
    Rebuild { token: String, source: String },
    /// Stop PostgreSQL (fast), restart it in recovery with no upstream.
    Fence { token: String },
    /// Already fenced under an older token: just record the new one.
    RecordFence { token: String },
    /// The fence of the very switchover that asks for it is lifted before any promotion:
    /// restart as the primary it was.
    RestorePrimary,
    /// The fence is lifted: follow `-rw` as a standby (configuration reload, no restart).
    FollowPrimary,
}

impl Action {
    /// Must PostgreSQL be stopped first?
    pub fn needs_restart(&self) -> bool {
        matches!(self, Action::Rebuild { .. } | Action::Fence { .. } | Action::RestorePrimary)
    }
}

/// The next action. A rebuild goes first: it turns the instance into a standby of the new
/// primary whatever else is set, and the operator only requests one after a promotion.
/// `lease` matters only to an instance that fenced itself for want of the primary Lease: it
/// comes back as the primary only if the Lease still names it (nobody was promoted in its
/// place), is rebuilt from the new primary if it names another (follows `-rw` when it names
/// nobody yet), and waits while it is unknown.
pub fn decide(markers: &Markers, local: &Local, lease: &Holder) -> Action {
    if let (Some(token), Some(source)) = (&markers.rebuild, &markers.rebuild_source)
        && local.last_rebuild.as_ref() != Some(token)
    {
        return Action::Rebuild { token: token.clone(), source: source.clone() };
    }
    match (&markers.fence, &local.fenced_by) {
        (Some(token), None) => Action::Fence { token: token.clone() },
        (Some(token), Some(by)) if token != by => Action::RecordFence { token: token.clone() },
        (Some(_), Some(_)) => Action::Nothing,
        (None, Some(by)) if by == SELF_FENCE_TOKEN => match lease {
            Holder::Me => Action::RestorePrimary,
            // Another was promoted. This instance acknowledged writes until its self-fence
            // deadline (and a frozen one may hold WAL it never sent), so it has likely
            // diverged and could not stream: it rewinds onto the new primary at once, instead
            // of waiting for the operator's rebuild marker, which reaches the pod only at
            // kubelet's next sync of the annotations file (up to about a minute).
            Holder::Other(Some(holder)) => {
                Action::Rebuild { token: format!("{SELF_FENCE_TOKEN}:{holder}"), source: holder.clone() }
            }
            Holder::Other(None) => Action::FollowPrimary,
            Holder::Unknown => Action::Nothing,
        },
        (None, Some(by)) if markers.restore_primary.as_ref() == Some(by) => Action::RestorePrimary,
        (None, Some(_)) => Action::FollowPrimary,
        (None, None) => Action::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn markers(fence: Option<&str>, restore: Option<&str>, rebuild: Option<(&str, &str)>) -> Markers {
        Markers {
            fence: fence.map(str::to_owned),
            restore_primary: restore.map(str::to_owned),
            rebuild: rebuild.map(|(t, _)| t.to_owned()),
            rebuild_source: rebuild.map(|(_, s)| s.to_owned()),
        }
    }

    fn local(fenced_by: Option<&str>, last_rebuild: Option<&str>) -> Local {
        Local { fenced_by: fenced_by.map(str::to_owned), last_rebuild: last_rebuild.map(str::to_owned) }
    }

    #[test]
    fn no_marker_no_action() {
        assert_eq!(decide(&Markers::default(), &Local::default(), &Holder::Unknown), Action::Nothing);
        // A rebuild already done stays done.
        assert_eq!(
            decide(
                &markers(None, None, Some(("so-1", "pg-2"))),
                &local(None, Some("so-1")),
                &Holder::Unknown
            ),
            Action::Nothing
        );
    }

    #[test]
    fn fence_once_then_hold() {
        let fenced = markers(Some("so-1"), None, None);
        assert_eq!(
            decide(&fenced, &Local::default(), &Holder::Unknown),
            Action::Fence { token: "so-1".into() }
        );
        assert!(decide(&fenced, &Local::default(), &Holder::Unknown).needs_restart());
        assert_eq!(decide(&fenced, &local(Some("so-1"), None), &Holder::Unknown), Action::Nothing);
        let again = markers(Some("so-2"), None, None);
        assert_eq!(
            decide(&again, &local(Some("so-1"), None), &Holder::Unknown),
            Action::RecordFence { token: "so-2".into() }
        );
    }

    #[test]
    fn lifting_the_fence_restores_the_primary_only_when_asked_by_the_same_switchover() {
        assert_eq!(
            decide(&markers(None, Some("so-1"), None), &local(Some("so-1"), None), &Holder::Unknown),
            Action::RestorePrimary
        );
        assert_eq!(
            decide(&markers(None, Some("so-0"), None), &local(Some("so-1"), None), &Holder::Unknown),
            Action::FollowPrimary
        );
        assert_eq!(
            decide(&markers(None, None, None), &local(Some("so-1"), None), &Holder::Unknown),
            Action::FollowPrimary
        );
        assert!(!Action::FollowPrimary.needs_restart());
    }

    #[test]
    fn a_self_fenced_primary_follows_the_lease() {
        let fenced = local(Some(SELF_FENCE_TOKEN), None);
        let none = Markers::default();
        assert_eq!(decide(&none, &fenced, &Holder::Me), Action::RestorePrimary);
        assert_eq!(
            decide(&none, &fenced, &Holder::Other(Some("pg-2".into()))),
            Action::Rebuild { token: format!("{SELF_FENCE_TOKEN}:pg-2"), source: "pg-2".into() },
            "a successor holds the Lease: rewind onto it"
        );
        assert_eq!(decide(&none, &fenced, &Holder::Other(None)), Action::FollowPrimary);
        assert_eq!(decide(&none, &fenced, &Holder::Unknown), Action::Nothing);
        // An operator fence on top of a self-fence is recorded, and then holds.
        let operator = markers(Some("so-1"), None, None);
        assert_eq!(decide(&operator, &fenced, &Holder::Me), Action::RecordFence { token: "so-1".into() });
        // An operator-fenced instance never looks at the Lease.
        assert_eq!(decide(&none, &local(Some("so-1"), None), &Holder::Me), Action::FollowPrimary);
    }

    #[test]
    fn a_new_rebuild_token_goes_first() {
        let m = markers(Some("so-1"), None, Some(("so-1", "pg-2")));
        assert_eq!(
            decide(&m, &local(Some("so-1"), Some("so-0")), &Holder::Unknown),
            Action::Rebuild { token: "so-1".into(), source: "pg-2".into() }
        );
        let no_source = Markers { rebuild_source: None, ..m };
        assert_eq!(decide(&no_source, &local(Some("so-1"), None), &Holder::Unknown), Action::Nothing);
    }
}
