//! The BackupSchedule CRD refuses bad input at `kubectl apply`, each with a message on its
//! field, and accepts everything the operator can run: checked offline with the schema
//! stand-in of `support` (kube-cel); `tests/apiserver/` checks the same against a real
//! kube-apiserver.

mod support;

use kube::CustomResourceExt;
use relevo::backup::schedule::parse_cron;
use relevo::crd::BackupSchedule;
use relevo::crd::backup_schedule::{MAX_CYCLE_DAYS, TIME_ZONES, cron_regex};
use serde_json::{Value, json};
use support::{admit, schema_of};

fn with(spec: Value) -> Value {
    let mut full = json!({"cluster": "demo"});
    for (key, value) in spec.as_object().unwrap() {
        full[key] = value.clone();
    }
    json!({"apiVersion": "relevo.dev/v1alpha1", "kind": "BackupSchedule", "metadata": {"name": "s"}, "spec": full})
}

fn errors(spec: Value) -> Vec<String> {
    admit(&schema_of(&BackupSchedule::crd()), &with(spec), None)
}

/// The one error of `spec`, on `field`, containing `message`.
#[track_caller]
fn refused(spec: Value, field: &str, message: &str) {
    let errors = errors(spec.clone());
    assert!(
        errors.iter().any(|e| e.starts_with(field) && e.contains(message)),
        "{spec}: expected {field}: …{message}…, got {errors:?}"
    );
}

#[test]
fn a_cron_schedule_or_a_short_day_is_enough() {
    assert_eq!(errors(json!({"schedule": "0 2 * * *"})), Vec::<String>::new());
    assert_eq!(errors(json!({"dayLength": "2m"})), Vec::<String>::new());
    assert_eq!(
        errors(json!({"dayLength": "10s", "cycleStart": "2025-10-07T12:00:00Z"})),
        Vec::<String>::new()
    );
    assert_eq!(errors(json!({"schedule": "*/2 * * * *", "dayLength": "2m"})), Vec::<String>::new());
    assert_eq!(errors(json!({"schedule": "@daily", "dayLength": "48h"})), Vec::<String>::new());
    refused(
        json!({}),
        "spec",
        "schedule (a cron expression such as \"0 2 * * *\") is required when dayLength is 24h or more",
    );
    refused(json!({"dayLength": "24h"}), "spec", "is required when dayLength is 24h or more");
}

#[test]
fn bad_cron_expressions_are_refused_on_the_schedule_field() {
    for bad in [
        "61 2 * * *",
        "0 24 * * *",
        "0 2 32 * *",
        "0 2 * 13 *",
        "0 2 * * 8",
        "0 0 2 * * *",
        "0 2 * *",
        "every day",
        "0 2 * * MONDAY",
        "@midnight",
        "0 2,* * * *x",
    ] {
        refused(json!({"schedule": bad}), "spec.schedule", "schedule must be five cron fields");
    }
}

#[test]
fn the_schema_accepts_every_cron_expression_the_operator_runs() {
    let regex = regex::Regex::new(&cron_regex()).unwrap();
    let good = [
        "0 2 * * *",
        "0 1 * * *",
        "*/2 * * * *",
        "*/15 1-3 * * MON-FRI",
        "0,30 9-17/2 * * 1-5",
        "5 4 * * sun",
        "0 2 1 jan,jul *",
        "0 0 L * *",
        "0 0 15W * *",
        "0 0 ? * 5L",
        "0 0 * * FRI#2",
        "0 0 1-15/7 */3 0,7",
        "@daily",
        "@HOURLY",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        " 0 2 * * * ",
        "00 02 01 01 0",
    ];
    for expr in good {
        assert!(parse_cron(expr).is_ok(), "the operator runs {expr:?}");
        assert!(regex.is_match(expr), "the schema must accept {expr:?}, which the operator runs");
        assert_eq!(errors(json!({"schedule": expr})), Vec::<String>::new(), "{expr:?}");
    }
    for bad in ["61 2 * * *", "0 2 * *", "0 0 2 * * *", "0 2 * * MONDAY", "@midnight", "", "0 2 * * 8"] {
        assert!(parse_cron(bad).is_err(), "the operator refuses {bad:?}");
        assert!(!regex.is_match(bad), "so does the schema: {bad:?}");
    }
}

