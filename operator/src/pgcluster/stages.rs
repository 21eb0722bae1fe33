//! The PgCluster reconcile as named stages, in this order:
//!
//! 1. **observe**: pods and what PostgreSQL reports (the one probe per instance);
//! 2. **status**: the status computed from it, and the pod role labels it implies;
//! 3. **failover**: whether the recorded primary has been lost long enough to fail over (and,
//!    if not, whether its node is being drained);
//! 4. **apply**: the children built from a valid spec (certificates, the Lease and the
//!    instances' access to it, the PodDisruptionBudget, StatefulSets…), the certificate
//!    reload, and the primary's replication slots.
//!
//! While a Switchover of the cluster is active, it is the only writer of role labels and
//! slots: the status and apply stages leave them to it.
//!
//! Each stage has its own error, and a failing stage never stops the others: the status and
//! the failover check judge what runs, so they do not wait for the children to be applied,
//! and an apply error is no reason to stop watching the primary. What a stage needs from an
//! earlier one it cannot do without: with no observation there is no status to compute and
//! no primary to judge, so those two are skipped (the report says why). The status itself is
//! pure and always computed; the status stage's own error is that of the role labels. The
//! report that ends every reconcile writes the status with the first failure as its Degraded condition, and its
//! Event comes with the condition's transition.

use std::time::Duration;

use crate::error::Error;

/// One stage of the reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Observe,
    Status,
    Failover,
    Apply,
}

impl Stage {
    /// The Degraded condition's reason when this stage fails.
    pub fn reason(self) -> &'static str {
        match self {
            Stage::Observe => "ObserveFailed",
            Stage::Status => "StatusFailed",
            Stage::Failover => "FailoverCheckFailed",
            Stage::Apply => "ApplyFailed",
        }
    }
}

/// A stage that failed, with its error.
#[derive(Debug)]
pub struct StageFailure {
    pub stage: Stage,
    pub error: Error,
}

