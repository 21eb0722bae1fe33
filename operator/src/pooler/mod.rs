//! The managed PgBouncer: the pooler pod's entrypoint (`relevo pooler`), which runs
//! PgBouncer, owns its `[databases]` target and serves an authenticated control endpoint
//! (pause, resume, target), and the operator's side of it.
//!
//! - `ini`: pure rendering of the files PgBouncer reads (the operator's template, the
//!   pooler's `[databases]` section and userlist).
//! - `pause`: the pooler-side pause bound, a pure state machine.
//! - `admin`: PgBouncer's admin console (PAUSE, RESUME, RELOAD) over tokio-postgres.
//! - `server`: the control endpoint (axum), bearer-token authenticated.
//! - `run`: the process: files, PgBouncer child, watchdog, signals.
//! - `client`: the operator's calls to each pooler pod, and the answers' parsing.
//! - `plan`: pure; which pooler action a switchover step needs before and after it.
//! - `observe`: the operator's view of every pooler pod of a cluster.
//! - `reconcile`: the PgCluster controller's part: objects on or off, targets in steady state.
//! - `hook`: the switchover controller's calls before and after executing a step.

pub mod admin;
pub mod client;
pub mod hook;
pub mod ini;
pub mod observe;
pub mod pause;
pub mod plan;
pub mod reconcile;
pub mod run;
pub mod server;

/// Port PgBouncer listens on for clients (what `<cluster>-pooler` exposes).
pub const POOLER_PORT: i32 = 5432;
/// Port of the control endpoint (pause, resume, target, status, healthz).
pub const CONTROL_PORT: i32 = 8008;
/// The operator's template of pgbouncer.ini (a ConfigMap), without `[databases]`.
pub const TEMPLATE_DIR: &str = "/etc/relevo/pooler";
/// The pooler Secret: the userlist of the cluster's users and the control token.
pub const AUTH_DIR: &str = "/etc/relevo/pooler-auth";
/// Files the pooler writes for PgBouncer (an emptyDir): the final pgbouncer.ini and userlist.
pub const RUN_DIR: &str = "/run/relevo-pooler";
/// Key of the template in the ConfigMap.
pub const INI_KEY: &str = "pgbouncer.ini";
/// Key of the userlist in the Secret (PgBouncer's auth_file format).
pub const USERLIST_KEY: &str = "userlist.txt";
/// Key of the control endpoint's bearer token in the Secret.
pub const TOKEN_KEY: &str = "token";
/// PgBouncer admin user of the pooler process itself; its password is generated at every
/// start and never leaves the pod's memory and its emptyDir.
pub const ADMIN_USER: &str = "relevo_pooler";
