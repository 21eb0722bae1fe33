//! Integration test against real PostgreSQL 15: a stale slot that a standby still streams
//! through (a standby cascading from a demoted primary) has its stream ended, and is dropped
//! once the standby streams from elsewhere.

use std::collections::BTreeSet;

use super::converge;
use crate::test_pg::{PgBed, free_port};

const PASSWORD: &str = "relevo-slots-test-secret";

fn walsender_pid(bed: &PgBed, port: u16) -> String {
    bed.sql(port, "SELECT coalesce(max(pid), 0) FROM pg_stat_replication WHERE application_name = 'demo-2'")
}

#[test]
fn a_stale_slot_in_use_has_its_stream_ended_and_is_dropped_once_free() {
    let tools = ["initdb", "pg_ctl", "postgres", "pg_basebackup", "psql"];
    let mut bed = PgBed::new("relevo-slots", &tools, PASSWORD);
    let (old_primary, standby) = (free_port(), free_port());
    bed.initdb_streaming("old-primary");
    bed.start("old-primary", old_primary);
    bed.sql(old_primary, "SELECT pg_create_physical_replication_slot('relevo_demo_2', true)");

    bed.clone_standby(
        "standby",
        old_primary,
        "user=postgres application_name=demo-2",
        "primary_slot_name = 'relevo_demo_2'\n",
    );
    bed.start("standby", standby);
    bed.wait_streaming(old_primary, "demo-2");
    let first = walsender_pid(&bed, old_primary);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let converge_once = || {
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::Config::new()
                .host_path(&bed.sock)
                .port(old_primary)
                .user("postgres")
                .dbname("postgres")
                .connect(tokio_postgres::NoTls)
                .await
                .expect("connecting over the socket");
            tokio::spawn(connection);
            converge(&client, &BTreeSet::new(), "demo").await.expect("converge");
        })
    };

    // In use: not dropped, but the stream is ended; this standby reconnects to the same server
    // (a real one reconnects through -rw, to the new primary).
    converge_once();
    bed.wait_until("the standby's stream ended and started again", || {
        let now = walsender_pid(&bed, old_primary);
        (now != "0" && now != first, format!("walsender pid {now}, first {first}"))
    });
    let slots = bed.sql(old_primary, "SELECT string_agg(slot_name, ',') FROM pg_replication_slots");
    assert_eq!(slots, "relevo_demo_2", "an active slot is not dropped in the same pass");

    // The standby now streams from elsewhere (here: nowhere): the slot goes.
    bed.sql(standby, "ALTER SYSTEM SET primary_conninfo = ''");
    bed.sql(standby, "SELECT pg_reload_conf()");
    bed.wait_until("the stale slot dropped", || {
        converge_once();
        let left = bed.sql(old_primary, "SELECT count(*) FROM pg_replication_slots");
        (left == "0", format!("{left} slots left"))
    });
}
