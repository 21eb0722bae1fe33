use super::*;
use crate::switchover::model::Phase;

fn who<'a>(mode: Mode, state: &'a SwitchoverState) -> Requester<'a> {
    Requester { name: "so-1", namespace: "db", mode, state }
}

fn state(phase: Phase) -> SwitchoverState {
    SwitchoverState { phase, from: Some("pg-1".into()), to: Some("pg-2".into()), ..Default::default() }
}

fn value(changes: &[(&str, Option<String>)], key: &str) -> Option<Option<String>> {
    changes.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
}

#[test]
fn fence_sets_the_marker_and_forgets_any_restore() {
    let s = state(Phase::Fencing);
    let (instance, changes) =
        pod_markers_for(&Step::Fence { instance: "pg-1".into() }, &who(Mode::Planned, &s)).unwrap();
    assert_eq!(instance, "pg-1");
    assert_eq!(value(&changes, markers::FENCE), Some(Some("so-1".into())));
    assert_eq!(value(&changes, markers::RESTORE_PRIMARY), Some(None));
}

#[test]
fn only_an_unpromoted_planned_switchover_restores_the_old_primary() {
    let unfence = Step::Unfence { instance: "pg-1".into() };
    let restore = |mode, phase| {
        let s = state(phase);
        let (_, changes) = pod_markers_for(&unfence, &who(mode, &s)).unwrap();
        assert_eq!(value(&changes, markers::FENCE), Some(None));
        value(&changes, markers::RESTORE_PRIMARY).unwrap()
    };
    assert_eq!(restore(Mode::Planned, Phase::Fencing), Some("so-1".into()));
    assert_eq!(restore(Mode::Planned, Phase::CatchingUp), Some("so-1".into()));
    assert_eq!(restore(Mode::Planned, Phase::Promoting), None, "promotion may have happened");
    assert_eq!(restore(Mode::Planned, Phase::Rebuilding), None);
    assert_eq!(restore(Mode::Failover, Phase::Fencing), None, "a lost primary is never restored");
    let s = state(Phase::Fencing);
    let (_, other) =
        pod_markers_for(&Step::Unfence { instance: "pg-3".into() }, &who(Mode::Planned, &s)).unwrap();
    assert_eq!(value(&other, markers::RESTORE_PRIMARY), Some(None), "not the old primary");
}

#[test]
fn rebuild_marks_pod_and_template_and_scales_back_up() {
    let s = state(Phase::Rebuilding);
    let step = Step::Rebuild { instance: "pg-1".into(), source: "pg-2".into(), token: "so-1".into() };
    let (_, changes) = pod_markers_for(&step, &who(Mode::Failover, &s)).unwrap();
    assert_eq!(value(&changes, markers::REBUILD), Some(Some("so-1".into())));
    assert_eq!(value(&changes, markers::REBUILD_SOURCE), Some(Some("pg-2".into())));
    assert_eq!(value(&changes, markers::FENCE), Some(None));
    let scaled = StsState { replicas: Some((0, "so-1".into())), ..Default::default() };
    let (_, next) = sts_change_for(&step, &scaled, &who(Mode::Failover, &s)).unwrap();
    assert_eq!(next.replicas, None);
    assert_eq!(next.template_markers.get(markers::REBUILD).map(String::as_str), Some("so-1"));
    assert_eq!(sts_change_for(&step, &next, &who(Mode::Failover, &s)), None, "idempotent");
}

#[test]
fn scale_to_zero_records_who_scaled() {
    let s = state(Phase::Fencing);
    let step = Step::ScaleToZero { instance: "pg-1".into() };
    let (_, next) = sts_change_for(&step, &StsState::default(), &who(Mode::Failover, &s)).unwrap();
    assert_eq!(next.replicas, Some((0, "so-1".into())));
    assert!(pod_markers_for(&step, &who(Mode::Failover, &s)).is_none());
    assert!(sts_change_for(&Step::Complete, &next, &who(Mode::Failover, &s)).is_none());
}

#[test]
fn the_statefulset_patch_carries_only_the_switchover_part() {
    let fenced = StsState {
        replicas: Some((0, "so-1".into())),
        template_markers: BTreeMap::from([(markers::REBUILD.to_string(), "t1".to_string())]),
        resource_version: Some("42".into()),
    };
    let patch = statefulset_patch(&fenced, "42");
    assert_eq!(patch["metadata"]["resourceVersion"], "42", "a stale read fails instead of undoing");
    assert_eq!(patch["metadata"]["annotations"][markers::SCALED_BY], "so-1");
    assert_eq!(patch["spec"]["replicas"], 0);
    let template = &patch["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(template[markers::REBUILD], "t1");
    assert!(template[markers::REBUILD_SOURCE].is_null(), "an absent marker is removed");
    assert_eq!(patch["spec"].as_object().map(|spec| spec.len()), Some(2), "nothing else of the spec");

    let normal = statefulset_patch(&StsState::default(), "43");
    assert_eq!(normal["spec"]["replicas"], 1);
    assert!(normal["metadata"]["annotations"][markers::SCALED_BY].is_null());
}
