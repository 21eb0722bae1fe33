#!/usr/bin/env bash
# The pooler story: an application writes through `demo-pooler` in
# transaction mode while relevo switches the primary over and over.
#   1. pgbench (4 persistent connections, 60 tx/s, each INSERT acknowledged)
#      runs through demo-pooler during POOLER_SWITCHOVERS (default 10) planned
#      switchovers: no client aborted (0 dropped connections, 0 failed
#      transactions), >= 50 tx/s, every acknowledged row is in the table;
#   2. the pooler is switched off: its Deployment, Service, ConfigMap and
#      Secret are deleted; switched on again: it serves clients again.
source "$(dirname "$0")/../lib.sh"
source "$E2E_DIR/pooler-lib.sh"
pl_init relevo-e2e-pooler || { summary pooler; exit 1; }
switchovers=${POOLER_SWITCHOVERS:-10}

# 1. switchovers under load through the pooler
seconds=$((20 + 25 * switchovers))
pl_pgbench "$pl_pooler_ip" "$seconds" through-pooler
started=$SECONDS
if wait_for "the writer's first acknowledged transactions" 30 \
    bash -c "cat '$PL_WORK'/through-pooler.log.* 2>/dev/null | grep -q ."; then
  pass "pgbench writes through demo-pooler"
else
  fail "pgbench wrote nothing through demo-pooler: $(tail -5 "$PL_WORK/through-pooler.out")"
fi
if pl_switchovers "$switchovers" pooler-so; then
  pass "$PL_COMPLETED planned switchovers completed under load"
else
  fail "only $PL_COMPLETED of $switchovers switchovers completed"
fi
say "switchovers took $((SECONDS - started))s; waiting for the writer's ${seconds}s run to end"
pl_wait_pgbench through-pooler || say "pgbench ended with code $(cat "$PL_WORK/through-pooler.rc")"
pl_figures through-pooler
say "through the pooler: $PL_TX transactions at $PL_TPS tx/s, aborted clients $PL_ABORTED, failed $PL_FAILED," \
  "latency p50 ${PL_P50}ms p99 ${PL_P99}ms max ${PL_MAX}ms, longest stall ${PL_STALL}s"
if ((PL_ABORTED == 0 && PL_FAILED == 0)) && [[ $(cat "$PL_WORK/through-pooler.rc") == 0 ]]; then
  pass "0 failed transactions and 0 dropped client connections across $PL_COMPLETED switchovers"
else
  fail "clients aborted: $PL_ABORTED, failed transactions: $PL_FAILED; $(grep -m3 -E 'aborted|error' "$PL_WORK/through-pooler.out")"
fi
if awk -v tps="${PL_TPS:-0}" 'BEGIN {exit !(tps >= 50)}'; then
  pass "writer sustained ${PL_TPS} tx/s (>= 50)"
else
  fail "writer ran at ${PL_TPS:-?} tx/s, below 50"
fi
rows=$(psql_to "$pl_ns" demo-rw "SELECT count(*) FROM pooler_load")
if ((rows >= PL_TX && PL_TX > 0)); then
  pass "every acknowledged transaction is stored ($rows rows, $PL_TX acknowledged)"
else
  fail "$rows rows stored, but $PL_TX transactions were acknowledged"
fi

# 2. off, then on again
pooler_objects() {
  local kind found=()
  for kind in deployment service configmap secret; do
    k -n "$pl_ns" get "$kind" demo-pooler >/dev/null 2>&1 && found+=("$kind")
  done
  echo "${found[*]}"
}
none_left() { [[ -z $(pooler_objects) ]]; }
k -n "$pl_ns" patch pgclusters.relevo.dev demo --type merge -p '{"spec":{"pooler":{"enabled":false}}}' >/dev/null
if wait_for "pooler objects deleted" 60 none_left; then
  pass "pooler off: Deployment, Service, ConfigMap and Secret demo-pooler deleted"
else
  fail "pooler off, still present: $(pooler_objects)"
fi
if psql_to "$pl_ns" demo-rw "SELECT 1" >/dev/null; then
  pass "the cluster still serves clients through demo-rw"
else
  fail "demo-rw does not answer with the pooler off"
fi
k -n "$pl_ns" patch pgclusters.relevo.dev demo --type merge -p '{"spec":{"pooler":{"enabled":true}}}' >/dev/null
through_pooler() { psql_to "$pl_ns" demo-pooler "SELECT count(*) FROM pooler_load"; }
if wait_for "Deployment demo-pooler again" 60 k -n "$pl_ns" get deployment demo-pooler &&
   k -n "$pl_ns" rollout status deployment/demo-pooler --timeout=120s >/dev/null &&
   wait_for "a query through demo-pooler" 60 through_pooler; then
  pass "pooler on again: demo-pooler serves clients ($(through_pooler) rows)"
else
  fail "pooler on again, but no answer through demo-pooler: $(k -n "$pl_ns" get pods -l relevo.dev/cluster=demo 2>&1 | tail -4)"
fi
summary pooler
