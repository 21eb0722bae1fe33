#!/usr/bin/env bash
# The switchover story, under write load (see e2e/switchover-lib.sh for the
# load and the invariants checked after each scenario):
#   1. planned demo-1 -> demo-2 (kubectl apply);
#   2. failback demo-2 -> demo-1 (`relevo failback`), and again both ways, by
#      the CLI, to show it works again and again;
#   3. the operator is killed in the middle of a switchover, which completes;
#   4. invalid Switchovers end Failed with their reason and change nothing;
#   5. unplanned (the local bed): the primary's node is lost, relevo fails
#      over by itself, and the lost instance is rebuilt as a standby when it
#      returns. On kind, tests/ha.sh does this with real node faults.
source "$(dirname "$0")/../lib.sh"
source "$E2E_DIR/switchover-lib.sh"
so_init relevo-e2e-switchover || { summary switchover; exit 1; }
relevo=${RELEVO_BIN:-$("$REPO_ROOT/images/build.sh" --print-binary)}

primary_is() { [[ $(so_primary) == "$1" ]]; }
expect_primary() {
  if wait_for "currentPrimary $1" 30 primary_is "$1"; then
    pass "currentPrimary is $1"
  else
    fail "currentPrimary is $(so_primary), expected $1"
  fi
}

run_scenario "planned demo-1 -> demo-2" planned demo-switchover-1 demo-2
expect_primary demo-2

# by_cli SUBCOMMAND [ARGS]: the CLI creates the Switchover and names it.
by_cli() {
  local out
  out=$("$relevo" "$@" demo -n "$so_ns") || { fail "relevo $*: $out"; switchover=none; return; }
  switchover=${out#switchover.relevo.dev/}
  switchover=${switchover%% *}
}
run_scenario "failback demo-2 -> demo-1 (relevo failback)" by_cli failback
expect_primary demo-1
run_scenario "again demo-1 -> demo-2 (relevo switchover --to)" by_cli switchover --to demo-2
expect_primary demo-2
run_scenario "failback again demo-2 -> demo-1" by_cli failback
expect_primary demo-1

# The leading operator is killed as soon as the switchover has started; its
# standby replica takes over (at once: the leader releases its Lease on SIGTERM).
kill_operator_midway() {
  planned demo-switchover-restart demo-2
  local phase
  phase=$(first_phase_after_pending demo-switchover-restart)
  killed_operator=$(operator_leader)
  killed_at=$(date +%s.%N)
  k -n relevo-system delete pod "$killed_operator" --grace-period=1 --wait=false >/dev/null
  if [[ $phase =~ ^(Fencing|CatchingUp|Promoting|Rebuilding)$ ]]; then
    pass "operator killed with the switchover in phase $phase"
  else
    fail "operator killed with the switchover in phase '${phase:-none}', not in the middle"
  fi
}
run_scenario "operator restart during demo-1 -> demo-2" kill_operator_midway
expect_primary demo-2
k -n relevo-system rollout status deployment/relevo-operator --timeout=120s >/dev/null
# Another operator must be the one that finished it.
epoch() { date -d "$1" +%s.%N; }
leader=$(operator_leader)
acquired=$(k -n relevo-system get leases.coordination.k8s.io relevo-operator -o jsonpath='{.spec.acquireTime}')
completed=$(k -n "$so_ns" get switchovers.relevo.dev demo-switchover-restart \
  -o jsonpath='{.status.phaseTimestamps[?(@.phase=="Completed")].time}')
if [[ -n $leader && $leader != "$killed_operator" && -n $completed && -n $acquired ]] \
  && (($(echo "$(epoch "$completed") > $(epoch "$acquired")" | bc))); then
  pass "the operator $leader took over $(echo "$(epoch "$acquired") - $killed_at" | bc | xargs printf '%.1f')s after $killed_operator was killed and completed the switchover at $completed"
else
  fail "the switchover completed at '$completed'; $killed_operator killed at $(date -d "@$killed_at" +%T.%N); '$leader' leads since '$acquired'"
fi

# Invalid requests: each ends Failed with its reason and nothing changes.
invalid() {
  local name=$1 cluster=$2 target=$3 expected=$4 reason
  k -n "$so_ns" apply -f - >/dev/null <<YAML
apiVersion: relevo.dev/v1alpha1
kind: Switchover
metadata: {name: $name}
spec: {cluster: $cluster, targetInstance: $target, mode: Planned}
YAML
  if wait_for "$name Failed" 60 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $so_ns get switchovers.relevo.dev $name -o jsonpath='{.status.phase}') == Failed ]]"; then
    reason=$(k -n "$so_ns" get switchovers.relevo.dev "$name" -o jsonpath='{.status.reason}')
    [[ $reason == *"$expected"* ]] && pass "$name: Failed, $reason" \
      || fail "$name: reason '$reason' does not say '$expected'"
  else
    fail "$name: phase $(switchover_phase "$name"), expected Failed"
  fi
}
fences_before=$(k -n "$so_ns" get pods -o jsonpath='{.items[*].metadata.annotations.relevo\.dev/fence}')
invalid bad-already-primary demo demo-2 "already the primary"
invalid bad-unknown-cluster nosuch demo-1 'PgCluster "nosuch" not found'
invalid bad-missing-target demo demo-7 "not an instance"
fences_after=$(k -n "$so_ns" get pods -o jsonpath='{.items[*].metadata.annotations.relevo\.dev/fence}')
if primary_is demo-2 && [[ $fences_before == "$fences_after" ]] \
    && [[ $(PSQL_ROLE=superuser psql_to "$so_ns" demo-rw "SELECT pg_is_in_recovery()") == f ]]; then
  pass "invalid Switchovers changed nothing: demo-2 still the writable primary, no fence set"
else
  fail "invalid Switchovers changed something: primary $(so_primary), fences '$fences_after'"
fi

# On kind the story ha.sh kills, cuts off and freezes real nodes instead (here a
# cordon of the primary's node would start relevo's drain switchover first).
if [[ $RELEVO_CLUSTER == local ]]; then
  run_scenario "unplanned: the primary's node is lost" node_loss
  expect_primary demo-1
fi
k -n "$so_ns" get switchovers.relevo.dev >&2

summary switchover
