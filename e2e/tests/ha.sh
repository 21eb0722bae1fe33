#!/usr/bin/env bash
# Real faults on the three-node kind cluster, each under the writer of
# e2e/switchover-lib.sh, on a PgCluster of 3 instances spread over the 3 nodes:
#   1. the primary's node killed (kubelet, containerd and its pods die at once);
#   2. the primary's node partitioned for 60 s, then healed, with a second
#      writer pinned to the old primary on the cut-off side;
#   3. the primary's node frozen for 30 s, then thawed, with a writer pinned to
#      the old primary's address;
#   4. the primary's node drained (relevo switches over first; 0 rows lost);
#   5. the primary's pod force-deleted;
#   6. the operator's node killed in the middle of a planned switchover.
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
trap 'node_recover_all; operator_prefers ""; so_cleanup' EXIT

# --- placement ------------------------------------------------------------------
placement=$(k -n "$so_ns" get pods -l relevo.dev/cluster=demo,relevo.dev/instance -o wide)
say "instances:"; echo "$placement" >&2
spread=$(k -n "$so_ns" get pods -l relevo.dev/cluster=demo,relevo.dev/instance \
  -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | grep -c .)
[[ $spread == 3 ]] && pass "the 3 instances run on 3 nodes" || fail "the 3 instances run on $spread nodes"

# report NAME: the scenario's figures, one line for the log and the README.
report() {
  say "FIGURES $1: writable after ${FIG_WRITABLE:-?}s, longest write gap ${FIG_GAP:-?}s, rows lost ${FIG_LOST:-?}, standbys streaming ${FIG_STREAM_AFTER_RECOVERY:-?}s after recovery${FIG_LAST_OLD_ACK:+, last ack of the cut-off primary ${FIG_LAST_OLD_ACK}s after the cut}"
}

so_allow_loss=1
ready_for_fault
run_scenario "ha: the primary's node killed" kill_primary_node
FIG_LAST_OLD_ACK=; report killed

ready_for_fault
run_scenario "ha: the primary's node partitioned for 60 s" partition_primary_node 60
check_no_write_after_promotion "ha: partitioned"; report partitioned

ready_for_fault
run_scenario "ha: the primary's node frozen for 30 s" freeze_primary_node 30
check_no_write_after_promotion "ha: frozen"; report frozen

so_allow_loss=0
ready_for_fault
run_scenario "ha: the primary's node drained" drain_primary_node
FIG_LAST_OLD_ACK=; report drained

so_allow_loss=1
ready_for_fault
run_scenario "ha: the primary's pod force-deleted" force_delete_primary
report force-deleted

# --- the operator's node killed during a planned switchover --------------------
so_allow_loss=0
ready_for_fault
op_node=$(k get nodes -o name | sed 's|node/||' | grep -vxF -e "$KIND_CONTROL_PLANE" -e "$(so_node)" | head -1)
operator_prefers "$op_node"
if [[ $(operator_node) == "$op_node" ]]; then
  pass "the operator runs on $op_node"
else
  fail "the operator runs on $(operator_node), not $op_node"
fi
old_operator=$(live_operator | awk '{print $1}')
kill_operator_node_midway() {
  local target phase= i watch_pid
  target=$(instance_on "$KIND_CONTROL_PLANE")
  planned ha-operator-node "$target"
  timeout 60 "$KUBECTL" -n "$so_ns" get switchovers.relevo.dev ha-operator-node -w \
    -o jsonpath='{.status.phase}{"\n"}' >"$SO_WORK/phases" 2>&1 & watch_pid=$!
  for ((i = 0; i < 600 && ${#phase} == 0; i++)); do
    phase=$(grep -m1 -vxE 'Pending|' "$SO_WORK/phases") || sleep 0.05
  done
  node_kill "$op_node"
  kill "$watch_pid" 2>/dev/null || true
  [[ $phase =~ ^(Fencing|CatchingUp|Promoting|Rebuilding)$ ]] \
    && pass "the operator's node $op_node killed with the switchover in phase $phase" \
    || fail "the operator's node killed with the switchover in phase '${phase:-none}', not in the middle"
}
run_scenario "ha: the operator's node killed during a planned switchover" kill_operator_node_midway
report operator-node-killed
new_operator=$(live_operator | awk '{print $1}')
if [[ -n $new_operator && $new_operator != "$old_operator" ]]; then
  pass "a new operator ($new_operator on $(operator_node)) completed the switchover"
else
  fail "the switchover was not completed by a new operator (running: '${new_operator}', killed: $old_operator)"
fi
node_restart "$op_node"
so_recovered_at=$(now)
if wait_for "2 standbys streaming" 120 so_standbys_streaming 2; then
  pass "after $op_node returned, both standbys stream ($(awk -v s="$so_recovered_at" -v e="$(now)" 'BEGIN {printf "%.2f", e - s}')s)"
else
  fail "after $op_node returned, not both standbys stream"
fi
k -n "$so_ns" get switchovers.relevo.dev >&2
summary ha