#[test]
fn time_zones_are_the_ones_the_operator_knows() {
    for zone in ["UTC", "Europe/Madrid", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "US/Eastern"] {
        assert_eq!(
            errors(json!({"schedule": "0 2 * * *", "timeZone": zone})),
            Vec::<String>::new(),
            "{zone}"
        );
        assert!(zone.parse::<chrono_tz::Tz>().is_ok());
    }
    for bad in ["Europe/Madird", "europe/madrid", "CEST", "Mars/Olympus", ""] {
        refused(json!({"schedule": "0 2 * * *", "timeZone": bad}), "spec.timeZone", "");
        assert!(bad.parse::<chrono_tz::Tz>().is_err(), "{bad}");
    }
    refused(
        json!({"schedule": "0 2 * * *", "timeZone": "Europe/Madird"}),
        "spec.timeZone",
        "timeZone must be an IANA time zone name such as UTC or Europe/Madrid",
    );
    assert!(TIME_ZONES.len() > 500, "the whole IANA database: {}", TIME_ZONES.len());
}

#[test]
fn day_lengths_are_at_least_ten_seconds_and_whole_days_from_24h() {
    for good in ["10s", "2m", "90s", "1h30m", "23h59m", "24h", "48h", "168h"] {
        let spec = json!({"schedule": "0 2 * * *", "dayLength": good});
        assert_eq!(errors(spec), Vec::<String>::new(), "{good}");
    }
    refused(json!({"dayLength": "5s"}), "spec.dayLength", "dayLength must be at least 10s");
    refused(
        json!({"schedule": "0 2 * * *", "dayLength": "36h"}),
        "spec.dayLength",
        "must be a whole number of days",
    );
    refused(
        json!({"schedule": "0 2 * * *", "dayLength": "24h30m"}),
        "spec.dayLength",
        "must be a whole number of days",
    );
    refused(json!({"dayLength": "2 minutes"}), "spec.dayLength", "should match");
    refused(json!({"dayLength": "-2m"}), "spec.dayLength", "should match");
}

#[test]
fn cycles_of_1_to_31_days_opening_with_a_full_backup() {
    let base = json!({"schedule": "0 2 * * *"});
    let cycle = |days: Value| {
        let mut spec = base.clone();
        spec["cycle"] = days;
        spec
    };
    assert_eq!(errors(cycle(json!([["full"]]))), Vec::<String>::new());
    let weekly = json!([["full"], ["incr"], ["incr"], ["incr"], ["incr"], ["incr"], ["diff"]]);
    assert_eq!(errors(cycle(weekly)), Vec::<String>::new());
    assert_eq!(errors(cycle(json!(vec![vec!["full"]; MAX_CYCLE_DAYS]))), Vec::<String>::new());
    refused(cycle(json!(vec![vec!["full"]; MAX_CYCLE_DAYS + 1])), "spec.cycle", "");
    refused(cycle(json!([])), "spec.cycle", "");
    refused(cycle(json!([["full"], [], ["incr"]])), "spec.cycle[1]", "");
    refused(cycle(json!([["full"], ["weekly"]])), "spec.cycle[1][0]", "Unsupported value");
    refused(cycle(json!([["incr"], ["full"]])), "spec.cycle", "the cycle must open with a full backup");
    refused(cycle(json!([["full", "incr", "diff", "incr"]])), "spec.cycle[0]", "");
}

#[test]
fn retention_and_cycle_start() {
    let base = |extra: Value| {
        let mut spec = json!({"schedule": "0 2 * * *"});
        for (key, value) in extra.as_object().unwrap() {
            spec[key] = value.clone();
        }
        spec
    };
    assert_eq!(
        errors(base(json!({"retention": {"full": 7}, "cycleStart": "2025-10-07T02:00:00+02:00"}))),
        Vec::<String>::new()
    );
    refused(base(json!({"retention": {"full": 0}})), "spec.retention.full", "");
    refused(base(json!({"cycleStart": "yesterday"})), "spec.cycleStart", "should match");
}

#[test]
fn the_sample_is_accepted_and_runs_the_users_cycle() {
    let text = include_str!("../../manifests/samples/backupschedule.yaml");
    let sample = support::yaml_to_json(text);
    assert_eq!(admit(&schema_of(&BackupSchedule::crd()), &sample, None), Vec::<String>::new());
    let schedule: BackupSchedule = serde_json::from_value(sample).unwrap();
    assert_eq!(schedule.spec.cycle, relevo::crd::backup_schedule::default_cycle());
    assert_eq!(schedule.spec.schedule.as_deref(), Some("0 1 * * *"));
}
