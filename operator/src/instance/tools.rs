//! How the instance manager runs PostgreSQL's and pgBackRest's programs: from PATH in the pod
//! (which runs as the postgres user); through a wrapper (`runuser -u postgres --`) and a
//! binary directory in tests run as root.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::rebuild::process::wrapped;

#[derive(Debug, Clone, Default)]
pub struct Tools {
    pub wrapper: Vec<OsString>,
    /// Where PostgreSQL's binaries are; `None`: PATH. Other programs always come from PATH.
    pub pg_bin_dir: Option<PathBuf>,
}

impl Tools {
    /// `program` with stdin closed and `LC_ALL=C` (pg_controldata's labels are parsed).
    pub fn command(&self, program: &str) -> tokio::process::Command {
        let path = match &self.pg_bin_dir {
            Some(dir) if dir.join(program).is_file() => dir.join(program),
            _ => PathBuf::from(program),
        };
        let mut command = tokio::process::Command::from(wrapped(&self.wrapper, &path));
        command.env("LC_ALL", "C").stdin(std::process::Stdio::null());
        command
    }
}
