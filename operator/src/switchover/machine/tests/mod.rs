//! Fixtures and a tiny simulated cluster for the machine's tests.
//!
//! `World` applies a step to an observation the way a correct executor and PostgreSQL would,
//! so whole switchovers can be driven end to end, with operator crashes injected anywhere.

use chrono::{DateTime, TimeZone, Utc};

use super::next;
use crate::lease::LeaseView;
use crate::postgres::lsn::Lsn;
use crate::switchover::model::*;
use crate::switchover::sql::slot_name;

mod failover;
mod planned;
mod pooler;
mod rebuilding;
mod simulation;
mod synchronous;

pub fn t(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_700_000_000_000 + ms).unwrap()
}

pub fn secs(s: i64) -> DateTime<Utc> {
    t(s * 1000)
}

pub fn primary(name: &str, standbys: &[&str]) -> InstanceView {
    InstanceView {
        name: name.into(),
        sts_replicas: 1,
        pod_exists: true,
        ready: true,
        reachable: true,
        in_recovery: Some(false),
        timeline: Some(1),
        checkpoint_timeline: Some(1),
        current_lsn: Some(Lsn(1000)),
        slots: standbys.iter().map(|s| slot_name(s)).collect(),
        role_label: Some(Role::Primary),
        ..Default::default()
    }
}

pub fn standby(name: &str, of: &str, replay: u64) -> InstanceView {
    InstanceView {
        name: name.into(),
        sts_replicas: 1,
        pod_exists: true,
        ready: true,
        reachable: true,
        in_recovery: Some(true),
        timeline: Some(1),
        checkpoint_timeline: Some(1),
        receive_lsn: Some(Lsn(replay)),
        replay_lsn: Some(Lsn(replay)),
        streams_from: Some(of.into()),
        upstream: Some(of.into()),
        role_label: Some(Role::Standby),
        ..Default::default()
    }
}

/// pg-1 primary at 1000, pg-2 and pg-3 fully caught-up standbys.
pub fn cluster() -> Observed {
    Observed {
        cluster_exists: true,
        current_primary: Some("pg-1".into()),
        instances: vec![
            primary("pg-1", &["pg-2", "pg-3"]),
            standby("pg-2", "pg-1", 1000),
            standby("pg-3", "pg-1", 1000),
        ],
        active_switchovers: vec![],
        lease: Some(lease_of("pg-1", 0)),
        // so-1 (every request of these tests but the simulation's) holds the role move.
        role_move: RoleMove { holder: Some("so-1".into()), holder_active: true, cluster_version: "1".into() },
        watching_since: None,
        synchronous_standbys: None,
        poolers: vec![],
    }
}

/// The primary Lease as the operator saw it, `age_secs` unchanged.
pub fn lease_of(holder: &str, age_secs: u64) -> LeaseView {
    LeaseView {
        holder: Some(holder.into()),
        resource_version: "7".into(),
        unchanged_for: std::time::Duration::from_secs(age_secs),
    }
}

pub fn req(target: Option<&str>, mode: Mode) -> Request {
    Request { name: "so-1".into(), created: t(0), cluster: "pg".into(), target: target.map(Into::into), mode }
}

pub fn planned(target: &str) -> Request {
    req(Some(target), Mode::Planned)
}

pub fn decide(
    request: &Request,
    state: &SwitchoverState,
    observed: &Observed,
    now: DateTime<Utc>,
) -> Decision {
    next(request, state, observed, &Params::default(), now)
}

pub fn inst<'a>(observed: &'a mut Observed, name: &str) -> &'a mut InstanceView {
    observed.instances.iter_mut().find(|i| i.name == name).unwrap()
}

/// A state in `phase`, entered at `at`, as the machine would have left it.
pub fn state_in(phase: Phase, from: &str, to: &str, at: DateTime<Utc>) -> SwitchoverState {
    let mut s = SwitchoverState { from: Some(from.into()), to: Some(to.into()), ..Default::default() };
    s.enter(Phase::Pending, t(0));
    for p in [Phase::Fencing, Phase::CatchingUp, Phase::Promoting, Phase::Rebuilding] {
        if p as u8 <= phase as u8 {
            s.enter(p, at);
        }
    }
    if phase as u8 >= Phase::CatchingUp as u8 {
        s.fence_lsn = Some(Lsn(1000));
    }
    if phase as u8 >= Phase::Promoting as u8 {
        s.promotion_lsn = Some(Lsn(1000));
    }
    s
}

pub fn assert_unfenced_then_failed(
    request: &Request,
    d: Decision,
    mut observed: Observed,
    from: &str,
    now: DateTime<Utc>,
) {
    assert_eq!(d.step, Step::Unfence { instance: from.into() }, "{d:?}");
    assert!(d.state.failing_since.is_some());
    assert!(!d.state.phase.is_terminal(), "the phase stays until the unfence is observed");
    // The executor unfences: the old primary runs as primary again.
    let old = inst(&mut observed, from);
    old.fence_marker = false;
    old.sts_replicas = 1;
    if request.mode == Mode::Planned {
        old.in_recovery = Some(false);
        old.reachable = true;
    }
    let d2 = decide(request, &d.state, &observed, now);
    assert!(matches!(d2.step, Step::Fail { .. }), "{d2:?}");
    assert_eq!(d2.state.phase, Phase::Failed);
    assert_eq!(d2.state.reason, d.state.reason, "the reason is the original failure");
}

/// What a correct executor and PostgreSQL make of each step.
pub struct World {
    pub observed: Observed,
}

impl World {
    pub fn new(observed: Observed) -> Self {
        World { observed }
    }

