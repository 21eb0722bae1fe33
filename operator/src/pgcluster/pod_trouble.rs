//! Why an instance's pod cannot run, in the words Kubernetes and PostgreSQL use: what
//! `kubectl describe pod` would show an expert, for the PgCluster's conditions. Pure: read
//! from the pod's status. A pod that is merely starting has no trouble.
//!
//! - Not scheduled: the scheduler's `PodScheduled` message (a StorageClass that does not
//!   exist, no node with room, a `Required` spread with too few nodes).
//! - A container that cannot start or keeps failing: its waiting reason and message
//!   (`CrashLoopBackOff`, `CreateContainerConfigError`, `ImagePullBackOff`, …) and, after a
//!   crash, PostgreSQL's own error lines from its last output, which the container's
//!   `terminationMessagePolicy: FallbackToLogsOnError` keeps in `lastState`.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Waiting reasons that will not clear by themselves.
const STUCK: [&str; 7] = [
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "RunContainerError",
];

/// Crashes after which a container that is not ready is in trouble even while it runs.
const CRASHES_BEFORE_TROUBLE: i32 = 2;

/// Longest text taken from a message, so a condition stays readable.
const MAX_TEXT: usize = 300;

/// Why `pod` cannot run, if it cannot.
pub fn trouble(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let unscheduled =
        status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(condition) = unscheduled {
        let why = condition.message.as_deref().or(condition.reason.as_deref()).unwrap_or("no reason given");
        return Some(format!("not scheduled: {}", shorten(why)));
    }
    let containers =
        status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    containers.filter_map(container_trouble).next()
}

fn container_trouble(container: &ContainerStatus) -> Option<String> {
    let crashed = container.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let waiting = container.state.as_ref().and_then(|s| s.waiting.as_ref());
    let reason = match waiting.and_then(|w| w.reason.as_deref()) {
        Some(reason) if STUCK.contains(&reason) => reason.to_owned(),
        // Between two crashes the container runs for a moment: without this the condition
        // would flap back to "being created" at each restart.
        _ if !container.ready
            && container.restart_count >= CRASHES_BEFORE_TROUBLE
            && crashed.is_some_and(|c| c.exit_code != 0) =>
        {
            format!("restarted {} times", container.restart_count)
        }
        _ => return None,
    };
    let mut text = format!("container {} {reason}", container.name);
    match crashed {
        Some(crashed) => {
            text.push_str(&format!(" (exit code {})", crashed.exit_code));
            if let Some(lines) = crashed.message.as_deref().and_then(error_lines) {
                text.push_str(&format!(": {lines}"));
            }
        }
        None => {
            if let Some(message) = waiting.and_then(|w| w.message.as_deref()).filter(|m| !m.is_empty()) {
                text.push_str(&format!(": {}", shorten(message)));
            }
        }
    }
    Some(text)
}

/// The error lines of a process' last output: PostgreSQL's FATAL or PANIC line and the line
/// before it that says why (`invalid value for parameter …`), or else the last line.
fn error_lines(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let is_error = |l: &str| ["FATAL:", "PANIC:", "ERROR:"].iter().any(|level| l.contains(level));
    let chosen: Vec<&str> = match lines.iter().position(|l| is_error(l)) {
        Some(at) => {
            let cause = at.checked_sub(1).map(|before| lines[before]).filter(|l| l.contains("LOG:"));
            cause.into_iter().chain(lines[at..].iter().copied().filter(|l| is_error(l)).take(2)).collect()
        }
        None => lines.last().copied().into_iter().collect(),
    };
    (!chosen.is_empty()).then(|| shorten(&chosen.join(" / ")))
}

fn shorten(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_TEXT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "demo-1-0"}, "status": status})).unwrap()
    }

    #[test]
    fn an_unscheduled_pod_says_what_the_scheduler_said() {
        let pending = pod(json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: storageclass.storage.k8s.io \"nope\" not found."
        }]}));
        assert_eq!(
            trouble(&pending).as_deref(),
            Some("not scheduled: 0/3 nodes are available: storageclass.storage.k8s.io \"nope\" not found.")
        );
    }

    #[test]
    fn a_crash_loop_shows_postgres_own_error_lines() {
        let log = "2026-12-07 19:00:01.000 UTC [7] LOG:  invalid value for parameter \"shared_buffers\": \"lots\"\n\
                   2026-12-07 19:00:01.000 UTC [7] FATAL:  configuration file \"/etc/relevo/postgresql.conf\" contains errors\n";
        let crashing = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "postgres", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 1, "message": log}}
        }]}));
        let text = trouble(&crashing).unwrap();
        assert!(text.starts_with("container postgres CrashLoopBackOff (exit code 1): "), "{text}");
        assert!(text.contains("invalid value for parameter \"shared_buffers\": \"lots\""), "{text}");
        assert!(text.contains("FATAL:  configuration file"), "{text}");
    }

    #[test]
    fn a_container_running_again_after_crashes_is_still_in_trouble() {
        let status = |restarts: i32| {
            pod(json!({"phase": "Running", "containerStatuses": [{
                "name": "postgres", "image": "x", "imageID": "", "ready": false, "restartCount": restarts,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "message": "x FATAL:  could not map memory\n"}}
            }]}))
        };
        assert_eq!(
            trouble(&status(2)).as_deref(),
            Some("container postgres restarted 2 times (exit code 1): x FATAL:  could not map memory")
        );
        assert_eq!(trouble(&status(1)), None, "one crash may be a one-off");
    }

    #[test]
    fn a_config_error_shows_its_message() {
        let stuck = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "postgres", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"demo-app\" not found"}}
        }]}));
        assert_eq!(
            trouble(&stuck).as_deref(),
            Some("container postgres CreateContainerConfigError: secret \"demo-app\" not found")
        );
    }

    #[test]
    fn a_pod_that_is_starting_or_running_has_no_trouble() {
        let creating =
            pod(json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "postgres", "image": "x", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(trouble(&creating), None);
        let running =
            pod(json!({"phase": "Running", "containerStatuses": [{"name": "postgres", "image": "x",
            "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}));
        assert_eq!(trouble(&running), None);
    }

    #[test]
    fn error_lines_fall_back_to_the_last_line_and_stay_short() {
        assert_eq!(error_lines("starting\nsomething broke\n").as_deref(), Some("something broke"));
        assert_eq!(error_lines("\n\n"), None);
        let long = "x".repeat(1000);
        assert_eq!(shorten(&long).chars().count(), MAX_TEXT + 1);
    }
}
