//! The rebuild planner: which steps turn a data directory into a standby of a new primary.
//!
//! Pure, so every combination of "what state is this data directory in" is a unit test. The
//! order matters and encodes PostgreSQL's rules:
//! - pg_rewind only works on a cleanly shut-down cluster, so an instance that crashed (a lost
//!   primary, typically) is first taken through crash recovery in single-user mode. pg_rewind
//!   15 would do this itself, but doing it as our own step lets a failure name its real cause;
//! - pg_rewind is tried whenever the directory holds a cluster: when nothing diverged it says
//!   "no rewind required" and exits in milliseconds, so there is no point guessing;
//! - a pg_basebackup replaces everything when there is no usable cluster, or when a rewind
//!   already failed (different system, missing WAL, a rewind interrupted half-way);
//! - the standby configuration is always written last, by us, so there is exactly one writer
//!   of `primary_conninfo` whatever path was taken.

/// `Database cluster state` as printed by pg_controldata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterState {
    Starting,
    ShutDown,
    ShutDownInRecovery,
    ShuttingDown,
    InCrashRecovery,
    InArchiveRecovery,
    InProduction,
    Other(String),
}

impl ClusterState {
    pub fn parse(text: &str) -> ClusterState {
        match text.trim() {
            "starting up" => ClusterState::Starting,
            "shut down" => ClusterState::ShutDown,
            "shut down in recovery" => ClusterState::ShutDownInRecovery,
            "shutting down" => ClusterState::ShuttingDown,
            "in crash recovery" => ClusterState::InCrashRecovery,
            "in archive recovery" => ClusterState::InArchiveRecovery,
            "in production" => ClusterState::InProduction,
            other => ClusterState::Other(other.to_owned()),
        }
    }

    /// What pg_rewind accepts as a target.
    pub fn is_clean_shutdown(&self) -> bool {
        matches!(self, ClusterState::ShutDown | ClusterState::ShutDownInRecovery)
    }
}

/// What the data directory looks like before the rebuild.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DataDirState {
    /// The directory exists and has any entry.
    pub exists: bool,
    /// `PG_VERSION` exists and pg_controldata could read `global/pg_control`.
    pub valid: bool,
    pub has_postmaster_pid: bool,
    pub cluster_state: Option<ClusterState>,
    /// The newest of `Latest checkpoint's TimeLineID` and `Min recovery ending loc's
    /// timeline` (a standby's restartpoint lags behind what it replayed).
    pub timeline: Option<u32>,
    pub system_identifier: Option<u64>,
}

/// Everything the planner needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebuildInput {
    pub data: DataDirState,
    /// A previous pg_rewind of this directory failed or was interrupted (the executor keeps a
    /// marker beside the data directory until a rewind succeeds).
    pub rewind_failed: bool,
    /// The new primary's identity, when known (`pg_control_system()`).
    pub source_system_identifier: Option<u64>,
    /// The new primary's current timeline, when known.
    pub source_timeline: Option<u32>,
    /// Connection string to the new primary for pg_rewind and pg_basebackup (no password).
    pub source_conninfo: String,
    /// Connection string the standby will stream with (`primary_conninfo`, no password).
    pub primary_conninfo: String,
    /// Physical slot on the new primary for this standby.
    pub slot: Option<String>,
}

/// One step of a rebuild, run in order by `exec`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RebuildStep {
    /// Run crash recovery to a clean shutdown (`postgres --single`), after removing recovery
    /// signal files (single-user mode refuses standby mode).
    EnsureCleanShutdown,
    PgRewind {
        source_conninfo: String,
    },
    /// Empty the data directory and clone the source with `pg_basebackup -X stream`.
    FallbackBaseBackup {
        source_conninfo: String,
        slot: Option<String>,
    },
    /// `standby.signal`, and `primary_conninfo` / `primary_slot_name` in postgresql.auto.conf.
    WriteStandbyConfig {
        primary_conninfo: String,
        primary_slot_name: Option<String>,
    },
    StartPostgres,
}

