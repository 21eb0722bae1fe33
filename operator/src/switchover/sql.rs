//! The SQL behind every observation and step, as constants and pure builders, so that the
//! exact text is reviewed and tested once (the rebuild integration test runs several of them
//! against a real PostgreSQL 15).
//!
//! Parameters (`$1`) are used wherever PostgreSQL allows them. `ALTER SYSTEM` does not take
//! parameters, so its values are quoted by [`quote_literal`]. Passwords never appear here:
//! connection strings carry `passfile=`, never `password=`.

/// The status SQL lives with the one probe that runs it ([`crate::postgres::probe`]); the
/// steps below and the rebuild tests use these two as they are.
pub use crate::postgres::probe::{INSTANCE_STATUS, LIST_SLOTS};

pub const IS_IN_RECOVERY: &str = "SELECT pg_is_in_recovery()";
/// Timeline of the latest checkpoint: it equals the current timeline once a checkpoint has
/// completed after promotion, which pgBackRest waits for.
pub const CHECKPOINT_TIMELINE: &str = "SELECT timeline_id FROM pg_control_checkpoint()";
pub const CHECKPOINT: &str = "CHECKPOINT";
pub const RELOAD_CONF: &str = "SELECT pg_reload_conf()";

/// `$1` = slot name. Creates it only if absent, reserving WAL at once, so running it twice is
/// harmless. Returns one row when it created the slot, none otherwise.
pub const CREATE_SLOT_IF_ABSENT: &str = "\
SELECT pg_create_physical_replication_slot($1, true) \
WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)";

/// `$1` = slot name. Drops it only if present; an active slot is kept (the call errors) so a
/// standby streaming through it is not cut off.
pub const DROP_SLOT_IF_PRESENT: &str = "\
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1";

/// Promotes if still in recovery, so a repeated step is a no-op returning true. pg_promote
/// returns false if promotion did not finish within `wait_seconds`.
pub fn promote(wait_seconds: u32) -> String {
    format!(
        "SELECT CASE WHEN pg_is_in_recovery() THEN pg_promote(wait => true, wait_seconds => {wait_seconds}) ELSE true END"
    )
}

/// `ALTER SYSTEM SET primary_conninfo = ...`; run it, then [`RELOAD_CONF`] (PostgreSQL 13+
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

/// A libpq keyword/value connection string. Values are single-quoted when needed, with `\` and
/// `'` escaped, so any value round-trips.
pub fn conninfo(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(key, value)| format!("{key}={}", conninfo_value(value))).collect::<Vec<_>>().join(" ")
}

fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty() && value.chars().all(|c| !c.is_whitespace() && c != '\'' && c != '\\');
    if plain { value.to_owned() } else { format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'")) }
}

/// Replaces the value of `password=` in a conninfo by `***`, for error messages and logs.
/// relevo never builds such strings, but a user-supplied one might contain it.
pub fn redact_conninfo(conninfo: &str) -> String {
    let mut out = String::with_capacity(conninfo.len());
    let mut rest = conninfo;
    while let Some(pos) = rest.find("password") {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        let after_key = after["password".len()..].trim_start();
        let Some(value) = after_key.strip_prefix('=') else {
            out.push_str("password");
            rest = &after["password".len()..];
            continue;
        };
        out.push_str("password=***");
        let value = value.trim_start();
        rest = if let Some(quoted) = value.strip_prefix('\'') {
            let mut end = quoted.len();
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '\'') => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            &quoted[end..]
        } else {
            value.find(char::is_whitespace).map_or("", |i| &value[i..])
        };
    }
    out.push_str(rest);
    out
}

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
    let hash = format!("{:08x}", fnv1a32(instance.as_bytes()));
    format!("{}_{hash}", &full[..MAX - hash.len() - 1])
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
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
    fn conninfo_quotes_only_when_needed() {
        let info =
            conninfo(&[("host", "pg-1.pg"), ("port", "5432"), ("passfile", "/etc/relevo pass/x"), ("x", "")]);
        assert_eq!(info, r"host=pg-1.pg port=5432 passfile='/etc/relevo pass/x' x=''");
        assert_eq!(conninfo(&[("a", r"it's\")]), r"a='it\'s\\'");
    }

    #[test]
    fn redacts_passwords_in_every_form() {
        assert_eq!(redact_conninfo("host=a password=secret user=b"), "host=a password=*** user=b");
        assert_eq!(redact_conninfo("password = 'se cr\\'et' user=b"), "password=*** user=b");
        assert_eq!(redact_conninfo("host=a password=secret"), "host=a password=***");
        assert_eq!(redact_conninfo("host=a passfile=/x"), "host=a passfile=/x");
        assert!(!redact_conninfo("password='a' password=b").contains('b'));
    }

    #[test]
    fn slot_statements_are_conditional() {
        assert!(CREATE_SLOT_IF_ABSENT.contains("WHERE NOT EXISTS"));
        assert!(DROP_SLOT_IF_PRESENT.contains("FROM pg_replication_slots WHERE slot_name = $1"));
        assert!(LIST_SLOTS.contains("relevo\\_%"), "underscore must be escaped in LIKE");
    }
}
