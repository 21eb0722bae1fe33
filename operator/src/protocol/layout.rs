//! The contract between the pod spec the operator builds and the `relevo instance` entrypoint
//! that runs inside it: paths, users, ports and environment variable names. Both sides use
//! these constants, so they cannot drift apart. The postgres image must match them
//! (see images/postgres).

/// uid and gid of `postgres` in the relevo/postgres image. The image creates the user with
/// this fixed id before installing PostgreSQL, because Debian's package would otherwise pick
/// a dynamic system uid, and the pod's runAsUser/fsGroup must name the owner of PGDATA.
pub const POSTGRES_UID: i64 = 999;

/// PostgreSQL's port, in the pod and on every Service.
pub const POSTGRES_PORT: i32 = 5432;

/// OS and database superuser. Local connections as this user use peer authentication.
pub const SUPERUSER: &str = "postgres";
/// Role standbys and pg_basebackup connect as. REPLICATION LOGIN, nothing else.
pub const REPLICATION_USER: &str = "streaming_replica";

/// Mount point of the `pgdata` volume.
pub const DATA_MOUNT: &str = "/var/lib/postgresql/data";
/// PGDATA is a directory inside the volume, not its root: a fresh volume's root may hold
/// `lost+found` and has the wrong mode for initdb.
pub const PGDATA: &str = "/var/lib/postgresql/data/pgdata";
/// Mount point of the cluster ConfigMap (postgresql.conf, pg_hba.conf).
pub const CONFIG_DIR: &str = "/etc/relevo/config";
/// postgresql.conf, rendered by the operator.
pub const POSTGRESQL_CONF: &str = "/etc/relevo/config/postgresql.conf";
/// pg_hba.conf, rendered by the operator.
pub const PG_HBA_CONF: &str = "/etc/relevo/config/pg_hba.conf";
/// Mount point of the server TLS Secret (`<cluster>-server-tls`): PostgreSQL's certificate
/// and key, and the CA every client of the pod (walreceiver, pg_basebackup, pg_rewind)
/// verifies its peer against.
pub const TLS_DIR: &str = "/etc/relevo/tls";
pub const SERVER_CERT_FILE: &str = "/etc/relevo/tls/tls.crt";
pub const SERVER_KEY_FILE: &str = "/etc/relevo/tls/tls.key";
pub const CA_FILE: &str = "/etc/relevo/tls/ca.crt";
/// libpq's `sslmode` for every connection an instance makes: TLS, a certificate chaining to
/// [`CA_FILE`], and the host name it dialled in that certificate.
pub const SSLMODE: &str = "verify-full";
/// Settings that differ per instance (cluster_name, primary_conninfo, primary_slot_name),
/// written by the entrypoint on every start and included at the end of postgresql.conf.
pub const INSTANCE_CONF: &str = "/var/lib/postgresql/data/pgdata/relevo-instance.conf";
/// Unix socket directory (an emptyDir: the root filesystem is read-only).
pub const SOCKET_DIR: &str = "/var/run/postgresql";
/// Scratch space for the entrypoint: the password file of the replication connection and
/// initdb's temporary password file (an emptyDir, memory-backed).
pub const RUN_DIR: &str = "/run/relevo";
/// libpq password file that primary_conninfo and pg_basebackup use.
pub const PGPASSFILE: &str = "/run/relevo/pgpass";

