#!/usr/bin/env bash
# The managed PgBouncer holds its clients across planned switchovers.
# A PgCluster of 2 instances with spec.pooler (2 pods, transaction mode); pgbench
# through <cluster>-pooler over TLS (verify-full against the cluster's CA), 4
# clients at POOLER_RATE transactions/s (default 60), each an INSERT whose
# acknowledgement pgbench counts; meanwhile POOLER_SWITCHOVERS planned
# switchovers (default 10), back and forth. Then:
#   - pgbench ran to its end: no client aborted (no connection dropped), 0 failed
#     transactions;
#   - every acknowledged INSERT is in the table;
#   - the latency a client saw (p50, p99, max: the longest stall) is printed;
#   - spec.pooler removed: its Deployment, Service, ConfigMap and Secret go;
#     put back: a client connects again.
source "$(dirname "$0")/../lib.sh"
source "$E2E_DIR/switchover-lib.sh"
pgbench=/usr/lib/postgresql/15/bin/pgbench
rate=${POOLER_RATE:-60}
switchovers=${POOLER_SWITCHOVERS:-10}
duration=${POOLER_SECONDS:-150}
so_init relevo-e2e-pooler || { summary pooler; exit 1; }
work=$(mktemp -d)

pooler_spec='{"spec":{"pooler":{"instances":2,"poolMode":"transaction"}}}'
k -n "$so_ns" patch pgclusters.relevo.dev demo --type merge -p "$pooler_spec" >/dev/null
if wait_for "the pooler Deployment available" 180 k -n "$so_ns" wait --for=condition=Available deployment/demo-pooler --timeout=5s; then
  pass "spec.pooler: deployment/demo-pooler available ($(k -n "$so_ns" get deployment demo-pooler -o jsonpath='{.status.readyReplicas}') pods ready)"
else
  fail "spec.pooler: deployment/demo-pooler not available: $(k -n "$so_ns" get pods -l relevo.dev/cluster=demo -o wide 2>&1 | tail -5)"
  summary pooler; exit 1
fi

pooler_env() { so_client_env demo-pooler "$1"; }
pooled_psql() { (pooler_env "$work/env" && source "$work/env" && psql -XAtq -v ON_ERROR_STOP=1 -c "$1"); }

if wait_for "a query through demo-pooler" 60 pooled_psql "SELECT 1"; then
  pass "a client reaches the database through demo-pooler with sslmode=verify-full"
else
  fail "no query through demo-pooler"
fi
psql_to "$so_ns" demo-rw "CREATE TABLE pooled (id bigserial PRIMARY KEY, client int, at timestamptz DEFAULT now())"
printf 'INSERT INTO pooled (client) VALUES (:client_id);\n' >"$work/insert.sql"

say "pgbench through demo-pooler: 4 clients, $rate tx/s, ${duration}s, $switchovers planned switchovers meanwhile"
pooler_env "$work/env"
(cd "$work" && source ./env && "$pgbench" -n -c 4 -j 1 -R "$rate" -T "$duration" -f insert.sql -l --log-prefix=tx \
  >"$work/pgbench.out" 2>"$work/pgbench.err"; echo $? >"$work/pgbench.rc") &
bench_pid=$!
first_rows() { [[ $(psql_to "$so_ns" demo-rw "SELECT count(*) > 0 FROM pooled") == t ]]; }
wait_for "pgbench's first rows" 30 first_rows || fail "pgbench did not start: $(cat "$work/pgbench.err" 2>&1)"

completed=0
for i in $(seq 1 "$switchovers"); do
  target=demo-2; [[ $(so_primary) == demo-2 ]] && target=demo-1
  say "pooler-$i -> $target applied at $(date -u +%T.%3N)"
  apply_switchover "pooler-$i" "$target"
  if wait_for "pooler-$i Completed" 120 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $so_ns get switchovers.relevo.dev pooler-$i -o jsonpath='{.status.phase}') =~ ^(Completed|Failed)$ ]]" \
      && [[ $(switchover_phase "pooler-$i") == Completed ]]; then
    completed=$((completed + 1))
    say "pooler-$i -> $target Completed in $(k -n "$so_ns" get switchovers.relevo.dev "pooler-$i" -o jsonpath='{.status.durationSeconds}')s; $(k -n "$so_ns" get switchovers.relevo.dev "pooler-$i" -o jsonpath='{.status.reason}'); phases: $(k -n "$so_ns" get switchovers.relevo.dev "pooler-$i" -o jsonpath='{range .status.phaseTimestamps[*]}{.phase}@{.time} {end}')"
  else
    fail "pooler-$i did not complete: $(k -n "$so_ns" get switchovers.relevo.dev "pooler-$i" -o jsonpath='{.status.phase}: {.status.reason}')"
    so_diagnose "pooler-$i"
  fi
  wait_for "currentPrimary $target" 30 bash -c "[[ \$(source '$E2E_DIR/lib.sh'; k -n $so_ns get pgclusters.relevo.dev demo -o jsonpath='{.status.currentPrimary}') == $target ]]" || true
  kill -0 "$bench_pid" 2>/dev/null || { fail "pgbench ended before switchover $i: $(tail -5 "$work/pgbench.err")"; break; }
