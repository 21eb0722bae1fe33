use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::switchover::Lsn;

fn pod(instance: &str, role: Option<&str>, annotations: &[(&str, &str)]) -> Pod {
    let mut labels = BTreeMap::from([(names::LABEL_PG_INSTANCE.to_string(), instance.to_string())]);
    if let Some(role) = role {
        labels.insert(names::LABEL_ROLE.into(), role.into());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(names::pod(instance)),
            labels: Some(labels),
            annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    }
}

fn sts(instance: &str, replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta { name: Some(instance.into()), ..ObjectMeta::default() },
        spec: Some(StatefulSetSpec { replicas: Some(replicas), ..StatefulSetSpec::default() }),
        ..StatefulSet::default()
    }
}

#[test]
fn host_of_a_conninfo() {
    assert_eq!(conninfo_host("host=demo-rw port=5432 user=x").as_deref(), Some("demo-rw"));
    assert_eq!(conninfo_host("user=x host='demo-2-0.demo' port=5432").as_deref(), Some("demo-2-0.demo"));
    assert_eq!(conninfo_host("user='a b' host=h").as_deref(), Some("h"));
    assert_eq!(conninfo_host(""), None);
    assert_eq!(conninfo_host("host=''"), None);
}

#[test]
fn rw_means_whoever_carries_the_primary_label() {
    let pods = [pod("demo-1", Some("standby"), &[]), pod("demo-2", Some("primary"), &[])];
    assert_eq!(upstream_of("demo", "host=demo-rw port=5432", &pods).as_deref(), Some("demo-2"));
    assert_eq!(upstream_of("demo", "host=demo-1-0.demo.db.svc", &pods).as_deref(), Some("demo-1"));
    assert_eq!(upstream_of("demo", "", &pods), None, "a fenced instance has no upstream");
    assert_eq!(upstream_of("demo", "host=elsewhere", &pods), None);
}

#[test]
fn view_combines_objects_markers_and_sql() {
    let pods = [
        pod("demo-1", Some("primary"), &[(markers::FENCE, "so-1")]),
        pod("demo-2", Some("standby"), &[(markers::REBUILD, "so-0")]),
    ];
    let answers = BTreeMap::from([
        (
            "demo-1".to_string(),
            Probe {
                in_recovery: false,
                flush_lsn: Some(Lsn(100)),
                timeline: Some(1),
                streaming_standbys: vec!["demo-2".into()],
                ..Probe::default()
            },
        ),
        (
            "demo-2".to_string(),
            Probe {
                in_recovery: true,
                replay_lsn: Some(Lsn(90)),
                primary_conninfo: "host=demo-rw".into(),
                ..Probe::default()
            },
        ),
    ]);
    let one = instance_view("demo", &sts("demo-1", 1), Some(&pods[0]), &pods, &answers);
    assert!(one.is_primary() && one.fence_marker);
    assert_eq!(one.current_lsn, Some(Lsn(100)));
    assert_eq!(one.role_label, Some(Role::Primary));
    let mut rebuilt = sts("demo-2", 1);
    rebuilt.spec.as_mut().unwrap().template.metadata = Some(ObjectMeta {
        annotations: Some(BTreeMap::from([(markers::REBUILD.into(), "so-0".into())])),
        ..ObjectMeta::default()
    });
    let two = instance_view("demo", &rebuilt, Some(&pods[1]), &pods, &answers);
    assert!(two.is_standby() && !two.fence_marker);
    assert_eq!(two.streams_from.as_deref(), Some("demo-1"));
    assert_eq!(two.upstream.as_deref(), Some("demo-1"));
    assert_eq!(two.rebuild_token.as_deref(), Some("so-0"));
    let half_written = instance_view("demo", &sts("demo-2", 0), Some(&pods[1]), &pods, &answers);
    assert_eq!(half_written.rebuild_token, None, "the StatefulSet write failed: the rebuild is asked again");
    assert_eq!(two.current_lsn, None, "a standby has no insert position");

    let mut gone = sts("demo-3", 0);
    gone.spec.as_mut().unwrap().template.metadata = Some(ObjectMeta {
        annotations: Some(BTreeMap::from([(markers::REBUILD.into(), "so-2".into())])),
        ..ObjectMeta::default()
    });
    let three = instance_view("demo", &gone, None, &pods, &answers);
    assert!(three.scaled_away() && !three.reachable);
    assert_eq!(three.rebuild_token.as_deref(), Some("so-2"), "the next pod's marker");
}
