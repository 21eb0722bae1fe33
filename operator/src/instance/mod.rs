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
pub mod orphans;
pub mod plan;
pub mod shutdown;
#[cfg(test)]
mod shutdown_pg_tests;
pub mod supervise;
pub mod tools;
pub mod volume_lock;

/// Runs the entrypoint to the end: prepares the data directory, then supervises PostgreSQL
/// until it exits; returns its exit status. A stop signal is obeyed at every stage.
pub fn run(args: &exec::InstanceArgs) -> Result<std::process::ExitStatus, exec::ExecError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(exec::io("starting the supervisor runtime"))?;
    let result = runtime.block_on(async {
        let mut signals = supervise::StopSignals::install()?;
        // Held until the entrypoint ends: see volume_lock.
        let Some(_volume) = hold_the_volume(args, &mut signals).await? else {
            return Ok(supervise::stopped_before_postgres());
        };
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

/// The volume's lock ([`volume_lock`]), waiting for a previous pod of this instance that
/// still runs; `None` when a stop signal came first.
async fn hold_the_volume(
    args: &exec::InstanceArgs,
    signals: &mut supervise::StopSignals,
) -> Result<Option<volume_lock::VolumeLock>, exec::ExecError> {
    let volume = args.pgdata.parent().unwrap_or(&args.pgdata);
    let path = volume.join(VOLUME_LOCK_FILE);
    let taken = volume_lock::try_take(&path).map_err(exec::io(format!("locking {}", path.display())))?;
    let file = match taken {
        volume_lock::Taken::AtOnce(lock) => return Ok(Some(lock)),
        volume_lock::Taken::Held(file) => file,
    };
    exec::log(
        args,
        "another process still uses this volume (a previous pod of this instance, deleted without \
         waiting for it to stop); waiting for it to end before touching the data directory",
    );
    let since = std::time::Instant::now();
    let Some(waited) = signals.unless_stopped(move || volume_lock::wait(file)).await? else {
        return Ok(None);
    };
    let lock = waited.map_err(exec::io(format!("locking {}", path.display())))?;
    exec::log(
        args,
        &format!("the previous process ended after {:.1}s; starting", since.elapsed().as_secs_f64()),
    );
    Ok(Some(lock))
}

/// At the volume's root, beside PGDATA: never copied by a clone, never wiped by a rebuild.
const VOLUME_LOCK_FILE: &str = "relevo-instance.lock";