/// The kind of each step, without its arguments: what a report or a test compares.
pub fn kinds(steps: &[RebuildStep]) -> Vec<&'static str> {
    steps
        .iter()
        .map(|s| match s {
            RebuildStep::EnsureCleanShutdown => "clean",
            RebuildStep::PgRewind { .. } => "rewind",
            RebuildStep::FallbackBaseBackup { .. } => "basebackup",
            RebuildStep::WriteStandbyConfig { .. } => "config",
            RebuildStep::StartPostgres => "start",
        })
        .collect()
}

/// The steps, in order.
pub fn plan(input: &RebuildInput) -> Vec<RebuildStep> {
    let data = &input.data;
    let other_system = matches!(
        (data.system_identifier, input.source_system_identifier),
        (Some(local), Some(source)) if local != source
    );
    let usable = data.exists && data.valid && !other_system && !input.rewind_failed;
    // A standby that crashed is restarted as a standby as it is: recovery in standby mode
    // writes no WAL. Single-user recovery would append a shutdown checkpoint to its WAL, on
    // the very timeline it is about to stream, where the primary has other records.
    let same_timeline_standby = matches!(
        data.cluster_state,
        Some(ClusterState::InArchiveRecovery | ClusterState::ShutDownInRecovery)
    ) && data.timeline.is_some()
        && data.timeline == input.source_timeline;
    let mut steps = Vec::new();
    if usable && same_timeline_standby {
        // Nothing to rewind: a standby on the source's timeline only needs its configuration.
    } else if usable {
        let clean = data.cluster_state.as_ref().is_some_and(ClusterState::is_clean_shutdown);
        if !clean || data.has_postmaster_pid {
            steps.push(RebuildStep::EnsureCleanShutdown);
        }
        steps.push(RebuildStep::PgRewind { source_conninfo: input.source_conninfo.clone() });
    } else {
        steps.push(RebuildStep::FallbackBaseBackup {
            source_conninfo: input.source_conninfo.clone(),
            slot: input.slot.clone(),
        });
    }
    steps.push(RebuildStep::WriteStandbyConfig {
        primary_conninfo: input.primary_conninfo.clone(),
        primary_slot_name: input.slot.clone(),
    });
    steps.push(RebuildStep::StartPostgres);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(data: DataDirState) -> RebuildInput {
        RebuildInput {
            data,
            rewind_failed: false,
            source_system_identifier: Some(7),
            source_timeline: Some(2),
            source_conninfo: "host=new dbname=postgres".into(),
            primary_conninfo: "host=new application_name=old".into(),
            slot: Some("relevo_old".into()),
        }
    }

    fn cluster(state: ClusterState) -> DataDirState {
        DataDirState {
            exists: true,
            valid: true,
            has_postmaster_pid: false,
            cluster_state: Some(state),
            timeline: Some(1),
            system_identifier: Some(7),
        }
    }

    #[test]
    fn cleanly_stopped_cluster_is_rewound() {
        for state in [ClusterState::ShutDown, ClusterState::ShutDownInRecovery] {
            let steps = plan(&input(cluster(state)));
            assert_eq!(kinds(&steps), ["rewind", "config", "start"]);
            assert_eq!(
                steps[0],
                RebuildStep::PgRewind { source_conninfo: "host=new dbname=postgres".into() }
            );
            assert_eq!(
                steps[1],
                RebuildStep::WriteStandbyConfig {
                    primary_conninfo: "host=new application_name=old".into(),
                    primary_slot_name: Some("relevo_old".into()),
                }
            );
        }
    }

    #[test]
    fn crashed_cluster_is_recovered_before_the_rewind() {
        for state in [
            ClusterState::InProduction,
            ClusterState::InCrashRecovery,
            ClusterState::InArchiveRecovery,
            ClusterState::ShuttingDown,
            ClusterState::Starting,
            ClusterState::Other("weird".into()),
        ] {
            assert_eq!(
                kinds(&plan(&input(cluster(state.clone())))),
                ["clean", "rewind", "config", "start"],
                "{state:?}"
            );
        }
        let mut stale_pid = cluster(ClusterState::ShutDown);
        stale_pid.has_postmaster_pid = true;
        assert_eq!(kinds(&plan(&input(stale_pid))), ["clean", "rewind", "config", "start"]);
        let mut unknown = cluster(ClusterState::ShutDown);
        unknown.cluster_state = None;
        assert_eq!(kinds(&plan(&input(unknown))), ["clean", "rewind", "config", "start"]);
    }

    #[test]
    fn no_usable_cluster_means_a_base_backup() {
        let empty = DataDirState::default();
        let steps = plan(&input(empty));
        assert_eq!(kinds(&steps), ["basebackup", "config", "start"]);
        assert_eq!(
            steps[0],
            RebuildStep::FallbackBaseBackup {
                source_conninfo: "host=new dbname=postgres".into(),
                slot: Some("relevo_old".into())
            }
        );
        let corrupt = DataDirState { exists: true, ..Default::default() };
        assert_eq!(kinds(&plan(&input(corrupt))), ["basebackup", "config", "start"]);
        let mut other = cluster(ClusterState::ShutDown);
        other.system_identifier = Some(8);
        assert_eq!(kinds(&plan(&input(other))), ["basebackup", "config", "start"], "another cluster's data");
    }

    #[test]
    fn a_failed_rewind_falls_back_to_a_base_backup() {
        let mut failed = input(cluster(ClusterState::InProduction));
        failed.rewind_failed = true;
        assert_eq!(kinds(&plan(&failed)), ["basebackup", "config", "start"]);
    }

    #[test]
    fn a_standby_already_on_the_source_timeline_is_only_reconfigured() {
        for state in [ClusterState::InArchiveRecovery, ClusterState::ShutDownInRecovery] {
            let mut data = cluster(state.clone());
            data.timeline = Some(2);
            assert_eq!(kinds(&plan(&input(data))), ["config", "start"], "{state:?}");
        }
        // on an older timeline it may hold WAL past the fork: clean up and rewind.
        assert_eq!(
            kinds(&plan(&input(cluster(ClusterState::InArchiveRecovery)))),
            ["clean", "rewind", "config", "start"]
        );
        // a crashed primary on the same timeline is still recovered and rewound.
        let mut primary = cluster(ClusterState::InProduction);
        primary.timeline = Some(2);
        assert_eq!(kinds(&plan(&input(primary))), ["clean", "rewind", "config", "start"]);
    }

    #[test]
    fn unknown_source_identity_still_tries_the_rewind() {
        let mut unknown = input(cluster(ClusterState::ShutDown));
        unknown.source_system_identifier = None;
        assert_eq!(kinds(&plan(&unknown)), ["rewind", "config", "start"]);
    }

    #[test]
    fn parses_every_controldata_state() {
        assert_eq!(ClusterState::parse("  shut down in recovery "), ClusterState::ShutDownInRecovery);
        assert_eq!(ClusterState::parse("in production"), ClusterState::InProduction);
        assert_eq!(ClusterState::parse("in archive recovery"), ClusterState::InArchiveRecovery);
        assert_eq!(ClusterState::parse("in crash recovery"), ClusterState::InCrashRecovery);
        assert_eq!(ClusterState::parse("shutting down"), ClusterState::ShuttingDown);
        assert_eq!(ClusterState::parse("starting up"), ClusterState::Starting);
        assert_eq!(ClusterState::parse("shut down"), ClusterState::ShutDown);
        assert_eq!(ClusterState::parse("x"), ClusterState::Other("x".into()));
    }
}
