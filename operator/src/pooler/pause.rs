//! The pooler-side pause bound, a pure state machine. A PAUSE not followed by a RESUME
//! within the bound is resumed by the supervisor itself, so an operator that crashed
//! mid-switchover never leaves clients waiting longer than the bound. Each PAUSE request
//! (a retried one too) restarts the bound.

use std::time::{Duration, Instant};

use crate::protocol::pooler::PauseState;

/// What the supervisor must tell PgBouncer after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Nothing: PgBouncer already is where it should be.
    None,
    Pause,
    Resume,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pause {
    state: PauseState,
    deadline: Option<Instant>,
    bound: Duration,
}

impl Pause {
    pub fn new(bound: Duration) -> Self {
        Self { state: PauseState::Running, deadline: None, bound }
    }

    pub fn state(&self) -> PauseState {
        self.state
    }

    /// A pause request: starts a pause, or restarts the bound of the one under way.
    pub fn request_pause(&mut self, now: Instant) -> Command {
        self.deadline = Some(now + self.bound);
        match self.state {
            PauseState::Running => {
                self.state = PauseState::Pausing;
                Command::Pause
            }
            PauseState::Pausing | PauseState::Paused => Command::None,
        }
    }

    /// PgBouncer answered the PAUSE. Ignored when a resume came in between (a stale answer).
    pub fn pause_completed(&mut self) {
        if self.state == PauseState::Pausing {
            self.state = PauseState::Paused;
        }
    }

    /// The PAUSE failed: PgBouncer did not pause, so it runs.
    pub fn pause_failed(&mut self) {
        self.state = PauseState::Running;
        self.deadline = None;
    }

    /// A resume request, or the bound's.
    pub fn request_resume(&mut self) -> Command {
        self.deadline = None;
        match std::mem::replace(&mut self.state, PauseState::Running) {
            PauseState::Running => Command::None,
            PauseState::Pausing | PauseState::Paused => Command::Resume,
        }
    }

    /// RESUME could not be sent: PgBouncer may still be paused, so the next tick retries.
    pub fn resume_failed(&mut self, now: Instant) {
        self.state = PauseState::Paused;
        self.deadline = Some(now);
    }

    /// The bound: past the deadline, the pooler resumes by itself.
    pub fn expire(&mut self, now: Instant) -> Command {
        match self.deadline {
            Some(deadline) if now >= deadline => self.request_resume(),
            _ => Command::None,
        }
    }

    /// Time left before the pooler resumes by itself.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.deadline.map(|deadline| deadline.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(15);

    #[test]
    fn a_pause_is_sent_once_and_a_repeated_request_restarts_the_bound() {
        let t0 = Instant::now();
        let mut pause = Pause::new(BOUND);
        assert_eq!(pause.request_pause(t0), Command::Pause);
        assert_eq!(pause.state(), PauseState::Pausing);
        pause.pause_completed();
        assert_eq!(pause.state(), PauseState::Paused);
        assert_eq!(pause.request_pause(t0 + Duration::from_secs(8)), Command::None);
        assert_eq!(pause.expire(t0 + Duration::from_secs(20)), Command::None);
        assert_eq!(pause.remaining(t0 + Duration::from_secs(20)), Some(Duration::from_secs(3)));
        assert_eq!(pause.expire(t0 + Duration::from_secs(23)), Command::Resume);
        assert_eq!(pause.state(), PauseState::Running);
        assert_eq!(pause.remaining(t0 + Duration::from_secs(23)), None);
    }

    #[test]
    fn an_unanswered_pause_is_resumed_by_the_bound_even_while_draining() {
        let t0 = Instant::now();
        let mut pause = Pause::new(BOUND);
        pause.request_pause(t0);
        assert_eq!(pause.expire(t0 + BOUND - Duration::from_millis(1)), Command::None);
        assert_eq!(pause.expire(t0 + BOUND), Command::Resume);
        // A late PAUSE answer after the resume must not mark it paused again.
        pause.pause_completed();
        assert_eq!(pause.state(), PauseState::Running);
    }

    #[test]
    fn resume_is_idempotent_and_a_failed_pause_runs() {
        let t0 = Instant::now();
        let mut pause = Pause::new(BOUND);
        assert_eq!(pause.request_resume(), Command::None);
        pause.request_pause(t0);
        pause.pause_failed();
        assert_eq!(pause.state(), PauseState::Running);
        assert_eq!(pause.expire(t0 + BOUND), Command::None);
        pause.request_pause(t0);
        assert_eq!(pause.request_resume(), Command::Resume);
        assert_eq!(pause.request_resume(), Command::None);
    }

    #[test]
    fn a_failed_resume_is_retried_at_the_next_tick() {
        let t0 = Instant::now();
        let mut pause = Pause::new(BOUND);
        pause.request_pause(t0);
        assert_eq!(pause.request_resume(), Command::Resume);
        pause.resume_failed(t0 + Duration::from_secs(1));
        assert_eq!(pause.state(), PauseState::Paused);
        assert_eq!(pause.expire(t0 + Duration::from_secs(1)), Command::Resume);
    }
}
