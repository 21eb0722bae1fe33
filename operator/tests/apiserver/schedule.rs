//! BackupSchedules: refused on their field by the real apiserver, and a short-day cycle.

use super::*;

/// The real apiserver refuses bad BackupSchedules with a message on the field (the CEL rules
/// compile and mean what the offline tests say), and accepts a good one.
#[tokio::test]
async fn a_bad_backup_schedule_is_refused_on_its_field() {
    use kube::api::{ApiResource, DynamicObject};
    use relevo::crd::BackupSchedule;

    setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let ns = &namespace(&admin, "it-schedule-input").await;
    let resource = ApiResource::erase::<BackupSchedule>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &resource);
    let object = |name: &str, spec: serde_json::Value| -> DynamicObject {
        let mut full = serde_json::json!({"cluster": "demo"});
        for (key, value) in spec.as_object().unwrap() {
            full[key] = value.clone();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "relevo.dev/v1alpha1", "kind": "BackupSchedule",
            "metadata": {"name": name}, "spec": full,
        }))
        .unwrap()
    };
    let cases = [
        (serde_json::json!({"schedule": "61 2 * * *"}), "spec.schedule", "schedule must be five cron fields"),
        (serde_json::json!({}), "spec.schedule", "is required when dayLength is 24h or more"),
        (
            serde_json::json!({"schedule": "0 2 * * *", "timeZone": "Europe/Madird"}),
            "spec.timeZone",
            "IANA time zone",
        ),
        (serde_json::json!({"dayLength": "5s"}), "spec.dayLength", "dayLength must be at least 10s"),
        (
            serde_json::json!({"schedule": "0 2 * * *", "dayLength": "36h"}),
            "spec.dayLength",
            "whole number of days",
        ),
        (serde_json::json!({"dayLength": "2m", "cycle": [["full"], []]}), "spec.cycle[1]", "at least 1"),
        (
            serde_json::json!({"dayLength": "2m", "cycle": [["full"], ["weekly"]]}),
            "spec.cycle[1][0]",
            "Unsupported value",
        ),
        (
            serde_json::json!({"dayLength": "2m", "cycle": [["incr"], ["full"]]}),
            "spec.cycle",
            "must open with a full backup",
        ),
    ];
    for (i, (spec, field, message)) in cases.into_iter().enumerate() {
        let refused = api.create(&PostParams::default(), &object(&format!("bad-{i}"), spec.clone())).await;
        let Err(kube::Error::Api(status)) = refused else { panic!("{spec} was accepted: {refused:?}") };
        assert_eq!(status.code, 422, "{spec}: {status:?}");
        assert!(
            status.message.contains(field) && status.message.contains(message),
            "{spec}: expected {field} and {message:?} in {:?}",
            status.message
        );
    }
    let weekly = serde_json::json!({
        "schedule": "0 2 * * SUN-SAT", "timeZone": "America/Argentina/Buenos_Aires", "dayLength": "48h",
        "cycle": [["full"], ["incr"], ["incr"], ["incr"], ["incr"], ["incr"], ["incr", "diff"]],
    });
    api.create(&PostParams::default(), &object("good", weekly)).await.expect("a valid 7-day schedule");
}

