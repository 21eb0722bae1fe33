//! pgBackRest command lines, as argv vectors for Jobs and containers (no shell in between),
//! and as the two strings PostgreSQL itself runs through a shell: `archive_command` and
//! `restore_command`. Building them in one place keeps every invocation pointing at the same
//! config file and stanza, which is what lets archiving continue across a switchover.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::crd::BackupType;

/// The pgBackRest executable, looked up in PATH.
pub const PGBACKREST: &str = "pgbackrest";

/// Why a command could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("stanza {0:?} must be non-empty letters, digits, '-', '_' or '.'")]
    Stanza(String),
    #[error(
        "{what} {value:?} cannot go into a PostgreSQL command string ('%' and control characters are not allowed)"
    )]
    Unquotable { what: &'static str, value: String },
}

/// Where a restore stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTarget {
    /// Replay all the WAL in the archive (pgBackRest's default).
    EndOfArchive,
    /// The named backup set, just consistent (`--type=immediate`).
    Backup { label: String },
    /// The latest backup set, just consistent.
    LatestBackup,
    /// A point in time, optionally from a given set (otherwise pgBackRest picks one).
    Time { at: DateTime<Utc>, label: Option<String> },
}

/// Options of `restore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOptions {
    pub target: RestoreTarget,
    /// Reuse files already in the data directory (rebuilds) instead of requiring it empty.
    pub delta: bool,
    /// Write `archive_mode=off` into the restored configuration, so that a cluster restored
    /// from another cluster's repository never archives into it.
    pub archive_mode_off: bool,
}

/// Invocations of pgBackRest for one stanza and one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pgbackrest {
    stanza: String,
    config: Option<String>,
    log_level_console: Option<String>,
    io_timeout_seconds: Option<u64>,
}

impl Pgbackrest {
    pub fn new(stanza: &str) -> Result<Self, CommandError> {
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if stanza.is_empty() || !stanza.chars().all(valid) {
            return Err(CommandError::Stanza(stanza.to_string()));
        }
        Ok(Self {
            stanza: stanza.to_string(),
            config: None,
            log_level_console: None,
            io_timeout_seconds: None,
        })
    }

    /// Use this config file instead of pgBackRest's default path.
    pub fn with_config(mut self, path: &str) -> Self {
        self.config = Some(path.to_string());
        self
    }

    /// Override `log-level-console` (e.g. `detail` in Jobs, whose logs people read).
    pub fn with_log_level_console(mut self, level: &str) -> Self {
        self.log_level_console = Some(level.to_string());
        self
    }

    /// Override `io-timeout` (60 s), which also bounds connecting to a remote host.
    pub fn with_io_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.io_timeout_seconds = Some(timeout.as_secs().max(1));
        self
    }

    fn global_options(&self) -> Vec<String> {
        let mut argv = vec![PGBACKREST.to_string()];
        if let Some(config) = &self.config {
            argv.push(format!("--config={config}"));
        }
        argv.push(format!("--stanza={}", self.stanza));
        if let Some(level) = &self.log_level_console {
            argv.push(format!("--log-level-console={level}"));
        }
        if let Some(seconds) = self.io_timeout_seconds {
            argv.push(format!("--io-timeout={seconds}"));
        }
        argv
    }

    fn command(&self, options: impl IntoIterator<Item = String>, command: &str) -> Vec<String> {
        let mut argv = self.global_options();
        argv.extend(options);
        argv.push(command.to_string());
        argv
    }

    pub fn stanza_create(&self) -> Vec<String> {
        self.command([], "stanza-create")
    }

    pub fn check(&self) -> Vec<String> {
        self.command([], "check")
    }

    pub fn backup(&self, backup_type: BackupType) -> Vec<String> {
        self.command([format!("--type={}", backup_type.as_pgbackrest())], "backup")
    }

    pub fn info_json(&self) -> Vec<String> {
        self.command(["--output=json".to_string()], "info")
    }

    /// Pushes one WAL file at once, whatever `archive-async` says: the asynchronous push
    /// only looks at the files PostgreSQL marked `.ready`.
    pub fn archive_push_now(&self, wal_file: &str) -> Vec<String> {
        let mut argv = self.command(["--no-archive-async".to_string()], "archive-push");
        argv.push(wal_file.to_string());
        argv
    }

    /// Applies the configured retention.
    pub fn expire(&self) -> Vec<String> {
        self.command([], "expire")
    }

    /// Expires one backup set (and whatever depends on it).
    pub fn expire_set(&self, label: &str) -> Vec<String> {
        self.command([format!("--set={label}")], "expire")
    }

    pub fn restore(&self, options: &RestoreOptions) -> Vec<String> {
        let mut opts = Vec::new();
        if options.delta {
            opts.push("--delta".to_string());
        }
        match &options.target {
            RestoreTarget::EndOfArchive => {}
            RestoreTarget::Backup { label } => {
                opts.push(format!("--set={label}"));
                opts.push("--type=immediate".to_string());
                opts.push("--target-action=promote".to_string());
            }
            RestoreTarget::LatestBackup => {
                opts.push("--type=immediate".to_string());
                opts.push("--target-action=promote".to_string());
            }
            RestoreTarget::Time { at, label } => {
                if let Some(label) = label {
                    opts.push(format!("--set={label}"));
                }
                opts.push("--type=time".to_string());
                opts.push(format!("--target={}", recovery_time(*at)));
                opts.push("--target-action=promote".to_string());
            }
        }
        if options.archive_mode_off {
            opts.push("--archive-mode=off".to_string());
        }
        self.command(opts, "restore")
    }

    /// PostgreSQL's `archive_command`; `%p` is the WAL file PostgreSQL fills in.
    pub fn archive_command(&self) -> Result<String, CommandError> {
        Ok(format!("{} archive-push %p", self.shell_prefix()?))
    }

    /// PostgreSQL's `restore_command`; `%f` and `%p` are filled in by PostgreSQL.
    pub fn restore_command(&self) -> Result<String, CommandError> {
        Ok(format!("{} archive-get %f \"%p\"", self.shell_prefix()?))
    }

    fn shell_prefix(&self) -> Result<String, CommandError> {
        let words: Result<Vec<String>, CommandError> =
            self.global_options().iter().map(|w| shell_word(w)).collect();
        Ok(words?.join(" "))
    }
}

/// pgBackRest as the instance pods run it: pg-host.conf, the cluster's stanza. Its
/// `archive_command` is what postgresql.conf gets.
pub fn instance_pgbackrest(cluster: &str) -> Result<Pgbackrest, CommandError> {
    use crate::protocol::names;
    Ok(Pgbackrest::new(&names::stanza(cluster))?
        .with_config(&names::pgbackrest_conf_path(names::PG_HOST_CONF_KEY)))
}

/// `recovery_target_time` text: `2025-10-07 12:00:00+00`, with fractions only when present.
fn recovery_time(at: DateTime<Utc>) -> String {
    let rfc = at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    format!("{}+00", rfc.trim_end_matches('Z').replacen('T', " ", 1))
}

/// One word for `/bin/sh`, as PostgreSQL runs these commands: bare when it is plainly safe,
/// else single-quoted. `%` is refused because PostgreSQL would expand it first.
fn shell_word(word: &str) -> Result<String, CommandError> {
    if word.contains('%') || word.chars().any(char::is_control) {
        return Err(CommandError::Unquotable { what: "argument", value: word.to_string() });
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '=' | ':' | ',');
    if !word.is_empty() && word.chars().all(plain) {
        Ok(word.to_string())
    } else {
        Ok(format!("'{}'", word.replace('\'', r"'\''")))
    }
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
