//! The SQL behind every observation and step, as constants and pure builders, so that the
//! exact text is reviewed and tested once (the rebuild integration test runs several of them
//! against a real PostgreSQL 15).
//!
//! Parameters (`$1`) are used wherever PostgreSQL allows them. `ALTER SYSTEM` does not take
//! parameters, so its values are quoted by [`quote_literal`]. Passwords never appear here:
//! connection strings carry `passfile=`, never `password=`.

pub use crate::postgres::probe::{INSTANCE_STATUS, LIST_SLOTS};
/// The status SQL lives with the one probe that runs it ([`crate::postgres::probe`]); the
/// steps below and the rebuild tests use these two as they are.
pub use crate::protocol::layout::slot_name;

pub const IS_IN_RECOVERY: &str = "SELECT pg_is_in_recovery()";
/// Timeline of the latest checkpoint: it equals the current timeline once a checkpoint has
/// completed after promotion, which pgBackRest waits for.
pub const CHECKPOINT_TIMELINE: &str = "SELECT timeline_id FROM pg_control_checkpoint()";
pub const CHECKPOINT: &str = "CHECKPOINT";

/// `$1` = slot name. Creates it only if absent, reserving WAL at once, so running it twice is
/// harmless. Returns one row when it created the slot, none otherwise.
pub const CREATE_SLOT_IF_ABSENT: &str = "\
SELECT pg_create_physical_replication_slot($1, true) \
WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)";

/// `$1` = slot name. Drops it only if present and inactive, so a standby streaming through it
/// is not cut off (it is dropped on a later round). Returns one row when it dropped the slot.
pub const DROP_SLOT_IF_PRESENT: &str = "\
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active";

/// Ends the walsender holding the slot `$1`, if one does (a row per walsender signalled).
pub const END_STREAM_OF_SLOT: &str = "\
SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL";

/// Promotes if still in recovery, so a repeated step is a no-op returning true. pg_promote
/// returns false if promotion did not finish within `wait_seconds`.
pub fn promote(wait_seconds: u32) -> String {
    format!(
        "SELECT CASE WHEN pg_is_in_recovery() THEN pg_promote(wait => true, wait_seconds => {wait_seconds}) ELSE true END"
    )
}

/// `ALTER SYSTEM SET primary_conninfo = ...`; run it, then `pg_reload_conf()` (PostgreSQL 13+
/// restarts the walreceiver on reload when this changes). Not inside a transaction block.
pub fn set_primary_conninfo(conninfo: &str) -> String {
    format!("ALTER SYSTEM SET primary_conninfo = {}", quote_literal(conninfo))
}

/// `ALTER SYSTEM SET primary_slot_name = ...`.
pub fn set_primary_slot_name(slot: &str) -> String {
    format!("ALTER SYSTEM SET primary_slot_name = {}", quote_literal(slot))
}

/// A SQL string literal under `standard_conforming_strings = on` (the default since 9.1):
/// quotes doubled, backslashes literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promote_is_guarded_and_bounded() {
        let sql = promote(30);
        assert!(sql.contains("WHEN pg_is_in_recovery() THEN pg_promote(wait => true, wait_seconds => 30)"));
        assert!(sql.ends_with("ELSE true END"));
    }

    #[test]
    fn alter_system_values_are_quoted() {
        assert_eq!(
            set_primary_slot_name("relevo_pg_1"),
            "ALTER SYSTEM SET primary_slot_name = 'relevo_pg_1'"
        );
        assert_eq!(
            set_primary_conninfo("host=a application_name='it''s'"),
            "ALTER SYSTEM SET primary_conninfo = 'host=a application_name=''it''''s'''"
        );
        assert_eq!(quote_literal(r"a\b"), r"'a\b'");
    }

    #[test]
    fn slot_statements_are_conditional() {
        assert!(CREATE_SLOT_IF_ABSENT.contains("WHERE NOT EXISTS"));
        assert!(DROP_SLOT_IF_PRESENT.contains("FROM pg_replication_slots WHERE slot_name = $1"));
        assert!(LIST_SLOTS.contains("relevo\\_%"), "underscore must be escaped in LIKE");
    }
}
