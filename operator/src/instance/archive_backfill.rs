//! After a promotion, the WAL of earlier timelines that the repository may lack.
//!
//! A standby does not archive what it streams (`archive_mode = on`): that is the primary's
//! job. A primary whose repository could not take WAL when it was fenced (see
//! [`super::shutdown`]) leaves its last segments unarchived, and the new primary, which holds
//! the same segments, never archives them either: the archive would have a hole that no
//! point-in-time recovery across it survives. So once promoted, this instance pushes the
//! complete segments of earlier timelines still in its pg_wal. pgBackRest accepts a segment
//! it already holds with the same checksum, so pushing one twice is harmless.

use std::path::Path;
use std::time::Duration;

use super::tools::Tools;
use crate::pgbackrest::command::Pgbackrest;

/// At most this many segments (the newest), so a large pg_wal cannot keep it busy for long.
pub const MAX_SEGMENTS: usize = 256;
/// One push, including the connection to the repo host.
const PUSH_TIMEOUT: Duration = Duration::from_secs(90);
/// The pauses before each retry of a failed push: the repository is often briefly
/// unavailable around a promotion (a new cluster's repo host holds its archive lock while it
/// creates the stanza), so a failure is retried for about two minutes before giving up.
pub const RETRY_PAUSES: [Duration; 7] = [
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(30),
    Duration::from_secs(30),
    Duration::from_secs(30),
];

/// The timeline of a WAL segment file name (24 hex digits) or of a `.history` file.
fn timeline_of(name: &str) -> Option<u32> {
    let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    let tli = match name.strip_suffix(".history") {
        Some(tli) if tli.len() == 8 && hex(tli) => tli,
        Some(_) => return None,
        None if name.len() == 24 && hex(name) => &name[..8],
        None => return None,
    };
    u32::from_str_radix(tli, 16).ok()
}

/// The complete segments of timelines before the newest one seen, oldest first; at most
/// [`MAX_SEGMENTS`], the newest of them. A `.partial` file is left alone: PostgreSQL archives
/// the one it renamed at promotion itself.
pub fn earlier_timeline_segments(names: &[String]) -> Vec<String> {
    let Some(current) = names.iter().filter_map(|n| timeline_of(n)).max() else { return Vec::new() };
    let mut earlier: Vec<String> = names
        .iter()
        .filter(|n| n.len() == 24 && timeline_of(n).is_some_and(|t| t < current))
        .cloned()
        .collect();
    earlier.sort();
    let skip = earlier.len().saturating_sub(MAX_SEGMENTS);
    earlier.split_off(skip)
}

/// What the backfill did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub pushed: usize,
    pub candidates: usize,
    /// The segment that could not be pushed and why; the backfill stops there.
    pub failed: Option<(String, String)>,
}

impl Summary {
    pub fn describe(&self) -> String {
        match &self.failed {
            None => format!(
                "after promotion: {} WAL segment(s) of earlier timelines are in the repository",
                self.pushed
            ),
            Some((segment, why)) => format!(
                "after promotion: pushing {segment} to the repository failed ({why}); {} of {} \
                 earlier-timeline segments may be missing from the archive",
                self.candidates - self.pushed,
                self.candidates
            ),
        }
    }
}

/// Pushes [`earlier_timeline_segments`] of `pgdata`'s pg_wal with `pgbackrest`.
pub async fn push_earlier_timelines(tools: &Tools, pgbackrest: &Pgbackrest, pgdata: &Path) -> Summary {
    let wal = pgdata.join("pg_wal");
    let names: Vec<String> = std::fs::read_dir(&wal)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .collect();
    let segments = earlier_timeline_segments(&names);
    let mut summary = Summary { pushed: 0, candidates: segments.len(), failed: None };
    for segment in segments {
        let path = wal.join(&segment);
        let mut failure = push_one(tools, pgbackrest, &path).await.err();
        for pause in RETRY_PAUSES {
            // A segment recycled meanwhile cannot be pushed any more.
            if failure.is_none() || !path.exists() {
                break;
            }
            tokio::time::sleep(pause).await;
            failure = push_one(tools, pgbackrest, &path).await.err();
        }
        if let Some(why) = failure {
            summary.failed = Some((segment, why));
            break;
        }
        summary.pushed += 1;
    }
    summary
}

/// One `archive-push`; the error says why it failed.
async fn push_one(tools: &Tools, pgbackrest: &Pgbackrest, path: &Path) -> Result<(), String> {
    let argv = pgbackrest.archive_push_now(&path.to_string_lossy());
    let mut command = tools.command(&argv[0]);
    command
        .args(&argv[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    match tokio::time::timeout(PUSH_TIMEOUT, command.output()).await {
        Err(_) => Err(format!("no answer within {}s", PUSH_TIMEOUT.as_secs())),
        Ok(Err(error)) => Err(format!("could not run pgbackrest: {error}")),
        Ok(Ok(out)) if !out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(format!("{}: {}", out.status, stderr.lines().last().unwrap_or("").trim()))
        }
        Ok(Ok(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_complete_segments_of_earlier_timelines() {
        let wal = names(&[
            "000000010000000000000003",
            "000000010000000000000001",
            "000000010000000000000004.partial",
            "00000002.history",
            "000000020000000000000004",
            "archive_status",
            "00000001000000000000000X",
        ]);
        assert_eq!(earlier_timeline_segments(&wal), ["000000010000000000000001", "000000010000000000000003"]);
    }

    #[test]
    fn the_history_file_alone_names_the_new_timeline() {
        // Right after promotion, before the first segment of the new timeline is complete.
        let wal = names(&["000000010000000000000002", "00000002.history"]);
        assert_eq!(earlier_timeline_segments(&wal), ["000000010000000000000002"]);
    }

    #[test]
    fn nothing_on_a_single_timeline_or_an_empty_pg_wal() {
        assert!(earlier_timeline_segments(&names(&["000000010000000000000002"])).is_empty());
        assert!(earlier_timeline_segments(&[]).is_empty());
    }

    #[test]
    fn bounded_to_the_newest() {
        let wal: Vec<String> = (0..MAX_SEGMENTS + 10)
            .map(|i| format!("00000001{:016X}", i))
            .chain(["00000002.history".to_string()])
            .collect();
        let picked = earlier_timeline_segments(&wal);
        assert_eq!(picked.len(), MAX_SEGMENTS);
        assert_eq!(picked[0], format!("00000001{:016X}", 10));
    }

    #[test]
    fn a_failure_says_what_may_be_missing() {
        let s = Summary {
            pushed: 1,
            candidates: 3,
            failed: Some(("00000001000000000000000A".into(), "exit 1".into())),
        };
        assert!(s.describe().contains("2 of 3 earlier-timeline segments may be missing"), "{}", s.describe());
    }
}
