//! What the instance entrypoint does before PostgreSQL runs, as a pure function of what it
//! finds on the volume and what the operator asked for. The executor ([`super::exec`]) only
//! carries the steps out, so every path through bootstrap is unit-tested here.
//!
//! The one rule that matters: data on the volume always wins. An instance whose volume holds
//! a cluster starts that cluster whatever its bootstrap mode says; only an empty (or
//! half-bootstrapped) volume is ever initialised or cloned, and only initdb makes a new
//! database system.

use std::fmt;
use std::str::FromStr;

/// What to do with an empty data directory. Set by the operator on the StatefulSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// Create a new database system. Only the first instance of a cluster that never had a
    /// primary gets this.
    Initdb,
    /// Copy the primary with pg_basebackup and follow it as a standby.
    Clone,
    /// Restore another cluster's backup with pgBackRest; PostgreSQL then recovers to the
    /// target and is promoted, a new primary with the backup's data. Only the first instance
    /// of a cluster bootstrapped from a backup gets this.
    Restore,
}

impl Bootstrap {
    pub fn as_str(self) -> &'static str {
        match self {
            Bootstrap::Initdb => "initdb",
            Bootstrap::Clone => "clone",
            Bootstrap::Restore => "restore",
        }
    }
}

impl fmt::Display for Bootstrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Bootstrap {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "initdb" => Ok(Bootstrap::Initdb),
            "clone" => Ok(Bootstrap::Clone),
            "restore" => Ok(Bootstrap::Restore),
            other => Err(format!("bootstrap must be initdb, clone or restore, not {other:?}")),
        }
    }
}

/// What the entrypoint found on the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDir {
    /// No data directory, or an empty one.
    Empty,
    /// A previous bootstrap started and never finished (its marker is still there): the
    /// files are a partial initdb or clone, never a cluster anyone wrote to.
    Interrupted,
    /// A PostgreSQL data directory from a finished bootstrap.
    Initialised { standby: bool },
    /// Files that relevo did not put there. Never deleted automatically.
    Unrecognised,
}

/// One thing the entrypoint does, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapStep {
    /// Write the libpq password file for the replication user (streaming and cloning).
    WritePassfile,
    /// Delete the contents of an interrupted bootstrap.
    WipeData,
    /// Record that a bootstrap is in progress, so an interruption is recognised next start.
    MarkBootstrapping,
    /// initdb with data checksums and the generated superuser password.
    Initdb,
    /// In single-user mode: the replication role, the application owner and its database.
    CreateRoles,
    /// pg_basebackup from the primary through the instance's replication slot, retried
    /// while the primary is not up yet.
    CloneFromPrimary,
    /// standby.signal: start as a hot standby.
    WriteStandbySignal,
    /// `pgbackrest restore` of the source cluster's backup (recovery.signal and the recovery
    /// target are pgBackRest's), then a marker asking the supervisor to set this cluster's
    /// passwords once recovery has promoted: the restored roles carry the source's.
    RestoreFromBackup,
    /// Bootstrap finished: remove the marker.
    ClearBootstrapping,
    /// This instance's cluster_name, primary_conninfo and primary_slot_name.
    WriteInstanceConf,
    /// Run PostgreSQL in the foreground until the pod stops.
    StartPostgres,
}

/// Why the entrypoint will not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the data directory holds files that are not a PostgreSQL cluster bootstrapped by relevo; \
         refusing to delete them: inspect the volume and empty it to let the instance bootstrap"
    )]
    UnrecognisedData,
}

pub fn plan(data_dir: DataDir, bootstrap: Bootstrap) -> Result<Vec<BootstrapStep>, PlanError> {
    use BootstrapStep::*;
    let bootstrap_steps = |wipe: bool| {
        let mut steps = vec![WritePassfile];
        if wipe {
            steps.push(WipeData);
        }
        steps.push(MarkBootstrapping);
        match bootstrap {
            Bootstrap::Initdb => steps.extend([Initdb, CreateRoles]),
            Bootstrap::Clone => steps.extend([CloneFromPrimary, WriteStandbySignal]),
            Bootstrap::Restore => steps.push(RestoreFromBackup),
        }
        steps.extend([ClearBootstrapping, WriteInstanceConf, StartPostgres]);
        steps
    };
    match data_dir {
        DataDir::Empty => Ok(bootstrap_steps(false)),
        DataDir::Interrupted => Ok(bootstrap_steps(true)),
        // Primary or standby, the data says which (standby.signal); the conf is rewritten
        // every start so a standby always follows the current `-rw` Service.
        DataDir::Initialised { .. } => Ok(vec![WritePassfile, WriteInstanceConf, StartPostgres]),
        DataDir::Unrecognised => Err(PlanError::UnrecognisedData),
    }
}

