#!/usr/bin/env bash
# The leading operator's node killed in the middle of a planned switchover
# (kind), under the writer of e2e/switchover-lib.sh, on a PgCluster of 3
# instances: the standby operator replica on another node takes the
# relevo-operator Lease (TTL 15 s + 2 s margin after the last renewal it saw)
# and completes the switchover with nothing lost.
# Then the primary's node, which runs the leading operator too, killed in the
# middle of a planned switchover (see below).
# In the default list since the standby replica (2026-12-07). Before it, the
# replacement operator started only after the node's eviction (~31 s) and the
# story failed about one run in three.
source "$(dirname "$0")/../lib.sh"
if [[ $RELEVO_CLUSTER != kind ]]; then
  say "operator-node: needs the kind cluster (RELEVO_CLUSTER=kind); skipped"
  summary operator-node; exit
fi
source "$E2E_DIR/faults.sh"
source "$E2E_DIR/switchover-lib.sh"
so_init relevo-e2e-operator-node 3 || { summary operator-node; exit 1; }
trap 'node_recover_all; so_cleanup' EXIT
so_allow_loss=0
ready_for_fault
op_node=$(k get nodes -o name | sed 's|node/||' | grep -vxF -e "$KIND_CONTROL_PLANE" -e "$(so_node)" | head -1)
operator_leads_on "$op_node"
# Any other replica, Ready or still starting (the deleted leader's replacement
# may be seconds old): its node is what matters here.
standby_node=$(k -n relevo-system get pods -l app.kubernetes.io/name=relevo-operator -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName}{"\n"}{end}' \
  | awk -v leader="$(operator_leader)" '$1 != leader {print $2; exit}')
if [[ $(operator_node) == "$op_node" && -n $standby_node && $standby_node != "$op_node" ]]; then
  pass "the operator leads on $op_node, its standby runs on $standby_node"
else
  fail "the operator leads on '$(operator_node)' (wanted $op_node), its standby on '${standby_node}'"
fi
[[ $(so_node) != "$op_node" ]] || fail "the primary $(so_primary) runs on $op_node too"
old_operator=$(live_operator | awk '{print $1}')
kill_operator_node_midway() {
  local target phase
  target=$(instance_on "$KIND_CONTROL_PLANE")
  planned ha-operator-node "$target"
  phase=$(first_phase_after_pending ha-operator-node)
  killed_at=$(now)
  node_kill "$op_node"
  [[ $phase =~ ^(Fencing|CatchingUp|Promoting|Rebuilding)$ ]] \
    && pass "the operator's node $op_node killed with the switchover in phase $phase" \
    || fail "the operator's node killed with the switchover in phase '${phase:-none}', not in the middle"
}
run_scenario "ha: the operator's node killed during a planned switchover" kill_operator_node_midway
new_operator=$(live_operator | awk '{print $1}')
if [[ -n $new_operator && $new_operator != "$old_operator" ]]; then
  acquired=$(k -n relevo-system get leases.coordination.k8s.io relevo-operator -o jsonpath='{.spec.acquireTime}')
  pass "the standby operator $new_operator (on $(operator_node)) took over $(awk -v s="$killed_at" -v e="$(date -d "$acquired" +%s.%N)" 'BEGIN {printf "%.1f", e - s}')s after the kill"
else
  fail "no other operator took over (leading: '${new_operator}', killed: $old_operator)"
fi
node_restart "$op_node"
so_recovered_at=$(now)
if wait_for "2 standbys streaming" 120 so_standbys_streaming 2; then
  pass "after $op_node returned, both standbys stream ($(awk -v s="$so_recovered_at" -v e="$(now)" 'BEGIN {printf "%.2f", e - s}')s)"
else
  fail "after $op_node returned, not both standbys stream"
fi

# The primary's node, which also runs the leading operator, killed in the middle
# of a planned switchover away from it: nothing can acknowledge the fence. Once
# the old primary's Lease has expired on the standby operator's clock (it took
# over ~17 s after the kill, and ages the Lease from then), the planned switchover
# must end Failed, saying the old primary was lost, and automatic failover must
# promote a standby; asynchronous replication may lose the last commits.
ready_for_fault
both_node=$(so_node)
operator_leads_on "$both_node"
old_operator=$(live_operator | awk '{print $1}')
[[ $(operator_node) == "$both_node" ]] && pass "the operator leads on $both_node, beside the primary $(so_primary)" \
  || fail "the operator leads on '$(operator_node)', not beside the primary on $both_node"
kill_primary_and_operator_midway() {
  local target phase outcome
  target=$(instance_on "$KIND_CONTROL_PLANE")
  apply_switchover ha-primary-operator-node "$target"
  phase=$(first_phase_after_pending ha-primary-operator-node)
  so_fault_at=$(now)
  node_kill "$both_node"
  [[ $phase =~ ^(Fencing|CatchingUp)$ ]] \
    && pass "the node $both_node of the primary and the leading operator killed with the switchover in phase $phase" \
    || fail "the node of the primary and the operator killed with the switchover in phase '${phase:-none}', not before promotion"
  if wait_for "ha-primary-operator-node ended" 120 bash -c \
      "[[ \$(source '$E2E_DIR/lib.sh'; k -n $so_ns get switchovers.relevo.dev ha-primary-operator-node -o jsonpath='{.status.phase}') =~ ^(Completed|Failed)$ ]]"; then
    outcome=$(k -n "$so_ns" get switchovers.relevo.dev ha-primary-operator-node -o jsonpath='{.status.phase}: {.status.reason} ({.status.durationSeconds}s)')
    # Lost while fencing (the usual case), or seen unreachable before the fence by a
    # standby operator that took over first: either way Failed, and left to failover.
    [[ $outcome == "Failed: old primary "*" was lost during the switchover"* || $outcome == "Failed: no reachable primary"* ]] \
      && pass "the planned switchover gave up on the lost primary: $outcome" \
      || fail "the planned switchover ended '$outcome', not Failed for a lost primary"
  else
    fail "ha-primary-operator-node did not end within 120 s: $(switchover_phase ha-primary-operator-node)"
  fi
  await_failover "$both_node was killed with the leading operator"
  node_restart "$both_node"
  so_recovered_at=$(now)
}
so_allow_loss=1
run_scenario "ha: the node of the primary and the leading operator killed during a planned switchover" kill_primary_and_operator_midway
say "FIGURES primary-and-operator-node: writable after ${FIG_WRITABLE:-?}s, longest write gap ${FIG_GAP:-?}s, rows lost ${FIG_LOST:-?}, standbys streaming ${FIG_STREAM_AFTER_RECOVERY:-?}s after recovery"
k -n "$so_ns" get switchovers.relevo.dev >&2
summary operator-node
