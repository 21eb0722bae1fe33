//! The marker protocol between the operator and the instance manager (`relevo instance`).
//!
//! Instance pods may read and renew their primary Lease and nothing else in the Kubernetes
//! API, so the operator speaks to them through pod annotations, which a downwardAPI volume
//! exposes as a file the instance manager polls
//! (kubelet refreshes the file at its next sync of the pod, from about a second to about a
//! minute after the annotation changed; a restart of the container is never needed):
//!
//! | annotation | set by | meaning for the instance manager |
//! |---|---|---|
//! | `relevo.dev/fence: <switchover>` | Fence | fast shutdown, restart in recovery with no upstream; stay so while set |
//! | `relevo.dev/restore-primary: <switchover>` | Unfence before promotion | when the fence of that same switchover is lifted, come back as primary |
//! | `relevo.dev/rebuild: <token>` | Rebuild | once per token: stop, pg_rewind (pg_basebackup fallback) from `relevo.dev/rebuild-source`, start as a standby |
//! | `relevo.dev/rebuild-source: <instance>` | Rebuild | where to rebuild from |
//!
//! The operator also delivers the fence and rebuild markers straight to the instance manager
//! over its HTTPS endpoint (`instance::control`), so they act at once; the file stays the
//! durable record.
//!
//! Lifting the fence without `restore-primary` makes the instance a standby following
//! `<cluster>-rw`: the safe default, because after a promotion the old primary must never
//! write again. The rebuild markers are also put on the StatefulSet's pod template, because a
//! failover scales the lost primary to zero: the pod that comes back is new and carries them
//! from the template. `relevo.dev/scaled-by` on the StatefulSet itself records that a
//! switchover set its replicas, so the PgCluster controller carries the value over instead of
//! resetting it to 1 (both write under the one field manager, so each write is whole).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const FENCE: &str = "relevo.dev/fence";
pub const RESTORE_PRIMARY: &str = "relevo.dev/restore-primary";
pub const REBUILD: &str = "relevo.dev/rebuild";
pub const REBUILD_SOURCE: &str = "relevo.dev/rebuild-source";
/// On the PgCluster: the Switchover that holds the cluster's one role move (see
/// [`crate::switchover::model::RoleMove`]).
pub const ROLE_MOVE: &str = "relevo.dev/role-move";
/// On a StatefulSet: its replicas were set by this switchover; keep them.
pub const SCALED_BY: &str = "relevo.dev/scaled-by";

/// Annotations relevo owns on an instance pod (every write of pod metadata carries all of
/// them, because a server-side apply drops what the same manager no longer sends).
pub const POD_MARKERS: [&str; 4] = [FENCE, RESTORE_PRIMARY, REBUILD, REBUILD_SOURCE];
/// Annotations relevo owns on an instance's pod template.
pub const TEMPLATE_MARKERS: [&str; 2] = [REBUILD, REBUILD_SOURCE];

/// Where the downwardAPI volume is mounted in the postgres container.
pub const PODINFO_DIR: &str = "/etc/relevo/podinfo";
/// The file with the pod's annotations, one `key="value"` per line.
pub const ANNOTATIONS_FILE: &str = "/etc/relevo/podinfo/annotations";

/// The relevo-owned subset of `annotations`, among `owned`.
pub fn owned(annotations: Option<&BTreeMap<String, String>>, owned: &[&str]) -> BTreeMap<String, String> {
    annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| owned.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What the instance manager reads from the annotations file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Markers {
    pub fence: Option<String>,
    pub restore_primary: Option<String>,
    pub rebuild: Option<String>,
    pub rebuild_source: Option<String>,
}

impl Markers {
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Self {
        let get = |key: &str| annotations.get(key).filter(|v| !v.is_empty()).cloned();
        Markers {
            fence: get(FENCE),
            restore_primary: get(RESTORE_PRIMARY),
            rebuild: get(REBUILD),
            rebuild_source: get(REBUILD_SOURCE),
        }
    }
}

// --- the direct channel (`relevo instance`'s HTTPS endpoint) ---------------------------

/// The port of the direct channel's endpoint, on every instance pod.
pub const PORT: u16 = 8008;
/// The route of the fence markers the operator wants now.
pub const FENCE_PATH: &str = "/v1/fence";
/// The route of the rebuild the operator wants now.
pub const REBUILD_PATH: &str = "/v1/rebuild";

/// One part of the markers that the operator can deliver directly: it is read from and put
/// over the annotations file's markers as a whole.
pub trait DirectPart: Clone + PartialEq {
    /// This part as the file shows it.
    fn of(file: &Markers) -> Self;
    /// `file` with this part in place of the file's own.
    fn over(&self, file: &Markers) -> Markers;
}

/// The fence part of the markers, as the operator sends it: authoritative for both fields
/// (`None` lifts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceMarkers {
    pub fence: Option<String>,
    pub restore_primary: Option<String>,
}

