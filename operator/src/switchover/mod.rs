//! Switchover and failover: moving the primary role without losing an acknowledged commit and
//! without ever leaving two primaries.
//!
//! The shape follows brupop: the Switchover status *is* the persisted state machine, and
//! [`machine::next`] is a pure function from (request, state, observed cluster, now) to the
//! next idempotent [`model::Step`] and the state to persist. The controller observes,
//! persists, executes; all judgement lives here and is unit-tested without a cluster.
//! [`failover::failover_decision`] decides, just as purely, when to start a failover on our own.
//!
//! - `lsn`: the `pg_lsn` type.
//! - `model`: state, request, observation, parameters and steps.
//! - `machine`: the transitions; its module doc states the fence mechanism and its safety
//!   argument, and how each step is made idempotent.
//! - `failover`: the automatic failover trigger.
//! - `sql`: the SQL the observations and steps run.
//! - `convert`: mapping to and from the Switchover custom resource.
//! - `markers`: the annotations through which the operator fences and rebuilds instances.
//! - `role_move`: the compare-and-swap claim that lets one Switchover per cluster act.

pub mod controller;
pub mod convert;
pub mod executor;
pub mod failover;
pub mod instance_channel;
pub use crate::postgres::lsn;
pub mod machine;
pub mod model;
pub mod observe;
pub mod pooler_channel;
pub mod role_move;
pub mod sql;

pub use failover::{FailoverTrigger, failover_decision};
pub use lsn::Lsn;
pub use machine::next;
pub use model::{
    ActiveSwitchover, Decision, InstanceView, Mode, Observed, Params, Phase, Request, Role, Step,
    SwitchoverState,
};
