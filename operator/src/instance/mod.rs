//! `relevo instance`: the entrypoint of every PostgreSQL pod. It bootstraps an empty volume
//! (initdb on the first instance, pg_basebackup on the others), writes the settings that
//! differ per instance, then supervises PostgreSQL, turning the pod's SIGTERM into a fast
//! shutdown.
//!
//! [`plan`] decides, purely, what to do; [`exec`] does it; [`conf`] renders the files.
//! [`supervise`] runs PostgreSQL and obeys the operator's fence and rebuild markers, as
//! [`marker_decision`] decides.

pub mod archive_backfill;
#[cfg(test)]
mod archive_backfill_pg_tests;
pub mod conf;
pub mod control;
pub mod exec;
pub mod lease_keeper;
pub mod marker_decision;
pub mod plan;
pub mod shutdown;
#[cfg(test)]
mod shutdown_pg_tests;
pub mod supervise;
pub mod tools;

/// Runs the entrypoint to the end: prepares the data directory, then supervises PostgreSQL
/// until it exits; returns its exit status. A stop signal is obeyed at every stage.
pub fn run(args: &exec::InstanceArgs) -> Result<std::process::ExitStatus, exec::ExecError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(exec::io("starting the supervisor runtime"))?;
    let result = runtime.block_on(async {
        let mut signals = supervise::StopSignals::install()?;
        let owned = args.clone();
        let Some(prepared) = signals.unless_stopped(move || exec::prepare(&owned)).await? else {
            eprintln!(
                "relevo instance: stopped while preparing the data directory; it resumes at the next start"
            );
            return Ok(supervise::stopped_before_postgres());
        };
        let prepared = prepared?;
        supervise::supervise_postgres(
            args,
            &prepared.superuser_password,
            prepared.set_passwords,
            &mut signals,
        )
        .await
    });
    // Work abandoned at a stop signal is not waited for: it dies with the container.
    runtime.shutdown_background();
    result
}
