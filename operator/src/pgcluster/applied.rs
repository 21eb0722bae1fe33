//! What this process last applied to each child of a PgCluster, so that a reconcile skips the
//! server-side apply that would change nothing: the same desired object over a child whose
//! resourceVersion is still the one our own apply left. Any other writer (a user's edit, a
//! controller's status, a delete and re-create) changes the resourceVersion, so drift is
//! still corrected at the next reconcile; only the write, not the read, is saved.
//!
//! Process memory, like the failover clock: an operator restart applies everything once.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use serde::Serialize;

/// The memo of the one PgCluster controller of this process.
pub static APPLIED: AppliedMemo = AppliedMemo(Mutex::new(BTreeMap::new()));

/// One child, by its cluster and its kind and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChildKey {
    pub namespace: String,
    pub cluster: String,
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Applied {
    digest: u64,
    resource_version: String,
}

pub struct AppliedMemo(Mutex<BTreeMap<ChildKey, Applied>>);

impl AppliedMemo {
    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<ChildKey, Applied>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether applying the object of `digest` over the child as it is now (its
    /// resourceVersion, `None` when it does not exist) would write nothing new.
    pub fn unchanged(&self, key: &ChildKey, digest: u64, current: Option<&str>) -> bool {
        let entries = self.entries();
        match (entries.get(key), current) {
            (Some(applied), Some(current)) => applied.digest == digest && applied.resource_version == current,
            _ => false,
        }
    }

    /// Our apply of `digest` left the child at `resource_version`.
    pub fn record(&self, key: ChildKey, digest: u64, resource_version: Option<String>) {
        let mut entries = self.entries();
        match resource_version {
            Some(resource_version) => {
                entries.insert(key, Applied { digest, resource_version });
            }
            None => {
                entries.remove(&key);
            }
        }
    }

    /// A failed or refused apply: the next reconcile writes again.
    pub fn invalidate(&self, key: &ChildKey) {
        self.entries().remove(key);
    }

    /// Forgets a deleted cluster's children.
    pub fn forget_cluster(&self, namespace: &str, cluster: &str) {
        self.entries().retain(|key, _| key.namespace != namespace || key.cluster != cluster);
    }
}

/// A digest of the object as it would be sent. serde_json writes struct fields in declaration
/// order and k8s-openapi's maps are ordered, so the same object always gives the same bytes.
pub fn digest<T: Serialize>(object: &T) -> u64 {
    let bytes = serde_json::to_vec(object).unwrap_or_default();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn key(cluster: &str, name: &str) -> ChildKey {
        ChildKey {
            namespace: "ns".into(),
            cluster: cluster.into(),
            kind: "ConfigMap".into(),
            name: name.into(),
        }
    }

    fn config_map(value: &str) -> ConfigMap {
        ConfigMap { data: Some([("k".to_string(), value.to_string())].into()), ..ConfigMap::default() }
    }

    #[test]
    fn the_same_object_over_the_child_our_apply_left_is_skipped() {
        let memo = AppliedMemo(Mutex::new(BTreeMap::new()));
        let wanted = digest(&config_map("a"));
        assert!(!memo.unchanged(&key("demo", "demo-config"), wanted, Some("7")), "never applied");
        memo.record(key("demo", "demo-config"), wanted, Some("7".into()));
        assert!(memo.unchanged(&key("demo", "demo-config"), wanted, Some("7")));
        assert_eq!(digest(&config_map("a")), wanted, "the digest is stable");
    }

    #[test]
    fn another_writer_a_new_object_or_a_missing_child_is_applied_again() {
        let memo = AppliedMemo(Mutex::new(BTreeMap::new()));
        let wanted = digest(&config_map("a"));
        memo.record(key("demo", "demo-config"), wanted, Some("7".into()));
        assert!(!memo.unchanged(&key("demo", "demo-config"), wanted, Some("8")), "someone else wrote it");
        assert!(!memo.unchanged(&key("demo", "demo-config"), wanted, None), "deleted since");
        assert!(
            !memo.unchanged(&key("demo", "demo-config"), digest(&config_map("b")), Some("7")),
            "spec changed"
        );
        memo.invalidate(&key("demo", "demo-config"));
        assert!(!memo.unchanged(&key("demo", "demo-config"), wanted, Some("7")), "a failed apply");
    }

    #[test]
    fn a_deleted_cluster_is_forgotten_and_no_other() {
        let memo = AppliedMemo(Mutex::new(BTreeMap::new()));
        memo.record(key("demo", "demo-config"), 1, Some("7".into()));
        memo.record(key("demo-2", "demo-2-config"), 1, Some("7".into()));
        memo.forget_cluster("ns", "demo");
        assert_eq!(memo.entries().len(), 1);
        assert!(memo.unchanged(&key("demo-2", "demo-2-config"), 1, Some("7")));
        memo.record(key("demo-2", "demo-2-config"), 1, None);
        assert!(memo.entries().is_empty(), "an apply that returned no resourceVersion is not remembered");
    }
}
