//! relevo: a Kubernetes operator for PostgreSQL primary/standby clusters.
//!
//! Pure pieces (CRD types, validation, builders, status computation, the instance plan)
//! live in the library so that they are unit-testable; I/O stays at the edges.

pub mod backup;
pub mod cli;
pub mod config;
pub mod crd;
pub mod duration;
pub mod error;
pub mod http;
pub mod instance;
pub mod leader;
pub mod lease;
pub mod metrics;
pub mod operator;
pub mod pgbackrest;
pub mod pgcluster;
pub mod pki;
pub mod pooler;
pub mod postgres;
pub mod protocol;
pub mod rebuild;
pub mod repohost;
pub mod runtime;
pub mod switchover;
#[cfg(test)]
pub mod test_pg;
pub mod tls;