done
((completed == switchovers)) && pass "$completed planned switchovers Completed under load" \
  || fail "$completed of $switchovers planned switchovers Completed"
kill -0 "$bench_pid" 2>/dev/null && pass "the $switchovers switchovers ended before the writer" \
  || fail "the writer ended before the switchovers (raise POOLER_SECONDS)"
wait "$bench_pid" || true

rc=$(cat "$work/pgbench.rc")
processed=$(awk -F': ' '/number of transactions actually processed/ {split($2, a, "/"); print a[1]}' "$work/pgbench.out")
failed=$(awk -F': ' '/number of failed transactions/ {split($2, a, " "); print a[1]}' "$work/pgbench.out")
say "pgbench: $(grep -E 'processed|failed|latency average|tps' "$work/pgbench.out" | tr '\n' ';')"
if [[ $rc == 0 ]] && ! grep -qi "aborted" "$work/pgbench.out" "$work/pgbench.err"; then
  pass "pgbench ran to its end: no client aborted, no connection dropped"
else
  fail "pgbench exited $rc: $(grep -i "abort\|error" "$work/pgbench.err" "$work/pgbench.out" | head -5)"
fi
[[ ${failed:-x} == 0 ]] && pass "0 failed transactions through demo-pooler" || fail "failed transactions: ${failed:-unknown}"
stored=$(psql_to "$so_ns" demo-rw "SELECT count(*) FROM pooled")
logged=$(cat "$work"/tx.* | awk '$3 >= 0' | wc -l)
if [[ -n $processed && $stored == "$processed" && $logged == "$processed" ]]; then
  pass "every acknowledged transaction is stored: $stored of $processed"
else
  fail "acknowledged $processed (logged $logged), stored $stored"
fi
# The latency each transaction saw, in ms, from pgbench's per-transaction log.
cat "$work"/tx.* | awk '{print $3 / 1000}' | sort -n >"$work/latency"
n=$(wc -l <"$work/latency")
pct() { sed -n "$(( ($1 * n + 99) / 100 ))p" "$work/latency"; }
# The longest stalls, each with the wall-clock time its transaction started, to set
# against the switchovers' times above. pgbench's log: client, tx, latency (us),
# script, epoch s, epoch us (the end).
say "longest stalls (ms, started at): $(cat "$work"/tx.* | awk '{printf "%.0f %.3f\n", $3 / 1000, $5 + $6 / 1e6 - $3 / 1e6}' \
  | sort -rn | head -5 | while read -r ms at; do printf '%s@%s ' "$ms" "$(date -u -d "@$at" +%T.%3N)"; done)"
max_ms=$(tail -1 "$work/latency"); max_ms=${max_ms%.*}
if (( ${max_ms:-0} > 2000 )); then
  # Over the 2 s target: what the pooler pods and the operator did, on stderr.
  for pod in $(k -n "$so_ns" get pods -l app.kubernetes.io/component=pooler -o name 2>/dev/null); do
    echo "--- $pod" >&2
    k -n "$so_ns" logs "$pod" 2>&1 | grep -E "PAUSE|RESUME|target|bound" | tail -80 >&2 || true
  done
  for pod in demo-1-0 demo-2-0; do
    echo "--- $pod (fences and restarts)" >&2
    k -n "$so_ns" logs "$pod" -c postgres 2>&1 \
      | grep -iE "relevo instance|shutting down|shutdown|checkpoint (starting|complete)|ready to accept|consistent recovery|promot" | tail -40 >&2 || true
  done
  operator=$(live_operator | awk '{print $1}')
  [[ -z $operator ]] || k -n relevo-system logs "$operator" 2>&1 | grep -F "$so_ns" | grep -iE "pooler" | tail -60 >&2 || true
fi
say "FIGURES pooler: $n transactions over $switchovers switchovers; latency p50 $(pct 50) ms, p99 $(pct 99) ms, max (the longest stall a client saw) $(tail -1 "$work/latency") ms"

say "spec.pooler removed, then put back"
k -n "$so_ns" patch pgclusters.relevo.dev demo --type json -p '[{"op":"remove","path":"/spec/pooler"}]' >/dev/null
gone() { [[ -z $(k -n "$so_ns" get deployment,service,configmap,secret -o name 2>/dev/null | grep -- 'demo-pooler') ]]; }
if wait_for "the pooler's objects gone" 90 gone; then
  pass "without spec.pooler its Deployment, Service, ConfigMap and Secret are gone"
else
  fail "left behind: $(k -n "$so_ns" get deployment,service,configmap,secret -o name | grep -- demo-pooler | tr '\n' ' ')"
fi
pooled_psql "SELECT 1" >/dev/null 2>&1 && fail "demo-pooler still answers without spec.pooler" || true
k -n "$so_ns" patch pgclusters.relevo.dev demo --type merge -p "$pooler_spec" >/dev/null
if wait_for "a query through the pooler put back" 180 pooled_psql "SELECT count(*) FROM pooled"; then
  pass "spec.pooler put back: clients connect again"
else
  fail "no query through demo-pooler after putting spec.pooler back"
fi
rm -rf "$work"
summary pooler
