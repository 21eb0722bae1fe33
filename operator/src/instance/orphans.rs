//! The instance manager is its container's PID 1, so every process orphaned in the container
//! becomes its child: pgBackRest's asynchronous archive-push, for one, daemonizes and its
//! parent exits. Unreaped, each stays a zombie for the life of the container, one PID per
//! archived batch, until the pod's PID limit is reached.
//!
//! The programs relevo runs itself are waited for by tokio, which must still find their exit
//! status, so only orphans are reaped. They are told apart by their session: a daemon starts
//! its own (`setsid`), while whatever relevo spawns stays in relevo's session.

/// One line of `/proc/<pid>/stat`, the fields that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub session: i32,
}

impl ProcStat {
    /// Parses `pid (comm) state ppid pgrp session ...`; comm may hold spaces and parentheses,
    /// so the fields are read after its last `)`.
    pub fn parse(line: &str) -> Option<Self> {
        let (head, rest) = line.rsplit_once(')')?;
        let pid = head.split_once(" (")?.0.trim().parse().ok()?;
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        let _pgrp = fields.next()?;
        let session = fields.next()?.parse().ok()?;
        Some(Self { pid, state, ppid, session })
    }
}

/// The zombies among `processes` to reap: children of `me` from another session than `me`'s,
/// except `ours` (the postmaster: whatever its session, the supervisor waits for it).
pub fn orphan_zombies(processes: &[ProcStat], me: &ProcStat, ours: &[u32]) -> Vec<i32> {
    processes
        .iter()
        .filter(|p| p.state == 'Z' && p.ppid == me.pid && p.session != me.session)
        .filter(|p| !ours.iter().any(|&pid| i64::from(pid) == i64::from(p.pid)))
        .map(|p| p.pid)
        .collect()
}

fn read_stat(entry: &str) -> Option<ProcStat> {
    ProcStat::parse(&std::fs::read_to_string(format!("/proc/{entry}/stat")).ok()?)
}

/// Reaps the orphaned zombies of this process but `ours`; how many. Does nothing unless it
/// is PID 1.
pub fn reap(ours: &[u32]) -> usize {
    if std::process::id() != 1 {
        return 0;
    }
    let Some(me) = read_stat("self") else { return 0 };
    let processes: Vec<ProcStat> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            entry.file_name().to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())).and_then(read_stat)
        })
        .collect();
    orphan_zombies(&processes, &me, ours)
        .into_iter()
        .filter(|pid| {
            let mut status = 0;
            // SAFETY: waitpid on a zombie child of ours, without blocking; no memory is shared.
            unsafe { libc::waitpid(*pid, &mut status, libc::WNOHANG) == *pid }
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: i32, state: char, ppid: i32, session: i32) -> ProcStat {
        ProcStat { pid, state, ppid, session }
    }

    #[test]
    fn reads_the_fields_after_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (postgres: demo-1: archiver (x)) Z 1 4242 4242 0 -1 4194560 96 0 0 0";
        assert_eq!(ProcStat::parse(line), Some(stat(4242, 'Z', 1, 4242)));
        assert_eq!(ProcStat::parse("garbage"), None);
        assert_eq!(ProcStat::parse("12 (x) S notanumber 1 1"), None);
    }

    #[test]
    fn only_zombie_children_of_another_session_are_reaped() {
        let me = stat(1, 'S', 0, 1);
        let processes = [
            stat(10, 'Z', 1, 10), // pgBackRest's async daemon, orphaned and exited
            stat(11, 'Z', 1, 1),  // a program relevo ran, exited: tokio reaps it
            stat(12, 'S', 1, 12), // an orphan still running
            stat(13, 'Z', 7, 13), // somebody else's child
            stat(14, 'Z', 1, 14), // the postmaster, in a session of its own
        ];
        assert_eq!(orphan_zombies(&processes, &me, &[14]), vec![10]);
    }

    #[test]
    fn reads_this_process() {
        let me = read_stat("self").expect("/proc/self/stat");
        assert_eq!(me.pid as u32, std::process::id());
        assert_eq!(reap(&[]), 0, "only PID 1 reaps");
    }
}
