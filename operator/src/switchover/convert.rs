//! Mapping between the Switchover custom resource (`crate::crd::switchover`) and the machine's
//! own types, so the machine never depends on serde attributes or printer columns.
//!
//! Every field of [`SwitchoverState`] round-trips, including `fence_lsn` (to resume
//! CatchingUp after an operator restart) and `failing_since` (to resume a failure's
//! clean-up), so a restart in any phase resumes exactly where the machine was.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

use super::model::{Mode, Phase, PhaseTime, Request, SwitchoverState};
use crate::crd::switchover::{PhaseTimestamp, Switchover, SwitchoverMode, SwitchoverPhase, SwitchoverStatus};
use crate::postgres::lsn::Lsn;

/// A status the machine cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("status.{field}: {message}")]
    Field { field: &'static str, message: String },
    #[error("the Switchover has no {0}")]
    Missing(&'static str),
}

fn phase_from(p: SwitchoverPhase) -> Phase {
    match p {
        SwitchoverPhase::Pending => Phase::Pending,
        SwitchoverPhase::Fencing => Phase::Fencing,
        SwitchoverPhase::CatchingUp => Phase::CatchingUp,
        SwitchoverPhase::Promoting => Phase::Promoting,
        SwitchoverPhase::Rebuilding => Phase::Rebuilding,
        SwitchoverPhase::Completed => Phase::Completed,
        SwitchoverPhase::Failed => Phase::Failed,
    }
}

fn phase_to(p: Phase) -> SwitchoverPhase {
    match p {
        Phase::Pending => SwitchoverPhase::Pending,
        Phase::Fencing => SwitchoverPhase::Fencing,
        Phase::CatchingUp => SwitchoverPhase::CatchingUp,
        Phase::Promoting => SwitchoverPhase::Promoting,
        Phase::Rebuilding => SwitchoverPhase::Rebuilding,
        Phase::Completed => SwitchoverPhase::Completed,
        Phase::Failed => SwitchoverPhase::Failed,
    }
}

fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(field: &'static str, text: &str) -> Result<DateTime<Utc>, ConvertError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ConvertError::Field { field, message: format!("{text:?}: {e}") })
}

/// The status to write for `state`.
pub fn to_status(state: &SwitchoverState) -> SwitchoverStatus {
    SwitchoverStatus {
        phase: Some(phase_to(state.phase)),
        from: state.from.clone(),
        to: state.to.clone(),
        phase_timestamps: state
            .phase_times
            .iter()
            .map(|t| PhaseTimestamp { phase: phase_to(t.phase), time: time_text(t.at) })
            .collect(),
        promotion_lsn: state.promotion_lsn.map(|l| l.to_string()),
        promotion_timeline: state.promotion_timeline.map(i64::from),
        write_unavailable_seconds: state.write_unavailable.map(|d| d.as_secs_f64()),
        duration_seconds: state.duration().map(|d| d.as_secs_f64()),
        reason: state.reason.clone(),
        fence_lsn: state.fence_lsn.map(|l| l.to_string()),
        failing_since: state.failing_since.map(time_text),
        pooler_pause_started: state.pooler_pause_started.map(time_text),
    }
}

/// The machine's state from a status; no status yet is the initial state.
pub fn from_status(status: Option<&SwitchoverStatus>) -> Result<SwitchoverState, ConvertError> {
    let Some(status) = status else { return Ok(SwitchoverState::default()) };
    let phase_times = status
        .phase_timestamps
        .iter()
        .map(|t| Ok(PhaseTime { phase: phase_from(t.phase), at: parse_time("phaseTimestamps", &t.time)? }))
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let promotion_lsn = status
        .promotion_lsn
        .as_deref()
        .map(|text| text.parse::<Lsn>())
        .transpose()
        .map_err(|e| ConvertError::Field { field: "promotionLsn", message: e.to_string() })?;
    let promotion_timeline = status
        .promotion_timeline
        .map(u32::try_from)
        .transpose()
        .map_err(|e| ConvertError::Field { field: "promotionTimeline", message: e.to_string() })?;
    let write_unavailable = status
        .write_unavailable_seconds
        .map(std::time::Duration::try_from_secs_f64)
        .transpose()
        .map_err(|e| ConvertError::Field { field: "writeUnavailableSeconds", message: e.to_string() })?;
    let fence_lsn = status
        .fence_lsn
        .as_deref()
        .map(|text| text.parse::<Lsn>())
        .transpose()
        .map_err(|e| ConvertError::Field { field: "fenceLsn", message: e.to_string() })?;
    let failing_since =
        status.failing_since.as_deref().map(|text| parse_time("failingSince", text)).transpose()?;
    let pooler_pause_started = status
        .pooler_pause_started
        .as_deref()
        .map(|text| parse_time("poolerPauseStarted", text))
        .transpose()?;
    Ok(SwitchoverState {
        pooler_pause_started,
        phase: status.phase.map_or(Phase::Pending, phase_from),
        from: status.from.clone(),
        to: status.to.clone(),
        phase_times,
        fence_lsn,
        failing_since,
        promotion_lsn,
        promotion_timeline,
        write_unavailable,
        reason: status.reason.clone(),
    })
}

/// The machine's request from the object: spec, name (the rebuild token) and creation time
/// (the queue order).
pub fn request_from(switchover: &Switchover) -> Result<Request, ConvertError> {
    let name = switchover.metadata.name.clone().ok_or(ConvertError::Missing("metadata.name"))?;
    let created = switchover
        .metadata
        .creation_timestamp
        .as_ref()
        .ok_or(ConvertError::Missing("metadata.creationTimestamp"))?;
    let micros = created.0.as_microsecond();
    let created =
        Utc.timestamp_micros(micros).single().ok_or(ConvertError::Missing("a valid creationTimestamp"))?;
    Ok(Request {
        name,
        created,
        cluster: switchover.spec.cluster.clone(),
        target: switchover.spec.target_instance.clone(),
        mode: match switchover.spec.mode {
            SwitchoverMode::Planned => Mode::Planned,
            SwitchoverMode::Failover => Mode::Failover,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::crd::switchover::SwitchoverSpec;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_760_000_000_000 + ms).unwrap()
    }

    fn completed() -> SwitchoverState {
        let mut s =
            SwitchoverState { from: Some("pg-1".into()), to: Some("pg-2".into()), ..Default::default() };
        for (n, phase) in
            [Phase::Pending, Phase::Fencing, Phase::CatchingUp, Phase::Promoting, Phase::Rebuilding]
                .into_iter()
                .enumerate()
        {
            s.enter(phase, at(n as i64 * 250 + 1));
        }
        s.promotion_lsn = Some(Lsn(0x0300_0060));
        s.promotion_timeline = Some(2);
        s.write_unavailable = Some(Duration::from_millis(750));
        s.fence_lsn = Some(Lsn(0x0300_0028));
        s.enter(Phase::Completed, at(5000));
        s
    }

    #[test]
    fn a_failing_clean_up_survives_a_restart() {
        let mut state = completed();
        state.phase_times.pop();
        state.phase = Phase::CatchingUp;
        state.failing_since = Some(at(4000));
        state.reason = Some("target did not catch up".into());
        let status = to_status(&state);
        assert_eq!(status.fence_lsn.as_deref(), Some("0/3000028"));
        assert_eq!(status.failing_since.as_deref(), Some("2025-10-09T08:53:24.000000Z"));
        assert_eq!(from_status(Some(&status)).unwrap(), state);
        let bad = SwitchoverStatus { failing_since: Some("soon".into()), ..Default::default() };
        assert!(matches!(from_status(Some(&bad)), Err(ConvertError::Field { field: "failingSince", .. })));
    }

    #[test]
    fn round_trips_every_field() {
        let state = completed();
        let status = to_status(&state);
        assert_eq!(status.phase, Some(SwitchoverPhase::Completed));
        assert_eq!(status.promotion_lsn.as_deref(), Some("0/3000060"));
        assert_eq!(status.duration_seconds, Some(4.999));
        assert_eq!(status.phase_timestamps[1].time, "2025-10-09T08:53:20.251000Z");
        assert_eq!(from_status(Some(&status)).unwrap(), state);
        // through JSON too, as the apiserver stores it
        let json = serde_json::to_string(&status).unwrap();
        let back: SwitchoverStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(from_status(Some(&back)).unwrap(), state);
    }

    #[test]
    fn no_status_is_the_initial_state() {
        assert_eq!(from_status(None).unwrap(), SwitchoverState::default());
        assert_eq!(from_status(Some(&SwitchoverStatus::default())).unwrap(), SwitchoverState::default());
    }

    #[test]
    fn unreadable_fields_are_errors_not_defaults() {
        let bad_lsn = SwitchoverStatus { promotion_lsn: Some("nope".into()), ..Default::default() };
        assert!(matches!(
            from_status(Some(&bad_lsn)),
            Err(ConvertError::Field { field: "promotionLsn", .. })
        ));
        let bad_tl = SwitchoverStatus { promotion_timeline: Some(-1), ..Default::default() };
        assert!(matches!(
            from_status(Some(&bad_tl)),
            Err(ConvertError::Field { field: "promotionTimeline", .. })
        ));
        let bad_time = SwitchoverStatus {
            phase_timestamps: vec![PhaseTimestamp {
                phase: SwitchoverPhase::Pending,
                time: "yesterday".into(),
            }],
            ..Default::default()
        };
        assert!(matches!(
            from_status(Some(&bad_time)),
            Err(ConvertError::Field { field: "phaseTimestamps", .. })
        ));
    }

    #[test]
    fn request_from_the_object() {
        let mut so = Switchover::new(
            "so-7",
            SwitchoverSpec {
                cluster: "pg".into(),
                target_instance: Some("pg-2".into()),
                mode: SwitchoverMode::Failover,
            },
        );
        assert_eq!(request_from(&so), Err(ConvertError::Missing("metadata.creationTimestamp")));
        so.metadata.creation_timestamp =
            Some(Time(k8s_openapi::jiff::Timestamp::from_second(1_760_000_000).unwrap()));
        let request = request_from(&so).unwrap();
        assert_eq!(request.name, "so-7");
        assert_eq!(request.created, at(0));
        assert_eq!(request.target.as_deref(), Some("pg-2"));
        assert_eq!(request.mode, Mode::Failover);
    }
}
