#!/usr/bin/env bash
# Real faults on the three-node kind cluster, each under the writer of
# e2e/switchover-lib.sh, on a PgCluster of 3 instances spread over the 3 nodes:
#   1. the primary's node killed (kubelet, containerd and its pods die at once);
#   2. the primary's node partitioned for 60 s, then healed, with a second
#      writer pinned to the old primary on the cut-off side;
#   3. the primary's node frozen for 30 s, then thawed, with a writer pinned to
#      the old primary's address (in the default list since 2026-12-07: it passed
#      its last 5 runs; in the CI run of 997b75b the thawed old primary did not
#      stream again within 120 s);
#   4. the primary's node drained (relevo switches over first; 0 rows lost);
#   5. the primary's pod force-deleted;
#   6. with synchronous replication (required, ANY 1), the primary's node killed:
#      no acknowledged row may be lost, and the primary runs synchronously again;
#   7. the same with the primary's pod force-deleted (in the default list again
#      since 2026-12-07; it once failed its 60 s streaming bound in CI).
# HA_SCENARIOS="killed synchronous" runs only those (default: all).
# The operator's node killed mid-switchover is tests/operator-node.sh.
# After each: no acknowledged row lost where none may be (planned, drain), the
# losses reported where replication is asynchronous, never two primaries, the
# cut-off primary acknowledged nothing once its successor was being promoted,
# and every standby streams again within 20 s of the fault's end.
# The API server runs on the control plane, so faults hit workers only: the
# primary is first moved off the control plane, and the operator onto it.
source "$(dirname "$0")/../lib.sh"
if [[ $RELEVO_CLUSTER != kind ]]; then
  say "ha: node faults need the kind cluster (RELEVO_CLUSTER=kind); skipped"
  summary ha; exit
fi
source "$E2E_DIR/faults.sh"
source "$E2E_DIR/switchover-lib.sh"
so_init relevo-e2e-ha 3 || { summary ha; exit 1; }
trap 'node_recover_all; so_cleanup' EXIT

# --- placement ------------------------------------------------------------------
placement=$(k -n "$so_ns" get pods -l relevo.dev/cluster=demo,relevo.dev/instance -o wide)
say "instances:"; echo "$placement" >&2
spread=$(k -n "$so_ns" get pods -l relevo.dev/cluster=demo,relevo.dev/instance \
  -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | grep -c .)
[[ $spread == 3 ]] && pass "the 3 instances run on 3 nodes" || fail "the 3 instances run on $spread nodes"

# wanted NAME: whether HA_SCENARIOS asks for the scenario NAME.
wanted() { [[ " ${HA_SCENARIOS:-all} " == *" all "* || " ${HA_SCENARIOS:-all} " == *" $1 "* ]]; }

# report NAME: the scenario's figures, one line for the log and the README.
report() {
  say "FIGURES $1: writable after ${FIG_WRITABLE:-?}s, longest write gap ${FIG_GAP:-?}s, rows lost ${FIG_LOST:-?}, standbys streaming ${FIG_STREAM_AFTER_RECOVERY:-?}s after recovery${FIG_LAST_OLD_ACK:+, last ack of the cut-off primary ${FIG_LAST_OLD_ACK}s after the cut}"
}

if wanted killed; then
  so_allow_loss=1
  ready_for_fault
  run_scenario "ha: the primary's node killed" kill_primary_node
  FIG_LAST_OLD_ACK=; report killed
fi

if wanted partitioned; then
  so_allow_loss=1
  ready_for_fault
  run_scenario "ha: the primary's node partitioned for 60 s" partition_primary_node 60
  check_no_write_after_promotion "ha: partitioned"; report partitioned
fi

if wanted frozen; then
  so_allow_loss=1
  ready_for_fault
  run_scenario "ha: the primary's node frozen for 30 s" freeze_primary_node 30
  check_no_write_after_promotion "ha: frozen"; report frozen
fi

if wanted drained; then
  so_allow_loss=0
  ready_for_fault
  run_scenario "ha: the primary's node drained" drain_primary_node
  FIG_LAST_OLD_ACK=; report drained
fi

if wanted force-deleted; then
  so_allow_loss=1
  ready_for_fault
  run_scenario "ha: the primary's pod force-deleted" force_delete_primary
  report force-deleted
fi

# synchronous_ok WHAT: the SynchronousReplication condition is True and the
# primary runs relevo's ANY 1 list, within 120 s.
synchronous_ok() {
  local what=$1 names
  if wait_for "SynchronousReplication True ($what)" 120 bash -c \
      "[[ \$(source '$E2E_DIR/lib.sh'; k -n $so_ns get pgclusters.relevo.dev demo -o jsonpath='{.status.conditions[?(@.type==\"SynchronousReplication\")].status}') == True ]]"; then
    pass "ha: synchronous replication $what: $(k -n "$so_ns" get pgclusters.relevo.dev demo -o jsonpath='{.status.conditions[?(@.type=="SynchronousReplication")].message}')"
  else
    fail "ha: synchronous replication $what: the condition is not True: $(k -n "$so_ns" get pgclusters.relevo.dev demo -o jsonpath='{.status.conditions[?(@.type=="SynchronousReplication")]}')"
  fi
  names=$(PSQL_ROLE=superuser psql_to "$so_ns" demo-rw "SHOW synchronous_standby_names" 2>&1)
  [[ $names == 'ANY 1 ("demo-1", "demo-2", "demo-3"'* ]] \
    && pass "ha: synchronous replication $what: the primary runs $names" \
    || fail "ha: synchronous replication $what: the primary runs synchronous_standby_names '$names'"
}

if wanted synchronous; then
  k -n "$so_ns" patch pgclusters.relevo.dev demo --type merge \
    -p '{"spec":{"replication":{"synchronous":{"number":1,"method":"any","dataDurability":"required"}}}}' >/dev/null
  synchronous_ok "turned on"
  so_allow_loss=0
  ready_for_fault
  # The move off the control plane leaves a new primary that runs asynchronously until
  # the next reconcile sets its list; a failover then (rightly) finds no synchronous
  # standby to promote. That window is a known gap (issue 11); the fault comes after it.
  synchronous_ok "before the fault"
  run_scenario "ha: synchronous, the primary's node killed" kill_primary_node
  FIG_LAST_OLD_ACK=; report synchronous-killed
  synchronous_ok "after the failover"
fi

# In the default run again since 2026-12-07 (issue 11 asks for it): it was left
# out after the CI run of 48af556, where its standbys streamed again only 116 s
# after the fault (the story's bound is 60 s); it passed every run since the
# streaming repairs that came after.
if wanted synchronous-force-deleted; then
  k -n "$so_ns" patch pgclusters.relevo.dev demo --type merge \
    -p '{"spec":{"replication":{"synchronous":{"number":1,"method":"any","dataDurability":"required"}}}}' >/dev/null
  synchronous_ok "on"
  so_allow_loss=0
  ready_for_fault
  run_scenario "ha: synchronous, the primary's pod force-deleted" force_delete_primary
  report synchronous-force-deleted
  synchronous_ok "after the force-delete"
fi

k -n "$so_ns" get switchovers.relevo.dev >&2
summary ha