#[cfg(test)]
mod tests {
    use super::BootstrapStep::*;
    use super::*;

    const ALL: [Bootstrap; 3] = [Bootstrap::Initdb, Bootstrap::Clone, Bootstrap::Restore];

    #[test]
    fn first_instance_of_a_new_cluster_runs_initdb() {
        assert_eq!(
            plan(DataDir::Empty, Bootstrap::Initdb).unwrap(),
            [
                WritePassfile,
                MarkBootstrapping,
                Initdb,
                CreateRoles,
                ClearBootstrapping,
                WriteInstanceConf,
                StartPostgres
            ]
        );
    }

    #[test]
    fn other_instances_clone_and_start_as_standbys() {
        assert_eq!(
            plan(DataDir::Empty, Bootstrap::Clone).unwrap(),
            [
                WritePassfile,
                MarkBootstrapping,
                CloneFromPrimary,
                WriteStandbySignal,
                ClearBootstrapping,
                WriteInstanceConf,
                StartPostgres
            ]
        );
    }

    #[test]
    fn a_cluster_from_a_backup_restores_then_starts() {
        assert_eq!(
            plan(DataDir::Empty, Bootstrap::Restore).unwrap(),
            [
                WritePassfile,
                MarkBootstrapping,
                RestoreFromBackup,
                ClearBootstrapping,
                WriteInstanceConf,
                StartPostgres
            ]
        );
        // A restore interrupted half-way is wiped and restored again.
        assert_eq!(plan(DataDir::Interrupted, Bootstrap::Restore).unwrap()[1], WipeData);
    }

    #[test]
    fn existing_data_always_wins_over_the_bootstrap_mode() {
        for bootstrap in ALL {
            for standby in [false, true] {
                let steps = plan(DataDir::Initialised { standby }, bootstrap).unwrap();
                assert_eq!(steps, [WritePassfile, WriteInstanceConf, StartPostgres]);
                assert!(!steps.contains(&Initdb) && !steps.contains(&WipeData));
            }
        }
    }

    #[test]
    fn interrupted_bootstrap_is_wiped_and_redone() {
        let steps = plan(DataDir::Interrupted, Bootstrap::Clone).unwrap();
        let wipe = steps.iter().position(|s| *s == WipeData).unwrap();
        let clone = steps.iter().position(|s| *s == CloneFromPrimary).unwrap();
        assert!(wipe < clone);
    }

    #[test]
    fn unknown_files_are_never_deleted() {
        for bootstrap in ALL {
            assert_eq!(plan(DataDir::Unrecognised, bootstrap), Err(PlanError::UnrecognisedData));
        }
    }

    #[test]
    fn bootstrap_marker_brackets_every_bootstrap() {
        for data_dir in [DataDir::Empty, DataDir::Interrupted] {
            for bootstrap in ALL {
                let steps = plan(data_dir, bootstrap).unwrap();
                let mark = steps.iter().position(|s| *s == MarkBootstrapping).unwrap();
                let clear = steps.iter().position(|s| *s == ClearBootstrapping).unwrap();
                let work = steps
                    .iter()
                    .position(|s| matches!(s, Initdb | CloneFromPrimary | RestoreFromBackup))
                    .unwrap();
                assert!(mark < work && work < clear);
                assert_eq!(steps.last(), Some(&StartPostgres));
            }
        }
    }

    #[test]
    fn bootstrap_mode_parses_what_the_statefulset_sets() {
        for bootstrap in ALL {
            assert_eq!(bootstrap.as_str().parse::<Bootstrap>(), Ok(bootstrap));
        }
        assert!("primary".parse::<Bootstrap>().is_err());
    }
}