/// A BackupSchedule with 20-second days, reconciled as the operator's ServiceAccount: the
/// run due now is day 3 (its cycleStart is 2 days and 10 s ago), so it creates day 3's incr,
/// then its diff only once the incr has finished, with deterministic names, cycle days and
/// the cluster as owner; then day 4's incr at the next slot; suspended, nothing more.
#[tokio::test]
async fn a_short_day_schedule_creates_each_day_s_backups_in_order() {
    use chrono::{SubsecRound, TimeDelta, Utc};
    use relevo::backup::schedule_controller::reconcile as reconcile_schedule;
    use relevo::crd::backup_schedule::RunResult;
    use relevo::crd::{Backup, BackupSchedule, BackupType};

    let (admin, ns, ctx) = operator_bed("it-schedule").await;
    let ns = &ns;
    let cluster = create_cluster(&admin, ns, "delta", serde_json::json!({})).await;

    let start = Utc::now().trunc_subsecs(0) - TimeDelta::seconds(50);
    let slot = start + TimeDelta::seconds(40);
    let stamp = |t: chrono::DateTime<Utc>| t.format("%Y%m%d%H%M%S").to_string();
    let schedules: Api<BackupSchedule> = Api::namespaced(admin.clone(), ns);
    let schedule: BackupSchedule = serde_json::from_value(serde_json::json!({
        "apiVersion": "relevo.dev/v1alpha1", "kind": "BackupSchedule",
        "metadata": {"name": "nightly"},
        "spec": {"cluster": "delta", "dayLength": "20s", "cycleStart": start.to_rfc3339()},
    }))
    .unwrap();
    let schedule = Arc::new(schedules.create(&PostParams::default(), &schedule).await.expect("schedule"));
    let backups: Api<Backup> = Api::namespaced(admin.clone(), ns);
    let all_backups = || {
        let backups = backups.clone();
        async move {
            let mut names: Vec<(String, BackupType, Option<i32>)> = backups
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|b| (b.name_any(), b.spec.backup_type, b.spec.cycle_day))
                .collect();
            names.sort();
            names
        }
    };
    let complete = |name: String| {
        let backups = backups.clone();
        async move {
            let done = serde_json::json!({"status": {"phase": "Completed"}});
            backups.patch_status(&name, &PatchParams::default(), &Patch::Merge(&done)).await.unwrap();
        }
    };
    let incr_3 = format!("nightly-{}-1", stamp(slot));
    let diff_3 = format!("nightly-{}-2", stamp(slot));

    reconcile_schedule(schedule.clone(), ctx.clone()).await.expect("first reconcile");
    reconcile_schedule(schedule.clone(), ctx.clone()).await.expect("again, while the incr runs");
    assert_eq!(all_backups().await, vec![(incr_3.clone(), BackupType::Incr, Some(3))]);
    let incr = backups.get(&incr_3).await.unwrap();
    assert_eq!(incr.spec.schedule.as_deref(), Some("nightly"));
    let owner = &incr.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("PgCluster", cluster.metadata.uid.as_deref().unwrap())
    );
    assert!(managed_by_relevo(&incr), "created under the relevo field manager");
    let status = schedules.get("nightly").await.unwrap().status.unwrap();
    assert_eq!(status.last_run_time, Some(slot.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)));
    assert_eq!((status.current_cycle_day, status.last_result), (Some(3), Some(RunResult::Running)));
    assert_eq!(status.last_run_backups, vec![incr_3.clone()]);

    complete(incr_3.clone()).await;
    reconcile_schedule(schedule.clone(), ctx.clone()).await.expect("reconcile after the incr");
    assert_eq!(
        all_backups().await,
        vec![(incr_3.clone(), BackupType::Incr, Some(3)), (diff_3.clone(), BackupType::Diff, Some(3))]
    );
    complete(diff_3.clone()).await;
    reconcile_schedule(schedule.clone(), ctx.clone()).await.expect("reconcile after the diff");
    let status = schedules.get("nightly").await.unwrap().status.unwrap();
    let next = slot + TimeDelta::seconds(20);
    assert_eq!(status.last_result, Some(RunResult::Completed));
    assert_eq!(status.next_run_time, Some(next.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)));
    assert_eq!(status.next_cycle_day, Some(4));
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Scheduled"));

    // The next slot: day 4's incr.
    let wait = (next - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
    tokio::time::sleep(wait).await;
    reconcile_schedule(schedule.clone(), ctx.clone()).await.expect("reconcile at the next slot");
    let day_4 = format!("nightly-{}-1", stamp(next));
    assert_eq!(all_backups().await.last(), Some(&(day_4, BackupType::Incr, Some(4))));

    // Suspended: the Ready condition says so and nothing more is created.
    let suspend = serde_json::json!({"spec": {"suspend": true}});
    schedules.patch("nightly", &PatchParams::default(), &Patch::Merge(&suspend)).await.unwrap();
    let suspended = Arc::new(schedules.get("nightly").await.unwrap());
    reconcile_schedule(suspended.clone(), ctx.clone()).await.expect("reconcile suspended");
    let status = schedules.get("nightly").await.unwrap().status.unwrap();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Suspended"));
    assert_eq!(all_backups().await.len(), 3, "day 3: incr, diff; day 4: incr");
}
