//! Which Backup status changes deserve an Event, and its text: pure, next to the machine
//! whose transitions they report ([`super::persist`] publishes them).

use kube::runtime::events::EventType;

use crate::crd::{Backup, BackupPhase, BackupStatus};

/// Events notes are limited to 1 kB by the API.
const MAX_NOTE_BYTES: usize = 1000;

/// The Event of a status change, if it is a transition worth one: a phase change, the Redis
/// record written, or the first failed attempt to write it. Pure; notes never contain
/// secrets (they name instances, labels, Jobs and errors of pgBackRest and Redis).
pub fn transition_note(
    backup: &Backup,
    before: &BackupStatus,
    after: &BackupStatus,
) -> Option<(EventType, &'static str, String)> {
    let kind = backup.spec.backup_type.as_pgbackrest();
    let job = after.job.as_deref().unwrap_or("?");
    let primary = after.primary.as_deref().unwrap_or("?");
    let event = if before.phase != after.phase {
        match after.phase? {
            BackupPhase::Pending => {
                (EventType::Normal, "Pending", after.message.clone().unwrap_or_else(|| "queued".into()))
            }
            BackupPhase::Running => (
                EventType::Normal,
                "Started",
                format!("{kind} backup of primary {primary} running in Job {job}"),
            ),
            BackupPhase::Completed => {
                let label = after.label.as_deref().unwrap_or("?");
                let size = after.size.as_deref().unwrap_or("?");
                (EventType::Normal, "Completed", format!("{label} ({size}) from primary {primary}"))
            }
            BackupPhase::Failed => (EventType::Warning, "Failed", after.error.clone().unwrap_or_default()),
            BackupPhase::Expired => {
                (EventType::Normal, "Expired", "removed from the repository by retention".into())
            }
        }
    } else if after.redis_recorded && !before.redis_recorded {
        let key = after.redis_key.as_deref().unwrap_or("?");
        (EventType::Normal, "Recorded", format!("recorded in Redis as {key}"))
    } else if after.redis_attempts == 1 && before.redis_attempts == 0 {
        (EventType::Warning, "RedisUnavailable", after.message.clone().unwrap_or_default())
    } else {
        return None;
    };
    let (type_, reason, note) = event;
    Some((type_, reason, tail_within(&note, MAX_NOTE_BYTES)))
}

/// `text` cut from the front to at most `max` bytes (pgBackRest's reason is at the end).
fn tail_within(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - (max - '…'.len_utf8());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::machine;

    fn backup() -> Backup {
        serde_saphyr::from_str(
            "apiVersion: relevo.dev/v1alpha1\nkind: Backup\nmetadata: {name: pg-1, namespace: db}\n\
             spec: {cluster: pg, type: diff}\n",
        )
        .unwrap()
    }

    fn status(phase: Option<BackupPhase>) -> BackupStatus {
        BackupStatus {
            phase,
            job: Some("pg-1".into()),
            primary: Some("pg-2".into()),
            label: Some("20251007-120000F_20251009-120003D".into()),
            size: Some("24.1MiB".into()),
            ..BackupStatus::default()
        }
    }

    #[test]
    fn each_phase_change_has_one_event() {
        let running = status(Some(BackupPhase::Running));
        let (type_, reason, note) =
            transition_note(&backup(), &status(Some(BackupPhase::Pending)), &running).unwrap();
        assert_eq!((type_, reason), (EventType::Normal, "Started"));
        assert_eq!(note, "diff backup of primary pg-2 running in Job pg-1");
        let completed = status(Some(BackupPhase::Completed));
        let (_, reason, note) = transition_note(&backup(), &running, &completed).unwrap();
        assert_eq!(
            (reason, note.as_str()),
            ("Completed", "20251007-120000F_20251009-120003D (24.1MiB) from primary pg-2")
        );
        assert_eq!(transition_note(&backup(), &running, &running), None, "no event without a transition");
    }

    #[test]
    fn failures_are_warnings_with_their_reason_within_the_note_limit() {
        let mut failed = status(Some(BackupPhase::Failed));
        failed.error = Some(format!("{}ERROR: [056]: the reason", "x".repeat(5000)));
        let (type_, reason, note) =
            transition_note(&backup(), &status(Some(BackupPhase::Running)), &failed).unwrap();
        assert_eq!((type_, reason), (EventType::Warning, "Failed"));
        assert!(note.len() <= MAX_NOTE_BYTES && note.ends_with("the reason"), "{note}");
    }

    #[test]
    fn redis_outcomes_have_events_once() {
        let completed = status(Some(BackupPhase::Completed));
        let (failing, _) = machine::record_failed(completed.clone(), "Connection refused");
        let (type_, reason, _) = transition_note(&backup(), &completed, &failing).unwrap();
        assert_eq!((type_, reason), (EventType::Warning, "RedisUnavailable"));
        let (still_failing, _) = machine::record_failed(failing.clone(), "Connection refused");
        assert_eq!(transition_note(&backup(), &failing, &still_failing), None, "not on every retry");
        let recorded = machine::recorded(still_failing.clone(), "backup:2025-10-09_12-00-03");
        let (_, reason, note) = transition_note(&backup(), &still_failing, &recorded).unwrap();
        assert_eq!((reason, note.as_str()), ("Recorded", "recorded in Redis as backup:2025-10-09_12-00-03"));
    }
}