impl DirectPart for FenceMarkers {
    fn of(file: &Markers) -> Self {
        Self { fence: file.fence.clone(), restore_primary: file.restore_primary.clone() }
    }

    fn over(&self, file: &Markers) -> Markers {
        Markers { fence: self.fence.clone(), restore_primary: self.restore_primary.clone(), ..file.clone() }
    }
}

/// The rebuild part: a token and its source, both set. Never "no rebuild": a rebuild is
/// done once per token, so withdrawing one has nothing to undo.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildMarkers {
    pub rebuild: Option<String>,
    pub rebuild_source: Option<String>,
}

impl RebuildMarkers {
    /// The rebuild `markers` ask for, when they ask for one.
    pub fn wanted(markers: &Markers) -> Option<Self> {
        let part = Self::of(markers);
        part.is_complete().then_some(part)
    }

    pub fn is_complete(&self) -> bool {
        self.rebuild.as_ref().is_some_and(|t| !t.is_empty())
            && self.rebuild_source.as_ref().is_some_and(|s| !s.is_empty())
    }
}

impl DirectPart for RebuildMarkers {
    fn of(file: &Markers) -> Self {
        Self { rebuild: file.rebuild.clone(), rebuild_source: file.rebuild_source.clone() }
    }

    fn over(&self, file: &Markers) -> Markers {
        Markers { rebuild: self.rebuild.clone(), rebuild_source: self.rebuild_source.clone(), ..file.clone() }
    }
}

/// Parses kubelet's rendering of `metadata.annotations`: `key="value"` lines, the value a Go
/// quoted string. Lines it cannot read are skipped: an unknown annotation must not stop a
/// database.
pub fn parse_annotations_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            Some((key.trim().to_owned(), unquote_go(value.trim())?))
        })
        .collect()
}

fn unquote_go(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_kubelet_writes() {
        let text = "kubernetes.io/config.seen=\"2025-10-07T12:00:00Z\"\n\
                    relevo.dev/fence=\"so-1\"\nrelevo.dev/rebuild=\"a\\\"b\"\nbroken line\n";
        let map = parse_annotations_file(text);
        assert_eq!(map.get(FENCE).map(String::as_str), Some("so-1"));
        assert_eq!(map.get(REBUILD).map(String::as_str), Some("a\"b"));
        let markers = Markers::from_annotations(&map);
        assert_eq!(markers.fence.as_deref(), Some("so-1"));
        assert_eq!(markers.restore_primary, None);
    }

    #[test]
    fn empty_values_are_no_marker() {
        let map = parse_annotations_file("relevo.dev/fence=\"\"\n");
        assert_eq!(Markers::from_annotations(&map), Markers::default());
    }

    #[test]
    fn only_owned_annotations_are_carried() {
        let all = BTreeMap::from([
            (FENCE.to_string(), "so".to_string()),
            ("other/x".to_string(), "y".to_string()),
            (REBUILD.to_string(), "t".to_string()),
        ]);
        assert_eq!(owned(Some(&all), &TEMPLATE_MARKERS).len(), 1);
        assert_eq!(owned(Some(&all), &POD_MARKERS).len(), 2);
        assert!(owned(None, &POD_MARKERS).is_empty());
    }
}