impl StageFailure {
    /// The condition message: the error with its sources, which never contain secrets (they
    /// name objects, actions and API or PostgreSQL errors).
    pub fn message(&self) -> String {
        let mut text = format!("{:?} stage: {}", self.stage, self.error);
        let mut source = std::error::Error::source(&self.error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// What each stage does; the controller implements it over the API and PostgreSQL.
pub(super) trait Stages {
    type Observation;
    type Status;
    async fn observe(&mut self) -> Result<Self::Observation, Error>;
    /// The status is always computed (it is pure); the error is that of the writes that go
    /// with it (the role labels).
    async fn status(&mut self, observed: Self::Observation) -> (Self::Status, Result<(), Error>);
    /// `Some(when to look again)` while a failover decision is pending.
    async fn failover(&mut self, status: &Self::Status) -> Result<Option<Duration>, Error>;
    async fn apply(&mut self, status: Option<&Self::Status>) -> Result<(), Error>;
    /// Writes the status (`None` when it could not be computed) with the failures.
    async fn report(&mut self, status: Option<&Self::Status>, failures: &[StageFailure])
    -> Result<(), Error>;
}

/// What a reconcile ended with.
#[derive(Debug)]
pub struct StageReport {
    /// Every stage that failed, in stage order (a failed report last, as `Status`).
    pub failures: Vec<StageFailure>,
    /// When the failover check wants to look again.
    pub look_again: Option<Duration>,
}

/// Runs every stage in order; see the module doc.
pub(super) async fn run<S: Stages>(stages: &mut S) -> StageReport {
    let mut failures = Vec::new();
    let mut fail = |stage, error| failures.push(StageFailure { stage, error });
    let observed = stages.observe().await.map_err(|error| fail(Stage::Observe, error)).ok();
    let status = match observed {
        Some(observed) => {
            let (status, written) = stages.status(observed).await;
            if let Err(error) = written {
                fail(Stage::Status, error);
            }
            Some(status)
        }
        None => None,
    };
    let look_again = match &status {
        Some(status) => {
            stages.failover(status).await.map_err(|error| fail(Stage::Failover, error)).ok().flatten()
        }
        None => None,
    };
    if let Err(error) = stages.apply(status.as_ref()).await {
        fail(Stage::Apply, error);
    }
    if let Err(error) = stages.report(status.as_ref(), &failures).await {
        failures.push(StageFailure { stage: Stage::Status, error });
    }
    StageReport { failures, look_again }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what ran, and fails the stages it is told to.
    #[derive(Default)]
    struct Fake {
        fail: Vec<Stage>,
        ran: Vec<&'static str>,
        reported: Option<(bool, Vec<Stage>)>,
    }

    impl Fake {
        fn outcome(&self, stage: Stage) -> Result<(), Error> {
            if self.fail.contains(&stage) {
                Err(Error::Missing { kind: "test", name: format!("{stage:?}") })
            } else {
                Ok(())
            }
        }
    }

    impl Stages for Fake {
        type Observation = ();
        type Status = &'static str;
        async fn observe(&mut self) -> Result<(), Error> {
            self.ran.push("observe");
            self.outcome(Stage::Observe)
        }
        async fn status(&mut self, (): ()) -> (&'static str, Result<(), Error>) {
            self.ran.push("status");
            ("computed", self.outcome(Stage::Status))
        }
        async fn failover(&mut self, status: &&'static str) -> Result<Option<Duration>, Error> {
            assert_eq!(*status, "computed");
            self.ran.push("failover");
            self.outcome(Stage::Failover).map(|()| Some(Duration::from_millis(400)))
        }
        async fn apply(&mut self, _: Option<&&'static str>) -> Result<(), Error> {
            self.ran.push("apply");
            self.outcome(Stage::Apply)
        }
        async fn report(
            &mut self,
            status: Option<&&'static str>,
            failures: &[StageFailure],
        ) -> Result<(), Error> {
            self.ran.push("report");
            self.reported = Some((status.is_some(), failures.iter().map(|f| f.stage).collect()));
            Ok(())
        }
    }

    async fn run_with(fail: &[Stage]) -> (Fake, StageReport) {
        let mut fake = Fake { fail: fail.to_vec(), ..Fake::default() };
        let outcome = run(&mut fake).await;
        (fake, outcome)
    }

    #[tokio::test]
    async fn an_apply_error_still_writes_the_status_and_checks_failover() {
        let (fake, outcome) = run_with(&[Stage::Apply]).await;
        assert_eq!(fake.ran, ["observe", "status", "failover", "apply", "report"]);
        assert_eq!(fake.reported, Some((true, vec![Stage::Apply])), "status written with the apply failure");
        assert_eq!(outcome.look_again, Some(Duration::from_millis(400)), "the failover check's cadence kept");
        assert_eq!(outcome.failures.len(), 1);
        assert_eq!(outcome.failures[0].stage.reason(), "ApplyFailed");
        assert!(outcome.failures[0].message().contains("Apply"), "{}", outcome.failures[0].message());
    }

    #[tokio::test]
    async fn a_failed_failover_check_does_not_stop_the_apply() {
        let (fake, outcome) = run_with(&[Stage::Failover]).await;
        assert_eq!(fake.ran, ["observe", "status", "failover", "apply", "report"]);
        assert_eq!(fake.reported, Some((true, vec![Stage::Failover])));
        assert_eq!(outcome.look_again, None);
    }

    #[tokio::test]
    async fn without_an_observation_there_is_nothing_to_judge_but_the_apply_runs() {
        let (fake, _) = run_with(&[Stage::Observe]).await;
        assert_eq!(fake.ran, ["observe", "apply", "report"], "no status or failover without observation");
        assert_eq!(fake.reported, Some((false, vec![Stage::Observe])));
        let (fake, _) = run_with(&[Stage::Status, Stage::Apply]).await;
        assert_eq!(fake.ran, ["observe", "status", "failover", "apply", "report"], "labels failing");
        assert_eq!(fake.reported, Some((true, vec![Stage::Status, Stage::Apply])));
    }

    #[tokio::test]
    async fn a_clean_reconcile_reports_no_failure() {
        let (fake, outcome) = run_with(&[]).await;
        assert_eq!(fake.ran, ["observe", "status", "failover", "apply", "report"]);
        assert_eq!(fake.reported, Some((true, vec![])));
        assert!(outcome.failures.is_empty());
    }
}