/// Environment variables the StatefulSet sets and the entrypoint reads (through clap).
pub mod env {
    /// Name of the PgCluster.
    pub const CLUSTER: &str = "RELEVO_CLUSTER";
    /// Name of this instance, `<cluster>-<N>`.
    pub const INSTANCE: &str = "RELEVO_INSTANCE";
    /// What to do with an empty data directory: `initdb` or `clone`.
    pub const BOOTSTRAP: &str = "RELEVO_BOOTSTRAP";
    /// Host of the primary to clone from and stream from: the `<cluster>-rw` Service.
    pub const PRIMARY_HOST: &str = "RELEVO_PRIMARY_HOST";
    /// Application database and owner created by initdb.
    pub const APP_DATABASE: &str = "RELEVO_APP_DATABASE";
    pub const APP_OWNER: &str = "RELEVO_APP_OWNER";
    /// Passwords, from the generated Secrets. Never logged, never passed as arguments.
    pub const SUPERUSER_PASSWORD: &str = "RELEVO_SUPERUSER_PASSWORD";
    pub const REPLICATION_PASSWORD: &str = "RELEVO_REPLICATION_PASSWORD";
    pub const APP_PASSWORD: &str = "RELEVO_APP_PASSWORD";
    /// Bootstrap `restore`: the source cluster's stanza, the pgBackRest config that reaches
    /// its repository, and the target (a backup label and/or a time; neither = the latest
    /// backup, just consistent).
    pub const RESTORE_STANZA: &str = "RELEVO_RESTORE_STANZA";
    pub const RESTORE_CONFIG: &str = "RELEVO_RESTORE_CONFIG";
    pub const RESTORE_LABEL: &str = "RELEVO_RESTORE_LABEL";
    pub const RESTORE_TARGET_TIME: &str = "RELEVO_RESTORE_TARGET_TIME";
    /// PostgreSQL's own: where the data directory is.
    pub const PGDATA: &str = "PGDATA";
}

/// Path of the relevo binary in the postgres image.
pub const RELEVO_BINARY: &str = "/usr/local/bin/relevo";

/// The physical replication slot a standby uses on its primary: `relevo_` + the instance name,
/// lower-cased, with anything outside `[a-z0-9_]` turned into `_` (instance names are DNS
/// labels, so only `-` changes and the mapping is one-to-one). Names that would pass
/// PostgreSQL's 63-byte limit are cut and suffixed with a hash of the full name, so two long
/// names still get two slots.
pub fn slot_name(instance: &str) -> String {
    const PREFIX: &str = "relevo_";
    const MAX: usize = 63;
    let cleaned: String = instance
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '_' })
        .collect();
    let full = format!("{PREFIX}{cleaned}");
    if full.len() <= MAX {
        return full;
    }
    let hash = format!("{:08x}", crate::protocol::hash::fnv1a32(instance.as_bytes()));
    format!("{}_{hash}", &full[..MAX - hash.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_follow_postgres_rules() {
        assert_eq!(slot_name("pg-1"), "relevo_pg_1");
        assert_eq!(slot_name("Main-DB-2"), "relevo_main_db_2");
        assert_eq!(slot_name("a.b c"), "relevo_a_b_c");
        let valid = |s: &str| {
            s.len() <= 63 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        let long_a = "a".repeat(63);
        let long_b = format!("{}b", "a".repeat(62));
        for name in [long_a.as_str(), long_b.as_str(), "pg-1", "x"] {
            assert!(valid(&slot_name(name)), "{}", slot_name(name));
        }
        assert_eq!(slot_name(&long_a).len(), 63);
        assert_ne!(slot_name(&long_a), slot_name(&long_b), "long names must not collide");
        assert_eq!(slot_name(&long_a), slot_name(&long_a), "deterministic");
        assert_eq!(slot_name(&"a".repeat(56)), format!("relevo_{}", "a".repeat(56)), "63 bytes exactly fits");
    }

    #[test]
    fn slot_names_are_valid_postgres_slot_names() {
        let slot = slot_name("my-db-2");
        assert_eq!(slot, "relevo_my_db_2");
        assert!(slot.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }

    #[test]
    fn pgdata_and_instance_conf_live_on_the_volume() {
        assert!(PGDATA.starts_with(DATA_MOUNT) && PGDATA != DATA_MOUNT);
        assert!(INSTANCE_CONF.starts_with(PGDATA));
        assert!(PGPASSFILE.starts_with(RUN_DIR));
        for file in [SERVER_CERT_FILE, SERVER_KEY_FILE, CA_FILE] {
            assert!(file.starts_with(TLS_DIR) && !file.starts_with(CONFIG_DIR));
        }
    }
}