    fn get(&mut self, name: &str) -> &mut InstanceView {
        inst(&mut self.observed, name)
    }

    pub fn apply(&mut self, step: &Step) {
        match step {
            Step::Checkpoint { instance } => {
                let i = self.get(instance);
                i.checkpoint_timeline = i.timeline;
            }
            Step::Fence { instance } => {
                let i = self.get(instance);
                let end = i.current_lsn.or(i.replay_lsn);
                i.fence_marker = true;
                if i.in_recovery == Some(false) {
                    i.in_recovery = Some(true);
                    i.replay_lsn = end;
                    i.receive_lsn = None;
                    i.current_lsn = None;
                    i.upstream = None;
                    // The walsenders deliver the shutdown checkpoint before exiting.
                    let name = instance.clone();
                    for s in self
                        .observed
                        .instances
                        .iter_mut()
                        .filter(|s| s.streams_from.as_deref() == Some(&name))
                    {
                        s.receive_lsn = end;
                        s.replay_lsn = end;
                        s.streams_from = None;
                    }
                }
            }
            Step::ScaleToZero { instance } => {
                let name = instance.clone();
                let i = self.get(instance);
                *i = InstanceView { name, rebuild_token: i.rebuild_token.clone(), ..Default::default() };
            }
            Step::Unfence { instance } => {
                let i = self.get(instance);
                i.fence_marker = false;
                i.sts_replicas = 1;
            }
            Step::Promote { target, .. } => {
                let i = self.get(target);
                if i.in_recovery == Some(true) {
                    i.in_recovery = Some(false);
                    i.timeline = i.timeline.map(|t| t + 1);
                    i.current_lsn = i.wal_end();
                    i.streams_from = None;
                    i.upstream = None;
                }
            }
            Step::MoveRoleLabels { primary, standbys } => {
                self.get(primary).role_label = Some(Role::Primary);
                for s in standbys {
                    self.get(s).role_label = Some(Role::Standby);
                }
            }
            Step::FixSlots { instance, wanted } => self.get(instance).slots = wanted.clone(),
            Step::RevokeLease { from, resource_version } => {
                let lease = self.observed.lease.as_mut().expect("a lease to revoke");
                if lease.holder.is_none() {
                    return; // revoked already: repeating is harmless
                }
                assert!(lease.held_by(from) && &lease.resource_version == resource_version);
                lease.holder = None;
                lease.resource_version.push('+');
                lease.unchanged_for = std::time::Duration::ZERO;
            }
            Step::HandOverLease { from, to } => {
                let lease = self.observed.lease.as_mut().expect("a lease to hand over");
                if lease.held_by(to) {
                    return;
                }
                assert!(lease.holder.is_none() || lease.held_by(from), "{lease:?}");
                lease.holder = Some(to.clone());
                lease.resource_version.push('+');
                lease.unchanged_for = std::time::Duration::ZERO;
            }
            Step::RepointStandby { instance, new_primary } => self.follow(instance, new_primary),
            Step::ClaimRoleMove { switchover, cluster_version } => {
                let claim = &mut self.observed.role_move;
                // The API server's precondition: a write since the read makes the claim fail.
                if &claim.cluster_version == cluster_version {
                    claim.holder = Some(switchover.clone());
                    claim.holder_active = true;
                    self.bump_cluster_version();
                }
            }
            Step::Rebuild { instance, source, token } => {
                let i = self.get(instance);
                i.rebuild_token = Some(token.clone());
                i.sts_replicas = 1;
                i.pod_exists = true;
                i.reachable = true;
                i.ready = true;
                i.in_recovery = Some(true);
                i.slots.clear();
                i.role_label = None;
                self.follow(instance, source);
            }
            _ => {}
        }
    }

    /// The controller clears the claim of a Switchover that ended (a compare-and-swap too).
    pub fn release_role_move(&mut self, switchover: &str) {
        if self.observed.role_move.holder.as_deref() == Some(switchover) {
            self.observed.role_move.holder = None;
            self.observed.role_move.holder_active = false;
            self.bump_cluster_version();
        }
    }

    /// Any write of the PgCluster (status, labels, a claim) gives it a new resourceVersion.
    pub fn bump_cluster_version(&mut self) {
        let claim = &mut self.observed.role_move;
        let next = claim.cluster_version.parse::<u64>().unwrap_or(0) + 1;
        claim.cluster_version = next.to_string();
    }

    /// `instance` streams from `primary` and is caught up.
    fn follow(&mut self, instance: &str, primary: &str) {
        let p = self.get(primary).clone();
        let i = self.get(instance);
        i.upstream = Some(primary.into());
        i.streams_from = Some(primary.into());
        i.timeline = p.timeline;
        i.replay_lsn = p.current_lsn;
        i.receive_lsn = p.current_lsn;
    }

    /// What the PgCluster status would now record as primary.
    pub fn settle(&mut self) {
        if let Some(p) = self.observed.instances.iter().find(|i| i.is_primary()) {
            self.observed.current_primary = Some(p.name.clone());
        }
    }
}

/// pg-2 promoted (timeline 2); pg-1 fenced at 1000; labels not moved yet.
pub fn promoted() -> Observed {
    let mut c = cluster();
    let p = inst(&mut c, "pg-1");
    p.fence_marker = true;
    p.in_recovery = Some(true);
    p.current_lsn = None;
    p.replay_lsn = Some(Lsn(1000));
    p.upstream = None;
    let n = inst(&mut c, "pg-2");
    n.in_recovery = Some(false);
    n.timeline = Some(2);
    n.current_lsn = Some(Lsn(1100));
    n.streams_from = None;
    n.upstream = None;
    inst(&mut c, "pg-3").streams_from = None;
    c
}
